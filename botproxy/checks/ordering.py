"""Ordering rules (protocol.md 3.3): did the bot send things in an order the channel can keep?

Everything here is decided from the order of events (request seen, response seen), never from the
clock, so a live check and a check of the stored session agree. The one exception is BP-O12, which is
about time itself and reads the recorded `observed_at`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..wire import protocol as p
from ..wire.streams import stream_part
from .addressing import foreign_edit  # an update that no send returned turns out foreign: BP-A21
from .base import CheckContext
from .rules import ERROR, INFO, WARNING, Rule, rule_maker
from .state import CLOSED, INBOUND, MAX_DANGLING, Conversation

TYPING_MIN_INTERVAL = 2.0  # seconds; ACT A6001 allows every two seconds


_rule = rule_maker(__name__)


RULES: tuple[Rule, ...] = (
    _rule(
        "BP-O01",
        "concurrent-sends-same-conversation",
        WARNING,
        "a send to a conversation starts before the previous send to it has its HTTP response",
        "A channel orders activities as it processes them, not as the bot meant them; two sends in flight "
        "at once to one conversation can be shown in either order, and Teams answers 412 PreconditionFailed "
        "to concurrent operations on a conversation. The message says which of two causes it is: one "
        "turn's sends not awaited (both sends belong to the same turn: the JavaScript CloudAdapter once sent "
        "a turn's replies in parallel and Web Chat showed them shuffled), or two turns of the conversation "
        "processed at once (the sends belong to different turns, or cannot be told apart because neither "
        "names the activity it answers), where each turn may await its own sends and the overlap is the "
        "bot's, or its host's, concurrency. Typing activities are left out: they are ephemeral "
        "and the SDK's ShowTypingMiddleware sends them from a timer alongside the replies by design. "
        "Source: botbuilder-js#4314 (fix PR#4322); "
        'TEAMS-DOCS 412 PreconditionFailed; DOCS-REST send-and-receive (quick successive sends "may not '
        'always render in the proper sequence").',
        "botbuilder-js#4314; TEAMS-DOCS 412; DOCS-REST send-and-receive",
        "Await each send before the next one to the same conversation (no gather/create_task for sends).",
    ),
    _rule(
        "BP-O02",
        "completion-order-inversion",
        WARNING,
        "a send to a conversation completes before an earlier-started send to the same conversation",
        "When a later send is answered first, the channel has very likely stored and shown it first: the "
        "user sees the replies in another order than the bot sent them. This is the visible consequence of "
        "BP-O01 (or of concurrent turns). Source: BotFramework-DirectLineJS#245; botframework-sdk#5699; "
        "botframework-sdk#1375.",
        "BotFramework-DirectLineJS#245; botframework-sdk#5699; botframework-sdk#1375",
        "Send sequentially per conversation; if order matters across turns, queue sends per conversation.",
    ),
    _rule(
        "BP-O03",
        "reply-before-parent",
        WARNING,
        "a `replyToId` naming an activity the channel only delivers later; on Direct Line, a reply delivered "
        "to the client before the user's message it answers",
        "The bot replied to an activity id before that activity reached it. Clients that thread replies "
        "hold such a reply until its parent shows up (Web Chat waits up to five seconds) or show it out of "
        "place. It is reported when the parent arrives, at the reply. The same goes for what a Direct Line "
        "client is given, on one stream or GET sequence: an activity whose `replyToId` names one delivered "
        "only after it, or (Python SDK bots never set `replyToId` on Direct Line, protocol.md S-2) a user's "
        "message delivered after a bot activity whose `{conversationId}|{n}` id Direct Line numbered later; "
        "then it is the channel, not the bot, that got the order wrong. Source: BotFramework-WebChat#3431 "
        "and PR#3450; DL3-SW (ids and ordering).",
        "BotFramework-WebChat#3431, PR#3450; DL3-SW",
        "Only reply to activities you have received; take `replyToId` from the turn's activity.",
    ),
    _rule(
        "BP-O04",
        "late-reply-after-turn",
        INFO,
        "a reply to an inbound activity sent after the bot's HTTP answer to that activity completed",
        "The turn was over for the channel (the bot had answered the POST) when this reply went out: a "
        "background task or fire-and-forget send. That is allowed, but it is the usual cause of replies "
        "overtaking each other (BP-O01/O02) and of sends after the conversation moved on. Source: "
        "diagnostic (protocol.md 3.3).",
        "protocol.md 3.3 (diagnostic)",
        "Finish a turn's sends before returning from the turn, or send proactively without replyToId.",
    ),
    _rule(
        "BP-O05",
        "async-reply-to-expectReplies",
        WARNING,
        "a Connector send belonging to a turn whose inbound activity had `deliveryMode: expectReplies`",
        "With expectReplies the caller (a skill host, a test client, some channels) collects the replies "
        "from the HTTP response body and does not listen for asynchronous ones: replies sent through the "
        "Connector are lost or arrive out of context. Source: ACT A3113.",
        "ACT A3113",
        "Send with `turn_context.send_activity` inside the turn (the SDK buffers them); no background sends.",
    ),
    _rule(
        "BP-O06",
        "send-after-endOfConversation",
        WARNING,
        "an outbound activity after `endOfConversation` was sent or received, before the channel resumed it",
        "endOfConversation ends the conversation for both sides; anything sent afterwards is dropped, or "
        "shows up after the client considered the conversation closed. A later inbound activity resumes "
        "the conversation (the channel used it again), so replies to it are fine. Source: DL3-SW "
        '"Ending a conversation"; ACT endOfConversation.',
        "DL3-SW Ending a conversation",
        "Send endOfConversation last, after every other activity of the conversation has completed.",
    ),
    _rule(
        "BP-O07",
        "update-before-create",
        ERROR,
        "update/delete of an id whose creating send had not returned it yet",
        "The id of a sent activity only exists once the connector returns it in the ResourceResponse. An "
        "update or delete issued before that (an id guessed, or taken from another bot instance) races "
        "with the send and fails with ActivityNotFoundInConversation when it wins. Source: CONN-SW "
        "ResourceResponse semantics; msteams-docs#6139.",
        "CONN-SW ResourceResponse; msteams-docs#6139",
        "Await the send and update/delete with the id from its ResourceResponse.",
    ),
    _rule(
        "BP-O08",
        "inbound-timestamp-regression",
        INFO,
        "channel `timestamp`s of inbound activities in one conversation going backwards",
        "Activities may arrive out of order and receivers must not reject them for it, but a bot that "
        "orders by arrival will process them in another order than the user wrote them. Recorded for "
        "context. Source: ACT A2042; botframework-sdk#5699.",
        "ACT A2042; botframework-sdk#5699",
        "Order by `timestamp` where order matters; do not assume arrival order.",
    ),
    _rule(
        "BP-O12",
        "typing-too-frequent",
        INFO,
        "bot typing activities to one conversation less than two seconds apart (stream chunks are not "
        "typing indicators: BP-S07 paces them)",
        "Senders should not send typing more often than every three seconds (two is allowed to avoid "
        "gaps); more floods the channel and is throttled on some. Measured between the requests' start "
        "times. Source: ACT A6001.",
        "ACT A6001",
        "Send typing at most every 2-3 seconds (the SDK's ShowTypingMiddleware period is 2 s).",
    ),
    _rule(
        "BP-O13",
        "history-without-ids",
        WARNING,
        "SendConversationHistory activities without unique `id`s or `timestamp`s, or out of order",
        "A transcript upload must give every activity a unique id and a timestamp so the channel can "
        "de-duplicate and order them; without them history is duplicated or shown out of order. Source: "
        "CONN-SW Conversations_SendConversationHistory; TRN T2300, T2310.",
        "CONN-SW SendConversationHistory; TRN T2310",
        "Give each transcript activity its original id and timestamp, sorted by timestamp.",
    ),
)


def parse_timestamp(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        stamp = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


# -- inbound --------------------------------------------------------------------------------------


def on_inbound(ctx: CheckContext, a: dict[str, Any], body: dict[str, Any], conv: Conversation) -> None:
    """O03 (a reply that was waiting for this activity) and O08."""
    activity_id = a["activity_id"]
    if activity_id and conv.dangling:
        early = conv.dangling.pop(activity_id, None)
        if early is not None:
            ctx.emit(
                "BP-O03",
                early,
                conv.id,
                f"replied to {activity_id!r} before the channel delivered it (it arrived as #{a['seq']})",
                {"reply_to_id": activity_id, "parent_seq": a["seq"]},
            )
    stamp = parse_timestamp(body.get("timestamp"))
    if stamp is not None:
        if conv.last_timestamp is not None and stamp < conv.last_timestamp:
            ctx.emit(
                "BP-O08",
                a,
                conv.id,
                f"timestamp {body['timestamp']} is {conv.last_timestamp - stamp:.3f}s earlier than an "
                f"activity the channel delivered before it",
                {"timestamp": body["timestamp"]},
            )
        else:
            conv.last_timestamp = stamp


def remember_dangling(conv: Conversation, reply_to_id: str, seq: int) -> None:
    dangling = conv.dangling
    if reply_to_id not in dangling:
        if len(dangling) >= MAX_DANGLING:
            del dangling[next(iter(dangling))]
        dangling[reply_to_id] = seq


# -- outbound ----------------------------------------------------------------------------------------


def after_end(ctx: CheckContext, a: dict[str, Any], conv: Conversation) -> None:
    """O06."""
    if conv.ended_seq is not None:
        ctx.emit(
            "BP-O06",
            a,
            conv.id,
            f"sent after endOfConversation (#{conv.ended_seq})",
            {"end_seq": conv.ended_seq},
        )


def on_send(ctx: CheckContext, a: dict[str, Any], conv: Conversation, reply_to_flags: int) -> None:
    """O01, O04, O05, O06 and O12 for a send (C3/C5) at the moment its request is seen."""
    seq = a["seq"]
    # Typing is ephemeral and the SDK's ShowTypingMiddleware sends it from a timer, concurrently with
    # the turn's replies by design: it neither counts as a send in flight nor is checked for overlap.
    ordered = a["type"] != "typing"
    if ordered and conv.in_flight:
        exchange_seq, (_, other) = next(iter(conv.in_flight.items()))
        other_turn = conv.flight_turns.get(exchange_seq)
        if other_turn is not None and other_turn == a["turn_seq"] and not a.get("turn_ambiguous"):
            cause, why = "same_turn", f"one turn's sends not awaited (both are turn #{other_turn}'s)"
        elif other_turn is not None and a["turn_seq"] is not None and not a.get("turn_ambiguous"):
            cause, why = "two_turns", f"two turns processed at once (turn #{a['turn_seq']} and turn #{other_turn})"
        elif a.get("turn_ambiguous"):
            cause, why = "two_turns", "two turns processed at once (several were open; which one this answers is "\
                "not on the wire)"
        else:
            cause, why = "proactive", "a send outside any turn overlapping another"
        ctx.emit(
            "BP-O01",
            a,
            conv.id,
            f"sent while send #{other} to the same conversation was still waiting for its response: {why}",
            {
                "in_flight_seq": other,
                "in_flight_exchange_seq": exchange_seq,
                "in_flight": len(conv.in_flight),
                "cause": cause,
            },
        )
    if ordered:
        conv.in_flight[a["exchange_seq"]] = (a["event"], seq)
        conv.flight_turns[a["exchange_seq"]] = a["turn_seq"]
    if reply_to_flags & CLOSED and reply_to_flags & INBOUND:
        ctx.emit(
            "BP-O04",
            a,
            conv.id,
            f"replies to {a['reply_to_id']!r} after the bot's HTTP answer to it had completed",
            {"reply_to_id": a["reply_to_id"]},
        )
    if a["turn_seq"] is not None and a["turn_seq"] in ctx.state.expect_replies:
        ctx.emit(
            "BP-O05",
            a,
            conv.id,
            f"sent through the Connector for turn #{a['turn_seq']}, whose activity asked for expectReplies",
            {"turn_seq": a["turn_seq"]},
        )
    after_end(ctx, a, conv)
    # A stream's chunks are typing activities paced by the stream rules (BP-S07), not typing indicators.
    if a["type"] == "typing" and stream_part(a["body"] if isinstance(a["body"], dict) else {}) is None:
        at = a["observed_at"]
        if at is not None:
            if conv.typing_at is not None and at - conv.typing_at < TYPING_MIN_INTERVAL:
                ctx.emit(
                    "BP-O12",
                    a,
                    conv.id,
                    f"typing {at - conv.typing_at:.2f}s after the previous typing",
                    {"interval_s": round(at - conv.typing_at, 3)},
                )
            conv.typing_at = at


def on_send_done(ctx: CheckContext, exchange: dict[str, Any], a: dict[str, Any], conv: Conversation) -> None:
    """O02: this send completed while one that started before it is still waiting."""
    mine = conv.in_flight.pop(exchange["seq"], None)
    conv.flight_turns.pop(exchange["seq"], None)
    if mine is None:
        return
    opened = mine[0]
    earlier = [(event, seq) for event, seq in conv.in_flight.values() if event < opened]
    if earlier:
        seq = min(earlier)[1]
        ctx.emit(
            "BP-O02",
            a,
            conv.id,
            f"completed before send #{seq}, which started earlier: the channel may show them in this order",
            {"overtaken_seq": seq},
        )


def resolve_edits(ctx: CheckContext, conv: Conversation, returned_id: str | None) -> None:
    """Decide pending updates/deletes once a send completes: O07 if it returned their id, A21 once no send
    that started before them is left."""
    pending = conv.pending_edits
    if returned_id is not None and returned_id in pending:
        seq, _, route = pending.pop(returned_id)
        verb = "updated" if route == p.UPDATE_ACTIVITY else "deleted"
        ctx.emit(
            "BP-O07",
            seq,
            conv.id,
            f"{verb} {returned_id!r} before the send that created it had returned that id",
            {"activity_id": returned_id},
        )
    if not pending:
        return
    oldest_open = min((event for event, _ in conv.in_flight.values()), default=None)
    for target, (seq, event, route) in list(pending.items()):
        if oldest_open is None or oldest_open > event:
            del pending[target]
            if conv.known:
                foreign_edit(ctx, seq, conv, target, route)


# -- transcripts ------------------------------------------------------------------------------------


def on_history_activity(ctx: CheckContext, a: dict[str, Any], body: dict[str, Any]) -> None:
    """O13 for one activity of a SendConversationHistory upload."""
    ids, last = ctx.state.history.setdefault(a["exchange_seq"], (set(), []))
    cid = a["url_conversation_id"] or a["conversation_id"]
    activity_id = body.get("id")
    problems = []
    if not activity_id:
        problems.append("no id")
    elif activity_id in ids:
        problems.append(f"duplicate id {activity_id!r}")
    else:
        ids.add(activity_id)
    stamp = parse_timestamp(body.get("timestamp"))
    if stamp is None:
        problems.append("no timestamp")
    elif last and stamp < last[0]:
        problems.append("timestamp earlier than the previous activity's")
    if stamp is not None:
        last[:] = [max(stamp, last[0]) if last else stamp]
    if problems:
        ctx.emit(
            "BP-O13",
            a,
            cid,
            "transcript activity: " + ", ".join(problems),
            {"problems": problems, "id": activity_id},
        )


def on_history_done(ctx: CheckContext, exchange: dict[str, Any]) -> None:
    ctx.state.history.pop(exchange["seq"], None)
