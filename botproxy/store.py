"""The SQLite store: schema and migrations, the writer thread, and read queries (through sqlite-utils).

One writer thread owns the write connection (sqlite3 connections belong to the thread that made them).
The proxy's event loop hands rows to `Writer.put()` and never waits on disk; the writer batches what
has queued up into one transaction. Readers open their own connections; WAL lets them read while a
recording is under way.

Schema changes are migrations numbered by `PRAGMA user_version`, so a database written by an older
botproxy opens with a newer one.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from .errors import SessionNotFound, StoreError

log = logging.getLogger(__name__)

DEFAULT_DB = "botproxy.db"

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


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _migration_1, _migration_2, _migration_3, _migration_4, _migration_5,
]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite_utils.Database) -> None:
    """Bring a database up to SCHEMA_VERSION; refuse one written by a newer botproxy."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{db_path(db)} was written by a newer botproxy (schema {version}, this one knows {SCHEMA_VERSION});"
            " upgrade botproxy"
        )
    for number in range(version, SCHEMA_VERSION):
        with db.conn:
            MIGRATIONS[number](db)
            db.execute(f"PRAGMA user_version = {number + 1}")


def db_path(db: sqlite_utils.Database) -> str:
    row = db.execute("PRAGMA database_list").fetchone()
    return row[2] if row else "database"


# -- opening -----------------------------------------------------------------------------------


def open_db(path: str | os.PathLike[str], *, create: bool = False) -> sqlite_utils.Database:
    """Open (and migrate) a botproxy database, turning every sqlite failure into one-line StoreErrors."""
    path = Path(path)
    if not create and not path.exists():
        raise StoreError(f"no database at {path}: record a session first (botproxy record) or pass --db")
    if create and path.parent and not path.parent.exists():
        raise StoreError(f"cannot create database {path}: folder {path.parent} does not exist")
    try:
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        db = sqlite_utils.Database(conn)
        if not create and db.execute("PRAGMA user_version").fetchone()[0] == 0:
            # Never migrate our tables into somebody else's SQLite file from a read command.
            raise StoreError(f"{path} is an SQLite file but not a botproxy database")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        migrate(db)
        return db
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"cannot use database {path}: {exc} (is it a botproxy database? is the folder writable?)"
        ) from exc


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
    _queue: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    _thread: threading.Thread | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _failure: BaseException | None = None
    written: int = 0

    def start(self) -> int:
        """Open the database and create the session row on the writer thread; returns the session id."""
        self._thread = threading.Thread(target=self._run, name="botproxy-writer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure
        return self.session_id

    def put(self, table: str, row: dict[str, Any]) -> None:
        self._queue.put((table, row))

    def submit(self, job: Callable[[], list[tuple[str, dict[str, Any]]]]) -> None:
        """Run `job()` on the writer thread, in order with everything put before it; store the rows it returns."""
        self._queue.put((_JOB, job))

    def call(self, fn: Callable[[sqlite_utils.Database], None]) -> None:
        """Run `fn(db)` on the writer thread, in order with the rows put before it."""
        self._queue.put((None, fn))

    def close(self, timeout: float = 30.0) -> None:
        """Flush everything queued and close; safe to call twice."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    # -- on the writer thread --

    def _run(self) -> None:
        try:
            db = open_db(self.path, create=True)
            self.session_id = create_session(db, self.session)
        except BaseException as exc:  # reported to start(), on the caller's thread
            self._failure = (
                exc if isinstance(exc, StoreError) else StoreError(f"cannot use database {self.path}: {exc}")
            )
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop(db)
        finally:
            db.conn.close()

    def _loop(self, db: sqlite_utils.Database) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if batch[-1] is _STOP:
                batch.pop()
                stopping = True
            self._write(db, batch)

    def _write(self, db: sqlite_utils.Database, batch: list[Any]) -> None:
        try:
            with db.conn:
                rows: dict[str, list[dict[str, Any]]] = {}
                for table, item in batch:
                    if table is _JOB:
                        for job_table, row in self._run_job(item):
                            rows.setdefault(job_table, []).append(row)
                    elif table is None:
                        self._flush_rows(db, rows)
                        item(db)
                    else:
                        rows.setdefault(table, []).append(item)
                self._flush_rows(db, rows)
        except Exception:  # losing a batch must not kill the writer; say so loudly
            log.exception("botproxy could not write %d records to %s", len(batch), self.path)

    @staticmethod
    def _run_job(job: Callable[[], list[tuple[str, dict[str, Any]]]]) -> list[tuple[str, dict[str, Any]]]:
        try:
            return job()
        except Exception:  # one bad job must not cost the rows of the others in its batch
            log.exception("botproxy: a recording job failed")
            return []

    def _flush_rows(self, db: sqlite_utils.Database, rows: dict[str, list[dict[str, Any]]]) -> None:
        self.written += insert_rows(db, rows)
        rows.clear()


def create_session(db: sqlite_utils.Database, row: dict[str, Any]) -> int:
    """Insert a new session row; its name must be new in this database."""
    if db["sessions"].count_where("name = ?", [row["name"]]):
        raise StoreError(f"a session named {row['name']!r} already exists in {db_path(db)}; choose another --session")
    return int(db.table("sessions").insert(row).last_pk or 0)


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
)


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
        raise SessionNotFound(f"no session {ref!r} in {db_path(db)}{hint} (list them with botproxy sessions)")
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
