"""Shared fixtures: a free port, a connector stand-in, the SDK sample bot."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable

import pytest

from botproxy.sample_bot import SampleBotServer, start_bot
from botproxy.standins.connector import ConnectorChannel

pytest_plugins = ["slowmark"]  # the `slow` marker, kept true (tests/slowmark.py)


def pick_free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (prefer port 0 where the API allows it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def free_port() -> Callable[[], int]:
    """Call it for each port you need: ``port = free_port()``."""
    return pick_free_port


@pytest.fixture
async def connector() -> AsyncIterator[ConnectorChannel]:
    channel = ConnectorChannel()
    await channel.start()
    try:
        yield channel
    finally:
        await channel.stop()


@pytest.fixture
async def sample_bot() -> AsyncIterator[SampleBotServer]:
    server = await start_bot(build=1)
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def bot2() -> AsyncIterator[SampleBotServer]:
    """Build 2 of the sample bot: a few answers changed on purpose (see its module docstring)."""
    server = await start_bot(build=2)
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def demo_db(tmp_path) -> str:
    """A database holding session `demo`: the demo's scripted conversation recorded with build 1."""
    from botproxy.demo import record_demo

    db = str(tmp_path / "demo.db")
    await record_demo(db, "demo", confdir=str(tmp_path / "mitm"))
    return db


# -- the recorder, embedded in the test's event loop ------------------------------------------------

from botproxy import store  # noqa: E402
from botproxy.record.mitm.proxy import ProxyConfig, RecordingProxy  # noqa: E402
from botproxy.record.session import LiveSession  # noqa: E402


class Recorders:
    """Starts real embedded recorders (mitmproxy on free ports) writing to a real SQLite file."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.db_path = str(tmp_path / "botproxy.db")
        self.running: list[RecordingProxy] = []

    async def start(self, bot_url: str, *, name: str = "test", observers=(), forward: bool = False,
                    rewrite: bool = True, upstream_ca: str | None = None) -> RecordingProxy:
        live = LiveSession(self.db_path, name=name, observers=list(observers), bot_url=bot_url)
        config = ProxyConfig(bot_url=bot_url, listen="127.0.0.1:0",
                             forward_listen="127.0.0.1:0" if forward else None, rewrite=rewrite,
                             confdir=str(self.tmp_path / "mitmproxy"), upstream_ca=upstream_ca)
        proxy = RecordingProxy(config, live)
        await proxy.start()
        self.running.append(proxy)
        return proxy

    async def stop(self, proxy: RecordingProxy) -> dict:
        self.running.remove(proxy)
        return await proxy.stop()

    def db(self):
        return store.open_db(self.db_path)

    def activities(self, name: str = "test") -> list[dict]:
        db = self.db()
        return list(store.iter_activities(db, store.resolve_session(db, name)["id"]))

    def exchanges(self, name: str = "test") -> list[dict]:
        db = self.db()
        return list(store.iter_exchanges(db, store.resolve_session(db, name)["id"]))


@pytest.fixture
async def recorders(tmp_path) -> AsyncIterator[Recorders]:
    kit = Recorders(tmp_path)
    try:
        yield kit
    finally:
        for proxy in list(kit.running):
            await kit.stop(proxy)
