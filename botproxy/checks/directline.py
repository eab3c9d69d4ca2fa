"""Direct Line rules (protocol.md 3.2 BP-I06..I10, 3.3 BP-O09..O11, and the client side of BP-O03): does a
Direct Line client post what Direct Line takes, and does Direct Line deliver in an order a client can keep?

The recorder gives the client leg as `from_client` activities (what a client POSTs; the id Direct Line
assigned is filled in when the POST completes) and `to_client` activities (what GET ActivitySets and
WebSocket stream frames deliver, each with its `watermark`). What happens here is decided from event order
alone, like the other families:

- a post is checked when its request is seen (I06, I07, I08, I10) and when it completes (I09, O09 ids);
- a GET's delivered activities are checked when the GET completes (its URL holds the watermark it asked
  for, which the activities do not carry); a stream frame's when the frame is seen;
- order is judged per delivery path, where Direct Line (not the client) chooses what comes next: one
  WebSocket connection, or a chain of GETs each asking from the watermark the previous one returned. A
  client may well open a stream and fetch history by GET; across paths only duplicates count (O11);
- watermarks are opaque strings: two are compared as numbers only when both are a number after the same
  prefix (`"12"`, `"0000a-42"`); otherwise only a reset to an all-zero watermark (`"0"`) counts;
- the recording cannot tell two clients of one conversation apart (their credentials are redacted), so
  the rules that could mistake a second client for a confused one (O10, O11) are info.

State per conversation is ids, counters and a few bounded queues (`DirectLineState`), never bodies.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..model import Direction
from ..wire import protocol as p
from .base import CheckContext
from .rules import ERROR, INFO, WARNING, Rule, rule_maker
from .state import MAX_DANGLING, Conversation, DeliveryPath, DirectLineState

# Direct Line 3.0 api-reference: "must not exceed 256K characters" serialized; 150K is the early warning.
OVERSIZE = 256 * 1024
LARGE = 150 * 1024
_ENHANCED_AUTH_PREFIX = "dl_"

POST_ROUTES = frozenset({p.DL_POST_ACTIVITY, p.DL1_POST_MESSAGE})
GET_ROUTES = frozenset({p.DL_GET_ACTIVITIES, p.DL1_GET_MESSAGES})
UPLOAD_ROUTES = frozenset({p.DL_UPLOAD, p.DL1_UPLOAD})
TOKEN_ROUTES = frozenset({p.DL_GENERATE_TOKEN, p.DL_START_CONVERSATION})

# Flags of an id in `SessionState.dl_ids` (its own IdBook: the bot-side flags mean something else).
DELIVERED = 1  # Direct Line delivered it to a client of the conversation

MAX_STREAMS = 8  # stream connections remembered per conversation (a closed one is never announced)
MAX_USERS = 16
_SMALL_BODY = 4096  # an empty ActivitySet's body is read for its watermark only when it is this small
_NULL_WORDS = frozenset({"null", "undefined", "none"})
_REQUESTS = {
    p.DL_GET_ACTIVITIES: "GET activities",
    p.DL1_GET_MESSAGES: "GET messages",
    p.DL_RECONNECT: "reconnect",
    p.DL_STREAM: "the stream",
}


_rule = rule_maker(__name__)


RULES: tuple[Rule, ...] = (
    _rule(
        "BP-I06",
        "dl-missing-from",
        WARNING,
        "a Direct Line client posts an activity without `from.id`, or uploads without `?userId=`",
        "Direct Line only knows who is talking when the client says so: the 3.0 schema says a client must "
        "populate `from` with a user id it chose, and Direct Line 1.1 assigns an id of its own when none is "
        'given, "which typically results in unexpected behavior": the bot may see a new user on every post, '
        "so user state and stored conversation references break. An upload names its sender with `userId`. "
        "When the conversation's token was issued for a user, Direct Line uses that user instead (info). "
        "Source: DL3-SW Activity.from; DL11-SW Message.from; DL3-SW Conversations_Upload.",
        "DL3-SW Activity.from; DL11-SW Message.from",
        "Send `from: {id: <a stable user id>}` on every post (directlinejs `setUserId`) and `?userId=` on uploads.",
        alt_severity=INFO,
        alt_when="the conversation's token names the user",
    ),
    _rule(
        "BP-I07",
        "dl-from-changed",
        WARNING,
        "a Direct Line client's `from.id` changes within a conversation, or differs from its token's user",
        "One Direct Line conversation's client speaks for one user. A post with another `from.id` than the "
        "client's earlier posts makes the bot see a new user mid-conversation (user state, dialogs and "
        "references split), and when the token was issued for a user, Direct Line replaces any other "
        "`from.id` with the token's user (enhanced authentication's guard against impersonation), so the "
        "client believes it is someone the bot never hears of. With enhanced authentication the token's "
        "user id must also start with `dl_` (info, at the token request: whether it is on is not visible). "
        "Source: DOCS-REST DL3 authentication.",
        "DOCS-REST DL3 authentication",
        "Keep one user id per client and conversation, the one the token was issued for when there is one.",
        alt_severity=INFO,
        alt_when="a token is issued for a user id without the `dl_` prefix",
    ),
    _rule(
        "BP-I08",
        "dl-path-body-mismatch",
        WARNING,
        "a Direct Line post whose body `conversation.id` differs from the conversation in its URL",
        "Direct Line files a posted activity under the URL's conversation and overwrites `conversation`. A "
        "different id in the body is a client that mixed up two conversations (a stale reference, one client "
        "object shared by two chats): the message lands in a conversation the client did not mean. Source: "
        "DL3-SW Conversations_PostActivity.",
        "DL3-SW PostActivity",
        "Post to `/conversations/{id}/activities` with the body's own `conversation.id`, or leave it out.",
    ),
    _rule(
        "BP-I09",
        "dl-multiple-activities",
        ERROR,
        "a Direct Line post whose body is a JSON array (several activities in one request)",
        "PostActivity takes exactly one activity per request and answers one ResourceResponse id; an array "
        "is rejected, so none of its activities reaches the bot. Source: DOCS-REST DL3 api-reference "
        '("single activity per request"); DL3-SW Conversations_PostActivity.',
        "DOCS-REST DL3 api-reference; DL3-SW PostActivity",
        "Post each activity in a request of its own, awaiting each response before the next.",
    ),
    _rule(
        "BP-I10",
        "dl-oversize",
        WARNING,
        "a Direct Line client activity over 256K characters serialized (info above 150K)",
        "Direct Line rejects an activity whose JSON is longer than 256K characters; inline base64 images or "
        "large channelData get there quickly, and a bot that echoes such content meets the smaller limits of "
        "other channels. Measured as the compact JSON of the activity as recorded (secrets redacted). "
        "Source: DOCS-REST DL3 api-reference.",
        "DOCS-REST DL3 api-reference",
        "Send files through `/upload` (or as a `contentUrl`) instead of inlining them in the activity.",
        alt_severity=INFO,
        alt_when="it is over 150K but within the 256K limit",
    ),
    _rule(
        "BP-O09",
        "dl-watermark-regression",
        WARNING,
        "Direct Line watermarks or `{conversationId}|{n}` ids going backwards on one stream or GET "
        "sequence, or in the ids of successive posts",
        "A client resumes from the last watermark it was given, so a watermark that goes backwards or resets "
        "to 0 makes it fetch and show old activities again, and a stream whose numbering restarted stops "
        "delivering until its count catches up. Judged per delivery path (one WebSocket and its streamUrl's "
        "watermark; a GET answered with an older watermark than it asked for), from the `|n` of the ids "
        "delivered on one path, and from the ids returned to posts that did not overlap. Watermarks are "
        "opaque: compared as numbers only when both are a number after the same prefix, else only a reset "
        "to an all-zero one counts. Source: BotFramework-DirectLineJS#242; DirectLineJS#121; "
        "BotFramework-Services#149.",
        "BotFramework-DirectLineJS#242, #121; BotFramework-Services#149",
        "A channel fault: report it; meanwhile have the client de-duplicate by id and keep its newest watermark.",
    ),
    _rule(
        "BP-O10",
        "dl-null-watermark-overwrite",
        INFO,
        "a Direct Line client asks with a watermark older than one it was given, or with `null` after a null",
        "Direct Line may deliver a null or missing watermark, which a client must ignore, keeping the last "
        "non-null one. A client that lets the null overwrite it asks again without a watermark (or with "
        "`watermark=null`) and is given the conversation again, or, reconnecting, misses what happened in "
        "between; one that asks with an older watermark re-reads what it had. Compared with the watermarks "
        "delivered in the conversation before the request was made; a second client of the conversation "
        "(another tab) can look the same, hence info. Source: DL3-SW (a null or missing watermark should be "
        "ignored).",
        "DL3-SW watermark",
        "Replace the stored watermark only with a non-null one (as directlinejs does).",
    ),
    _rule(
        "BP-O11",
        "dl-duplicate-delivery",
        INFO,
        "the same activity id delivered to a conversation's clients twice (reported once per conversation)",
        "Direct Line may deliver an activity over the WebSocket and again to a GET made while the stream is "
        "open, and replays on reconnect from an old watermark; a client that does not de-duplicate by `id` "
        "shows it twice. Recorded so you know the client received duplicates (each client of a conversation "
        "also gets every activity, and the recording cannot tell clients apart). Source: DL3-SW timing "
        "considerations; BotFramework-DirectLineJS#354, #81.",
        "DL3-SW timing considerations; BotFramework-DirectLineJS#354, #81",
        "De-duplicate delivered activities by `id` in the client, and do not poll while the stream is open.",
        once_per_conversation=True,
    ),
)


def _state(conv: Conversation) -> DirectLineState:
    if conv.dl is None:
        conv.dl = DirectLineState()
    return conv.dl


def _conversation(ctx: CheckContext, cid: str | None) -> Conversation | None:
    return ctx.state.conversation(cid) if cid else None


# -- watermarks and ids ------------------------------------------------------------------------------

_NUMBERED = re.compile(r"(.*?)(\d+)")


def older(new: str, old: str) -> bool:
    """Whether watermark `new` is before `old`, as far as opaque strings can tell (see the module doc)."""
    if new == old:
        return False
    a, b = _NUMBERED.fullmatch(new), _NUMBERED.fullmatch(old)
    if a is not None and b is not None and a.group(1) == b.group(1):
        return int(a.group(2)) < int(b.group(2))
    return _zero(new) and not _zero(old)


def _zero(watermark: str) -> bool:
    return bool(watermark) and watermark.strip("0") == ""


def sequence_number(activity_id: str | None, conversation_id: str) -> int | None:
    """n of a Direct Line id `{conversationId}|{n}` of this conversation (a convention, not a contract)."""
    if not activity_id or not activity_id.startswith(conversation_id + "|"):
        return None
    rest = activity_id[len(conversation_id) + 1 :]
    return int(rest) if rest.isdigit() else None


def _query(url: str | None, name: str) -> str | None:
    """A query parameter of a URL ('' when present without a value), or None when absent."""
    query = urlsplit(url or "").query
    if not query:
        return None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == name:
            return value
    return None


def _body_watermark(exchange: dict[str, Any]) -> str | None:
    """The watermark of a small ActivitySet/MessageSet that delivered no activities."""
    raw = exchange.get("response_body")
    if not raw or len(raw) > _SMALL_BODY:
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return p.dl_delivered(exchange["route"], body)[1]


# -- activities ------------------------------------------------------------------------------------------


def on_activity(ctx: CheckContext, a: dict[str, Any], body: dict[str, Any]) -> None:
    """A client's post when its request is seen; a stream frame's activities when the frame is seen. GET
    deliveries wait for `on_exchange_done`, which knows the watermark the GET asked for."""
    if a["direction"] == Direction.FROM_CLIENT:
        if a["source"] == "request" and a["route"] in POST_ROUTES:
            _posted(ctx, a, body)
    elif a["source"] == "stream":
        conv = _conversation(ctx, a["url_conversation_id"] or a["conversation_id"])
        if conv is not None:
            _streamed(ctx, a, body, conv, _state(conv))


def _posted(ctx: CheckContext, a: dict[str, Any], body: dict[str, Any]) -> None:
    """I06, I07, I08, I10 for one activity a client posts."""
    url_cid = a["url_conversation_id"]
    conv = _conversation(ctx, url_cid or a["conversation_id"])
    if conv is None:
        return
    dl = _state(conv)
    cid = conv.id
    user = a["from_id"]
    if not user:
        named = dl.token_user
        message = "posted without from.id" + (
            f": Direct Line will use the token's user {named!r}" if named else ": nobody knows who sent it"
        )
        ctx.emit("BP-I06", a, cid, message, {"token_user": named}, alt=named is not None)
    else:
        if len(dl.users) < MAX_USERS:
            dl.users.add(user)
        expected = dl.token_user or dl.user
        if expected is None:
            dl.user = user
        elif user != expected:
            whose = "the token was issued for" if dl.token_user else "the client posted as before"
            ctx.emit(
                "BP-I07",
                a,
                cid,
                f"posted as from.id {user!r}, but {whose} {expected!r}",
                {"from_id": user, "expected": expected, "token_user": dl.token_user is not None},
            )
    body_cid = p.conversation_id(body)
    if url_cid and body_cid and body_cid != url_cid:
        ctx.emit(
            "BP-I08",
            a,
            cid,
            f"posted to conversation {url_cid!r} (URL) but the body says conversation.id {body_cid!r}",
            {"url_conversation_id": url_cid, "body_conversation_id": body_cid},
        )
    if body:
        size = len(json.dumps(body, ensure_ascii=False, separators=(",", ":")))
        if size > LARGE:
            over = size > OVERSIZE
            ctx.emit(
                "BP-I10",
                a,
                cid,
                f"the activity is {size:,} characters of JSON"
                + (" (Direct Line takes 256K)" if over else ", close to Direct Line's 256K limit"),
                {"chars": size, "limit": OVERSIZE},
                alt=not over,
            )
    dl.post_floor.setdefault(a["exchange_seq"], dl.posted_n)


def _streamed(
    ctx: CheckContext, a: dict[str, Any], body: dict[str, Any], conv: Conversation, dl: DirectLineState
) -> None:
    """O09 (frame watermark) and the per-activity checks for an activity a stream frame delivered."""
    stream = dl.streams.get(a["exchange_seq"])
    if stream is None:  # its handshake was not seen as completed (cannot happen with the recorder's events)
        stream = _new_stream(dl, a["exchange_seq"], None)
    watermark = a["watermark"]
    if not dl.marks or dl.marks[-1][0] != a["event"]:  # one mark per frame
        dl.marks.append((a["event"], watermark))
    if watermark is not None:
        if stream.watermark is not None and older(watermark, stream.watermark):
            ctx.emit(
                "BP-O09",
                a,
                conv.id,
                f"{stream.name} delivered watermark {watermark!r} after {stream.watermark!r}",
                {"watermark": watermark, "previous": stream.watermark, "path": stream.name},
            )
        stream.watermark = watermark
    _delivered(ctx, a, body, conv, dl, stream)


def _delivered(
    ctx: CheckContext,
    a: dict[str, Any],
    body: dict[str, Any],
    conv: Conversation,
    dl: DirectLineState,
    path: DeliveryPath,
) -> None:
    """O11, O03 and the id half of O09 for one activity delivered to a client on `path`."""
    ids = ctx.state.dl_ids
    activity_id = a["activity_id"]
    waited = False
    if activity_id:
        if ids.flags(conv, activity_id) & DELIVERED:
            ctx.emit(
                "BP-O11",
                a,
                conv.id,
                f"{activity_id!r} delivered again ({path.name}): a client of this conversation already had it",
                {"activity_id": activity_id, "path": path.name},
                conv=conv,
            )
            return  # a repeat says nothing about the order of new activities
        ids.add(conv, activity_id, DELIVERED)
        early = dl.dangling.pop(activity_id, None) if dl.dangling else None
        if early is not None and early[1] is path:
            waited = True
            ctx.emit(
                "BP-O03",
                early[0],
                conv.id,
                f"delivered to the client before {activity_id!r}, the activity it replies to (#{a['seq']})",
                {"reply_to_id": activity_id, "parent_seq": a["seq"], "path": path.name},
            )
    n = sequence_number(activity_id, conv.id)
    if n is not None:
        user = _from_user(a, body, dl)
        if path.last_n is not None and n < path.last_n and not waited:
            answer = next((seq for later, seq in path.recent if later > n), None) if user else None
            if answer is not None:
                ctx.emit(
                    "BP-O03",
                    answer,
                    conv.id,
                    f"delivered to the client before the user's {activity_id!r} (#{a['seq']}), which Direct "
                    f"Line numbered earlier",
                    {"user_activity_id": activity_id, "parent_seq": a["seq"], "path": path.name},
                )
            else:
                ctx.emit(
                    "BP-O09",
                    a,
                    conv.id,
                    f"{path.name} delivered {activity_id!r} after |{path.last_n}: the id sequence went back",
                    {"activity_id": activity_id, "previous_n": path.last_n, "path": path.name},
                )
        path.last_n = n
        if not user:
            path.recent.append((n, a["seq"]))
    reply_to = a["reply_to_id"]
    if reply_to and reply_to != activity_id and not ids.flags(conv, reply_to) & DELIVERED:
        if len(dl.dangling) >= MAX_DANGLING:
            del dl.dangling[next(iter(dl.dangling))]
        dl.dangling.setdefault(reply_to, (a["seq"], path))


def _from_user(a: dict[str, Any], body: dict[str, Any], dl: DirectLineState) -> bool:
    """Whether a delivered activity is a user's: sent with a from.id a client posted with, or role user."""
    if a["from_id"] is not None and a["from_id"] in dl.users:
        return True
    sender = body.get("from")
    return isinstance(sender, dict) and sender.get("role") == "user"


def _new_stream(dl: DirectLineState, exchange_seq: int, watermark: str | None) -> DeliveryPath:
    if len(dl.streams) >= MAX_STREAMS:
        del dl.streams[next(iter(dl.streams))]
    stream = dl.streams[exchange_seq] = DeliveryPath(f"stream #{exchange_seq}", watermark)
    return stream


# -- completed exchanges -----------------------------------------------------------------------------------


def on_exchange_done(ctx: CheckContext, exchange: dict[str, Any], activities: list[dict[str, Any]]) -> None:
    route = exchange["route"]
    if route in POST_ROUTES:
        _post_done(ctx, exchange, activities)
    elif route in GET_ROUTES:
        _get_done(ctx, exchange, activities)
    elif route == p.DL_STREAM:
        conv = _conversation(ctx, exchange["conversation_id"])
        if conv is not None:
            dl = _state(conv)
            asked = _query(exchange["url"], "watermark")
            _asked(ctx, exchange, conv, dl, asked, None)
            if exchange["status"] == 101:
                _new_stream(dl, exchange["seq"], asked or None)
    elif route == p.DL_RECONNECT:
        conv = _conversation(ctx, exchange["conversation_id"])
        if conv is not None:
            _asked(ctx, exchange, conv, _state(conv), _query(exchange["url"], "watermark"), None)
    elif route in TOKEN_ROUTES:
        _token_issued(ctx, exchange)
    elif route in UPLOAD_ROUTES and not _query(exchange["url"], "userId"):
        conv = _conversation(ctx, exchange["conversation_id"])
        named = _state(conv).token_user if conv is not None else None
        ctx.emit(
            "BP-I06",
            None,
            exchange["conversation_id"],
            "uploaded without ?userId=: nobody knows who sent the file",
            {"exchange_seq": exchange["seq"], "token_user": named},
            alt=named is not None,
        )


def _post_done(ctx: CheckContext, exchange: dict[str, Any], activities: list[dict[str, Any]]) -> None:
    """I09, and O09 for the id Direct Line returned to a post."""
    posted = [a for a in activities if a["direction"] == Direction.FROM_CLIENT]
    raw = exchange.get("request_body")
    if exchange["route"] == p.DL_POST_ACTIVITY and isinstance(raw, str) and raw.lstrip().startswith("["):
        ctx.emit(
            "BP-I09",
            posted[0] if posted else None,
            exchange["conversation_id"],
            f"one POST carried {len(posted)} activities as a JSON array; Direct Line takes one per request",
            {"exchange_seq": exchange["seq"], "activities": len(posted), "status": exchange["status"]},
        )
    conv = _conversation(ctx, exchange["conversation_id"])
    if conv is None or conv.dl is None:
        return
    dl = conv.dl
    floor = dl.post_floor.pop(exchange["seq"], None)
    if len(posted) != 1 or exchange["status"] is None or exchange["status"] >= 300:
        return
    n = sequence_number(posted[0]["activity_id"], conv.id)
    if n is None:
        return
    if floor is not None and n <= floor:
        ctx.emit(
            "BP-O09",
            posted[0],
            conv.id,
            f"Direct Line returned {posted[0]['activity_id']!r} to this post, not after |{floor} it returned "
            f"to an earlier one",
            {"activity_id": posted[0]["activity_id"], "previous_n": floor},
        )
    dl.posted_n = n


def _get_done(ctx: CheckContext, exchange: dict[str, Any], activities: list[dict[str, Any]]) -> None:
    """O10 for the watermark a GET asked with; O09, O11, O03 for what it delivered."""
    conv = _conversation(ctx, exchange["conversation_id"])
    if conv is None:
        return
    dl = _state(conv)
    delivered = [a for a in activities if a["direction"] == Direction.TO_CLIENT]
    asked = _query(exchange["url"], "watermark")
    first = delivered[0] if delivered else None
    _asked(ctx, exchange, conv, dl, asked, first)
    status = exchange["status"]
    if status is None or status >= 300:
        return
    given = delivered[0]["watermark"] if delivered else _body_watermark(exchange)
    asked = asked or None
    path = dl.poll
    if path is None or path.watermark != asked:  # not a continuation: history, another client, a restart
        path = dl.poll = DeliveryPath("the GET sequence", asked)
    if given is not None and asked is not None and older(given, asked):
        ctx.emit(
            "BP-O09",
            first,
            conv.id,
            f"GET asked from watermark {asked!r} and was answered with older watermark {given!r}",
            {"exchange_seq": exchange["seq"], "watermark": given, "asked": asked},
        )
    dl.marks.append((exchange["closed"], given))
    for a in delivered:
        _delivered(ctx, a, a["body"] if isinstance(a["body"], dict) else {}, conv, dl, path)
    if given is not None:
        path.watermark = given


def _asked(
    ctx: CheckContext,
    exchange: dict[str, Any],
    conv: Conversation,
    dl: DirectLineState,
    asked: str | None,
    where: dict[str, Any] | None,
) -> None:
    """O10: the watermark a client request carried, against what was delivered before it was made."""
    if not dl.marks:
        return
    opened = exchange["opened"]
    latest: tuple[int, str | None] | None = None
    known: str | None = None
    for event, watermark in reversed(dl.marks):
        if event >= opened:
            continue
        if latest is None:
            latest = (event, watermark)
        if watermark is not None:
            known = watermark
            break
    if known is None or latest is None:
        return
    details = {"exchange_seq": exchange["seq"], "asked": asked, "last_watermark": known}
    what = _REQUESTS.get(exchange["route"], exchange["route"])
    if asked is not None and asked.strip().lower() in _NULL_WORDS:
        message = f"{what} asked with watermark={asked}; the last non-null watermark delivered was {known!r}"
    elif not asked and latest[1] is None:
        message = (
            f"{what} asked without a watermark right after Direct Line delivered a null one; the last non-null "
            f"one was {known!r}"
        )
    elif asked and older(asked, known):
        message = f"{what} asked from watermark {asked!r}, older than {known!r} delivered before"
    else:
        return
    ctx.emit("BP-O10", where, conv.id, message, details)


def _token_issued(ctx: CheckContext, exchange: dict[str, Any]) -> None:
    """Learn the user a token (or a started conversation) was issued for; I07 info without `dl_`."""
    status = exchange["status"]
    raw, answer = exchange.get("request_body"), exchange.get("response_body")
    if status is None or status >= 300 or not raw or not answer or len(raw) > _SMALL_BODY:
        return
    try:
        request, response = json.loads(raw), json.loads(answer)
    except ValueError:
        return
    user = p.account_id(request, "user") if isinstance(request, dict) else None
    cid = p.str_field(response, "conversationId") if isinstance(response, dict) else None
    if not user or not cid:
        return
    dl = _state(ctx.state.conversation(cid))
    if dl.token_user is None:
        dl.token_user = user
    if exchange["route"] == p.DL_GENERATE_TOKEN and not user.startswith(_ENHANCED_AUTH_PREFIX):
        ctx.emit(
            "BP-I07",
            None,
            cid,
            f"token issued for user {user!r}: enhanced authentication needs user ids starting with 'dl_'",
            {"exchange_seq": exchange["seq"], "user": user},
            alt=True,
        )
