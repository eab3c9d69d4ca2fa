"""What does a recording lose when botproxy is stopped or killed under load?

Each run starts `botproxy record` in front of bench/minimal_bot.py, sends a bounded concurrent load of
Bot Framework message activities (loopback only, keep-alive connections, every activity with its own id),
and at a random point

    sigterm / sigint   stops botproxy with that signal (as Ctrl-C or a service manager does)
    kill-main          kill -9 of botproxy's main process (mitmproxy's); its recorder process finishes alone
    kill-recorder      kill -9 of the recorder child process; the load goes on to its end, then SIGINT

and then compares what the load generator got answered with what the database holds (each activity's id):
answered-but-missing exchanges per run, and how many milliseconds of traffic before the kill they span.
For kill-recorder it also checks that the closing summary's NOT STORED count is exactly what is missing.

    python bench/bench_durability.py [--runs 3] [--concurrency 8] [--seconds 3] [--modes sigterm,kill-main]

Goals (issue 9): SIGTERM/SIGINT lose nothing; kill -9 of the main process loses at most the last 100 ms;
the recorder's death loses only what it held, and the summary says how much. A measurement, not a test:
it exits 0 whatever it finds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_record import HOST, activity_template, fill, free_port, wait_listening  # noqa: E402

MODES = ("sigterm", "sigint", "kill-main", "kill-recorder")


@dataclass
class Run:
    mode: str
    n: int
    answered: dict[str, float] = field(default_factory=dict)  # activity id -> when its 200 arrived
    sent: int = 0
    killed_at: float = 0.0
    stored: set[str] = field(default_factory=set)
    summary_not_stored: int | None = None
    ended_at: str | None = None
    row_not_stored: int | None = None
    exit_code: int | None = None

    @property
    def missing(self) -> list[float]:
        return sorted(at for aid, at in self.answered.items() if aid not in self.stored)

    def line(self) -> str:
        missing = self.missing
        before = [at for at in missing if at <= self.killed_at]
        after = len(missing) - len(before)
        span = f"{(self.killed_at - before[0]) * 1000:.0f} ms before the kill" if before else "-"
        said = "" if self.summary_not_stored is None else f", summary NOT STORED {self.summary_not_stored}"
        return (
            f"{self.mode:<14} run {self.n}: {len(self.answered):>6} answered, {len(self.stored):>6} stored, "
            f"{len(missing):>4} answered-but-missing ({len(before)} before the kill: {span}; {after} after)"
            f"{said}; session row ended_at {'set' if self.ended_at else 'MISSING'}"
            f", exchanges_not_stored {self.row_not_stored}"
        )


async def load(port: int, run: Run, concurrency: int, seconds: float, stop_at: asyncio.Event) -> None:
    """`concurrency` keep-alive connections posting activities until `seconds` pass or the proxy goes away."""
    template = activity_template(f"http://{HOST}:9/")
    deadline = time.monotonic() + seconds
    counter = iter(range(10**9))

    async def worker() -> None:
        while time.monotonic() < deadline and not stop_at.is_set():
            try:
                reader, writer = await asyncio.open_connection(HOST, port)
            except OSError:
                return  # the proxy is gone
            try:
                while time.monotonic() < deadline and not stop_at.is_set():
                    seq = next(counter)
                    body = fill(template, f"r{run.n}", seq)
                    writer.write(
                        b"POST /api/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                    )
                    run.sent += 1
                    status = await reader.readline()
                    if not status:
                        break
                    length = 0
                    while (line := await reader.readline()) not in (b"\r\n", b""):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    await reader.readexactly(length)
                    if status.split()[1] == b"200":
                        run.answered[f"r{run.n}-{seq}"] = time.time()
            except (OSError, asyncio.IncompleteReadError, IndexError):
                pass
            finally:
                writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def recorder_pid(main_pid: int) -> int:
    """The recorder child of a `botproxy record` process."""
    for _ in range(200):
        with contextlib.suppress(OSError):
            for child in Path(f"/proc/{main_pid}/task/{main_pid}/children").read_text().split():
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                if b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline:
                    return int(child)
        time.sleep(0.05)
    raise RuntimeError("no recorder process found")


def wait_gone(pid: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        status = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
        if status == "Z":
            return
        time.sleep(0.05)


def one_run(args: argparse.Namespace, tmp: Path, bot_port: int, mode: str, n: int) -> Run:
    run = Run(mode, n)
    port = free_port()
    db = tmp / f"{mode}-{n}.db"
    botproxy = str(Path(sys.executable).with_name("botproxy"))
    cmd = [botproxy, "record", "--bot", f"http://{HOST}:{bot_port}/api/messages", "--listen", f"{HOST}:{port}",
           "--no-forward", "--db", str(db), "--session", f"{mode}-{n}", "--confdir", str(tmp / "mitm")]
    log = open(tmp / f"{mode}-{n}.log", "wb")  # noqa: SIM115 - closed below
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    # Its own session, so that a kill -9 of the main process leaves its recorder to finish alone.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True)
    wait_listening(port, proc, timeout=60)
    child = recorder_pid(proc.pid)
    kill_after = random.uniform(0.3, 0.8) * args.seconds

    async def drive() -> None:
        stop_at = asyncio.Event()
        task = asyncio.create_task(load(port, run, args.concurrency, args.seconds, stop_at))
        await asyncio.sleep(kill_after)
        run.killed_at = time.time()
        if mode == "sigterm":
            proc.send_signal(signal.SIGTERM)
        elif mode == "sigint":
            proc.send_signal(signal.SIGINT)
        elif mode == "kill-main":
            proc.kill()
        else:
            os.kill(child, signal.SIGKILL)
        await task

    asyncio.run(drive())
    if mode == "kill-recorder":
        proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    run.exit_code = proc.returncode
    log.close()
    wait_gone(child)  # after kill -9 of the main process, the recorder closes the session by itself
    text = out.decode("utf-8", "replace")
    (tmp / f"{mode}-{n}.out").write_text(text)
    for line in text.splitlines():
        if line.startswith("NOT STORED: "):
            run.summary_not_stored = int(line.split()[2])
    if mode == "kill-recorder" and run.summary_not_stored is None and "recorder errors" in text:
        run.summary_not_stored = 0
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("select activity_id from activities where direction = 'to_bot'")
        run.stored = {r[0] for r in rows}
        row = conn.execute("select ended_at, exchanges_not_stored from sessions").fetchone()
        run.ended_at, run.row_not_stored = row
    finally:
        conn.close()
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per mode (default 3)")
    parser.add_argument("--concurrency", type=int, default=8, help="connections of the load (default 8)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each run's load (default 3)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--keep", metavar="DIR", help="keep databases, consoles and logs in DIR")
    args = parser.parse_args(argv)
    random.seed(args.seed)
    modes = [m for m in args.modes.split(",") if m]
    started = time.time()
    results: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-durability-") as name:
        tmp = Path(args.keep or name)
        tmp.mkdir(parents=True, exist_ok=True)
        bot_port = free_port()
        bot = subprocess.Popen([sys.executable, str(HERE / "minimal_bot.py"), "--port", str(bot_port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_listening(bot_port, bot)
            print(f"bench_durability: {args.runs} runs per mode, c={args.concurrency}, {args.seconds:.1f} s of load, "
                  f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
            for n in range(1, args.runs + 1):
                for mode in modes:
                    run = one_run(args, tmp, bot_port, mode, n)
                    results.append(run)
                    print(run.line(), flush=True)
        finally:
            bot.terminate()
            bot.wait()
    print(f"\ngoals (took {time.time() - started:.0f} s, load average {os.getloadavg()[0]:.1f})")
    report: list[dict[str, Any]] = []
    for mode in modes:
        runs = [r for r in results if r.mode == mode]
        worst = max(len(r.missing) for r in runs)
        spans = [(r.killed_at - r.missing[0]) * 1000 for r in runs if r.missing and r.missing[0] <= r.killed_at]
        if mode in ("sigterm", "sigint"):
            ok, what = worst == 0, f"{mode}: 0 answered exchanges lost (worst run: {worst})"
        elif mode == "kill-main":
            span = max(spans, default=0.0)
            ok, what = span <= 100, f"kill -9 of the main process: losses within the last 100 ms (worst: {span:.0f} ms)"
        else:
            exact = all(r.summary_not_stored == len(r.missing) for r in runs)
            ok, what = exact, "kill -9 of the recorder: the summary's NOT STORED is exactly what is missing " + (
                "in every run" if exact else "NOT in every run")
        closed = all(r.ended_at for r in runs)
        print(f"  {'PASS' if ok else 'FAIL'}  {what}; session rows closed: {'all' if closed else 'NOT all'}")
        report += [{"mode": r.mode, "run": r.n, "answered": len(r.answered), "stored": len(r.stored),
                    "missing": len(r.missing), "summary_not_stored": r.summary_not_stored,
                    "row_not_stored": r.row_not_stored, "ended_at": r.ended_at, "exit_code": r.exit_code,
                    "missing_span_ms": (r.killed_at - r.missing[0]) * 1000 if r.missing else 0.0} for r in runs]
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
