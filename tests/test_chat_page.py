"""The chat page the Direct Line channel serves at ``/``, in headless Chromium, against the SDK sample bot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from browser import Browser, Page

from botproxy import store
from botproxy.record.mitm.proxy import ProxyConfig, RecordingProxy
from botproxy.record.session import LiveSession
from botproxy.sample_bot import SampleBotServer
from botproxy.standins.directline import DirectLineChannel
from botproxy.wire import protocol as p

BOT_BUBBLES = "[...document.querySelectorAll('.bubble.bot .text')].map(e => e.textContent)"


@pytest.fixture
async def channel(sample_bot: SampleBotServer) -> AsyncIterator[DirectLineChannel]:
    ch = DirectLineChannel(sample_bot.url)
    await ch.start()
    try:
        yield ch
    finally:
        await ch.stop()


async def say(page: Page, text: str) -> None:
    await page.type("#text", text)
    await page.click("#send")


@pytest.mark.slow
async def test_chat_page_talks_to_the_bot_and_shows_activity_json(channel: DirectLineChannel, tmp_path: Path) -> None:
    async with Browser.launch(tmp_path) as browser:
        page = await browser.new_page()
        await page.goto(channel.base_url + "/")
        await page.wait_for("document.getElementById('status').textContent.startsWith('connected')")
        await page.wait_for(f"{BOT_BUBBLES}.includes('Welcome, You!')")

        await say(page, "hello <b>there</b>")
        await page.wait_for(f"{BOT_BUBBLES}.includes('You said: hello <b>there</b>')")
        # Rendered as text: the markup the user typed is not markup on the page.
        assert await page.evaluate("document.querySelectorAll('#transcript b').length") == 0
        users = await page.evaluate("[...document.querySelectorAll('.bubble.user .text')].map(e => e.textContent)")
        assert users == ["hello <b>there</b>"]

        await say(page, "card")
        await page.wait_for("document.querySelector('.card .title')?.textContent === 'Sample card'")
        buttons = await page.evaluate("[...document.querySelectorAll('.card button, .card a')].map(e => e.textContent)")
        assert buttons == ["Say hello", "Docs"]
        assert await page.evaluate("document.querySelector('.card a').rel") == "noopener noreferrer"
        chips = await page.evaluate("[...document.querySelectorAll('.chips button')].map(e => e.textContent)")
        assert chips == ["Help", "Two"]
        await page.click(".chips button:last-child")  # a suggested action is sent as the user's message
        await page.wait_for(f"{BOT_BUBBLES}.includes('second')")
        assert await page.evaluate("document.querySelectorAll('.chips').length") == 0

        await page.evaluate("[...document.querySelectorAll('.bubble.bot')].pop().click()")
        shown = await page.evaluate("JSON.parse(document.getElementById('json').textContent)")
        assert shown["text"] == "second" and shown["id"].endswith("|0000007")
        assert shown["channelId"] == "directline" and shown["from"]["id"] == "bot"

        screenshot = tmp_path / "chat-page.png"
        screenshot.write_bytes(await page.screenshot())
        print(f"\nchat page screenshot: {screenshot}")
        assert screenshot.stat().st_size > 10_000
        assert page.errors == []
    assert channel.served[p.DL_STREAM] == 1 and channel.served[p.DL_POST_ACTIVITY] == 3


@pytest.mark.slow
async def test_chat_page_through_the_recorder_is_recorded(channel: DirectLineChannel, sample_bot: SampleBotServer,
                                                          tmp_path: Path) -> None:
    """The page loaded from the recorder's Direct Line listener: its stream comes through the recorder too."""
    db_path = str(tmp_path / "botproxy.db")
    config = ProxyConfig(bot_url=sample_bot.url, listen="127.0.0.1:0", forward_listen=None,
                         confdir=str(tmp_path / "mitmproxy"), directline=channel.base_url,
                         directline_listen="127.0.0.1:0")
    proxy = RecordingProxy(config, LiveSession(db_path, name="page", bot_url=sample_bot.url))
    await proxy.start()
    try:
        channel.bot_url = proxy.endpoint
        async with Browser.launch(tmp_path) as browser:
            page = await browser.new_page()
            await page.goto(proxy.directline_endpoint.removesuffix("/v3/directline") + "/")
            await page.wait_for(f"{BOT_BUBBLES}.includes('Welcome, You!')")
            await say(page, "hello")
            await page.wait_for(f"{BOT_BUBBLES}.includes('You said: hello')")
            assert page.errors == []
    finally:
        await proxy.stop()
    db = store.open_db(db_path)
    rows = list(store.iter_activities(db, store.resolve_session(db, "page")["id"]))
    seen = {(r["direction"], r["text"]) for r in rows}
    assert {("from_client", "hello"), ("to_client", "hello"), ("to_bot", "hello"), ("from_bot", "You said: hello"),
            ("to_client", "You said: hello")} <= seen
    assert {r["route"] for r in rows if r["direction"] == "to_client"} == {p.DL_STREAM}


LAYOUT = """(() => {
  const box = (el) => el.getBoundingClientRect();
  const header = box(document.querySelector('header')), title = box(document.querySelector('header h1'));
  const json = document.getElementById('json'), aside = box(document.querySelector('aside'));
  return {header_bottom: header.bottom, title_bottom: title.bottom, main_top: box(document.querySelector('main')).top,
          json_scroll: json.scrollWidth, json_client: json.clientWidth, aside_right: aside.right,
          viewport: document.documentElement.clientWidth};
})()"""


@pytest.mark.slow
async def test_chat_page_has_no_band_under_its_header_and_wraps_long_json(
    channel: DirectLineChannel, tmp_path: Path
) -> None:
    long_word = "x" * 400  # one JSON line far wider than the pane, with nowhere to break it but anywhere
    async with Browser.launch(tmp_path) as browser:
        page = await browser.new_page()
        await page.goto(channel.base_url + "/")
        await page.wait_for(f"{BOT_BUBBLES}.includes('Welcome, You!')")
        await say(page, long_word)
        await page.wait_for(f"{BOT_BUBBLES}.includes('You said: {long_word}')")
        await page.evaluate("[...document.querySelectorAll('.bubble.bot')].pop().click()")
        await page.wait_for(f"document.getElementById('json').textContent.includes('You said: {long_word}')")
        layout = await page.evaluate(LAYOUT)
        (tmp_path / "chat-page-long.png").write_bytes(await page.screenshot())
        # The header is as tall as its title and padding (8px and a 1px border), the chat right under it.
        assert layout["header_bottom"] - layout["title_bottom"] <= 8 + 1 + 2, layout
        assert abs(layout["main_top"] - layout["header_bottom"]) <= 1, layout
        # The JSON pane wraps a long line inside itself: nothing hidden sideways, nothing past the window.
        assert layout["json_scroll"] <= layout["json_client"], layout
        assert layout["aside_right"] <= layout["viewport"], layout
        assert page.errors == []
