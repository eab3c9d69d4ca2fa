"""The HTML report of a corpus run: the run's verdict and a table of its sessions, then each session's
replay report (report.py's `replay.html.j2`, its page content) one after the other, in one file.

Each session's part is rendered by the one-session template itself, so both reports show a session the
same way; its element ids (and the links to them) are prefixed with the session's anchor, so that two
sessions' turns never share an id on the page.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import sqlite_utils
from markupsafe import Markup

from .. import __version__, store
from ..errors import StoreError
from ..replay.corpus import corpus_run_json
from . import report

_MAIN = re.compile(r"<main>(.*)</main>", re.S)
# Attributes of our own markup only: a value from the traffic is escaped (`"` is &#34;), never matched.
_ID = re.compile(r'(\s(?:id|for|aria-controls|aria-labelledby)=")([^"]*)(")')
_LINK = re.compile(r'(\shref="#)([^"]*)(")')


def corpus_view(db: sqlite_utils.Database, run_id: int) -> dict[str, Any]:
    run = store.replay_run(db, run_id)
    if run is None:
        raise StoreError(f"no replay run {run_id} in {store.db_path(db)} (botproxy replay prints the run's number)")
    summary = json.loads(run.get("summary") or "{}")
    children = store.child_runs(db, run_id)
    names = store.session_names(db)
    sessions, regressed = [], []
    for number, child in enumerate(children, 1):
        anchor = f"s{number}"
        view = report.replay_view(db, child["id"])
        name = names.get(child["session_id"], "(deleted)")
        # the run's regressed turns first, each linked to its turn in its session's part (ids prefixed below)
        regressed += [{**turn, "anchor": f"{anchor}-{turn['anchor']}", "session": name}
                      for turn in view["regressed_turns"]]
        sessions.append({
            "anchor": anchor,
            "name": name,
            "run_id": child["id"],
            "status": child["status"],
            "shard": child.get("shard"),
            "summary": {k: v for k, v in json.loads(child.get("summary") or "{}").items() if k != "proactive"},
            "body": Markup(_prefixed(_session_body(view), anchor)),
        })
    named = {name: run.get(name) for name in ("candidate_label", "baseline_label", "shard", "error")}
    return {"run": {**corpus_run_json(db, run_id), **named}, "summary": summary, "sessions": sessions,
            "regressed_turns": regressed, "generated_at": report._now()}


def _session_body(view: dict[str, Any]) -> str:
    """What the one-session report of this run (its `report.replay_view`) shows in its <main>."""
    css, script, script_hash = report._assets()
    context = {**view, "css": css, "script": script, "script_hash": script_hash,
               "version": __version__}
    page = report.environment().get_template("replay.html.j2").render(context)
    match = _MAIN.search(page)
    return match.group(1) if match else ""


def _prefixed(html: str, prefix: str) -> str:
    html = _ID.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}{m.group(3)}", html)
    return _LINK.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}{m.group(3)}", html)


def render_corpus(db: sqlite_utils.Database, run_id: int, out_path: str | os.PathLike[str]) -> Path:
    """Write the HTML report of a corpus run (`replay_runs.id` of a run with several sessions)."""
    return report._write("corpus.html.j2", corpus_view(db, run_id), out_path)
