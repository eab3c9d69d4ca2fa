"""What a rule is and what it finds: `Rule` (data, no code) and `Finding` (one broken rule at one activity).

The rules themselves live with their family (`addressing`, `ordering`, `directline`, `streaming`, `agents`), each
rule's declaration beside the code that fires it, and are gathered in `registry`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..model import SEVERITIES, Severity

ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


@dataclass(frozen=True, slots=True)
class Rule:
    """One check: a stable code, a short name, a severity, why it matters and how to fix it."""

    code: str  # stable: BP-A01 ... (protocol.md section 3)
    name: str
    severity: str
    catches: str  # one line: what it catches (the README table)
    explanation: str  # one paragraph, ending with its source
    source: str  # spec requirement ids and/or issues, for the table
    fix: str  # one line
    family: str  # the module that declares and checks it: addressing, ordering, directline, streaming, agents
    # Some findings of a rule are of a different severity (a missing `from` is less sure than a wrong one).
    alt_severity: str | None = None
    alt_when: str = ""
    # Style rules that every SDK reply would repeat are reported once per conversation, not per activity.
    once_per_conversation: bool = False

    def __post_init__(self) -> None:
        assert self.severity in SEVERITIES and self.alt_severity in (None, *SEVERITIES), self.code
        assert (self.alt_severity is None) == (not self.alt_when), self.code


def rule_maker(module: str) -> Callable[..., Rule]:
    """`_rule = rule_maker(__name__)`: a family module declares its rules, its family named by the module."""
    family = module.rpartition(".")[2]

    def make(
        code: str, name: str, severity: str, catches: str, explanation: str, source: str, fix: str, **extra: Any
    ) -> Rule:
        return Rule(code, name, severity, catches, explanation, source, fix, family, **extra)

    return make


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule broken by one activity (`seq`), or by an exchange that carried none (`seq` None)."""

    rule: str
    name: str
    severity: str
    seq: int | None
    conversation_id: str | None
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "name": self.name,
            "severity": self.severity,
            "seq": self.seq,
            "conversation_id": self.conversation_id,
            "message": self.message,
            "details": dict(self.details),
        }

    def to_row(self, session_id: int) -> dict[str, Any]:
        """A row of the `findings` table."""
        return {
            "session_id": session_id,
            "seq": self.seq,
            "rule": self.rule,
            "name": self.name,
            "severity": self.severity,
            "conversation_id": self.conversation_id,
            "message": self.message,
            "details": json.dumps(self.details, ensure_ascii=False, sort_keys=True, separators=(",", ":")),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Finding:
        details = json.loads(row["details"]) if row.get("details") else {}
        return cls(
            row["rule"],
            row["name"],
            row["severity"],
            row["seq"],
            row["conversation_id"],
            row["message"],
            details,
        )
