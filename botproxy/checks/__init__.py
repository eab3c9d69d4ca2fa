"""The rule engine: per-conversation state fed activities in session order, emitting findings.

The same `Engine` runs live inside the recorder (`LiveChecks`) and over a stored session
(`check_session`), and gives the same findings both ways. Rules are data (`RULES`, one `Rule` per code,
protocol.md section 3); each is declared, explained and fired by its family: `addressing`, `ordering`,
`directline`, `streaming`, `agents`.
"""

from .config import CheckConfig, load_config
from .engine import Engine
from .live import LiveChecks
from .offline import check_session, store_findings, stored_findings
from .registry import NOT_CHECKED, RULES, rules_markdown
from .rules import ERROR, INFO, SEVERITIES, WARNING, Finding, Rule

__all__ = [
    "ERROR",
    "INFO",
    "NOT_CHECKED",
    "RULES",
    "SEVERITIES",
    "WARNING",
    "CheckConfig",
    "Engine",
    "Finding",
    "LiveChecks",
    "Rule",
    "check_session",
    "load_config",
    "rules_markdown",
    "store_findings",
    "stored_findings",
]
