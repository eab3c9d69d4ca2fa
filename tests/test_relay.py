"""No open relay: `/_botproxy/svc/<key>/` forwards only with keys botproxy minted (signed with its confdir's
secret); anything else is answered 403 by botproxy itself, recorded, and reaches nobody."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
import yarl
from aiohttp import web

from botproxy.record.mitm.capture import CLIMBING_CODE, REFUSED_CODE
from botproxy.record.mitm.proxy import ProxyConfig
from botproxy.standins.server import serve
from botproxy.wire.service_url import ServiceUrlKeys


class Canary:
    """A local service that counts every request it gets."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request.path_qs)
        return web.json_response({"secret": "internal admin data"})


@pytest.fixture
async def canary() -> AsyncIterator[Canary]:
    found = Canary()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", found.handle)
    runner, port = await serve(app)
    found.url = f"http://127.0.0.1:{port}/"
    try:
        yield found
    finally:
        await runner.cleanup()


def unsigned(url: str) -> str:
    return base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


async def test_a_forged_key_reaches_nothing_and_is_recorded(recorders, canary, tmp_path, free_port):
    bot = Canary()  # the recorder's own upstream must not be asked either
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", bot.handle)
    bot_port = free_port()
    runner, _ = await serve(app, port=bot_port)
    try:
        proxy = await recorders.start(f"http://127.0.0.1:{bot_port}/api/messages")
        listen = f"http://127.0.0.1:{proxy.listen[1]}/_botproxy/svc/"
        admin = canary.url + "internal/admin"
        forged = [
            unsigned(canary.url),  # a key as botproxy made them before they were signed
            ServiceUrlKeys.in_confdir(tmp_path / "elsewhere").mint(canary.url),  # another confdir's secret
            unsigned(canary.url) + "." + proxy.keys.mint("http://127.0.0.1:1/").partition(".")[2],  # a borrowed mac
            "not-base64-at-all!",
            "",
        ]
        async with aiohttp.ClientSession() as http:
            for key in forged:
                async with http.get(f"{listen}{key}/internal/admin") as resp:
                    assert resp.status == 403, key
                    assert (await resp.json())["error"]["code"] == REFUSED_CODE
            reply = {"type": "message"}
            async with http.post(f"{listen}{forged[0]}/v3/conversations/c/activities", json=reply) as resp:
                assert resp.status == 403
        await recorders.stop(proxy)
    finally:
        await runner.cleanup()
    assert canary.requests == [] and bot.requests == []
    exchanges = recorders.exchanges()
    assert len(exchanges) == len(forged) + 1
    assert {(x["listener"], x["status"]) for x in exchanges} == {("svc", 403)}
    assert all("nothing was forwarded" in x["error"] for x in exchanges)
    assert admin not in json.dumps(exchanges)  # recorded where it was sent, not where the key pointed


async def test_a_minted_key_still_works_after_a_restart_with_the_same_confdir(recorders, connector, sample_bot):
    first = await recorders.start(sample_bot.url, name="first")
    status, _ = await connector.send(first.endpoint, connector.activity(text="hello", conversation_id="c1"))
    assert status == 201
    await recorders.stop(first)
    [inbound, _] = [x for x in recorders.exchanges("first") if x["leg"] == "inbound" or x["listener"] == "svc"]
    assert inbound["leg"] == "inbound" and inbound["rewritten"] == 1
    # The key the bot was given (it keeps it in its conversation reference), minted by the first recorder.
    key = first.keys.mint(connector.service_url)

    second = await recorders.start(sample_bot.url, name="second")  # same confdir, a new process state
    assert second.keys is not first.keys
    proactive = {"type": "message", "text": "later", "conversation": {"id": "c1"}, "from": {"id": "bot"}}
    base = f"http://127.0.0.1:{second.listen[1]}/_botproxy/svc/"
    other = ServiceUrlKeys.in_confdir(recorders.tmp_path / "another-confdir").mint(connector.service_url)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}{key}/v3/conversations/c1/activities", json=proactive) as resp:
            assert resp.status == 200
        async with http.post(f"{base}{other}/v3/conversations/c1/activities", json=proactive) as resp:
            assert resp.status == 403
    await recorders.stop(second)
    assert [c.body["text"] for c in connector.calls] == ["You said: hello", "later"]
    [sent, refused] = recorders.exchanges("second")
    assert (sent["listener"], sent["status"], sent["url"]) == (
        "svc", 200, connector.service_url + "v3/conversations/c1/activities")
    assert refused["status"] == 403 and refused["error"]


def test_binding_beyond_loopback_says_what_is_exposed_in_one_line():
    config = ProxyConfig(bot_url="http://127.0.0.1:3978/api/messages", listen="0.0.0.0:5055",
                         forward_listen="[::]:5056", directline="https://directline.botframework.com",
                         directline_listen="192.168.1.20:5057")
    warning = config.exposure_warning()
    assert warning is not None and "\n" not in warning
    assert warning.startswith("warning: listening beyond this machine: ")
    for part in ("0.0.0.0:5055: channels reach the bot http://127.0.0.1:3978/api/messages",
                 "[::]:5056: the forward proxy", "192.168.1.20:5057: Direct Line clients reach https://directline"):
        assert part in warning
    only_forward = ProxyConfig(bot_url="http://127.0.0.1:3978/api/messages", forward_listen=":5056")
    assert only_forward.exposure_warning() is None  # ":PORT" means 127.0.0.1
    for loopback in ("127.0.0.1:5055", "localhost:5055", "[::1]:5055", "127.0.0.2:5055"):
        assert ProxyConfig(bot_url="http://127.0.0.1:3978/api/messages", listen=loopback).exposure_warning() is None
    exposed = ProxyConfig(bot_url="http://127.0.0.1:3978/api/messages", listen="my-host.example:5055")
    assert exposed.exposure_warning() == (
        "warning: listening beyond this machine: my-host.example:5055: channels reach the bot "
        "http://127.0.0.1:3978/api/messages, and the bot's replies go through the serviceUrls botproxy signed "
        "(anyone who can reach it can use it)")


@pytest.mark.slow
async def test_a_signed_key_relays_only_under_its_service_url(recorders, canary, sample_bot):
    """A key signs one serviceUrl; a path with dot segments after it (plain, percent-encoded, between
    backslashes) would reach the rest of that host, so it is refused, recorded, and forwarded nowhere."""
    proxy = await recorders.start(sample_bot.url)
    key = proxy.keys.mint(canary.url + "amer/")
    base = f"http://127.0.0.1:{proxy.listen[1]}/_botproxy/svc/{key}/"
    climbing = ["../internal/admin", "v3/%2e%2e/%2E%2E/internal/admin", "v3/..%2f..%2finternal/admin",
                "v3\\..\\..\\internal\\admin", "./v3/conversations/c/activities"]
    async with aiohttp.ClientSession() as http:
        for path in climbing:
            async with http.get(yarl.URL(base + path, encoded=True)) as resp:  # encoded: sent as written
                assert resp.status == 403, path
                assert (await resp.json())["error"]["code"] == CLIMBING_CODE
        async with http.get(yarl.URL(base + "v3/conversations/c%2F..%2Fd/members", encoded=True)) as resp:
            assert resp.status == 403  # an id that decodes to a climb is refused too
        async with http.get(base + "v3/conversations/a..b/members") as resp:
            assert resp.status == 200  # dots inside a segment are an id like any other
    await recorders.stop(proxy)
    assert canary.requests == ["/amer/v3/conversations/a..b/members"]
    refused = [x for x in recorders.exchanges() if x["status"] == 403]
    assert len(refused) == len(climbing) + 1 and all("nothing was forwarded" in x["error"] for x in refused)
