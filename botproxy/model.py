"""The vocabulary every stage shares: directions, legs, listeners, sources, severities, the table rows,
and the one UTC timestamp format.

The enums are `StrEnum`s: a member *is* its string (`Direction.TO_BOT == "to_bot"`), so rows, JSON and
SQL keep plain text, and code that spells a literal still compares equal. The row types are the columns
of the SQLite tables (`store`'s migrations); `tests/test_model.py` keeps the two in step.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any, TypedDict


class Direction(StrEnum):
    """Which way an activity went (`activities.direction`)."""

    TO_BOT = "to_bot"  # channel -> bot (inbound)
    FROM_BOT = "from_bot"  # bot -> connector (outbound), or in the bot's answer to an inbound POST
    FROM_CLIENT = "from_client"  # what a Direct Line client posts
    TO_CLIENT = "to_client"  # what Direct Line delivers to a client (GET ActivitySet, stream frame)


class Leg(StrEnum):
    """Which part of the conversation an exchange was (`exchanges.leg`)."""

    INBOUND = "inbound"  # channel -> bot
    OUTBOUND = "outbound"  # bot -> connector
    CLIENT = "client"  # Direct Line client <-> Direct Line
    OTHER = "other"


class Listener(StrEnum):
    """Which of the recorder's listeners an exchange came through (`exchanges.listener`)."""

    REVERSE = "reverse"  # in front of the bot
    FORWARD = "forward"  # the bot's HTTP(S)_PROXY
    SVC = "svc"  # a rewritten serviceUrl (/_botproxy/svc/<key>/)
    DIRECTLINE = "directline"  # in front of the Direct Line host


class Source(StrEnum):
    """How a session came to be (`sessions.source`)."""

    RECORD = "record"
    IMPORT = "import"
    REPLAY = "replay"


class Severity(StrEnum):
    """How loud a finding is (`findings.severity`), most severe first."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


SEVERITIES: tuple[str, ...] = tuple(Severity)  # ("error", "warning", "info")


def utc_now() -> str:
    """Now, as botproxy writes every timestamp: ISO 8601, UTC, milliseconds, `Z` (`2026-12-03T05:40:00.123Z`)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- rows: one TypedDict per table, its columns as the migrations leave them -------------------------

# What an observer of the recorder (the live checks, the console) hands back and the store writes: (table, row).
Row = tuple[str, dict[str, Any]]


class SessionRow(TypedDict, total=False):
    id: int
    name: str
    started_at: str
    ended_at: str
    source: str  # Source
    bot_url: str
    listen: str
    forward_listen: str
    capture_mode: str
    botproxy_version: str
    error_count: int
    notes: str
    exchanges_not_stored: int


class ExchangeRow(TypedDict, total=False):
    session_id: int
    seq: int  # order of observation within the session
    opened: int  # event number when the request was seen
    closed: int  # event number when the response (or error) was seen
    started_at: float
    ended_at: float
    duration_ms: float
    leg: str  # Leg
    listener: str  # Listener
    method: str
    url: str
    route: str
    conversation_id: str
    url_activity_id: str
    status: int
    request_headers: str
    request_body: str
    request_body_raw: bytes
    request_malformed: int
    response_headers: str
    response_body: str
    response_body_raw: bytes
    response_malformed: int
    rewritten: int
    error: str
    error_code: str
    odd_text: str


class ActivityRow(TypedDict, total=False):
    session_id: int
    seq: int
    event: int
    exchange_seq: int
    direction: str  # Direction
    source: str  # request, response (the body of the HTTP response), stream
    method: str
    route: str
    status: int
    type: str
    name: str
    text: str
    conversation_id: str
    activity_id: str
    url_conversation_id: str
    url_activity_id: str
    reply_to_id: str
    from_id: str
    recipient_id: str
    channel_id: str
    service_url: str
    locale: str
    delivery_mode: str
    turn_seq: int
    target_seq: int
    observed_at: float
    body: str
    watermark: str
    turn_ambiguous: int
    odd_text: str


class ErrorRow(TypedDict, total=False):
    session_id: int
    at: float
    stage: str
    message: str
    exchange_seq: int
    odd_text: str


class FindingRow(TypedDict, total=False):
    session_id: int
    seq: int  # the activity that broke the rule
    rule: str
    name: str
    severity: str  # Severity
    conversation_id: str
    message: str
    details: str
    odd_text: str


class ReplayRunRow(TypedDict, total=False):
    id: int
    session_id: int
    started_at: str
    ended_at: str
    candidate_url: str
    baseline_url: str
    candidate_session_id: int
    baseline_session_id: int
    concurrency: int
    options: str
    ignore_paths: str
    noise_paths: str
    summary: str
    status: str  # running, passed, regressed, failed
    error: str
    parent_id: int  # the corpus run this session's run belongs to
    candidate_label: str
    baseline_label: str
    shard: str
    shard_group: str
    uid: str  # the same run in every database it was copied to


class ReplayTurnRow(TypedDict, total=False):
    run_id: int
    conversation_id: str
    idx: int
    inbound_seq: int
    candidate_seq: int
    baseline_seq: int
    inbound_text: str
    status: str  # same, changed, error
    regressed: int
    duration_ms: float
    recorded: str
    replayed: str
    differences: str
    noise: str
    noise_paths: str
    new_findings: str
    error: str


ROWS: dict[str, type] = {
    "sessions": SessionRow,
    "exchanges": ExchangeRow,
    "activities": ActivityRow,
    "errors": ErrorRow,
    "findings": FindingRow,
    "replay_runs": ReplayRunRow,
    "replay_turns": ReplayTurnRow,
}
