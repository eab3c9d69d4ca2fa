"""Time in a session report: per turn, a small waterfall of its HTTP exchanges.

One bar per exchange, from the moment its request was seen to the moment its answer was (the
recorder's `exchanges.started_at` / `ended_at`): the inbound exchange (the channel's POST, open until
the bot answered it) and each Connector call the bot made for the turn. Positions are shares of the
turn's time span, so concurrent sends overlap, a later send answered first ends left of an earlier one
(an inversion), and a reply sent after the inbound exchange was answered starts right of its end.
The report draws the bars with CSS (`left`/`width` in percent of the track): no script, nothing fetched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlite_utils

from .. import store

COLUMNS = ("seq", "started_at", "ended_at", "leg", "route", "method", "status", "error", "conversation_id")


def session_exchanges(db: sqlite_utils.Database, session_id: int) -> dict[int, dict[str, Any]]:
    """The timing columns of a session's exchanges, by seq (no bodies: a large session stays cheap)."""
    return {row["seq"]: row for row in store.iter_exchanges(db, session_id, columns=COLUMNS)}


def unowned_calls(exchanges: Mapping[int, dict[str, Any]], owned: set[int],
                  inbound: Iterable[tuple[int, Any]]) -> dict[int, list[int]]:
    """Connector calls that carried no activity (GET members, a token request, ...) given to the turn whose
    inbound exchange was open in the same conversation when they started (the latest such turn).
    `inbound` is (turn key, inbound exchange seq) pairs; returns turn key -> exchange seqs."""
    windows: dict[Any, list[tuple[float, float, Any]]] = {}
    for key, seq in inbound:
        e = exchanges.get(seq)
        if e is None or e["started_at"] is None:
            continue
        end = e["ended_at"] if e["ended_at"] is not None else float("inf")
        windows.setdefault(e["conversation_id"], []).append((e["started_at"], end, key))
    given: dict[int, list[int]] = {}
    for seq, e in exchanges.items():
        if seq in owned or e["leg"] != "outbound" or e["started_at"] is None:
            continue
        open_then = [w for w in windows.get(e["conversation_id"], ()) if w[0] <= e["started_at"] <= w[1]]
        if open_then:
            given.setdefault(max(open_then, key=lambda w: w[0])[2], []).append(seq)
    return given


def waterfall(rows: Iterable[dict[str, Any]], labels: Mapping[int, str],
              targets: Mapping[int, int]) -> dict[str, Any] | None:
    """The bars of one turn's exchanges (`session_exchanges` rows), or None when none has a start time.

    `labels` names an exchange (exchange seq -> a few words), `targets` is the activity it carried (for the
    bar's link). Each bar: left and width in percent of the span, its offset and duration in ms, and what
    it shows about time: `open` (never answered: drawn to the end), `late` (a Connector call that started
    after the inbound exchange was answered), `overlaps` (another Connector call of the turn was in flight),
    `overtook` (the name of an earlier-started call it finished before). A bar is named by the activity its
    exchange carried (`#12`, as everywhere in the report), else by the exchange (`exchange 7`)."""
    timed = sorted((r for r in rows if r.get("started_at") is not None), key=lambda r: (r["started_at"], r["seq"]))
    if not timed:
        return None
    t0 = timed[0]["started_at"]
    t1 = max(r["ended_at"] if r["ended_at"] is not None else r["started_at"] for r in timed)
    span = max(t1 - t0, 0.001)  # a turn of one instant still draws its bars
    inbound_end = next((r["ended_at"] for r in timed if r["leg"] == "inbound"), None)
    calls = [r for r in timed if r["leg"] != "inbound"]
    def name(seq: int) -> str:
        return f"#{targets[seq]}" if targets.get(seq) is not None else f"exchange {seq}"

    bars = []
    for r in timed:
        start, end = r["started_at"], r["ended_at"]
        inbound = r["leg"] == "inbound"
        others = [o for o in calls if o is not r]
        overtook = [o["seq"] for o in others if end is not None and o["started_at"] < start
                    and (o["ended_at"] is None or o["ended_at"] > end)]
        overlaps = any(o["started_at"] < (end if end is not None else t1) and start < (o["ended_at"] or t1)
                       for o in others) and not inbound
        failed = bool(r["error"]) or end is None or (isinstance(r["status"], int) and r["status"] >= 400)
        bars.append({
            "seq": r["seq"],
            "name": name(r["seq"]),
            "target": targets.get(r["seq"]),
            "label": labels.get(r["seq"]) or str(r["route"] or r["method"] or ""),
            "inbound": inbound,
            "route": str(r["route"] or ""),
            "status": "" if r["status"] is None else str(r["status"]),
            "left": f"{(start - t0) / span * 100:.3f}",
            "width": f"{((end if end is not None else t1) - start) / span * 100:.3f}",
            "offset_ms": f"{(start - t0) * 1000:.1f}",
            "ms": "" if end is None else f"{(end - start) * 1000:.1f}",
            "open": end is None,
            "failed": failed,
            "late": not inbound and inbound_end is not None and start > inbound_end,
            "overlaps": overlaps,
            "overtook": name(overtook[0]) if overtook and not inbound else None,
            "severity": None,  # the worst finding about this exchange, set by the report
        })
    return {"span_ms": f"{span * 1000:.1f}", "bars": bars}
