"""A Bot Framework SDK bot (botbuilder-core, CloudAdapter, anonymous) that builds URLs on its serviceUrl.

For the transparency matrix: it keeps every request body it receives, byte for byte (as the SDK's
aiohttp server hands it over, content-encoding undone), and answers each message with the URL forms
bots build on `serviceUrl` (attachments, a hero card, channelData, value, text). A message
`wire:<gzip|chunked|http10|big>` makes it send the same reply with its own aiohttp client, as a bot
that calls the connector itself does: gzip-encoded, chunked, over HTTP/1.0, or with a 50 MB text.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from botbuilder.core import ActivityHandler, CardFactory, TurnContext
from botbuilder.integration.aiohttp import ConfigurationBotFrameworkAuthentication
from botbuilder.schema import (
    ActionTypes,
    Activity,
    ActivityTypes,
    Attachment,
    CardAction,
    CardImage,
    HeroCard,
)

from botproxy.sample_bot import AnonymousConfig, SampleCloudAdapter
from botproxy.standins.server import serve

BIG = 50 * 1024 * 1024


def url_forms(service_url: str) -> dict[str, str]:
    """The URLs a bot builds on its serviceUrl, as bots really do."""
    trimmed = service_url.rstrip("/")
    return {
        "as_given": service_url,
        "trimmed": trimmed,
        "concatenated": service_url + "/v3/attachments/a0/views/original",  # a double slash when it had one
        "joined": trimmed + "/v3/attachments/a1/views/original",
        "query": service_url + "?page=2",
    }


def reply_activity(inbound: Activity) -> Activity:
    su = inbound.service_url
    forms = url_forms(su)
    card = HeroCard(
        title="file",
        images=[CardImage(url=forms["joined"].replace("original", "thumbnail"))],
        buttons=[CardAction(type=ActionTypes.open_url, title="open", value=forms["as_given"])],
    )
    return Activity(
        type=ActivityTypes.message,
        text=f"Your file: [a0]({forms['concatenated']}) or <{forms['trimmed']}>.",
        attachments=[
            Attachment(content_type="image/png", content_url=forms["joined"], name="a1.png"),
            CardFactory.hero_card(card),
        ],
        channel_data={"links": forms},
        value={"next": forms["query"], "base": forms["trimmed"]},
    )


class LinkBot(ActivityHandler):
    async def on_message_activity(self, turn_context: TurnContext) -> None:
        text = (turn_context.activity.text or "").strip()
        if text.startswith("wire:"):
            await self._send_raw(turn_context.activity, text[5:])
            return
        await turn_context.send_activity(reply_activity(turn_context.activity))

    async def _send_raw(self, inbound: Activity, mode: str) -> None:
        reply = reply_activity(inbound)
        reply.conversation, reply.reply_to_id = inbound.conversation, inbound.id
        body = reply.serialize()
        if mode == "big":
            body["text"] = body["text"] + " " + "x" * BIG
        data: Any = json.dumps(body).encode()
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if mode == "gzip":
            data, headers["Content-Encoding"] = gzip.compress(data, mtime=0), "gzip"
        elif mode == "chunked":
            data = _chunks(data)
        url = f"{inbound.service_url.rstrip('/')}/v3/conversations/{quote(inbound.conversation.id, safe='')}/activities"
        version = aiohttp.HttpVersion10 if mode == "http10" else aiohttp.HttpVersion11
        async with aiohttp.ClientSession(version=version) as http:
            async with http.post(url, data=data, headers=headers) as resp:
                resp.raise_for_status()


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 1000):
        yield data[start : start + 1000]


@dataclass
class LinkBotServer:
    runner: web.AppRunner
    bot: LinkBot
    url: str
    received: list[tuple[str, bytes]] = field(default_factory=list)  # (Content-Encoding header, body)

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_link_bot() -> LinkBotServer:
    bot = LinkBot()
    adapter = SampleCloudAdapter(ConfigurationBotFrameworkAuthentication(AnonymousConfig()))
    received: list[tuple[str, bytes]] = []

    @web.middleware
    async def keep_body(request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
        received.append((request.headers.get("Content-Encoding", ""), await request.read()))
        return await handler(request)

    async def messages(request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse = await adapter.process(request, bot)
        return response

    app = web.Application(middlewares=[keep_body], client_max_size=2 * BIG)
    app.router.add_post("/api/messages", messages)
    runner, port = await serve(app)
    return LinkBotServer(runner, bot, f"http://127.0.0.1:{port}/api/messages", received)
