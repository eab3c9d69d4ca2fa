"""Offline checking of a stored session, as the `botproxy check` command presents it.

Runs the engine over the session (streaming), replaces the session's stored findings, and renders them
grouped by conversation and turn with an excerpt of the activity that broke each rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlite_utils

from ..checks.config import CheckConfig
from ..checks.offline import check_session, store_findings
from ..checks.registry import RULES
from ..checks.rules import SEVERITIES, Finding
from ..turns import turn_label
from .console import activity_excerpt

RANK = {severity: rank for rank, severity in enumerate(reversed(SEVERITIES))}  # info 0, warning 1, error 2


def run_checks(db: sqlite_utils.Database, session: dict[str, Any], config: CheckConfig) -> list[Finding]:
    findings = list(check_session(db, session["id"], config))
    store_findings(db, session["id"], findings)
    return findings


def at_or_above(findings: list[Finding], level: str) -> list[Finding]:
    return [f for f in findings if RANK[f.severity] >= RANK[level]]


def finding_json(finding: Finding, activity: dict[str, Any] | None) -> dict[str, Any]:
    rule = RULES.get(finding.rule)
    data = finding.to_dict()
    data["turn_seq"] = _turn_of(activity)
    data["excerpt"] = activity_excerpt(activity) if activity else None
    data["fix"] = rule.fix if rule else None
    return data


def text_lines(
    session: dict[str, Any], findings: list[Finding], activities: dict[int, dict[str, Any]],
    numbers: dict[int, int] | None = None,
) -> Iterator[str]:
    """`numbers` (inbound seq -> turn number, `store.turn_numbers`) names turns as `show` does."""
    if not findings:
        yield f"session {session['name']!r}: no findings"
        return
    counts = {sev: sum(1 for f in findings if f.severity == sev) for sev in SEVERITIES}
    yield f"session {session['name']!r}: " + ", ".join(f"{n} {sev}" for sev, n in counts.items() if n)
    groups: dict[str | None, dict[int | str | None, list[Finding]]] = {}
    for finding in sorted(findings, key=lambda f: (f.seq or 0, f.rule)):
        activity = activities.get(finding.seq or -1)
        turn: int | str | None = _turn_of(activity)
        if _on_client_leg(finding, activity):
            turn = _CLIENT_LEG
        groups.setdefault(finding.conversation_id, {}).setdefault(turn, []).append(finding)
    for conversation, turns in groups.items():
        yield ""
        yield f"conversation {conversation or '(none)'}"
        for turn, turn_findings in turns.items():
            if turn == _CLIENT_LEG:
                yield "  Direct Line client leg"
            else:
                yield f"  {turn_label((numbers or {}).get(turn), turn)}" if isinstance(turn, int) \
                    else "  proactive / outside a turn"
            for finding in turn_findings:
                activity = activities.get(finding.seq or -1)
                where = f"#{finding.seq}" if finding.seq is not None else "(exchange)"
                excerpt = activity_excerpt(activity) if activity else ""
                yield f"    {finding.severity.upper():<7} {finding.rule} {finding.name} at {where} {excerpt}".rstrip()
                yield f"            {finding.message}"
                rule = RULES.get(finding.rule)
                if rule:
                    yield f"            fix: {rule.fix}"


_CLIENT_LEG = "client"


def _on_client_leg(finding: Finding, activity: dict[str, Any] | None) -> bool:
    """A finding about what a Direct Line client posted or was given (not about a bot's turn)."""
    if activity is not None:
        return activity["direction"] in ("from_client", "to_client")
    rule = RULES.get(finding.rule)
    return rule is not None and rule.family == "directline"


def _turn_of(activity: dict[str, Any] | None) -> int | None:
    if activity is None:
        return None
    if activity["direction"] == "to_bot":
        return activity["seq"]
    return activity["turn_seq"]
