"""`botproxy merge OUT.db A.db B.db ...`: the databases of a sharded run's jobs put together as one.

Each shard job starts from a copy of the same corpus database, so every input holds the recorded
sessions again (the same rows under the same names), any run that was in the corpus before, and its
own share: a corpus run (`--shard I/N`), a run per session it replayed, and their replays' own sessions.
What is the same is kept once, what is new is added with new row ids:

- a recorded or imported session with the name, source and start time of one already in OUT is that
  session (its rows are not copied again, the runs that replayed it point to OUT's); one that only
  shares the name (recorded again since) is added as `<name>-2`;
- a run with the `uid` of one already in OUT (copied with the corpus) is that run;
- the corpus runs of the shards of one sharded run (the same `shard_group`: sessions, builds, share
  count, options) become one corpus run whose session runs are all the shards'; its status and
  summary are added up again, and `shard` lists the shares merged (`1/2,2/2`);
- a replay's own session is copied under its run's new number (`<session>-replay-<run>-candidate`).

Rows go through sqlite-utils; each input is added in one transaction, and every input is opened with
`store.open_db` first, so a foreign or damaged file is refused (one line) before OUT is touched.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from .. import store
from ..errors import UsageError
from .corpus import corpus_summary
from .results import _dumps

_SESSION_TABLES = ("exchanges", "activities", "errors", "findings")


@dataclass
class MergeReport:
    """What a merge did, for the command's output."""

    inputs: list[dict[str, Any]] = field(default_factory=list)  # per input: path and counts
    combined: list[dict[str, Any]] = field(default_factory=list)  # corpus runs whose shards were put together


def merge(out_path: str, inputs: list[str]) -> MergeReport:
    if not inputs:
        raise UsageError("name the databases to merge: botproxy merge OUT.db A.db B.db ...")
    sources: list[tuple[str, sqlite_utils.Database]] = []
    try:
        for path in inputs:
            if Path(path).exists() and Path(out_path).exists() and os.path.samefile(path, out_path):
                raise UsageError(f"{path} is the output database itself: name another OUT.db")
            sources.append((path, store.open_db(path)))  # refuses a foreign, damaged or newer file now
        out = store.open_db(out_path, create=True)
        report = MergeReport()
        touched: set[int] = set()
        for path, src in sources:
            with out.conn:
                report.inputs.append({"path": path, **_merge_one(out, src, touched)})
        with out.conn:
            for run_id in sorted(touched):
                report.combined.append(_recount(out, run_id))
        out.conn.close()
    finally:
        for _, src in sources:
            src.conn.close()
    return report


def _merge_one(out: sqlite_utils.Database, src: sqlite_utils.Database, touched: set[int]) -> dict[str, int]:
    counts = {"sessions": 0, "sessions_known": 0, "runs": 0, "runs_known": 0}
    sessions: dict[int, int] = {}  # src session id -> OUT's
    for row in store.recorded_sessions(src):
        known = store.same_session_id(out, row["name"], row["source"] or "record", row["started_at"])
        if known is not None:
            sessions[row["id"]] = known
            counts["sessions_known"] += 1
        else:
            sessions[row["id"]] = _copy_session(out, src, dict(row), store.free_session_name(out, row["name"]))
            counts["sessions"] += 1
    runs: dict[int, int] = {}
    new_runs: list[tuple[dict[str, Any], int]] = []
    for row in store.iter_runs(src):
        same = _same_run(out, row)
        if same is not None:
            runs[row["id"]] = same["id"]
            for role in ("candidate_session_id", "baseline_session_id"):
                if row[role] is not None and same[role] is not None:
                    sessions[row[role]] = same[role]
            counts["runs_known"] += 1
            continue
        group = _shard_sibling(out, row)
        if group is not None:  # another share of the same sharded run
            runs[row["id"]] = group
            touched.add(group)
            joined = dict(out.table("replay_runs").get(group))
            # The share's uid joins the run's own (a comma list): merging this file again finds it there
            # (it came back as a new run of 0 turns, "passed").
            uids = ",".join(u for u in (joined["uid"], row.get("uid")) if u) or None
            out.table("replay_runs").update(group, {"shard": f"{joined['shard']},{row['shard']}", "uid": uids})
            continue
        copy = {k: v for k, v in row.items() if k != "id"}
        copy["session_id"] = sessions.get(row["session_id"]) if row["session_id"] is not None else None
        copy["parent_id"] = runs.get(row["parent_id"]) if row.get("parent_id") is not None else None
        copy["candidate_session_id"] = copy["baseline_session_id"] = None  # set once those are copied
        runs[row["id"]] = int(out.table("replay_runs").insert(copy).last_pk or 0)
        new_runs.append((row, runs[row["id"]]))
        counts["runs"] += 1
        if row.get("shard_group") and row["session_id"] is None:
            touched.add(runs[row["id"]])
    for row, new_id in new_runs:
        update = {}
        for role in ("candidate_session_id", "baseline_session_id"):
            old = row[role]
            if old is None:
                continue
            if old not in sessions:
                replay = dict(src.table("sessions").get(old))
                name = replay["name"].replace(f"-replay-{row['id']}-", f"-replay-{new_id}-", 1)
                sessions[old] = _copy_session(out, src, replay, store.free_session_name(out, name))
                counts["sessions"] += 1
            update[role] = sessions[old]
        if update:
            out.table("replay_runs").update(new_id, update)
        turns = [{**t, "run_id": new_id} for t in store.rows_where(src, "replay_turns", "run_id", row["id"])]
        out.table("replay_turns").insert_all(turns, batch_size=500)
    for row in store.replay_sessions(src):
        if row["id"] not in sessions:  # a replay session no run names (its run failed): kept, renamed if need be
            sessions[row["id"]] = _copy_session(out, src, dict(row), store.free_session_name(out, row["name"]))
            counts["sessions"] += 1
    return counts


def _same_run(out: sqlite_utils.Database, row: dict[str, Any]) -> dict[str, Any] | None:
    """The run of OUT this one is a copy of: the same uid (or, for a run from before uids, the same start,
    builds and status)."""
    if row.get("uid"):
        found = store.runs_with_uid(out, row["uid"])
    else:
        found = store.runs_without_uid(out, row["started_at"], row["candidate_url"], row["status"])
    return found[0] if found else None


def _shard_sibling(out: sqlite_utils.Database, row: dict[str, Any]) -> int | None:
    """OUT's corpus run of the same sharded run, when this is another share of it."""
    if row["session_id"] is not None or not row.get("shard_group") or not row.get("shard"):
        return None
    for other in store.corpus_runs_of_group(out, row["shard_group"]):
        if row["shard"] not in (other["shard"] or "").split(","):
            return int(other["id"])
    return None


def _copy_session(out: sqlite_utils.Database, src: sqlite_utils.Database, row: dict[str, Any], name: str) -> int:
    old = row.pop("id")
    new = int(out.table("sessions").insert({**row, "name": name}).last_pk or 0)
    for table in _SESSION_TABLES:
        rows = ({**r, "session_id": new} for r in store.rows_where(src, table, "session_id", old))
        out.table(table).insert_all(rows, batch_size=500)
    return new


def _recount(out: sqlite_utils.Database, run_id: int) -> dict[str, Any]:
    """A corpus run's status, summary and shares, from the session runs it now has."""
    row = dict(out.table("replay_runs").get(run_id))
    children = store.child_runs(out, run_id)
    shards = sorted({s for c in children for s in (c.get("shard") or "").split(",") if s} |
                    {s for s in (row.get("shard") or "").split(",") if s}, key=_shard_key)
    stored = json.loads(row.get("summary") or "{}")
    names = stored.get("session_names", [])
    summaries = [json.loads(c.get("summary") or "{}") for c in children]
    summary = corpus_summary(summaries, len(names))
    failed = [c for c in children if c["status"] not in ("passed", "regressed")]
    status = "failed" if failed or row["status"] == "failed" else "regressed" if summary["regressed"] else "passed"
    out.table("replay_runs").update(run_id, {"shard": ",".join(shards), "status": status,
                                             "summary": _dumps({**summary, "session_names": names})})
    count = _shard_key(shards[0])[1] if shards else 0
    missing = [f"{i}/{count}" for i in range(1, count + 1) if f"{i}/{count}" not in shards]
    return {"id": run_id, "shards": shards, "missing": missing, "status": status, "summary": summary}


def _shard_key(spec: str) -> tuple[int, int]:
    index, _, count = spec.partition("/")
    return int(index), int(count)
