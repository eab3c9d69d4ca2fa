"""A real `mitmdump` with two reverse listeners in front of both legs of an SDK bot's traffic.

channel --> mitmdump :A --> botproxy recorder --> sample bot
                                  |  (the bot's replies, to the rewritten serviceUrl)
                                  +--> mitmdump :B --> ConnectorChannel

The inbound activities' serviceUrl points at listener B, so mitmdump sees both legs of the same
traffic botproxy records; it writes them as a HAR (`hardump`) and a flow file (`-w`) when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from botproxy import store
from botproxy.demo import _converse
from botproxy.sample_bot import start_bot
from botproxy.standins.connector import ConnectorChannel

MITMDUMP = str(Path(sys.executable).with_name("mitmdump"))
_LISTENING = re.compile(r"reverse proxy to (\S+) listening at [\d.]+:(\d+)")


@contextlib.asynccontextmanager
async def mitmdump(upstreams: list[str], second_port: int, confdir: Path, *args: str) -> AsyncIterator[dict[str, int]]:
    """Run mitmdump with one reverse listener per upstream (the first on a port of its choosing, the
    second on `second_port`: mitmproxy takes port 0 once); yields {upstream: port} once it listens."""
    modes = [f"--mode=reverse:{upstreams[0]}@127.0.0.1:0", f"--mode=reverse:{upstreams[1]}@127.0.0.1:{second_port}"]
    proc = await asyncio.create_subprocess_exec(
        MITMDUMP,
        *modes,
        *("--set", f"confdir={confdir}", "--set", "flow_detail=0", "--set", "keep_host_header=true"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    ports: dict[str, int] = {}
    seen: list[str] = []
    drain: asyncio.Task[bytes] | None = None
    try:
        async with asyncio.timeout(30):
            while len(ports) < len(upstreams):
                line = (await proc.stdout.readline()).decode()
                if not line:
                    raise RuntimeError("mitmdump exited before listening: " + "".join(seen))
                seen.append(line)
                if match := _LISTENING.search(line):
                    ports[match.group(1).rstrip("/")] = int(match.group(2))
        drain = asyncio.create_task(proc.stdout.read())  # keep the pipe from filling up
        yield ports
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)  # mitmdump writes the HAR when it is done
            try:
                async with asyncio.timeout(30):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
    output = (await drain).decode() if drain is not None else ""
    assert proc.returncode == 0, output


@dataclass
class Captures:
    db_path: str
    har: Path
    flows: Path


async def record_through_mitmdump(tmp_path: Path, recorders, free_port) -> Captures:
    """The demo conversation with the SDK sample bot, recorded by botproxy (session `live`) and captured
    by mitmdump as a HAR and a flow file."""
    bot = await start_bot(build=1)
    channel = ConnectorChannel(channel_id="emulator")
    await channel.start()
    har, flows = tmp_path / "mitm.har", tmp_path / "mitm.flows"
    try:
        proxy = await recorders.start(bot.url, name="live")
        connector_url = f"http://127.0.0.1:{channel.port}"
        recorder_url = proxy.endpoint.rsplit("/api/messages", 1)[0]
        async with mitmdump(
            [recorder_url, connector_url], free_port(), tmp_path / "mitm", "--set", f"hardump={har}", "-w", str(flows)
        ) as ports:
            channel.public_url = f"http://127.0.0.1:{ports[connector_url]}/"  # the serviceUrl the bot gets
            await _converse(channel, f"http://127.0.0.1:{ports[recorder_url]}/api/messages", bot.proactive_done)
            await recorders.stop(proxy)
    finally:
        await channel.stop()
        await bot.stop()
    return Captures(recorders.db_path, har, flows)


def summary(db_path: str, name: str) -> list[tuple]:
    """(direction, type, text, route, index of its turn's activity, activity id, status) in order."""
    db = store.open_db(db_path)
    try:
        activities = list(store.iter_activities(db, store.resolve_session(db, name)["id"]))
    finally:
        db.conn.close()
    index = {a["seq"]: i for i, a in enumerate(activities)}
    return [
        (a["direction"], a["type"], a["text"], a["route"], index.get(a["turn_seq"]), a["activity_id"], a["status"])
        for a in activities
    ]


def finding_codes(db_path: str, name: str) -> tuple[list[str], list[str]]:
    """(rules the offline checks find, rules stored with the session)."""
    from botproxy.checks import check_session

    db = store.open_db(db_path)
    try:
        sid = store.resolve_session(db, name)["id"]
        stored = sorted(r["rule"] for r in db.query("select rule from findings where session_id = ?", [sid]))
        return sorted(f.rule for f in check_session(db, sid)), stored
    finally:
        db.conn.close()
