"""A small async client for headless Chromium over the DevTools protocol, for browser tests.

    async with Browser.launch(tmp_path) as browser:
        page = await browser.new_page()
        await page.goto("http://127.0.0.1:5080/")
        await page.wait_for("document.querySelector('.bubble.bot') !== null")
        await page.evaluate("document.title")
        (tmp_path / "page.png").write_bytes(await page.screenshot())
        assert page.errors == []

Chromium is started the way this machine needs (no sandbox as root, no background networking, a fresh
profile) with ``--remote-debugging-port=0``; the port it picked is read from its "DevTools listening on"
line on stderr. ``wait_for`` runs its condition inside the page until it holds or a deadline passes, so tests
never sleep to synchronise. ``page.errors`` collects console errors, uncaught exceptions and failed loads,
``page.requests`` every URL the page asked for.

:func:`chromium_or_skip` gives the binary, skipping locally (failing under ``CI=true``) when it is absent.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]


def chromium_or_skip() -> str:
    """The Chromium binary; a test without it skips locally and fails in CI."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    reason = "Chromium is not installed (apt-get install -y chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the browser tests")
    pytest.skip(reason)


class DevToolsError(RuntimeError):
    pass


class Page:
    """One tab, driven over its own DevTools WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._waiters: list[tuple[str, asyncio.Future[dict[str, Any]]]] = []
        self.errors: list[str] = []  # console errors, uncaught exceptions, failed loads
        self.console: list[str] = []  # every console message, "type: text"
        self.requests: list[str] = []  # every URL the page asked for, once Network is enabled
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
                continue
            self._event(data.get("method", ""), data.get("params", {}))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(DevToolsError("the DevTools connection closed"))

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console.append(f"{params.get('type')}: {text}")
            if params.get("type") == "error":
                self.errors.append(f"console.error: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exception = details.get("exception", {})
            self.errors.append(f"uncaught: {exception.get('description') or details.get('text')}")
        elif method == "Network.requestWillBeSent":
            self.requests.append(params.get("request", {}).get("url", ""))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".rstrip())
        for waiter in [w for w in self._waiters if w[0] == method]:
            self._waiters.remove(waiter)
            if not waiter[1].done():
                waiter[1].set_result(params)

    async def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30) -> dict[str, Any]:
        """One DevTools command; its ``result``."""
        command_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        await self._ws.send_str(json.dumps({"id": command_id, "method": method, "params": params or {}}))
        answer = await asyncio.wait_for(future, timeout)
        if "error" in answer:
            raise DevToolsError(f"{method}: {answer['error'].get('message')}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def _next_event(self, method: str) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append((method, future))
        return future

    async def goto(self, url: str, timeout: float = 30) -> None:
        """Navigate and wait for the load event."""
        loaded = self._next_event("Page.loadEventFired")
        result = await self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise DevToolsError(f"could not load {url}: {result['errorText']}")
        await asyncio.wait_for(loaded, timeout)

    async def evaluate(self, expression: str, timeout: float = 30) -> Any:
        """The value of a JavaScript expression (promises are awaited); page exceptions raise."""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True, "userGesture": True},
            timeout=timeout + 5,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise DevToolsError(details.get("exception", {}).get("description") or details.get("text"))
        return result.get("result", {}).get("value")

    async def wait_for(self, condition: str, timeout: float = 15) -> Any:
        """Wait, inside the page, until the JavaScript ``condition`` is truthy; its value. Raises with the
        condition's text when the deadline passes first."""
        what = json.dumps(condition)
        script = f"""new Promise((resolve, reject) => {{
            const deadline = Date.now() + {int(timeout * 1000)};
            (function check() {{
                let value;
                try {{ value = ({condition}); }} catch (e) {{ value = undefined; }}
                if (value) return resolve(value);
                if (Date.now() > deadline) return reject(new Error("timed out waiting for: " + {what}));
                setTimeout(check, 50);
            }})();
        }})"""
        return await self.evaluate(script, timeout=timeout)

    async def click(self, selector: str) -> None:
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")

    async def type(self, selector: str, text: str) -> None:
        """Set an input's value as a user would leave it (an input event follows)."""
        await self.evaluate(
            f"""(() => {{ const el = document.querySelector({json.dumps(selector)});
                el.focus(); el.value = {json.dumps(text)};
                el.dispatchEvent(new Event("input", {{bubbles: true}})); }})()"""
        )

    async def keyboard(self, selector: str, text: str) -> None:
        """Focus an element and type into it as the keyboard does, then press Enter: what a framework's
        controlled input (React's, Web Chat's send box) takes as a user's typing."""
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        await self.send("Input.insertText", {"text": text})
        enter = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}
        await self.send("Input.dispatchKeyEvent", {"type": "keyDown", "text": "\r", **enter})
        await self.send("Input.dispatchKeyEvent", {"type": "keyUp", **enter})

    async def screenshot(self, full_page: bool = False) -> bytes:
        """A PNG of the viewport (or the whole page)."""
        result = await self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": full_page})
        return base64.b64decode(result["data"])

    async def close(self) -> None:
        await self._ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)


class Browser:
    def __init__(self, process: asyncio.subprocess.Process, port: int, session: aiohttp.ClientSession) -> None:
        self.process = process
        self.port = port
        self.session = session
        self.pages: list[Page] = []

    @classmethod
    @asynccontextmanager
    async def launch(
        cls, profile_parent: Path | None = None, width: int = 1200, height: int = 800, timeout: float = 30
    ) -> AsyncIterator[Browser]:
        """Start Chromium with a fresh profile; stop it (and remove the profile) on exit."""
        binary = chromium_or_skip()
        profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=profile_parent))
        process = await asyncio.create_subprocess_exec(
            binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        stderr: list[str] = []
        listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        drain = asyncio.create_task(_drain(process, stderr, listening))
        session = aiohttp.ClientSession()
        browser: Browser | None = None
        try:
            try:
                port = await asyncio.wait_for(listening, timeout)
            except (TimeoutError, EOFError):
                raise DevToolsError("Chromium did not open DevTools: " + "\n".join(stderr[-20:])) from None
            browser = cls(process, port, session)
            yield browser
        finally:
            for page in browser.pages if browser else []:
                await page.close()
            await session.close()
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            await asyncio.gather(drain, return_exceptions=True)
            shutil.rmtree(profile, ignore_errors=True)

    async def new_page(self) -> Page:
        """A new tab with Page, Runtime and Log events on."""
        async with self.session.put(f"http://127.0.0.1:{self.port}/json/new?about:blank") as resp:
            target = await resp.json()
        ws = await self.session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        self.pages.append(page)
        for domain in ("Page", "Runtime", "Log", "Network"):
            await page.send(f"{domain}.enable")
        return page


async def _drain(process: asyncio.subprocess.Process, lines: list[str], listening: asyncio.Future[int]) -> None:
    """Read Chromium's stderr to its end (a full pipe would stall it); resolve ``listening`` with the port
    of its "DevTools listening on ws://127.0.0.1:PORT/..." line."""
    assert process.stderr is not None
    async for raw in process.stderr:
        line = raw.decode(errors="replace").rstrip()
        lines.append(line)
        del lines[:-200]
        match = re.search(r"DevTools listening on ws://[^:/]+:(\d+)/", line)
        if match and not listening.done():
            listening.set_result(int(match.group(1)))
    if not listening.done():
        listening.set_exception(EOFError("Chromium closed its stderr"))
