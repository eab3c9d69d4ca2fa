"""`replay --start CMD`: start the build to test, wait until its endpoint answers, stop it at the end.

The command runs through the shell in a process group of its own (`start_new_session`), so what it
starts (a `npm start` and its node, a shell script and its python) is stopped with it: SIGTERM to the
whole group, then SIGKILL after a grace period. Its output goes to a temporary file, not a pipe (a
pipe nobody reads would block a chatty bot); the tail of it is shown when the build exits or does not
answer. Ready means an HTTP answer, any status, from the messaging endpoint itself (a bot answers a
GET on /api/messages 405 or 404): a listening socket alone can be a server still loading.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import IO
from urllib.parse import urlsplit

from ..errors import UpstreamError
from ..wire.redact import scrub

STOP_GRACE_S = 5.0
_TAIL_LINES = 5


class StartedBuild:
    """A build started by a shell command, probed at `url`."""

    def __init__(self, command: str, url: str, flag: str = "--start") -> None:
        self.command = command
        self.url = url
        self.flag = flag
        self.output: IO[bytes] = tempfile.TemporaryFile()
        self.process = subprocess.Popen(  # noqa: S602 - the user's own command line, as a CI step runs it
            command, shell=True, stdin=subprocess.DEVNULL, stdout=self.output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float) -> None:
        """Return once the endpoint answers HTTP; UpstreamError (one line, with the output's tail) when the
        command exits first or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.poll()
            if code is not None:
                raise UpstreamError(f"{self.flag} {self.command!r} exited with code {code} before {self.url} "
                                    f"answered{self.tail()}")
            if _answers(self.url):
                return
            if time.monotonic() >= deadline:
                raise UpstreamError(f"{self.flag} {self.command!r}: {self.url} did not answer within {timeout:g} s "
                                    f"(--start-timeout){self.tail()}")
            time.sleep(0.1)

    def tail(self) -> str:
        self.output.seek(0, os.SEEK_END)
        size = self.output.tell()
        self.output.seek(max(0, size - 4000))
        lines = [line.strip() for line in self.output.read().decode("utf-8", "replace").splitlines() if line.strip()]
        if not lines:
            return "; it printed nothing"
        return "; its output ends: " + " | ".join(scrub(line)[:200] for line in lines[-_TAIL_LINES:])

    def stop(self) -> None:
        """SIGTERM to the whole group, SIGKILL after STOP_GRACE_S; safe to call twice."""
        try:
            if self.process.poll() is None:
                _signal_group(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    pass
            # The shell may be gone while what it started lingers in the group: the group goes in any case.
            _signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait()
        finally:
            self.output.close()


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _answers(url: str) -> bool:
    """True when an HTTP server answers a GET on `url` (any status)."""
    parts = urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname or "127.0.0.1", parts.port, timeout=2)
    try:
        conn.request("GET", parts.path or "/")
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


@contextlib.contextmanager
def started(builds: list[tuple[str, str, str]], timeout: float) -> Iterator[None]:
    """Start each (command, url, flag), wait for all to answer, and stop them all on the way out (an
    error, Ctrl-C, or SIGTERM from a cancelled CI job, which becomes SystemExit here so this runs)."""
    running: list[StartedBuild] = []
    previous = signal.getsignal(signal.SIGTERM)
    in_main = _is_main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        for command, url, flag in builds:
            if _answers(url):
                raise UpstreamError(f"something already answers at {scrub(url)}: {flag} would test it, not the "
                                    "build it starts; stop it or choose another port")
            running.append(StartedBuild(command, url, flag))
        for build in running:
            build.wait_ready(timeout)
        yield
    except KeyboardInterrupt:
        if _terminated:  # SIGTERM that asyncio unwound as Ctrl-C (below): exit as SIGTERM does
            raise SystemExit(128 + _terminated.pop()) from None
        raise
    finally:
        for build in reversed(running):
            build.stop()
        if in_main:
            signal.signal(signal.SIGTERM, previous)


_terminated: list[int] = []


def _exit_on_sigterm(signum: int, frame: object) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise SystemExit(128 + signum) from None
    # Inside asyncio.run, an exception raised here lands in whichever task is running (on 3.12 it was
    # logged as "Task exception was never retrieved", with a traceback). End it as Ctrl-C does: asyncio
    # cancels the main task and raises KeyboardInterrupt once it has unwound, which `started` turns back.
    _terminated.append(signum)
    signal.raise_signal(signal.SIGINT)


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
