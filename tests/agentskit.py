"""The real Microsoft 365 Agents SDK bots of the suite, as processes on 127.0.0.1: `agents_bot("py")` runs
tests/bots/agents_stream_bot.py (microsoft-agents-hosting-aiohttp), `agents_bot("js")` runs
tests/node/agents_bot.js (@microsoft/agents-hosting + -express, installed by `npm ci --prefix tests/node`).
Both are anonymous and answer "stream" (a StreamingResponse), "card" and "proactive"; build 2 streams
another text."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
NODE_DIR = TESTS / "node"
SDKS = ("py", "js")
STREAMED_TEXT = "The quick brown fox jumps over the lazy dog."
CHANGED_TEXT = "The slow grey cat sleeps."


def _command(sdk: str, port: int, build: int) -> list[str]:
    if sdk == "py":
        return [sys.executable, str(TESTS / "bots" / "agents_stream_bot.py"), str(port), str(build)]
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node is not on PATH"
    elif not (NODE_DIR / "node_modules" / "@microsoft" / "agents-hosting-express").is_dir():
        missing = "tests/node/node_modules lacks the Agents SDK: run `npm ci --prefix tests/node`"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} (CI must run the Agents SDK for JavaScript tests)")
        pytest.skip(missing)
    assert node is not None
    return [node, str(NODE_DIR / "agents_bot.js"), str(port), str(build)]


@asynccontextmanager
async def agents_bot(sdk: str, port: int, *, build: int = 1) -> AsyncIterator[str]:
    """Start the `sdk` agent on `port`; yield its messaging endpoint once it says READY; stop it."""
    env = {k: v for k, v in os.environ.items() if k not in ("NODE_ENV", "HTTP_PROXY", "HTTPS_PROXY")}
    proc = await asyncio.create_subprocess_exec(
        *_command(sdk, port, build), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env
    )
    try:
        assert proc.stdout is not None
        seen = []
        while True:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if not line:
                raise AssertionError(f"the {sdk} agent exited before it was ready: {seen}")
            if line.strip() == b"READY":
                break
            seen.append(line)
        yield f"http://127.0.0.1:{port}/api/messages"
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
