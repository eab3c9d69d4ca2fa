"""The engine over a stored session: replays the live event order from SQLite, streaming.

Live, the recorder calls `activity_seen` for request activities at request time and for response-body
activities at response time, then `exchange_done` when the exchange completes. Each stored activity
carries the event number it was seen at (`event`) and each exchange the event number it completed at
(`closed`), so merging activities ordered by (event, seq) with exchanges ordered by `closed` reproduces
that order exactly; at equal event numbers the response activities come first, as they did live. Only
the activities of exchanges still open at that point of the replay are held in memory. Activities of
Direct Line stream frames (source "stream") have an event of their own, after the stream's handshake
exchange completed: live they are only `activity_seen`, so here too (never held for an `exchange_done`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import sqlite_utils

from .. import store
from ..model import Direction
from ..wire import protocol as p
from .config import CheckConfig
from .engine import Engine
from .rules import Finding

_ASSIGNED_LATER = frozenset({*p.SEND_ROUTES, p.CREATE_CONVERSATION})
_EXCHANGE_COLUMNS = (
    "session_id",
    "seq",
    "opened",
    "closed",
    "started_at",
    "ended_at",
    "duration_ms",
    "leg",
    "listener",
    "method",
    "url",
    "route",
    "conversation_id",
    "url_activity_id",
    "status",
    "request_headers",
    "request_body",
    "request_malformed",
    "response_headers",
    "response_body",
    "response_malformed",
    "rewritten",
    "error",
    "error_code",
)


def check_session(
    db: sqlite_utils.Database,
    session_id: int,
    config: CheckConfig | None = None,
    *,
    engine: Engine | None = None,
) -> Iterator[Finding]:
    """The findings of a stored session, in the order the live engine produced them."""
    engine = engine if engine is not None else Engine(config)
    activities = store.activities_in_event_order(db, session_id)
    exchanges = store.closed_exchanges(db, session_id, _EXCHANGE_COLUMNS)
    open_exchanges: dict[int, list[dict[str, Any]]] = {}
    activity = next(activities, None)
    exchange = next(exchanges, None)
    while activity is not None or exchange is not None:
        if activity is not None and (exchange is None or activity["event"] <= exchange["closed"]):
            if activity["source"] != "stream":  # a frame's activities belong to no exchange_done (see above)
                open_exchanges.setdefault(activity["exchange_seq"], []).append(activity)
            yield from engine.activity_seen(_as_seen(activity))
            activity = next(activities, None)
        else:
            assert exchange is not None
            yield from engine.exchange_done(exchange, open_exchanges.pop(exchange["seq"], []))
            exchange = next(exchanges, None)


def _as_seen(activity: dict[str, Any]) -> dict[str, Any]:
    """The activity as the live engine saw it in `activity_seen`. A request's activities are seen before
    the response: no status, and no connector-assigned id (or created conversation) yet. Response-body
    activities are made from the response, status included."""
    if activity["source"] != "request":
        return activity
    seen = dict(activity)
    seen["status"] = None
    if activity["direction"] == Direction.FROM_CLIENT:  # the id Direct Line assigns is filled in at completion
        body = activity["body"] if isinstance(activity["body"], dict) else {}
        seen["activity_id"] = p.str_field(body, "id")
    elif activity["direction"] == Direction.FROM_BOT and activity["route"] in _ASSIGNED_LATER:
        seen["activity_id"] = None
        if activity["route"] == p.CREATE_CONVERSATION:
            body = activity["body"] if isinstance(activity["body"], dict) else {}
            seen["conversation_id"] = p.conversation_id(body) or activity["url_conversation_id"]
    return seen


def store_findings(
    db: sqlite_utils.Database, session_id: int, findings: Iterable[Finding], batch_size: int = 1000
) -> int:
    """Replace a session's findings with `findings` (streamed in batches); returns how many were stored."""
    count = 0

    def rows() -> Iterator[dict[str, Any]]:
        nonlocal count
        for finding in findings:
            count += 1
            yield finding.to_row(session_id)

    store.replace_findings(db, session_id, rows(), batch_size)
    return count


def stored_findings(db: sqlite_utils.Database, session_id: int) -> list[Finding]:
    """A session's findings as stored, in the order they were written."""
    return [Finding.from_row(row) for row in store.iter_findings(db, session_id)]
