"""A minimal Bot Framework endpoint for benchmarks: a raw asyncio HTTP/1.1 server, as fast as Python gets.

Two roles, one per process:

    bot        POST /api/messages -> 200 with an empty body (what a bot answers to a message activity)
    connector  any POST           -> 200 {"id": "<n>"}   (a Bot Connector stand-in that accepts replies)

Both answer GET /stats with {"posts": n, "requests": m}, so the benchmark can check how many requests
really arrived. Keep-alive, pipelining-safe, no parsing beyond the request line and Content-Length: the
point is to cost as little CPU as possible, so that what a benchmark measures is the thing in front of it.

    python bench/minimal_bot.py --port 3978 [--role bot|connector] [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

HEADER_END = b"\r\n\r\n"


class Counters:
    def __init__(self) -> None:
        self.requests = 0
        self.posts = 0


class MinimalHTTP(asyncio.Protocol):
    def __init__(self, role: str, counters: Counters) -> None:
        self.role = role
        self.counters = counters
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        out = []
        while True:
            end = self.buffer.find(HEADER_END)
            if end < 0:
                break
            head = self.buffer[:end]
            length = 0
            close = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            total = end + 4 + length
            if len(self.buffer) < total:
                break
            self.buffer = self.buffer[total:]
            method, _, rest = head.partition(b" ")
            path = rest.partition(b" ")[0]
            out.append(self.answer(method, path))
            if close:
                assert self.transport is not None
                self.transport.write(b"".join(out))
                self.transport.close()
                return
        if out:
            assert self.transport is not None
            self.transport.write(b"".join(out))

    def answer(self, method: bytes, path: bytes) -> bytes:
        self.counters.requests += 1
        if method == b"GET" and path == b"/stats":
            self.counters.requests -= 1  # the benchmark's own question does not count
            body = json.dumps({"posts": self.counters.posts, "requests": self.counters.requests}).encode()
            return _response(200, body)
        if method != b"POST":
            return _response(200 if path == b"/health" else 404, b"")
        self.counters.posts += 1
        if self.role == "connector":
            return _response(200, b'{"id":"%d"}' % self.counters.posts)
        return _response(200, b"")


def _response(status: int, body: bytes) -> bytes:
    reason = b"OK" if status == 200 else b"Not Found"
    ctype = b"Content-Type: application/json; charset=utf-8\r\n" if body else b""
    return b"HTTP/1.1 %d %s\r\n%sContent-Length: %d\r\n\r\n%s" % (status, reason, ctype, len(body), body)


async def serve(host: str, port: int, role: str) -> None:
    loop = asyncio.get_running_loop()
    counters = Counters()
    server = await loop.create_server(lambda: MinimalHTTP(role, counters), host, port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3978)
    parser.add_argument("--role", choices=("bot", "connector"), default="bot")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.role))


if __name__ == "__main__":
    main()
