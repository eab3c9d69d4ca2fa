"""The real Web Chat bundle (npm botframework-webchat) in headless Chromium, through `botproxy record
--directline` in front of `botproxy channel`, talking to the SDK sample bot and to the Agents SDK bots
(Python and JavaScript, tests/agentskit.py):

    Web Chat → recorder (Direct Line listener) → channel → recorder (bot listener) → SDK bot

The channel's tokens are JWTs naming the user they were generated for, as the Direct Line service's
are, and Web Chat reads the user id from them: every post carries that id, and a correct bot gets no
finding (with an opaque token, Web Chat made up a random id and every post was a BP-I07 warning).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from agentskit import STREAMED_TEXT, agents_bot
from aiohttp import web
from browser import Browser
from test_directline_channel import NODE_DIR, SECRET, node_or_skip

from botproxy import store
from botproxy.checks import check_session
from botproxy.record.mitm.proxy import ProxyConfig, RecordingProxy
from botproxy.record.session import LiveSession
from botproxy.sample_bot import SampleBotServer
from botproxy.standins.directline import DirectLineChannel
from botproxy.standins.server import serve

USER = {"id": "dl_webchat-user", "name": "Ada"}
TRANSCRIPT = "document.body.innerText"


async def serve_page() -> tuple[web.AppRunner, int]:
    """A local page with the real Web Chat bundle (no CDN)."""
    bundle = NODE_DIR / "node_modules" / "botframework-webchat" / "dist" / "webchat.js"
    page = Path(__file__).parent / "pages" / "webchat.html"
    app = web.Application()
    app.router.add_get("/", lambda _: web.FileResponse(page))
    app.router.add_get("/webchat.js", lambda _: web.FileResponse(bundle))
    return await serve(app)


@pytest.fixture
async def page_server() -> AsyncIterator[str]:
    node_or_skip()
    runner, port = await serve_page()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


# What each bot is asked, and what Web Chat shows when it has answered.
SCRIPTS = {
    "sample": [(None, "Welcome, Ada!"), ("hello", "You said: hello"), ("card", "Sample card")],
    "py": [("hello", "echo: hello"), ("stream", STREAMED_TEXT), ("card", "Pick one")],
    "js": [("hello", "echo: hello"), ("stream", STREAMED_TEXT), ("card", "Pick one")],
}


@asynccontextmanager
async def bot(kind: str, sample_url: str, port: int) -> AsyncIterator[str]:
    if kind == "sample":
        yield sample_url
    else:
        async with agents_bot(kind, port) as url:
            yield url


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(SCRIPTS))
async def test_web_chat_keeps_the_tokens_user_through_the_recorder(
    kind: str, sample_bot: SampleBotServer, page_server: str, tmp_path: Path, free_port: Any
) -> None:
    """Web Chat gets a token for USER, chats with the bot (the SDK sample bot, the Agents SDK for Python
    and for JavaScript, whose streamed reply Web Chat shows as it grows), and every post is USER's."""
    async with bot(kind, sample_bot.url, free_port()) as bot_url:
        db_path = await chat(bot_url, page_server, tmp_path, SCRIPTS[kind])

    db = store.open_db(db_path)
    session = store.resolve_session(db, "webchat")
    rows = list(store.iter_activities(db, session["id"]))
    posted = [r for r in rows if r["direction"] == "from_client"]
    assert [r["text"] for r in posted] == [text for text, _ in SCRIPTS[kind] if text]
    assert {r["from_id"] for r in posted} == {USER["id"]}  # the token's user, not a made-up one
    assert {r["from_id"] for r in rows if r["direction"] == "to_bot" and r["type"] == "message"} == {USER["id"]}
    assert {r["direction"] for r in rows} == {"from_client", "to_client", "to_bot", "from_bot"}
    findings = [(f.rule, f.severity, f.message) for f in check_session(db, session["id"])]  # `botproxy check`
    (tmp_path / "findings.json").write_text(json.dumps(findings))
    assert [f for f in findings if f[1] in ("error", "warning")] == []


async def chat(bot_url: str, page_server: str, tmp_path: Path, script: list[tuple[str | None, str]]) -> str:
    """Web Chat → recorder → channel → recorder → the bot; the recording's database."""
    channel = DirectLineChannel(bot_url, secret=SECRET)
    await channel.start()
    db_path = str(tmp_path / "botproxy.db")
    live = LiveSession(db_path, name="webchat", bot_url=bot_url)
    config = ProxyConfig(bot_url=bot_url, listen="127.0.0.1:0", forward_listen=None,
                         confdir=str(tmp_path / "mitmproxy"), directline=channel.base_url,
                         directline_listen="127.0.0.1:0")
    proxy = RecordingProxy(config, live)
    await proxy.start()
    try:
        channel.bot_url = proxy.endpoint
        # What a site's server does: trade the secret for a token for its signed-in user.
        async with aiohttp.ClientSession() as http:
            async with http.post(proxy.directline_endpoint + "/tokens/generate", json={"user": USER},
                                 headers={"Authorization": f"Bearer {SECRET}"}) as resp:
                assert resp.status == 200
                token = (await resp.json())["token"]
        async with Browser.launch(tmp_path) as browser:
            page = await browser.new_page()
            await page.goto(page_server + "?" + urlencode({"domain": proxy.directline_endpoint, "token": token}))
            # Web Chat says when its Direct Line connection is up (an aria-live status); type only then.
            await page.wait_for(f"{TRANSCRIPT}.includes('Connectivity Status: Connected')", timeout=30)
            for text, answer in script:
                if text:
                    await page.keyboard("[data-id=webchat-sendbox-input]", text)
                await page.wait_for(f"{TRANSCRIPT}.includes({json.dumps(answer)})", timeout=30)
            (tmp_path / "webchat.png").write_bytes(await page.screenshot())
            assert [e for e in page.errors if "favicon" not in e] == []
            # Web Chat asked for nothing beyond this machine.
            local = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")
            assert [u for u in page.requests if not u.startswith(local)] == []
    finally:
        await proxy.stop()
        await channel.stop()
    return db_path
