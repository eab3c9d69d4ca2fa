"""Bot Framework wire knowledge: which API call a request is, and which activities a body holds.

Knows nothing of mitmproxy or SQLite. Sources: shared/reference/protocol.md section 1 (route tables).
Connector routes are matched by their `/v3/...` suffix, because a serviceUrl may carry a path prefix
(Teams `/amer/`, GCC `/gcc`), and ids are URL-decoded, because msrest quotes them with `safe=''`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
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
# The inbound leg: a channel POSTs an activity to the bot's messaging endpoint.
BOT_MESSAGES = "bot_messages"
# Everything else seen through the proxy.
AUTH = "auth"  # token endpoints and OpenID metadata
OTHER = "other"
UNKNOWN_CONNECTOR = "unknown_connector_route"

# Routes whose request body is one activity the bot sends.
SEND_ROUTES = frozenset({SEND_TO_CONVERSATION, REPLY_TO_ACTIVITY})
ACTIVITY_BODY_ROUTES = frozenset({SEND_TO_CONVERSATION, REPLY_TO_ACTIVITY, UPDATE_ACTIVITY})

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
        return self.name not in (BOT_MESSAGES, AUTH, OTHER)


_SEG = r"([^/]+)"
# (method or None for any, suffix regex, route name, group names). Order matters: history before reply.
_CONNECTOR_TABLE: list[tuple[str | None, re.Pattern[str], str, tuple[str, ...]]] = [
    (m, re.compile(rx + r"/?$"), name, groups)
    for m, rx, name, groups in [
        ("POST", r"/v3/conversations", CREATE_CONVERSATION, ()),
        ("GET", r"/v3/conversations", GET_CONVERSATIONS, ()),
        ("POST", rf"/v3/conversations/{_SEG}/activities/history", SEND_HISTORY, ("c",)),
        ("GET", rf"/v3/conversations/{_SEG}/activities/{_SEG}/members", GET_ACTIVITY_MEMBERS, ("c", "a")),
        ("POST", rf"/v3/conversations/{_SEG}/activities", SEND_TO_CONVERSATION, ("c",)),
        ("POST", rf"/v3/conversations/{_SEG}/activities/{_SEG}", REPLY_TO_ACTIVITY, ("c", "a")),
        ("PUT", rf"/v3/conversations/{_SEG}/activities/{_SEG}", UPDATE_ACTIVITY, ("c", "a")),
        ("DELETE", rf"/v3/conversations/{_SEG}/activities/{_SEG}", DELETE_ACTIVITY, ("c", "a")),
        ("GET", rf"/v3/conversations/{_SEG}/members", GET_MEMBERS, ("c",)),
        ("GET", rf"/v3/conversations/{_SEG}/members/{_SEG}", GET_MEMBER, ("c", "m")),
        ("DELETE", rf"/v3/conversations/{_SEG}/members/{_SEG}", DELETE_MEMBER, ("c", "m")),
        ("GET", rf"/v3/conversations/{_SEG}/pagedmembers", GET_PAGED_MEMBERS, ("c",)),
        ("POST", rf"/v3/conversations/{_SEG}/attachments", UPLOAD_ATTACHMENT, ("c",)),
        ("GET", rf"/v3/attachments/{_SEG}", GET_ATTACHMENT_INFO, ("a",)),
        ("GET", rf"/v3/attachments/{_SEG}/views/{_SEG}", GET_ATTACHMENT, ("a", "m")),
        ("GET", rf"/v3/teams/{_SEG}", TEAMS_GET_TEAM, ("c",)),
        ("GET", rf"/v3/teams/{_SEG}/conversations", TEAMS_GET_CHANNELS, ("c",)),
        ("GET", rf"/v1/meetings/{_SEG}", TEAMS_GET_MEETING, ("c",)),
        ("GET", rf"/v1/meetings/{_SEG}/participants/{_SEG}", TEAMS_GET_PARTICIPANT, ("c", "m")),
        ("POST", rf"/v1/meetings/{_SEG}/notification", TEAMS_MEETING_NOTIFICATION, ("c",)),
    ]
]
_CONNECTOR_HINT = re.compile(r"/v(3|1)/(conversations|attachments|teams|meetings)(/|$)")
_AUTH_HINT = re.compile(r"(/oauth2/|/\.well-known/|openidconfiguration|/keys$|/discovery/|/common/)")


def classify_connector(method: str, path: str) -> Route:
    """Classify a bot-to-connector call by its path suffix; `path` excludes the query string."""
    method = method.upper()
    hint = _CONNECTOR_HINT.search(path)
    if hint is None:
        return Route(OTHER)
    prefix, suffix = path[: hint.start()], path[hint.start() :]
    for want_method, rx, name, groups in _CONNECTOR_TABLE:
        if want_method and want_method != method:
            continue
        match = rx.fullmatch(suffix)
        if match is None:
            continue
        values = dict(zip(groups, (unquote(v) for v in match.groups()), strict=True))
        return Route(name, values.get("c"), values.get("a"), values.get("m"), prefix)
    return Route(UNKNOWN_CONNECTOR, prefix=prefix)


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
