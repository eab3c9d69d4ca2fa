"""A regression corpus: several recorded sessions replayed in one run, with one verdict.

A corpus run is a `replay_runs` row of its own (no `session_id`): each session is replayed exactly as
`botproxy replay SESSION` replays one (`replay.replay_plan`), as a run that names the corpus run as its
`parent_id`, and the corpus run's status and summary add theirs up. `--shard I/N` keeps the
conversations whose stable hash (of the session's name and the conversation's id, so neither the
order of the sessions nor that of the conversations moves one) falls in share I of N; each CI job
replays one share into its own database, and `botproxy merge` (merge.py) puts the shares together again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from .. import store
from ..errors import SessionNotFound, UsageError
from ..model import utc_now
from . import diff
from .driver import Progress, Ticker, check_engines, checked_options, reachable, replay_plan
from .plan import Build, Plan, ReplayOptions, keep_conversations, load_plan
from .results import ReplayResult, RunResult, _dumps, _named, fail_run, start_run

CORPUS_SOURCES = ("record", "import")  # what a corpus is made of (a replay's own sessions are results)
_COUNTED = ("turns", "conversations", "same", "changed", "error", "incomplete", "regressed", "differences", "noise",
            "new_findings", "proactive_not_replayed", "proactive_unattached")


# -- which sessions, which conversations -------------------------------------------------------------


def select_sessions(db: sqlite_utils.Database, refs: Iterable[str], *, every: bool = False,
                    source: str | None = None) -> list[dict[str, Any]]:
    """The sessions a corpus run replays, in the order given (names, ids, `latest`), then with `every` (or a
    `source` alone) every recorded or imported session (of that source), oldest first; each once."""
    chosen: dict[int, dict[str, Any]] = {}
    for ref in refs:
        session = store.resolve_session(db, ref)
        chosen.setdefault(session["id"], session)
    if every or source or not chosen:
        sources = (source,) if source else CORPUS_SOURCES
        for session in store.list_sessions(db):
            if (session.get("source") or "record") in sources:
                chosen.setdefault(session["id"], session)
        if not chosen:
            what = f"{source} sessions" if source else "recorded or imported sessions"
            listing = store.command_hint(store.db_path(db), "sessions")
            raise SessionNotFound(f"no {what} in {store.db_path(db)} to replay (list them with {listing})")
    return list(chosen.values())


def parse_shard(spec: str) -> tuple[int, int]:
    """`I/N` (1 <= I <= N) as (I, N)."""
    index, _, count = spec.partition("/")
    if index.strip().isdigit() and count.strip().isdigit() and 1 <= int(index) <= int(count):
        return int(index), int(count)
    raise UsageError(f"--shard must be I/N with 1 <= I <= N (e.g. --shard 1/4), not {spec!r}")


def shard_of(session_name: str, conversation_id: str, count: int) -> int:
    """The share (1..count) a conversation belongs to: a hash of its session's name and its id, so it is
    the same in every job, whatever else the corpus holds."""
    digest = hashlib.sha256(f"{session_name}\0{conversation_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def shard_plan(plan: Plan, index: int, count: int) -> Plan:
    """The plan with only the conversations of share `index` of `count` (the rest of it unchanged)."""
    name = plan.session["name"]
    keep_conversations(plan, {c for c in plan.conversations if shard_of(name, c, count) == index})
    return plan


# -- the run -----------------------------------------------------------------------------------------


@dataclass
class ConversationResult:
    """One recorded conversation's verdict: its turns (`TurnResult.to_json()` dicts) as replayed."""

    session: str
    conversation_id: str
    turns: list[dict[str, Any]]

    @property
    def regressed(self) -> bool:
        return any(t["regressed"] for t in self.turns)


@dataclass
class CorpusResult(RunResult):
    run: dict[str, Any]
    summary: dict[str, Any]
    sessions: list[ReplayResult]

    def conversations(self) -> list[ConversationResult]:
        """Per recorded conversation, in the order replayed (a pytest item each, say)."""
        found: dict[tuple[str, str], ConversationResult] = {}
        for result in self.sessions:
            name = result.session["name"]
            for turn in result.to_json()["turns"]:
                key = (name, turn["conversation_id"])
                found.setdefault(key, ConversationResult(name, turn["conversation_id"], [])).turns.append(turn)
        return list(found.values())

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "summary": self.summary, "sessions": [s.to_json() for s in self.sessions]}


async def replay_corpus(
    db_path: str,
    refs: Iterable[str],
    candidate: Build,
    *,
    baseline: Build | None = None,
    every: bool = False,
    source: str | None = None,
    shard: tuple[int, int] | None = None,
    conversations: Collection[tuple[str, str]] | None = None,
    options: ReplayOptions | None = None,
    progress: Progress | None = None,
) -> CorpusResult:
    """Replay several sessions (or a share of their conversations, or only `conversations`: (session
    name, conversation id) pairs) in one run; raises what replay_session raises.

    The Python entry point for a corpus: `CorpusResult.conversations()` is each conversation's verdict.
    """
    options = options or ReplayOptions()
    rules = checked_options(candidate, baseline, options)
    db = store.open_db(db_path, write=True)
    plans = []
    for session in select_sessions(db, refs, every=every, source=source):
        plan = load_plan(db, session)
        if not plan.conversations:
            raise UsageError(f"session {session['name']!r} has no inbound activities to replay")
        if conversations is not None:
            keep_conversations(plan, {c for n, c in conversations if n == session["name"]} & set(plan.conversations))
        plans.append(shard_plan(plan, *shard) if shard else plan)
    await reachable(candidate, baseline)
    shard_text = f"{shard[0]}/{shard[1]}" if shard else None
    names = [p.session["name"] for p in plans]
    extra = {"shard": shard_text, "shard_group": _shard_group(names, candidate, baseline, shard, rules, options)}
    run_id = start_run(db, None, candidate, baseline, options, rules, extra)
    engines = check_engines(options)
    ticker = Ticker(progress, sum(len(p.turns) for p in plans) * (2 if baseline else 1))
    results: list[ReplayResult] = []
    try:
        for plan in plans:
            if plan.conversations:  # a share may hold none of a session's conversations
                results.append(await replay_plan(
                    db_path, db, plan, candidate, baseline, rules, options, engines, ticker,
                    extra={"parent_id": run_id, "shard": shard_text}))
    except BaseException as exc:
        fail_run(db, run_id, exc)
        raise
    return store_corpus(db, run_id, [p.session["name"] for p in plans], results)


def _shard_group(names: list[str], candidate: Build, baseline: Build | None, shard: tuple[int, int] | None,
                 rules: diff.Ignore, options: ReplayOptions) -> str | None:
    """What the jobs of one sharded run share (the sessions, builds, share count and options), so that
    `botproxy merge` puts their shares together as one run."""
    if shard is None:
        return None
    base = (baseline.label or baseline.url) if baseline else ""
    parts = [*sorted(names), candidate.label or candidate.url, base,
             str(shard[1]), *rules.user, repr(sorted(options.to_json().items()))]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def corpus_summary(summaries: Iterable[dict[str, Any]], sessions: int) -> dict[str, Any]:
    """The corpus run's summary: its sessions' counts added up."""
    summaries = list(summaries)
    total = {name: sum(int(s.get(name) or 0) for s in summaries) for name in _COUNTED}
    return {"sessions": sessions, **total, "checks": all(s.get("checks", True) for s in summaries)}


def store_corpus(db: sqlite_utils.Database, run_id: int, names: list[str], results: list[ReplayResult]) -> CorpusResult:
    """The corpus run's final status and summary, from its sessions' runs."""
    summary = corpus_summary((r.summary for r in results), len(names))
    status = "regressed" if summary["regressed"] else "passed"
    ended = utc_now()
    with db.conn:
        db.table("replay_runs").update(run_id, {"status": status, "ended_at": ended,
                                                "summary": _dumps({**summary, "session_names": names})})
    return CorpusResult(corpus_run_json(db, run_id), summary, results)


def corpus_run_json(db: sqlite_utils.Database, run_id: int) -> dict[str, Any]:
    """The `run` of a corpus run's JSON, from its row."""
    row = dict(db.table("replay_runs").get(run_id))
    stored = _loads(row.get("summary"))
    return {
        "id": run_id,
        **_named(row),
        "started_at": row["started_at"],
        "ended_at": row["ended_at"],
        "status": row["status"],
        "candidate_url": row["candidate_url"],
        "baseline_url": row["baseline_url"],
        "sessions": stored.get("session_names", []),
        "session_runs": [r["id"] for r in db.query("select id from replay_runs where parent_id = ? order by id",
                                                    [run_id])],
        "concurrency": row["concurrency"],
        "options": _loads(row.get("options")),
        "ignore": _loads(row.get("ignore_paths")) or [],
    }


def is_corpus_run(db: sqlite_utils.Database, run_id: int) -> bool:
    """A run of several sessions (its row names none), not one session's."""
    rows = list(db.query("select session_id from replay_runs where id = ?", [run_id]))
    return bool(rows) and rows[0]["session_id"] is None


def _loads(text: Any) -> Any:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}
