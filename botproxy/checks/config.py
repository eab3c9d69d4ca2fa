"""Which rules run and how loud they are: `[checks]` in botproxy.toml or `[tool.botproxy.checks]` in
pyproject.toml.

    # botproxy.toml                          # pyproject.toml
    [checks]                                 [tool.botproxy.checks]
    disable = ["BP-A15", "BP-O04"]           disable = ["BP-A15"]
    severity = { "BP-O01" = "error" }        severity = { "BP-O01" = "error" }

The nearest directory (from `start_dir` upwards) holding botproxy.toml, or a pyproject.toml with a
`[tool.botproxy]` table, decides; when it holds both, botproxy.toml wins (`botproxy.settings.find_table`).
A severity set here applies to every finding of the rule, whatever severity the rule gave it.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..settings import find_table
from .registry import RULES
from .rules import SEVERITIES


@dataclass
class CheckConfig:
    disabled: set[str] = field(default_factory=set)
    severity: dict[str, str] = field(default_factory=dict)
    source: str = "check configuration"  # where it came from, for messages

    def validate(self) -> None:
        """Unknown rule codes or severities are a usage error, in one line."""
        for code in sorted(self.disabled | set(self.severity)):
            if code not in RULES:
                close = _spelled(code) or difflib.get_close_matches(code.upper(), RULES, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                raise UsageError(
                    f"{self.source}: unknown rule {code!r} ({hint}the rules are listed in the README, "
                    f"{min(RULES)} to {max(RULES)})"
                )
        for code, severity in sorted(self.severity.items()):
            if severity not in SEVERITIES:
                raise UsageError(
                    f"{self.source}: severity {severity!r} for {code} must be one of {', '.join(SEVERITIES)}"
                )


def _spelled(code: str) -> list[str]:
    """`bp-a1` -> [`BP-A01`] when that rule exists."""
    match = re.fullmatch(r"(?:BP-?)?([AIO])-?(\d{1,2})", code.strip().upper())
    guess = f"BP-{match.group(1)}{int(match.group(2)):02d}" if match else ""
    return [guess] if guess in RULES else []


def load_config(start_dir: str | Path = ".") -> CheckConfig:
    """The check configuration for a project: the nearest botproxy.toml or pyproject.toml upwards
    (found the same way as every other botproxy table, `botproxy.settings.find_table`)."""
    table, source = find_table("checks", start_dir)
    return _from_table(table, source)


def _from_table(table: Any, source: str) -> CheckConfig:
    if table is None:
        return CheckConfig(source=source)
    unknown = set(table) - {"disable", "severity"}
    if unknown:
        raise UsageError(
            f"{source}: unknown key(s) {', '.join(sorted(unknown))} (expected disable, severity)"
        )
    disable = table.get("disable", [])
    if not isinstance(disable, list) or not all(isinstance(c, str) for c in disable):
        raise UsageError(f'{source}: disable must be a list of rule codes, e.g. ["BP-A15"]')
    severity = table.get("severity", {})
    if not isinstance(severity, dict) or not all(isinstance(v, str) for v in severity.values()):
        raise UsageError(f'{source}: severity must be a table of code = "error"|"warning"|"info"')
    config = CheckConfig(set(disable), dict(severity), source)
    config.validate()
    return config
