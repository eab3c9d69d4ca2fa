"""The database's schema: migrations numbered by `PRAGMA user_version`, so a database written by an older
botproxy opens with a newer one, and the refusal of one written by a newer botproxy. `PRAGMA
application_id` marks the file as botproxy's."""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

from ..errors import StoreError
from .files import db_path

ODD_TEXT_TABLES = ("exchanges", "activities", "findings", "errors")  # the tables with an `odd_text` column

# `PRAGMA application_id` of every database botproxy creates ("bpxy"), so another application's SQLite
# file is told apart from ours (https://www.sqlite.org/pragma.html#pragma_application_id). Files made
# before it was set are recognised by the tables of migration 1 (opening.py) and are given it when next opened.
APPLICATION_ID = 0x62707879


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
    refuse_newer(db, version)
    for number in range(version, SCHEMA_VERSION):
        with db.conn:
            MIGRATIONS[number](db)
            db.execute(f"PRAGMA user_version = {number + 1}")
    if db.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")


def refuse_newer(db: sqlite_utils.Database, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{db_path(db)} was written by a newer botproxy (schema {version}, this one knows {SCHEMA_VERSION});"
            " upgrade botproxy"
        )
