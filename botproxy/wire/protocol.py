"""Bot Framework wire knowledge: which API call a request is, and which activities a body holds.

Knows nothing of mitmproxy or SQLite. Sources: docs/protocol.md section 1 (route tables).
Connector routes are matched by their `/v3/...` suffix, because a serviceUrl may carry a path prefix
(Teams `/amer/`, GCC `/gcc`), and ids are URL-decoded, because msrest quotes them with `safe=''`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

# Route names. Connector v3 (protocol.md 1.1, C1-C15 and the Teams routes the SDK uses).
CREATE_CONVERSATION = "create_conversation"
GET_CONVERSATIONS = "get_conversations"
SEND_TO_CONVERSATION = "send_to_conversation"
SEND_HISTORY = "send_history"
REPLY_TO_ACTIVITY = "reply_to_activity"
UPDATE_ACTIVITY = "update_activity"
DELETE_ACTIVITY = "delete_activity"
GET_MEMBERS = "get_members"
GET_MEMBER = "get_member"
DELETE_MEMBER = "delete_member"
GET_PAGED_MEMBERS = "get_paged_members"
GET_ACTIVITY_MEMBERS = "get_activity_members"
UPLOAD_ATTACHMENT = "upload_attachment"
GET_ATTACHMENT_INFO = "get_attachment_info"
GET_ATTACHMENT = "get_attachment"
TEAMS_GET_TEAM = "teams_get_team"
TEAMS_GET_CHANNELS = "teams_get_channels"
TEAMS_GET_MEETING = "teams_get_meeting"
TEAMS_GET_PARTICIPANT = "teams_get_participant"
TEAMS_MEETING_NOTIFICATION = "teams_meeting_notification"
# Direct Line 3.0 (protocol.md 1.2, D1-D9) and 1.1 (1.3, L1-L7): the client leg.
DL_GENERATE_TOKEN = "dl_generate_token"
DL_REFRESH_TOKEN = "dl_refresh_token"
DL_START_CONVERSATION = "dl_start_conversation"
DL_RECONNECT = "dl_reconnect"
DL_GET_ACTIVITIES = "dl_get_activities"
DL_POST_ACTIVITY = "dl_post_activity"
DL_UPLOAD = "dl_upload"
DL_SESSION_ID = "dl_session_id"
DL_STREAM = "dl_stream"
DL1_GENERATE_TOKEN = "dl1_generate_token"
DL1_RENEW_TOKEN = "dl1_renew_token"
DL1_GET_TOKEN = "dl1_get_token"
DL1_START_CONVERSATION = "dl1_start_conversation"
DL1_GET_MESSAGES = "dl1_get_messages"
DL1_POST_MESSAGE = "dl1_post_message"
DL1_UPLOAD = "dl1_upload"
DL_UNKNOWN = "dl_unknown_route"
# Responses that carry a Conversation object with a token (and a streamUrl for 3.0 start/reconnect).
DL_CONVERSATION_RESPONSES = frozenset(
    {DL_GENERATE_TOKEN, DL_REFRESH_TOKEN, DL_START_CONVERSATION, DL_RECONNECT, DL1_START_CONVERSATION}
)
# The inbound leg: a channel POSTs an activity to the bot's messaging endpoint.
BOT_MESSAGES = "bot_messages"
# Replies in the inbound HTTP response: an invoke's answer, ExpectedReplies, and the activities of a
# `deliveryMode: stream` answer (`text/event-stream`, agents-sdk.md 1.2).
INVOKE_RESPONSE = "invoke_response"
EXPECTED_REPLIES = "expected_replies"
EVENT_STREAM = "event_stream"
# Everything else seen through the proxy.
AUTH = "auth"  # token endpoints and OpenID metadata
OTHER = "other"
UNKNOWN_CONNECTOR = "unknown_connector_route"

# Routes whose request body is one activity the bot sends.
SEND_ROUTES = frozenset({SEND_TO_CONVERSATION, REPLY_TO_ACTIVITY})
ACTIVITY_BODY_ROUTES = frozenset({SEND_TO_CONVERSATION, REPLY_TO_ACTIVITY, UPDATE_ACTIVITY})
# Routes that change or remove an activity the bot sent before.
EDIT_ROUTES = frozenset({UPDATE_ACTIVITY, DELETE_ACTIVITY})

ACTIVITY_TYPES = frozenset(
    {
        "message",
        "contactRelationUpdate",
        "conversationUpdate",
        "typing",
        "endOfConversation",
        "event",
        "invoke",
        "deleteUserData",
        "messageUpdate",
        "messageDelete",
        "installationUpdate",
        "messageReaction",
        "suggestion",
        "trace",
        "handoff",
        "command",
        "commandResult",
    }
)


@dataclass(frozen=True, slots=True)
class Route:
    """What an HTTP request is, in Bot Framework terms."""

    name: str
    conversation_id: str | None = None
    activity_id: str | None = None
    member_id: str | None = None
    # The part of the URL path before `/v3/...` (a serviceUrl's path prefix), for connector routes.
    prefix: str = ""

    @property
    def is_connector(self) -> bool:
        return self.name not in (BOT_MESSAGES, AUTH, OTHER) and not self.is_directline

    @property
    def is_directline(self) -> bool:
        return self.name.startswith(("dl_", "dl1_"))


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One API operation: its method (None: any), its path template (`{name}` is one path segment),
    its route name, and whether its body must be a JSON object. The recorder classifies by these and
    the Connector stand-in answers by them: one table for both."""

    method: str | None
    template: str
    name: str
    needs_body: bool = False
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.template) + "/?"
        object.__setattr__(self, "pattern", re.compile(regex))


# Which path parameter a Route reports as its conversation, activity and member id.
_CONVERSATION_PARAMS = ("cid", "team", "meeting")
_ACTIVITY_PARAMS = ("aid", "att")
_MEMBER_PARAMS = ("mid", "view", "pid")
_CONV = "/v3/conversations/{cid}"
# Order matters: ".../activities/history" before ".../activities/{aid}".
CONNECTOR_ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("POST", "/v3/conversations", CREATE_CONVERSATION, needs_body=True),
    RouteSpec("GET", "/v3/conversations", GET_CONVERSATIONS),
    RouteSpec("POST", _CONV + "/activities/history", SEND_HISTORY, needs_body=True),
    RouteSpec("GET", _CONV + "/activities/{aid}/members", GET_ACTIVITY_MEMBERS),
    RouteSpec("POST", _CONV + "/activities", SEND_TO_CONVERSATION, needs_body=True),
    RouteSpec("POST", _CONV + "/activities/{aid}", REPLY_TO_ACTIVITY, needs_body=True),
    RouteSpec("PUT", _CONV + "/activities/{aid}", UPDATE_ACTIVITY, needs_body=True),
    RouteSpec("DELETE", _CONV + "/activities/{aid}", DELETE_ACTIVITY),
    RouteSpec("GET", _CONV + "/members", GET_MEMBERS),
    RouteSpec("GET", _CONV + "/members/{mid}", GET_MEMBER),
    RouteSpec("DELETE", _CONV + "/members/{mid}", DELETE_MEMBER),
    RouteSpec("GET", _CONV + "/pagedmembers", GET_PAGED_MEMBERS),
    RouteSpec("POST", _CONV + "/attachments", UPLOAD_ATTACHMENT, needs_body=True),
    RouteSpec("GET", "/v3/attachments/{att}", GET_ATTACHMENT_INFO),
    RouteSpec("GET", "/v3/attachments/{att}/views/{view}", GET_ATTACHMENT),
    RouteSpec("GET", "/v3/teams/{team}", TEAMS_GET_TEAM),
    RouteSpec("GET", "/v3/teams/{team}/conversations", TEAMS_GET_CHANNELS),
    RouteSpec("GET", "/v1/meetings/{meeting}", TEAMS_GET_MEETING),
    RouteSpec("GET", "/v1/meetings/{meeting}/participants/{pid}", TEAMS_GET_PARTICIPANT),
    RouteSpec("POST", "/v1/meetings/{meeting}/notification", TEAMS_MEETING_NOTIFICATION, needs_body=True),
)
_CONNECTOR_HINT = re.compile(r"/v(3|1)/(conversations|attachments|teams|meetings)(/|$)")
_AUTH_HINT = re.compile(r"(/oauth2/|/\.well-known/|openidconfiguration|/keys$|/discovery/|/common/)")


def match(
    table: Iterable[RouteSpec], hint: re.Pattern[str], method: str, path: str
) -> tuple[str | None, RouteSpec | None, dict[str, str]]:
    """The path prefix before the API part (None: not this API at all), the operation of `table` the rest
    of `path` (no query string) is, and its path parameters URL-decoded."""
    found = hint.search(path)
    if found is None:
        return None, None, {}
    method = method.upper()
    prefix, suffix = path[: found.start()], path[found.start() :]
    for spec in table:
        if spec.method and spec.method != method:
            continue
        matched = spec.pattern.fullmatch(suffix)
        if matched is not None:
            return prefix, spec, {k: unquote(v) for k, v in matched.groupdict().items()}
    return prefix, None, {}


def match_connector(method: str, path: str) -> tuple[RouteSpec | None, dict[str, str]]:
    """The Connector operation of a request (None: none) and its path parameters."""
    _, spec, params = match(CONNECTOR_ROUTES, _CONNECTOR_HINT, method, path)
    return spec, params


def _classify(table: Iterable[RouteSpec], hint: re.Pattern[str], unknown: str, method: str, path: str) -> Route:
    """Match `path` by its suffix (from where `hint` matches) against a route table."""
    prefix, spec, params = match(table, hint, method, path)
    if prefix is None:
        return Route(OTHER)
    if spec is None:
        return Route(unknown, prefix=prefix)

    def first(names: tuple[str, ...]) -> str | None:
        return next((params[n] for n in names if n in params), None)

    return Route(spec.name, first(_CONVERSATION_PARAMS), first(_ACTIVITY_PARAMS), first(_MEMBER_PARAMS), prefix)


def classify_connector(method: str, path: str) -> Route:
    """Classify a bot-to-connector call by its path suffix; `path` excludes the query string."""
    return _classify(CONNECTOR_ROUTES, _CONNECTOR_HINT, UNKNOWN_CONNECTOR, method, path)


_DL_CONV = "/v3/directline/conversations/{cid}"
DIRECTLINE_ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("POST", "/v3/directline/tokens/generate", DL_GENERATE_TOKEN),
    RouteSpec("POST", "/v3/directline/tokens/refresh", DL_REFRESH_TOKEN),
    RouteSpec("POST", "/v3/directline/conversations", DL_START_CONVERSATION),
    RouteSpec("GET", "/v3/directline/session/getsessionid", DL_SESSION_ID),
    RouteSpec("GET", _DL_CONV + "/stream", DL_STREAM),
    RouteSpec("GET", _DL_CONV + "/activities", DL_GET_ACTIVITIES),
    RouteSpec("POST", _DL_CONV + "/activities", DL_POST_ACTIVITY),
    RouteSpec("POST", _DL_CONV + "/upload", DL_UPLOAD),
    RouteSpec("GET", _DL_CONV, DL_RECONNECT),
    RouteSpec("POST", "/api/tokens/conversation", DL1_GENERATE_TOKEN),
    # The 1.1 swagger says GET, its prose says POST: accept both (protocol.md 1.3).
    RouteSpec(None, "/api/tokens/{cid}/renew", DL1_RENEW_TOKEN),
    RouteSpec("GET", "/api/tokens", DL1_GET_TOKEN),
    RouteSpec("POST", "/api/conversations", DL1_START_CONVERSATION),
    RouteSpec("GET", "/api/conversations/{cid}/messages", DL1_GET_MESSAGES),
    RouteSpec("POST", "/api/conversations/{cid}/messages", DL1_POST_MESSAGE),
    RouteSpec("POST", "/api/conversations/{cid}/upload", DL1_UPLOAD),
)
_DL_HINT = re.compile(r"/(v3/directline|api/(tokens|conversations))(/|$)")


def classify_directline(method: str, path: str) -> Route:
    """Classify a Direct Line client call (3.0 or 1.1) by its path suffix; `path` excludes the query."""
    return _classify(DIRECTLINE_ROUTES, _DL_HINT, DL_UNKNOWN, method, path)


def classify_outbound(method: str, host: str, path: str) -> Route:
    """Classify a request the bot makes (forward proxy or rewritten serviceUrl)."""
    route = classify_connector(method, path)
    if route.name == OTHER and (_AUTH_HINT.search(path) or host.startswith("login.")):
        return Route(AUTH)
    return route


def strip_query(path: str) -> str:
    return path.split("?", 1)[0]


# ---------------------------------------------------------------------------------------------
# Bodies


class BodyError(ValueError):
    """A body that should hold JSON does not."""


def parse_json(content: bytes | None) -> Any:
    """Parse a JSON body; None for an empty one; BodyError when it is not JSON.

    A UTF-8 BOM is tolerated, because some producers (.NET) write one.
    """
    if not content:
        return None
    try:
        return json.loads(content.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BodyError(f"not JSON: {exc}") from exc


def request_activities(route: Route, body: Any) -> list[dict[str, Any]]:
    """The activities a request body carries for a route (may be empty)."""
    if not isinstance(body, dict):
        return []
    if route.name in ACTIVITY_BODY_ROUTES or route.name == BOT_MESSAGES:
        return [body]
    if route.name == SEND_HISTORY:
        return [a for a in body.get("activities") or [] if isinstance(a, dict)]
    if route.name == CREATE_CONVERSATION:
        activity = body.get("activity")
        return [activity] if isinstance(activity, dict) else []
    return []


def inbound_response_activities(inbound: dict[str, Any], status: int, body: Any) -> list[dict[str, Any]]:
    """Activities the bot returned in the HTTP response to an inbound activity.

    `ExpectedReplies {activities: [...]}` for `deliveryMode: expectReplies`; for an invoke, the invoke
    response, which we record as the SDK's own `invokeResponse` activity so it has a place in the turn.
    """
    if isinstance(body, dict) and isinstance(body.get("activities"), list):
        return [a for a in body["activities"] if isinstance(a, dict)]
    if inbound.get("type") == "invoke" and (body is not None or status):
        return [{"type": "invokeResponse", "value": {"status": status, "body": body}}]
    return []


def is_event_stream(headers: list[tuple[str, str]]) -> bool:
    """A `text/event-stream` answer: how an Agents SDK bot answers a `deliveryMode: stream` activity."""
    content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
    return content_type.split(";")[0].strip().lower() == "text/event-stream"


def sse_events(content: bytes | None) -> list[tuple[str, str]]:
    """(event, data) of each complete event in a `text/event-stream` body (the WHATWG EventSource
    rules: lines end in CRLF, LF or CR, a blank line ends an event, `data` lines join with LF, a
    leading space after the colon is dropped, `:` lines are comments). A last event without its
    blank line was cut off and is left out."""
    events: list[tuple[str, str]] = []
    name, data = "", list[str]()
    for line in re.split(r"\r\n|\r|\n", (content or b"").decode("utf-8", "replace")):
        if not line:
            if data:
                events.append((name or "message", "\n".join(data)))
            name, data = "", []
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    return events


def stream_activities(chunks: Iterable[tuple[float, bytes]]) -> list[tuple[float, dict[str, Any]]]:
    """The activities of a `deliveryMode: stream` answer, in order, each with the time of the chunk
    that completed its event: each `event: activity` frame's activity, and the `event: invokeResponse`
    frame (`{status, body}`, the .NET SDK's InvokeResponse) as an `invokeResponse` activity, as an
    invoke's answer is recorded. Frames that are not JSON objects are left out."""
    timed: list[tuple[float, dict[str, Any]]] = []
    pending = b""
    for at, chunk in chunks:
        pending += chunk
        ends = list(_EVENT_END.finditer(pending))
        if not ends:
            continue
        complete, pending = pending[: ends[-1].end()], pending[ends[-1].end() :]
        for name, data in sse_events(complete):
            try:
                value = json.loads(data)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict) and name == "activity":
                timed.append((at, value))
            elif isinstance(value, dict) and name == "invokeResponse":
                timed.append((at, {"type": "invokeResponse", "value": value}))
    return timed


_EVENT_END = re.compile(rb"(\r\n|\r(?!\n)|\n)(\r\n|\r(?!\n)|\n)")


def resource_id(body: Any) -> str | None:
    """The id a ResourceResponse / ConversationResourceResponse returned."""
    if isinstance(body, dict) and isinstance(body.get("id"), str):
        return body["id"]
    return None


def account_id(activity: dict[str, Any], field: str) -> str | None:
    account = activity.get(field)
    if isinstance(account, dict) and account.get("id") is not None:
        return str(account["id"])
    return None


def conversation_id(activity: dict[str, Any]) -> str | None:
    return account_id(activity, "conversation")


def str_field(activity: dict[str, Any], name: str) -> str | None:
    value = activity.get(name)
    return value if isinstance(value, str) else None


def error_code(body: Any) -> str | None:
    """`error.code` of an ErrorResponse, or the lenient Teams `errorCode`/`subCode` shape."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict) and error.get("code"):
        return str(error["code"])
    if body.get("errorCode") is not None:
        return str(body["errorCode"])
    return None


# -- Direct Line bodies ------------------------------------------------------------------------


def dl_message_as_activity(message: dict[str, Any]) -> dict[str, Any]:
    """A Direct Line 1.1 `Message` in Activity shape (its `from` is a plain string, `created` its time)."""
    activity: dict[str, Any] = {"type": "message"}
    for src, dst in (
        ("id", "id"),
        ("text", "text"),
        ("created", "timestamp"),
        ("channelData", "channelData"),
        ("attachments", "attachments"),
        ("eTag", "eTag"),
    ):
        if message.get(src) is not None:
            activity[dst] = message[src]
    if message.get("from") is not None:
        activity["from"] = {"id": str(message["from"])}
    if message.get("conversationId") is not None:
        activity["conversation"] = {"id": str(message["conversationId"])}
    if message.get("images"):
        activity["attachments"] = [
            *activity.get("attachments", []),
            *({"contentType": "image", "contentUrl": url} for url in message["images"]),
        ]
    return activity


def dl_request_activities(route: Route, body: Any) -> list[dict[str, Any]]:
    """Activities a Direct Line client sends. A list body (several activities in one POST) is kept whole,
    so the checks can flag it."""
    if route.name == DL_POST_ACTIVITY:
        if isinstance(body, list):
            return [a for a in body if isinstance(a, dict)]
        return [body] if isinstance(body, dict) else []
    if route.name == DL1_POST_MESSAGE and isinstance(body, dict):
        return [dl_message_as_activity(body)]
    return []


def dl_delivered(route_name: str, body: Any) -> tuple[list[dict[str, Any]], str | None]:
    """(activities, watermark) delivered to a client: a GET's ActivitySet or MessageSet, or a stream frame."""
    if not isinstance(body, dict):
        return [], None
    watermark = body.get("watermark")
    watermark = str(watermark) if watermark is not None else None
    if route_name == DL1_GET_MESSAGES:
        return [dl_message_as_activity(m) for m in body.get("messages") or [] if isinstance(m, dict)], watermark
    return [a for a in body.get("activities") or [] if isinstance(a, dict)], watermark
