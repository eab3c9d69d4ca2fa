"""A local Direct Line channel: the Direct Line 3.0 client API and the Bot Connector v3 API, on one port.

A Direct Line client (botframework-directlinejs, Web Chat, a test script, the chat page at ``/``) starts a
conversation here, posts activities, and reads the conversation by polling GET or over the WebSocket
stream. The channel posts each activity to the bot and takes the bot's replies on its Bot Connector face
(``/v3/conversations/...``), which a mounted :class:`~botproxy.standins.connector.ConnectorChannel` serves. It
follows the Direct Line 3.0 swagger prose (docs/protocol.md 1.2):

- ids are ``{conversationId}|{n:07d}``: one sequence for the user's and the bot's activities, so the id a
  client sees is the id the bot saw (inbound) or was given (its ResourceResponse);
- a watermark is how many activities of the conversation a client has been given, as a string;
- typing reaches clients over the stream only; conversationUpdate never reaches them;
- a POST answers once the bot has: 200 ``{id}``, or 502 ``BotRejectedActivity`` when the bot failed or is
  down; the posted activity reaches the clients through GET and the stream, never inline, and before the
  bot's replies (it joins the conversation before the bot is called, so a rejected one stays there too);
- the stream replays from the watermark in its streamUrl, then pushes ActivitySets as they happen, and an
  empty frame every ``keepalive`` seconds. A streamUrl is built from the request's Host header, so a
  client behind a reverse proxy is sent to the proxy.

When a conversation starts, the bot gets a conversationUpdate adding the bot and, when the client named
its user (start body or token), the user; a user first seen on a post is added just before that post,
as the real service does. Tokens are JWTs shaped like the service's (they name the bot, the site, the
conversation and the user they were issued for) and are not refused when they expire; the secret
(random unless given) opens every conversation, a token only its own. Uploads become a message activity whose
attachments point back at this channel.

At ``/`` the channel serves a chat page of its own (botproxy/standins/static/chat.html), which gets a token for
its conversation from ``POST /botproxy/token``; the secret never reaches the page.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import hmac
import json
import logging
import re
import secrets
import string
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from ..model import utc_now
from ..wire import protocol as p
from .connector import ConnectorChannel
from .server import serve

logger = logging.getLogger(__name__)

CHANNEL_ID = "directline"
EXPIRES_IN = 1800  # what the real service announces; our tokens never expire
TOKEN_ISSUER = "https://webchat.botframework.com/"  # `iss` and `aud` of the service's tokens
ACTIVITY_CONTENT_TYPE = "application/vnd.microsoft.activity"
UPLOAD_LIMIT = 32 * 1024 * 1024
_ID_CHARS = string.ascii_letters + string.digits
_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


@dataclass
class _Grant:
    """What an Authorization header (or a stream's ``t``) opens."""

    secret: bool
    token: str | None = None
    conversation_id: str | None = None
    user: dict[str, Any] | None = None


@dataclass
class DirectLineConversation:
    """One conversation: what its clients have been given, in order."""

    id: str
    user: dict[str, Any] | None = None  # the user named at start or in the token
    started: bool = False
    activities: list[dict[str, Any]] = field(default_factory=list)  # the watermark indexes this list
    announced: set[str] = field(default_factory=set)  # user ids the bot was told about (membersAdded)
    next_seq: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # set, and replaced, on every append

    def new_id(self) -> str:
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        return f"{self.id}|{seq:07d}"

    def append(self, activity: dict[str, Any]) -> None:
        self.activities.append(activity)
        event, self.changed = self.changed, asyncio.Event()
        event.set()


@dataclass
class _Upload:
    content_type: str
    name: str
    data: bytes


class DirectLineChannel:
    """Direct Line 3.0 for clients and Bot Connector v3 for the bot, on ``host:port`` (0 picks a port).

    ``bot_url`` is the bot's messaging endpoint (or a recorder's listener in front of it); it may be set
    after :meth:`start`. ``served`` counts the requests by route name (``protocol.DL_*`` and ``"page"``).
    """

    def __init__(
        self,
        bot_url: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        secret: str | None = None,
        bot: dict[str, Any] | None = None,
        keepalive: float = 15.0,
        bot_timeout: float = 60.0,
    ) -> None:
        self.bot_url = bot_url
        self.host = host
        self.port = port
        self.secret = secret or secrets.token_urlsafe(24)
        self.site_id = secrets.token_urlsafe(8)  # the `site` claim: which Direct Line site issued a token
        self.bot: dict[str, Any] = dict(bot or {"id": "bot", "name": "Bot"})
        self.keepalive = keepalive
        self.bot_timeout = bot_timeout
        self.connector = ConnectorChannel(channel_id=CHANNEL_ID, bot=self.bot, strict_conversations=True)
        self.connector.on_bot_activity = self._bot_activity
        # The Direct Line service does not update or delete activities: it answers the bot 405 BadArgument
        # "This channel does not support this operation" (botframework-sdk#4734), and support "remains on
        # the backlog" (BotFramework-WebChat#2426, BotFramework-Services#130), so clients never see a change.
        self.connector.unsupported = frozenset({p.UPDATE_ACTIVITY, p.DELETE_ACTIVITY})
        self.conversations: dict[str, DirectLineConversation] = {}
        self.served: collections.Counter[str] = collections.Counter()
        self._tokens: dict[str, _Grant] = {}
        self._uploads: dict[str, _Upload] = {}
        self._sockets: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._page: tuple[bytes, str] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[_cors], client_max_size=UPLOAD_LIMIT)
        handlers = {
            p.DL_GENERATE_TOKEN: self._generate_token,
            p.DL_REFRESH_TOKEN: self._refresh_token,
            p.DL_START_CONVERSATION: self._start_conversation,
            p.DL_SESSION_ID: self._session_id,
            p.DL_RECONNECT: self._reconnect,
            p.DL_GET_ACTIVITIES: self._get_activities,
            p.DL_POST_ACTIVITY: self._post_activity,
            p.DL_UPLOAD: self._upload,
            p.DL_STREAM: self._stream,
        }
        # Direct Line 3.0 as the recorder knows it (wire/protocol.py's table; the {cid} templates are
        # aiohttp's own syntax); 1.1 is not served.
        for spec in p.DIRECTLINE_ROUTES:
            if spec.name in handlers:
                assert spec.method is not None
                app.router.add_route(spec.method, spec.template, handlers[spec.name])
        app.router.add_route("*", "/v3/directline/{tail:.*}", self._dl_not_found)
        app.router.add_get("/", self._chat_page)
        app.router.add_post("/botproxy/token", self._page_token)
        app.router.add_get("/botproxy/uploads/{uid}/{name}", self._uploaded)
        # Everything else is the Bot Connector face the bot replies to.
        app.router.add_route("*", "/{tail:.*}", self.connector.handle)
        app.on_shutdown.append(self._close_sockets)
        self._runner, self.port = await serve(app, self.host, self.port)
        self.connector.public_url = self.service_url
        logger.debug("Direct Line channel at %s, bot %s", self.directline_url, self.bot_url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.connector.stop()

    async def _close_sockets(self, app: web.Application) -> None:
        for ws in list(self._sockets):
            await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"channel stopping")

    @property
    def bot_handle(self) -> str:
        """The `bot` claim of its tokens: the bot's handle (its id without an `@` suffix)."""
        return str(self.bot.get("id") or "bot").split("@")[0]

    @property
    def base_url(self) -> str:
        """``http://host:port`` as the channel listens (the chat page is at ``/``)."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def directline_url(self) -> str:
        """The Direct Line base: directlinejs's and Web Chat's ``domain`` option."""
        return self.base_url + "/v3/directline"

    @property
    def service_url(self) -> str:
        """The serviceUrl the bot is given: the Bot Connector face."""
        return self.base_url + "/"

    # -- for tests ---------------------------------------------------------------------------------

    async def wait_for_activities(self, conversation_id: str, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until a conversation holds ``n`` activities for its clients; return them all."""
        conv = self.conversations[conversation_id]
        try:
            async with asyncio.timeout(timeout):
                while len(conv.activities) < n:
                    await conv.changed.wait()
        except TimeoutError:
            texts = [a.get("text") or a.get("type") for a in conv.activities]
            raise TimeoutError(f"expected {n} activities in {conversation_id} within {timeout}s, got {texts}") from None
        return list(conv.activities)

    # -- auth --------------------------------------------------------------------------------------

    def _grant(self, request: web.Request) -> _Grant | web.Response:
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            return _error(401, "BadArgument", "Missing Authorization: Bearer <secret or token>")
        if secrets.compare_digest(credential.encode(), self.secret.encode()):
            return _Grant(secret=True)
        grant = self._tokens.get(credential)
        if grant is None:
            return _error(403, "BadArgument", "Unknown secret or token")
        return grant

    def _conversation_for(self, request: web.Request) -> tuple[_Grant, DirectLineConversation] | web.Response:
        grant = self._grant(request)
        if isinstance(grant, web.Response):
            return grant
        conversation_id = request.match_info["cid"]
        if not grant.secret and grant.conversation_id != conversation_id:
            return _error(403, "BadArgument", "This token belongs to another conversation")
        conv = self.conversations.get(conversation_id)
        if conv is None:
            return _error(404, "BadArgument", f"Conversation {conversation_id} not found")
        return grant, conv

    def _issue_token(self, conv: DirectLineConversation, user: dict[str, Any] | None) -> str:
        token = direct_line_token(self.bot_handle, self.site_id, conv.id, user, self.secret)
        self._tokens[token] = _Grant(False, token, conv.id, user)
        return token

    def _token_answer(self, conv: DirectLineConversation, user: dict[str, Any] | None) -> web.Response:
        """A new token for `conv`, answered as the token endpoints answer (a Conversation without a streamUrl)."""
        return _json({"conversationId": conv.id, "token": self._issue_token(conv, user), "expires_in": EXPIRES_IN})

    def _new_conversation(self, user: dict[str, Any] | None) -> DirectLineConversation:
        conversation_id = "".join(secrets.choice(_ID_CHARS) for _ in range(22))
        conv = DirectLineConversation(conversation_id, user=user)
        self.conversations[conversation_id] = conv
        return conv

    # -- tokens ------------------------------------------------------------------------------------

    async def _generate_token(self, request: web.Request) -> web.Response:
        self.served[p.DL_GENERATE_TOKEN] += 1
        grant = self._grant(request)
        if isinstance(grant, web.Response):
            return grant
        if not grant.secret:
            return _error(403, "BadArgument", "Generating a token takes the secret, not a token")
        user = _user_param(await _json_or_none(request))
        conv = self._new_conversation(user)
        return self._token_answer(conv, user)

    async def _page_token(self, request: web.Request) -> web.Response:
        """A token for the chat page, which must never see the secret. Another site's page may call this
        too, but cannot read the answer: it carries no CORS header."""
        self.served["page"] += 1
        conv = self._new_conversation(None)
        return self._token_answer(conv, None)

    async def _refresh_token(self, request: web.Request) -> web.Response:
        self.served[p.DL_REFRESH_TOKEN] += 1
        grant = self._grant(request)
        if isinstance(grant, web.Response):
            return grant
        if grant.secret or grant.conversation_id is None:
            return _error(403, "BadArgument", "Refreshing takes a token; the secret does not expire")
        conv = self.conversations[grant.conversation_id]
        return self._token_answer(conv, grant.user)

    async def _session_id(self, request: web.Request) -> web.Response:
        self.served[p.DL_SESSION_ID] += 1
        grant = self._grant(request)
        if isinstance(grant, web.Response):
            return grant
        return _json({"sessionId": hashlib.sha256((grant.token or "secret").encode()).hexdigest()[:22]})

    # -- conversations -----------------------------------------------------------------------------

    async def _start_conversation(self, request: web.Request) -> web.Response:
        self.served[p.DL_START_CONVERSATION] += 1
        grant = self._grant(request)
        if isinstance(grant, web.Response):
            return grant
        user = grant.user or _user_param(await _json_or_none(request))
        if grant.secret:
            conv = self._new_conversation(user)
            token = self._issue_token(conv, user)
        else:
            assert grant.conversation_id is not None and grant.token is not None
            conv = self.conversations[grant.conversation_id]
            token = grant.token
            if conv.user is None:
                conv.user = user
        status = 200 if conv.started else 201
        watermark = len(conv.activities) if conv.started else 0
        await self._ensure_started(conv)
        return _json(self._conversation_json(request, conv, token, watermark), status)

    async def _reconnect(self, request: web.Request) -> web.Response:
        self.served[p.DL_RECONNECT] += 1
        found = self._conversation_for(request)
        if isinstance(found, web.Response):
            return found
        grant, conv = found
        token = grant.token or self._issue_token(conv, conv.user)
        watermark = _watermark(request, default=len(conv.activities))
        return _json(self._conversation_json(request, conv, token, watermark))

    def _conversation_json(
        self, request: web.Request, conv: DirectLineConversation, token: str, watermark: int
    ) -> dict[str, Any]:
        path = f"/v3/directline/conversations/{quote(conv.id, safe='')}/stream"
        stream_url = f"{_ws_origin(request)}{path}?watermark={watermark}&t={quote(token, safe='')}"
        return {"conversationId": conv.id, "token": token, "expires_in": EXPIRES_IN, "streamUrl": stream_url}

    async def _ensure_started(self, conv: DirectLineConversation) -> None:
        """Tell the bot the conversation began, as the real service does; a bot that fails to take it
        does not stop the conversation (the client learns about the bot on its first post)."""
        if conv.started:
            return
        conv.started = True
        members = [{**self.bot}]
        if conv.user and conv.user.get("id"):
            members.insert(0, dict(conv.user))
            conv.announced.add(str(conv.user["id"]))
        await self._announce(conv, members, conv.user or {**self.bot, "role": "bot"})

    async def _announce(
        self, conv: DirectLineConversation, members: list[dict[str, Any]], sender: dict[str, Any]
    ) -> None:
        update = self._inbound(conv, {"type": "conversationUpdate", "membersAdded": members, "from": sender})
        update["id"] = secrets.token_hex(6)  # not a client-visible activity: outside the sequence
        status, detail = await self._to_bot(update)
        if not 200 <= status < 300:
            logger.warning("the bot did not take the conversationUpdate of %s: %s", conv.id, detail)

    # -- activities --------------------------------------------------------------------------------

    async def _get_activities(self, request: web.Request) -> web.Response:
        self.served[p.DL_GET_ACTIVITIES] += 1
        found = self._conversation_for(request)
        if isinstance(found, web.Response):
            return found
        _, conv = found
        start = _watermark(request, default=0)
        # Typing reaches clients over the stream only (the availability table).
        activities = [a for a in conv.activities[start:] if a.get("type") != "typing"]
        return _json({"activities": activities, "watermark": str(len(conv.activities))})

    async def _post_activity(self, request: web.Request) -> web.Response:
        self.served[p.DL_POST_ACTIVITY] += 1
        found = self._conversation_for(request)
        if isinstance(found, web.Response):
            return found
        grant, conv = found
        body = await _json_or_none(request)
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            return _error(400, "BadArgument", "The body must be one Activity (a JSON object with a type)")
        return await self._deliver_and_post(conv, grant, body)

    async def _upload(self, request: web.Request) -> web.Response:
        self.served[p.DL_UPLOAD] += 1
        found = self._conversation_for(request)
        if isinstance(found, web.Response):
            return found
        grant, conv = found
        user_id = request.query.get("userId")
        if not user_id:
            return _error(400, "BadArgument", "Upload needs ?userId=<the sender's id>")
        activity: dict[str, Any] = {"type": "message"}
        files: list[_Upload] = []
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, aiohttp.BodyPartReader):
                    continue
                data = await part.read(decode=True)
                part_type = part.headers.get("Content-Type", "application/octet-stream")
                if part_type.split(";")[0].strip() == ACTIVITY_CONTENT_TYPE:
                    parsed = _parse(bytes(data))
                    if not isinstance(parsed, dict):
                        return _error(400, "BadArgument", f"The {ACTIVITY_CONTENT_TYPE} part must be an Activity")
                    activity = parsed
                else:
                    files.append(_Upload(part_type, part.filename or "file", bytes(data)))
        else:
            name = _disposition_filename(request.headers.get("Content-Disposition", "")) or "file"
            files.append(_Upload(request.content_type or "application/octet-stream", name, await request.read()))
        if not files:
            return _error(400, "BadArgument", "The upload holds no file")
        attachments = []
        for upload in files:
            uid = secrets.token_urlsafe(12)
            self._uploads[uid] = upload
            url = f"{self.base_url}/botproxy/uploads/{uid}/{quote(upload.name, safe='')}"
            attachments.append({"contentType": upload.content_type, "contentUrl": url, "name": upload.name})
        activity["attachments"] = attachments
        activity["from"] = {**(activity.get("from") or {}), "id": user_id}
        return await self._deliver_and_post(conv, grant, activity)

    async def _uploaded(self, request: web.Request) -> web.Response:
        upload = self._uploads.get(request.match_info["uid"])
        if upload is None:
            return _error(404, "NotFound", "No such upload")
        # Served on the page's origin: never let an uploaded file run as a page of ours.
        headers = {"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}
        return web.Response(body=upload.data, content_type=upload.content_type.split(";")[0], headers=headers)

    async def _deliver_and_post(
        self, conv: DirectLineConversation, grant: _Grant, body: dict[str, Any]
    ) -> web.Response:
        await self._ensure_started(conv)
        sender = dict(body.get("from") or {})
        if grant.user and grant.user.get("id"):
            sender = {**sender, **grant.user}  # a user named in the token wins (enhanced authentication)
        if not sender.get("id"):
            if not (conv.user and conv.user.get("id")):
                return _error(400, "BadArgument", "The activity needs from.id, the user's id chosen by the client")
            sender = dict(conv.user)
        if str(sender["id"]) not in conv.announced:
            conv.announced.add(str(sender["id"]))
            await self._announce(conv, [_account(sender)], sender)
        activity = self._inbound(conv, {**body, "from": {**sender, "role": sender.get("role", "user")}})
        activity["id"] = conv.new_id()
        conv.append(_for_clients(activity))  # before the bot answers, so it precedes the replies
        status, detail = await self._to_bot(activity)
        if not 200 <= status < 300:
            logger.info("the bot rejected %s: %s", activity["id"], detail)
            return _error(502, "BotRejectedActivity", f"Failed to send activity: {detail}")
        return _json({"id": activity["id"]})

    def _inbound(self, conv: DirectLineConversation, fields: dict[str, Any]) -> dict[str, Any]:
        activity: dict[str, Any] = dict(fields)
        activity.update(
            {
                "channelId": CHANNEL_ID,
                "serviceUrl": self.service_url,
                "conversation": {"id": conv.id},
                "recipient": {**self.bot, "role": "bot"},
                "timestamp": utc_now(),
            }
        )
        return activity

    async def _to_bot(self, activity: dict[str, Any]) -> tuple[int, str]:
        """POST to the bot; (status, what went wrong). Status 0 when the bot could not be reached."""
        try:
            status, raw = await asyncio.wait_for(self.connector.send(self.bot_url, activity), self.bot_timeout)
        except (aiohttp.ClientError, OSError) as exc:
            return 0, f"the bot at {self.bot_url} is unavailable ({exc.__class__.__name__}: {exc})"
        except TimeoutError:
            return 0, f"the bot at {self.bot_url} did not answer within {self.bot_timeout:g} s"
        return status, f"the bot answered HTTP {status} {raw[:200].decode('utf-8', 'replace')}".rstrip()

    def _bot_activity(self, conversation_id: str, body: dict[str, Any]) -> str:
        """The connector's hook: number an activity the bot sent and hand it to the clients."""
        conv = self.conversations.get(conversation_id)
        if conv is None:  # a conversation the bot created itself: no Direct Line client can see it
            return f"{conversation_id}|{secrets.token_hex(4)}"
        activity = {**body, "id": conv.new_id(), "channelId": CHANNEL_ID, "conversation": {"id": conv.id}}
        activity["timestamp"] = utc_now()  # the channel's clock, as for the user's activities
        if "from" not in activity:
            activity["from"] = {**self.bot, "role": "bot"}
        conv.append(_for_clients(activity))
        return str(activity["id"])

    # -- the stream --------------------------------------------------------------------------------

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        self.served[p.DL_STREAM] += 1
        conversation_id = request.match_info["cid"]
        grant = self._tokens.get(request.query.get("t", ""))
        if grant is None or grant.conversation_id != conversation_id:
            return _error(403, "BadArgument", "The stream URL's token does not open this conversation")
        conv = self.conversations.get(conversation_id)
        if conv is None:
            return _error(404, "BadArgument", f"Conversation {conversation_id} not found")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        feeder = asyncio.create_task(self._feed(ws, conv, _watermark(request, default=len(conv.activities))))
        try:
            async for _ in ws:  # clients may send empty messages to check the line; ignored
                pass
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
            self._sockets.discard(ws)
        return ws

    async def _feed(self, ws: web.WebSocketResponse, conv: DirectLineConversation, position: int) -> None:
        try:
            while not ws.closed:
                changed = conv.changed
                if position < len(conv.activities):
                    batch, position = conv.activities[position:], len(conv.activities)
                    await ws.send_str(json.dumps({"activities": batch, "watermark": str(position)}))
                    continue
                try:
                    await asyncio.wait_for(changed.wait(), self.keepalive)
                except TimeoutError:
                    await ws.send_str("")  # keep-alive
        except (ConnectionError, RuntimeError) as exc:  # the client went away mid-send
            logger.debug("stream of %s ended: %r", conv.id, exc)

    # -- the chat page and errors ------------------------------------------------------------------

    async def _chat_page(self, request: web.Request) -> web.Response:
        self.served["page"] += 1
        if self._page is None:
            html = resources.files("botproxy.standins").joinpath("static/chat.html").read_bytes()
            hashes = " ".join(
                "'sha256-" + base64.b64encode(hashlib.sha256(m.encode()).digest()).decode() + "'"
                for m in _SCRIPT.findall(html.decode())
            )
            self._page = html, hashes
        html, hashes = self._page
        csp = (
            f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; connect-src 'self' ws: wss:; "
            "img-src 'self' data: http: https:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
        return web.Response(
            body=html,
            content_type="text/html",
            charset="utf-8",
            headers={"Content-Security-Policy": csp, "Cache-Control": "no-store"},
        )

    async def _dl_not_found(self, request: web.Request) -> web.Response:
        self.served[p.DL_UNKNOWN] += 1
        return _error(404, "NotFound", f"No Direct Line route for {request.method} {request.path}")


# -- helpers ---------------------------------------------------------------------------------------


@web.middleware
async def _cors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Let a Web Chat page on another origin use the Direct Line API, as the real service does: the API
    is authorised by a bearer header, never by cookies, so any origin may call it."""
    if not request.path.startswith("/v3/directline/"):
        response: web.StreamResponse = await handler(request)
        return response
    if request.method == "OPTIONS":
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": "*",
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", "*"),
                "Access-Control-Max-Age": "600",
            },
        )
    response = await handler(request)
    if not isinstance(response, web.WebSocketResponse):
        response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def _error(status: int, code: str, message: str) -> web.Response:
    return _json({"error": {"code": code, "message": message}}, status)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", charset="utf-8")


def _parse(raw: bytes) -> Any:
    try:
        return p.parse_json(raw)
    except p.BodyError:
        return None


async def _json_or_none(request: web.Request) -> Any:
    return _parse(await request.read())


def direct_line_token(bot: str, site: str, conversation_id: str, user: dict[str, Any] | None, key: str) -> str:
    """A token shaped like the Direct Line service's: a JWT whose claims name the bot, the site, the
    conversation and, when the token was generated for one, the user, valid for EXPIRES_IN seconds from
    now, issued by and for `https://webchat.botframework.com/`. Web Chat reads the user id from the
    `user` claim (botframework-webchat 4.18.1 decodes the token's payload and takes `.user`), so a page
    that gets a token for a user keeps that id instead of making up a random one. Signed HS256 with the
    channel's secret, where the service signs with its own key: clients never check the signature, and
    the channel looks tokens up rather than verifying them (they are not refused after `exp` either)."""
    now = int(time.time())
    claims: dict[str, Any] = {"bot": bot, "site": site, "conv": conversation_id}
    if user and user.get("id"):
        claims["user"] = str(user["id"])
    # `jti` (RFC 7519's token id) makes every token new, so a refresh within the same second differs too.
    claims.update(nbf=now, exp=now + EXPIRES_IN, iss=TOKEN_ISSUER, aud=TOKEN_ISSUER, jti=secrets.token_urlsafe(9))
    signing_input = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode()) + "." + _b64url(
        json.dumps(claims, separators=(",", ":")).encode()
    )
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64url(signature)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _user_param(body: Any) -> dict[str, Any] | None:
    """The ``user`` of a TokenParameters body, when it names one."""
    user = body.get("user") if isinstance(body, dict) else None
    if isinstance(user, dict) and user.get("id"):
        return _account(user)
    return None


def _account(account: dict[str, Any]) -> dict[str, Any]:
    return {k: account[k] for k in ("id", "name") if account.get(k) is not None}


def _for_clients(activity: dict[str, Any]) -> dict[str, Any]:
    """What clients see of an activity: all of it but the bot-facing serviceUrl."""
    return {k: v for k, v in activity.items() if k != "serviceUrl"}


def _watermark(request: web.Request, *, default: int) -> int:
    """A watermark we issued is a count; anything else (empty, ``-``, foreign) means ``default``."""
    value = request.query.get("watermark", "")
    return int(value) if value.isdigit() else default


def _ws_origin(request: web.Request) -> str:
    """ws(s)://host[:port] as the client reached us: a reverse proxy's address when there is one."""
    host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or request.host
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip() or request.scheme
    return f"{'wss' if proto == 'https' else 'ws'}://{host}"


def _disposition_filename(value: str) -> str | None:
    match = re.search(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', value, re.I)
    return match.group(1) if match else None
