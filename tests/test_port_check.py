"""The listen-port check right after a restart: connections of the stopped listener linger in TIME_WAIT.

A real TIME_WAIT socket on 127.0.0.1: a listener accepts a connection and closes it first (the side that
closes first keeps the TIME_WAIT), then stops, as a recorder does on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest

from botproxy.errors import ListenError
from botproxy.record.mitm.proxy import check_free


def leave_time_wait() -> int:
    """A port on 127.0.0.1 with no listener but a connection of its old one in TIME_WAIT."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's listeners do
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        accepted, _ = listener.accept()
        accepted.close()  # the server side closes first: its end goes to TIME_WAIT
        assert client.recv(1) == b""  # the FIN has arrived
        client.close()
    return port


def plain_bind_error(port: int) -> int | None:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno
    return None


async def test_a_port_whose_old_connections_linger_is_free() -> None:
    port = leave_time_wait()
    # The situation is real: a bind without SO_REUSEADDR (the old check) is refused...
    assert plain_bind_error(port) == errno.EADDRINUSE
    check_free("127.0.0.1", port, "listen address")  # ...while the check lets it through,
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)  # as the real listener can
    server.close()
    await server.wait_closed()


def test_a_port_something_listens_on_is_still_refused() -> None:
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ListenError, match=f"127.0.0.1:{port} is already in use; pick another with --listen"):
            check_free("127.0.0.1", port, "listen address")
