"""Stream rules and Agents-era rules, one by one: each fires on a crafted stream (through the real recorder)
at the activity the bot got wrong, and stays quiet on a close correct one. Times are the recorded ones
the test feeds (`Wire.tick`); nothing sleeps."""

from __future__ import annotations

import json
from typing import Any

from checkkit import Flow, Scenarios, Wire

from botproxy.record.recorder import ResponseSeen

_scenarios: Scenarios[Wire] = Scenarios()
FIRES, HOLDS = _scenarios.firing, _scenarios.holding
fires, holds = _scenarios.fires, _scenarios.holds
AUTO: Any = object()


class Streamer:
    """A bot streaming one reply to `inbound` as the Agents SDKs do on Teams: the first chunk has no
    streamId, its ResourceResponse id becomes the stream's; chunks `gap` seconds apart."""

    def __init__(self, w: Wire, inbound: Flow, *, gap: float = 1.2, stream_id: str | None = None) -> None:
        self.w, self.inbound, self.gap = w, inbound, gap
        self.stream_id = stream_id
        self.number = 0
        self.sent: list[Flow] = []

    def body(self, text: str | None, kind: str, seq: Any, sid: Any, **fields: Any) -> dict[str, Any]:
        info: dict[str, Any] = {"type": "streaminfo", "streamType": kind}
        if kind != "final":
            self.number += 1
        number = self.number if seq is AUTO and kind != "final" else (None if seq is AUTO else seq)
        if number is not None:
            info["streamSequence"] = number
        stream_id = self.stream_id if sid is AUTO else sid
        if stream_id is not None:
            info["streamId"] = stream_id
        entities = fields.pop("entities", None)
        body = self.w.reply_body(
            self.inbound.activity or {}, text, type="message" if kind == "final" else "typing", **fields
        )
        body["entities"] = [info, *(entities or [])]
        body["conversation"] = {"id": body["conversation"]["id"]}  # the SDKs send the id alone
        return body

    def send(self, text: str | None, kind: str = "streaming", **kw: Any) -> Flow:
        return stream_send(self, text, kind, **kw)


def stream_send(
    st: Streamer,
    text: str | None,
    kind: str = "streaming",
    *,
    seq: Any = AUTO,
    sid: Any = AUTO,
    close: bool = True,
    status: int | None = None,
    answer: Any = None,
    gap: float | None = None,
    **fields: Any,
) -> Flow:
    """One stream request (and, when `close`, the channel's answer)."""
    w = st.w
    w.tick(st.gap if gap is None else gap)
    body = st.body(text, kind, seq, sid, **fields)
    parent = st.inbound.activity or {}
    flow = w.call("POST", w.url(parent["conversation"]["id"], parent["id"]), body, kind="send")
    st.sent.append(flow)
    if close:
        answer_stream(st, flow, status, answer)
    return flow


def answer_stream(st: Streamer, flow: Flow, status: int | None = None, answer: Any = None) -> None:
    if status is not None and status >= 300:
        st.w.done(flow, status, answer)
        return
    if answer is None and st.stream_id is not None:
        answer = {}  # Teams answers later requests of a stream 202 {}
    st.w.done(flow, status if status is not None else (201 if st.stream_id is None else 202), answer)
    if st.stream_id is None and flow.response and flow.response.get("id"):
        st.stream_id = str(flow.response["id"])


def teams_turn(**inbound: Any) -> tuple[Wire, Flow, Streamer]:
    w = Wire()
    conversation = inbound.pop("conversation", {"id": "c1", "conversationType": "personal"})
    flow = w.inbound("tell me", conversation=conversation, **inbound)
    return w, flow, Streamer(w, flow)


def correct_stream(**inbound: Any) -> Wire:
    """What a correct Teams stream looks like: informative, two chunks, the final."""
    w, inbound_flow, st = teams_turn(**inbound)
    st.send("Searching...", "informative")
    st.send("A brown")
    st.send("A brown fox")
    st.send("A brown fox jumps.", "final")
    w.done(inbound_flow)
    return w


# -- S01 ---------------------------------------------------------------------------------------------


@fires("BP-S01")
def sequence_repeats() -> Wire:
    w, inbound, st = teams_turn()
    st.send("A")
    w.culprit = st.send("A b", seq=1).seq
    st.send("A b c.", "final")
    w.done(inbound)
    return w


@holds("BP-S01")
def sequence_rises_by_one() -> Wire:
    return correct_stream()


def test_a_skipped_number_is_a_warning_and_a_bad_start_an_error():
    w, inbound, st = teams_turn()
    st.send("A", seq=2)
    st.send("A b", seq=4)
    st.send("A b c.", "final")
    w.done(inbound)
    start, gap = w.of("BP-S01")
    assert (start.severity, start.details["expected"]) == ("error", 1)
    assert (gap.severity, gap.details) == ("warning", {"sequence": 4, "expected": 3})


# -- S02 ---------------------------------------------------------------------------------------------


@fires("BP-S02")
def final_with_the_javascript_sdks_number() -> Wire:
    w, inbound, st = teams_turn()
    st.send("A")
    st.send("A b")
    w.culprit = st.send("A b c.", "final", seq=4).seq
    w.done(inbound)
    return w


@holds("BP-S02")
def final_without_a_number() -> Wire:
    return correct_stream()


def test_final_sequence_is_a_warning_on_teams_naming_the_sdk_and_info_on_web_chat():
    teams = FIRES["BP-S02"]()
    [finding] = teams.of("BP-S02")
    assert finding.severity == "warning" and "JavaScript" in finding.message
    assert not teams.loud()[1:], [f.to_dict() for f in teams.loud()]
    w = Wire(channel="webchat", service_url="https://webchat.botframework.com/")
    inbound = w.inbound("tell me")
    st = Streamer(w, inbound, stream_id="8d1c7b7e-5d4e-4a0e-9c55-2f9a4f3b1a11", gap=0.6)
    st.send("A")
    st.send("A b.", "final", seq=2)
    w.done(inbound)
    [finding] = w.of("BP-S02")
    assert finding.severity == "info" and "Python" in finding.message
    assert not w.loud(), [f.to_dict() for f in w.loud()]


# -- S03 ---------------------------------------------------------------------------------------------


@fires("BP-S03")
def final_alone() -> Wire:
    w, inbound, st = teams_turn()
    st.stream_id = "made-up"
    w.culprit = st.send("All at once.", "final").seq
    w.done(inbound)
    return w


@holds("BP-S03")
def final_after_chunks() -> Wire:
    return correct_stream()


# -- S04 ---------------------------------------------------------------------------------------------


@fires("BP-S04")
def chunk_after_the_final() -> Wire:
    w, inbound, st = teams_turn()
    st.send("A")
    st.send("A b.", "final")
    w.culprit = st.send("A b.").seq
    w.done(inbound)
    return w


@holds("BP-S04")
def a_new_stream_after_the_final() -> Wire:
    w = correct_stream()
    second = w.inbound("more", conversation={"id": "c1", "conversationType": "personal"})
    st = Streamer(w, second)
    st.send("More")
    st.send("More text.", "final")
    w.done(second)
    return w


# -- S05 ---------------------------------------------------------------------------------------------


@fires("BP-S05")
def two_streaminfo_entities() -> Wire:
    w, inbound, st = teams_turn()
    w.culprit = st.send("A", entities=[{"type": "streaminfo", "streamType": "streaming", "streamSequence": 1}]).seq
    st.send("A b.", "final")
    w.done(inbound)
    return w


@holds("BP-S05")
def one_streaminfo_entity() -> Wire:
    return correct_stream()


# -- S06 ---------------------------------------------------------------------------------------------


@fires("BP-S06")
def second_chunk_before_the_first_was_answered() -> Wire:
    w, inbound, st = teams_turn()
    first = st.send("A", close=False)
    second = st.send("A b", close=False)
    w.culprit = second.seq
    answer_stream(st, first)
    answer_stream(st, second)
    st.send("A b c.", "final")
    w.done(inbound)
    return w


@holds("BP-S06")
def each_chunk_awaited() -> Wire:
    return correct_stream()


# -- S07 ---------------------------------------------------------------------------------------------


@fires("BP-S07")
def teams_chunks_a_tenth_of_a_second_apart() -> Wire:
    w, inbound, st = teams_turn()
    st.send("A")
    w.culprit = st.send("A b", gap=0.1).seq
    st.send("A b c.", "final", gap=0.05)
    w.done(inbound)
    return w


@holds("BP-S07")
def teams_chunks_a_second_apart_and_a_quick_final() -> Wire:
    w, inbound, st = teams_turn()
    st.send("A")
    st.send("A b")
    st.send("A b c.", "final", gap=0.05)  # the final is not paced
    w.done(inbound)
    return w


def test_a_429_answer_is_reported_at_the_throttled_chunk():
    w, inbound, st = teams_turn()
    st.send("A")
    quota = {"error": {"code": "Throttled", "message": "API calls quota exceeded"}}
    throttled = st.send("A b", status=429, answer=quota)
    st.send("A b c.", "final")
    w.done(inbound)
    assert [(f.seq, f.message) for f in w.of("BP-S07")] == [(throttled.seq, "the channel throttled the stream (429)")]


def test_web_chat_is_not_paced_like_teams():
    w = Wire(channel="webchat", service_url="https://webchat.botframework.com/")
    inbound = w.inbound("tell me")
    st = Streamer(w, inbound, stream_id="1b4e28ba-2fa1-41d2-883f-0016d3cca427", gap=0.5)
    st.send("A")
    st.send("A b")
    st.send("A b c.", "final")
    w.done(inbound)
    assert w.findings == [], [f.to_dict() for f in w.findings]


# -- S08 ---------------------------------------------------------------------------------------------


@fires("BP-S08")
def teams_stream_over_two_minutes() -> Wire:
    w, inbound, st = teams_turn()
    st.send("A")
    st.send("A b", gap=100)
    w.culprit = st.send("A b c", gap=30).seq
    st.send("A b c d.", "final")
    w.done(inbound)
    return w


@holds("BP-S08")
def teams_stream_within_two_minutes() -> Wire:
    w, inbound, st = teams_turn()
    st.send("A")
    st.send("A b", gap=100)
    st.send("A b c.", "final", gap=15)
    w.done(inbound)
    return w


def test_copilot_is_its_own_profile_with_a_45_second_update_deadline():
    copilot = [{"type": "ProductInfo", "id": "COPILOT"}]
    w, inbound, st = teams_turn(entities=copilot)
    st.send("A")
    late = st.send("A b", gap=50)
    st.send("A b c.", "final")
    w.done(inbound)
    [finding] = w.of("BP-S08")
    assert finding.seq == late.seq and finding.severity == "warning" and "Copilot" in finding.message
    # the same gaps on Teams proper are fine (under 2 minutes)
    w, inbound, st = teams_turn()
    st.send("A")
    st.send("A b", gap=50)
    st.send("A b c.", "final")
    w.done(inbound)
    assert "BP-S08" not in w.codes()


# -- S09 ---------------------------------------------------------------------------------------------


@fires("BP-S09")
def chunk_text_changes() -> Wire:
    w, inbound, st = teams_turn()
    st.send("A brown")
    w.culprit = st.send("Hello").seq
    st.send("Hello there.", "final")
    w.done(inbound)
    return w


@holds("BP-S09")
def chunk_text_grows() -> Wire:
    return correct_stream()


def test_a_final_that_changes_the_streamed_text_is_an_error_on_teams_a_warning_on_web_chat():
    w, inbound, st = teams_turn()
    st.send("A brown fox")
    final = st.send("Something else.", "final")
    w.done(inbound)
    assert [(f.seq, f.severity) for f in w.of("BP-S09")] == [(final.seq, "error")]
    w = Wire(channel="webchat", service_url="https://webchat.botframework.com/")
    inbound = w.inbound("tell me")
    st = Streamer(w, inbound, stream_id="0f8fad5b-d9cb-469f-a165-70867728950e")
    st.send("A brown fox")
    st.send("Something else.", "final")
    w.done(inbound)
    assert [f.severity for f in w.of("BP-S09")] == ["warning"]


# -- S10 ---------------------------------------------------------------------------------------------


@fires("BP-S10")
def informative_too_long() -> Wire:
    w, inbound, st = teams_turn()
    w.culprit = st.send("x" * 1001, "informative").seq
    st.send("A")
    st.send("A b.", "final")
    w.done(inbound)
    return w


@holds("BP-S10")
def informative_of_1000_characters() -> Wire:
    w, inbound, st = teams_turn()
    st.send("x" * 1000, "informative")
    st.send("A")
    st.send("A b.", "final")
    w.done(inbound)
    return w


# -- S11 ---------------------------------------------------------------------------------------------

AI_LABEL = {
    "type": "https://schema.org/Message",
    "@type": "Message",
    "@context": "https://schema.org",
    "additionalType": ["AIGeneratedContent"],
}
CARD = {"contentType": "application/vnd.microsoft.card.hero", "content": {"title": "Fox"}}


@fires("BP-S11")
def card_and_ai_label_on_a_chunk() -> Wire:
    w, inbound, st = teams_turn()
    w.culprit = st.send("A", attachments=[CARD], entities=[AI_LABEL]).seq
    st.send("A b.", "final")
    w.done(inbound)
    return w


@holds("BP-S11")
def card_ai_label_and_feedback_on_the_final() -> Wire:
    w, inbound, st = teams_turn()
    st.send("A")
    st.send("A b.", "final", attachments=[CARD], entities=[AI_LABEL], channelData={"feedbackLoop": {"type": "default"}})
    w.done(inbound)
    return w


# -- S12 ---------------------------------------------------------------------------------------------


@fires("BP-S12")
def second_stream_while_the_first_is_open() -> Wire:
    w, inbound, st = teams_turn()
    st.send("A")
    other = Streamer(w, inbound)
    w.culprit = other.send("B").seq
    other.send("B c.", "final")
    st.send("A b.", "final")
    w.done(inbound)
    return w


@holds("BP-S12")
def streams_one_after_the_other() -> Wire:
    return HOLDS["BP-S04"]()


# -- S13 ---------------------------------------------------------------------------------------------


@fires("BP-S13")
def teams_stream_in_a_group_chat() -> Wire:
    w, inbound, st = teams_turn(conversation={"id": "c1", "conversationType": "groupChat", "isGroup": True})
    w.culprit = st.send(
        "A",
        status=400,
        answer={
            "error": {
                "code": "BadArgument",
                "message": "Streaming API is not enabled for non personal scope or non copilot conversations.",
            }
        },
    ).seq
    w.done(w.reply(inbound, "A b."))  # the SDKs' fallback: one plain message
    w.done(inbound)
    return w


@holds("BP-S13")
def teams_stream_in_a_personal_chat() -> Wire:
    return correct_stream()


def test_a_group_chat_stream_the_channel_refused_is_the_sdks_fallback_info_one_it_accepted_a_warning():
    [refused] = FIRES["BP-S13"]().of("BP-S13")
    assert refused.severity == "info" and refused.details["refused"] and "BadArgument" in refused.message
    w, inbound, st = teams_turn(conversation={"id": "c1", "conversationType": "channel"})
    first = st.send("A")
    st.send("A b.", "final")
    w.done(inbound)
    [accepted] = w.of("BP-S13")
    assert (accepted.seq, accepted.severity, accepted.details["refused"]) == (first.seq, "warning", False)
    assert "BP-S14" not in FIRES["BP-S13"]().codes()  # the refusal is said once, by BP-S13


def test_streaming_to_an_agentic_identity_is_out_of_scope_whichever_spelling():
    for role in ("agenticAppInstance", "agenticInstance"):
        w, inbound, st = teams_turn(recipient={"id": "b1", "name": "Bot", "role": role, "agenticAppId": "app-1"})
        st.send("A")
        st.send("A b.", "final")
        w.done(inbound)
        assert [(f.details, f.severity) for f in w.of("BP-S13")] == [({"agentic": True, "refused": False}, "warning")]
        assert "BP-M05" not in w.codes(), role


# -- S14 ---------------------------------------------------------------------------------------------

CANCELLED = {"error": {"code": "ContentStreamNotAllowed", "message": "Content stream was cancelled by user."}}
TIMED_OUT = {
    "error": {"code": "ContentStreamNotAllowed", "message": "Content stream finished due to exceeded streaming time."}
}


@fires("BP-S14")
def chunks_after_the_user_pressed_stop() -> Wire:
    w, inbound, st = teams_turn()
    st.send("A")
    st.send("A b", status=403, answer=CANCELLED)
    st.send("A b c")  # the culprit; the 403 before it is reported too, as info (below)
    w.done(inbound)
    return w


@holds("BP-S14")
def stream_the_channel_took() -> Wire:
    return correct_stream()


def stopping_when_the_user_pressed_stop() -> Wire:
    w, inbound, st = teams_turn()
    st.send("A")
    st.send("A b", status=403, answer=CANCELLED)
    w.done(inbound)
    return w


def test_the_chunk_after_the_403_is_the_warning():
    w = FIRES["BP-S14"]()
    ending, continued = w.of("BP-S14")
    assert (ending.severity, continued.severity) == ("info", "warning")
    assert continued.seq == ending.seq + 1 and "cancelled by the user" in continued.message


def test_the_channels_403_is_info_naming_its_variant():
    w = stopping_when_the_user_pressed_stop()
    [finding] = w.of("BP-S14")
    assert finding.severity == "info" and "cancelled by the user" in finding.message
    assert not w.loud()


def test_a_put_final_after_the_teams_timeout_is_understood():
    w, inbound, st = teams_turn()
    st.send("A")
    stream_id = st.stream_id
    assert stream_id
    st.send("A b", gap=119, status=403, answer=TIMED_OUT)
    final = {"type": "message", "id": stream_id, "conversation": {"id": "c1"}, "text": "A b c (took too long)"}
    w.done(w.update("c1", stream_id, final))
    nxt = w.inbound("thanks", conversation={"id": "c1", "conversationType": "personal"})
    w.done(w.reply(nxt, "you're welcome"))
    w.done(nxt)
    [ending] = w.of("BP-S14")
    assert ending.severity == "info" and "streaming time exceeded" in ending.message
    assert not w.loud(), [f.to_dict() for f in w.loud()]


# -- the typing rule leaves stream chunks alone -----------------------------------------------------------


def test_stream_chunks_are_not_typing_too_frequent_but_typing_indicators_still_are():
    w, inbound, st = teams_turn()
    st.send("A")
    st.send("A b")
    st.send("A b c.", "final")
    w.done(inbound)
    assert "BP-O12" not in w.codes()
    w = Wire()
    inbound = w.inbound("hi")
    w.done(w.reply(inbound, None, type="typing"))
    w.tick(1.0)
    w.done(w.reply(inbound, None, type="typing"))
    w.done(inbound)
    assert "BP-O12" in w.codes()


# -- M01 ---------------------------------------------------------------------------------------------


def ai_entity(citations: int = 1, **appearance: Any) -> dict[str, Any]:
    return {
        **AI_LABEL,
        "citation": [
            {
                "@type": "Claim",
                "position": n,
                "appearance": {"@type": "DigitalDocument", "name": f"Doc {n}", "abstract": "About it.", **appearance},
            }
            for n in range(1, citations + 1)
        ],
    }


def message_with(entities: list[dict[str, Any]], text: str = "The fox [1].") -> Wire:
    w = Wire()
    inbound = w.inbound("hi")
    sent = w.done(w.reply(inbound, text, entities=entities))
    w.culprit = sent.seq
    w.done(inbound)
    return w


@fires("BP-M01")
def two_root_message_entities() -> Wire:
    return message_with([ai_entity(), ai_entity()])


@holds("BP-M01")
def one_root_entity_with_its_citation() -> Wire:
    return message_with([ai_entity()])


def test_citation_limits_and_references():
    [many] = message_with([ai_entity(21)]).of("BP-M01")
    assert many.severity == "error" and "21 citations" in many.message
    [lengths] = message_with([ai_entity(1, name="n" * 81, abstract="a" * 161)], "The fox [1] and [2].").of("BP-M01")
    assert lengths.severity == "warning"
    assert "name of 81" in lengths.message and "abstract of 161" in lengths.message
    assert "position 2" in lengths.message


# -- M02 ---------------------------------------------------------------------------------------------


@fires("BP-M02")
def feedback_loop_of_an_unknown_type() -> Wire:
    w = Wire()
    inbound = w.inbound("hi")
    w.culprit = w.done(w.reply(inbound, "answer", channelData={"feedbackLoop": {"type": "thumbs"}})).seq
    w.done(inbound)
    return w


@holds("BP-M02")
def feedback_loop_default() -> Wire:
    w = Wire()
    inbound = w.inbound("hi")
    w.done(w.reply(inbound, "answer", channelData={"feedbackLoop": {"type": "default"}}))
    w.done(w.reply(inbound, "answer", channelData={"feedbackLoopEnabled": True}))
    w.done(inbound)
    return w


def test_feedback_only_in_the_streaminfo_entity_is_flagged_as_the_python_sdks_placement():
    w, inbound, st = teams_turn()
    st.send("A")
    final = st.send("A b.", "final")
    w.done(inbound)
    assert "BP-M02" not in w.codes()
    w, inbound, st = teams_turn()
    st.send("A")
    body = st.body("A b.", "final", AUTO, AUTO)
    body["entities"][0]["feedbackLoopEnabled"] = True
    w.tick(1.2)
    final = w.call("POST", w.url("c1", inbound.activity["id"]), body, kind="send")  # type: ignore[index]
    answer_stream(st, final)
    w.done(inbound)
    [finding] = w.of("BP-M02")
    assert finding.seq == final.seq and "Python" in finding.message


# -- M03 ---------------------------------------------------------------------------------------------


@fires("BP-M03")
def copilot_product_info_on_web_chat() -> Wire:
    w = Wire(channel="webchat", service_url="https://webchat.botframework.com/")
    inbound = w.inbound("hi", entities=[{"type": "ProductInfo", "id": "COPILOT"}])
    w.culprit = inbound.seq
    w.done(w.reply(inbound, "ok"))
    w.done(inbound)
    return w


@holds("BP-M03")
def copilot_product_info_on_teams() -> Wire:
    w = Wire()
    inbound = w.inbound("hi", entities=[{"type": "ProductInfo", "id": "COPILOT"}])
    w.done(w.reply(inbound, "ok", entities=[{"type": "ProductInfo", "id": "COPILOT"}]))
    w.done(inbound)
    return w


def test_a_joined_channel_id_that_disagrees_with_product_info():
    w = Wire()
    inbound = w.inbound("hi", channel="msteams:COPILOT", entities=[{"type": "ProductInfo", "id": "OTHER"}])
    w.done(inbound)
    [finding] = w.of("BP-M03")
    assert "OTHER" in finding.message


# -- M04 ---------------------------------------------------------------------------------------------


@fires("BP-M04")
def teams_turn_answered_after_16_seconds() -> Wire:
    w = Wire()
    inbound = w.inbound("hi")
    w.culprit = inbound.seq
    w.done(w.reply(inbound, "ok"))
    w.tick(16)
    w.done(inbound)
    return w


@holds("BP-M04")
def teams_turn_answered_after_14_seconds() -> Wire:
    w = Wire()
    inbound = w.inbound("hi")
    w.done(w.reply(inbound, "ok"))
    w.tick(14)
    w.done(inbound)
    return w


def test_slow_answers_elsewhere_are_not_teams_retries():
    w = Wire(channel="webchat", service_url="https://webchat.botframework.com/")
    inbound = w.inbound("hi")
    w.tick(30)
    w.done(inbound)
    assert "BP-M04" not in w.codes()


# -- M05 ---------------------------------------------------------------------------------------------


@fires("BP-M05")
def agentic_user_without_its_ids() -> Wire:
    w = Wire()
    inbound = w.inbound("hi", recipient={"id": "b1", "name": "Bot", "role": "agenticUser", "agenticAppId": "app-1"})
    w.culprit = inbound.seq
    w.done(inbound)
    return w


@holds("BP-M05")
def agentic_accounts_in_both_spellings() -> Wire:
    w = Wire()
    for role in ("agenticAppInstance", "agenticInstance"):
        inbound = w.inbound("hi", recipient={"id": "b1", "name": "Bot", "role": role, "agenticAppId": "app-1"})
        w.done(w.reply(inbound, "ok"))
        w.done(inbound)
    return w


# -- the table-driven part ------------------------------------------------------------------------------


def test_a_correct_teams_stream_gets_no_finding_at_all():
    w = correct_stream()
    assert w.findings == [], [f.to_dict() for f in w.findings]


# -- a deliveryMode stream answer (SSE frames in the inbound response) -----------------------------------


def sse_turn(frames: list[tuple[str, str, int | None]]) -> Wire:
    """An inbound activity with deliveryMode stream answered 200 text/event-stream with these frames
    (stream type, text, sequence); the stream id is the sender's own, from the second frame on."""
    w = Wire(channel="webchat", service_url="https://webchat.botframework.com/")
    inbound = w.inbound("tell me", deliveryMode="stream")
    parent = inbound.activity or {}
    body = b""
    for n, (kind, text, number) in enumerate(frames):
        info: dict[str, Any] = {"type": "streaminfo", "streamType": kind}
        if number is not None:
            info["streamSequence"] = number
        if n:
            info["streamId"] = "stream-1"
        activity = w.reply_body(parent, text, type="message" if kind == "final" else "typing", entities=[info])
        body += b"event: activity\r\ndata: " + json.dumps(activity).encode() + b"\r\n\r\n"
    w._feed(ResponseSeen(inbound.id, w.tick(), 200, [("content-type", "text/event-stream")], body))
    return w


def test_a_stream_answered_in_the_inbound_response_is_checked_like_one_sent_through_the_connector():
    good = sse_turn(
        [("informative", "Thinking...", 1), ("streaming", "The answer", 2), ("final", "The answer is 42.", None)]
    )
    assert [f for f in good.findings if f.rule.startswith("BP-S")] == []
    bad = sse_turn([("informative", "Thinking...", 1), ("streaming", "The answer", 2), ("streaming", "Other", 2)])
    frames = [
        seq
        for table, row in bad.rows
        if table == "activities" and row["route"] == "event_stream"
        for seq in [row["seq"]]
    ]
    assert {(f.rule, f.seq) for f in bad.findings if f.rule.startswith("BP-S")} == {
        ("BP-S01", frames[-1]),
        ("BP-S09", frames[-1]),
    }
