"""Ordering rules, one by one: each fires on a case that breaks it (at the activity the bot got wrong) and
stays quiet on a close case that does not. Event order is what the test feeds; nothing sleeps."""

from __future__ import annotations

from checkkit import Flow, Scenarios, Wire, sent_id

_scenarios: Scenarios[Wire] = Scenarios()
FIRES, HOLDS = _scenarios.firing, _scenarios.holding
fires, holds = _scenarios.fires, _scenarios.holds


def two_replies(order: str) -> Wire:
    """Two replies to one inbound activity; `order` of events, e.g. "AaBb" (sequential) or "ABba"."""
    w = Wire()
    inbound = w.inbound("hi")
    flows: dict[str, Flow] = {}
    for step in order:
        if step.isupper():
            flows[step] = w.reply(inbound, f"reply {step}")
        else:
            w.done(flows[step.upper()])
    w.done(inbound)
    w.culprit = flows["B"].seq
    return w


@fires("BP-O01")
def second_send_while_first_in_flight() -> Wire:
    return two_replies("ABab")


@holds("BP-O01")
def sends_awaited_one_by_one() -> Wire:
    return two_replies("AaBb")


@fires("BP-O02")
def later_send_completes_first() -> Wire:
    return two_replies("ABba")


@holds("BP-O02")
def overlapping_sends_complete_in_order() -> Wire:
    return two_replies("ABab")


@fires("BP-O03")
def reply_to_an_activity_delivered_later() -> Wire:
    w = Wire()
    first = w.inbound("hi")
    early = w.reply(first, "answer", replyToId="in-later")
    w.culprit = early.seq
    w.done(early)
    w.done(first)
    w.turn("later", id="in-later")
    return w


@holds("BP-O03")
def reply_to_an_activity_delivered_before() -> Wire:
    w = Wire()
    w.turn("hi", id="in-earlier")
    w.turn("later")
    return w


@fires("BP-O04")
def reply_after_the_turn_ended() -> Wire:
    w = Wire()
    inbound = w.done(w.inbound("hi"))
    late = w.reply(inbound, "late")
    w.culprit = late.seq
    w.done(late)
    return w


@holds("BP-O04")
def reply_within_the_turn() -> Wire:
    w = Wire()
    w.turn("hi")
    return w


@fires("BP-O05")
def connector_send_for_an_expect_replies_turn() -> Wire:
    w = Wire()
    inbound = w.inbound("hi", deliveryMode="expectReplies")
    send = w.reply(inbound, "sent anyway")
    w.culprit = send.seq
    w.done(send)
    w.done(inbound, 200, {"activities": []})
    return w


@holds("BP-O05")
def expect_replies_answered_in_the_body() -> Wire:
    w = Wire()
    inbound = w.inbound("hi", deliveryMode="expectReplies")
    assert inbound.activity is not None
    w.done(inbound, 200, {"activities": [w.reply_body(inbound.activity, "in the body")]})
    w.turn("normal")
    return w


@fires("BP-O06")
def message_after_end_of_conversation() -> Wire:
    w = Wire()
    inbound = w.inbound("bye")
    w.done(w.reply(inbound, None, type="endOfConversation"))
    after = w.reply(inbound, "one more thing")
    w.culprit = after.seq
    w.done(after)
    w.done(inbound)
    return w


@holds("BP-O06")
def conversation_resumed_by_the_user() -> Wire:
    w = Wire()
    inbound = w.inbound("bye")
    w.done(w.reply(inbound, None, type="endOfConversation"))
    w.done(inbound)
    w.turn("hello again")
    return w


def update_racing_a_send(returned: str) -> Wire:
    w = Wire()
    inbound = w.inbound("hi")
    send = w.reply(inbound, "original")
    update = w.update("c1", "guessed-1")
    w.culprit = update.seq
    w.done(update)
    w.done(send, body={"id": returned})
    w.done(inbound)
    return w


@fires("BP-O07")
def update_before_its_send_returned() -> Wire:
    return update_racing_a_send("guessed-1")


@holds("BP-O07")
def update_after_its_send_returned() -> Wire:
    w = Wire()
    inbound = w.inbound("hi")
    sent = sent_id(w.done(w.reply(inbound, "original")))
    w.done(w.update("c1", sent))
    w.done(inbound)
    return w


@fires("BP-O08")
def channel_timestamps_go_backwards() -> Wire:
    w = Wire()
    w.turn("first", timestamp="2024-05-01T10:00:05.000Z")
    second, _ = w.turn("second", timestamp="2024-05-01T10:00:04.000Z")
    w.culprit = second.seq
    return w


@holds("BP-O08")
def channel_timestamps_in_order_with_7_digit_fractions() -> Wire:
    w = Wire()
    w.turn("first", timestamp="2024-05-01T10:00:04.1234567Z")
    w.turn("second", timestamp="2024-05-01T10:00:04.1234568Z")
    return w


def typing_twice(gap: float) -> Wire:
    w = Wire()
    inbound = w.inbound("hi")
    w.done(w.reply(inbound, None, type="typing"))
    w.tick(gap)
    second = w.reply(inbound, None, type="typing")
    w.culprit = second.seq
    w.done(second)
    w.done(inbound)
    return w


@fires("BP-O12")
def typing_every_half_second() -> Wire:
    return typing_twice(0.5)


@holds("BP-O12")
def typing_every_two_and_a_half_seconds() -> Wire:
    return typing_twice(2.5)


def history(activities: list[dict]) -> Wire:
    w = Wire()
    w.turn("hi")
    w.done(w.call("POST", w.url("c1", suffix="/history"), {"activities": activities}), body={"id": "h1"})
    return w


def transcript_activity(activity_id: str | None, timestamp: str) -> dict:
    activity = {
        "type": "message",
        "text": "old",
        "timestamp": timestamp,
        "conversation": {"id": "c1"},
        "from": {"id": "u1"},
    }
    if activity_id:
        activity["id"] = activity_id
    return activity


@fires("BP-O13")
def history_without_ids() -> Wire:
    w = history(
        [
            transcript_activity("h-1", "2024-01-01T00:00:00Z"),
            transcript_activity(None, "2024-01-01T00:00:01Z"),
        ]
    )
    w.culprit = 4  # the second transcript activity (1 inbound, 1 reply, then the two of the upload)
    return w


@holds("BP-O13")
def history_with_ids_in_order() -> Wire:
    return history(
        [
            transcript_activity("h-1", "2024-01-01T00:00:00Z"),
            transcript_activity("h-2", "2024-01-01T00:00:01Z"),
        ]
    )


# -- the finer points -------------------------------------------------------------------------------


def test_update_of_an_id_no_send_in_flight_returns_is_foreign_once_they_complete():
    w = update_racing_a_send("something-else")
    assert "BP-O07" not in w.codes()
    [foreign] = w.of("BP-A21")
    assert foreign.seq == w.culprit and "never returned" in foreign.message


def test_update_of_an_unknown_id_with_nothing_in_flight_is_foreign_at_once():
    w = Wire()
    inbound = w.inbound("hi")
    update = w.update("c1", "never-sent")
    assert [f.rule for f in w.findings] == ["BP-A21"]  # before the update even completed
    w.done(update)
    w.done(inbound)
    assert w.findings[0].seq == update.seq


def test_only_sends_that_started_before_an_update_keep_it_pending():
    w = Wire()
    inbound = w.inbound("hi")
    first = w.reply(inbound, "first")
    update = w.update("c1", "from-first")
    second = w.reply(inbound, "second")  # started after the update: cannot be where its id came from
    w.done(first, body={"id": "other"})
    assert [f.rule for f in w.of("BP-A21")] == ["BP-A21"], "decided once the only earlier send completed"
    w.done(second, body={"id": "from-first"})
    w.done(update)
    w.done(inbound)
    assert "BP-O07" not in w.codes()


def test_reply_before_parent_is_reported_when_the_parent_arrives_and_points_back():
    w = FIRES["BP-O03"]()
    [early] = w.of("BP-O03")
    [dangling] = w.of("BP-A04")
    assert early.seq == dangling.seq == w.culprit
    assert early.details["parent_seq"] > early.seq


def test_typing_interval_uses_the_recorded_times_not_the_engine_clock():
    w = typing_twice(1.0)
    [finding] = w.of("BP-O12")
    assert 1.0 <= finding.details["interval_s"] < 1.1


def test_concurrent_sends_to_different_conversations_are_fine():
    w = Wire()
    one, two = w.inbound("hi"), w.inbound("hi", conv="c2")
    a, b = w.reply(one), w.reply(two)
    w.done(b)
    w.done(a)
    w.done(two)
    w.done(one)
    assert w.findings == []


def test_typing_from_a_timer_may_overlap_the_replies():
    # ShowTypingMiddleware sends typing from a timer task while the turn's replies go out.
    w = Wire()
    inbound = w.inbound("hi")
    typing = w.reply(inbound, None, type="typing")
    reply = w.reply(inbound, "answer")
    w.done(reply)
    w.done(typing)
    w.done(inbound)
    assert w.findings == []


def test_o01_tells_two_turns_at_once_from_one_turns_unawaited_sends():
    # Issue 11 (4): two turns processed at once are not one turn's unawaited sends.
    w = two_replies("ABab")
    [same_turn] = w.of("BP-O01")
    assert same_turn.details["cause"] == "same_turn" and "not awaited" in same_turn.message

    w = Wire(channel="directline")
    first, second = w.inbound("one"), w.inbound("two")
    a = w.reply(first, "answer one", replyToId=None)  # botbuilder-python on Direct Line: no replyToId
    b = w.reply(second, "answer two", replyToId=None)
    for flow in (a, b, first, second):
        w.done(flow)
    [overlap] = w.of("BP-O01")
    assert overlap.details["cause"] == "two_turns" and "two turns processed at once" in overlap.message

    w = Wire()
    first, second = w.inbound("one"), w.inbound("two")
    a, b = w.reply(first, "answer one"), w.reply(second, "answer two")
    for flow in (a, b, first, second):
        w.done(flow)
    [named] = w.of("BP-O01")
    assert named.details["cause"] == "two_turns" and f"turn #{first.seq}" in named.message
