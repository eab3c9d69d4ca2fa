"""What the recorder prints: one line per activity as its exchange completes, and a closing summary.

An Observer of the SessionRecorder; runs on the writer thread. Colour only when writing to a terminal.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

import click

from ..model import Direction, Leg, Row, Severity
from ..store import command_hint
from .visible import visible
from .words import counted

if TYPE_CHECKING:
    from ..checks import CheckConfig, LiveChecks
    from ..record.recorder import Observer

# Bot leg: → to the bot, ← from the bot. Direct Line client leg: ⇢ client posts, ⇠ delivered to a client.
ARROWS: dict[str, str] = {
    Direction.TO_BOT: "→",
    Direction.FROM_BOT: "←",
    Direction.FROM_CLIENT: "⇢",
    Direction.TO_CLIENT: "⇠",
}
SEVERITY_COLOURS: dict[str, str] = {Severity.ERROR: "red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def excerpt(text: str | None, width: int = 48) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def activity_excerpt(activity: dict[str, Any], width: int = 48) -> str:
    """The text of an activity, or what stands for it when it has none (cards, invoke responses)."""
    if activity.get("text"):
        return json_quote(excerpt(activity["text"], width))
    body = activity.get("body") or {}
    attachments = body.get("attachments") or []
    if attachments:
        kinds = ", ".join(str(a.get("contentType", "?")).rsplit(".", 1)[-1] for a in attachments if isinstance(a, dict))
        return f"[{counted(len(attachments), 'attachment')}: {kinds}]"
    if activity.get("type") == "invokeResponse":
        value = body.get("value") or {}
        return excerpt(f"[invoke response {value.get('status')}: {json.dumps(value.get('body'))}]", width)
    if activity.get("name"):
        return f"[{activity['name']}]"
    return ""


def short_id(value: str | None, width: int = 22) -> str:
    if not value:
        return "-"
    return value if len(value) <= width else value[: width - 1] + "…"


def clock(at: float | None) -> str:
    if at is None:
        return "--:--:--.---"
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at % 1 * 1000):03d}"


class Console:
    def __init__(self, echo: Callable[[str], None] = click.echo, *, color: bool = False) -> None:
        self._echo = echo
        self.color = color
        self.bot_down = False  # the latest inbound exchange never reached the bot

    def echo(self, line: str) -> None:
        """One line out; text the output cannot encode (a lone surrogate, a byte that was not UTF-8, a
        terminal that is not UTF-8) is printed escaped rather than lost with its exchange; no bidi control
        reorders it (botproxy/present/visible.py)."""
        line = visible(line)
        try:
            self._echo(line)
        except UnicodeEncodeError:
            self._echo(line.encode("ascii", "backslashreplace").decode("ascii"))

    def style(self, text: str, **styles: Any) -> str:
        return click.style(text, **styles) if self.color else text

    # -- Observer ---------------------------------------------------------------------------

    def activity_seen(self, activity: dict[str, Any]) -> list[Row]:
        # A WebSocket frame has no exchange completing after it: print its activities as they arrive.
        if activity["source"] == "stream":
            self.echo(self.activity_line({"status": activity["status"], "duration_ms": None}, activity))
            for finding in activity.get("_findings", ()):
                self.echo(self.finding_line(finding))
        return []

    def exchange_done(self, exchange: dict[str, Any], activities: list[dict[str, Any]]) -> list[Row]:
        for activity in activities:
            self.echo(self.activity_line(exchange, activity))
            for finding in activity.get("_findings", ()):
                self.echo(self.finding_line(finding))
        if not activities:
            self.echo(self.exchange_line(exchange))
            for finding in exchange.get("_findings", ()):
                self.echo(self.finding_line(finding))
        if exchange.get("leg") == Leg.INBOUND:
            self._bot_reachable(exchange)
        return []

    def _bot_reachable(self, exchange: dict[str, Any]) -> None:
        """Say at once, and once per outage, that the bot cannot be reached: a recording of nothing but
        502s is no use, and the channel only shows its own error."""
        down = bool(exchange.get("error")) and exchange.get("closed") is not None
        if down and not self.bot_down:
            self.echo(self.style(
                f"warning: the bot did not answer ({exchange['error']}); the channel got "
                f"{exchange.get('status')}. Is the bot running at the --bot URL? Recording goes on.",
                fg="yellow", bold=True))
        elif not down and self.bot_down:
            self.echo(self.style("the bot answers again", fg="green"))
        self.bot_down = down

    # -- formatting -------------------------------------------------------------------------

    def activity_line(self, exchange: dict[str, Any], activity: dict[str, Any]) -> str:
        arrow = ARROWS.get(activity["direction"], "·")
        kind = activity["type"] or activity["route"]
        if activity["route"] in ("update_activity", "delete_activity"):
            kind = f"{activity['route'].split('_')[0]} {short_id(activity['activity_id'], 14)}"
        text = activity_excerpt(activity)
        return "  ".join(
            [
                self.style(clock(activity["observed_at"]), dim=True),
                self.style(arrow, fg="green" if arrow in "→⇢" else "blue", bold=True),
                f"{short_id(activity['conversation_id']):<22}",
                f"{kind:<18}",
                f"{text:<50}",
                self.status(exchange),
                f"{exchange['duration_ms']:>7.1f}ms" if exchange.get("duration_ms") is not None else "stream",
            ]
        ).rstrip()

    def exchange_line(self, exchange: dict[str, Any]) -> str:
        return "  ".join(
            [
                self.style(clock(exchange["started_at"]), dim=True),
                self.style("·", dim=True),
                f"{short_id(exchange['conversation_id']):<22}",
                f"{exchange['method']} {exchange['route']}",
                self.status(exchange),
                f"{exchange.get('duration_ms') or 0:.1f}ms",
            ]
        )

    def status(self, exchange: dict[str, Any]) -> str:
        status = exchange.get("status")
        text = str(status) if status is not None else "---"
        if exchange.get("error"):
            text += f" ({exchange['error']})"
        return self.style(text, fg="red" if (status or 500) >= 400 else None)

    def finding_line(self, finding: dict[str, Any]) -> str:
        severity = finding["severity"]
        label = self.style(f"{severity.upper():<7}", fg=SEVERITY_COLOURS.get(severity), bold=True)
        return f"{'':14}{label} {finding['rule']} {finding['name']}: {finding['message']}"

    def summary(self, summary: dict[str, Any]) -> None:
        self.echo("")
        self.echo(
            f"session {summary['name']!r} (id {summary['id']}): {counted(summary['exchanges'], 'exchange')}, "
            f"{counted(summary['activities'], 'activity', 'activities')}, "
            f"{counted(summary['conversations'], 'conversation')}, {counted(summary['errors'], 'recorder error')}"
        )
        if summary.get("not_stored"):
            self.echo(
                self.style(f"NOT STORED: {counted(summary['not_stored'], 'exchange')}", fg="red", bold=True)
                + " the proxy carried are not in the database (the traffic itself was not affected)"
            )
        for problem in summary.get("problems") or ():
            self.echo(f"  {problem}")
        if summary.get("unfinished"):
            unfinished = counted(summary["unfinished"], "exchange")
            self.echo(f"{unfinished} had no response when recording stopped (kept, unfinished)")
        if summary.get("findings"):
            details = command_hint(summary["db"], "check", summary["name"])
            self.echo(f"findings: {findings_words(summary['findings'])} (details: {details})")
        self.echo(f"saved to {summary['db']} (see it with: {command_hint(summary['db'], 'show', summary['name'])})")


def findings_words(counts: dict[str, int]) -> str:
    """Finding counts by severity in words, most severe first: `1 error, 3 info`, or `none`."""
    order = {severity: n for n, severity in enumerate(SEVERITY_COLOURS)}
    parts = [f"{n} {sev}" for sev, n in sorted(counts.items(), key=lambda item: order.get(item[0], 99)) if n]
    return ", ".join(parts) or "none"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], right: Collection[int] = ()) -> list[str]:
    """A plain-text table's lines, each column as wide as its widest cell (columns in `right` right-aligned)."""
    cells = [[str(cell) for cell in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return [
        "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        .rstrip()
        for row in cells
    ]


def json_quote(text: str) -> str:
    return '"' + text.replace('"', '\\"') + '"'


def recorder_observers(
    check_config: CheckConfig | None, console: bool, color: bool, session_id: int
) -> tuple[LiveChecks | None, list[Observer]]:
    """A recorder's observers: the live checks (none without a config), then the console (it prints the
    findings the checks put on an activity). For `worker.WorkerSession(observers=partial(recorder_observers,
    ...))`: the child process calls it with its session id."""
    from ..checks import Engine, LiveChecks  # here: the console alone (`botproxy show`) needs no engine

    checks = LiveChecks(Engine(check_config), session_id) if check_config is not None else None
    observers: list[Observer] = [checks] if checks is not None else []
    if console:
        observers.append(Console(echo=_stdout_line, color=color))
    return checks, observers


def _stdout_line(line: str) -> None:
    sys.stdout.write(line + "\n")  # the recorder process flushes once per batch
