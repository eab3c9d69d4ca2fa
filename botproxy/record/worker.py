"""Recording in a child process: the proxy's event loop never shares the GIL with the recorder.

mitmproxy already spends most of a CPU per request in Python; parsing, redacting, linking turns,
checking, printing and writing SQLite on a thread of the same process took a fifth of that GIL away
from it (bench/README.md). `WorkerSession` has the interface of `LiveSession` but runs all of that in
a child process: the mitmproxy hooks append events to a list (no thread wake-up per event), a sender
thread ships what has gathered every few milliseconds as one pickled batch over a pipe, and the child
processes each batch in order and writes it in one transaction.

The traffic never waits for the child. If the child dies, the proxy goes on carrying traffic unchanged,
says so once, and counts what it could not record.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StoreError
from .recorder import Observer, RequestSeen

if TYPE_CHECKING:
    from ..checks import LiveChecks

log = logging.getLogger(__name__)

BATCH_INTERVAL = 0.01  # seconds between shipments: the console lags by at most this much
START_TIMEOUT = 60.0
# Bytes of events this process holds for a recorder that does not take them (stopped, swapping): past
# it, events are counted and not recorded rather than kept until the proxy runs out of memory.
MAX_WAITING = 256 * 1024 * 1024
EVENT_OVERHEAD = 512  # bytes counted per event beside its body (headers, fields)


# What the child builds its observers with, given the session id: (the live checks or None, every observer
# in order). Picklable (a module-level function or a partial of one), because the child is a fresh
# interpreter; the caller composes it (`console.recorder_observers`), so recording imports neither.
ObserverFactory = Callable[[int], tuple["LiveChecks | None", list[Observer]]]


@dataclass(frozen=True)
class WorkerSpec:
    """Everything the child needs; picklable."""

    db_path: str
    session_row: dict[str, Any]
    observers: ObserverFactory | None  # None: record only
    verbose: bool = False


class WorkerSession:
    """A live recording session whose recorder runs in a child process (see the module docstring)."""

    def __init__(
        self,
        db_path: str,
        *,
        name: str | None = None,
        observers: ObserverFactory | None = None,
        verbose: bool = False,
        **session_fields: Any,
    ) -> None:
        from .session import default_session_name

        self.db_path = db_path
        self.name = name or default_session_name()
        self.observers = observers
        self.verbose = verbose
        self.session_fields = session_fields
        self.session_id = 0
        self.carried = 0  # requests shipped or dropped: each is an exchange, stored or counted as not stored
        self.dropped = 0  # events that could not reach a dead child
        self.refused = 0  # events not kept because too much already waited for the child (MAX_WAITING)
        self.refused_requests = 0
        self.died: str | None = None  # how the child ended, when it ended before close()
        self._events: deque[Any] = deque()
        self._stop = threading.Event()
        self._sender: threading.Thread | None = None
        self._process: Any = None
        self._events_out: Connection | None = None
        self._control: Connection | None = None
        self._dead = False
        # Two counters, each written by one thread only (the event loop, the sender): their difference is
        # what waits, with no lock on the event loop.
        self._queued_bytes = 0
        self._shipped_bytes = 0
        self._refusing = False

    def start(self) -> int:
        from .. import store
        from .session import session_row

        # A database that is not ours, locked or unwritable is said here, before a process is started.
        store.open_db(self.db_path, create=True).conn.close()
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited loop or threads
        events_in, self._events_out = context.Pipe(duplex=False)
        _widen(self._events_out)
        self._control, child_control = context.Pipe()
        spec = WorkerSpec(
            self.db_path,
            session_row(self.name, self.session_fields),
            self.observers,
            self.verbose,
        )
        self._process = context.Process(
            target=child_main, args=(spec, events_in, child_control), name="botproxy-recorder", daemon=True
        )
        self._process.start()
        events_in.close()
        child_control.close()
        if not self._control.poll(START_TIMEOUT):
            self._process.kill()
            raise StoreError(f"the recorder process did not start within {START_TIMEOUT:.0f} s")
        try:
            kind, value = self._control.recv()
        except EOFError:
            self._process.join(5)
            raise StoreError(
                f"the recorder process ended before it was ready (exit code {self._process.exitcode});"
                " run with --verbose to see why"
            ) from None
        if kind == "error":
            self._process.join(5)
            raise StoreError(value)
        self.session_id = int(value)
        self._sender = threading.Thread(target=self._send_loop, name="botproxy-sender", daemon=True)
        self._sender.start()
        return self.session_id

    def submit(self, event: Any) -> None:
        """Called on the event loop for every event: an append and a sum. While more than MAX_WAITING
        bytes wait for a child that does not read, the event is counted as not recorded instead."""
        size = _size(event)
        if self._queued_bytes - self._shipped_bytes + size > MAX_WAITING:
            self._refuse(event)
            return
        if self._refusing:
            self._refusing = False
            log.warning("botproxy: the recorder process takes events again; %d were not recorded", self.refused)
        self._queued_bytes += size
        self._events.append(event)

    def _refuse(self, event: Any) -> None:
        self.refused += 1
        if type(event) is RequestSeen:
            self.refused_requests += 1
        if not self._refusing:
            self._refusing = True
            log.error(
                "botproxy: the recorder process has not taken events for a while (%d MB wait for it); traffic"
                " still flows, what comes now is not recorded until it catches up (counted in the closing"
                " summary)",
                MAX_WAITING >> 20,
            )

    def close(self) -> dict[str, Any]:
        """Ship what is left, let the child finish the session, and return the summary of what the database
        really holds. If the child died, this process closes the session row itself and says how much the
        recording lacks."""
        from .session import close_session

        self._stop.set()
        if self._sender is not None:
            self._sender.join()
        summary: dict[str, Any] = {}
        assert self._control is not None and self._events_out is not None
        try:
            self._events_out.send(None)
            if self._control.poll(START_TIMEOUT):
                kind, summary = self._control.recv()
        except (OSError, EOFError):
            pass
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        if not summary:  # the child ended without one: count what the database holds
            summary = self._summary_without_child()
        summary["errors"] += self.dropped + self.refused
        return close_session(self.db_path, summary, self.carried + self.refused_requests)

    def _summary_without_child(self) -> dict[str, Any]:
        from .. import store
        from .recorder import SessionRecorder
        from .session import summarize

        code = self._process.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        summary = summarize(self.session_id, self.name, self.db_path, SessionRecorder(self.session_id), None)
        summary["problems"] = [
            f"the recorder process died ({how}): what it held was lost, and the {self.dropped} events"
            " that came after were not recorded"
        ]
        with contextlib.suppress(Exception):
            db = store.open_db(self.db_path)
            summary["errors"] = store.stored_counts(db, self.session_id)["error_rows"]
            db.conn.close()
        summary["errors"] += 1  # the death itself
        return summary

    def _send_loop(self) -> None:
        while True:
            stopping = self._stop.wait(BATCH_INTERVAL)
            self._ship()
            if stopping:
                return

    def _ship(self) -> None:
        batch = []
        while self._events:
            batch.append(self._events.popleft())
        if not batch:
            return
        self.carried += sum(1 for event in batch if type(event) is RequestSeen)
        try:
            self._send(batch)
        finally:
            self._shipped_bytes += sum(_size(event) for event in batch)

    def _send(self, batch: list[Any]) -> None:
        if self._dead:
            self.dropped += len(batch)
            return
        try:
            assert self._events_out is not None
            self._events_out.send(batch)
        except (OSError, ValueError) as exc:  # the child is gone: keep proxying, say it once, count the rest
            self._dead = True
            self.dropped += len(batch)
            log.error(
                "botproxy: the recorder process is gone (%s); traffic still flows but is no longer recorded"
                " (counted in the closing summary)",
                exc,
            )


def _size(event: Any) -> int:
    content = getattr(event, "content", None)
    return EVENT_OVERHEAD + (len(content) if content else 0)


def _widen(pipe: Connection) -> None:
    """A pipe as large as Linux allows an unprivileged process (1 MB, not 64 KB): when the recorder lags,
    the events wait in the kernel rather than in this process, so a kill -9 of the proxy loses fewer."""
    with contextlib.suppress(OSError, AttributeError, ImportError):
        import fcntl

        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, min(limit, 1 << 20))  # type: ignore[attr-defined]


# -- in the child ------------------------------------------------------------------------------


def child_main(spec: WorkerSpec, events: Connection, control: Connection) -> None:
    """The recorder process: one session, fed batches of events until the parent sends None."""
    # Ctrl-C reaches the whole process group; the parent decides when recording ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # A file-size limit (ulimit -f) must fail the write (SQLite says so, the rows wait) instead of killing us.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # Recording is batch work: when CPUs are contended, the live traffic in the proxy goes first.
    with contextlib.suppress(OSError):
        os.nice(10)
    # Text the terminal cannot encode (a lone surrogate, a byte that was not UTF-8) is printed escaped.
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    from .. import store
    from ..errors import BotproxyError
    from ..wire.redact import Redactor, redacted_logging
    from .recorder import SessionRecorder

    # One redactor for the recording and the log lines: a secret the traffic taught is scrubbed from both.
    redactor = Redactor()
    redacted_logging(logging.INFO if spec.verbose else logging.WARNING, redactor)
    from .session import close_session, summarize, write_problems

    try:
        db = store.open_db(spec.db_path, create=True)
        session_id = store.create_session(db, spec.session_row)
        rows = store.RowWriter(db)
    except BotproxyError as exc:
        control.send(("error", str(exc)))
        return
    control.send(("ready", session_id))
    checks, observers = spec.observers(session_id) if spec.observers is not None else (None, [])
    recorder = SessionRecorder(session_id, redactor, observers)
    while True:
        if rows.waiting and not events.poll(store.RETRY_DELAY):
            rows.retry()  # writes fail and nothing new comes: try again what waits
            continue
        try:
            batch = events.recv()
        except EOFError:  # the parent died: keep what we have
            batch = None
        jobs = [recorder.finish] if batch is None else [lambda ev=ev: recorder.handle(ev) for ev in batch]
        rows.write(store.run_jobs(jobs))
        with contextlib.suppress(OSError, ValueError):  # a terminal gone must not end the recording
            sys.stdout.flush()
        if batch is None:
            break
    rows.close()
    db.conn.close()
    summary = summarize(session_id, spec.session_row["name"], spec.db_path, recorder, checks)
    summary["errors"] += sum(rows.lost.values())
    summary["problems"] = write_problems(rows)
    # Closed here too, in case the parent is gone; the parent closes it again with what it alone knows.
    summary = close_session(spec.db_path, summary, recorder.exchange_seq)
    try:
        control.send(("summary", summary))
    except OSError:
        pass
