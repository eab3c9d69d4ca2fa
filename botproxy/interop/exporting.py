"""`botproxy export`: a stored session as `.transcript` files (or HAR)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from .. import store
from ..errors import OutputError, UsageError
from . import har, transcript

FORMATS = ("transcript", "har")


def export_session(db_path: str, session_ref: str, fmt: str, out: str | None = None) -> list[str]:
    """Write the session in `fmt`; returns the paths written (`-` for stdout)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    db = store.open_db(db_path)
    try:
        session = store.resolve_session(db, session_ref)
        activities = list(store.iter_activities(db, session["id"]))
        exchanges = list(store.iter_exchanges(db, session["id"])) if fmt == "har" else []
    finally:
        db.conn.close()
    if fmt == "har":
        return _write_har(har.to_har(exchanges, activities), out)
    return _write_transcripts(session, activities, out)


def _write_har(document: dict[str, Any], out: str | None) -> list[str]:
    if out is None:
        sys.stdout.write(_dumps(document))
        return ["-"]
    path = Path(out)
    if path.is_dir() or out.endswith(("/", "\\")):
        raise UsageError(f"--out {out} is a folder: a HAR export is one file, give its name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_dumps(document), encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return [str(path)]


def _write_transcripts(session: dict[str, Any], activities: list[dict[str, Any]], out: str | None) -> list[str]:
    by_conversation: dict[str, list[dict[str, Any]]] = {}
    # What a turn sent to a conversation it created (a Teams thread) is written in that turn's file,
    # where the import reads it back as the CreateConversation that started it (transcript.events).
    inbound = {a["seq"]: a["conversation_id"] for a in activities if a["direction"] == "to_bot"}
    for activity in activities:
        if activity["direction"] in ("to_bot", "from_bot"):
            home = inbound.get(activity["turn_seq"], activity["conversation_id"]) \
                if activity["direction"] == "from_bot" else activity["conversation_id"]
            by_conversation.setdefault(home or "", []).append(activity)
    documents = {cid: transcript.to_transcript(acts) for cid, acts in by_conversation.items()}
    documents = {cid: doc for cid, doc in documents.items() if doc}
    if not documents:
        raise UsageError(f"session {session['name']!r} has no activities to or from the bot to export")
    if out is None:
        if len(documents) > 1:
            raise UsageError(
                f"session {session['name']!r} has {len(documents)} conversations: give --out FOLDER for one"
                " .transcript file each"
            )
        sys.stdout.write(_dumps(next(iter(documents.values()))))
        return ["-"]
    target = Path(out)
    if len(documents) == 1 and not target.is_dir() and not out.endswith(("/", "\\")):
        paths = {next(iter(documents)): target}
    else:
        paths = {cid: target / f"{_file_name(cid)}.transcript" for cid in documents}
    written = []
    for cid, path in paths.items():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_dumps(documents[cid]), encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
        written.append(str(path))
    return written


def _dumps(document: Any) -> str:
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def _file_name(conversation_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", conversation_id).strip("._") or "conversation"
