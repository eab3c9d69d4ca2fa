"""What does recording cost? Throughput and latency of `botproxy record` against bare mitmproxy.

One run on this machine, every configuration as its own processes, the same Activity load for each:

    direct      the load generator talks straight to the bot
    mitmproxy   through `mitmdump --mode reverse:...` (bare mitmproxy: the ceiling)
    mitmdump-w  through `mitmdump --mode reverse:... -w FILE` (mitmproxy saving flows itself)
    botproxy    through `botproxy record --no-forward` (SQLite, serviceUrl rewrite, console)

Part 1 uses a minimal raw-asyncio bot (bench/minimal_bot.py) and sends N message activities (~1 KB,
many conversations, no Authorization header, so botproxy rewrites serviceUrl as it does for the
Emulator) per concurrency, 1 and 32, with keep-alive connections. Part 2 uses the real Bot Framework
SDK sample bot and a connector stand-in; a turn is the inbound POST plus the bot's reply call, and
both legs go through the proxy under test.

Every configuration is started once per part as its own processes (each proxy with its own
upstream bot or connector, so each can be counted) and stays up; a round then sends one burst of N
requests to each configuration in turn, at c=1 and then at c=32, in an order rotated per round. The
machine is shared and noisy: short interleaved bursts see the same noise, whereas whole runs minutes
apart do not. The table shows medians over the rounds, and the ratios are medians of the per-round
ratios. When a part is done, botproxy's database is counted: it must hold an exchange for every
request that was answered and every one that reached the bot (and, in part 2, for every reply that
reached the connector), so a recorder that drops data cannot pass.

The load generator is wrk (apt-get install wrk) with a generated Lua script; without wrk a Python
raw-socket client in its own process stands in (it costs more CPU, so figures are lower). Processes
are placed by the scheduler; `--pin` gives the process under test the last CPU to itself and the
load generator, bots and connectors the others (no steadier here, and it confines botproxy's writer
thread to the proxy's CPU).

    python bench/bench_record.py                 # 5 rounds, 1000 requests / 200 turns a burst, ~3.5 minutes
    python bench/bench_record.py --quick         # 2 rounds, 500 requests / 100 turns, ~1 minute
    python bench/bench_record.py --rounds 11 --only micro --json results.json

The script exits 0 whatever it measured: it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
PATH = "/api/messages"
BIN = Path(sys.executable).parent
CONCURRENCIES = (1, 32)
CONFIGS = ("direct", "mitmproxy", "mitmdump-w", "botproxy")
SDK_CONFIGS = ("direct", "mitmproxy", "botproxy")
BARE = "mitmproxy"
CONVERSATIONS = 500  # distinct conversations per burst
DIRECT_FACTOR = 10  # the direct runs send this many times N requests, so they last long enough to time

# Goals from the issue.
MIN_RATIO_VS_BARE = 0.9
MAX_ADDED_P50_MS = 0.3
MIN_SDK_RATIO_VS_BARE = 0.95


# -- the load: a Bot Framework message activity as a channel sends it -------------------------------


# @@SEQ@@ / @@CONV@@ / @@USER@@ are filled per request; the rest is what Teams or the Emulator send.
def activity_template(service_url: str) -> str:
    activity = {
        "type": "message",
        "id": "@@PREFIX@@-@@SEQ@@",
        "timestamp": "2025-01-15T10:21:34.5270000Z",
        "localTimestamp": "2025-01-15T11:21:34.5270000+01:00",
        "localTimezone": "Europe/Berlin",
        "serviceUrl": service_url,
        "channelId": "msteams",
        "from": {
            "id": "29:1user-@@USER@@-Zq8JrIExamplEAadUserIdPadding",
            "name": "Ada Lovelace @@USER@@",
            "aadObjectId": "6b8f3a2e-2d6c-4a7e-9a4f-@@USER@@",
        },
        "conversation": {
            "conversationType": "personal",
            "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "id": "a:1bench-@@CONV@@-Hk2jX9xExampleConversationIdPadding",
        },
        "recipient": {"id": "28:6b1d7f0e-7f1c-4c3e-8f8a-3f0e4c2d1b0a", "name": "EchoBot"},
        "textFormat": "plain",
        "locale": "en-US",
        "text": "benchmark message @@SEQ@@ in conversation @@CONV@@: the quick brown fox jumps over the lazy dog",
        "attachments": [],
        "entities": [
            {
                "type": "clientInfo",
                "locale": "en-US",
                "country": "US",
                "platform": "Web",
                "timezone": "Europe/Berlin",
            }
        ],
        "channelData": {
            "tenant": {"id": "72f988bf-86f1-41af-91ab-2d7cd011db47"},
            "source": {"name": "message"},
        },
    }
    return json.dumps(activity, separators=(",", ":"))


PLACEHOLDER = re.compile(r"@@(PREFIX|SEQ|CONV|USER)@@")


def fill(template: str, prefix: str, seq: int) -> bytes:
    values = {"PREFIX": prefix, "SEQ": str(seq), "CONV": f"{prefix}-{seq % CONVERSATIONS}", "USER": str(seq % 97)}
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template).encode()


# -- wrk ---------------------------------------------------------------------------------------------

WRK_LUA = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk, bench_timespec *tp);
int kill(int pid, int sig);
int getpid(void);
]]
local ts = ffi.new("bench_timespec")
local function now() ffi.C.clock_gettime(1, ts); return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9 end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json; charset=utf-8"
wrk.headers["User-Agent"] = "Microsoft-BotFramework/3.1 (bench)"
local limit, prefix, conversations = __LIMIT__, "__PREFIX__", __CONVERSATIONS__
started, finished, answered, sent, bad = 0, 0, 0, 0, 0

request = function()
  if sent == 0 then started = now() end
  sent = sent + 1
  local seq, conv, user = tostring(sent), prefix .. "-" .. (sent % conversations), tostring(sent % 97)
  return wrk.format(nil, "__PATH__", nil, __BODY__)
end

response = function(status, headers, body)
  if status >= 300 then bad = bad + 1 end
  answered = answered + 1
  if answered == limit then
    finished = now()
    wrk.thread:stop()
    ffi.C.kill(ffi.C.getpid(), 2)  -- wrk's main thread sleeps for -d unless interrupted
  end
end

local threads = {}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local t = threads[1]
  io.write(string.format(
    '\\nBENCH {"answered":%d,"sent":%d,"started":%.6f,"finished":%.6f,"bad":%d,"p50_us":%d,"p99_us":%d,' ..
    '"socket_errors":%d}\\n',
    t:get("answered"), t:get("sent"), t:get("started"), t:get("finished"), t:get("bad"),
    latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def wrk_script(template: str, prefix: str, limit: int) -> str:
    """The Lua request body: the template's literal pieces joined with the per-request values."""
    pieces: list[str] = []
    names = {"PREFIX": "prefix", "SEQ": "seq", "CONV": "conv", "USER": "user"}
    pos = 0
    for m in PLACEHOLDER.finditer(template):
        pieces += [_lua_str(template[pos : m.start()]), names[m.group(1)]]
        pos = m.end()
    pieces.append(_lua_str(template[pos:]))
    body = " .. ".join(p for p in pieces if p != '""')
    values = {"__LIMIT__": str(limit), "__PREFIX__": prefix, "__CONVERSATIONS__": str(CONVERSATIONS), "__PATH__": PATH}
    script = WRK_LUA
    for marker, value in values.items():
        script = script.replace(marker, value)
    return script.replace("__BODY__", body)  # last: the body is data


def _lua_str(text: str) -> str:
    assert "]==]" not in text
    return f"[==[{text}]==]" if text else '""'


# -- one measured burst -------------------------------------------------------------------------------


@dataclass
class Run:
    config: str
    c: int
    requests: int
    seconds: float  # from the first request to the n-th answer
    p50_ms: float
    p99_ms: float
    cpu_ms: float  # CPU time of the process under test per request sent
    foreign: float  # CPUs' worth of work by processes not ours (and hypervisor steal) during the burst
    bad: int = 0
    socket_errors: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_rps(self) -> float:
        """Requests per CPU-second of the process under test: throughput with the noise taken out."""
        return 1000 / self.cpu_ms if self.cpu_ms > 0 else 0.0


@dataclass
class Meter:
    wall: float
    busy: float  # all CPUs' non-idle time (interrupt time too: a process's system time includes what it served)
    steal: float
    ours: float
    target: float


@dataclass
class Target:
    """A configuration under load: where to send, what to send, how many per burst."""

    config: str
    port: int
    pid: int  # the process under test: the proxy, or the bot for `direct`
    template: str
    n: int
    sent: int = 0  # requests the load generator wrote (warm-up included)
    answered: int = 0  # 2xx answers it read


@dataclass
class Bench:
    args: argparse.Namespace
    tmp: Path
    wrk: str | None
    pin: bool
    sut_cpu: str = ""
    other_cpus: str = ""
    runs: dict[tuple[str, str, int], list[Run]] = field(default_factory=dict)  # (part, config, c)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)  # data checks
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    bursts: int = 0

    def __post_init__(self) -> None:
        cpus = sorted(os.sched_getaffinity(0))
        if self.pin and len(cpus) >= 2 and shutil.which("taskset"):
            self.sut_cpu = str(cpus[-1])
            self.other_cpus = ",".join(str(c) for c in cpus[:-1])
        else:
            self.pin = False

    # -- processes --

    def spawn(self, name: str, cmd: Sequence[str], *, sut: bool, port: int) -> subprocess.Popen[bytes]:
        """Start a process (on the CPU for processes under test, or on the others) and wait until it listens."""
        if self.pin:
            cmd = ["taskset", "-c", self.sut_cpu if sut else self.other_cpus, *cmd]
        env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        with open(self.tmp / f"{name}.log", "ab") as out:
            proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.tmp)
        self.procs.append(proc)
        wait_listening(port, proc, timeout=30)
        return proc

    def minimal_bot(self, name: str, role: str = "bot", *, sut: bool = False) -> tuple[int, int]:
        """Start bench/minimal_bot.py; its port and pid."""
        port = free_port()
        cmd = [sys.executable, str(HERE / "minimal_bot.py"), "--port", str(port), "--role", role]
        return port, self.spawn(name, cmd, sut=sut, port=port).pid

    def stop_all(self) -> dict[int, int | None]:
        """Stop every process, in reverse order of start; their exit codes by pid."""
        codes = {proc.pid: stop(proc) for proc in reversed(self.procs)}
        self.procs.clear()
        return codes

    # -- load --

    def load(self, target: Target, n: int, c: int) -> dict[str, Any]:
        """Send n requests at concurrency c; wrk's (or the fallback client's) figures."""
        self.bursts += 1
        prefix = f"b{self.bursts}"  # new conversations and activity ids for every burst
        if self.wrk:
            script = self.tmp / "load.lua"
            script.write_text(wrk_script(target.template, prefix, n))
            cmd = [self.wrk, "-t1", f"-c{c}", f"-d{max(120, n // 20)}s", "--timeout", "10s", "-s", str(script)]
            cmd.append(f"http://{HOST}:{target.port}/")
        else:
            spec = self.tmp / "load.json"
            spec.write_text(json.dumps({"template": target.template, "prefix": prefix}))
            cmd = [sys.executable, __file__, "_client", str(target.port), str(n), str(c), str(spec)]
        if self.pin:
            cmd = ["taskset", "-c", self.other_cpus, *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(180, n // 10))
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")), None)
        if line is None:
            raise RuntimeError(f"load generator failed ({proc.returncode}): {proc.stdout[-500:]} {proc.stderr[-500:]}")
        result: dict[str, Any] = json.loads(line[6:])
        target.sent += result["sent"]
        target.answered += result["answered"] - result["bad"]
        if result["answered"] < n or result["finished"] <= 0:
            raise RuntimeError(f"{target.config}: only {result['answered']} of {n} requests were answered: {result}")
        return result

    def burst(self, part: str, target: Target, c: int) -> None:
        """One measured burst; repeated (up to --retries times) while other processes load the machine."""
        best: Run | None = None
        for attempt in range(1 + self.args.retries):
            before = self.meter(target.pid)
            r = self.load(target, target.n, c)
            after = self.meter(target.pid)
            wall = after.wall - before.wall
            run = Run(
                target.config,
                c,
                target.n,
                r["finished"] - r["started"],
                r["p50_us"] / 1000,
                r["p99_us"] / 1000,
                (after.target - before.target) * 1000 / max(1, r["sent"]),
                ((after.busy - before.busy) - (after.ours - before.ours) + (after.steal - before.steal)) / wall,
                r["bad"],
                r["socket_errors"],
            )
            if best is None or run.foreign < best.foreign:
                best = run
            flag = f"  ({run.bad} non-2xx, {run.socket_errors} socket errors)" if run.bad or run.socket_errors else ""
            figures = (
                f"{run.rps:8.0f}/s  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms  "
                f"cpu {run.cpu_ms:6.3f} ms/req  foreign load {run.foreign:4.2f} CPU"
            )
            # Under half a second (the direct runs at c=32) tick-based CPU figures say nothing.
            retry = run.foreign > self.args.max_foreign and attempt < self.args.retries and wall > 0.5
            print(f"    {target.config:<11} c={c:<3} {figures}{flag}{'  (again)' if retry else ''}", flush=True)
            if not retry:
                break
        assert best is not None
        self.runs.setdefault((part, target.config, c), []).append(best)

    def meter(self, pid: int) -> Meter:
        """CPU seconds: the machine's, ours (every process we started, and wrk), the process under test's."""
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) / CLOCK_TICKS for f in fields)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        ours = sum(cpu_seconds(p.pid) for p in self.procs if p.poll() is None)  # taskset execs: same pid
        ours += children.ru_utime + children.ru_stime + me.ru_utime + me.ru_stime
        return Meter(time.monotonic(), user + nice + system + irq + softirq, steal, ours, cpu_seconds(pid))

    def rounds(self, part: str, targets: list[Target]) -> None:
        for target in targets:
            self.load(target, self.args.warmup, 4)
        for rnd in range(self.args.rounds):
            print(f"  round {rnd + 1}/{self.args.rounds}", flush=True)
            for c in CONCURRENCIES:
                for target in rotated(targets, rnd):
                    self.burst(part, target, c)

    # -- the proxies --

    def proxy(self, config: str, reverse: list[tuple[str, int]], db: Path) -> subprocess.Popen[bytes]:
        """Start a proxy; reverse: (upstream origin, listen port) pairs, botproxy takes only the first."""
        if config == "botproxy":
            (origin, port), *_ = reverse
            cmd = [str(BIN / "botproxy"), "record", "--bot", origin + PATH, "--listen", f"{HOST}:{port}"]
            cmd += ["--no-forward", "--db", str(db), "--session", "bench"]
        else:
            cmd = [str(BIN / "mitmdump"), "-q"]
            for origin, port in reverse:
                cmd += ["--mode", f"reverse:{origin}@{HOST}:{port}"]
            if config == "mitmdump-w":
                cmd += ["-w", str(db.with_suffix(".flows"))]
        proc = self.spawn(f"{db.stem}-{config}", cmd, sut=True, port=reverse[0][1])
        for _, port in reverse[1:]:
            wait_listening(port, proc)
        return proc


# -- part 1: the minimal bot ----------------------------------------------------------------------------


def part_micro(b: Bench) -> None:
    n = b.args.requests
    print(f"part 1: minimal bot, bursts of {n} requests ({n * DIRECT_FACTOR} direct), {b.args.rounds} round(s)")
    template = activity_template("https://smba.trafficmanager.net/emea/")
    db = b.tmp / "micro.db"
    targets, bots, proxies = [], {}, {}
    try:
        for config in CONFIGS:
            if config == "direct":  # the bot itself is the process under test
                port, pid = b.minimal_bot("micro-direct-bot", sut=True)
                targets.append(Target(config, port, pid, template, n * DIRECT_FACTOR))
                continue
            bots[config], _ = b.minimal_bot(f"micro-{config}-bot")
            port = free_port()
            proxies[config] = b.proxy(config, [(f"http://{HOST}:{bots[config]}", port)], db)
            targets.append(Target(config, port, proxies[config].pid, template, n))
        b.rounds("micro", targets)
        reached = bot_stats(bots["botproxy"])["posts"]
    finally:
        codes = b.stop_all()
    bp = next(t for t in targets if t.config == "botproxy")
    check_db(b, "part 1", db, bp, exit_code=codes[proxies["botproxy"].pid], reached_bot=reached)


# -- part 2: the SDK bot, both legs through the proxy -------------------------------------------------


def part_sdk(b: Bench) -> None:
    n = b.args.turns
    print(f"part 2: SDK sample bot + connector stand-in, bursts of {n} turns, {b.args.rounds} round(s)")
    db = b.tmp / "sdk.db"
    bot_port = free_port()
    targets, connectors, proxies = [], {}, {}
    try:
        cmd = [sys.executable, "-m", "botproxy.sample_bot", "--port", str(bot_port)]
        bot_pid = b.spawn("sdk-bot", cmd, sut=False, port=bot_port).pid
        bot_origin = f"http://{HOST}:{bot_port}"
        for config in SDK_CONFIGS:
            conn, _ = b.minimal_bot(f"sdk-{config}-connector", "connector")
            connectors[config] = conn
            conn_url = f"http://{HOST}:{conn}/"
            if config == "direct":  # the SDK bot is the process under test
                targets.append(Target(config, bot_port, bot_pid, activity_template(conn_url), n))
                continue
            port = free_port()
            if config == "botproxy":
                # botproxy rewrites serviceUrl, so the reply comes back through --listen on its own.
                template, reverse = activity_template(conn_url), [(bot_origin, port)]
            else:
                # Bare mitmproxy carries the reply leg on a second reverse listener named in serviceUrl.
                svc_port = free_port()
                template = activity_template(f"http://{HOST}:{svc_port}/")
                reverse = [(bot_origin, port), (conn_url.rstrip("/"), svc_port)]
            proxies[config] = b.proxy(config, reverse, db)
            targets.append(Target(config, port, proxies[config].pid, template, n))
        b.rounds("sdk", targets)
        settle(connectors["botproxy"])  # turns the load generator walked away from still send their replies
        replies = bot_stats(connectors["botproxy"])["posts"]
    finally:
        codes = b.stop_all()
    bp = next(t for t in targets if t.config == "botproxy")
    check_db(b, "part 2", db, bp, exit_code=codes[proxies["botproxy"].pid], replies=replies)


def settle(port: int, timeout: float = 5.0) -> None:
    """Wait until an upstream's POST count stops moving (end of a part, not test synchronisation)."""
    deadline, last = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        now = bot_stats(port)["posts"]
        if now == last:
            return
        last = now
        time.sleep(0.2)


# -- checks on what botproxy stored ---------------------------------------------------------------------


def check_db(
    b: Bench,
    label: str,
    db: Path,
    target: Target,
    *,
    exit_code: int | None,
    reached_bot: int | None = None,
    replies: int | None = None,
) -> None:
    """Every request that got an answer, and every one the bot or connector saw, must be in the recording.

    wrk stops at its N-th answer with up to c-1 requests in flight; those are recorded too (502 "Client
    disconnected" when the proxy could no longer deliver the answer), so the inbound count lies between
    what was answered and what was sent, and is at least what reached the bot.
    """
    try:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            count = {
                leg: (total, ok or 0, unclosed)
                for leg, total, ok, unclosed in conn.execute(
                    "select leg, count(*), sum(status between 200 and 299), count(*) - count(status)"
                    " from exchanges group by leg"
                )
            }
            activities = conn.execute("select count(*) from activities").fetchone()[0]
            errors = conn.execute("select count(*) from errors").fetchone()[0]
            not_stored = conn.execute("select coalesce(sum(exchanges_not_stored), 0) from sessions").fetchone()[0]
    except Exception as exc:  # report it, do not crash the measurement
        b.checks.append((f"{label}: database readable", False, repr(exc)))
        return
    inbound, inbound_ok, unclosed = count.pop("inbound", (0, 0, 0))
    outbound, _, out_unclosed = count.pop("outbound", (0, 0, 0))
    other = sum(total for total, _, _ in count.values())
    good = (
        max(target.answered, reached_bot or 0) <= inbound <= target.sent
        and inbound_ok >= target.answered
        and unclosed == out_unclosed == other == errors == not_stored == 0
        and exit_code == 0
        and (replies is None or outbound == replies)
    )
    detail = (
        f"{inbound} inbound exchanges ({inbound_ok} 2xx) for {target.answered} answered, {target.sent} sent"
        + (f", {reached_bot} reached the bot" if reached_bot is not None else "")
        + (f"; {outbound} outbound for {replies} replies at the connector" if replies is not None else "")
        + f"; {activities} activities, {unclosed + out_unclosed} unclosed, {other} other, {errors} recorder errors"
        + f", {not_stored} not stored"
        + f"; exit code {exit_code}"
    )
    b.checks.append((f"{label}: botproxy stored every exchange", good, detail))


# -- report -------------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def paired(b: Bench, part: str, config: str, other: str, c: int, fn: Any) -> float:
    """Median over rounds of fn(run of config, run of other in the same round)."""
    mine, theirs = b.runs.get((part, config, c), []), b.runs.get((part, other, c), [])
    return median([fn(x, y) for x, y in zip(mine, theirs, strict=False)])


def rps_ratio(x: Run, y: Run) -> float:
    return x.rps / y.rps


def cpu_ratio(x: Run, y: Run) -> float:
    return x.cpu_rps / y.cpu_rps


def added_p50(x: Run, y: Run) -> float:
    return x.p50_ms - y.p50_ms


def table(b: Bench, part: str, configs: Sequence[str], unit: str) -> list[dict[str, Any]]:
    rows = []
    header = (
        f"  {'config':<11} {'c':>3} {unit + '/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'x bare':>7} {'x direct':>8} {'+p50 ms':>8} {'cpu ms':>7} {'x bare cpu':>10} {'foreign':>7}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for c in CONCURRENCIES:
        for config in configs:
            runs = b.runs.get((part, config, c))
            if not runs:
                continue
            row = {
                "part": part,
                "config": config,
                "c": c,
                "rps": median([r.rps for r in runs]),
                "p50_ms": median([r.p50_ms for r in runs]),
                "p99_ms": median([r.p99_ms for r in runs]),
                "x_bare": paired(b, part, config, BARE, c, rps_ratio),
                "x_direct": paired(b, part, config, "direct", c, rps_ratio),
                "added_p50_ms": paired(b, part, config, BARE, c, added_p50),
                "cpu_ms": median([r.cpu_ms for r in runs]),
                "x_bare_cpu": paired(b, part, config, BARE, c, cpu_ratio),
                "foreign": median([r.foreign for r in runs]),
                "rounds": len(runs),
            }
            rows.append(row)
            print(
                f"  {config:<11} {c:>3} {row['rps']:>9.0f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
                f"{row['x_bare']:>7.3f} {row['x_direct']:>8.3f} {row['added_p50_ms']:>+8.2f} "
                f"{row['cpu_ms']:>7.3f} {row['x_bare_cpu']:>10.3f} {row['foreign']:>7.2f}"
            )
    return rows


def goals(b: Bench) -> list[tuple[str, bool, str]]:
    """The issue's goals, judged on wall-clock figures; the per-CPU-second ratio is shown beside them."""
    out = []

    def ratio(part: str, other: str, c: int, goal: float, name: str) -> None:
        r = paired(b, part, "botproxy", other, c, rps_ratio)
        if r == r:  # not NaN: both were measured
            per_cpu = paired(b, part, "botproxy", other, c, cpu_ratio)
            out.append((f"{name} at c={c}", r >= goal, f"{r:.3f}x (per CPU-second of the proxy: {per_cpu:.3f}x)"))

    for c in CONCURRENCIES:
        ratio("micro", BARE, c, MIN_RATIO_VS_BARE, f"botproxy >= {MIN_RATIO_VS_BARE}x bare mitmproxy req/s")
    for c in CONCURRENCIES:
        ratio("micro", "mitmdump-w", c, 1.0, "botproxy >= mitmdump -w req/s")
    added = paired(b, "micro", "botproxy", BARE, 1, added_p50)
    if added == added:
        name = f"botproxy adds <= {MAX_ADDED_P50_MS} ms p50 over bare mitmproxy at c=1"
        out.append((name, added <= MAX_ADDED_P50_MS, f"{added:+.3f} ms"))
    for c in CONCURRENCIES:
        name = f"SDK bot, both legs through the proxy: botproxy >= {MIN_SDK_RATIO_VS_BARE}x bare turns/s"
        ratio("sdk", BARE, c, MIN_SDK_RATIO_VS_BARE, name)
    return out


def report(b: Bench, started: float) -> dict[str, Any]:
    print()
    rounds = b.args.rounds
    print(f"results ({dt.date.today().isoformat()}, medians of {rounds} round(s); ratios: medians of per-round ratios)")
    rows: list[dict[str, Any]] = []
    if any(k[0] == "micro" for k in b.runs):
        print(f"\npart 1: minimal bot, bursts of {b.args.requests} activity POSTs")
        rows += table(b, "micro", CONFIGS, "req")
    if any(k[0] == "sdk" for k in b.runs):
        print(f"\npart 2: SDK sample bot, both legs through the proxy, bursts of {b.args.turns} turns")
        rows += table(b, "sdk", SDK_CONFIGS, "turn")
    results = goals(b)
    print("\ngoals")
    for name, ok, detail in results:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}")
    print("\ndata checks")
    for name, ok, detail in b.checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}")
    pinning = f"process under test on CPU {b.sut_cpu}, the rest on {b.other_cpus}" if b.pin else "no CPU pinning"
    client = "wrk" if b.wrk else "Python client" + ("" if b.args.python_client else " (wrk not found)")
    print(f"\nbotproxy {code_version()}; load generator: {client}; {pinning}; {time.monotonic() - started:.0f} s")
    return {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "rows": rows,
        "goals": [{"goal": g, "pass": ok, "value": v} for g, ok, v in results],
        "checks": [{"check": g, "pass": ok, "detail": v} for g, ok, v in b.checks],
        "options": vars(b.args),
        "botproxy": code_version(),
        "wrk": bool(b.wrk),
        "pinned": b.pin,
    }


# -- helpers ------------------------------------------------------------------------------------------


def code_version() -> str:
    """The commit botproxy was measured at, and whether its package had uncommitted changes."""
    try:
        git = ["git", "-C", str(HERE.parent)]
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "botproxy"], capture_output=True, text=True).stdout
    except OSError:
        return "(no git)"
    return f"at {commit}{' + uncommitted changes in botproxy/' if dirty.strip() else ''}" if commit else "(no git)"


def rotated(items: Sequence[T], k: int) -> list[T]:
    k %= len(items)
    return list(items[k:]) + list(items[:k])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process and its live descendants (ended threads included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += sum(cpu_seconds(int(child)) for child in (task / "children").read_text().split())
    except OSError:
        return 0.0
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Process start-up: poll until the port accepts a connection."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args!r} did not listen on {port} within {timeout} s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int | None:
    """SIGINT (botproxy flushes its writer on the way out), then SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return None
    return proc.returncode


def bot_stats(port: int) -> dict[str, int]:
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    stats: dict[str, int] = json.loads(data.partition(b"\r\n\r\n")[2])
    return stats


# -- the fallback load generator (without wrk): raw sockets, its own process -----------------------------


def client_main(port: int, n: int, c: int, spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    template, prefix = spec["template"], spec["prefix"]
    latencies: list[float] = []
    state = {"sent": 0, "bad": 0, "errors": 0}

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while state["sent"] < n:
                state["sent"] += 1
                body = fill(template, prefix, state["sent"])
                head = (
                    f"POST {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json; charset=utf-8\r\n"
                    f"User-Agent: Microsoft-BotFramework/3.1 (bench)\r\nContent-Length: {len(body)}\r\n\r\n"
                )
                t0 = time.perf_counter()
                writer.write(head.encode() + body)
                status_head = await reader.readuntil(b"\r\n\r\n")
                status = int(status_head.split(b" ", 2)[1])
                length = int(re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", status_head)[1])  # type: ignore[index]
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                state["bad"] += status >= 300
        except (OSError, asyncio.IncompleteReadError, TypeError):
            state["errors"] += 1
        finally:
            writer.close()

    async def run() -> tuple[float, float]:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(c)))
        return t0, time.perf_counter()

    started, finished = asyncio.run(run())
    latencies.sort()

    def pct(p: float) -> int:
        return int(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e6) if latencies else 0

    print(
        "BENCH "
        + json.dumps(
            {
                "answered": len(latencies),
                "sent": state["sent"],
                "started": started,
                "finished": finished,
                "bad": state["bad"],
                "p50_us": pct(0.5),
                "p99_us": pct(0.99),
                "socket_errors": state["errors"],
            }
        )
    )


# -- main ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_client"]:
        client_main(int(argv[1]), int(argv[2]), int(argv[3]), argv[4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="activity POSTs per burst in part 1 [1000]")
    parser.add_argument("--turns", type=int, default=200, help="turns per burst with the SDK bot in part 2 [200]")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; figures are medians [5]")
    parser.add_argument("--warmup", type=int, default=200, help="requests before each measured configuration [200]")
    parser.add_argument("--quick", action="store_true", help="2 rounds, 500 requests, 100 turns")
    parser.add_argument("--only", choices=("micro", "sdk"), help="run only one part")
    parser.add_argument("--pin", action="store_true", help="process under test on the last CPU, the rest on the others")
    parser.add_argument(
        "--max-foreign",
        type=float,
        default=0.3,
        help="repeat a burst while other processes use more than this many CPUs [0.3]",
    )
    parser.add_argument("--retries", type=int, default=1, help="repeats of a burst under foreign load [1]")
    parser.add_argument("--python-client", action="store_true", help="use the Python load generator even if wrk exists")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, databases, flows)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.requests, args.turns = 2, 500, 100
    wrk = None if args.python_client else shutil.which("wrk")
    tmp = Path(tempfile.mkdtemp(prefix="bench-record-"))
    b = Bench(args, tmp, wrk, args.pin)
    started = time.monotonic()
    try:
        if args.only in (None, "micro"):
            part_micro(b)
        if args.only in (None, "sdk"):
            part_sdk(b)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"benchmark aborted: {exc}\nlogs in {tmp}", file=sys.stderr)
        args.keep = True
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        b.stop_all()
    result = report(b, started)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.keep:
        print(f"logs, databases and flows kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
