"""The rules as `botproxy rules` lists them: each with the project's severity and whether it is on, as
JSON entries and as text (why it matters and how to fix it)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ..checks import RULES
from ..checks.config import CheckConfig


def rule_entries(config: CheckConfig) -> list[dict[str, Any]]:
    """Every rule, by code, as `botproxy rules --json` prints it."""
    return [
        {
            "code": code,
            "name": rule.name,
            "severity": config.severity.get(code, rule.severity),
            "enabled": code not in config.disabled,
            "family": rule.family,
            "catches": rule.catches,
            "explanation": rule.explanation,
            "fix": rule.fix,
            "source": rule.source,
        }
        for code, rule in sorted(RULES.items())
    ]


def rules_lines(entries: Sequence[Mapping[str, Any]], not_checked: Collection[str]) -> list[str]:
    lines = []
    for item in entries:
        state = "" if item["enabled"] else " (disabled)"
        lines += [f"{item['code']} {item['name']} [{item['severity']}]{state}", f"    {item['explanation']}",
                  f"    fix: {item['fix']}", ""]
    if not_checked:
        lines.append("not checked: " + ", ".join(sorted(not_checked)))
    return lines
