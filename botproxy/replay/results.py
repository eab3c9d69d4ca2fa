"""Replay results: each replayed turn compared with its recording, the run's verdict, and their storage.

`compare()` takes what `driver.py` gathered (the plan from the recording, and each build's turns read
back from its replay session) and decides, turn by turn: the differences (`diff.diff_turn`, with the
noise the baseline taught for that turn), the new check findings, and the status (`same`, `changed`,
`error`) and whether it counts as a regression. The run and its turns are stored in `replay_runs` and
`replay_turns`; `ReplayResult.to_json()` is what `botproxy replay --json` prints.
"""

from __future__ import annotations

import itertools
import json
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from ..model import utc_now
from ..wire.redact import scrub
from . import diff
from .plan import BASELINE, CANDIDATE, Build, PhaseResult, Plan, PlannedTurn, ReplayOptions, TurnOutcome

log = logging.getLogger(__name__)

SAME, CHANGED, ERROR = "same", "changed", "error"


# -- comparing ---------------------------------------------------------------------------------------


@dataclass
class TurnResult:
    turn: PlannedTurn
    status: str
    regressed: bool
    error: str | None
    outcome: TurnOutcome
    recorded: list[dict[str, Any]]
    replayed: list[dict[str, Any]]
    differences: list[diff.Difference]  # all, noise included (`noise=True`)
    noise_paths: set[str]
    new_findings: list[dict[str, Any]]
    candidate_seq: int | None
    baseline_seq: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "conversation_id": self.turn.conversation_id,
            "index": self.turn.index,
            "inbound_seq": self.turn.inbound["seq"],
            "inbound_type": self.turn.inbound["type"],
            "inbound_text": self.turn.inbound["text"],
            "inbound_name": self.turn.inbound["name"],
            # Some recorded replies were linked to this turn by wire order alone (several turns were open).
            "ambiguous": any(a.get("turn_ambiguous") for a in self.turn.replies),
            "status": self.status,
            "regressed": self.regressed,
            "error": self.error,
            "http_status": self.outcome.status,
            "duration_ms": self.outcome.duration_ms,
            "candidate_seq": self.candidate_seq,
            "baseline_seq": self.baseline_seq,
            "differences": [d.to_dict() for d in self.differences if not d.noise],
            "noise": [d.to_dict() for d in self.differences if d.noise],
            "noise_paths": sorted(self.noise_paths),
            "new_findings": self.new_findings,
            "recorded": self.recorded,
            "replayed": self.replayed,
        }


class _Comparer:
    def __init__(self, plan: Plan, ignore: diff.Ignore, phases: Iterable[PhaseResult] = ()) -> None:
        self.plan = plan
        self.ignore = ignore
        # Every serviceUrl either side used is written the same way on both sides: a bot echoing an
        # uploaded attachment sends back the recording's URL in a replay too.
        self.service_urls = set(plan.service_urls) | {p.service_url for p in phases if p.service_url}
        self.all_assigned = plan.all_assigned

    def recorded_views(self, turn: PlannedTurn, with_proactive: bool) -> tuple[list[dict[str, Any]], list[Any]]:
        # Connector ids of every conversation: a turn's sends may go to a conversation it created.
        known = self.plan.inbound_ids.get(turn.conversation_id, set()) | self.all_assigned

        def canon(value: str) -> str:
            return value if value in known else diff.GENERATED

        acts = turn.replies + (turn.proactive if with_proactive else [])
        return acts, [diff.comparable(a, canon_id=canon, service_urls=self.service_urls) for a in acts]

    def replayed_views(
        self, turn: PlannedTurn, phase: PhaseResult
    ) -> tuple[list[dict[str, Any]], list[Any]]:
        replayed = phase.turns.get(turn.key)
        acts = (replayed.replies + replayed.proactive) if replayed else []
        back = {v: k for k, v in phase.id_maps.get(turn.conversation_id, {}).items()}
        inbound = self.plan.inbound_ids.get(turn.conversation_id, set())
        # Any value equal to an id this replay's connector issued, wherever the bot copied it.
        issued = {value: back.get(value, f"<unmatched {value}>") for value in phase.assigned}

        def canon(value: str) -> str:
            if value in back:
                return back[value]
            if value in phase.assigned:
                return f"<unmatched {value}>"
            return value if value in inbound else diff.GENERATED

        return acts, [diff.comparable(a, canon_id=canon, service_urls=self.service_urls, issued=issued)
                      for a in acts]

    def compare(self, turn: PlannedTurn, phase: PhaseResult, noise: set[str]) -> tuple[list[Any], list[Any],
                                                                                       list[diff.Difference]]:
        replayed = phase.turns.get(turn.key)
        rep_acts, rep_views = self.replayed_views(turn, phase)
        rec_acts, rec_views = self.recorded_views(turn, bool(replayed and replayed.proactive))
        # A stream is compared as one activity (its final and structure), not chunk by chunk.
        rec_views, rep_views = diff.collapse_streams(rec_acts, rec_views), diff.collapse_streams(rep_acts, rep_views)
        differences = diff.diff_turn(rec_views, rep_views, ignore=self.ignore, noise=noise)
        recorded_status, replayed_status = turn.inbound["status"], phase.outcomes[turn.key].status
        if recorded_status is not None and replayed_status is not None and recorded_status != replayed_status:
            status_diff = diff.Difference(diff.CHANGED, "http_status", recorded_status, replayed_status)
            differences = diff.mark_noise([status_diff], noise) + differences
        return rec_acts, rep_acts, differences


def _compact(activity: dict[str, Any], proactive: bool) -> dict[str, Any]:
    return {
        "seq": activity["seq"],
        "route": activity["route"],
        "type": activity["type"],
        "text": activity["text"],
        "activity_id": activity["activity_id"],
        "reply_to_id": activity["reply_to_id"],
        "status": activity["status"],
        "proactive": proactive,
        "body": activity["body"],
    }


def _compacts(turn_acts: list[dict[str, Any]], proactive: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    late = {a["seq"] for a in proactive}
    return [_compact(a, a["seq"] in late) for a in turn_acts]


# -- findings ----------------------------------------------------------------------------------------


def _findings_by_turn(findings: Iterable[Any], seq_key: Callable[[int | None], str | None]) -> dict[str, list[Any]]:
    turns: dict[str, list[Any]] = {}
    for finding in findings:
        key = seq_key(finding.seq)
        if key is not None:
            turns.setdefault(key, []).append(finding)
    return turns


def _new_findings(candidate: list[Any], recorded: list[Any], baseline: list[Any] | None) -> list[dict[str, Any]]:
    """Candidate findings of rules the recording did not break (as often) in this turn; `noise` when the
    baseline broke them too."""
    seen = Counter(f.rule for f in recorded)
    noisy = Counter(f.rule for f in baseline or []) - seen
    new: list[dict[str, Any]] = []
    for finding in candidate:
        if seen[finding.rule] > 0:
            seen[finding.rule] -= 1
            continue
        entry = finding.to_dict()
        entry["noise"] = noisy[finding.rule] > 0
        if entry["noise"]:
            noisy[finding.rule] -= 1
        new.append(entry)
    return new


# -- the run -----------------------------------------------------------------------------------------


class RunResult:
    """What a single-session run (`ReplayResult`) and a corpus run (`corpus.CorpusResult`) both are: a
    stored `replay_runs` row (`run`, its JSON) with a summary that counts the regressed turns."""

    run: dict[str, Any]
    summary: dict[str, Any]

    @property
    def run_id(self) -> int:
        return int(self.run["id"])

    @property
    def regressed(self) -> bool:
        return bool(self.summary["regressed"])


@dataclass
class ReplayResult(RunResult):
    run: dict[str, Any]
    session: dict[str, Any]
    summary: dict[str, Any]
    turns: list[TurnResult]
    proactive: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "session": self.session,
            "summary": self.summary,
            "turns": [t.to_json() for t in self.turns],
            "proactive": self.proactive,
        }


def compare(
    db: sqlite_utils.Database,
    plan: Plan,
    phases: dict[str, PhaseResult],
    ignore: diff.Ignore,
    engine_factory: Callable[[], Any] | None,
    run_id: int,
) -> ReplayResult:
    """The verdict of a run: every planned turn compared (with the baseline's noise), its findings."""
    candidate, baseline = phases[CANDIDATE], phases.get(BASELINE)
    comparer = _Comparer(plan, ignore, phases.values())
    recorded_findings, candidate_findings, baseline_findings = _all_findings(db, plan, phases, engine_factory)
    results: list[TurnResult] = []
    all_noise: set[str] = set()
    for turn in plan.turns:
        noise: set[str] = set()
        if baseline is not None and turn.incomplete is None and baseline.outcomes[turn.key].error is None:
            _, _, base_diffs = comparer.compare(turn, baseline, set())
            noise = {d.noise_key for d in base_diffs}
            all_noise |= noise
        rec_acts, rep_acts, differences = comparer.compare(turn, candidate, noise)
        outcome = candidate.outcomes[turn.key]
        new = _new_findings(candidate_findings.get(turn.key, []), recorded_findings.get(turn.key, []),
                            baseline_findings.get(turn.key) if baseline is not None else None)
        if turn.incomplete is not None:
            status, regressed, error = ERROR, False, turn.incomplete
            differences, new = [], []
        elif outcome.error is not None:
            status, regressed, error = ERROR, True, outcome.error
            differences, new = [], []
        elif any(not d.noise for d in differences) or any(not f["noise"] for f in new):
            status, regressed, error = CHANGED, True, None
        else:
            status, regressed, error = SAME, False, None
        replayed = candidate.turns.get(turn.key)
        results.append(
            TurnResult(
                turn, status, regressed, error, outcome,
                _compacts(rec_acts, turn.proactive),
                _compacts(rep_acts, replayed.proactive if replayed else []),
                differences, noise, new,
                replayed.inbound["seq"] if replayed else None,
                _seq(baseline, turn.key) if baseline else None,
            )
        )
    proactive = _proactive_report(plan, candidate)
    summary = _summary(results, proactive, engine_factory is not None)
    run = _run_json(db, run_id, phases, ignore, all_noise, summary)
    return ReplayResult(run, _session_json(plan.session), summary, results, proactive)


def _seq(phase: PhaseResult, key: str) -> int | None:
    turn = phase.turns.get(key)
    return turn.inbound["seq"] if turn else None


def _all_findings(
    db: sqlite_utils.Database, plan: Plan, phases: dict[str, PhaseResult], engine_factory: Callable[[], Any] | None
) -> tuple[dict[str, list[Any]], dict[str, list[Any]], dict[str, list[Any]]]:
    if engine_factory is None:
        return {}, {}, {}
    from ..checks import check_session, stored_findings

    def planned(seq: int | None) -> str | None:
        turn = plan.seq_turn.get(seq) if seq is not None else None
        return turn.key if turn else None

    recorded = _findings_by_turn(check_session(db, plan.session["id"], engine=engine_factory()), planned)
    by_phase = {role: _findings_by_turn(stored_findings(db, phase.session_id), _lookup(phase.seq_key))
                for role, phase in phases.items()}
    return recorded, by_phase.get(CANDIDATE, {}), by_phase.get(BASELINE, {})


def _lookup(seq_key: dict[int, str]) -> Callable[[int | None], str | None]:
    return lambda seq: seq_key.get(seq) if seq is not None else None


def _proactive_report(plan: Plan, candidate: PhaseResult) -> list[dict[str, Any]]:
    """Recorded proactive activities the replay did not bring about (the bot's own initiative, which
    replaying inbound activities need not trigger), and replayed ones outside every planned turn."""
    report = []
    for conversation, acts in plan.proactive_before.items():
        report.append({"conversation_id": conversation, "after_index": 0, "status": "not_replayed",
                       "recorded": [_compact(a, True) for a in acts], "replayed": []})
    for turn in plan.turns:
        replayed = candidate.turns.get(turn.key)
        if turn.proactive and not (replayed and replayed.proactive):
            report.append({"conversation_id": turn.conversation_id, "after_index": turn.index,
                           "status": "not_replayed", "recorded": [_compact(a, True) for a in turn.proactive],
                           "replayed": []})
    if candidate.unattached:
        for conversation, group in itertools.groupby(candidate.unattached, key=lambda a: a["conversation_id"]):
            report.append({"conversation_id": conversation, "after_index": None, "status": "unattached",
                           "recorded": [], "replayed": [_compact(a, True) for a in group]})
    return report


def _summary(results: list[TurnResult], proactive: list[dict[str, Any]], checks: bool) -> dict[str, Any]:
    statuses = Counter(r.status for r in results)
    return {
        "turns": len(results),
        "conversations": len({r.turn.conversation_id for r in results}),
        SAME: statuses[SAME],
        CHANGED: statuses[CHANGED],
        ERROR: statuses[ERROR],
        "incomplete": sum(1 for r in results if r.turn.incomplete),
        "regressed": sum(1 for r in results if r.regressed),
        "differences": sum(1 for r in results for d in r.differences if not d.noise),
        "noise": sum(1 for r in results for d in r.differences if d.noise),
        "new_findings": sum(1 for r in results for f in r.new_findings if not f["noise"]),
        "proactive_not_replayed": sum(len(p["recorded"]) for p in proactive if p["status"] == "not_replayed"),
        "proactive_unattached": sum(len(p["replayed"]) for p in proactive if p["status"] == "unattached"),
        "checks": checks,
    }


def _session_json(session: dict[str, Any]) -> dict[str, Any]:
    from ..store import session_summary

    return session_summary(session)


# -- storage -----------------------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))


def start_run(db: sqlite_utils.Database, session: dict[str, Any] | None, candidate: Build, baseline: Build | None,
              options: ReplayOptions, ignore: diff.Ignore, extra: dict[str, Any] | None = None) -> int:
    """The `replay_runs` row of a run that starts now (status `running`); returns its id. `session` is None
    for a corpus run (its sessions' runs name it as `parent_id`); `extra`: shard, parent (the builds'
    labels are added); a None is left out."""
    labels = {"candidate_label": candidate.label, "baseline_label": baseline.label if baseline else None}
    row = {
        "session_id": session["id"] if session else None,
        "started_at": utc_now(),
        "candidate_url": scrub(candidate.url),
        "baseline_url": scrub(baseline.url) if baseline else None,
        "concurrency": options.concurrency,
        "options": _dumps(options.to_json()),
        "ignore_paths": _dumps(list(ignore.user)),
        "status": "running",
        "uid": uuid.uuid4().hex,  # the same run wherever a database is copied to (botproxy merge)
        **{k: v for k, v in {**(extra or {}), **labels}.items() if v is not None},
    }
    with db.conn:
        return int(db.table("replay_runs").insert(row).last_pk or 0)


def fail_run(db: sqlite_utils.Database, run_id: int, exc: BaseException) -> None:
    """Mark a run that stopped half-way (an exception, Ctrl-C) as `failed`, with the reason."""
    try:
        with db.conn:
            db.table("replay_runs").update(run_id, {"status": "failed", "ended_at": utc_now(),
                                                    "error": scrub(str(exc)) or type(exc).__name__})
    except Exception:  # the original failure is the one to report
        log.exception("could not mark replay run %s as failed", run_id)


def _run_json(db: sqlite_utils.Database, run_id: int, phases: dict[str, PhaseResult],
              ignore: diff.Ignore, noise: set[str], summary: dict[str, Any]) -> dict[str, Any]:
    row = dict(db.table("replay_runs").get(run_id))
    candidate, baseline = phases[CANDIDATE], phases.get(BASELINE)
    return {
        "id": run_id,
        **_named(row),
        "started_at": row["started_at"],
        "ended_at": utc_now(),
        "status": "regressed" if summary["regressed"] else "passed",
        "candidate_url": scrub(candidate.bot_url),
        "baseline_url": scrub(baseline.bot_url) if baseline else None,
        "candidate_session": {"id": candidate.session_id, "name": candidate.session_name},
        "baseline_session": {"id": baseline.session_id, "name": baseline.session_name} if baseline else None,
        "concurrency": row["concurrency"],
        "options": json.loads(row["options"]),
        "ignore": list(ignore.user),
        "volatile": list(diff.VOLATILE),
        "noise_paths": sorted(noise),
    }


# Said only when set, so a plain run's JSON keeps its shape.
RUN_NAMES = ("candidate_label", "baseline_label", "shard", "parent_id")


def _named(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in RUN_NAMES if row.get(name) is not None}


def store_run(db: sqlite_utils.Database, result: ReplayResult) -> None:
    """The run's `replay_turns` rows and its final `replay_runs` columns, in one transaction."""
    run = result.run
    rows = [_turn_row(run["id"], t) for t in result.turns]
    with db.conn:
        db.table("replay_turns").insert_all(rows, batch_size=500)
        db.table("replay_runs").update(
            run["id"],
            {
                "ended_at": run["ended_at"],
                "status": run["status"],
                "candidate_session_id": run["candidate_session"]["id"],
                "baseline_session_id": run["baseline_session"]["id"] if run["baseline_session"] else None,
                "noise_paths": _dumps(run["noise_paths"]),
                "summary": _dumps({**result.summary, "proactive": result.proactive}),
            },
        )


def _turn_row(run_id: int, result: TurnResult) -> dict[str, Any]:
    data = result.to_json()
    return {
        "run_id": run_id,
        "conversation_id": data["conversation_id"],
        "idx": data["index"],
        "inbound_seq": data["inbound_seq"],
        "candidate_seq": data["candidate_seq"],
        "baseline_seq": data["baseline_seq"],
        "inbound_text": data["inbound_text"],
        "status": data["status"],
        "regressed": int(data["regressed"]),
        "duration_ms": data["duration_ms"],
        "recorded": _dumps(data["recorded"]),
        "replayed": _dumps(data["replayed"]),
        "differences": _dumps(data["differences"]),
        "noise": _dumps(data["noise"]),
        "noise_paths": _dumps(data["noise_paths"]),
        "new_findings": _dumps(data["new_findings"]),
        "error": data["error"],
    }


def iter_turn_rows(db: sqlite_utils.Database, run_id: int) -> Iterator[dict[str, Any]]:
    """A stored run's turns, JSON columns parsed, in conversation and turn order."""
    sql = "select * from replay_turns where run_id = ? order by rowid"
    for row in db.query(sql, [run_id]):
        out = dict(row)
        for name in ("recorded", "replayed", "differences", "noise", "noise_paths", "new_findings"):
            out[name] = json.loads(out[name]) if out.get(name) else []
        yield out
