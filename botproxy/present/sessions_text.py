"""The sessions of a database as text for people: `botproxy sessions`' table (or what to do when there is
none) and `botproxy import`'s one line about the session it made."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..store import command_hint
from .console import findings_words, table
from .visible import visible
from .words import counted

HEADER = ["id", "name", "source", "started", "exch", "acts", "convs", "errors", "not stored"]


def sessions_lines(rows: Sequence[Mapping[str, Any]], db_path: str, source: str | None = None) -> list[str]:
    """One line a session (store.list_sessions' rows), under a header; one sentence when there is none."""
    if not rows:
        if source:
            return [f"no {source} sessions in {db_path}"]
        return [f"no sessions in {db_path} yet: record one with {command_hint(db_path, 'record', '--bot', 'URL')}"]
    cells = [
        [
            r["id"], visible(r["name"]), r.get("source") or "record", r["started_at"] or "", r["exchange_count"],
            r["activity_count"], r["conversation_count"], r["error_count"] or 0, r.get("exchanges_not_stored") or 0,
        ]
        for r in rows
    ]
    return table(HEADER, cells, right={0, 4, 5, 6, 7, 8})


def imported_line(summary: Mapping[str, Any], db_path: str) -> str:
    """interop.import_files' summary as a line, with the command that shows its findings when it has some."""
    details = f" (details: {command_hint(db_path, 'check', summary['name'])})" if summary["findings"] else ""
    activities = counted(summary["activities"], "activity", "activities")
    conversations = counted(summary["conversations"], "conversation")
    return (
        f"session {summary['name']!r} (id {summary['id']}): {activities}, {conversations},"
        f" findings: {findings_words(summary['findings'])}{details}"
    )
