"""Reading: sessions (listed, resolved by name, id or `latest`, their stored counts, a free name),
activities and exchanges in order."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import sqlite_utils

from .. import turns
from ..errors import SessionNotFound
from .files import command_hint, db_path

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
    sql = "select seq, direction, conversation_id from activities where session_id = ? and direction = 'to_bot'"
    return turns.turn_numbers(dict(r) for r in db.query(sql + " order by seq", [session_id]))


def iter_exchanges(db: sqlite_utils.Database, session_id: int, order: str = "seq") -> Iterator[dict[str, Any]]:
    assert order in ("seq", "closed")
    yield from db.query(f"select * from exchanges where session_id = ? order by {order}", [session_id])


def free_session_name(db: sqlite_utils.Database, name: str) -> str:
    """`name`, or the first of `name-2`, `name-3`, ... that no session of the database has yet."""
    taken = {row["name"] for row in db.query("select name from sessions where name like ?", [f"{name}%"])}
    return next(candidate for n in itertools.count(1) if (candidate := name if n == 1 else f"{name}-{n}") not in taken)
