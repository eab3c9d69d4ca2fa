"""A live recording session: the writer thread, the recorder state machine and its observers, glued.

Used by the embedded recorder (`botproxy record`) and by the `mitmdump -s` addon script alike.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from .. import __version__
from ..model import utc_now
from ..store import RowWriter, Writer, set_session_fields
from ..wire.redact import Redactor, scrub, scrub_own_log_records
from .recorder import FailureSeen, Observer, RequestSeen, ResponseSeen, SessionRecorder

if TYPE_CHECKING:
    from ..checks import Engine, LiveChecks

log = logging.getLogger(__name__)


def default_session_name() -> str:
    return dt.datetime.now().strftime("rec-%Y%m%d-%H%M%S")


class RecordingSession(Protocol):
    """What the proxy records into: `LiveSession` (a writer thread) or `worker.WorkerSession` (a process)."""

    name: str
    db_path: str

    def start(self) -> int: ...

    def submit(self, event: RequestSeen | ResponseSeen | FailureSeen) -> None: ...

    def close(self) -> dict[str, Any]: ...


def session_row(name: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A new `sessions` row."""
    # The bot's URL may carry a key (`?code=` of an Azure Functions endpoint): it is stored and shown.
    fields = {key: scrub(value) if isinstance(value, str) else value for key, value in fields.items()}
    return {"name": name, "started_at": utc_now(), "botproxy_version": __version__, "source": "record", **fields}


class LiveSession:
    def __init__(
        self,
        db_path: str,
        *,
        name: str | None = None,
        observers: Sequence[Observer] | None = None,
        engine: Engine | None = None,
        **session_fields: Any,
    ) -> None:
        """`engine`: a `checks.Engine` to run live; its findings are stored and shown by the observers
        after it (the console prints them under the activity)."""
        self.db_path = db_path
        self.name = name or default_session_name()
        self.session_fields = session_fields
        self.observers = list(observers or [])
        self.engine = engine
        self.checks: LiveChecks | None = None
        self.writer: Writer | None = None
        self.recorder: SessionRecorder | None = None
        self.carried = 0  # requests the proxy carried: each is an exchange, stored or counted as not stored
        self.closed = False
        self.after_close = 0  # events that came after close() (mitmproxy that did not stop in time)

    def start(self) -> int:
        row = session_row(self.name, self.session_fields)
        self.writer = Writer(self.db_path, row)
        session_id = self.writer.start()
        observers = self.observers
        if self.engine is not None:
            from ..checks import LiveChecks  # the checks read what recording produces, never the reverse

            self.checks = LiveChecks(self.engine, session_id)
            observers = [self.checks, *observers]
        self.recorder = SessionRecorder(session_id, Redactor(), observers)
        # Our log lines go to the host's handlers (mitmdump's, an application's): scrub them as we make them.
        scrub_own_log_records(self.recorder.redactor)
        return session_id

    def submit(self, event: RequestSeen | ResponseSeen | FailureSeen) -> None:
        """Called on the event loop; returns at once. The recorder runs on the writer thread."""
        assert self.writer is not None and self.recorder is not None
        if self.closed:  # the writer has stopped: say so rather than queue it where nothing reads
            self.after_close += 1
            if self.after_close == 1:
                log.warning("botproxy: traffic after the session closed is not recorded")
            return
        if type(event) is RequestSeen:
            self.carried += 1
        self.writer.submit(partial(self.recorder.handle, event))

    def close(self) -> dict[str, Any]:
        """Flush everything, close the session row, and return the summary."""
        assert self.writer is not None and self.recorder is not None
        recorder, session_id = self.recorder, self.writer.session_id
        self.closed = True
        # Exchanges still open (a bot that never answered) are kept, marked unfinished.
        self.writer.submit(recorder.finish)
        self.writer.close()
        rows = self.writer.rows
        assert rows is not None
        summary = summarize(session_id, self.name, self.db_path, recorder, self.checks)
        summary["errors"] += sum(rows.lost.values())
        summary["problems"] = write_problems(rows)
        if self.writer.abandoned:
            summary["errors"] += self.writer.abandoned
            summary["problems"].append(
                f"the database writer stopped making progress: {self.writer.abandoned} records were left unwritten"
            )
        return close_session(self.db_path, summary, self.carried)


def write_problems(rows: RowWriter) -> list[str]:
    """What went wrong writing, for the closing summary."""
    problems = [f"could not write to the database: {reason}" for reason in rows.reasons]
    if rows.lost:
        problems.append(rows.lost_text())
    if rows.escaped:
        problems.append(
            f"{rows.escaped} records hold text that is not valid Unicode, stored escaped (exactly in odd_text)"
        )
    return problems


def close_session(db_path: str, summary: dict[str, Any], carried: int) -> dict[str, Any]:
    """Count what the database really holds of the session, close its row with the exchanges the proxy
    carried but could not store, and return the summary saying so. Never raises: the summary stands."""
    from .. import store

    summary.setdefault("problems", [])
    try:
        db = store.open_db(db_path)
    except Exception as exc:
        summary["problems"].append(f"could not read back the database: {exc}")
        summary["not_stored"] = max(carried - summary["exchanges"], 0)
        return summary
    try:
        counts = store.stored_counts(db, summary["id"])
        summary.update({k: counts[k] for k in ("exchanges", "activities", "conversations")})
        summary["not_stored"] = max(carried - counts["exchanges"], 0)
        finish_session(db, summary["id"], utc_now(), summary["errors"], summary["not_stored"])
    finally:
        db.conn.close()
    return summary


def finish_session(db: Any, session_id: int, ended: str, errors: int, not_stored: int) -> None:
    """Close the session row; when even that cannot be written (a full disk), say so and go on."""
    try:
        with db.conn:
            set_session_fields(
                db, session_id, {"ended_at": ended, "error_count": errors, "exchanges_not_stored": not_stored}
            )
    except sqlite3.Error as exc:
        log.error("botproxy: could not close session %d in the database: %s", session_id, exc)


def summarize(
    session_id: int, name: str, db_path: str, recorder: SessionRecorder, checks: LiveChecks | None
) -> dict[str, Any]:
    """What the recorder says when it stops (counts as the recorder saw them; `close_session` puts in what
    the database really holds)."""
    return {
        "id": session_id,
        "name": name,
        "db": db_path,
        "exchanges": recorder.exchange_seq,
        "activities": recorder.activity_seq,
        "conversations": len(recorder.conversations),
        "errors": recorder.errors,
        "not_stored": 0,
        "problems": [],
        "unfinished": recorder.unfinished,
        "findings": dict(checks.counts) if checks is not None else {},
    }
