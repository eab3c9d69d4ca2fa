"""botproxy's main job on embedded defaults: a scripted conversation with the bundled sample bot.

Everything runs here, on loopback, on free ports: the sample bot (a real Bot Framework SDK bot), a
local Bot Connector stand-in taking its replies, and the recorder between them. The script covers
what bots do: a welcome, replies, typing, a card, an update, a delete, a proactive message, an invoke
with a response body and an `expectReplies` turn.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .channel import ConnectorChannel
from .checks import Engine
from .errors import UpstreamError
from .proxy import ProxyConfig, RecordingProxy
from .recording import Observer
from .sample_bot import start_bot
from .session import LiveSession

CONVERSATION = "demo-conversation"
SCRIPT = ["hello", "card", "typing", "update", "delete", "two", "proactive"]


@dataclass
class DemoResult:
    summary: dict[str, Any]
    bot_url: str


def default_demo_session() -> str:
    return dt.datetime.now().strftime("demo-%Y%m%d-%H%M%S")


async def run_demo(
    db_path: str,
    session_name: str,
    *,
    observers: Sequence[Observer] | None = None,
    build: int = 1,
    say: Callable[[str], None] = lambda _: None,
    confdir: str = "~/.mitmproxy",
) -> DemoResult:
    bot = await start_bot(build=build)
    channel = ConnectorChannel(channel_id="emulator")
    await channel.start()
    live = LiveSession(
        db_path,
        name=session_name,
        observers=observers,
        engine=Engine(),
        bot_url=bot.url,
        capture_mode="rewrite",
        source="record",
    )
    proxy = RecordingProxy(
        ProxyConfig(bot_url=bot.url, listen="127.0.0.1:0", forward_listen=None, confdir=confdir), live
    )
    try:
        await proxy.start()
        say(f"recording session {session_name!r}: channel stand-in → {proxy.endpoint} → sample bot {bot.url}")
        await _converse(channel, proxy.endpoint, bot.proactive_done)
        summary = await proxy.stop()
    finally:
        await channel.stop()
        await bot.stop()
    return DemoResult(summary, bot.url)


async def _converse(channel: ConnectorChannel, endpoint: str, proactive_done: asyncio.Event) -> None:
    async def send(activity: dict[str, Any]) -> None:
        status, body = await channel.send(endpoint, activity)
        if status >= 500:
            raise UpstreamError(f"the sample bot answered {status}: {body[:200]!r}")

    user = {"id": "user1", "name": "Ada"}
    await send(channel.activity("conversationUpdate", conversation_id=CONVERSATION, membersAdded=[user, channel.bot]))
    for text in SCRIPT:
        await send(channel.activity(text=text, conversation_id=CONVERSATION, user_name="Ada"))
    try:
        await asyncio.wait_for(proactive_done.wait(), 10)
    except TimeoutError:
        raise UpstreamError("the sample bot's proactive message did not arrive within 10 s") from None
    await send(channel.activity("invoke", conversation_id=CONVERSATION, name="test/echo", value={"n": 1}))
    await send(
        channel.activity(text="what is the weather?", conversation_id=CONVERSATION, deliveryMode="expectReplies")
    )
