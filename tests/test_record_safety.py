"""Secrets never reach the disk or the console, and the proxy fails open: whatever goes wrong, the traffic
flows unchanged and the recording says what happened."""

import asyncio
import json
import logging
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from botproxy.present.console import Console
from botproxy.record.mitm.capture import Capture
from botproxy.record.recorder import SessionRecorder
from botproxy.standins.server import serve

SECRETS = {
    "inbound_bearer": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjaGFubmVsIn0.c2VjcmV0LWluYm91bmQtc2ln",
    "channel_data_token": "channel-data-token-5f2c9a",
    "query_token": "query-t-token-77ab31",
    "outbound_bearer": "outbound-bearer-0a9f8e7d",
    "response_token": "dl-conversation-token-c0ffee",
    "aad_access_token": "aad-access-token-deadbeef",
    "client_secret": "client-secret-8badf00d",
}


class WireBot:
    """A bot of our own that speaks the Connector wire format by hand (aiohttp), so it can send secrets
    where real bots do: bearer headers, token requests, echoes of what it received."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.connector_status: list[int] = []
        self.runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/api/messages", self.messages)
        self.runner, port = await serve(app)
        return f"http://127.0.0.1:{port}/api/messages"

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def messages(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.received.append(raw)
        try:
            activity = json.loads(raw)
            base = activity["serviceUrl"].rstrip("/")
            conversation = activity["conversation"]["id"]
        except (ValueError, KeyError, TypeError):
            return web.Response(status=400, text="not an activity")
        auth = {"Authorization": f"Bearer {SECRETS['outbound_bearer']}"}
        async with aiohttp.ClientSession() as session:
            # An AAD token request (form body with a client secret) and its response.
            async with session.post(f"{base}/botframework.com/oauth2/v2.0/token", headers=auth, data={
                    "grant_type": "client_credentials", "client_secret": SECRETS["client_secret"]}) as r:
                self.connector_status.append(r.status)
            reply = {"type": "message", "text": f"you sent {activity.get('channelData', {}).get('token')}",
                     "conversation": {"id": conversation}, "replyToId": activity.get("id")}
            async with session.post(f"{base}/v3/conversations/{conversation}/activities/{activity.get('id')}",
                                    json=reply, headers=auth) as r:
                self.connector_status.append(r.status)
        return web.Response(status=201)


@pytest.fixture
async def wire_bot():
    bot = WireBot()
    url = await bot.start()
    yield bot, url
    await bot.stop()


@pytest.fixture
async def secret_connector():
    """A connector that also hands out tokens, as token endpoints and Direct Line do."""

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        if request.path.endswith("/token"):
            return web.json_response({"access_token": SECRETS["aad_access_token"], "token_type": "Bearer"})
        return web.json_response({"id": "assigned-1", "token": SECRETS["response_token"],
                                  "streamUrl": f"wss://x/stream?t={SECRETS['response_token']}"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner, port = await serve(app)
    yield f"http://127.0.0.1:{port}/"
    await runner.cleanup()


def stored_bytes(db_path: str) -> bytes:
    return b"".join(p.read_bytes() for p in Path(db_path).parent.glob(Path(db_path).name + "*"))


async def test_secrets_are_redacted_everywhere(recorders, wire_bot, secret_connector):
    bot, bot_url = wire_bot
    lines: list[str] = []
    proxy = await recorders.start(bot_url, observers=[Console(echo=lines.append)])
    activity = {"type": "message", "id": "m1", "text": "hi", "serviceUrl": secret_connector,
                "conversation": {"id": "c1"}, "from": {"id": "u1"}, "recipient": {"id": "b1"},
                "channelData": {"token": SECRETS["channel_data_token"]}}
    async with aiohttp.ClientSession() as session:
        url = f"{proxy.endpoint}?t={SECRETS['query_token']}"
        async with session.post(url, json=activity) as resp:
            assert resp.status == 201
        # The same again with the channel's bearer token (forwarded untouched, replies not rewritten).
        async with session.post(url, json=activity,
                                headers={"Authorization": f"Bearer {SECRETS['inbound_bearer']}"}) as resp:
            assert resp.status == 201
    summary = await recorders.stop(proxy)

    assert bot.connector_status == [200, 200, 200, 200]
    assert summary["exchanges"] == 2 + 2  # two inbound, two outbound through the rewritten serviceUrl
    stored = stored_bytes(recorders.db_path)
    console = "\n".join(lines)
    assert "hi" in console and b"you sent" in stored  # the test looks at real content
    for name, secret in SECRETS.items():
        assert secret.encode() not in stored, f"{name} reached the database"
        assert secret not in console, f"{name} reached the console"
    # What was redacted is marked, so a reader knows something was there.
    assert b"[REDACTED]" in stored


async def test_non_json_and_odd_activities_pass_unchanged_and_are_kept(recorders, wire_bot):
    bot, bot_url = wire_bot
    proxy = await recorders.start(bot_url)
    bodies = [b"{this is not json", b"[1, 2, 3]", json.dumps({"type": 5, "from": "x", "conversation": 7}).encode()]
    async with aiohttp.ClientSession() as session:
        for body in bodies:
            async with session.post(proxy.endpoint, data=body, headers={"Content-Type": "application/json"}) as r:
                assert r.status == 400  # the bot's own answer, passed through
    await recorders.stop(proxy)
    assert bot.received == bodies
    exchanges = recorders.exchanges()
    assert [e["request_malformed"] for e in exchanges] == [1, 0, 0]
    assert exchanges[0]["request_body"] == "{this is not json"
    assert [e["status"] for e in exchanges] == [400, 400, 400]
    [odd] = recorders.activities()
    assert odd["type"] is None and odd["conversation_id"] is None and odd["body"]["type"] == 5
    assert recorders.db()["sessions"].get(1)["error_count"] == 0


async def test_bot_down_gives_the_channel_502_and_is_recorded(recorders, free_port):
    proxy = await recorders.start(f"http://127.0.0.1:{free_port()}/api/messages")
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.endpoint, json={"type": "message", "conversation": {"id": "c"}}) as r:
            assert r.status == 502
    await recorders.stop(proxy)
    [exchange] = recorders.exchanges()
    assert exchange["status"] == 502 and exchange["error"]
    assert recorders.activities()[0]["status"] == 502


@pytest.mark.parametrize("status,code", [(404, "ConversationNotFound"), (500, "ServiceError")])
async def test_connector_errors_reach_the_bot_unchanged_and_are_recorded(recorders, connector, sample_bot,
                                                                         status, code):
    proxy = await recorders.start(sample_bot.url)
    connector.fail_next(status, code=code, route="reply_to_activity")
    await connector.send(proxy.endpoint, connector.activity(text="hello", conversation_id="c-err"))
    await recorders.stop(proxy)
    failed = [e for e in recorders.exchanges() if e["route"] == "reply_to_activity" and e["status"] == status]
    assert failed and failed[0]["error_code"] == code
    assert json.loads(failed[0]["response_body"])["error"]["code"] == code
    # The SDK bot saw the error and said so (its turn-error handler), which we recorded too.
    assert sample_bot.bot.turn_errors


async def test_our_own_failure_in_a_hook_leaves_traffic_unchanged_and_is_counted(recorders, wire_bot, monkeypatch,
                                                                                  secret_connector):
    bot, bot_url = wire_bot

    def broken(self, flow):
        raise RuntimeError("boom in the rewrite")

    monkeypatch.setattr(Capture, "_rewrite_service_url", broken)
    proxy = await recorders.start(bot_url)
    activity = {"type": "message", "id": "m1", "serviceUrl": secret_connector, "conversation": {"id": "c1"}}
    sent = json.dumps(activity).encode()
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.endpoint, data=sent, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 201
    summary = await recorders.stop(proxy)
    assert bot.received == [sent]  # unchanged, even though our code raised half-way
    assert proxy.capture.failures == 1
    assert summary["errors"] == 1
    [error] = list(recorders.db()["errors"].rows)
    assert "boom in the rewrite" in error["message"] and error["stage"] == "request"
    assert len(recorders.exchanges()) == 1  # the exchange itself is still recorded


async def test_a_failure_in_the_recorder_is_counted_and_the_rest_recorded(recorders, connector, sample_bot,
                                                                          monkeypatch):
    original = SessionRecorder._request
    calls = {"n": 0}

    def flaky(self, req):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("recorder bug")
        return original(self, req)

    monkeypatch.setattr(SessionRecorder, "_request", flaky)
    proxy = await recorders.start(sample_bot.url)
    status, _ = await connector.send(proxy.endpoint, connector.activity(text="hello", conversation_id="c"))
    assert status == 201
    await asyncio.wait_for(connector.wait_for_calls(1), 10)
    summary = await recorders.stop(proxy)
    assert summary["errors"] == 1 and summary["not_stored"] == 0
    assert recorders.db()["sessions"].get(1)["error_count"] == 1
    assert [a["text"] for a in recorders.activities()] == ["You said: hello"]
    # The request our code failed on is still an exchange, closed by its response, its error saying why.
    failed, reply = recorders.exchanges()
    assert failed["status"] == 201 and "recorder bug" in failed["error"] and failed["method"] == "POST"
    assert reply["route"] == "reply_to_activity" and reply["error"] is None


async def test_our_failure_logs_no_secret_in_a_host_process(recorders, wire_bot, monkeypatch, secret_connector,
                                                            caplog):
    """In-process (mitmdump -s, LiveSession) the host's handlers print our log lines: the records are
    scrubbed where they are made, message, exception and traceback alike."""
    bot, bot_url = wire_bot
    query_secret, learned = "hook-query-token-5e1a", "learned-in-body-7c2f9d"

    def broken(self, flow):
        raise RuntimeError(f"boom for {flow.request.url} with {learned}")

    monkeypatch.setattr(Capture, "_rewrite_service_url", broken)
    proxy = await recorders.start(bot_url)
    activity = {"type": "message", "id": "m1", "serviceUrl": secret_connector, "conversation": {"id": "c1"},
                "channelData": {"clientSecret": learned}}
    with caplog.at_level(logging.INFO, logger="botproxy"):  # as with -v: the traceback too
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{proxy.endpoint}?token={query_secret}", json=activity) as r:
                assert r.status == 201
        await recorders.stop(proxy)
    [error] = list(recorders.db()["errors"].rows)
    logged = caplog.text
    assert "boom for" in logged and "Traceback" in logged and "boom for" in error["message"]
    assert query_secret not in logged and query_secret not in error["message"]
    # The recorder learned the body's secret on the writer thread, after the hook failed on the loop: the
    # log line made then knew only shapes; the stored error is scrubbed with what the session learned.
    assert learned not in error["message"]
