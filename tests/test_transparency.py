"""Transparency: what reaches the bot, the connector and the channel through botproxy is byte for byte what
reaches them without it, but for the one documented change (the inbound activity's serviceUrl value).

Each case is run twice against the same real SDK bot (tests/bots/link_bot.py) and the same connector
stand-in: once with the channel posting straight to the bot, once through the embedded recorder. The
bytes the bot received, the bytes the connector received and the answers the channel got are compared.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from bots.link_bot import BIG, LinkBotServer, start_link_bot, url_forms

from botproxy.standins.connector import ConnectorChannel

# serviceUrl shapes: the Emulator's (no trailing slash), a plain one, Teams' regional prefix, GCC's.
VARIANTS = {"emulator-no-slash": ("", False), "slash": ("", True), "teams-amer": ("amer", True),
            "gcc-no-slash": ("gcc", False)}
_OURS = re.compile(r"http://127\.0\.0\.1:\d+/_botproxy/svc/([A-Za-z0-9_.-]+)/")


@dataclass
class Seen:
    bot: list[tuple[str, bytes]]  # (Content-Encoding, body) of each request the bot got
    connector: list[tuple[str, str, bytes, str, str]]  # method, path, body, Content-Type, Content-Encoding
    answers: list[tuple[int, bytes]]  # what the channel got back


@pytest.fixture
async def link_bot() -> AsyncIterator[LinkBotServer]:
    server = await start_link_bot()
    try:
        yield server
    finally:
        await server.stop()


async def make_connector(prefix: str) -> ConnectorChannel:
    channel = ConnectorChannel(path_prefix=prefix, client_max_size=2 * BIG)
    await channel.start()
    return channel


def inbound(service_url: str, conversation: str, n: int, text: str, **fields: Any) -> dict[str, Any]:
    """An activity as a channel sends it, with an uploaded file under its serviceUrl (as the Emulator does)."""
    return {
        "type": "message", "id": f"in-{n}", "timestamp": "2026-12-03T00:00:00.000Z", "channelId": "emulator",
        "serviceUrl": service_url, "from": {"id": "user1", "name": "User", "role": "user"},
        "recipient": {"id": "bot", "name": "Bot", "role": "bot"}, "conversation": {"id": conversation},
        "locale": "en-US", "text": text,
        "attachments": [{"contentType": "image/png", "name": "up.png",
                         "contentUrl": service_url.rstrip("/") + "/v3/attachments/up1/views/original"}],
        "channelData": {"clientActivityID": f"c-{n}", "uploads": [service_url + "/v3/attachments/up1"]},
        **fields,
    }


def odd_json(activity: dict[str, Any]) -> bytes:
    """Odd spacing on purpose: re-serialising would change these bytes."""
    return json.dumps(activity, indent=1, separators=(" ,", " : ")).encode()


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 700):
        yield data[start : start + 700]


async def post(http: aiohttp.ClientSession, url: str, body: bytes, how: str,
               content_type: str = "application/json; charset=utf-8") -> tuple[int, bytes]:
    headers = {"Content-Type": content_type}
    data: Any = body
    if how == "gzip":
        data, headers["Content-Encoding"] = gzip.compress(body, mtime=0), "gzip"
    elif how == "chunked":
        data = chunks(body)
    elif how == "http10":
        async with aiohttp.ClientSession(version=aiohttp.HttpVersion10) as http10:
            async with http10.post(url, data=data, headers=headers) as resp:
                return resp.status, await resp.read()
    async with http.post(url, data=data, headers=headers) as resp:
        return resp.status, await resp.read()


async def converse(target: str, bot: LinkBotServer, connector: ConnectorChannel,
                   requests: list[tuple[bytes, str, str]], calls: int) -> Seen:
    """Post each (body, how, content type) to `target` in turn; wait for `calls` connector calls."""
    bot_start, connector_start = len(bot.received), len(connector.calls)
    answers = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        for body, how, content_type in requests:
            answers.append(await post(http, target, body, how, content_type))
    got = (await connector.wait_for_calls(connector_start + calls, timeout=120))[connector_start:]
    return Seen(
        bot.received[bot_start:],
        [(c.method, c.path, c.raw, c.headers.get("Content-Type", ""), c.headers.get("Content-Encoding", ""))
         for c in got],
        answers,
    )


def assert_only_the_service_url_differs(direct: Seen, proxied: Seen, service_url: str, keys: Any) -> None:
    assert proxied.answers == direct.answers
    assert proxied.connector == direct.connector
    assert len(proxied.bot) == len(direct.bot)
    for (enc_direct, sent_direct), (enc_proxied, sent_proxied) in zip(direct.bot, proxied.bot, strict=True):
        assert enc_proxied == enc_direct
        ours = json.loads(sent_proxied)["serviceUrl"]
        assert keys.verify(_OURS.fullmatch(ours).group(1)) == service_url
        member = b'"serviceUrl" : "%s"'
        assert sent_proxied == sent_direct.replace(member % service_url.encode(), member % ours.encode(), 1)


def assert_recorded_as_the_connector_and_channel_saw_it(recorders, service_url: str) -> None:
    exchanges = recorders.exchanges()
    everything = json.dumps(exchanges, default=str) + json.dumps(recorders.activities(), default=str)
    assert "/_botproxy/svc/" not in everything
    replies = [a for a in recorders.activities() if a["direction"] == "from_bot" and a["body"]]
    assert replies
    forms = url_forms(service_url)
    for reply in replies:
        assert reply["body"]["attachments"][0]["contentUrl"] == forms["joined"]
        assert reply["body"]["channelData"]["links"] == forms


@pytest.mark.parametrize("variant", VARIANTS)
async def test_bot_connector_and_channel_get_the_same_bytes_with_and_without_botproxy(
        variant, recorders, link_bot):
    prefix, slash = VARIANTS[variant]
    connector = await make_connector(prefix)
    try:
        service_url = connector.service_url if slash else connector.service_url.rstrip("/")
        proxy = await recorders.start(link_bot.url)

        def requests(conversation: str) -> list[tuple[bytes, str, str]]:
            json_type = "application/json; charset=utf-8"
            turns = [("hello", "json", {}), ("expect", "json", {"deliveryMode": "expectReplies"}),
                     ("gzip in", "gzip", {}), ("chunked in", "chunked", {}), ("http/1.0 in", "http10", {}),
                     ("wire:gzip", "json", {}), ("wire:chunked", "json", {}), ("wire:http10", "json", {})]
            return [(odd_json(inbound(service_url, conversation, n, text, **fields)), how, json_type)
                    for n, (text, how, fields) in enumerate(turns)]

        direct = await converse(link_bot.url, link_bot, connector, requests("c-" + variant), calls=7)
        proxied = await converse(proxy.endpoint, link_bot, connector, requests("c-" + variant), calls=7)
        await recorders.stop(proxy)
    finally:
        await connector.stop()

    assert_only_the_service_url_differs(direct, proxied, service_url, proxy.keys)
    # The URLs the bot built on its serviceUrl reached the connector as it built them from the original.
    sent = json.loads(direct.connector[0][2])
    assert sent["serviceUrl"] == service_url
    assert sent["attachments"][0]["contentUrl"] == url_forms(service_url)["joined"]
    assert [enc for *_, enc in proxied.connector] == ["", "", "", "", "gzip", "", ""]
    expected = json.loads(proxied.answers[1][1])["activities"][0]
    assert expected["serviceUrl"] == service_url and expected["value"]["base"] == service_url.rstrip("/")
    assert_recorded_as_the_connector_and_channel_saw_it(recorders, service_url)


async def test_bodies_that_are_not_json_activities_reach_the_bot_untouched(recorders, link_bot, connector):
    service_url = connector.service_url.rstrip("/")
    activity = inbound(service_url, "c-raw", 1, "hello")
    text = json.dumps(activity).encode()
    requests = [
        (text, "json", "text/plain"),  # a JSON-looking body that is not declared JSON
        (b"serviceUrl=" + service_url.encode() + b"&text=hi", "json", "application/x-www-form-urlencoded"),
        (text[:-5], "json", "application/json"),  # truncated: not JSON
        (text.replace(b'"hello"', b'"\xff\xfe"'), "json", "application/json"),  # not UTF-8
        (json.dumps([activity]).encode(), "json", "application/json"),  # JSON, but not an activity
    ]
    proxy = await recorders.start(link_bot.url)
    direct = await converse(link_bot.url, link_bot, connector, requests, calls=0)
    proxied = await converse(proxy.endpoint, link_bot, connector, requests, calls=0)
    await recorders.stop(proxy)
    assert proxied.bot == direct.bot == [("", body) for body, *_ in requests]
    assert proxied.answers == direct.answers
    assert not any(x["rewritten"] for x in recorders.exchanges())


async def test_50_mb_bodies_pass_both_ways(recorders, link_bot):
    """A 50 MB inbound body is forwarded untouched (larger than any activity a channel sends); a 50 MB
    reply through a rewritten serviceUrl gets its URLs restored and nothing else changed."""
    connector = await make_connector("")
    try:
        service_url = connector.service_url.rstrip("/")
        big_inbound = odd_json(inbound(service_url, "c-big", 1, "x" * BIG))
        rewritten = odd_json(inbound(service_url, "c-big", 2, "wire:big"))
        proxy = await recorders.start(link_bot.url)
        requests = [(big_inbound, "json", "application/json"), (rewritten, "json", "application/json")]
        direct = await converse(link_bot.url, link_bot, connector, requests, calls=2)
        proxied = await converse(proxy.endpoint, link_bot, connector, requests, calls=2)
        await recorders.stop(proxy)
    finally:
        await connector.stop()
    assert proxied.bot[0] == direct.bot[0] == ("", big_inbound)
    assert_only_the_service_url_differs(
        Seen(direct.bot[1:], direct.connector, direct.answers), Seen(proxied.bot[1:], proxied.connector,
                                                                    proxied.answers), service_url, proxy.keys)
    assert len(proxied.connector[1][2]) > BIG
    assert [x["rewritten"] for x in recorders.exchanges() if x["leg"] == "inbound"] == [0, 1]
