"""Writing: the writer thread (`Writer`) and the one way rows are stored (`RowWriter`), so that nothing is
dropped uncounted; creating and updating session rows.

One writer thread owns the write connection (sqlite3 connections belong to the thread that made them).
The proxy's event loop hands rows to `Writer.put()` and never waits on disk; the writer batches what
has queued up into one transaction. Readers open their own connections; WAL lets them read while a
recording is under way.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from ..errors import StoreError
from ..model import Row
from .files import db_path, describe_sqlite_error
from .opening import open_db

# The store's log lines have always been botproxy.store's (LOG_FORMAT names the logger): kept so.
log = logging.getLogger(__package__)

Rows = dict[str, list[dict[str, Any]]]  # table -> rows, in order
Job = Callable[[], list[Row]]  # makes rows (a recorder handling an event)

BUSY_TIMEOUT_MS = 1000  # the recorder's: past it, rows wait in memory rather than stall the recorder
RETRY_DELAY = 0.5  # seconds between attempts while writes fail
BACKLOG_LIMIT = 256 * 1024 * 1024  # bytes of rows kept in memory while writes fail; past it the oldest go
CLOSE_PATIENCE = 10.0  # seconds of last attempts when recording stops while writes fail
SAY_EVERY = 10.0  # seconds between the running counts while writes fail

# Failures of the storage, not of the rows: they pass (space is freed, a lock is let go), so the rows wait.
_TRANSIENT = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_FULL",
    "SQLITE_IOERR",
    "SQLITE_READONLY",
    "SQLITE_CANTOPEN",
    "SQLITE_NOMEM",
    "SQLITE_PROTOCOL",
)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (getattr(exc, "sqlite_errorname", "") or "").startswith(
        _TRANSIENT
    )


def storable(row: dict[str, Any]) -> dict[str, Any] | None:
    """The row with text SQLite cannot take as UTF-8 escaped, and the exact originals in `odd_text`; None when
    nothing in it needs escaping.

    Such text is legal where it came from: a lone UTF-16 surrogate in JSON (`"\\ud83d"`, half an emoji), or
    bytes that were not UTF-8 in a URL or header, which Python carries as U+DC80-U+DCFF (surrogateescape).
    The column gets the escape `\\udcff` (inside JSON text that is the same JSON value); `odd_text` is a JSON
    object {column: original} whose strings give back the exact value (and `.encode("utf-8",
    "surrogateescape")` the bytes on the wire).
    """
    odd: dict[str, str] = {}
    fixed = dict(row)
    for name, value in row.items():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                odd[name] = value
                fixed[name] = value.encode("utf-8", "backslashreplace").decode("utf-8")
    if not odd:
        return None
    fixed["odd_text"] = json.dumps(odd)  # ensure_ascii: the surrogates travel as \u escapes, exactly
    return fixed


def _rows_size(rows: Rows) -> int:
    return sum(
        100 + sum(len(v) for v in row.values() if isinstance(v, str | bytes))
        for items in rows.values()
        for row in items
    )


def grouped(pairs: Iterable[Row], rows: Rows | None = None) -> Rows:
    """(table, row) pairs grouped by table (into `rows` when given), each table's rows in their order."""
    rows = {} if rows is None else rows
    for table, row in pairs:
        rows.setdefault(table, []).append(row)
    return rows


def run_jobs(jobs: Iterable[Job], rows: Rows | None = None) -> Rows:
    """Run the jobs in order and group the rows they make (`grouped`)."""
    rows = {} if rows is None else rows
    for job in jobs:
        try:
            made = job()
        except Exception:  # one bad job must not cost the rows of the others in its batch
            log.exception("botproxy: a recording job failed")
            continue
        grouped(made, rows)
    return rows


@dataclass
class Stored:
    """What `store_rows` did with a batch."""

    written: int
    escaped: int  # rows stored with odd text escaped (`storable`)
    lost: Counter[str]  # rows that could not be stored, by table


def store_rows(db: sqlite_utils.Database, rows: Rows) -> Stored:
    """Insert a batch inside the caller's transaction, so that no row is dropped uncounted.

    All at once first (`insert_rows`, in a savepoint); when a row spoils that (text SQLite cannot encode, a
    value it cannot bind), row by row, each in its own savepoint: stored escaped (`storable`) or, if it
    still fails, counted in `lost` and named in one log line. A failure of the storage (`is_transient`) is
    raised: the whole batch waits."""
    conn = db.conn
    lost: Counter[str] = Counter()
    escaped = 0
    try:
        conn.execute("SAVEPOINT batch")
        insert_rows(db, rows)
        conn.execute("RELEASE batch")
    except Exception as exc:
        if is_transient(exc):
            raise
        conn.execute("ROLLBACK TO batch")
        conn.execute("RELEASE batch")
        escaped = _row_by_row(db, rows, lost)
    return Stored(sum(len(items) for items in rows.values()) - sum(lost.values()), escaped, lost)


def _row_by_row(db: sqlite_utils.Database, rows: Rows, lost: Counter[str]) -> int:
    """Each row in its own savepoint, so a bad one costs only itself; returns how many were escaped."""
    conn, escaped = db.conn, 0
    for table, items in rows.items():
        for row in items:
            conn.execute("SAVEPOINT one")
            try:
                try:
                    insert_rows(db, {table: [row]})
                except UnicodeEncodeError:
                    fixed = storable(row)
                    if fixed is None:
                        raise
                    conn.execute("ROLLBACK TO one")
                    insert_rows(db, {table: [fixed]})
                    escaped += 1
            except Exception as exc:
                if is_transient(exc):
                    raise
                conn.execute("ROLLBACK TO one")
                lost[table] += 1
                log.error("botproxy: could not store a row of %s (%r); the rest of its batch is stored", table, exc)
            conn.execute("RELEASE one")
    return escaped


def lost_text(lost: Counter[str]) -> str:
    return (
        f"{lost['exchanges']} exchanges and {sum(lost.values()) - lost['exchanges']} other"
        " records could not be stored"
    )


class RowWriter:
    """Writes batches of rows, one transaction per attempt, so that nothing is dropped uncounted.

    - A batch that fails because of one of its rows (text SQLite cannot encode, a value it cannot bind) is
      written again row by row, each in its own savepoint: the row is stored escaped (`storable`) or, if it
      still fails, counted and named in one log line. The rest of the batch lands.
    - A batch that fails because of the storage (disk full, the database locked past the busy timeout, an
      I/O error) waits in memory with the batches after it and is retried in order; the recording goes on.
      It is said once when writes start failing, then as a running count every SAY_EVERY seconds, and once
      when they work again. Past BACKLOG_LIMIT the oldest batches are dropped, and counted.
    """

    def __init__(self, db: sqlite_utils.Database, *, limit: int = BACKLOG_LIMIT) -> None:
        self.db = db
        self.limit = limit
        self.backlog: deque[Rows] = deque()
        self.backlog_size = 0
        self.failing: str | None = None  # why writes fail now
        self.reasons: list[str] = []  # every distinct reason writes failed, for the summary
        self.written = 0
        self.escaped = 0  # rows stored with odd text escaped
        self.lost: Counter[str] = Counter()  # rows that could not be stored, by table
        self._next_try = 0.0
        self._said_at = 0.0
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    @property
    def waiting(self) -> bool:
        return bool(self.backlog)

    def write(self, rows: Rows) -> None:
        """Store `rows` after what waits (now, or at the next attempt while writes fail)."""
        if any(rows.values()):
            self.backlog.append(rows)
            if self.failing is not None:
                self.backlog_size += _rows_size(rows)
                self._bound()
        if self.failing is None or time.monotonic() >= self._next_try:
            self.flush()

    def retry(self) -> None:
        """Called when nothing new comes: try what waits again, when its time has come."""
        if self.backlog and time.monotonic() >= self._next_try:
            self.flush()

    def flush(self) -> bool:
        """One attempt at everything that waits; True when nothing waits any more."""
        if not self.backlog:
            return True
        rows: Rows = {}
        for batch in self.backlog:
            for table, items in batch.items():
                rows.setdefault(table, []).extend(items)
        try:
            stored = self._transaction(rows)
        except Exception as exc:  # is_transient: store_rows isolates everything else
            self._failed(exc)
            return False
        self.written += stored.written
        self.escaped += stored.escaped
        self.lost.update(stored.lost)
        if self.failing is not None:
            log.warning(
                "botproxy: writing to %s again; %d exchanges that waited are stored",
                db_path(self.db),
                len(rows.get("exchanges", ())),
            )
        self.backlog.clear()
        self.backlog_size = 0
        self.failing = None
        return True

    def close(self, patience: float = CLOSE_PATIENCE) -> None:
        """Last attempts for what waits; what is still left after `patience` seconds is counted as lost."""
        deadline = time.monotonic() + patience
        while not self.flush() and time.monotonic() < deadline:
            time.sleep(RETRY_DELAY)
        while self.backlog:
            self._drop_oldest()
        if self.failing is not None:
            log.error("botproxy: gave up writing to %s (%s); %s", db_path(self.db), self.failing, self.lost_text())

    def lost_text(self) -> str:
        return lost_text(self.lost)

    # -- inside -----------------------------------------------------------------------------

    def _transaction(self, rows: Rows) -> Stored:
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")  # the write lock first: a held lock fails here, after the busy timeout
        try:
            stored = store_rows(self.db, rows)
            conn.commit()
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.rollback()
            raise
        return stored

    def _failed(self, exc: BaseException) -> None:
        reason = str(exc)
        now_ = time.monotonic()
        self._next_try = now_ + RETRY_DELAY
        if reason not in self.reasons:
            self.reasons.append(reason)
        if self.failing is None:
            self.failing = reason
            self.backlog_size = sum(_rows_size(b) for b in self.backlog)
            self._said_at = now_
            log.warning(
                "botproxy: cannot write to %s (%s); traffic goes on, and what is not written waits in memory"
                " (up to %d MB) and is retried",
                db_path(self.db),
                reason,
                self.limit // 2**20,
            )
        elif now_ - self._said_at >= SAY_EVERY:
            self._said_at = now_
            log.warning(
                "botproxy: still cannot write (%s): %d exchanges wait, %d dropped",
                reason,
                sum(len(b.get("exchanges", ())) for b in self.backlog),
                self.lost["exchanges"],
            )
        self.failing = reason

    def _bound(self) -> None:
        while self.backlog_size > self.limit and len(self.backlog) > 1:
            if not self.lost:
                log.error(
                    "botproxy: the %d MB of records waiting to be written are full: the oldest are dropped"
                    " (and counted)",
                    self.limit // 2**20,
                )
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        batch = self.backlog.popleft()
        self.backlog_size -= _rows_size(batch) if self.failing is not None else 0
        for table, items in batch.items():
            self.lost[table] += len(items)


# -- the writer thread -------------------------------------------------------------------------

_STOP = object()
_JOB = "__job__"


@dataclass
class Writer:
    """Owns the write connection on its own thread; `put()` never blocks the caller on disk."""

    path: str
    session: dict[str, Any]
    batch_size: int = 2000
    session_id: int = 0
    rows: RowWriter | None = None  # set on start; read its counts after close()
    _queue: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    _thread: threading.Thread | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _failure: BaseException | None = None
    _queued: int = 0  # items put (from the caller's thread) ...
    _handled: int = 0  # ... and done on the writer thread: close() watches the latter for progress
    abandoned: int = 0  # items still queued when close() gave up on a writer that stopped progressing

    @property
    def written(self) -> int:
        return self.rows.written if self.rows is not None else 0

    def start(self) -> int:
        """Open the database and create the session row on the writer thread; returns the session id."""
        self._thread = threading.Thread(target=self._run, name="botproxy-writer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure
        return self.session_id

    def put(self, table: str, row: dict[str, Any]) -> None:
        self._queued += 1
        self._queue.put((table, row))

    def submit(self, job: Job) -> None:
        """Run `job()` on the writer thread, in order with everything put before it; store the rows it returns."""
        self._queued += 1
        self._queue.put((_JOB, job))

    def call(self, fn: Callable[[sqlite_utils.Database], None]) -> None:
        """Run `fn(db)` on the writer thread, in order with the rows put before it."""
        self._queued += 1
        self._queue.put((None, fn))

    def close(self, stall: float = 30.0) -> None:
        """Flush everything queued (with last attempts if writes fail) and close; safe to call twice.

        Waits as long as the writer gets on (a large backlog takes what it takes: a fixed timeout left
        rows unwritten and uncounted); gives up only after `stall` seconds without progress, and counts
        what it leaves in `abandoned`."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        step = min(1.0, stall)
        seen, still = (self._handled, self.written), 0.0
        while self._thread.is_alive():
            self._thread.join(step)
            if (self._handled, self.written) != seen:
                seen, still = (self._handled, self.written), 0.0
                continue
            still += step
            if still >= stall and self._thread.is_alive():
                self.abandoned = self._queued - self._handled
                log.error("botproxy: the database writer made no progress for %g s; %d records left unwritten",
                          stall, self.abandoned)
                break
        self._thread = None

    # -- on the writer thread --

    def _run(self) -> None:
        try:
            db = open_db(self.path, create=True)
            self.session_id = create_session(db, self.session)
            self.rows = RowWriter(db)
        except BaseException as exc:  # reported to start(), on the caller's thread
            self._failure = (
                exc if isinstance(exc, StoreError) else StoreError(f"cannot use database {self.path}: {exc}")
            )
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop(db, self.rows)
        finally:
            db.conn.close()

    def _loop(self, db: sqlite_utils.Database, rows: RowWriter) -> None:
        stopping = False
        while not stopping:
            try:
                batch = [self._queue.get(timeout=RETRY_DELAY if rows.waiting else None)]
            except queue.Empty:
                rows.retry()
                continue
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if batch[-1] is _STOP:
                batch.pop()
                stopping = True
            self._write(db, rows, batch)
        rows.close()

    def _write(self, db: sqlite_utils.Database, writer: RowWriter, batch: list[Any]) -> None:
        rows: Rows = {}
        for table, item in batch:
            if table is _JOB:
                run_jobs([item], rows)
            elif table is None:
                writer.write(rows)
                rows = {}
                try:
                    with db.conn:
                        item(db)
                except Exception:
                    log.exception("botproxy: a database call on the writer thread failed")
            else:
                rows.setdefault(table, []).append(item)
            self._handled += 1
        writer.write(rows)


def create_session(db: sqlite_utils.Database, row: dict[str, Any]) -> int:
    """Insert a new session row, in a transaction of its own; its name must be new in this database."""
    with db.conn:
        return insert_session(db, row)


def insert_session(db: sqlite_utils.Database, row: dict[str, Any]) -> int:
    """Insert a new session row inside the caller's transaction (an import writes a session and all its rows
    in one); its name must be new in this database. Plain SQL: sqlite-utils' `insert` commits on its own."""
    if db["sessions"].count_where("name = ?", [row["name"]]):
        raise StoreError(f"a session named {row['name']!r} already exists in {db_path(db)}; choose another --session")
    columns = ", ".join(f"[{c}]" for c in row)
    sql = f"INSERT INTO [sessions] ({columns}) VALUES ({', '.join('?' * len(row))})"
    return int(db.conn.execute(sql, list(row.values())).lastrowid or 0)


def set_session_fields(db: sqlite_utils.Database, session_id: int, fields: dict[str, Any]) -> None:
    """Set columns of a session row inside the caller's transaction (sqlite-utils' `update` commits on its own)."""
    assignments = ", ".join(f"[{c}] = ?" for c in fields)
    db.conn.execute(f"UPDATE [sessions] SET {assignments} WHERE id = ?", [*fields.values(), session_id])


def update_session(path: str | os.PathLike[str], session_id: int, fields: dict[str, Any]) -> None:
    """Set columns of a session row from a connection of its own (beside a writer that owns another)."""
    db = open_db(path)
    try:
        with db.conn:
            set_session_fields(db, session_id, fields)
    except sqlite3.Error as exc:
        raise StoreError(describe_sqlite_error(path, exc)) from exc
    finally:
        db.conn.close()


def replace_findings(db: sqlite_utils.Database, session_id: int, rows: Iterable[dict[str, Any]],
                     batch_size: int = 1000) -> None:
    """Replace a session's findings with `rows` (streamed in batches), in one transaction."""
    with db.conn:
        db.execute("delete from findings where session_id = ?", [session_id])
        db.table("findings").insert_all(rows, batch_size=batch_size)


def insert_rows(db: sqlite_utils.Database, rows: dict[str, list[dict[str, Any]]]) -> int:
    """Insert rows grouped by table (inside the caller's transaction); returns how many."""
    # One prepared statement per (table, columns), reused: sqlite-utils' insert_all rebuilds its SQL
    # for every call, which was the writer's largest cost at proxy speeds.
    written = 0
    for table, items in rows.items():
        by_columns: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for item in items:
            by_columns.setdefault(tuple(item), []).append(tuple(item.values()))
        for columns, values in by_columns.items():
            db.conn.executemany(_insert_sql(table, columns), values)
        written += len(items)
    return written


@functools.lru_cache(maxsize=256)
def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    names = ", ".join(f"[{c}]" for c in columns)
    return f"INSERT OR REPLACE INTO [{table}] ({names}) VALUES ({', '.join('?' * len(columns))})"
