"""Every rule, by code, and the README table generated from them."""

from __future__ import annotations

from . import addressing, agents, directline, ordering, streaming
from .rules import Rule

RULES: dict[str, Rule] = {
    rule.code: rule
    for rule in (*addressing.RULES, *ordering.RULES, *directline.RULES, *streaming.RULES, *agents.RULES)
}

# In the catalog but not checked, and why (protocol.md 3.3).
NOT_CHECKED = {
    "BP-O14": "delay-truncation: the intended `delay` never reaches the wire, so a recording cannot see it",
}


def rule(code: str) -> Rule:
    return RULES[code]


def rules_markdown() -> str:
    """The rule table for the README: code | name | severity | what it catches | source."""
    lines = [
        "| code | name | severity | what it catches | source |",
        "|---|---|---|---|---|",
    ]
    for code in sorted(RULES):
        r = RULES[code]
        severity = (
            r.severity if r.alt_severity is None else f"{r.severity} ({r.alt_severity} when {r.alt_when})"
        )
        cells = [f"`{r.code}`", f"`{r.name}`", severity, r.catches, r.source]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
