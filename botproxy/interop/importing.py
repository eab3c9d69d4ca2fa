"""`botproxy import`: files in, one new session out, in one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

from .. import store
from ..errors import StoreError, UsageError
from ..recording import RequestSeen, ResponseSeen, Row, SessionRecorder, WebSocketSeen
from ..redact import Redactor
from ..session import session_row, utc_now
from . import transcript

Event = RequestSeen | ResponseSeen | WebSocketSeen


def read_file(path: Path) -> tuple[str, Any]:
    """(kind, parsed content) of one file; only `.transcript` files so far."""
    if not path.is_file():
        raise UsageError(f"cannot import {path}: no such file")
    try:
        data = transcript.load_json(path)
        transcript.activity_list(data)
    except transcript.NotATranscript as exc:
        raise UsageError(f"cannot import {path}: not a .transcript file ({exc})") from None
    return "transcript", data


def import_files(db_path: str, paths: Iterable[str | Path], name: str | None = None) -> dict[str, Any]:
    """Import files into one new session; returns the session summary. Nothing is written on failure."""
    files = [Path(p) for p in paths]
    if not files:
        raise UsageError("nothing to import: give one or more files")
    transcripts: list[tuple[str, Any]] = []
    kinds: list[str] = []
    for path in files:
        kind, data = read_file(path)
        kinds.append(kind)
        transcripts.append((path.name, data))
    parsed = transcript.read(transcripts) if transcripts else None
    events: list[Event] = list(transcript.events(parsed)) if parsed else []
    # A transcript does not say how the bot answered the channel's POST (200? 201?) unless the answer
    # carried something (an invoke response, expected replies): those statuses are left unknown.
    guessed = {
        n
        for n, e in enumerate((e for e in events if isinstance(e, RequestSeen)), 1)
        if e.listener == "reverse" and transcript.status_unknown(e.content)
    }
    notes = "imported from " + ", ".join(str(p) for p in files)
    if parsed is not None and parsed.placeholder_service_url:
        notes += f"; serviceUrl missing in the transcript, {transcript.PLACEHOLDER_SERVICE_URL} stands in for it"
    capture = "+".join(sorted(set(kinds)))
    session_name = name or f"import-{files[0].stem}-{utc_now()[:19].replace(':', '').replace('-', '')}"
    return write_session(db_path, session_name, events, unknown_status=guessed, capture_mode=capture, notes=notes)


def write_session(
    db_path: str, name: str, events: list[Event], unknown_status: AbstractSet[int] = frozenset(), **fields: Any
) -> dict[str, Any]:
    """Run the events through a recorder with the live checks and write the session in one transaction.

    `unknown_status`: exchange seqs whose inbound activity's HTTP status the source did not know."""
    from ..checks import Engine, LiveChecks  # the checks read what recording produces, never the reverse

    db = store.open_db(db_path, create=True)
    try:
        if db["sessions"].count_where("name = ?", [name]):
            raise StoreError(
                f"a session named {name!r} already exists in {store.db_path(db)}; choose another --session"
            )
        row = session_row(name, {**fields, "source": "import"})
        with db.conn:  # one transaction: the session row, every exchange, activity and finding
            columns = ", ".join(f"[{c}]" for c in row)
            cursor = db.conn.execute(
                f"insert into sessions ({columns}) values ({', '.join('?' * len(row))})", list(row.values())
            )
            session_id = int(cursor.lastrowid or 0)
            checks = LiveChecks(Engine(), session_id)
            recorder = SessionRecorder(session_id, Redactor(), [checks])
            rows: list[Row] = []
            for event in events:
                rows += recorder.handle(event)
            rows += recorder.finish()
            grouped: dict[str, list[dict[str, Any]]] = {}
            for table, item in rows:
                if table == "activities" and item["direction"] == "to_bot" and item["exchange_seq"] in unknown_status:
                    item["status"] = None
                grouped.setdefault(table, []).append(item)
            store.insert_rows(db, grouped)
            db.conn.execute(
                "update sessions set ended_at = ?, error_count = ? where id = ?",
                [utc_now(), recorder.errors, session_id],
            )
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot write to {db_path}: {exc}") from exc
    finally:
        db.conn.close()
    from ..session import summarize

    return summarize(session_id, name, db_path, recorder, checks)
