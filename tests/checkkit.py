"""Test helpers for the checks: `Wire` drives hand-made Bot Framework traffic through the real
`SessionRecorder` (so the engine gets exactly the activity and exchange dicts it gets in production, in
event order), `record_session` runs the real proxy around a bot, and `MiniConnector` is a Connector
stand-in that can hold a response until the test lets it go (for real overlapping requests)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import aiohttp
from aiohttp import web

from botproxy import store
from botproxy.checks import CheckConfig, Engine, Finding, LiveChecks
from botproxy.record.mitm.proxy import ProxyConfig, RecordingProxy
from botproxy.record.recorder import RequestSeen, ResponseSeen, SessionRecorder, WebSocketSeen
from botproxy.record.session import LiveSession
from botproxy.standins.server import serve

BOT_URL = "http://127.0.0.1:3978/api/messages"
TEAMS = "https://smba.trafficmanager.net/amer/"
JSON = [("content-type", "application/json; charset=utf-8")]


def q(value: str) -> str:
    return quote(value, safe="")


@dataclass
class Flow:
    """One HTTP exchange under way."""

    id: str
    kind: str  # inbound, send, update, delete, create, other
    activity: dict[str, Any] | None = None  # what the request carried
    seq: int | None = None  # seq of its (first) activity, as the recorder numbered it
    closed: bool = False
    response: dict[str, Any] | None = None  # the JSON object it was answered with


@dataclass
class Wire:
    """Hand-made traffic through a real SessionRecorder, checked by a strict Engine.

    Requests and responses are fed in exactly the order the test calls them, which is the order the
    rules see. Activities look like what the Python SDK sends (protocol.md S-1/S-2) unless told otherwise.
    """

    config: CheckConfig | None = None
    channel: str = "msteams"
    service_url: str = TEAMS
    session_id: int = 1
    rows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    events: list[RequestSeen | ResponseSeen | WebSocketSeen] = field(default_factory=list)
    clock: float = 1_700_000_000.0
    culprit: int | None = None  # the activity a scenario expects a finding at
    engine_class: type[Engine] = Engine

    def __post_init__(self) -> None:
        self.engine = self.engine_class(self.config, strict=True)
        self.checks = LiveChecks(self.engine, self.session_id)
        self.recorder = SessionRecorder(self.session_id, observers=[self.checks])
        self._flows = itertools.count(1)
        self._ids = itertools.count(1)

    # -- plumbing ---------------------------------------------------------------------------------

    def _feed(self, event: RequestSeen | ResponseSeen | WebSocketSeen) -> None:
        self.events.append(event)
        rows = self.recorder.handle(event)
        assert not [r for t, r in rows if t == "errors"], rows
        self.rows += rows

    def tick(self, seconds: float = 0.01) -> float:
        self.clock += seconds
        return self.clock

    def new_id(self, prefix: str = "id") -> str:
        return f"{prefix}-{next(self._ids)}"

    def _request(self, kind: str, method: str, url: str, body: Any, listener: str) -> Flow:
        flow = Flow(f"f{next(self._flows)}", kind, body if isinstance(body, dict) else None)
        content = json.dumps(body).encode() if body is not None else None
        before = self.recorder.activity_seq
        self._feed(RequestSeen(flow.id, self.tick(), listener, method, url, JSON if content else [], content))
        if self.recorder.activity_seq > before:
            flow.seq = before + 1
        return flow

    def done(self, flow: Flow, status: int | None = None, body: Any = None) -> Flow:
        """Complete an exchange. Sends answer a fresh ResourceResponse id unless `body` says otherwise."""
        assert not flow.closed, f"{flow.id} already completed"
        if status is None:
            status = 201 if flow.kind == "inbound" else 200
        if body is None and flow.kind == "send" and status < 300:
            body = {"id": self.new_id("srv")}
        if body is None and flow.kind == "create" and status < 300:
            body = {
                "id": self.new_id("conv"),
                "activityId": self.new_id("srv"),
                "serviceUrl": self.service_url,
            }
        content = json.dumps(body).encode() if body is not None else None
        self._feed(ResponseSeen(flow.id, self.tick(), status, JSON if content else [], content))
        flow.closed = True
        if isinstance(body, dict):
            flow.response = body
        return flow

    # -- channel -> bot ---------------------------------------------------------------------------

    def activity(
        self,
        text: str | None = "hi",
        *,
        conv: str = "c1",
        type: str = "message",
        id: str | None = None,
        user: str = "u1",
        bot: str = "b1",
        service_url: str | None = None,
        channel: str | None = None,
        locale: str | None = "en-US",
        **fields: Any,
    ) -> dict[str, Any]:
        activity: dict[str, Any] = {
            "type": type,
            "id": id or self.new_id("in"),
            "timestamp": "2024-05-01T10:00:00.000Z",
            "channelId": channel or self.channel,
            "serviceUrl": service_url or self.service_url,
            "from": {"id": user, "name": "User"},
            "recipient": {"id": bot, "name": "Bot"},
            "conversation": {"id": conv},
        }
        if locale is not None:
            activity["locale"] = locale
        if text is not None:
            activity["text"] = text
        activity.update(fields)
        return activity

    def inbound(self, text: str | None = "hi", **kw: Any) -> Flow:
        """The channel POSTs an activity to the bot (the exchange stays open until `done`)."""
        activity = text if isinstance(text, dict) else self.activity(text, **kw)
        return self._request("inbound", "POST", BOT_URL, activity, "reverse")

    # -- bot -> connector -------------------------------------------------------------------------

    def reply_body(self, to: dict[str, Any], text: str | None = "ok", **fields: Any) -> dict[str, Any]:
        """What the Python SDK sends for `turn_context.send_activity(text)` in the turn of `to`."""
        body: dict[str, Any] = {
            "type": "message",
            "serviceUrl": to["serviceUrl"],
            "channelId": to["channelId"],
            "from": dict(to["recipient"]),
            "conversation": dict(to["conversation"]),
            "recipient": dict(to["from"]),
            "inputHint": "acceptingInput",
            "replyToId": to["id"],
        }
        if to.get("locale"):
            body["locale"] = to["locale"]
        if text is not None:
            body["text"] = text
        body.update(fields)
        return {k: v for k, v in body.items() if v is not None}

    def url(
        self, conv: str, activity_id: str | None = None, *, service_url: str | None = None, suffix: str = ""
    ) -> str:
        base = (service_url or self.service_url).rstrip("/")
        url = f"{base}/v3/conversations/{q(conv)}/activities"
        return url + (f"/{q(activity_id)}" if activity_id else "") + suffix

    def call(self, method: str, url: str, body: Any = None, *, kind: str = "other") -> Flow:
        return self._request(kind, method, url, body, "forward")

    def reply(
        self,
        to: Flow | dict[str, Any],
        text: str | None = "ok",
        *,
        url_conv: str | None = None,
        url_id: str | None = None,
        service_url: str | None = None,
        **fields: Any,
    ) -> Flow:
        """ReplyToActivity (C5) as the SDK sends it, with any field overridden (None removes it)."""
        parent = to.activity if isinstance(to, Flow) else to
        assert parent is not None
        body = self.reply_body(parent, text, **fields)
        conv = url_conv or body.get("conversation", {}).get("id") or parent["conversation"]["id"]
        target = url_id or body.get("replyToId") or parent["id"]
        return self.call(
            "POST", self.url(conv, target, service_url=service_url or parent["serviceUrl"]), body, kind="send"
        )

    def send(self, conv: str, body: dict[str, Any], *, service_url: str | None = None) -> Flow:
        """SendToConversation (C3)."""
        return self.call("POST", self.url(conv, service_url=service_url), body, kind="send")

    def proactive_body(self, to: dict[str, Any], text: str = "later", **fields: Any) -> dict[str, Any]:
        """What the SDK's continue_conversation sends: a synthetic uuid1 replyToId and no locale."""
        return self.reply_body(
            to, text, replyToId="5e358b10-e570-11f1-91f1-02fc00000001", locale=None, **fields
        )

    def update(self, conv: str, activity_id: str, body: dict[str, Any] | None = None, **kw: Any) -> Flow:
        body = (
            body
            if body is not None
            else {"type": "message", "id": activity_id, "conversation": {"id": conv}, "text": "edited"}
        )
        return self.call("PUT", self.url(conv, activity_id, **kw), body, kind="update")

    def delete(self, conv: str, activity_id: str, **kw: Any) -> Flow:
        return self.call("DELETE", self.url(conv, activity_id, **kw), kind="delete")

    def create(self, params: dict[str, Any], *, service_url: str | None = None) -> Flow:
        base = (service_url or self.service_url).rstrip("/")
        return self.call("POST", f"{base}/v3/conversations", params, kind="create")

    # -- shortcuts ----------------------------------------------------------------------------------

    def turn(self, text: str = "hi", *, replies: int = 1, **kw: Any) -> tuple[Flow, list[Flow]]:
        """A whole correct turn: inbound, `replies` sequential SDK replies, the inbound's 201."""
        inbound = self.inbound(text, **kw)
        sent = [self.done(self.reply(inbound, f"reply {i}")) for i in range(replies)]
        self.done(inbound)
        return inbound, sent

    # -- results ------------------------------------------------------------------------------------

    @property
    def findings(self) -> list[Finding]:
        return [Finding.from_row(row) for table, row in self.rows if table == "findings"]

    def codes(self) -> list[str]:
        return [f.rule for f in self.findings]

    def of(self, code: str) -> list[Finding]:
        return [f for f in self.findings if f.rule == code]

    def loud(self) -> list[Finding]:
        """Errors and warnings (what a correct bot must not get)."""
        return [f for f in self.findings if f.severity != "info"]


DIRECT_LINE = "https://directline.botframework.com/v3/directline"


@dataclass
class DirectLineWire(Wire):
    """Hand-made Direct Line client-leg traffic (protocol.md 1.2) through the real SessionRecorder: what a
    client posts and what Direct Line delivers to it by GET or over the stream, in the order the test calls.

    Ids follow Direct Line's `{conversationId}|{n:07d}`; `dl_post` answers the next one unless told.
    """

    user: str = "user1"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._next_n: dict[str, int] = {}

    def dl_id(self, conv: str, n: int) -> str:
        return f"{conv}|{n:07d}"

    def next_n(self, conv: str) -> int:
        n = self._next_n.get(conv, 0)
        self._next_n[conv] = n + 1
        return n

    def dl_request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None) -> Flow:
        """A client request to Direct Line (through the recorder's `--directline` listener); open."""
        if raw is None:
            return self._request("dl", method, DIRECT_LINE + path, body, "directline")
        flow = Flow(f"f{next(self._flows)}", "dl")
        before = self.recorder.activity_seq
        self._feed(RequestSeen(flow.id, self.tick(), "directline", method, DIRECT_LINE + path, JSON, raw))
        flow.seq = before + 1 if self.recorder.activity_seq > before else None
        return flow

    def dl_start(self, conv: str = "dlc", *, user: str | None = None, generate: bool = False) -> Flow:
        """Start a conversation (or generate a token for one), naming `user` in TokenParameters if given."""
        path = "/tokens/generate" if generate else "/conversations"
        flow = self.dl_request("POST", path, {"user": {"id": user}} if user else None)
        answer = {"conversationId": conv, "token": "tok-0123456789abcdef", "expires_in": 1800}
        if not generate:
            answer["streamUrl"] = f"wss://directline.botframework.com/v3/directline/conversations/{conv}/stream?t=x"
        return self.done(flow, 200 if generate else 201, answer)

    def dl_post(
        self,
        conv: str = "dlc",
        text: str | None = "hi",
        *,
        body: Any = None,
        raw: bytes | None = None,
        user: str | None = "",
        answer: str | None = "",
        status: int = 200,
        close: bool = True,
        **fields: Any,
    ) -> Flow:
        """PostActivity: a message from `user` (None: no `from`) unless `body`/`raw` say otherwise; answered
        with the next id (or `answer`, None for no body) when `close`."""
        if body is None and raw is None:
            body = {"type": "message", "text": text, **fields}
            sender = self.user if user == "" else user
            if sender is not None:
                body["from"] = {"id": sender}
        flow = self.dl_request("POST", f"/conversations/{q(conv)}/activities", body, raw=raw)
        if close:
            self.dl_answer(flow, conv, answer, status)
        return flow

    def dl_answer(self, flow: Flow, conv: str = "dlc", answer: str | None = "", status: int = 200) -> Flow:
        if answer == "":
            answer = self.dl_id(conv, self.next_n(conv))
        return self.done(flow, status, {"id": answer} if answer is not None and status < 300 else None)

    def delivered(
        self, conv: str, n: int, text: str | None = "hi", *, user: bool = False, **fields: Any
    ) -> dict[str, Any]:
        """An activity as Direct Line delivers it: the user's (`user`) or the bot's."""
        activity: dict[str, Any] = {
            "type": "message",
            "id": self.dl_id(conv, n),
            "timestamp": "2024-05-01T10:00:00.000Z",
            "channelId": "directline",
            "from": {"id": self.user, "role": "user"} if user else {"id": "bot", "name": "Bot"},
            "conversation": {"id": conv},
        }
        if text is not None:
            activity["text"] = text
        activity.update(fields)
        return activity

    def dl_get(
        self,
        conv: str,
        activities: list[dict[str, Any]],
        *,
        asked: str | None = None,
        given: str | None = "",
        status: int = 200,
    ) -> Flow:
        """GET activities?watermark=`asked` answered with `activities` and watermark `given` (default: the
        count so far as a string; None leaves the watermark out)."""
        query = f"?watermark={asked}" if asked is not None else ""
        flow = self.dl_request("GET", f"/conversations/{q(conv)}/activities{query}")
        body: dict[str, Any] = {"activities": activities}
        if given == "":
            given = str(self._next_n.get(conv, 0))
        if given is not None:
            body["watermark"] = given
        before = self.recorder.activity_seq
        self.done(flow, status, body)
        flow.seq = before + 1 if self.recorder.activity_seq > before else None
        return flow

    def dl_stream(self, conv: str, *, watermark: str | None = None, status: int = 101) -> Flow:
        """Open the WebSocket stream (the handshake completes at once)."""
        query = f"?watermark={watermark}&t=x" if watermark is not None else "?t=x"
        flow = self.dl_request("GET", f"/conversations/{q(conv)}/stream{query}")
        self._feed(ResponseSeen(flow.id, self.tick(), status, [], None))
        flow.closed = True
        return flow

    def dl_frame(self, stream: Flow, activities: list[dict[str, Any]], watermark: str | None) -> list[int]:
        """A stream frame (an ActivitySet); the seqs the recorder gave its activities."""
        body: dict[str, Any] = {"activities": activities}
        if watermark is not None:
            body["watermark"] = watermark
        before = self.recorder.activity_seq
        self._feed(WebSocketSeen(stream.id, self.tick(), False, json.dumps(body).encode()))
        return list(range(before + 1, self.recorder.activity_seq + 1))


def sent_id(flow: Flow) -> str:
    """The id the connector returned for a completed send."""
    assert flow.response and flow.response.get("id"), f"{flow.id} returned no id"
    return str(flow.response["id"])


def store_rows(db_path: Path, rows: list[tuple[str, dict[str, Any]]], name: str = "wire") -> int:
    """Store recorder rows in a real botproxy database, as the writer thread does; returns the session id."""
    db = store.open_db(db_path, create=True)
    session_id = db.table("sessions").insert({"name": name, "started_at": "2024-05-01T10:00:00Z"}).last_pk
    by_table: dict[str, list[dict[str, Any]]] = {}
    for table, row in rows:
        by_table.setdefault(table, []).append({**row, "session_id": session_id})
    with db.conn:
        for table, items in by_table.items():
            db.table(table).insert_all(items, replace=True)
    db.conn.close()
    assert isinstance(session_id, int)
    return session_id


# -- the real proxy around a bot --------------------------------------------------------------------------


@dataclass
class Recording:
    proxy: RecordingProxy
    checks: LiveChecks
    db_path: str

    @property
    def endpoint(self) -> str:
        return self.proxy.endpoint


@asynccontextmanager
async def record_session(
    tmp_path: Path, bot_url: str, *, name: str = "e2e", config: CheckConfig | None = None
) -> AsyncIterator[Recording]:
    """The real embedded recorder (mitmproxy on port 0, serviceUrl rewrite) with live checks, writing to
    a real SQLite file; stopped (and flushed) on exit."""
    db_path = str(tmp_path / "botproxy.db")
    live = LiveSession(db_path, name=name, engine=Engine(config, strict=True), bot_url=bot_url)
    proxy = RecordingProxy(
        ProxyConfig(
            bot_url=bot_url, listen="127.0.0.1:0", forward_listen=None, confdir=str(tmp_path / "mitmproxy")
        ),
        live,
    )
    await proxy.start()
    try:
        yield Recording(proxy, live.checks, db_path)
    finally:
        await proxy.stop()


# -- a Connector stand-in that can hold answers -----------------------------------------------------------


class MiniConnector:
    """Just enough of the Bot Connector for the wire bot: sends and replies answer a ResourceResponse with a
    fresh id, updates echo the id, deletes answer 200, CreateConversation a new conversation.

    `hold(text)` keeps the answer to the next send with that text until `release(text)`, or until a send
    with the text `until` comes in; `arrived(text)` returns once that request is in. Ids are assigned on
    arrival, so a test can know one early (`assigned`).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.assigned: dict[str, str] = {}  # text of a send -> id assigned to it
        self._holds: dict[str, asyncio.Event] = {}
        self._arrived: dict[str, asyncio.Event] = {}
        self._until: dict[str, str] = {}  # text that releases -> text held
        self._counter = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, self.port = await serve(app)

    async def stop(self) -> None:
        for gate in self._holds.values():
            gate.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, prefix: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{prefix.strip('/') + '/' if prefix else ''}"

    def hold(self, text: str, *, until: str | None = None) -> None:
        self._holds[text] = asyncio.Event()
        self._arrived[text] = asyncio.Event()
        if until is not None:
            self._until[until] = text

    def release(self, text: str) -> None:
        self._holds[text].set()

    async def arrived(self, text: str) -> None:
        await self._arrived[text].wait()

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        path = request.rel_url.raw_path
        self.calls.append((request.method, path, body))
        if request.method == "DELETE":
            return web.Response(status=200)
        if request.method == "GET":
            return web.json_response([{"id": "u1"}])
        if path.rstrip("/").endswith("/v3/conversations"):
            activity_id = f"mc-{next(self._counter)}"
            return web.json_response({"id": f"created-{next(self._counter)}", "activityId": activity_id})
        if request.method == "PUT":
            return web.json_response({"id": path.rsplit("/", 1)[-1]})
        activity_id = f"mc-{next(self._counter)}"
        text = body.get("text") if isinstance(body, dict) else None
        if isinstance(text, str):
            self.assigned[text] = activity_id
            if text in self._until:
                self.release(self._until.pop(text))
            if text in self._holds:
                self._arrived[text].set()
                await self._holds[text].wait()
        return web.json_response({"id": activity_id})


class ChannelClient:
    """The channel side for the wire bot: builds inbound activities and POSTs them to an endpoint."""

    def __init__(self, endpoint: str, *, bot: str = "b1", user: str = "u1") -> None:
        self.endpoint = endpoint
        self.bot, self.user = bot, user
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ChannelClient:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._session is not None
        await self._session.close()

    def activity(self, service_url: str, conv: str, text: str | None, **fields: Any) -> dict[str, Any]:
        activity: dict[str, Any] = {
            "type": "message",
            "id": f"act-{next(self._ids)}",
            "timestamp": "2024-05-01T10:00:00.000Z",
            "channelId": "test",
            "serviceUrl": service_url,
            "from": {"id": self.user, "name": "Ada"},
            "recipient": {"id": self.bot, "name": "Bot"},
            "conversation": {"id": conv},
            "locale": "en-US",
            "text": text,
        }
        activity.update(fields)
        return {k: v for k, v in activity.items() if v is not None}

    async def say(self, service_url: str, conv: str, text: str | None, **fields: Any) -> tuple[int, Any]:
        assert self._session is not None
        activity = self.activity(service_url, conv, text, **fields)
        async with self._session.post(self.endpoint, json=activity) as resp:
            data = await resp.read()
            return resp.status, json.loads(data) if data else None


# -- scenario registries for the per-rule tests -------------------------------------------------------------

W = TypeVar("W")


class Scenarios(Generic[W]):
    """A test module's scenarios per rule code: `@fires(code)` registers one where the rule must fire at
    its culprit, `@holds(code)` a close one where it must stay quiet."""

    def __init__(self) -> None:
        self.firing: dict[str, Callable[[], W]] = {}
        self.holding: dict[str, Callable[[], W]] = {}

    def fires(self, code: str) -> Callable[[Callable[[], W]], Callable[[], W]]:
        return self._register(self.firing, code)

    def holds(self, code: str) -> Callable[[Callable[[], W]], Callable[[], W]]:
        return self._register(self.holding, code)

    @staticmethod
    def _register(table: dict[str, Callable[[], W]], code: str) -> Callable[[Callable[[], W]], Callable[[], W]]:
        def register(scenario: Callable[[], W]) -> Callable[[], W]:
            table[code] = scenario
            return scenario

        return register
