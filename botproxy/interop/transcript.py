"""Bot Framework `.transcript` files: read the three JSON shapes, normalise producer quirks, write them.

Reading gives, per conversation, the activities in file order, each marked as the user's or the bot's.
`events()` turns those into the HTTP events a recording of the same conversation would have seen (the
channel posting the user's activity to the bot, the bot calling the Connector for each of its own), so
an imported transcript goes through `SessionRecorder` like live traffic: same turn model, same checks.

Shapes: a bare JSON array of activities, `{"transcript": [...]}` (transcript spec T2100) and the
Connector's history shape `{"activities": [...]}`; UTF-8 with or without a BOM.

Quirks normalised: no `serviceUrl` (a placeholder, `PLACEHOLDER_SERVICE_URL`, is used and marked in
the session notes); no `replyToId` (a bot activity belongs to the turn of the user activity before it);
roles missing (the sender is told from the ids the conversation's roles taught); `messageUpdate` records
(an update of the target id) and updates rewritten in place (nothing to do: the message is simply its
latest version); `messageDelete` records and tombstones (a delete of the target id; a tombstone whose
message is not in the file stands for a message that was sent and then deleted).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import UsageError
from ..record.recorder import RequestSeen, ResponseSeen
from .encoding import json_bytes

PLACEHOLDER_SERVICE_URL = "https://transcript.invalid/"
BOT_URL = "http://bot.transcript.invalid/api/messages"
USER, BOT = "user", "bot"
JSON_HEADERS = [("Content-Type", "application/json; charset=utf-8")]


OBJECT_FIELDS = ("from", "recipient", "conversation")


class NotATranscript(ValueError):
    """The JSON is not one of the transcript shapes (the caller decides whether another reader fits)."""


@dataclass
class Conversation:
    id: str
    activities: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (user|bot, activity)


@dataclass
class Transcript:
    conversations: dict[str, Conversation]
    placeholder_service_url: bool = False
    # Every activity in file order, files one after the other: (file number, conversation, sender, activity).
    order: list[tuple[int, str, str, dict[str, Any]]] = field(default_factory=list)


def load_json(path: Path) -> Any:
    """A file's JSON, UTF-8 with or without a BOM; UsageError when it is not JSON."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise NotATranscript(f"not JSON ({exc})") from exc


def activity_list(data: Any) -> list[dict[str, Any]]:
    """The activities of one of the three shapes; NotATranscript for anything else."""
    items = data
    if isinstance(data, dict):
        for key in ("transcript", "activities"):
            if isinstance(data.get(key), list):
                items = data[key]
                break
        else:
            raise NotATranscript("a JSON object without a `transcript` or `activities` array")
    if not isinstance(items, list):
        raise NotATranscript("not a JSON array of activities")
    if any(not isinstance(a, dict) for a in items):
        raise NotATranscript("the array holds something other than activity objects")
    for n, a in enumerate(items, 1):
        # The schema's object fields (ChannelAccount, ConversationAccount): what is read from them
        # below trusts that they are objects, so anything else is refused here, in one place.
        for key in OBJECT_FIELDS:
            if a.get(key) is not None and not isinstance(a[key], dict):
                raise NotATranscript(f"activity {n}: `{key}` must be an object, not {type(a[key]).__name__}")
    activities = [a for a in items if a.get("type")]  # T2008: children without a type are not processed
    if items and not activities:
        raise NotATranscript("no element has an activity `type`")
    return activities


def read(datas: list[tuple[str, Any]]) -> Transcript:
    """Parsed transcripts (name, JSON), several files at once, into conversations in file order."""
    conversations: dict[str, Conversation] = {}
    order: list[tuple[int, str, str, dict[str, Any]]] = []
    placeholder = False
    for number, (name, data) in enumerate(datas):
        activities = [json.loads(json.dumps(a)) for a in activity_list(data)]  # our own copies
        senders = _senders(activities)
        default_conversation = Path(name).stem or "transcript"
        for activity in activities:
            conversation = activity.get("conversation")
            if not isinstance(conversation, dict) or not conversation.get("id"):
                # A record without a conversation (an invoke response) is part of the one before it.
                activity["conversation"] = {**(conversation or {}), "id": default_conversation}
            else:
                default_conversation = str(conversation["id"])
            if not activity.get("serviceUrl"):
                activity["serviceUrl"] = PLACEHOLDER_SERVICE_URL
                placeholder = True
            cid = str(activity["conversation"]["id"])
            sender = senders(activity)
            for key in ("from", "recipient"):
                if isinstance(activity.get(key), dict) and set(activity[key]) <= {"role"}:
                    del activity[key]  # a role without an account: botproxy export's mark of "none sent"
            conversations.setdefault(cid, Conversation(cid)).activities.append((sender, activity))
            order.append((number, cid, sender, activity))
    return Transcript(conversations, placeholder, order)


def _senders(activities: list[dict[str, Any]]) -> Any:
    """Who sent an activity: `from.role` when it says user or bot, else what the ids taught."""
    bots: set[str] = set()
    users: set[str] = set()
    for a in activities:
        role = _role(a)
        if role == BOT:
            bots.add(_id(a, "from"))
            users.add(_id(a, "recipient"))
        elif role == USER:
            users.add(_id(a, "from"))
            bots.add(_id(a, "recipient"))
    bots.discard("")
    users.discard("")

    def sender(a: dict[str, Any]) -> str:
        role = _role(a)
        if role in (USER, BOT):
            return role
        if _id(a, "from") in bots or _id(a, "recipient") in users:
            return BOT
        if _id(a, "from") in users or _id(a, "recipient") in bots:
            return USER
        name = str((a.get("from") or {}).get("name") or _id(a, "from")).lower()
        return BOT if name == "bot" else USER

    return sender


def _role(a: dict[str, Any]) -> str | None:
    account = a.get("from")
    role = account.get("role") if isinstance(account, dict) else None
    return role.lower() if isinstance(role, str) and role.lower() in (USER, BOT) else None


def _id(a: dict[str, Any], key: str) -> str:
    account = a.get(key)
    return str(account.get("id") or "") if isinstance(account, dict) else ""


# -- into recorder events -------------------------------------------------------------------------


@dataclass
class _Turn:
    flow: str
    activity: dict[str, Any]
    replies: list[dict[str, Any]] = field(default_factory=list)


def events(transcript: Transcript, start: float = 0.0) -> Iterator[RequestSeen | ResponseSeen]:
    """The HTTP events a recording of these conversations would have seen, in file order.

    A bot message in a conversation nothing was said in before, while a user activity of the file's
    other conversation is being answered, is how a conversation the bot created in that turn (a Teams
    channel thread) reads in a transcript: it becomes the CreateConversation call that made it."""
    clock = _Clock(start)
    for conversation in transcript.conversations.values():
        _claim_logger_ids(conversation.activities)
    open_turns: dict[str, _Turn] = {}
    sent: dict[str, set[str]] = {}
    seen: set[str] = set()
    latest: str | None = None  # the conversation of the file's latest user activity
    file_number = -1

    def close(turn: _Turn) -> Iterator[ResponseSeen]:
        status, body = 200, None
        if turn.activity.get("deliveryMode") == "expectReplies":
            body = {"activities": turn.replies}
        elif turn.activity.get("type") == "invoke":
            invoke = next((r for r in turn.replies if r.get("type") == "invokeResponse"), None)
            value: dict[str, Any] = (invoke or {}).get("value") or {}
            value = value if isinstance(value, dict) else {}
            status, body = int(value.get("status") or 200), value.get("body")
        content = json.dumps(body).encode() if body is not None else b""
        yield ResponseSeen(turn.flow, clock.tick(turn.activity), status, JSON_HEADERS if content else [], content)

    for n, (number, cid, sender, activity) in enumerate(transcript.order, 1):
        if number != file_number:  # a file's turns end with it
            for ended in open_turns.values():
                yield from close(ended)
            open_turns, latest, file_number = {}, None, number
        first_here = cid not in seen
        seen.add(cid)
        if sender == USER:
            if cid in open_turns:
                yield from close(open_turns.pop(cid))
            flow = f"t{n}"
            yield RequestSeen(flow, clock.tick(activity), "reverse", "POST", BOT_URL, JSON_HEADERS, _dump(activity))
            open_turns[cid] = _Turn(flow, activity)
            latest = cid
            continue
        kind = activity.get("type")
        reply_to = activity.get("replyToId")
        turn: _Turn | None = open_turns.get(cid)
        if turn is not None and reply_to and reply_to != turn.activity.get("id") and kind not in _CHANGES:
            # It answers something else than the open turn (an earlier message, or nothing the channel
            # sent: a proactive send): the turn was over when it was sent.
            yield from close(open_turns.pop(cid))
            turn = None
        if turn is not None and (
            turn.activity.get("deliveryMode") == "expectReplies"
            or (kind == "invokeResponse" and turn.activity.get("type") == "invoke")
        ):
            turn.replies.append(_without_id(activity) if kind != "invokeResponse" else activity)
            continue
        if first_here and kind == "message" and latest is not None and latest in open_turns and not reply_to:
            yield from _created(f"t{n}", activity, cid, sent.setdefault(cid, set()), clock)
            continue
        yield from _bot_call(f"t{n}", activity, cid, sent.setdefault(cid, set()), clock)
    for ended in open_turns.values():
        yield from close(ended)


def _created(flow: str, activity: dict[str, Any], cid: str, sent: set[str], clock: _Clock,
             ) -> Iterator[RequestSeen | ResponseSeen]:
    """The CreateConversation call that started conversation `cid` with `activity` as its first message."""
    service_url = str(activity.get("serviceUrl") or PLACEHOLDER_SERVICE_URL)
    first = {k: v for k, v in _without_id(activity).items() if k != "conversation"}
    params: dict[str, Any] = {"isGroup": bool((activity.get("conversation") or {}).get("isGroup")),
                              "activity": first}
    if isinstance(activity.get("channelData"), dict):
        params["channelData"] = activity["channelData"]
    url = service_url.rstrip("/") + "/v3/conversations"
    yield RequestSeen(flow, clock.tick(activity), "svc", "POST", url, JSON_HEADERS, _dump(params),
                      service_url=service_url)
    target = str(activity.get("id") or "")
    if target:
        sent.add(target)
    answer: dict[str, Any] = {"id": cid, "serviceUrl": service_url}
    if target:
        answer["activityId"] = target
    yield ResponseSeen(flow, clock.tick(activity), 200, JSON_HEADERS, _dump(answer))


# botbuilder-python's TranscriptLoggerMiddleware never sees the connector's ResourceResponses, so it logs
# the bot's activities under ids of its own, `g_` + 5 characters + epoch milliseconds; its update and
# delete records then name the connector's id, which no activity in the file carries.
LOGGER_ID = re.compile(r"^g_[a-z0-9]{5}\d+(\.\d+)?$")


def _claim_logger_ids(activities: list[tuple[str, dict[str, Any]]]) -> None:
    """Give an update or delete whose target is not in the file the id of the message it changed: the
    latest earlier bot message of the same turn (`replyToId`) that has only a logger-made id."""
    known = {str(a.get("id")) for _, a in activities if a.get("id") and a.get("type") not in _CHANGES}
    for i, (sender, activity) in enumerate(activities):
        target = activity.get("id")
        if sender != BOT or activity.get("type") not in _CHANGES or not target or target in known:
            continue
        candidates = [
            earlier
            for _, earlier in reversed(activities[:i])
            if earlier.get("type") == "message" and LOGGER_ID.match(str(earlier.get("id") or ""))
        ]
        same_turn = [c for c in candidates if c.get("replyToId") == activity.get("replyToId")]
        if same_turn or candidates:
            (same_turn or candidates)[0]["id"] = target
            known.add(target)


_CHANGES = ("messageUpdate", "messageDelete")


def _bot_call(
    flow: str, activity: dict[str, Any], cid: str, sent: set[str], clock: _Clock
) -> Iterator[RequestSeen | ResponseSeen]:
    """The Connector call the bot made for one of its activities (send, reply, update or delete)."""
    service_url = str(activity.get("serviceUrl") or PLACEHOLDER_SERVICE_URL)
    base = service_url.rstrip("/") + f"/v3/conversations/{quote(cid, safe='')}/activities"
    kind = activity.get("type")
    target = str(activity.get("id") or "")
    if kind == "messageDelete" and target and target not in sent:
        # A tombstone in place of the message: it was sent, then deleted.
        yield from _bot_call(flow + "s", {**activity, "type": "message"}, cid, sent, clock)
    if kind == "messageUpdate" and target:
        body = {**{k: v for k, v in activity.items() if k != "timestamp"}, "type": "message"}
        at = clock.tick(activity)
        yield RequestSeen(
            flow,
            at,
            "svc",
            "PUT",
            f"{base}/{quote(target, safe='')}",
            JSON_HEADERS,
            _dump(body),
            service_url=service_url,
        )
        yield ResponseSeen(flow, clock.tick(activity), 200, JSON_HEADERS, _dump({"id": target}))
        return
    if kind == "messageDelete" and target:
        yield RequestSeen(
            flow,
            clock.tick(activity),
            "svc",
            "DELETE",
            f"{base}/{quote(target, safe='')}",
            [],
            None,
            service_url=service_url,
        )
        yield ResponseSeen(flow, clock.tick(activity), 200, [], b"")
        return
    reply_to = activity.get("replyToId")
    url = f"{base}/{quote(str(reply_to), safe='')}" if reply_to else base
    yield RequestSeen(
        flow,
        clock.tick(activity),
        "svc",
        "POST",
        url,
        JSON_HEADERS,
        _dump(_without_id(activity)),
        service_url=service_url,
    )
    if target:
        sent.add(target)
    answer = _dump({"id": target}) if target else b"{}"
    yield ResponseSeen(flow, clock.tick(activity), 200, JSON_HEADERS, answer)


def status_unknown(content: bytes | None) -> bool:
    """Whether the bot's HTTP answer to this inbound activity is a guess (nothing in the transcript says)."""
    try:
        activity = json.loads(content or b"{}")
    except ValueError:
        return True
    return activity.get("type") != "invoke" and activity.get("deliveryMode") != "expectReplies"


def _without_id(activity: dict[str, Any]) -> dict[str, Any]:
    """What the bot sent: the connector assigns the id (the transcript holds the one it returned), and
    the `timestamp` is the stored form's (transcript spec: stored activities carry one), not the bot's."""
    return {k: v for k, v in activity.items() if k not in ("id", "timestamp")}


def _dump(body: Any) -> bytes:
    return json_bytes(body)


class _Clock:
    """Event times from the activities' timestamps, never going backwards."""

    def __init__(self, start: float) -> None:
        self.now = start

    def tick(self, activity: dict[str, Any]) -> float:
        stamp = _timestamp(activity.get("timestamp"))
        self.now = max(self.now + 0.001, stamp or 0.0)
        return self.now


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# -- writing --------------------------------------------------------------------------------------


def _turn_order(activities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each turn's activities right after its inbound activity. A transcript has no `replyToId` to
    spare (botbuilder-python sets none on Direct Line) and a reader puts a bot activity in the turn of
    the user activity before it, so two overlapping turns written in wire order would swap replies."""
    inbound = {a["seq"] for a in activities if a["direction"] == "to_bot"}

    def key(a: dict[str, Any]) -> tuple[int, int]:
        turn = a["turn_seq"]
        return (turn if a["direction"] == "from_bot" and turn in inbound else a["seq"], a["seq"])

    return sorted(activities, key=key)


def to_transcript(activities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One conversation's stored activities (`show --json` records, seq order) as a transcript array.

    Both directions of the bot's leg, each turn's activities after its inbound one; an update becomes a
    `messageUpdate` record and a delete a `messageDelete` record of the target id, as the SDK's
    TranscriptLoggerMiddleware writes them.
    """
    out: list[dict[str, Any]] = []
    for a in _turn_order(activities):
        if a["direction"] not in ("to_bot", "from_bot"):
            continue
        if a["direction"] == "from_bot" and isinstance(a["status"], int) and a["status"] >= 400:
            continue  # the connector refused it: it is not in the conversation (the SDK's logger skips it too)
        body = dict(a["body"] or {})
        if a["route"] == "delete_activity":
            body = {
                "type": "messageDelete",
                "id": a["activity_id"],
                "conversation": {"id": a["conversation_id"]},
                "from": {"id": a["from_id"] or "", "role": BOT},
            }
        elif not body:
            continue
        elif a["route"] == "update_activity":
            body["type"] = "messageUpdate"
        role = USER if a["direction"] == "to_bot" else BOT
        account = body.get("from")
        if isinstance(account, dict) and not account.get("role"):
            body["from"] = {**account, "role": role}
        elif not isinstance(account, dict):
            # The bot sent no `from` (a CreateConversation's activity): the role alone says whose it
            # is, and the import drops an account that holds nothing else.
            body["from"] = {"id": a["from_id"], "role": role} if a["from_id"] else {"role": role}
        if a["activity_id"] and not body.get("id"):
            body["id"] = a["activity_id"]
        if a["conversation_id"] and not isinstance(body.get("conversation"), dict):
            # An invoke response or expected reply travels in the HTTP answer, without a conversation;
            # a transcript record needs one to be read back into the same conversation.
            body["conversation"] = {"id": a["conversation_id"]}
        if a["service_url"] and a["direction"] == "from_bot" and not body.get("serviceUrl"):
            body["serviceUrl"] = a["service_url"]
        if not body.get("timestamp") and a["observed_at"]:
            stamp = dt.datetime.fromtimestamp(a["observed_at"], dt.UTC)
            body["timestamp"] = stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        out.append(body)
    return out
