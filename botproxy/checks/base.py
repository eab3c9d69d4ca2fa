"""The check context a rule family is handed: what has been learnt so far (`state`) and where findings go
(`emit`). The engine is one; the families import this low module, never the engine that calls them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .rules import Finding, Rule
from .state import Conversation, SessionState


class CheckContext:
    """Session state and the findings of the event being checked, with the configured rule switches."""

    def __init__(self, rules: Mapping[str, Rule], disabled: frozenset[str], severity: Mapping[str, str]) -> None:
        self.state = SessionState()
        self._rules = rules
        self._disabled = disabled
        self._severity = dict(severity)
        self._out: list[Finding] = []

    def emit(
        self,
        code: str,
        where: dict[str, Any] | int | None,
        conversation_id: str | None,
        message: str,
        details: dict[str, Any],
        *,
        alt: bool = False,
        conv: Conversation | None = None,
    ) -> None:
        """Report `code` at an activity (dict or seq; None for an exchange without activities)."""
        if code in self._disabled:
            return
        rule = self._rules[code]
        if rule.once_per_conversation and conv is not None:
            if conv.once is None:
                conv.once = set()
            elif code in conv.once:
                return
            conv.once.add(code)
        severity = self._severity.get(code) or (
            rule.alt_severity if alt and rule.alt_severity else rule.severity
        )
        seq = where["seq"] if isinstance(where, dict) else where
        self._out.append(Finding(code, rule.name, severity, seq, conversation_id, message, details))
