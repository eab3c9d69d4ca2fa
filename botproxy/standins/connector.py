"""A local stand-in for the Bot Connector service (REST API v3), built on aiohttp.web.

A bot under test replies to it (its ``service_url`` goes into the inbound ``serviceUrl``), and it plays
the channel side that posts inbound activities to the bot. It speaks the wire format of the Bot
Connector swagger (``botframework-channel.json``): the same routes, status codes, ``ResourceResponse``
and ``ErrorResponse`` shapes, and ``X-Correlating-OperationId`` on every answer.

Routes are ``wire/protocol.py``'s table, the one the recorder classifies by, matched by suffix after
any path prefix, because a real ``serviceUrl`` may carry one
(``https://smba.trafficmanager.net/amer/``), and path ids are URL-decoded, because msrest
percent-encodes them (Teams ids such as ``19:x@thread.skype;messageid=123``).

Every request is recorded as a :class:`ConnectorCall` in ``calls``; tests await them with
:meth:`ConnectorChannel.wait_for_calls` and inject failures with :meth:`ConnectorChannel.fail_next`.

For replay (``botproxy replay``): ``observers`` hear about every call with the answer it got (the
replay feeds them to the recorder), :meth:`ConnectorChannel.wait_quiet` waits until a conversation has
had no call for a while (the end of a turn), :meth:`ConnectorChannel.add_members` seeds a roster from a
recording, and ``id_prefix`` keeps the ids this channel assigns apart from the ids of a recording.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import logging
import ssl
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from ..model import utc_now
from ..wire.protocol import CONNECTOR_ROUTES, RouteSpec, match_connector
from .server import serve

logger = logging.getLogger(__name__)

JSON_TYPE = "application/json; charset=utf-8"
_ANY = "\0any"  # the key under which every call is noted too (no conversation id can be this)


@dataclass
class ConnectorCall:
    """One request the channel received, and what it answered."""

    method: str
    path: str  # as on the wire, still percent-encoded
    route: str  # a name from ROUTE_NAMES, or "unknown"
    conversation_id: str | None
    activity_id: str | None
    body: Any  # parsed JSON, or None when empty or not JSON
    raw: bytes
    headers: dict[str, str]
    status: int = 0
    response: Any = None  # the JSON we answered (dict or list), or None for empty/binary bodies
    params: dict[str, str] = field(default_factory=dict)  # all decoded path ids (cid, aid, mid, ...)
    query: dict[str, str] = field(default_factory=dict)
    at: float = 0.0  # time.time() when the request arrived


@dataclass
class ChannelConversation:
    """What the channel remembers about one conversation."""

    id: str
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    inbound_ids: list[str] = field(default_factory=list)  # ids of activities built for or sent to the bot
    sent: dict[str, Any] = field(default_factory=dict)  # ids we assigned to bot activities -> last body
    deleted: set[str] = field(default_factory=set)

    def is_live(self, activity_id: str) -> bool:
        return activity_id in self.sent and activity_id not in self.deleted


ROUTE_NAMES = frozenset(spec.name for spec in CONNECTOR_ROUTES)


@dataclass
class _Answer:
    status: int
    body: Any = None  # JSON-able value, raw bytes, or None for an empty body
    content_type: str = JSON_TYPE


def error(status: int, code: str, message: str) -> _Answer:
    return _Answer(status, {"error": {"code": code, "message": message}})


@dataclass
class _Failure:
    status: int
    code: str
    message: str
    route: str | None
    remaining: int


@dataclass
class _Attachment:
    name: str | None
    type: str | None
    views: dict[str, bytes]


def _account(account: dict[str, Any]) -> dict[str, Any]:
    return {k: account[k] for k in ("id", "name") if account.get(k) is not None}


class ConnectorChannel:
    """The Bot Connector side of a conversation, on a local port.

    ``strict_conversations=True`` answers 404 ``ConversationNotFound`` for conversations the channel has
    never seen, as a real connector does; the default accepts them, because tests of the proxy send to
    conversations this channel did not start.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        channel_id: str = "test",
        bot: dict[str, Any] | None = None,
        members: list[dict[str, Any]] | None = None,
        strict_conversations: bool = False,
        path_prefix: str = "",
        ssl_context: ssl.SSLContext | None = None,
        id_prefix: str = "",
        client_max_size: int = 1024**2,
    ) -> None:
        self.host = host
        self.client_max_size = client_max_size  # the largest request body accepted (aiohttp's default: 1 MiB)
        self.port = port
        self.channel_id = channel_id
        self.bot: dict[str, Any] = dict(bot or {"id": "bot", "name": "Bot"})
        self.members = [dict(m) for m in members or []]
        self.strict_conversations = strict_conversations
        self.path_prefix = path_prefix.strip("/")
        self.ssl_context = ssl_context  # serve https, like the real connector
        # Set by a server that mounts this channel in its own app through handle() (a Direct Line channel):
        # its base URL, and a hook that numbers each activity the bot sends and delivers it to clients.
        self.public_url: str | None = None
        self.on_bot_activity: Callable[[str, dict[str, Any]], str] | None = None
        # Routes this channel does not offer: answered 405 as the real service answers them.
        self.unsupported: frozenset[str] = frozenset()
        self.calls: list[ConnectorCall] = []
        self.conversations: dict[str, ChannelConversation] = {}
        self._attachments: dict[str, _Attachment] = {}
        self._failures: list[_Failure] = []
        self._counter = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.id_prefix = id_prefix  # ids we assign start with it (a replay keeps them apart from recorded ids)
        # Called with each call and the response it got, after the answer is decided; must not block.
        self.observers: list[Callable[[ConnectorCall, web.Response], None]] = []
        # Asked first about each call (a replay answers as a recording's connector did): None to answer
        # normally, (status, None) for the normal answer with that status, (status >= 400, body) for
        # that error answer instead.
        self.responder: Callable[[ConnectorCall], tuple[int, Any] | None] | None = None
        self._last_call: dict[str, float] = {}  # conversation id -> loop time of its latest call
        self._call_events: dict[str, asyncio.Event] = {}  # set (and replaced) on each call of a conversation

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=self.client_max_size)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner, self.port = await serve(app, self.host, self.port, ssl_context=self.ssl_context)
        logger.debug("connector channel listening at %s", self.service_url)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one Bot Connector request; for a server that serves these routes in its own app."""
        return await self._dispatch(request)

    @property
    def service_url(self) -> str:
        if self.public_url is not None:
            return self.public_url
        if self._runner is None:
            raise RuntimeError("ConnectorChannel.service_url is known only while the channel runs")
        prefix = f"{self.path_prefix}/" if self.path_prefix else ""
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}/{prefix}"

    # -- test controls -----------------------------------------------------------------------------

    async def wait_for_calls(
        self,
        n: int,
        timeout: float = 10.0,
        predicate: Callable[[ConnectorCall], bool] | None = None,
        since: int = 0,
    ) -> list[ConnectorCall]:
        """Wait until ``n`` calls (matching ``predicate``, if given; from ``calls[since]`` on) have arrived;
        return the first ``n``."""

        def matching() -> list[ConnectorCall]:
            return [c for c in self.calls[since:] if predicate is None or predicate(c)]

        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(lambda: len(matching()) >= n)
        except TimeoutError:
            arrived = ", ".join(f"{c.method} {c.route} -> {c.status}" for c in self.calls) or "nothing"
            raise TimeoutError(
                f"expected {n} matching connector calls within {timeout}s, got {len(matching())}; "
                f"arrived: {arrived}"
            ) from None
        return matching()[:n]

    def fail_next(
        self,
        status: int,
        *,
        code: str = "ServiceError",
        message: str = "Injected failure",
        route: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls (of ``route``, or any) with ``status`` and an ErrorResponse."""
        if route is not None and route not in ROUTE_NAMES:
            raise ValueError(f"unknown route {route!r}; expected one of {sorted(ROUTE_NAMES)}")
        self._failures.append(_Failure(status, code, message, route, times))

    # -- channel -> bot ----------------------------------------------------------------------------

    def activity(
        self,
        type: str = "message",
        text: str | None = None,
        *,
        conversation_id: str,
        user_id: str = "user1",
        user_name: str = "User",
        id: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Build an inbound Activity as a channel sends it; ``fields`` (camelCase) are merged last."""
        user = {"id": user_id, "name": user_name}
        act: dict[str, Any] = {
            "type": type,
            "id": id or self._next_id(),
            "timestamp": utc_now(),
            "channelId": self.channel_id,
            "serviceUrl": self.service_url,
            "from": {**user, "role": "user"},
            "recipient": {**self.bot, "role": "bot"},
            "conversation": {"id": conversation_id},
            "locale": "en-US",
        }
        if text is not None:
            act["text"] = text
        act.update(fields)
        self._remember_inbound(act)
        return act

    async def send(
        self, bot_url: str, activity: dict[str, Any], *, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """POST an activity to the bot's messaging endpoint; return its status and body."""
        self._remember_inbound(activity)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        async with self._session.post(bot_url, json=activity, headers=headers) as resp:
            return resp.status, await resp.read()

    def remember_inbound(self, act: dict[str, Any]) -> None:
        """Note an inbound activity sent to the bot by other means: its sender and added members join the
        roster, its id becomes one the channel knows."""
        self._remember_inbound(act)

    def add_members(self, conversation_id: str, members: Iterable[dict[str, Any]]) -> None:
        """Seed a conversation's roster (e.g. with the members a recording's connector returned)."""
        conv = self._conversation(conversation_id)
        for member in members:
            if isinstance(member, dict) and member.get("id"):
                conv.members.setdefault(str(member["id"]), dict(member))

    # -- the end of a turn -------------------------------------------------------------------------

    async def wait_quiet(self, conversation_id: str | None, quiet: float, cap: float) -> bool:
        """Wait until ``conversation_id`` (None: the whole channel) has had no call for ``quiet`` seconds,
        counted from now or its latest call, whichever is later; give up after ``cap`` seconds. True when
        it went quiet."""
        key = _ANY if conversation_id is None else conversation_id
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + cap
        while True:
            now = loop.time()
            quiet_at = max(start, self._last_call.get(key, start)) + quiet
            if now >= quiet_at:
                return True
            if now >= deadline:
                return False
            event = self._call_events.setdefault(key, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), min(quiet_at, deadline) - now)
            except TimeoutError:
                pass

    def _note_call(self, conversation_id: str | None) -> None:
        now = asyncio.get_running_loop().time()
        for key in (_ANY, conversation_id) if conversation_id is not None else (_ANY,):
            self._last_call[key] = now
            event = self._call_events.pop(key, None)
            if event is not None:
                event.set()

    def _remember_inbound(self, act: dict[str, Any]) -> None:
        conversation_id = (act.get("conversation") or {}).get("id")
        if not conversation_id:
            return
        conv = self._conversation(conversation_id)
        sender = act.get("from") or {}
        if sender.get("id"):
            conv.members.setdefault(sender["id"], _account(sender))
        for added in act.get("membersAdded") or []:
            if added.get("id") and added.get("id") != self.bot.get("id"):
                conv.members.setdefault(added["id"], _account(added))
        if act.get("id") and act["id"] not in conv.inbound_ids:
            conv.inbound_ids.append(act["id"])

    # -- plumbing ----------------------------------------------------------------------------------

    def _next_id(self) -> str:
        return f"{self.id_prefix}{next(self._counter):07d}"

    def _conversation(self, conversation_id: str) -> ChannelConversation:
        conv = self.conversations.get(conversation_id)
        if conv is None:
            conv = ChannelConversation(conversation_id, {m["id"]: dict(m) for m in self.members})
            self.conversations[conversation_id] = conv
        return conv

    async def _dispatch(self, request: web.Request) -> web.Response:
        at = time.time()
        raw = await request.read()
        route, params = match_connector(request.method, request.rel_url.raw_path)
        call = ConnectorCall(
            method=request.method,
            path=request.rel_url.raw_path,
            route=route.name if route else "unknown",
            conversation_id=params.get("cid"),
            activity_id=params.get("aid"),
            body=_parse_json(raw),
            raw=raw,
            headers=dict(request.headers),
            params=params,
            query=dict(request.query),
            at=at,
        )
        answer = self._answer(call, route)
        call.status = answer.status
        call.response = None if isinstance(answer.body, bytes) else answer.body
        logger.debug("%s %s -> %s %s", call.method, call.path, call.route, call.status)
        response = _to_response(answer)
        for observer in self.observers:
            try:
                observer(call, response)
            except Exception:  # an observer's failure must not change what the bot gets
                logger.exception("connector channel observer failed on %s %s", call.method, call.path)
        created = call.response.get("id") if call.route == "create_conversation" and call.status < 300 else None
        self._note_call(call.conversation_id or (created if isinstance(created, str) else None))
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()
        return response

    def _answer(self, call: ConnectorCall, route: RouteSpec | None) -> _Answer:
        # Whatever goes wrong in here, the client gets an ErrorResponse, never a traceback.
        try:
            failure = self._take_failure(call.route)
            if failure is not None:
                return failure
            told = self.responder(call) if self.responder is not None else None
            if told is not None and told[0] >= 400:
                return _Answer(told[0], told[1])
            answer = self._route_answer(call, route)
            if told is not None and answer.status < 300 and 200 <= told[0] < 300:
                answer.status = told[0]  # the recording's success status (200, 201, 202)
            return answer
        except Exception:
            logger.exception("connector channel failed on %s %s", call.method, call.path)
            return error(500, "ServiceError", "The connector stand-in failed; see the test log")

    def _route_answer(self, call: ConnectorCall, route: RouteSpec | None) -> _Answer:
        if route is None:
            return error(404, "NotFound", f"No route for {call.method} {call.path}")
        if route.name in self.unsupported:
            return error(405, "BadArgument", "This channel does not support this operation")
        if route.needs_body and not isinstance(call.body, dict):
            return error(400, "BadArgument", "The request body must be a JSON object")
        if call.conversation_id is not None:
            refusal = self._check_conversation(call.conversation_id)
            if refusal is not None:
                return refusal
        handler: Callable[[ConnectorCall], _Answer] = getattr(self, "_on_" + route.name)
        return handler(call)

    def _take_failure(self, route_name: str) -> _Answer | None:
        for failure in self._failures:
            if failure.route is None or failure.route == route_name:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                return error(failure.status, failure.code, failure.message)
        return None

    def _check_conversation(self, conversation_id: str) -> _Answer | None:
        if conversation_id in self.conversations:
            return None
        if self.strict_conversations:
            return error(404, "ConversationNotFound", f"Conversation {conversation_id} not found")
        self._conversation(conversation_id)
        return None

    def _store_sent(self, conv: ChannelConversation, body: dict[str, Any]) -> _Answer:
        hook = self.on_bot_activity
        activity_id = hook(conv.id, body) if hook is not None else self._next_id()
        conv.sent[activity_id] = body
        return _Answer(200, {"id": activity_id})

    # -- route handlers: conversations -------------------------------------------------------------

    def _on_create_conversation(self, call: ConnectorCall) -> _Answer:
        params = call.body
        conv = self._conversation(f"conv-{self._next_id()}")
        for member in params.get("members") or []:
            if member.get("id"):
                conv.members.setdefault(member["id"], _account(member))
        result: dict[str, Any] = {"id": conv.id, "serviceUrl": self.service_url}
        if isinstance(params.get("activity"), dict):
            result["activityId"] = self._store_sent(conv, params["activity"]).body["id"]
        return _Answer(200, result)

    def _on_get_conversations(self, call: ConnectorCall) -> _Answer:
        conversations = [
            {"id": c.id, "members": list(c.members.values())} for c in self.conversations.values()
        ]
        return _Answer(200, {"conversations": conversations, "continuationToken": None})

    def _on_send_to_conversation(self, call: ConnectorCall) -> _Answer:
        return self._store_sent(self.conversations[call.conversation_id or ""], call.body)

    def _on_send_history(self, call: ConnectorCall) -> _Answer:
        if not isinstance(call.body.get("activities"), list):
            return error(400, "BadArgument", "A Transcript needs an 'activities' array")
        return _Answer(200, {"id": self._next_id()})

    def _on_reply_to_activity(self, call: ConnectorCall) -> _Answer:
        # Lenient on purpose: SDK proactive turns reply to ids the channel never issued (protocol.md S-2).
        return self._store_sent(self.conversations[call.conversation_id or ""], call.body)

    def _on_update_activity(self, call: ConnectorCall) -> _Answer:
        conv = self.conversations[call.conversation_id or ""]
        activity_id = call.activity_id or ""
        if not conv.is_live(activity_id):
            return _activity_not_found(activity_id)
        conv.sent[activity_id] = call.body
        return _Answer(200, {"id": activity_id})

    def _on_delete_activity(self, call: ConnectorCall) -> _Answer:
        conv = self.conversations[call.conversation_id or ""]
        activity_id = call.activity_id or ""
        if not conv.is_live(activity_id):
            return _activity_not_found(activity_id)
        conv.deleted.add(activity_id)
        return _Answer(200)

    # -- route handlers: members -------------------------------------------------------------------

    def _on_get_members(self, call: ConnectorCall) -> _Answer:
        return _Answer(200, list(self.conversations[call.conversation_id or ""].members.values()))

    def _on_get_paged_members(self, call: ConnectorCall) -> _Answer:
        members = list(self.conversations[call.conversation_id or ""].members.values())
        return _Answer(200, {"members": members, "continuationToken": None})

    def _on_get_member(self, call: ConnectorCall) -> _Answer:
        member = self.conversations[call.conversation_id or ""].members.get(call.params["mid"])
        if member is None:
            return _member_not_found(call.params["mid"])
        return _Answer(200, member)

    def _on_delete_member(self, call: ConnectorCall) -> _Answer:
        members = self.conversations[call.conversation_id or ""].members
        if members.pop(call.params["mid"], None) is None:
            return _member_not_found(call.params["mid"])
        return _Answer(200)

    def _on_get_activity_members(self, call: ConnectorCall) -> _Answer:
        conv = self.conversations[call.conversation_id or ""]
        activity_id = call.activity_id or ""
        if not (conv.is_live(activity_id) or activity_id in conv.inbound_ids):
            return _activity_not_found(activity_id)
        return _Answer(200, list(conv.members.values()))

    # -- route handlers: attachments ---------------------------------------------------------------

    def _on_upload_attachment(self, call: ConnectorCall) -> _Answer:
        views: dict[str, bytes] = {}
        try:
            for view_id, key in (("original", "originalBase64"), ("thumbnail", "thumbnailBase64")):
                if call.body.get(key):
                    views[view_id] = base64.b64decode(call.body[key], validate=True)
        except (binascii.Error, TypeError):
            return error(400, "BadArgument", "originalBase64/thumbnailBase64 must be base64")
        attachment_id = f"att-{self._next_id()}"
        self._attachments[attachment_id] = _Attachment(call.body.get("name"), call.body.get("type"), views)
        return _Answer(200, {"id": attachment_id})

    def _on_get_attachment_info(self, call: ConnectorCall) -> _Answer:
        attachment = self._attachments.get(call.params["att"])
        if attachment is None:
            return error(404, "NotFound", f"Attachment {call.params['att']} not found")
        views = [{"viewId": view_id, "size": len(data)} for view_id, data in attachment.views.items()]
        return _Answer(200, {"name": attachment.name, "type": attachment.type, "views": views})

    def _on_get_attachment(self, call: ConnectorCall) -> _Answer:
        attachment = self._attachments.get(call.params["att"])
        data = attachment.views.get(call.params["view"]) if attachment else None
        if attachment is None or data is None:
            return error(
                404, "NotFound", f"Attachment view {call.params['att']}/{call.params['view']} not found"
            )
        return _Answer(200, data, attachment.type or "application/octet-stream")

    # -- route handlers: Teams ---------------------------------------------------------------------

    def _on_teams_get_team(self, call: ConnectorCall) -> _Answer:
        team_id = call.params["team"]
        body = {
            "id": team_id,
            "name": "Test Team",
            "aadGroupId": str(uuid.uuid5(uuid.NAMESPACE_URL, team_id)),
        }
        return _Answer(200, {**body, "channelCount": 1, "memberCount": len(self.members)})

    def _on_teams_get_channels(self, call: ConnectorCall) -> _Answer:
        # In Teams the General channel has the team's own id.
        return _Answer(200, {"conversations": [{"id": call.params["team"], "name": "General"}]})

    def _on_teams_get_meeting(self, call: ConnectorCall) -> _Answer:
        meeting_id = call.params["meeting"]
        details = {"id": meeting_id, "title": "Test meeting", "type": "Scheduled", "joinUrl": ""}
        conversation = {"id": f"19:meeting_{meeting_id}@thread.v2", "isGroup": True}
        return _Answer(
            200, {"details": details, "conversation": conversation, "organizer": {"id": "organizer"}}
        )

    def _on_teams_get_participant(self, call: ConnectorCall) -> _Answer:
        user = {"id": call.params["pid"], "name": "Participant", "userRole": "user"}
        meeting = {"role": "Attendee", "inMeeting": True}
        conversation = {"id": f"19:meeting_{call.params['meeting']}@thread.v2", "isGroup": True}
        return _Answer(200, {"user": user, "meeting": meeting, "conversation": conversation})

    def _on_teams_meeting_notification(self, call: ConnectorCall) -> _Answer:
        # Teams answers 202 with no body when every recipient was notified.
        return _Answer(202)


def _activity_not_found(activity_id: str) -> _Answer:
    return error(404, "ActivityNotFoundInConversation", f"Activity {activity_id} not found in conversation")


def _member_not_found(member_id: str) -> _Answer:
    return error(404, "MemberNotFoundInConversation", f"Member {member_id} not found in conversation")


def _parse_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _to_response(answer: _Answer) -> web.Response:
    headers = {"X-Correlating-OperationId": uuid.uuid4().hex}
    if answer.body is None:
        return web.Response(status=answer.status, headers=headers)
    data = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
    return web.Response(
        status=answer.status, body=data, headers={**headers, "Content-Type": answer.content_type}
    )
