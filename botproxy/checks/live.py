"""The engine inside the recorder: a `recording.Observer` that stores findings and shows them on the console.

Put it before the console in the recorder's observer list: the console prints an activity's findings
(`activity["_findings"]`) when its exchange completes, and some findings are only known at that moment.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from ..model import Row
from .engine import Engine
from .rules import Finding

log = logging.getLogger(__name__)


class LiveChecks:
    """Adapts `Engine` to `recording.Observer`: findings become `findings` rows and console lines."""

    def __init__(self, engine: Engine, session_id: int) -> None:
        self.engine = engine
        self.session_id = session_id
        self.counts: Counter[str] = Counter()  # findings by severity, for the session summary
        self.unshown = 0  # findings about exchanges without activities: stored, but not on the console

    def activity_seen(self, activity: dict[str, Any]) -> list[Row]:
        return self._rows(self.engine.activity_seen(activity), [activity])

    def exchange_done(self, exchange: dict[str, Any], activities: list[dict[str, Any]]) -> list[Row]:
        return self._rows(self.engine.exchange_done(exchange, activities), activities, exchange)

    def _rows(
        self, findings: list[Finding], activities: list[dict[str, Any]], exchange: dict[str, Any] | None = None
    ) -> list[Row]:
        rows: list[Row] = []
        for finding in findings:
            self.counts[finding.severity] += 1
            rows.append(("findings", finding.to_row(self.session_id)))
            # Under the activity it is about; a finding about an earlier activity (decided only now, e.g.
            # reply-before-parent) goes under the activity that revealed it, and says which one it means.
            target = next((a for a in activities if a["seq"] == finding.seq), activities[0] if activities else None)
            if target is None:  # about an exchange that carries no activity (a members call, an unknown route)
                if exchange is None:
                    self.unshown += 1
                else:
                    exchange.setdefault("_findings", []).append(finding.to_dict())
                continue
            shown = finding.to_dict()
            if finding.seq is not None and finding.seq != target["seq"]:
                shown["message"] = f"#{finding.seq}: {finding.message}"
            target.setdefault("_findings", []).append(shown)
        return rows
