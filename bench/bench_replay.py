"""What does replaying cost? `botproxy replay` against the time the bot itself needs for the same turns.

For each bot, one recorded session of 1,000 turns across 50 conversations (recorded through the real
recorder, not timed), then, in each round:

    direct   a minimal client posts the same inbound activities straight to the bot, the conversations
             in parallel up to the concurrency and the turns of each in order; the bot replies to a
             minimal connector (raw asyncio, its own process), so this is the bot's own time (the
             connector's request count is checked after each run)
    replay   replay_session() of the session against the same bot at the same concurrency: everything
             from opening the database to the stored results (channel stand-in, the recorder writing
             the replay session, live checks, diff, replay_runs/replay_turns), default options
    replay-q0  the same with --quiet-ms 0 (no quiet window at the end of the run either)

The bots, each a fast local bot in its own process that answers a message with one ReplyToActivity
call to the serviceUrl before it returns, as SDK bots do:

    sdk      the bundled Bot Framework SDK sample bot (python -m botproxy.sample_bot): a real bot
    minimal  a minimal aiohttp app: about as little as a bot can do per turn in Python, so what is
             left is botproxy's own cost per turn

Rounds rotate the order; the table shows medians, and the ratio is the median of per-round ratios.
The goal from the issue: replay takes at most 1.5x direct.

    python bench/bench_replay.py                  # 3 rounds, both bots, concurrency 4 and 50: a few minutes
    python bench/bench_replay.py --quick          # 1 round
    python bench/bench_replay.py --bot sdk --concurrency 4 --rounds 5 --json results.json
    python bench/bench_replay.py --with-mitmproxy # also: the candidate behind an embedded recorder

It exits 0 whatever it measured: it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from botproxy.standins.server import serve

HOST = "127.0.0.1"
CONVERSATIONS = 50
TURNS = 1000
GOAL = 1.5


# -- the fast local bot (its own process) -------------------------------------------------------------


async def serve_bot(port: int) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def messages(request: web.Request) -> web.Response:
        activity = await request.json()
        if activity.get("type") == "message":
            base = activity["serviceUrl"].rstrip("/")
            conversation = quote(activity["conversation"]["id"], safe="")
            reply = {
                "type": "message",
                "text": f"You said: {activity.get('text')}",
                "from": activity["recipient"],
                "recipient": activity["from"],
                "conversation": activity["conversation"],
                "replyToId": activity["id"],
                "channelId": activity.get("channelId"),
                "locale": activity.get("locale"),
                "serviceUrl": activity["serviceUrl"],
            }
            url = f"{base}/v3/conversations/{conversation}/activities/{quote(activity['id'], safe='')}"
            async with session.post(url, json=reply) as resp:
                await resp.read()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/api/messages", messages)
    runner, _ = await serve(app, HOST, port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await session.close()
    await runner.cleanup()


# -- processes ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"a benchmark process exited early ({proc.args})")
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after {timeout}s ({proc.args})")


def start_bot(kind: str, port: int) -> subprocess.Popen[bytes]:
    if kind == "sdk":
        return start(["-m", "botproxy.sample_bot", "--port", str(port), "--build", "1"], port)
    return start([__file__, "--serve-bot", str(port)], port)


def connector_posts(port: int) -> int:
    with socket.create_connection((HOST, port)) as sock:
        sock.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    posts: int = json.loads(data.split(b"\r\n\r\n", 1)[1])["posts"]
    return posts


def start(args: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


# -- the session ---------------------------------------------------------------------------------------


async def record_session(db_path: str, bot_url: str, confdir: str, name: str) -> None:
    """1,000 message turns across 50 conversations, through the real recorder (not timed)."""
    from botproxy.record.mitm.proxy import ProxyConfig, RecordingProxy
    from botproxy.record.session import LiveSession
    from botproxy.standins.connector import ConnectorChannel

    channel = ConnectorChannel(channel_id="msteams")
    await channel.start()
    live = LiveSession(db_path, name=name, bot_url=bot_url)
    proxy = RecordingProxy(ProxyConfig(bot_url=bot_url, listen=f"{HOST}:0", forward_listen=None, confdir=confdir),
                           live)
    await proxy.start()
    per_conversation = TURNS // CONVERSATIONS

    async def converse(c: int) -> None:
        for t in range(per_conversation):
            activity = channel.activity(text=f"benchmark message {t} in conversation {c}: the quick brown fox",
                                        conversation_id=f"bench-conversation-{c:02d}", user_id=f"user-{c}")
            status, _ = await channel.send(proxy.endpoint, activity)
            assert status in (200, 201), status

    await asyncio.gather(*(converse(c) for c in range(CONVERSATIONS)))
    await proxy.stop()
    await channel.stop()


def inbound_by_conversation(db_path: str, name: str) -> list[list[dict[str, Any]]]:
    from botproxy import store

    db = store.open_db(db_path)
    session = store.resolve_session(db, name)
    conversations: dict[str, list[dict[str, Any]]] = {}
    for activity in store.iter_activities(db, session["id"]):
        if activity["direction"] == "to_bot":
            conversations.setdefault(activity["conversation_id"], []).append(activity["body"])
    return list(conversations.values())


# -- the two ways of sending it ------------------------------------------------------------------------


async def direct(conversations: list[list[dict[str, Any]]], bot_url: str, connector_url: str,
                 concurrency: int) -> float:
    """A minimal client: the same activities, straight to the bot, same concurrency, turns in order."""
    bodies = [[json.dumps({**a, "serviceUrl": connector_url}).encode() for a in conv] for conv in conversations]
    limit = asyncio.Semaphore(concurrency)
    headers = {"Content-Type": "application/json; charset=utf-8"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency * 2)) as http:

        async def converse(conversation: list[bytes]) -> None:
            async with limit:
                for body in conversation:
                    async with http.post(bot_url, data=body, headers=headers) as resp:
                        await resp.read()
                        assert resp.status in (200, 201), resp.status

        started = time.perf_counter()
        await asyncio.gather(*(converse(c) for c in bodies))
        return time.perf_counter() - started


async def replay(db_path: str, name: str, bot_url: str, concurrency: int, quiet_ms: float | None) -> float:
    from botproxy.replay.driver import replay_session
    from botproxy.replay.plan import DEFAULT_QUIET_MS, ReplayOptions

    started = time.perf_counter()
    options = ReplayOptions(concurrency=concurrency, quiet_ms=DEFAULT_QUIET_MS if quiet_ms is None else quiet_ms)
    result = await replay_session(db_path, name, bot_url, options=options)
    elapsed = time.perf_counter() - started
    if result.summary["turns"] != TURNS or result.summary["same"] != TURNS:
        raise SystemExit(f"the replay did not do the work: {result.summary}")
    return elapsed


async def replay_via_mitmproxy(db_path: str, name: str, bot_url: str, concurrency: int, confdir: str) -> float:
    """For comparison: the candidate behind an embedded RecordingProxy (mitmproxy on the path)."""
    from botproxy.record.mitm.proxy import ProxyConfig, RecordingProxy
    from botproxy.record.session import LiveSession

    live = LiveSession(db_path, name=f"bench-mitm-{time.time_ns()}", bot_url=bot_url, source="replay")
    proxy = RecordingProxy(ProxyConfig(bot_url=bot_url, listen=f"{HOST}:0", forward_listen=None, confdir=confdir),
                           live)
    await proxy.start()
    try:
        return await replay(db_path, name, proxy.endpoint, concurrency, None)
    finally:
        await proxy.stop()


# -- the run -------------------------------------------------------------------------------------------


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    db_path = str(workdir / "bench.db")
    connector_port = free_port()
    # The connector the bots reply to in the direct runs: bench/minimal_bot.py's, in its own process.
    connector = start([str(Path(__file__).with_name("minimal_bot.py")), "--role", "connector", "--port",
                       str(connector_port)], connector_port)
    connector_url = f"http://{HOST}:{connector_port}/"
    results: dict[str, Any] = {"turns": TURNS, "conversations": CONVERSATIONS, "cpus": os.cpu_count(), "runs": {}}
    configs = ["direct", "replay", "replay-q0"] + (["replay-mitmproxy"] if args.with_mitmproxy else [])
    try:
        for kind in args.bot:
            bot_port = free_port()
            bot = start_bot(kind, bot_port)
            bot_url = f"http://{HOST}:{bot_port}/api/messages"
            try:
                await record_session(db_path, bot_url, str(workdir / "mitm"), kind)
                conversations = inbound_by_conversation(db_path, kind)
                assert sum(len(c) for c in conversations) == TURNS
                await direct(conversations, bot_url, connector_url, 8)  # warm-up
                for concurrency in args.concurrency:
                    times: dict[str, list[float]] = {name: [] for name in configs}
                    for round_no in range(args.rounds):
                        order = configs[round_no % len(configs):] + configs[: round_no % len(configs)]
                        for name in order:
                            times[name].append(await one_run(name, kind, db_path, bot_url, connector_url,
                                                             connector_port, conversations, concurrency, workdir))
                            print(f"  {kind:<7} c={concurrency:<3} round {round_no + 1}: {name:<16} "
                                  f"{times[name][-1]:7.3f} s", file=sys.stderr)
                    results["runs"][f"{kind} c={concurrency}"] = {
                        name: {
                            "seconds": statistics.median(values),
                            "all": values,
                            "ratio": statistics.median(v / d for v, d in zip(values, times["direct"], strict=True)),
                        }
                        for name, values in times.items()
                    }
            finally:
                stop(bot)
    finally:
        stop(connector)
    return results


async def one_run(name: str, kind: str, db_path: str, bot_url: str, connector_url: str, connector_port: int,
                  conversations: list[list[dict[str, Any]]], concurrency: int, workdir: Path) -> float:
    if name == "direct":
        before = connector_posts(connector_port)
        elapsed = await direct(conversations, bot_url, connector_url, concurrency)
        posts = connector_posts(connector_port) - before
        if posts != TURNS:
            raise SystemExit(f"the direct run did not do the work: {posts} replies reached the connector")
        return elapsed
    if name == "replay":
        return await replay(db_path, kind, bot_url, concurrency, None)
    if name == "replay-q0":
        return await replay(db_path, kind, bot_url, concurrency, 0)
    return await replay_via_mitmproxy(db_path, kind, bot_url, concurrency, str(workdir / "mitm"))


def report(results: dict[str, Any]) -> None:
    from botproxy.replay.plan import DEFAULT_QUIET_MS

    print(f"\nbotproxy replay: {results['turns']} turns across {results['conversations']} conversations, each bot "
          f"in its own process, {results['cpus']} CPUs; quiet window {DEFAULT_QUIET_MS:g} ms")
    print(f"{'bot, concurrency':<17} {'config':<17} {'median s':>9} {'turns/s':>8} {'x direct':>9}")
    for label, runs in results["runs"].items():
        for name, run in runs.items():
            ratio = "" if name == "direct" else f"{run['ratio']:.2f}x"
            print(f"{label:<17} {name:<17} {run['seconds']:>9.3f} {results['turns'] / run['seconds']:>8.0f}"
                  f" {ratio:>9}")
    for label, runs in results["runs"].items():
        ratio = runs["replay"]["ratio"]
        verdict = "meets" if ratio <= GOAL else "misses"
        overhead = (runs["replay"]["seconds"] - runs["direct"]["seconds"]) / results["turns"] * 1000
        print(f"{label}: replay takes {ratio:.2f}x the direct time ({verdict} the {GOAL}x goal); "
              f"{overhead:.2f} ms more per turn")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bot", choices=("sdk", "minimal"), action="append", help="repeatable [default: both]")
    parser.add_argument("--concurrency", type=int, action="append", help="repeatable [default: 4 and 50]")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--with-mitmproxy", action="store_true", help="also replay through an embedded recorder")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--serve-bot", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bot:
        asyncio.run(serve_bot(args.serve_bot))
        return
    args.concurrency = args.concurrency or [4, 50]
    args.bot = args.bot or ["sdk", "minimal"]
    if args.quick:
        args.rounds = 1
    results = asyncio.run(measure(args))
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
