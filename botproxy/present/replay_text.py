"""A replay as text for people: a turn (its head line, then one line per difference or new finding), a
session's replay, a corpus run, and what `botproxy merge` joined.

`botproxy replay` prints a turn's lines for each turn that is not the same; the pytest plugin's failure message
is the same lines (botproxy/pytest_plugin.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..replay.diff import describe
from ..turns import turn_label
from .words import counted


def turn_lines(turn: Mapping[str, Any], indent: str = "  ") -> list[str]:
    """The lines of one turn of `ReplayResult.to_json()["turns"]` (a `same` turn is its head only)."""
    text = " ".join(str(turn["inbound_text"] or turn.get("inbound_name") or turn["inbound_type"] or "").split())
    head = f"{indent}{turn['conversation_id']} {turn_label(turn['index'], turn['inbound_seq'])} {text[:40]!r}: " \
        f"{turn['status']}"
    if turn["status"] == "error":
        return [f"{head}: {turn['error']}" + ("" if turn["regressed"] else " (not counted)")]
    lines = [head]
    detail = indent + "    "
    if turn.get("ambiguous"):
        lines.append(f"{detail}(the recording linked some replies to this turn by wire order only: several turns "
                     "were open and the replies named none)")
    lines += [f"{detail}{describe(d)}" for d in turn["differences"]]
    lines += [
        f"{detail}new finding {f['rule']} ({f['severity']}): {f['message']}"
        for f in turn["new_findings"]
        if not f["noise"]
    ]
    return lines


def replay_lines(data: Mapping[str, Any]) -> list[str]:
    """`botproxy replay SESSION`'s text: the turns that are not the same, the noise, then the run's line."""
    from ..replay.diff import noise_label

    run, summary = data["run"], data["summary"]
    against = build_name(run, "candidate") + (f" (baseline {build_name(run, 'baseline')})"
                                              if run["baseline_url"] else "")
    lines = [f"replayed session {data['session']['name']!r} against {against}"]
    for turn in data["turns"]:
        if turn["status"] != "same":
            lines += turn_lines(turn)
    if run["noise_paths"]:
        noisy = ", ".join(noise_label(key) for key in run["noise_paths"])
        lines.append(f"  noise (the baseline differs there too, not counted): {noisy}")
    not_replayed = summary["proactive_not_replayed"]
    if not_replayed:
        lines.append(
            f"  {counted(not_replayed, 'proactive activity', 'proactive activities')} of the recording "
            "did not happen again (the bot's own initiative; not counted)"
        )
    lines.append(
        f"run {run['id']}: {counted(summary['turns'], 'turn')}, {summary['same']} same, {summary['changed']} changed, "
        f"{counted(summary['error'], 'error')} ({summary['incomplete']} incomplete in the recording); "
        f"{summary['regressed']} regressed · replay session {run['candidate_session']['name']!r}"
    )
    return lines


def build_name(run: Mapping[str, Any], role: str) -> str:
    """A build as the output names it: its --label and URL, or its URL alone."""
    url, label = run[f"{role}_url"], run.get(f"{role}_label")
    return f"{label} ({url})" if label else str(url)


def corpus_lines(data: Mapping[str, Any]) -> list[str]:
    """Each session's lines (as a one-session replay prints them), then the run's verdict."""
    run, summary = data["run"], data["summary"]
    lines = []
    for session in data["sessions"]:
        lines += replay_lines(session)
    share = ""
    if run.get("shard"):
        idle = len(run["sessions"]) - len(data["sessions"])
        share = f" (shard {run['shard']}" + (f"; {idle} with no conversation in it)" if idle else ")")
    lines.append(
        f"run {run['id']}: {counted(summary['sessions'], 'session')}{share}, {counted(summary['turns'], 'turn')}, "
        f"{summary['same']} same, {summary['changed']} changed, {counted(summary['error'], 'error')} "
        f"({summary['incomplete']} incomplete in the recording); {summary['regressed']} regressed · {run['status']} · "
        f"{build_name(run, 'candidate')}"
    )
    return lines


def merge_lines(inputs: list[dict[str, Any]], combined: list[dict[str, Any]], hint: str | None) -> list[str]:
    """`botproxy merge`'s text: what each input added, each run its shards joined, where to see the last."""
    lines = [f"{entry['path']}: {counted(entry['sessions'], 'session')} and {counted(entry['runs'], 'run')} added "
             f"({counted(entry['sessions_known'], 'session')} and {counted(entry['runs_known'], 'run')} were there "
             "already)"
             for entry in inputs]
    for run in combined:
        summary = run["summary"]
        missing = f" · missing {', '.join(run['missing'])}" if run["missing"] else ""
        lines.append(f"run {run['id']}: shards {', '.join(run['shards'])}{missing} · "
                     f"{counted(summary['sessions'], 'session')}, {counted(summary['turns'], 'turn')}, "
                     f"{summary['regressed']} regressed · {run['status']}")
    if hint:
        lines.append(f"see it with: {hint}")
    return lines
