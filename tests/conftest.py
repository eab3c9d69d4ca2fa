"""Shared fixtures: a free port, a connector stand-in, the SDK sample bot."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable

import pytest

from botproxy.channel import ConnectorChannel
from botproxy.sample_bot import SampleBotServer, start_bot


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
