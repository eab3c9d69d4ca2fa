"""The real Microsoft 365 Agents Playground (npm @microsoft/m365agentsplayground) as a client: its web UI in
headless Chromium, talking to the SDK sample bot, once directly and once through `botproxy record`:

    Chromium (Playground UI) → Playground server → [recorder] → SDK bot → [recorder] → Playground's connector

Through the proxy, both legs are recorded and checked; the Playground's own events recording and the
conversation its UI shows are the same with and without botproxy (once the values that differ from run
to run, ids, times, ports, are set aside); and the Playground's recording imports through the
recorder into a session that is checked and replays `same` against the bot.

The Playground runs under tests/node/loopback.js, which makes it listen on 127.0.0.1 (it listens on
every interface by default) and refuses, and notes, any connection it tries beyond this machine: with
`--disable-telemetry` it tries none. Its UI asks a CDN for fonts and an animation script; this machine
has no internet, so those fail at once (the page works without them), and the test says which they are.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser import Browser
from test_directline_channel import NODE_DIR, node_or_skip

from botproxy import store
from botproxy.checks import check_session
from botproxy.interop import import_files
from botproxy.interop import playground as pg
from botproxy.replay.driver import replay_session
from botproxy.replay.plan import ReplayOptions
from botproxy.sample_bot import SampleBotServer

CLI = NODE_DIR / "node_modules" / "@microsoft" / "m365agentsplayground" / "cli.js"
SEND_BOX = "[data-lexical-editor=true]"
SCRIPT = [("hello", "You said: hello"), ("card", "Sample card"), ("two", "second")]
# What the Playground's UI asks for beyond this machine (its fonts and an animation), measured.
CDN = "https://res-1.cdn.office.net/"


@dataclass
class Playground:
    url: str  # its web UI and its mocked connector
    port: int
    recording: Path  # its events recording
    outbound: Path  # connections it tried beyond this machine (tests/node/loopback.js)


@asynccontextmanager
async def playground(bot_endpoint: str, workdir: Path, channel: str = "emulator") -> AsyncIterator[Playground]:
    node = node_or_skip()
    if not CLI.is_file():
        pytest.fail("tests/node/node_modules lacks @microsoft/m365agentsplayground: run `npm ci --prefix tests/node`")
    workdir.mkdir(parents=True, exist_ok=True)
    recording, outbound = workdir / "events_recording.log", workdir / "outbound.log"
    # The Playground sends through HTTP(S)_PROXY when one is set: here it talks to the bot directly.
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(TEAMSAPPTESTER_BROWSER="none", M365_AGENTS_PLAYGROUND_RECORDING_FILE=str(recording),
               BOTPROXY_OUTBOUND_LOG=str(outbound))
    proc = await asyncio.create_subprocess_exec(
        node, "-r", str(NODE_DIR / "loopback.js"), str(CLI), "--app-endpoint", bot_endpoint, "--channel-id",
        channel, "--port", "0", "--enable-events-recording", "--disable-telemetry",
        cwd=workdir, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    try:
        lines: list[str] = []
        async with asyncio.timeout(60):
            while not (port := re.search(r"Listening on (\d+)", lines[-1] if lines else "")):
                lines.append((await proc.stdout.readline()).decode())
                assert lines[-1], f"the Playground ended early: {''.join(lines)}"
        drain = asyncio.create_task(proc.stdout.read())
        yield Playground(f"http://127.0.0.1:{port.group(1)}", int(port.group(1)), recording, outbound)
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
    await drain


async def converse(pgd: Playground, tmp_path: Path) -> tuple[list[str], list[str]]:
    """Chat through the Playground's UI as a user would; (the messages it shows, what it asked the
    internet for)."""
    async with Browser.launch(tmp_path) as browser:
        page = await browser.new_page()
        await page.goto(pgd.url + "/")
        await page.wait_for("document.body.innerText.includes('Welcome, user-id-0!')", timeout=60)
        for text, answer in SCRIPT:
            await page.keyboard(SEND_BOX, text)
            await page.wait_for(f"document.body.innerText.includes({json.dumps(answer)})", timeout=60)
        (tmp_path / "playground.png").write_bytes(await page.screenshot())
        text = await page.evaluate("document.body.innerText")
        (tmp_path / "playground.txt").write_text(text)
        local = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")
        return chat_lines(text), [u for u in page.requests if not u.startswith(local)]


def chat_lines(text: str) -> list[str]:
    """The chat as the UI shows it: its text up to the log panel, without the times of day."""
    lines = []
    for line in text.split("Log Panel")[0].splitlines():
        line = line.strip()
        if line and not re.fullmatch(r"\d{1,2}:\d{2}( [AP]M)?", line):
            lines.append(re.sub(r"\s*\d{1,2}:\d{2}( [AP]M)?$", "", line))
    return lines


def comparable(recording: Path, pgd: Playground) -> list[dict[str, Any]]:
    """The Playground's events with what differs from run to run set aside: its own log ids and times,
    the conversation id and activity ids it makes up, its port, and where the bot is (the bot itself or
    botproxy's listener)."""
    events = pg.parse(recording.read_text())
    volatile = {e["conversationId"] for e in events} | {e["messageId"] for e in events if e.get("messageId")}
    volatile = {v for v in volatile if isinstance(v, str) and v}
    out = []
    for event in events:
        request = dict(event["request"])
        if event["direction"] == pg.PLAYGROUND_TO_BOT:
            request["url"] = "<bot>"
        request["headers"] = {k: v for k, v in request["headers"].items() if k.lower() != "content-length"}
        item = {"direction": event["direction"], "activityName": event["activityName"], "request": request,
                "response": event["response"], "displayText": event["displayText"]}
        out.append(_calm(item, volatile, pgd.port))
    return out


def _calm(value: Any, volatile: set[str], port: int) -> Any:
    """Times, made-up ids and the Playground's port out of a value."""
    if isinstance(value, dict):
        return {k: "<time>" if k in ("timestamp", "localTimestamp") else _calm(v, volatile, port)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_calm(v, volatile, port) for v in value]
    if isinstance(value, str):
        for item in sorted(volatile, key=len, reverse=True):
            value = value.replace(item, "<id>")
        return value.replace(f"localhost:{port}", "localhost:<playground>")
    return value


@pytest.mark.slow
async def test_playground_through_the_recorder_is_the_same_as_without(
    recorders, sample_bot: SampleBotServer, tmp_path: Path
) -> None:
    async with playground(sample_bot.url, tmp_path / "direct") as direct:
        shown_direct, internet_direct = await converse(direct, tmp_path)
    proxy = await recorders.start(sample_bot.url, name="playground")
    async with playground(proxy.endpoint, tmp_path / "proxied") as proxied:
        shown_proxied, internet_proxied = await converse(proxied, tmp_path)
    await recorders.stop(proxy)

    # The Playground shows the same conversation, and records the same exchanges, with botproxy between.
    assert shown_direct == shown_proxied
    assert "Welcome, user-id-0!" in shown_direct and "You said: hello" in shown_direct
    assert comparable(direct.recording, direct) == comparable(proxied.recording, proxied)
    # It stayed on this machine; its UI only asked the CDN for fonts and an animation.
    for pgd in (direct, proxied):
        assert not pgd.outbound.exists() or pgd.outbound.read_text() == ""
    assert internet_direct and all(u.startswith(CDN) for u in internet_direct + internet_proxied)

    # Both legs recorded, each of the Playground's exchanges once, and a correct bot has no finding.
    rows = recorders.activities("playground")
    assert {r["direction"] for r in rows} == {"to_bot", "from_bot"}
    inbound = [r for r in rows if r["direction"] == "to_bot"]
    assert [r["text"] for r in inbound if r["type"] == "message"] == [text for text, _ in SCRIPT]
    assert {r["service_url"] for r in inbound} == {f"http://localhost:{proxied.port}/_connector"}
    replies = [r for r in rows if r["direction"] == "from_bot"]
    logged = pg.parse(proxied.recording.read_text())
    assert len(replies) == len([e for e in logged if e["direction"] == pg.PLAYGROUND_FROM_BOT])
    assert all(r["turn_seq"] for r in replies)
    db = recorders.db()
    session_id = store.resolve_session(db, "playground")["id"]
    findings = [(f.rule, f.severity, f.message) for f in check_session(db, session_id)]  # `botproxy check`
    assert [f for f in findings if f[1] in ("error", "warning")] == []

    # The Playground's own recording imports into the same turns as botproxy's.
    summary = import_files(recorders.db_path, [proxied.recording], name="from-playground")
    imported = [r for r in recorders.activities("from-playground")]
    assert summary["activities"] == len(imported) == len(rows)
    assert [(r["direction"], r["type"], r["text"], r["route"]) for r in imported] == [
        (r["direction"], r["type"], r["text"], r["route"]) for r in rows]
    by_seq = {r["seq"]: r for r in imported}
    assert [(r["text"], by_seq[r["turn_seq"]]["text"] or by_seq[r["turn_seq"]]["type"]) for r in imported
            if r["direction"] == "from_bot"] == [
        (r["text"], next(x for x in rows if x["seq"] == r["turn_seq"])["text"]
         or next(x for x in rows if x["seq"] == r["turn_seq"])["type"]) for r in replies]
    # ... and replays against the same build turn by turn.
    result = await replay_session(recorders.db_path, "from-playground", sample_bot.url,
                                  options=ReplayOptions(quiet_ms=50))
    assert [t.status for t in result.turns] == ["same"] * (1 + len(SCRIPT))
