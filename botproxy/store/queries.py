"""Reading: sessions (listed, resolved by name, id or `latest`, their stored counts, a free name),
activities and exchanges in order."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
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


def iter_exchanges(
    db: sqlite_utils.Database, session_id: int, order: str = "seq", columns: Sequence[str] = ("*",)
) -> Iterator[dict[str, Any]]:
    """A session's exchanges (all their columns, or `columns`) in `order`, streamed."""
    assert order in ("seq", "closed")
    sql = f"select {', '.join(columns)} from exchanges where session_id = ? order by {order}"
    yield from db.query(sql, [session_id])


def free_session_name(db: sqlite_utils.Database, name: str) -> str:
    """`name`, or the first of `name-2`, `name-3`, ... that no session of the database has yet."""
    taken = {row["name"] for row in db.query("select name from sessions where name like ?", [f"{name}%"])}
    return next(candidate for n in itertools.count(1) if (candidate := name if n == 1 else f"{name}-{n}") not in taken)


def recorded_sessions(db: sqlite_utils.Database) -> Iterator[dict[str, Any]]:
    """The recorded and imported sessions (not a replay's own), oldest first."""
    sql = "select * from sessions where coalesce(source, 'record') != 'replay' order by id"
    return (dict(r) for r in db.query(sql))


def replay_sessions(db: sqlite_utils.Database) -> Iterator[dict[str, Any]]:
    """The sessions replays recorded of their own traffic, oldest first."""
    return (dict(r) for r in db.query("select * from sessions where source = 'replay' order by id"))


def session_names(db: sqlite_utils.Database) -> dict[int, str]:
    """Session id -> name, for every session."""
    return {r["id"]: r["name"] for r in db.query("select id, name from sessions")}


def same_session_id(db: sqlite_utils.Database, name: str, source: str, started_at: str | None) -> int | None:
    """The id of the session with this name, source and start time (a copy of one is that session)."""
    sql = "select id from sessions where name = ? and coalesce(source, 'record') = ? and started_at is ?"
    found = list(db.query(sql, [name, source, started_at]))
    return int(found[0]["id"]) if found else None


def rows_where(db: sqlite_utils.Database, table: str, column: str, value: Any) -> Iterator[dict[str, Any]]:
    """Every row of `table` whose `column` is `value`, in the order SQLite finds them (for copying rows)."""
    return (dict(r) for r in db.query(f"select * from [{table}] where [{column}] = ?", [value]))


def activities_by_seq(db: sqlite_utils.Database, session_id: int, seqs: set[int]) -> dict[int, dict[str, Any]]:
    """Some activities of a session (`activity_record`s), by seq."""
    found: dict[int, dict[str, Any]] = {}
    ordered = sorted(seqs)
    for start in range(0, len(ordered), 500):
        chunk = ordered[start : start + 500]
        sql = f"select * from activities where session_id = ? and seq in ({','.join('?' * len(chunk))})"
        for row in db.query(sql, [session_id, *chunk]):
            found[row["seq"]] = activity_record(row)
    return found


def activities_in_event_order(db: sqlite_utils.Database, session_id: int) -> Iterator[dict[str, Any]]:
    """A session's stored rows of `activities` in the order the recorder saw them (event, then seq), body
    decoded; a plain cursor, no sqlite-utils row per row (the offline checks read every activity)."""
    cursor = db.conn.execute("select * from activities where session_id = ? order by event, seq", [session_id])
    names = [d[0] for d in cursor.description]
    loads = json.loads
    for values in cursor:
        row = dict(zip(names, values, strict=True))
        row["body"] = loads(row["body"]) if row["body"] else None
        yield row


def closed_exchanges(db: sqlite_utils.Database, session_id: int, columns: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Some columns of a session's answered exchanges, in the order they were answered (closed)."""
    cursor = db.conn.execute(
        f"select {', '.join(columns)} from exchanges where session_id = ? and closed is not null order by closed",
        [session_id],
    )
    for values in cursor:
        yield dict(zip(columns, values, strict=True))


def iter_findings(db: sqlite_utils.Database, session_id: int) -> Iterator[dict[str, Any]]:
    """A session's stored findings, in the order they were written."""
    sql = "select * from findings where session_id = ? order by rowid"
    return (dict(row) for row in db.query(sql, [session_id]))


def inbound_conversations(db: sqlite_utils.Database, session_id: int) -> list[dict[str, Any]]:
    """A session's conversations with an inbound message (`conversation_id`, `first_seq`, `turns`), in order
    of the first one, without reading a body."""
    sql = """select coalesce(conversation_id, '') as conversation_id, min(seq) as first_seq, count(*) as turns
             from activities where session_id = ? and direction = 'to_bot' and route = 'bot_messages'
             group by 1 order by first_seq"""
    return [dict(r) for r in db.query(sql, [session_id])]


# -- replay runs -----------------------------------------------------------------------------------


def iter_runs(db: sqlite_utils.Database) -> Iterator[dict[str, Any]]:
    """Every replay run, oldest first."""
    return (dict(r) for r in db.query("select * from replay_runs order by id"))


def replay_run(db: sqlite_utils.Database, run_id: int) -> dict[str, Any] | None:
    """A replay run's row, or None."""
    rows = list(db.query("select * from replay_runs where id = ?", [run_id]))
    return dict(rows[0]) if rows else None


def child_runs(db: sqlite_utils.Database, run_id: int) -> list[dict[str, Any]]:
    """The session runs of a corpus run, in order."""
    return [dict(r) for r in db.query("select * from replay_runs where parent_id = ? order by id", [run_id])]


def latest_run_id(db: sqlite_utils.Database) -> int | None:
    """The newest run that is not part of a corpus run (a session's or a corpus run's own), or None."""
    row = db.execute("select max(id) from replay_runs where parent_id is null").fetchone()
    return None if not row or row[0] is None else int(row[0])


def runs_with_uid(db: sqlite_utils.Database, uid: str) -> list[dict[str, Any]]:
    """The runs whose `uid` (a comma list once shards are merged) holds `uid`."""
    rows = db.query("select * from replay_runs where instr(uid, ?) > 0", [uid])
    return [dict(r) for r in rows if uid in r["uid"].split(",")]


def runs_without_uid(
    db: sqlite_utils.Database, started_at: str | None, candidate_url: str | None, status: str | None
) -> list[dict[str, Any]]:
    """Runs from before uids with this start, candidate and status."""
    sql = "select * from replay_runs where uid is null and started_at = ? and candidate_url is ? and status is ?"
    return [dict(r) for r in db.query(sql, [started_at, candidate_url, status])]


def corpus_runs_of_group(db: sqlite_utils.Database, shard_group: str) -> list[dict[str, Any]]:
    """`id` and `shard` of the corpus runs of one sharded run (`shard_group`)."""
    sql = "select id, shard from replay_runs where session_id is null and shard_group = ?"
    return [dict(r) for r in db.query(sql, [shard_group])]
