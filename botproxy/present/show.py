"""Reading a session back: text grouped by conversation and turn, or one JSON object."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TextIO

import sqlite_utils

from .. import store
from ..turns import TurnGroups, turn_label
from .console import ARROWS, activity_excerpt


def write_json(db: sqlite_utils.Database, session: dict[str, Any], out: TextIO) -> None:
    """`{"session": {...}, "activities": [...]}`, streamed so a large session needs no memory."""
    out.write('{"session": ' + json.dumps(store.session_summary(session)) + ', "activities": [')
    for n, activity in enumerate(store.iter_activities(db, session["id"])):
        out.write(("," if n else "") + "\n  " + json.dumps(activity, ensure_ascii=False))
    out.write("\n]}\n")


def text_lines(db: sqlite_utils.Database, session: dict[str, Any]) -> Iterator[str]:
    """Conversations in order of first appearance; in each, turns (inbound + what answered it) and
    proactive activities, in the order they were observed. Turns are numbered by their position in
    their conversation (`turn_numbers`), the inbound activity's seq beside; what a turn sent to a
    conversation it created is listed under the turn."""
    yield (
        f"session {session['name']!r} (id {session['id']}) started {session['started_at']}"
        f"{' · bot ' + session['bot_url'] if session.get('bot_url') else ''}"
    )
    groups = TurnGroups(store.iter_activities(db, session["id"]))
    if not groups.conversations:
        yield "  (no activities recorded)"
    for conversation, listed in groups.conversations.items():
        yield ""
        yield f"conversation {conversation or '(none)'}"
        yield from _conversation_lines(conversation, listed, groups)


def _conversation_lines(
    conversation: str | None, activities: list[dict[str, Any]], groups: TurnGroups[dict[str, Any]]
) -> Iterator[str]:
    # activity id -> seq on the bot leg, to link the client's view to it: this conversation's own only (a
    # turn's sends to a conversation it created are listed here too, but are not this client's).
    bot_side: dict[str, int] = {}
    for activity in activities:
        own = activity["conversation_id"] == conversation
        if own and activity["direction"] in ("to_bot", "from_bot") and activity["activity_id"]:
            bot_side.setdefault(activity["activity_id"], activity["seq"])
    for activity in activities:
        if activity["direction"] == "to_bot":
            yield f"  {turn_label(groups.numbers.get(activity['seq']), activity['seq'])}"
            yield "    " + activity_line(activity)
            for reply in groups.replies.get(activity["seq"], ()):
                yield "      " + activity_line(reply) + _elsewhere(reply, activity)
        elif activity["direction"] in ("from_client", "to_client"):
            link = bot_side.get(activity["activity_id"] or "")
            yield "  client  " + activity_line(activity) + (f" (bot side #{link})" if link else "")
        elif activity["turn_seq"] is None:
            yield "  proactive"
            yield "      " + activity_line(activity)


def _elsewhere(reply: dict[str, Any], inbound: dict[str, Any]) -> str:
    notes = []
    if reply["conversation_id"] != inbound["conversation_id"]:
        notes.append(f"→ conversation {reply['conversation_id']}")
    if reply.get("turn_ambiguous"):
        notes.append("turn? (several turns were open; no replyToId)")
    return (" " + " · ".join(notes)) if notes else ""


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
