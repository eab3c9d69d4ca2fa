"""How long does an HTML report of a large session or replay run take? The goal: under 5 s for 10,000 activities.

Into a fresh SQLite file (not timed):

    session    a realistic SDK session of N activities from bench/gen_session.py (many conversations,
               replies, typing, updates, deletes, invoke responses, proactive sends), 2% of replies made
               wrong so the checks find something, its findings stored as `botproxy record` stores them
    unchecked  the same traffic as a second session with no stored findings, so the report runs the
               checks itself (what `botproxy report` does for a session recorded without them)
    replay     a replay run of that session: one `replay_turns` row per turn, the turn's recorded replies
               and replayed ones, every tenth turn changed (a changed text, a changed card title, a missing
               or an extra reply) with its differences, and a few new findings, stored as botproxy.replay.driver does

Then, per round, `render_session()` / `render_replay()` from an open database to the file written,
split into building the view (SQL, JSON, view dicts) and rendering the templates. The table shows the
median over the rounds, the file size, and the time per 1,000 activities.

    python bench/bench_report.py                       # 10,000 activities, 3 rounds
    python bench/bench_report.py --activities 50000 --rounds 1
    python bench/bench_report.py --json results.json

It exits 0 whatever it measured: it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen_session import generate  # noqa: E402

from botproxy import store  # noqa: E402
from botproxy.checks import check_session, store_findings  # noqa: E402
from botproxy.present import report

GOAL_S = 5.0


def compact(activity: dict[str, Any]) -> dict[str, Any]:
    """A stored activity as botproxy.replay.driver keeps it in `replay_turns.recorded`/`replayed`."""
    return {key: activity[key] for key in ("seq", "route", "type", "text", "activity_id", "reply_to_id", "status")} | {
        "proactive": False, "body": activity["body"]}


def make_replay(db: Any, session: dict[str, Any], seed: int) -> tuple[int, int]:
    """A replay run of the session: its turns, every tenth one changed. Returns (run id, activities in it)."""
    rng = random.Random(seed)
    activities = list(store.iter_activities(db, session["id"]))
    replies: dict[int, list[dict[str, Any]]] = {}
    for a in activities:
        if a["direction"] == "from_bot" and a["turn_seq"] is not None:
            replies.setdefault(a["turn_seq"], []).append(a)
    run_id = db["replay_runs"].insert({
        "session_id": session["id"], "started_at": "2024-05-01T11:00:00Z", "ended_at": "2024-05-01T11:09:00Z",
        "candidate_url": "http://127.0.0.1:3979/api/messages", "baseline_url": "http://127.0.0.1:3978/api/messages",
        "concurrency": 4, "options": "{}", "ignore_paths": "[]",
        "noise_paths": json.dumps(["root['channelData']['traceId']"]), "status": "regressed",
    }).last_pk
    rows, index, total = [], {}, 0
    for inbound in (a for a in activities if a["direction"] == "to_bot"):
        conversation = inbound["conversation_id"]
        index[conversation] = index.get(conversation, 0) + 1
        recorded = [compact(a) for a in replies.get(inbound["seq"], [])]
        replayed = [dict(a, seq=a["seq"] + 1_000_000, body=dict(a["body"] or {})) for a in recorded]
        differences: list[dict[str, Any]] = []
        findings: list[dict[str, Any]] = []
        if replayed and rng.random() < 0.1:
            kind = rng.choice(("text", "title", "missing", "extra"))
            if kind == "text":
                replayed[0]["body"]["text"] = replayed[0]["text"] = f"{replayed[0]['text'] or ''}!"
                differences.append({"kind": "changed", "path": "root['text']", "recorded": recorded[0]["text"],
                                    "replayed": replayed[0]["text"], "recorded_index": 0, "replayed_index": 0})
            elif kind == "title":
                replayed[0]["body"]["attachments"] = [{"contentType": "application/vnd.microsoft.card.hero",
                                                       "content": {"title": "New title", "buttons": []}}]
                differences.append({"kind": "changed", "path": "root['attachments']", "recorded": "<absent>",
                                    "replayed": "[1 card]", "recorded_index": 0, "replayed_index": 0})
            elif kind == "missing":
                replayed.pop()
                differences.append({"kind": "missing", "path": f"[{len(recorded) - 1}]", "recorded": {"text": "x"},
                                    "replayed": None, "recorded_index": len(recorded) - 1, "replayed_index": None})
            else:
                replayed.append(dict(replayed[-1], seq=replayed[-1]["seq"] + 500_000))
                differences.append({"kind": "extra", "path": f"[{len(replayed) - 1}]", "recorded": None,
                                    "replayed": {"text": "x"}, "recorded_index": None,
                                    "replayed_index": len(replayed) - 1})
            if rng.random() < 0.3:
                findings.append({"rule": "BP-A04", "name": "dangling-replyToId", "severity": "warning",
                                 "seq": replayed[0]["seq"] if replayed else None, "conversation_id": conversation,
                                 "message": "replyToId names no activity", "details": {}, "noise": False})
        total += 1 + len(recorded) + len(replayed)
        rows.append({
            "run_id": run_id, "conversation_id": conversation, "idx": index[conversation],
            "inbound_seq": inbound["seq"], "inbound_text": inbound["text"],
            "status": "changed" if differences else "same", "regressed": int(bool(differences)),
            "recorded": json.dumps(recorded), "replayed": json.dumps(replayed),
            "differences": json.dumps(differences), "noise": "[]", "noise_paths": "[]",
            "new_findings": json.dumps(findings),
        })
    with db.conn:
        db["replay_turns"].insert_all(rows, batch_size=1000)
    return int(run_id), total


def timed(build: Callable[[], Any], render: Callable[[Any], Path]) -> tuple[float, float, int]:
    """(view seconds, template seconds, bytes) of one report."""
    started = time.perf_counter()
    view = build()
    built = time.perf_counter()
    out = render(view)
    return built - started, time.perf_counter() - built, out.stat().st_size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--activities", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", metavar="DIR", help="write the database and reports here (default: a temp dir)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)

    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench-report-"))
    folder.mkdir(parents=True, exist_ok=True)
    db_path = folder / "bench.db"
    db_path.unlink(missing_ok=True)
    print(f"generating {args.activities:,} activities into {db_path} ...", flush=True)
    checked = generate(db_path, args.activities, conversations=max(args.activities // 40, 1), seed=args.seed,
                       name="session", mistake_rate=0.02)
    generate(db_path, args.activities, conversations=max(args.activities // 40, 1), seed=args.seed,
             name="unchecked", mistake_rate=0.02)
    db = store.open_db(db_path)
    session = store.resolve_session(db, "session")
    unchecked = store.resolve_session(db, "unchecked")
    findings = store_findings(db, session["id"], check_session(db, session["id"]))
    run_id, replay_activities = make_replay(db, session, args.seed)
    print(f"  {checked['activities']:,} activities, {findings:,} findings stored; replay run of "
          f"{replay_activities:,} activities (inbound + recorded + replayed)\n", flush=True)

    env = report.environment()
    cases: dict[str, tuple[int, Callable[[], Any], Callable[[Any], Path]]] = {
        "session": (checked["activities"], lambda: report.session_view(db, session),
                    lambda view: report._write("session.html.j2", view, folder / "session.html")),
        "unchecked": (checked["activities"], lambda: report.session_view(db, unchecked),
                      lambda view: report._write("session.html.j2", view, folder / "unchecked.html")),
        "replay": (replay_activities, lambda: report.replay_view(db, run_id),
                   lambda view: report._write("replay.html.j2", view, folder / "replay.html")),
    }
    env.get_template("session.html.j2")  # compiling the templates once is not what we measure
    env.get_template("replay.html.j2")
    results: dict[str, dict[str, Any]] = {}
    for name, (activities, build, render) in cases.items():
        runs = [timed(build, render) for _ in range(args.rounds)]
        view_s = statistics.median(r[0] for r in runs)
        template_s = statistics.median(r[1] for r in runs)
        total = statistics.median(r[0] + r[1] for r in runs)
        results[name] = {"activities": activities, "seconds": round(total, 3), "view_seconds": round(view_s, 3),
                         "template_seconds": round(template_s, 3), "bytes": runs[-1][2]}

    print(f"{'report':<10} {'activities':>10} {'seconds':>8} {'view':>7} {'template':>9} {'size MB':>8} "
          f"{'s/1k act':>9}")
    for name, r in results.items():
        print(f"{name:<10} {r['activities']:>10,} {r['seconds']:>8.2f} {r['view_seconds']:>7.2f} "
              f"{r['template_seconds']:>9.2f} {r['bytes'] / 1e6:>8.2f} {r['seconds'] / r['activities'] * 1000:>9.3f}")
    worst = max(results.values(), key=lambda r: r["seconds"])
    print(f"\ngoal: a {args.activities:,}-activity report in under {GOAL_S:.0f} s: "
          f"{'met' if worst['seconds'] < GOAL_S else 'NOT met'} (slowest {worst['seconds']:.2f} s; "
          f"'unchecked' includes running the checks) · median of {args.rounds} · Python {platform.python_version()}")
    print(f"reports in {folder}")
    if args.json:
        Path(args.json).write_text(json.dumps({"activities": args.activities, "rounds": args.rounds,
                                               "results": results}, indent=2))


if __name__ == "__main__":
    main()
