"""The one way a stand-in (and a test's loopback server) starts listening: an aiohttp app on one address.

127.0.0.1 and a free port by default; the port it got is returned, so a caller that asked for port 0
knows where it listens. Stopping is the runner's own `cleanup()`.
"""

from __future__ import annotations

import ssl

from aiohttp import web


async def serve(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ssl_context: ssl.SSLContext | None = None,
    backlog: int = 128,
) -> tuple[web.AppRunner, int]:
    """Serve `app` at `host`:`port` (0: a free one) without an access log; the runner and the port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=ssl_context, backlog=backlog).start()
    return runner, runner.addresses[0][1]
