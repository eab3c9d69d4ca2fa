"""A live recording session: the writer thread, the recorder state machine and its observers, glued.

Used by the embedded recorder (`botproxy record`) and by the `mitmdump -s` addon script alike.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from functools import partial
from typing import Any, Protocol

from . import __version__
from .recording import FailureSeen, Observer, RequestSeen, ResponseSeen, SessionRecorder
from .redact import Redactor, scrub_own_log_records
from .store import Writer

log = logging.getLogger(__name__)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def default_session_name() -> str:
    return dt.datetime.now().strftime("rec-%Y%m%d-%H%M%S")


class RecordingSession(Protocol):
    """What the proxy records into: `LiveSession` (a writer thread) or `worker.WorkerSession` (a process)."""

    name: str
    db_path: str

    def start(self) -> int: ...

    def submit(self, event: Any) -> None: ...

    def close(self) -> dict[str, Any]: ...


def session_row(name: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A new `sessions` row."""
    return {"name": name, "started_at": utc_now(), "botproxy_version": __version__, "source": "record", **fields}


class LiveSession:
    def __init__(
        self,
        db_path: str,
        *,
        name: str | None = None,
        observers: Sequence[Observer] | None = None,
        engine: Any = None,
        **session_fields: Any,
    ) -> None:
        """`engine`: a `checks.Engine` to run live; its findings are stored and shown by the observers
        after it (the console prints them under the activity)."""
        self.db_path = db_path
        self.name = name or default_session_name()
        self.session_fields = session_fields
        self.observers = list(observers or [])
        self.engine = engine
        self.checks: Any = None
        self.writer: Writer | None = None
        self.recorder: SessionRecorder | None = None

    def start(self) -> int:
        row = session_row(self.name, self.session_fields)
        self.writer = Writer(self.db_path, row)
        session_id = self.writer.start()
        observers = self.observers
        if self.engine is not None:
            from .checks import LiveChecks  # the checks read what recording produces, never the reverse

            self.checks = LiveChecks(self.engine, session_id)
            observers = [self.checks, *observers]
        self.recorder = SessionRecorder(session_id, Redactor(), observers)
        # Our log lines go to the host's handlers (mitmdump's, an application's): scrub them as we make them.
        scrub_own_log_records(self.recorder.redactor)
        return session_id

    def submit(self, event: RequestSeen | ResponseSeen | FailureSeen) -> None:
        """Called on the event loop; returns at once. The recorder runs on the writer thread."""
        assert self.writer is not None and self.recorder is not None
        self.writer.submit(partial(self.recorder.handle, event))

    def close(self) -> dict[str, Any]:
        """Flush everything, close the session row, and return the summary."""
        assert self.writer is not None and self.recorder is not None
        recorder, session_id = self.recorder, self.writer.session_id
        ended = utc_now()

        def finish(db: Any) -> None:
            finish_session(db, session_id, recorder, ended)

        # Exchanges still open (a bot that never answered) are kept, marked unfinished.
        self.writer.submit(recorder.finish)
        self.writer.call(finish)
        self.writer.close()
        return summarize(session_id, self.name, self.db_path, recorder, self.checks)


def finish_session(db: Any, session_id: int, recorder: SessionRecorder, ended: str) -> None:
    db["sessions"].update(session_id, {"ended_at": ended, "error_count": recorder.errors})


def summarize(session_id: int, name: str, db_path: str, recorder: SessionRecorder, checks: Any) -> dict[str, Any]:
    """What the recorder says when it stops."""
    return {
        "id": session_id,
        "name": name,
        "db": db_path,
        "exchanges": recorder.exchange_seq,
        "activities": recorder.activity_seq,
        "conversations": len(recorder.conversations),
        "errors": recorder.errors,
        "unfinished": recorder.unfinished,
        "findings": dict(checks.counts) if checks is not None else {},
    }
