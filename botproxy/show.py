"""Reading a session back: text grouped by conversation and turn, or one JSON object."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TextIO

import sqlite_utils

from . import store
from .console import ARROWS, activity_excerpt


def session_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row.get(key) for key in store.SESSION_FIELDS}


def write_json(db: sqlite_utils.Database, session: dict[str, Any], out: TextIO) -> None:
    """`{"session": {...}, "activities": [...]}`, streamed so a large session needs no memory."""
    out.write('{"session": ' + json.dumps(session_summary(session)) + ', "activities": [')
    for n, activity in enumerate(store.iter_activities(db, session["id"])):
        out.write(("," if n else "") + "\n  " + json.dumps(activity, ensure_ascii=False))
    out.write("\n]}\n")


def text_lines(db: sqlite_utils.Database, session: dict[str, Any]) -> Iterator[str]:
    """Conversations in order of first appearance; in each, turns (inbound + what answered it) and
    proactive activities, in the order they were observed."""
    yield (
        f"session {session['name']!r} (id {session['id']}) started {session['started_at']}"
        f"{' · bot ' + session['bot_url'] if session.get('bot_url') else ''}"
    )
    conversations: dict[str | None, list[dict[str, Any]]] = {}
    for activity in store.iter_activities(db, session["id"]):
        conversations.setdefault(activity["conversation_id"], []).append(activity)
    if not conversations:
        yield "  (no activities recorded)"
    for conversation, activities in conversations.items():
        yield ""
        yield f"conversation {conversation or '(none)'}"
        yield from _conversation_lines(activities)


def _conversation_lines(activities: list[dict[str, Any]]) -> Iterator[str]:
    by_turn: dict[int, list[dict[str, Any]]] = {}
    bot_side: dict[str, int] = {}  # activity id -> seq on the bot leg, to link the client's view to it
    for activity in activities:
        if activity["turn_seq"] is not None:
            by_turn.setdefault(activity["turn_seq"], []).append(activity)
        if activity["direction"] in ("to_bot", "from_bot") and activity["activity_id"]:
            bot_side.setdefault(activity["activity_id"], activity["seq"])
    for activity in activities:
        if activity["direction"] == "to_bot":
            yield f"  turn {activity['seq']}"
            yield "    " + activity_line(activity)
            for reply in by_turn.get(activity["seq"], ()):
                yield "      " + activity_line(reply)
        elif activity["direction"] in ("from_client", "to_client"):
            link = bot_side.get(activity["activity_id"] or "")
            yield "  client  " + activity_line(activity) + (f" (bot side #{link})" if link else "")
        elif activity["turn_seq"] is None:
            yield "  proactive"
            yield "      " + activity_line(activity)


def activity_line(activity: dict[str, Any]) -> str:
    arrow = ARROWS.get(activity["direction"], "·")
    kind = activity["type"] or ""
    route = activity["route"]
    if route in ("update_activity", "delete_activity"):
        kind = f"{route.split('_')[0]} {activity['activity_id']}".strip()
    text = activity_excerpt(activity, 60)
    parts = [f"#{activity['seq']:<4}", arrow, f"{kind:<14}"]
    if text:
        parts.append(text)
    parts.append(f"[{route} {activity['status'] if activity['status'] is not None else '---'}]")
    return " ".join(parts)
