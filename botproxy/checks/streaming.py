"""Stream rules (issue 12): is a streamed reply (typing activities with a `streaminfo` entity, then a final
message; `botproxy.wire.streams`) one the channel can show?

Streams are grouped per conversation by `streamId`. The first request of a stream carries none on Teams:
the id the channel returns for it (the recorder keeps connector-returned ids) becomes the stream's id.
Severities are set so that a stream that is correct for its channel gets no error: Teams enforces its
rules with 4xx answers (errors here), Web Chat mostly ignores what it does not like (warnings or info).
Where a real SDK breaks a rule, the message says which SDK's shape it is.

Like `ordering`, decisions follow the order of events; pacing and duration read the recorded
`observed_at` of the requests.
"""

from __future__ import annotations

import json
from typing import Any

from ..wire import streams as s
from .base import CheckContext
from .rules import ERROR, INFO, WARNING, Rule, rule_maker
from .state import Conversation, Stream, Streams

TEAMS_MIN_INTERVAL = 0.9  # seconds between streaming requests; Teams asks for about one a second
TEAMS_MAX_DURATION = 120.0  # seconds; Teams ends a longer stream with 403 ContentStreamNotAllowed
COPILOT_MAX_GAP = 45.0  # seconds; Microsoft 365 Copilot times out a stream without an update that often
INFORMATIVE_MAX = 1000  # characters
ENDED_KEPT = 64  # ended stream ids remembered per conversation (for "nothing follows the final")
OPEN_KEPT = 8  # unended streams remembered per conversation
AGENTIC_ROLES = frozenset({"agenticAppInstance", "agenticInstance", "agenticUser"})  # SDKs' and spec's

_TEAMS_STREAMING = "TEAMS-DOCS streaming-ux"
_WEBCHAT = "WEBCHAT LIVESTREAMING.md"

_rule = rule_maker(__name__)


RULES: tuple[Rule, ...] = (
    _rule(
        "BP-S01",
        "stream-sequence-broken",
        ERROR,
        "a stream's `streamSequence` does not start at 1 or does not rise by one per chunk (a repeat or a "
        "step back is an error, a skipped number a warning)",
        "Teams and Web Chat order a stream's chunks by `streamSequence`: the first is 1 and each later "
        "non-final chunk adds one. Teams drops a chunk that arrives out of order (202 "
        "ContentStreamSequenceOrderPreConditionFailed) and keeps the one with the highest number, so a "
        "repeated or lower number loses text; a skipped number is tolerated but means a chunk was lost "
        "or numbered twice. The final is checked by BP-S02. Source: TEAMS-DOCS streaming-ux (REST API, "
        "error table); WEBCHAT LIVESTREAMING.md; ACT streaminfo A9240.",
        f"{_TEAMS_STREAMING}; {_WEBCHAT}; ACT A9240",
        "Number a stream's informative and streaming chunks 1, 2, 3, ... in the order they are sent.",
        alt_severity=WARNING,
        alt_when="a number was skipped",
    ),
    _rule(
        "BP-S02",
        "final-has-streamSequence",
        WARNING,
        "the final message of a stream carries a `streamSequence` (Teams: must not be set)",
        "Teams' contract says the final message of a stream must not carry `streamSequence`, and Web Chat "
        "assumes it is infinite. The Agents SDK for JavaScript sets it, one above the next number (it "
        "counts the final twice: 1, 2, 4), older Agents SDK for Python releases and teams.ts before "
        "PR#688 set it to the next number. Shipping SDKs do it, so it is a warning on Teams (its contract "
        "forbids it) and info elsewhere. Source: TEAMS-DOCS streaming-ux (REST API); microsoft/teams.ts#687; "
        "WEBCHAT LIVESTREAMING.md.",
        f"{_TEAMS_STREAMING}; microsoft/teams.ts#687; {_WEBCHAT}",
        "Leave `streamSequence` out of the final message's streaminfo entity.",
        alt_severity=INFO,
        alt_when="not on Teams",
    ),
    _rule(
        "BP-S03",
        "final-first-in-stream",
        WARNING,
        "a final stream message that is the first activity of its stream, or names no stream",
        "A final message ends a stream that earlier chunks started: Web Chat says it must not be the first "
        "activity of a livestream, and on Teams a final without the `streamId` of the chunks before it "
        "starts nothing and ends nothing. A reply with nothing to stream should be a plain message. "
        "Source: WEBCHAT LIVESTREAMING.md; TEAMS-DOCS streaming-ux (final streaming).",
        f"{_WEBCHAT}; {_TEAMS_STREAMING}",
        "Send at least one chunk before the final, and give the final the stream's `streamId`.",
    ),
    _rule(
        "BP-S04",
        "activity-after-final",
        ERROR,
        "a stream chunk or a second final naming a stream whose final was already sent",
        "After its final message a stream is complete: Teams answers 403 ContentStreamNotAllowed "
        '("not allowed on an already completed streamed message") and Web Chat ignores anything that '
        "follows. The usual cause is a chunk queued by a timer that fires after the stream was ended. "
        "Source: TEAMS-DOCS streaming-ux (error table); WEBCHAT LIVESTREAMING.md.",
        f"{_TEAMS_STREAMING}; {_WEBCHAT}",
        "Stop the chunk timer and wait for queued chunks before sending the final.",
    ),
    _rule(
        "BP-S05",
        "multiple-streaminfo",
        ERROR,
        "an activity with more than one `streaminfo` entity",
        "Senders must not include more than one streaminfo entity per activity; a receiver takes one of "
        "them, and which is unspecified. Source: ACT streaminfo A9246.",
        "ACT A9246",
        "Put one streaminfo entity on each stream activity.",
    ),
    _rule(
        "BP-S06",
        "stream-request-overlap",
        WARNING,
        "a stream's request sent before the channel answered the stream's previous request",
        "Teams asks to call the next streaming API only after the previous call succeeded: requests in "
        "flight together arrive in any order and the later-numbered one wins, and before the first answer "
        "the `streamId` is not even known. Source: TEAMS-DOCS streaming-ux (best practices, error table).",
        _TEAMS_STREAMING,
        "Await each chunk's send before the next one (the SDKs' StreamingResponse queue does).",
    ),
    _rule(
        "BP-S07",
        "stream-too-fast",
        WARNING,
        "Teams stream chunks less than about a second apart, or a stream request answered 429",
        "Teams throttles streaming: it asks for at most one streaming request a second (buffer 1.5 to 2 "
        "seconds of tokens) and answers 429 when the quota is exceeded; the Agents SDKs wait 1 s between "
        "chunks on Teams. Measured between the starts of the stream's non-final requests; the final "
        "is not paced. Source: TEAMS-DOCS streaming-ux (best practices, error table); AGENTS-PY "
        "streaming_response.py (1.0 s on Teams).",
        f"{_TEAMS_STREAMING}; AGENTS-PY streaming_response.py",
        "Buffer tokens and send a Teams chunk at most every 1 to 2 seconds; back off on 429.",
    ),
    _rule(
        "BP-S08",
        "stream-too-long",
        ERROR,
        "a Teams stream running longer than 2 minutes, or a Microsoft 365 Copilot stream without an update for 45 s",
        "Teams ends a stream after two minutes (403 ContentStreamNotAllowed, exceeded streaming time), "
        "so the rest of the answer is lost unless the bot finishes it by updating the message. Microsoft "
        "365 Copilot (channel msteams with ProductInfo COPILOT) times out a stream that has had no update "
        "for about 45 seconds; the .NET SDK sends an informative update every 35 s there. Source: "
        "TEAMS-DOCS streaming-ux (error table); AGENTS-NET StreamingResponse.cs (M365 Copilot timeout).",
        f"{_TEAMS_STREAMING}; AGENTS-NET StreamingResponse.cs",
        "Finish Teams streams within 2 minutes; on Copilot send an update at least every 35-40 s.",
        alt_severity=WARNING,
        alt_when="a Copilot stream went 45 s without an update",
    ),
    _rule(
        "BP-S09",
        "streamed-text-changed",
        ERROR,
        "a chunk whose text does not extend the previous chunk's, or a final whose text does not extend the "
        "last streamed text",
        'Each chunk carries the whole text so far ("A brown" then "A brown fox"), not a delta, and the '
        "final message carries the whole answer: Teams rejects a chunk or a final that changes what was "
        "already streamed (400, streamed content changed). Web Chat shows each chunk's text in place of "
        "the last one, so the user sees the text jump: a warning there. Informative updates are not "
        "streamed content. Source: "
        "TEAMS-DOCS streaming-ux (streamed text must contain the previous content); "
        "microsoft/Agents-for-net#251.",
        f"{_TEAMS_STREAMING}; microsoft/Agents-for-net#251",
        "Send the accumulated text in every chunk and the same text (or more) in the final.",
        alt_severity=WARNING,
        alt_when="not on Teams",
    ),
    _rule(
        "BP-S10",
        "informative-too-long",
        WARNING,
        "an informative stream update over 1000 characters",
        'Informative updates are a status line ("Searching documents..."): Teams limits them to 1 KB or '
        "1000 characters. Source: TEAMS-DOCS streaming-ux (informative message).",
        _TEAMS_STREAMING,
        "Keep informative updates short; stream the answer itself as streaming chunks.",
    ),
    _rule(
        "BP-S11",
        "final-only-content-in-chunk",
        WARNING,
        "attachments, the AI label, a sensitivity label or the feedback loop on a stream chunk",
        "Only rich text can be streamed: attachments, the AI-generated label, sensitivity labels and the "
        "feedback buttons belong on the final message, and are dropped or rejected on a chunk. Source: "
        "TEAMS-DOCS streaming-ux (final streaming).",
        _TEAMS_STREAMING,
        "Put attachments, AI and sensitivity labels and the feedback loop on the final message only.",
    ),
    _rule(
        "BP-S12",
        "concurrent-streams",
        WARNING,
        "a stream started in a conversation while another stream there was still open",
        "Teams supports one streaming response per chat at a time; a second stream before the first "
        "ended is rejected, and the first one stays open (its final never came). Source: TEAMS-DOCS "
        "streaming-ux (one concurrent streaming response per chat).",
        _TEAMS_STREAMING,
        "End each stream (final message) before starting another in the same conversation.",
    ),
    _rule(
        "BP-S13",
        "teams-stream-out-of-scope",
        WARNING,
        "a Teams stream in a group chat or channel (not personal, not Copilot), or to an agentic identity",
        "Teams streams only in one-on-one chats (and Microsoft 365 Copilot); elsewhere it answers "
        'BadArgument "streaming API is not enabled" and the SDKs fall back to one message: that try costs '
        "a refused request on every turn (info); a stream the channel accepted there is a warning. Teams "
        "does not stream to agentic identities either (roles agenticAppInstance, or agenticInstance as the "
        "spec spells it, and agenticUser). Source: TEAMS-DOCS streaming-ux (one-on-one chats); "
        "microsoft/Agents-for-net#516; AGENTS-PY streaming_response.py.",
        f"{_TEAMS_STREAMING}; microsoft/Agents-for-net#516",
        "Stream only in personal conversations; elsewhere send the answer as one message.",
        alt_severity=INFO,
        alt_when="the channel refused the stream (BadArgument) and the SDKs fall back to one message",
    ),
    _rule(
        "BP-S14",
        "stream-continued-after-rejection",
        WARNING,
        "a stream request after the channel ended the stream (403 ContentStreamNotAllowed, BadArgument); "
        "the ending itself is info",
        'The channel ends a stream with 403 ContentStreamNotAllowed when the user pressed stop ("cancelled '
        'by user"), the two minutes ran out ("exceeded streaming time"), the stream was complete or the '
        "message too large, and with BadArgument where streaming is not enabled. After that, further "
        "chunks fail; after a timeout the bot finishes the answer by updating the stream's message "
        "(PUT), which is correct and not reported. Source: TEAMS-DOCS streaming-ux (error table, stop "
        "button); AGENTS-NET StreamingResponse.cs; microsoft/teams.ts PR#635.",
        f"{_TEAMS_STREAMING}; AGENTS-NET StreamingResponse.cs; microsoft/teams.ts PR#635",
        "Stop streaming on 403 ContentStreamNotAllowed; after a timeout finish with a PUT of the message.",
        alt_severity=INFO,
        alt_when="it is the channel's answer that ended the stream",
    ),
)


def _streams(conv: Conversation) -> Streams:
    if conv.streams is None:
        conv.streams = Streams()
    return conv.streams


def on_inbound(ctx: CheckContext, a: dict[str, Any], body: dict[str, Any], conv: Conversation) -> None:
    """Learn the conversation's scope: conversationType, agentic recipient, Copilot."""
    conversation = body.get("conversation")
    kind = conversation.get("conversationType") if isinstance(conversation, dict) else None
    recipient = body.get("recipient")
    role = recipient.get("role") if isinstance(recipient, dict) else None
    copilot = s.channel_profile(a["channel_id"], body) == "msteams:COPILOT"
    if conv.streams is None and not (kind or role in AGENTIC_ROLES or copilot):
        return  # nothing to remember, and most conversations never stream
    book = _streams(conv)
    book.conversation_type = kind if isinstance(kind, str) else None
    book.agentic = role in AGENTIC_ROLES
    book.copilot = copilot


# -- a stream request -------------------------------------------------------------------------------


def on_send(
    ctx: CheckContext, a: dict[str, Any], body: dict[str, Any], conv: Conversation, *, answered: bool = True
) -> None:
    """Every stream rule that the request alone decides (all but the channel's answers). `answered` is
    False for a frame of a deliveryMode stream answer: no channel answer will come for it."""
    part = s.stream_part(body)
    if part is None:
        return
    book = _streams(conv)
    teams = (conv.channel_id or a["channel_id"] or "").lower().startswith("msteams")
    if part.infos > 1:
        ctx.emit("BP-S05", a, conv.id, f"{part.infos} streaminfo entities", {"count": part.infos})
    if part.stream_id is not None and part.stream_id in book.ended:
        ctx.emit(
            "BP-S04",
            a,
            conv.id,
            f"{part.stream_type} for stream {part.stream_id!r}, whose final was #{book.ended[part.stream_id]}",
            {"stream_id": part.stream_id, "final_seq": book.ended[part.stream_id]},
        )
        return
    stream = _stream_of(ctx, a, part, book, teams, conv)
    if stream.scope is not None and not answered:  # no channel answer to tell the SDK's fallback by
        _out_of_scope(ctx, a, stream, conv, refused=False)
    at = a["observed_at"]
    if stream.in_flight:
        ctx.emit(
            "BP-S06",
            a,
            conv.id,
            f"sent while {stream.in_flight} earlier request(s) of the stream (from #{stream.first_seq}) "
            "had no answer yet",
            {"stream_first_seq": stream.first_seq, "in_flight": stream.in_flight},
        )
    if stream.rejected is not None:
        ctx.emit(
            "BP-S14",
            a,
            conv.id,
            f"{part.stream_type} sent after the channel ended the stream ({stream.rejected})",
            {"stream_first_seq": stream.first_seq, "rejected": stream.rejected},
        )
    if teams and at is not None:
        _check_time(ctx, a, part, stream, book, at, conv)
    if part.final:
        _final(ctx, a, part, stream, book, teams, conv)
    else:
        _chunk(ctx, a, part, body, stream, teams, conv)
        if at is not None:
            stream.last_at = at
    stream.parts += 1
    if answered:
        stream.in_flight += 1
        book.by_exchange[a["exchange_seq"]] = stream


def _stream_of(
    ctx: CheckContext, a: dict[str, Any], part: s.StreamPart, book: Streams, teams: bool, conv: Conversation
) -> Stream:
    """The open stream this request belongs to, or a new one (BP-S12, S13 when it starts)."""
    if part.stream_id is not None:
        for stream in book.open:
            if stream.id == part.stream_id:
                return stream
        # A stream whose first activity got no id back (a deliveryMode stream answer has no channel
        # answer to learn it from) is the one the sender names next.
        orphans = [st for st in book.open if st.id is None and not st.in_flight and st.rejected is None]
        if orphans and part.sequence != 1:
            orphans[-1].id = part.stream_id
            return orphans[-1]
    elif part.sequence != 1 or part.final:
        # No id yet: a request sent before the first was answered belongs to the stream still without
        # one; a final without an id ends the conversation's latest stream.
        waiting = [st for st in book.open if st.id is None] or (book.open[-1:] if part.final else [])
        if waiting:
            if part.final:
                ctx.emit(
                    "BP-S03",
                    a,
                    conv.id,
                    f"final names no streamId (the stream started at #{waiting[-1].first_seq})",
                    {"stream_first_seq": waiting[-1].first_seq},
                )
            return waiting[-1]
    stream = Stream(part.stream_id, a["seq"], a["observed_at"])
    others = [st for st in book.open if st.rejected is None]
    if others:
        ctx.emit(
            "BP-S12",
            a,
            conv.id,
            f"a new stream while the stream started at #{others[-1].first_seq} was never ended",
            {"open_stream_first_seq": others[-1].first_seq, "open_stream_id": others[-1].id},
        )
    if teams and not book.copilot:
        if book.conversation_type not in (None, "personal"):
            stream.scope = (
                f"a Teams stream in a {book.conversation_type!r} conversation (streaming is for personal chats)",
                {"conversation_type": book.conversation_type},
            )
        elif book.agentic:
            stream.scope = (
                "a Teams stream to an agentic identity (Teams does not stream to agentic identities)",
                {"agentic": True},
            )
    book.open.append(stream)
    if len(book.open) > OPEN_KEPT:  # streams the bot abandoned: S12 said so when the next one began
        del book.open[0]
    return stream


def _check_time(
    ctx: CheckContext,
    a: dict[str, Any],
    part: s.StreamPart,
    stream: Stream,
    book: Streams,
    at: float,
    conv: Conversation,
) -> None:
    """S07 (pacing) and S08 (duration), from the recorded request times."""
    if book.copilot:
        since = stream.last_at if stream.last_at is not None else stream.started_at
        if since is not None and at - since > COPILOT_MAX_GAP and "BP-S08" not in stream.reported:
            stream.reported.add("BP-S08")
            ctx.emit(
                "BP-S08",
                a,
                conv.id,
                f"{at - since:.1f}s without an update on Microsoft 365 Copilot (it times out after ~45 s)",
                {"gap_s": round(at - since, 3)},
                alt=True,
            )
    elif stream.started_at is not None and at - stream.started_at > TEAMS_MAX_DURATION:
        if "BP-S08" not in stream.reported:
            stream.reported.add("BP-S08")
            ctx.emit(
                "BP-S08",
                a,
                conv.id,
                f"{at - stream.started_at:.1f}s after the stream started (Teams allows 2 minutes)",
                {"duration_s": round(at - stream.started_at, 3), "stream_first_seq": stream.first_seq},
            )
    if not part.final and stream.last_at is not None and at - stream.last_at < TEAMS_MIN_INTERVAL:
        ctx.emit(
            "BP-S07",
            a,
            conv.id,
            f"{at - stream.last_at:.2f}s after the stream's previous request (Teams: about 1 s at least)",
            {"interval_s": round(at - stream.last_at, 3)},
        )


def _chunk(
    ctx: CheckContext,
    a: dict[str, Any],
    part: s.StreamPart,
    body: dict[str, Any],
    stream: Stream,
    teams: bool,
    conv: Conversation,
) -> None:
    """S01, S09, S10, S11 for an informative or streaming chunk."""
    number = part.sequence
    if not isinstance(number, int) or isinstance(number, bool):
        ctx.emit("BP-S01", a, conv.id, f"streamSequence {number!r} is not a number", {"sequence": number})
    else:
        expected = 1 if stream.number is None else stream.number + 1
        if number < expected or (stream.number is None and number != 1):
            ctx.emit(
                "BP-S01",
                a,
                conv.id,
                f"streamSequence {number} where {expected} was due",
                {"sequence": number, "expected": expected},
            )
        elif number > expected:
            ctx.emit(
                "BP-S01",
                a,
                conv.id,
                f"streamSequence {number} skips {expected}",
                {"sequence": number, "expected": expected},
                alt=True,
            )
        stream.number = number if stream.number is None else max(number, stream.number)
    text = a["text"] or ""
    if part.stream_type == s.INFORMATIVE:
        if len(text) > INFORMATIVE_MAX:
            ctx.emit(
                "BP-S10",
                a,
                conv.id,
                f"informative text of {len(text)} characters (Teams allows 1000)",
                {"length": len(text)},
            )
    else:
        _extends(ctx, a, stream, text, teams, conv, "chunk")
        stream.text = text
    misplaced = []
    if body.get("attachments"):
        misplaced.append("attachments")
    if s.has_ai_label(body):
        misplaced.append("AI label")
    if s.has_sensitivity(body):
        misplaced.append("sensitivity label")
    misplaced += [f"feedback loop ({place})" for place in s.feedback_places(body)]
    if misplaced:
        ctx.emit(
            "BP-S11",
            a,
            conv.id,
            f"{', '.join(misplaced)} on a {part.stream_type} chunk (final message only)",
            {"fields": misplaced},
        )


def _final(
    ctx: CheckContext,
    a: dict[str, Any],
    part: s.StreamPart,
    stream: Stream,
    book: Streams,
    teams: bool,
    conv: Conversation,
) -> None:
    """S02, S03, S09 for a final; the stream ends."""
    number = part.sequence
    if number is not None:
        shape = ""
        if stream.number is not None and number == stream.number + 2:
            shape = " (one number skipped: the Agents SDK for JavaScript's final)"
        elif stream.number is not None and number == stream.number + 1:
            shape = " (the next number, as older Agents SDK for Python releases send it)"
        ctx.emit(
            "BP-S02",
            a,
            conv.id,
            f"final carries streamSequence {number!r}{shape}",
            {"sequence": number, "last_sequence": stream.number},
            alt=not teams,
        )
    if stream.parts == 0:
        ctx.emit("BP-S03", a, conv.id, "the stream's first activity is its final", {})
    _extends(ctx, a, stream, a["text"] or "", teams, conv, "final")
    _end(book, stream, a["seq"])


def _extends(
    ctx: CheckContext, a: dict[str, Any], stream: Stream, text: str, teams: bool, conv: Conversation, what: str
) -> None:
    if stream.text and not text.startswith(stream.text):
        ctx.emit(
            "BP-S09",
            a,
            conv.id,
            f"{what} text does not start with the text streamed before ({_short(stream.text)})",
            {"previous": _short(stream.text), "text": _short(text)},
            alt=not teams,
        )


def _end(book: Streams, stream: Stream, seq: int) -> None:
    if stream in book.open:
        book.open.remove(stream)
    if stream.id is not None:
        book.ended[stream.id] = seq
        while len(book.ended) > ENDED_KEPT:
            del book.ended[next(iter(book.ended))]


def on_update(ctx: CheckContext, a: dict[str, Any], conv: Conversation) -> None:
    """A PUT of an open stream's message finishes it (the SDKs' way after a Teams timeout): no finding."""
    book = conv.streams
    target = a["url_activity_id"]
    if book is None or not target:
        return
    for stream in book.open:
        if stream.id == target:
            _end(book, stream, a["seq"])
            return


# -- the channel's answers ----------------------------------------------------------------------------


def on_send_done(ctx: CheckContext, exchange: dict[str, Any], sent: dict[str, Any], conv: Conversation) -> None:
    """The stream learns its id from the first answer; rejections (S14), 429 (S07)."""
    book = conv.streams
    stream = book.by_exchange.pop(exchange["seq"], None) if book is not None else None
    if book is None or stream is None:
        return
    stream.in_flight -= 1
    status = exchange["status"] if exchange["status"] is not None else 599
    ending = _rejection(exchange) if status >= 300 else None
    if stream.scope is not None:
        refused = ending is not None and "BadArgument" in ending
        _out_of_scope(ctx, sent, stream, conv, refused=refused)
        if refused:
            stream.rejected = ending
            return
    if status < 300:
        if stream.id is None and sent["activity_id"]:
            stream.id = sent["activity_id"]
            if stream not in book.open:  # its final went out before this answer came
                book.ended[stream.id] = sent["seq"]
        return
    if status == 429:
        ctx.emit("BP-S07", sent, conv.id, "the channel throttled the stream (429)", {"status": 429})
        return
    if ending is not None and stream.rejected is None:
        stream.rejected = ending
        ctx.emit(
            "BP-S14",
            sent,
            conv.id,
            f"the channel ended the stream: {ending} ({status})",
            {"status": status, "rejected": ending, "error_code": exchange.get("error_code")},
            alt=True,
        )


def _out_of_scope(ctx: CheckContext, a: dict[str, Any], stream: Stream, conv: Conversation, *, refused: bool) -> None:
    assert stream.scope is not None
    message, details = stream.scope
    stream.scope = None
    if refused:
        message += "; the channel refused it (BadArgument) and the SDKs then send one message"
    ctx.emit("BP-S13", a, conv.id, message, {**details, "refused": refused}, alt=refused)


_ENDINGS = (
    ("cancelled by user", "cancelled by the user"),
    ("exceeded streaming time", "streaming time exceeded"),
    ("already completed", "the stream was already complete"),
    ("size too large", "message too large"),
)


def _rejection(exchange: dict[str, Any]) -> str | None:
    """How the channel's answer ended the stream, or None when it is no streaming rejection."""
    answer = exchange.get("response_body") or ""
    text = (answer if isinstance(answer, str) else json.dumps(answer)).lower()
    code = (exchange.get("error_code") or "").lower()
    if "streaming api is not enabled" in text:
        return "streaming is not enabled here (BadArgument)"
    if exchange["status"] == 403 and ("contentstreamnotallowed" in text or code == "contentstreamnotallowed"):
        for marker, ending in _ENDINGS:
            if marker in text:
                return ending
        return "content stream not allowed"
    return None


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")
