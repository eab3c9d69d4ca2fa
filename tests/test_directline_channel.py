"""The local Direct Line channel (botproxy.standins.directline) over real loopback HTTP and WebSocket.

First the protocol, with raw aiohttp requests against a wire-level bot that records what it gets; then a
real Direct Line client, botframework-directlinejs run by Node (tests/node), talking through the recorder
to the channel in front of the SDK sample bot, over WebSocket and over polling.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from botproxy import store
from botproxy.record.mitm.proxy import ProxyConfig, RecordingProxy
from botproxy.record.session import LiveSession
from botproxy.sample_bot import ERROR_TEXT, SampleBotServer
from botproxy.standins.directline import DirectLineChannel
from botproxy.standins.server import serve
from botproxy.wire import protocol as p

SECRET = "test-secret-0123456789"
NODE_DIR = Path(__file__).parent / "node"


class WireBot:
    """A bot at the HTTP level: records each inbound activity, answers ``status``, and for a message
    replies ``echo: <text>`` to the activity's serviceUrl (a typing activity first when asked)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 200
        self.changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/messages", self._messages)
        self._runner, port = await serve(app)
        self.url = f"http://127.0.0.1:{port}/api/messages"

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def wait_for(self, n: int) -> list[dict[str, Any]]:
        async with asyncio.timeout(10):
            while len(self.received) < n:
                event = self.changed
                await event.wait()
        return self.received

    async def _messages(self, request: web.Request) -> web.Response:
        activity = await request.json()
        self.received.append(activity)
        event, self.changed = self.changed, asyncio.Event()
        event.set()
        if self.status >= 300:
            return web.json_response({"error": "injected"}, status=self.status)
        if activity["type"] == "message" and activity.get("text"):
            url = f"{activity['serviceUrl']}v3/conversations/{activity['conversation']['id']}/activities"
            async with aiohttp.ClientSession() as session:
                if activity["text"] == "typing":
                    await session.post(url, json={"type": "typing", "from": activity["recipient"]})
                reply = {"type": "message", "text": f"echo: {activity['text']}", "from": activity["recipient"],
                         "recipient": activity["from"], "replyToId": activity["id"]}
                async with session.post(url, json=reply) as resp:
                    assert resp.status == 200, await resp.text()
        return web.Response(status=200)


@pytest.fixture
async def wire_bot() -> AsyncIterator[WireBot]:
    bot = WireBot()
    await bot.start()
    try:
        yield bot
    finally:
        await bot.stop()


async def start_channel(bot_url: str, **kwargs: Any) -> DirectLineChannel:
    channel = DirectLineChannel(bot_url, secret=SECRET, **kwargs)
    await channel.start()
    return channel


@pytest.fixture
async def channel(wire_bot: WireBot) -> AsyncIterator[DirectLineChannel]:
    ch = await start_channel(wire_bot.url, keepalive=0.3)
    try:
        yield ch
    finally:
        await ch.stop()


class Client:
    """Direct Line REST calls with a bearer credential."""

    def __init__(self, session: aiohttp.ClientSession, channel: DirectLineChannel) -> None:
        self.session = session
        self.base = channel.directline_url

    async def call(self, method: str, path: str, auth: str | None = SECRET, **kwargs: Any) -> tuple[int, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if auth is not None:
            headers["Authorization"] = f"Bearer {auth}"
        async with self.session.request(method, self.base + path, headers=headers, **kwargs) as resp:
            raw = await resp.read()
            return resp.status, json.loads(raw) if raw else None

    async def start(self, auth: str = SECRET, user: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        status, body = await self.call("POST", "/conversations", auth, json={"user": user} if user else None, **kwargs)
        assert status == 201, body
        return body

    async def post(self, conv: dict[str, Any], text: str, user: str = "u1") -> tuple[int, Any]:
        activity = {"type": "message", "from": {"id": user}, "text": text}
        return await self.call("POST", f"/conversations/{conv['conversationId']}/activities", conv["token"],
                               json=activity)

    async def get(self, conv: dict[str, Any], watermark: str | None = None) -> dict[str, Any]:
        query = f"?watermark={watermark}" if watermark is not None else ""
        status, body = await self.call("GET", f"/conversations/{conv['conversationId']}/activities{query}",
                                       conv["token"])
        assert status == 200, body
        return body


@pytest.fixture
async def client(channel: DirectLineChannel) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(session, channel)


async def read_frames(ws: aiohttp.ClientWebSocketResponse, until: Any, timeout: float = 10) -> list[str]:
    """Text frames until ``until(frames)`` holds."""
    frames: list[str] = []
    async with asyncio.timeout(timeout):
        while not until(frames):
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            frames.append(msg.data)
    return frames


def frame_activities(frames: list[str]) -> list[dict[str, Any]]:
    return [a for f in frames if f for a in json.loads(f)["activities"]]


# -- the protocol ------------------------------------------------------------------------------------


def token_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, decoded as Web Chat decodes it (no signature check)."""
    header, payload, signature = token.split(".")
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "HS256", "typ": "JWT"} and signature
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def test_tokens_are_shaped_like_the_services(client: Client) -> None:
    """Tokens are JWTs naming the bot, the site, the conversation and the user they were generated for,
    issued by and for webchat.botframework.com, valid for the `expires_in` they announce; a refresh
    keeps the user; a token for nobody names nobody."""
    status, generated = await client.call("POST", "/tokens/generate", json={"user": {"id": "dl_u1", "name": "Ada"}})
    assert status == 200
    claims = token_claims(generated["token"])
    assert {k: claims[k] for k in ("bot", "conv", "user", "iss", "aud")} == {
        "bot": "bot", "conv": generated["conversationId"], "user": "dl_u1",
        "iss": "https://webchat.botframework.com/", "aud": "https://webchat.botframework.com/"}
    assert claims["exp"] - claims["nbf"] == generated["expires_in"] == 1800 and claims["site"]
    status, refreshed = await client.call("POST", "/tokens/refresh", auth=generated["token"])
    assert status == 200 and token_claims(refreshed["token"])["user"] == "dl_u1"
    status, started = await client.call("POST", "/conversations", auth=generated["token"])
    assert status == 201 and token_claims(started["token"])["user"] == "dl_u1"
    status, anonymous = await client.call("POST", "/tokens/generate")
    assert status == 200 and "user" not in token_claims(anonymous["token"])
    assert token_claims(anonymous["token"])["site"] == claims["site"]


async def test_secret_and_tokens_open_only_what_they_should(client: Client) -> None:
    status, body = await client.call("POST", "/conversations", auth=None)
    assert status == 401 and body["error"]["code"] == "BadArgument"
    status, body = await client.call("POST", "/conversations", auth="not-the-secret")
    assert status == 403 and "error" in body

    status, generated = await client.call("POST", "/tokens/generate", json={"user": {"id": "dl_u1"}})
    assert status == 200 and set(generated) == {"conversationId", "token", "expires_in"}
    status, body = await client.call("POST", "/tokens/generate", auth=generated["token"])
    assert status == 403  # a token cannot mint tokens

    # A generated token starts its own conversation (201), then finds it started (200).
    status, started = await client.call("POST", "/conversations", auth=generated["token"])
    assert status == 201 and started["conversationId"] == generated["conversationId"]
    status, again = await client.call("POST", "/conversations", auth=generated["token"])
    assert status == 200 and again["conversationId"] == generated["conversationId"]

    other = await client.start()
    status, body = await client.call("GET", f"/conversations/{other['conversationId']}/activities",
                                     auth=generated["token"])
    assert status == 403  # a token opens its own conversation only

    status, refreshed = await client.call("POST", "/tokens/refresh", auth=generated["token"])
    assert status == 200 and refreshed["token"] != generated["token"]
    assert refreshed["conversationId"] == generated["conversationId"]
    status, _ = await client.call("GET", f"/conversations/{generated['conversationId']}/activities",
                                  auth=refreshed["token"])
    assert status == 200
    status, _ = await client.call("POST", "/tokens/refresh")
    assert status == 403  # the secret is not refreshed
    status, body = await client.call("GET", "/conversations/nope/activities")
    assert status == 404 and body["error"]["message"] == "Conversation nope not found"


async def test_start_tells_the_bot_and_not_the_clients(client: Client, wire_bot: WireBot,
                                                       channel: DirectLineChannel) -> None:
    conv = await client.start(user={"id": "u1", "name": "Ada"})
    [update] = await wire_bot.wait_for(1)
    assert update["type"] == "conversationUpdate"
    assert update["membersAdded"] == [{"id": "u1", "name": "Ada"}, {"id": "bot", "name": "Bot"}]
    assert update["channelId"] == "directline" and update["serviceUrl"] == channel.service_url
    assert update["conversation"] == {"id": conv["conversationId"]}
    assert (await client.get(conv)) == {"activities": [], "watermark": "0"}


async def test_a_user_first_seen_on_a_post_is_added_before_the_post(client: Client, wire_bot: WireBot) -> None:
    conv = await client.start()  # no user named: the bot hears of the bot only
    status, _ = await client.post(conv, "hi", user="u9")
    assert status == 200
    received = await wire_bot.wait_for(3)
    assert [(a["type"], [m["id"] for m in a.get("membersAdded", [])]) for a in received] == [
        ("conversationUpdate", ["bot"]),
        ("conversationUpdate", ["u9"]),
        ("message", []),
    ]


async def test_stream_url_is_built_from_the_host_the_client_used(client: Client) -> None:
    conv = await client.start(headers={"Host": "proxy.test:9000"})
    cid = conv["conversationId"]
    assert conv["streamUrl"].startswith(f"ws://proxy.test:9000/v3/directline/conversations/{cid}/stream?")
    assert f"t={conv['token']}" in conv["streamUrl"]
    status, again = await client.call("GET", f"/conversations/{cid}?watermark=",
                                      headers={"Host": "rp.test", "X-Forwarded-Proto": "https"})
    assert status == 200 and again["streamUrl"].startswith("wss://rp.test/v3/directline/conversations/")


async def test_post_assigns_sequence_ids_and_get_pages_by_watermark(client: Client, wire_bot: WireBot,
                                                                  channel: DirectLineChannel) -> None:
    conv = await client.start(user={"id": "u1"})
    cid = conv["conversationId"]
    status, body = await client.post(conv, "hello")
    assert status == 200 and body == {"id": f"{cid}|0000000"}
    status, body = await client.post(conv, "typing")
    assert status == 200 and body == {"id": f"{cid}|0000002"}

    inbound = [a for a in wire_bot.received if a["type"] == "message"]
    assert [a["id"] for a in inbound] == [f"{cid}|0000000", f"{cid}|0000002"]
    assert inbound[0]["recipient"] == {"id": "bot", "name": "Bot", "role": "bot"}
    assert inbound[0]["from"] == {"id": "u1", "role": "user"} and inbound[0]["timestamp"].endswith("Z")

    everything = await client.get(conv)
    # Typing (|0000003) is delivered over the stream only.
    assert [(a["id"], a.get("text")) for a in everything["activities"]] == [
        (f"{cid}|0000000", "hello"),
        (f"{cid}|0000001", "echo: hello"),
        (f"{cid}|0000002", "typing"),
        (f"{cid}|0000004", "echo: typing"),
    ]
    assert everything["watermark"] == "5"
    assert all("serviceUrl" not in a for a in everything["activities"])
    held = await channel.wait_for_activities(cid, 5)
    assert [a["type"] for a in held] == ["message", "message", "message", "typing", "message"]
    later = await client.get(conv, watermark="2")
    assert [a["id"] for a in later["activities"]] == [f"{cid}|0000002", f"{cid}|0000004"]
    assert await client.get(conv, watermark="5") == {"activities": [], "watermark": "5"}
    # The ids the connector gave the bot are the ids the clients see.
    sent = [c.response["id"] for c in channel.connector.calls if c.route == "send_to_conversation"]
    assert sent == [f"{cid}|0000001", f"{cid}|0000003", f"{cid}|0000004"]


async def test_stream_replays_from_its_watermark_pushes_typing_and_keeps_alive(
    client: Client, channel: DirectLineChannel
) -> None:
    conv = await client.start(user={"id": "u1"})
    cid = conv["conversationId"]
    await client.post(conv, "hello")  # before the socket opens: replayed first
    async with client.session.ws_connect(conv["streamUrl"]) as ws:
        frames = await read_frames(ws, lambda f: len(frame_activities(f)) >= 2)
        first = json.loads(frames[0])
        assert [a["text"] for a in first["activities"]] == ["hello", "echo: hello"] and first["watermark"] == "2"
        await client.post(conv, "typing")
        frames = await read_frames(ws, lambda f: any(a.get("text") == "echo: typing" for a in frame_activities(f)))
        assert [a["type"] for a in frame_activities(frames)] == ["message", "typing", "message"]
        marks = [int(json.loads(f)["watermark"]) for f in frames if f]
        assert marks == sorted(set(marks)) and marks[-1] == 5
        await ws.send_str("")  # a client's own keep-alive is ignored
        keepalive = await read_frames(ws, lambda f: "" in f)
        assert keepalive[-1] == ""

    status, reconnected = await client.call("GET", f"/conversations/{cid}?watermark=3", conv["token"])
    assert status == 200 and "watermark=3" in reconnected["streamUrl"]
    async with client.session.ws_connect(reconnected["streamUrl"]) as ws:
        frames = await read_frames(ws, lambda f: bool(frame_activities(f)))
        assert [a["id"] for a in frame_activities(frames)] == [f"{cid}|0000003", f"{cid}|0000004"]
    assert channel.served[p.DL_STREAM] == 2

    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.session.ws_connect(conv["streamUrl"].replace(conv["token"], "forged"))
    assert refused.value.status == 403


async def test_a_failing_or_absent_bot_is_a_502_bot_rejected_activity(client: Client, wire_bot: WireBot,
                                                                      channel: DirectLineChannel) -> None:
    conv = await client.start(user={"id": "u1"})
    wire_bot.status = 500
    status, body = await client.post(conv, "hello")
    assert status == 502 and body["error"]["code"] == "BotRejectedActivity"
    assert "HTTP 500" in body["error"]["message"]

    await wire_bot.stop()
    wire_bot._runner = None
    status, body = await client.post(conv, "anyone?")
    assert status == 502 and body["error"]["code"] == "BotRejectedActivity"
    assert "unavailable" in body["error"]["message"]
    await wire_bot.start()  # so the fixture can stop it


async def test_upload_sends_a_message_with_attachments_served_back(client: Client, wire_bot: WireBot) -> None:
    conv = await client.start(user={"id": "u1"})
    cid, token = conv["conversationId"], conv["token"]
    status, body = await client.call(
        "POST", f"/conversations/{cid}/upload?userId=u1", token, data=b"\x89PNG-bytes",
        headers={"Content-Type": "image/png", "Content-Disposition": 'name="file"; filename="eel.png"'},
    )
    assert status == 200 and body == {"id": f"{cid}|0000000"}
    message = (await wire_bot.wait_for(2))[1]
    [attachment] = message["attachments"]
    assert attachment["contentType"] == "image/png" and attachment["name"] == "eel.png"
    async with client.session.get(attachment["contentUrl"]) as resp:
        assert resp.status == 200 and await resp.read() == b"\x89PNG-bytes"
        assert resp.content_type == "image/png" and resp.headers["Content-Security-Policy"] == "sandbox"

    form = aiohttp.FormData()
    form.add_field("activity", json.dumps({"type": "message", "text": "two files"}),
                   content_type="application/vnd.microsoft.activity")
    form.add_field("file", b"one", filename="a.txt", content_type="text/plain")
    form.add_field("file", b"two", filename="b.txt", content_type="text/plain")
    status, body = await client.call("POST", f"/conversations/{cid}/upload?userId=u1", token, data=form)
    assert status == 200
    message = next(a for a in await wire_bot.wait_for(3) if a.get("text") == "two files")
    assert [a["name"] for a in message["attachments"]] == ["a.txt", "b.txt"]
    assert message["from"]["id"] == "u1" and message["id"] == body["id"]

    status, body = await client.call("POST", f"/conversations/{cid}/upload", token, data=b"x")
    assert status == 400  # userId is required


async def test_chat_page_is_ours_strict_and_never_holds_the_secret(client: Client,
                                                                  channel: DirectLineChannel) -> None:
    async with client.session.get(channel.base_url + "/") as resp:
        html = await resp.text()
        csp = resp.headers["Content-Security-Policy"]
    assert resp.status == 200 and "<title>botproxy chat</title>" in html
    assert SECRET not in html and "innerHTML" not in html
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'", csp) and "default-src 'none'" in csp
    assert "http://" not in html.split("<script>")[1].split("</script>")[0]  # no CDN, nothing remote
    async with client.session.post(channel.base_url + "/botproxy/token") as resp:
        grant = await resp.json()
        assert "Access-Control-Allow-Origin" not in resp.headers
    conv = await client.start(auth=grant["token"])
    assert conv["conversationId"] == grant["conversationId"]


async def test_cors_lets_a_web_chat_page_elsewhere_call_the_api(client: Client) -> None:
    async with client.session.options(client.base + "/conversations", headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"}) as resp:
        assert resp.status == 204 and resp.headers["Access-Control-Allow-Origin"] == "*"
        assert resp.headers["Access-Control-Allow-Headers"] == "authorization,content-type"


async def test_updates_and_deletes_are_refused_as_the_service_refuses_them(sample_bot: SampleBotServer) -> None:
    """The Direct Line service does not update or delete activities: the bot's UpdateActivity and
    DeleteActivity get 405 BadArgument "This channel does not support this operation"
    (botframework-sdk#4734), and the clients keep the message as it was sent."""
    channel = await start_channel(sample_bot.url)
    try:
        async with aiohttp.ClientSession() as session:
            client = Client(session, channel)
            conv = await client.start(user={"id": "u1", "name": "Ada"})
            cid = conv["conversationId"]
            for text in ("update", "delete"):
                status, _ = await client.post(conv, text)
                assert status == 200  # the sample bot tells the user its turn failed and answers normally
            got = await client.get(conv)
        texts = [a["text"] for a in got["activities"]]
        assert texts == ["Welcome, Ada!", "update", "original", ERROR_TEXT, "delete", "to be deleted", ERROR_TEXT]
        original, doomed = got["activities"][2]["id"], got["activities"][5]["id"]
        assert original == f"{cid}|0000002"
        changes = [(c.route, c.activity_id, c.status, c.response) for c in channel.connector.calls
                   if c.route in ("update_activity", "delete_activity")]
        refused = {"error": {"code": "BadArgument", "message": "This channel does not support this operation"}}
        assert changes == [("update_activity", original, 405, refused), ("delete_activity", doomed, 405, refused)]
    finally:
        await channel.stop()


# -- a real Direct Line client: botframework-directlinejs in Node --------------------------------------


def node_or_skip() -> str:
    """The node binary, when tests/node is installed; CI must have it (``npm ci --prefix tests/node``)."""
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node is not on PATH"
    elif not (NODE_DIR / "node_modules" / "botframework-directlinejs").is_dir():
        missing = "tests/node/node_modules is missing: run `npm ci --prefix tests/node`"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} (CI must run the Direct Line client tests)")
        pytest.skip(missing)
    assert node is not None
    return node


async def run_dl_client(options: dict[str, Any]) -> list[dict[str, Any]]:
    """Run tests/node/dl_client.js; its JSON lines, after checking it finished."""
    proc = await asyncio.create_subprocess_exec(
        node_or_skip(), str(NODE_DIR / "dl_client.js"), json.dumps(options),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    events = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and any(e["event"] == "done" for e in events), (out.decode(), err.decode())
    return events


SCRIPT = [{"text": "hello"}, {"text": "two", "replies": 2}, {"text": "typing"}]


@pytest.mark.slow
@pytest.mark.parametrize("web_socket", [True, False], ids=["websocket", "polling"])
async def test_directlinejs_through_the_recorder_to_the_sdk_bot(
    web_socket: bool, sample_bot: SampleBotServer, tmp_path: Path
) -> None:
    """directlinejs → recorder (Direct Line listener) → channel → recorder (bot listener) → SDK bot."""
    node_or_skip()
    channel = await start_channel(sample_bot.url)
    db_path = str(tmp_path / "botproxy.db")
    live = LiveSession(db_path, name="dl", bot_url=sample_bot.url)
    config = ProxyConfig(bot_url=sample_bot.url, listen="127.0.0.1:0", forward_listen=None,
                         confdir=str(tmp_path / "mitmproxy"), directline=channel.base_url,
                         directline_listen="127.0.0.1:0")
    proxy = RecordingProxy(config, live)
    await proxy.start()
    try:
        channel.bot_url = proxy.endpoint  # the bot side goes through the recorder too
        events = await run_dl_client({"domain": proxy.directline_endpoint, "secret": SECRET, "user": "user1",
                                      "webSocket": web_socket, "welcome": 1, "messages": SCRIPT})
    finally:
        await proxy.stop()
        await channel.stop()

    # What the client received: every turn in order, in one id sequence, with rising watermarks.
    received = [e for e in events if e["event"] == "activity"]
    [done] = [e for e in events if e["event"] == "done"]
    cid = done["conversationId"]
    expected = [("bot", "Welcome, user1!"), ("user1", "hello"), ("bot", "You said: hello"), ("user1", "two"),
                ("bot", "first"), ("bot", "second"), ("user1", "typing")]
    expected += [("bot", None)] if web_socket else []  # typing reaches clients over the stream only
    expected += [("bot", "done typing")]
    assert [(e["activity"]["from"]["id"], e["activity"].get("text")) for e in received] == expected
    ids = [e["activity"]["id"] for e in received]
    seqs = [int(i.split("|")[1]) for i in ids]
    assert all(i.startswith(f"{cid}|") and re.fullmatch(r"\d{7}", i.split("|")[1]) for i in ids)
    assert seqs == sorted(seqs) and seqs[-1] == 8 and len(set(seqs)) == len(seqs)
    marks = [int(e["watermark"]) for e in received]
    assert marks == sorted(marks) and done["watermark"] == "9"
    posted = {e["text"]: e["id"] for e in events if e["event"] == "posted"}
    assert posted == {"hello": f"{cid}|0000001", "two": f"{cid}|0000003", "typing": f"{cid}|0000006"}
    assert channel.served[p.DL_STREAM] == (1 if web_socket else 0)
    assert (channel.served[p.DL_GET_ACTIVITIES] > 0) is not web_socket

    # What the recorder kept: the client's and the bot's view of each activity, linked by its id.
    db = store.open_db(db_path)
    rows = list(store.iter_activities(db, store.resolve_session(db, "dl")["id"]))
    views: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        if row["activity_id"]:
            views.setdefault((row["conversation_id"], row["activity_id"]), set()).add(row["direction"])
    for text, activity_id in posted.items():
        assert views[(cid, activity_id)] == {"from_client", "to_client", "to_bot"}, text
    for e in received:
        if e["activity"]["from"]["id"] == "bot":
            assert views[(cid, e["activity"]["id"])] == {"from_bot", "to_client"}, e["activity"]
    by_seq = {r["seq"]: r for r in rows}
    replies = [r for r in rows if r["direction"] == "from_bot" and r["text"] == "You said: hello"]
    assert [by_seq[r["turn_seq"]]["activity_id"] for r in replies] == [posted["hello"]]
    delivered = [r for r in rows if r["direction"] == "to_client"]
    assert all(r["watermark"] is not None for r in delivered)
    assert {r["route"] for r in delivered} == ({p.DL_STREAM} if web_socket else {p.DL_GET_ACTIVITIES})


# -- the command -------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_channel_command_serves_until_ctrl_c(sample_bot: SampleBotServer, free_port: Any) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "botproxy", "channel", "--bot", sample_bot.url, "--listen", f"127.0.0.1:{port}",
        "--secret", SECRET, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        banner: list[str] = []
        async with asyncio.timeout(30):
            while not banner or "Ctrl-C" not in banner[-1]:
                banner.append((await proc.stdout.readline()).decode())
                assert banner[-1], f"the command ended early: {''.join(banner)}"
        text = "".join(banner)
        assert f"chat page:         http://127.0.0.1:{port}/" in text
        assert f"Direct Line base:  http://127.0.0.1:{port}/v3/directline" in text and SECRET in text
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/v3/directline/conversations",
                                    headers={"Authorization": f"Bearer {SECRET}"}, json={"user": {"id": "u1"}}) as r:
                conv = await r.json()
                assert r.status == 201
            async with session.post(f"http://127.0.0.1:{port}/v3/directline/conversations/"
                                    f"{conv['conversationId']}/activities",
                                    headers={"Authorization": f"Bearer {conv['token']}"},
                                    json={"type": "message", "from": {"id": "u1"}, "text": "hi"}) as r:
                assert r.status == 200
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert "stopped: 1 conversation, 3 activities delivered to clients" in out.decode()
    assert "Traceback" not in err.decode()


def test_channel_command_refuses_bad_options_in_one_line(free_port: Any) -> None:
    from click.testing import CliRunner

    from botproxy.cli import cli

    bad_bot = CliRunner().invoke(cli, ["channel", "--bot", "localhost:3978"])
    assert bad_bot.exit_code == 2 and bad_bot.output.count("\n") == 1 and "--bot must be" in bad_bot.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = CliRunner().invoke(cli, ["channel", "--bot", "http://127.0.0.1:3978/api/messages",
                                        "--listen", f"127.0.0.1:{taken.getsockname()[1]}"])
    assert busy.exit_code == 2 and "already in use" in busy.output and busy.output.count("\n") == 1
