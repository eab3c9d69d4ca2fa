"""The SQLite store: schema and migrations, the writer thread, and read queries (through sqlite-utils).

One writer thread owns the write connection (sqlite3 connections belong to the thread that made them).
The proxy's event loop hands rows to `Writer.put()` and never waits on disk; the writer batches what
has queued up into one transaction. Readers open their own connections; WAL lets them read while a
recording is under way.

Schema changes are migrations numbered by `PRAGMA user_version`, so a database written by an older
botproxy opens with a newer one.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import os
import queue
import shlex
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from .errors import SessionNotFound, StoreError

log = logging.getLogger(__name__)

DEFAULT_DB = "botproxy.db"
ODD_TEXT_TABLES = ("exchanges", "activities", "findings", "errors")  # the tables with an `odd_text` column

# -- schema ------------------------------------------------------------------------------------


def _migration_1(db: sqlite_utils.Database) -> None:
    db.table("sessions").create(
        {
            "id": int,
            "name": str,
            "started_at": str,
            "ended_at": str,
            "source": str,  # record, import, replay
            "bot_url": str,
            "listen": str,
            "forward_listen": str,
            "capture_mode": str,
            "botproxy_version": str,
            "error_count": int,
            "notes": str,
        },
        pk="id",
        not_null={"name"},
        defaults={"error_count": 0},
    )
    db.table("sessions").create_index(["name"], unique=True)
    db.table("exchanges").create(
        {
            "session_id": int,
            "seq": int,  # order of observation within the session
            "opened": int,  # event number when the request was seen
            "closed": int,  # event number when the response (or error) was seen
            "started_at": float,
            "ended_at": float,
            "duration_ms": float,
            "leg": str,  # inbound (channel -> bot), outbound (bot -> connector), other
            "listener": str,  # reverse, forward, svc (rewritten serviceUrl)
            "method": str,
            "url": str,
            "route": str,
            "conversation_id": str,
            "url_activity_id": str,
            "status": int,
            "request_headers": str,
            "request_body": str,
            "request_body_raw": bytes,
            "request_malformed": int,
            "response_headers": str,
            "response_body": str,
            "response_body_raw": bytes,
            "response_malformed": int,
            "rewritten": int,
            "error": str,
            "error_code": str,
        },
        pk=("session_id", "seq"),
        foreign_keys=[("session_id", "sessions", "id")],
    )
    db.table("activities").create(
        {
            "session_id": int,
            "seq": int,
            "event": int,
            "exchange_seq": int,
            "direction": str,  # to_bot, from_bot
            "source": str,  # request or response (body of the HTTP response)
            "method": str,
            "route": str,
            "status": int,
            "type": str,
            "name": str,
            "text": str,
            "conversation_id": str,
            "activity_id": str,
            "url_conversation_id": str,
            "url_activity_id": str,
            "reply_to_id": str,
            "from_id": str,
            "recipient_id": str,
            "channel_id": str,
            "service_url": str,
            "locale": str,
            "delivery_mode": str,
            "turn_seq": int,
            "target_seq": int,
            "observed_at": float,
            "body": str,
        },
        pk=("session_id", "seq"),
        foreign_keys=[("session_id", "sessions", "id")],
    )
    db.table("activities").create_index(["session_id", "conversation_id", "seq"])
    db.table("activities").create_index(["session_id", "event"])
    db.table("exchanges").create_index(["session_id", "closed"])
    db.table("errors").create(
        {"session_id": int, "at": float, "stage": str, "message": str, "exchange_seq": int},
        foreign_keys=[("session_id", "sessions", "id")],
    )
    db.table("findings").create(
        {
            "session_id": int,
            "seq": int,  # the activity that broke the rule
            "rule": str,
            "name": str,
            "severity": str,
            "conversation_id": str,
            "message": str,
            "details": str,
        },
        foreign_keys=[("session_id", "sessions", "id")],
    )
    db.table("findings").create_index(["session_id", "seq"])


def _migration_2(db: sqlite_utils.Database) -> None:
    # Direct Line: activities delivered to a client carry the watermark of their ActivitySet.
    db.table("activities").add_column("watermark", str)


def _migration_3(db: sqlite_utils.Database) -> None:
    """Replay results: one row per `botproxy replay` run, one per replayed turn (JSON columns are text)."""
    db.table("replay_runs").create(
        {
            "id": int,
            "session_id": int,  # the recorded session that was replayed
            "started_at": str,
            "ended_at": str,
            "candidate_url": str,
            "baseline_url": str,
            "candidate_session_id": int,  # the replay's own traffic, recorded as sessions with source=replay
            "baseline_session_id": int,
            "concurrency": int,
            "options": str,  # JSON: quiet_ms, cap_ms, timeout_s
            "ignore_paths": str,  # JSON list: --ignore and [tool.botproxy.replay] ignore
            "noise_paths": str,  # JSON list: paths that differed between the recording and the baseline
            "summary": str,  # JSON: counts by status, regressions, proactive activities
            "status": str,  # running, passed, regressed, failed
            "error": str,
        },
        pk="id",
        foreign_keys=[("session_id", "sessions", "id")],
    )
    db.table("replay_turns").create(
        {
            "run_id": int,
            "conversation_id": str,
            "idx": int,  # 1-based position of the turn in its conversation
            "inbound_seq": int,  # the inbound activity's seq in the recorded session
            "candidate_seq": int,  # ... and in the candidate's replay session
            "baseline_seq": int,
            "inbound_text": str,
            "status": str,  # same, changed, error
            "regressed": int,
            "duration_ms": float,
            "recorded": str,  # JSON: the recorded activities of the turn
            "replayed": str,  # JSON: the candidate's activities of the turn
            "differences": str,  # JSON: [{kind, path, recorded, replayed, ...}] that count
            "noise": str,  # JSON: differences discounted because the baseline differed there too
            "noise_paths": str,  # JSON: what the baseline taught about this turn
            "new_findings": str,  # JSON: check findings the recording did not have
            "error": str,
        },
        pk=("run_id", "conversation_id", "idx"),
        foreign_keys=[("run_id", "replay_runs", "id")],
    )


def _migration_4(db: sqlite_utils.Database) -> None:
    """Full-text search on activity text (`activities_fts`, kept current by triggers; sqlite-utils and
    Datasette find it by its name)."""
    db.table("activities").enable_fts(["text"], create_triggers=True)


def _migration_5(db: sqlite_utils.Database) -> None:
    # 1 when several turns of the conversation were open and nothing on the wire said which (turns.py).
    db.table("activities").add_column("turn_ambiguous", int)


def _migration_6(db: sqlite_utils.Database) -> None:
    """Nothing dropped uncounted: how many exchanges a recording carried but could not store, and the exact
    originals of text SQLite could not take as UTF-8 (see `storable`)."""
    db.table("sessions").add_column("exchanges_not_stored", int, not_null_default=0)
    for table in ODD_TEXT_TABLES:
        db.table(table).add_column("odd_text", str)


def _migration_7(db: sqlite_utils.Database) -> None:
    """A corpus run (several sessions, one verdict): its row has no `session_id`, its sessions' runs name it
    as `parent_id`. Builds have names (`--label`); a shard says which share of the corpus it replayed;
    `uid` tells a run copied into several databases (shard jobs) from two runs when they are merged."""
    runs = db.table("replay_runs")
    for column in ("parent_id", "candidate_label", "baseline_label", "shard", "shard_group", "uid"):
        runs.add_column(column, int if column == "parent_id" else str)
    runs.create_index(["parent_id"])


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
    _migration_5,
    _migration_6,
    _migration_7,
]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite_utils.Database) -> None:
    """Bring a database up to SCHEMA_VERSION; refuse one written by a newer botproxy."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    _refuse_newer(db, version)
    for number in range(version, SCHEMA_VERSION):
        with db.conn:
            MIGRATIONS[number](db)
            db.execute(f"PRAGMA user_version = {number + 1}")
    if db.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")


def _refuse_newer(db: sqlite_utils.Database, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{db_path(db)} was written by a newer botproxy (schema {version}, this one knows {SCHEMA_VERSION});"
            " upgrade botproxy"
        )


def db_path(db: sqlite_utils.Database) -> str:
    row = db.execute("PRAGMA database_list").fetchone()
    return row[2] if row else "database"


def command_hint(path: str, command: str, *args: str) -> str:
    """`botproxy COMMAND ARGS` as a hint to run next on the database at `path`: with `--db PATH` unless it
    is the default one, so that the hint works as printed; quoted for a shell."""
    words = ["botproxy", command, *args]
    if os.path.abspath(path) != os.path.abspath(DEFAULT_DB):
        words += ["--db", path]
    return shlex.join(words)


# -- opening -----------------------------------------------------------------------------------

# `PRAGMA application_id` of every database botproxy creates ("bpxy"), so another application's SQLite
# file is told apart from ours (https://www.sqlite.org/pragma.html#pragma_application_id). Files made
# before it was set are recognised by the tables of migration 1 and are given it when next opened.
APPLICATION_ID = 0x62707879
_OUR_TABLES = frozenset({"sessions", "exchanges", "activities", "errors", "findings"})
_OUR_SESSION_COLUMNS = frozenset({"name", "source", "capture_mode", "botproxy_version"})


def lock_timeout() -> float:
    """Seconds to wait for a database another process holds locked (BOTPROXY_LOCK_TIMEOUT, default 30)."""
    try:
        return max(0.0, float(os.environ.get("BOTPROXY_LOCK_TIMEOUT", "30")))
    except ValueError:
        return 30.0


def open_db(path: str | os.PathLike[str], *, create: bool = False, write: bool = False) -> sqlite_utils.Database:
    """Open (and migrate) a botproxy database; every failure is a one-line StoreError.

    `create`: make the file when it is missing (owner-only, it holds traffic) and accept an empty SQLite
    file. `create` or `write`: wait for the write lock now (BOTPROXY_LOCK_TIMEOUT), so a database that
    cannot be written is said before any work. A file that is not ours is refused before anything is
    written to it."""
    path = Path(path)
    _check_path(path, create)
    conn = None
    try:
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=lock_timeout())
        db = sqlite_utils.Database(conn)
        fresh = _recognise(db, path, create)
        if fresh or create or write:
            _wait_for_write_lock(db)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        migrate(db)
        return db
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        raise StoreError(describe_sqlite_error(path, exc)) from exc
    except BaseException:
        if conn is not None:
            conn.close()
        raise


def _check_path(path: Path, create: bool) -> None:
    if path.is_dir():
        raise StoreError(f"{path} is a folder, not a database file: pass --db with a file name")
    if path.exists():
        if not path.is_file():
            raise StoreError(f"{path} is not a regular file: pass --db with a database file")
        if not os.access(path, os.R_OK):
            raise StoreError(f"cannot read database {path}: permission denied")
        return
    if not create:
        raise StoreError(f"no database at {path}: record a session first (botproxy record) or pass --db")
    folder = path.parent
    if not folder.is_dir():
        raise StoreError(f"cannot create database {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(f"cannot create database {path}: folder {folder} is not writable")
    try:  # owner-only from the first byte: the database holds traffic (SQLite gives -wal/-shm the same mode)
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreError(f"cannot create database {path}: {exc.strerror or exc}") from exc


def _recognise(db: sqlite_utils.Database, path: Path, create: bool) -> bool:
    """True for an empty file (ours to fill when `create`); raise StoreError for a file that is not ours."""
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    version = db.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in db.execute("select name from sqlite_master where type = 'table'")}
    if app_id == 0 and version == 0 and not tables:
        if not create:
            raise StoreError(f"{path} holds no botproxy data yet: record a session first (botproxy record)")
        return True
    if app_id == APPLICATION_ID or (app_id == 0 and _looks_like_ours(db, tables)):
        _refuse_newer(db, version)
        return False
    raise StoreError(
        f"{path} is another application's SQLite file, not a botproxy database: botproxy leaves it alone;"
        " pass --db with a new file name"
    )


def _looks_like_ours(db: sqlite_utils.Database, tables: set[str]) -> bool:
    """A database of a botproxy from before `application_id` was set."""
    if not _OUR_TABLES <= tables:
        return False
    columns = {r[1] for r in db.execute("PRAGMA table_info(sessions)")}
    return _OUR_SESSION_COLUMNS <= columns


def _wait_for_write_lock(db: sqlite_utils.Database) -> None:
    """Take and release the write lock: waits for another writer up to the busy timeout, fails on a
    read-only file or folder."""
    db.execute("BEGIN IMMEDIATE")
    db.execute("ROLLBACK")


def describe_sqlite_error(path: str | os.PathLike[str], exc: sqlite3.Error) -> str:
    """One line for an sqlite failure on the database at `path`: what is wrong and what to do."""
    text = str(exc)
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        return (
            f"database {path} is locked by another process (waited {lock_timeout():g} s): close the program"
            " holding it or pass another --db (BOTPROXY_LOCK_TIMEOUT sets the wait)"
        )
    if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        return f"cannot write to database {path} ({text}): check the permissions of the file and its folder"
    if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        return f"{path} is damaged or not a botproxy database ({text}): pass --db with another file"
    if "disk" in lowered and "full" in lowered:
        return f"cannot write to database {path}: the disk is full"
    return f"cannot use database {path}: {text}"


# -- writing rows so that nothing is dropped uncounted ----------------------------------------

Rows = dict[str, list[dict[str, Any]]]  # table -> rows, in order

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
            written, escaped, lost = self._transaction(rows)
        except Exception as exc:  # is_transient: _transaction isolates everything else
            self._failed(exc)
            return False
        self.written += written
        self.escaped += escaped
        self.lost.update(lost)
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
        return (
            f"{self.lost['exchanges']} exchanges and {sum(self.lost.values()) - self.lost['exchanges']} other"
            " records could not be stored"
        )

    # -- inside -----------------------------------------------------------------------------

    def _transaction(self, rows: Rows) -> tuple[int, int, Counter[str]]:
        conn = self.db.conn
        lost: Counter[str] = Counter()
        escaped = 0
        conn.execute("BEGIN IMMEDIATE")  # the write lock first: a held lock fails here, after the busy timeout
        try:
            try:
                conn.execute("SAVEPOINT batch")
                insert_rows(self.db, rows)
                conn.execute("RELEASE batch")
            except Exception as exc:
                if is_transient(exc):
                    raise
                conn.execute("ROLLBACK TO batch")
                conn.execute("RELEASE batch")
                escaped = self._row_by_row(rows, lost)
            conn.commit()
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.rollback()
            raise
        return sum(len(items) for items in rows.values()) - sum(lost.values()), escaped, lost

    def _row_by_row(self, rows: Rows, lost: Counter[str]) -> int:
        """Each row in its own savepoint, so a bad one costs only itself; returns how many were escaped."""
        conn, escaped = self.db.conn, 0
        for table, items in rows.items():
            for row in items:
                conn.execute("SAVEPOINT one")
                try:
                    try:
                        insert_rows(self.db, {table: [row]})
                    except UnicodeEncodeError:
                        fixed = storable(row)
                        if fixed is None:
                            raise
                        conn.execute("ROLLBACK TO one")
                        insert_rows(self.db, {table: [fixed]})
                        escaped += 1
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    conn.execute("ROLLBACK TO one")
                    lost[table] += 1
                    log.error("botproxy: could not store a row of %s (%r); the rest of its batch is stored", table, exc)
                conn.execute("RELEASE one")
        return escaped

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

    def submit(self, job: Callable[[], list[tuple[str, dict[str, Any]]]]) -> None:
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
                for job_table, row in self._run_job(item):
                    rows.setdefault(job_table, []).append(row)
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

    @staticmethod
    def _run_job(job: Callable[[], list[tuple[str, dict[str, Any]]]]) -> list[tuple[str, dict[str, Any]]]:
        try:
            return job()
        except Exception:  # one bad job must not cost the rows of the others in its batch
            log.exception("botproxy: a recording job failed")
            return []


def create_session(db: sqlite_utils.Database, row: dict[str, Any]) -> int:
    """Insert a new session row; its name must be new in this database."""
    if db["sessions"].count_where("name = ?", [row["name"]]):
        raise StoreError(f"a session named {row['name']!r} already exists in {db_path(db)}; choose another --session")
    return int(db.table("sessions").insert(row).last_pk or 0)


def free_session_name(db: sqlite_utils.Database, name: str) -> str:
    """`name`, or the first of `name-2`, `name-3`, ... that no session of the database has yet."""
    taken = {row["name"] for row in db.query("select name from sessions where name like ?", [f"{name}%"])}
    return next(candidate for n in itertools.count(1) if (candidate := name if n == 1 else f"{name}-{n}") not in taken)


def update_session(path: str | os.PathLike[str], session_id: int, fields: dict[str, Any]) -> None:
    """Set columns of a session row from a connection of its own (beside a writer that owns another)."""
    db = open_db(path)
    try:
        with db.conn:
            db.table("sessions").update(session_id, fields)
    except sqlite3.Error as exc:
        raise StoreError(describe_sqlite_error(path, exc)) from exc
    finally:
        db.conn.close()


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


# -- reading -----------------------------------------------------------------------------------

SESSION_FIELDS = (
    "id",
    "name",
    "started_at",
    "ended_at",
    "source",
    "bot_url",
    "listen",
    "forward_listen",
    "capture_mode",
    "botproxy_version",
    "error_count",
    "exchanges_not_stored",
)


def session_summary(row: dict[str, Any]) -> dict[str, Any]:
    """A `sessions` row as `show --json` and `replay --json` print it."""
    return {key: row.get(key) for key in SESSION_FIELDS}


def stored_counts(db: sqlite_utils.Database, session_id: int) -> dict[str, int]:
    """What the database really holds of a session (the closing summary says this, not what was seen)."""
    row = db.execute(
        """select (select count(*) from exchanges where session_id = :s),
                  (select count(*) from activities where session_id = :s),
                  (select count(distinct conversation_id) from activities where session_id = :s),
                  (select count(*) from errors where session_id = :s)""",
        {"s": session_id},
    ).fetchone()
    return {"exchanges": row[0], "activities": row[1], "conversations": row[2], "error_rows": row[3]}


SOURCES = ("record", "import", "replay")  # sessions.source: how a session's traffic was made


def list_sessions(db: sqlite_utils.Database, source: str | None = None) -> list[dict[str, Any]]:
    """Every session (or those of one `source`), with their counts, oldest first."""
    where = "where coalesce(s.source, 'record') = ?" if source else ""
    sql = f"""
        select s.*,
          (select count(*) from exchanges e where e.session_id = s.id) as exchange_count,
          (select count(*) from activities a where a.session_id = s.id) as activity_count,
          (select count(distinct conversation_id) from activities a where a.session_id = s.id) as conversation_count
        from sessions s {where} order by s.id
    """
    return [dict(r) for r in db.query(sql, [source] if source else [])]


def resolve_session(db: sqlite_utils.Database, ref: str) -> dict[str, Any]:
    """A session by name, by id, or `latest`: the latest recorded or imported one (a replay's own
    sessions are results, not what a user means by the session they just made)."""
    if ref == "latest":
        rows = list(db.query(
            "select * from sessions where coalesce(source, 'record') != 'replay' order by id desc limit 1"))
    else:
        rows = list(db.query("select * from sessions where name = ?", [ref]))
        if not rows and ref.isdigit():
            rows = list(db.query("select * from sessions where id = ?", [int(ref)]))
    if not rows:
        names = [r["name"] for r in db.query("select name from sessions order by id desc limit 5")]
        hint = f"; recent sessions: {', '.join(names)}" if names else "; the database has no sessions yet"
        listing = command_hint(db_path(db), "sessions")
        raise SessionNotFound(f"no session {ref!r} in {db_path(db)}{hint} (list them with {listing})")
    return dict(rows[0])


ACTIVITY_COLUMNS = (
    "seq",
    "event",
    "exchange_seq",
    "direction",
    "source",
    "method",
    "route",
    "status",
    "type",
    "name",
    "text",
    "conversation_id",
    "activity_id",
    "url_conversation_id",
    "url_activity_id",
    "reply_to_id",
    "from_id",
    "recipient_id",
    "channel_id",
    "service_url",
    "locale",
    "delivery_mode",
    "turn_seq",
    "turn_ambiguous",
    "target_seq",
    "observed_at",
    "watermark",
)


def activity_record(row: dict[str, Any]) -> dict[str, Any]:
    """A stored activity row as the dict later tools key on (`show --json`)."""
    record = {name: row.get(name) for name in ACTIVITY_COLUMNS}
    record["body"] = json.loads(row["body"]) if row.get("body") else None
    return record


def iter_activities(db: sqlite_utils.Database, session_id: int) -> Iterator[dict[str, Any]]:
    """Activities of a session in seq order, streamed (no list held in memory)."""
    sql = "select * from activities where session_id = ? order by seq"
    for row in db.query(sql, [session_id]):
        yield activity_record(row)


def turn_numbers(db: sqlite_utils.Database, session_id: int) -> dict[int, int]:
    """Inbound seq -> its turn's number in its conversation (`turns.turn_numbers`), from the index alone."""
    from .turns import turn_numbers as number

    sql = "select seq, direction, conversation_id from activities where session_id = ? and direction = 'to_bot'"
    return number(dict(r) for r in db.query(sql + " order by seq", [session_id]))


def iter_exchanges(db: sqlite_utils.Database, session_id: int, order: str = "seq") -> Iterator[dict[str, Any]]:
    assert order in ("seq", "closed")
    yield from db.query(f"select * from exchanges where session_id = ? order by {order}", [session_id])


def now() -> float:
    return time.time()
