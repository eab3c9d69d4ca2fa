"""A replayed turn as text for people: its head line, then one line per difference or new finding.

`botproxy replay` prints these for each turn that is not the same; the pytest plugin's failure message
is the same lines (botproxy/pytest_plugin.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..replay.diff import describe
from ..turns import turn_label


def turn_lines(turn: Mapping[str, Any], indent: str = "  ") -> list[str]:
    """The lines of one turn of `ReplayResult.to_json()["turns"]` (a `same` turn is its head only)."""
    text = " ".join(str(turn["inbound_text"] or turn.get("inbound_name") or turn["inbound_type"] or "").split())
    head = f"{indent}{turn['conversation_id']} {turn_label(turn['index'], turn['inbound_seq'])} {text[:40]!r}: " \
        f"{turn['status']}"
    if turn["status"] == "error":
        return [f"{head}: {turn['error']}" + ("" if turn["regressed"] else " (not counted)")]
    lines = [head]
    detail = indent + "    "
    if turn.get("ambiguous"):
        lines.append(f"{detail}(the recording linked some replies to this turn by wire order only: several turns "
                     "were open and the replies named none)")
    lines += [f"{detail}{describe(d)}" for d in turn["differences"]]
    lines += [
        f"{detail}new finding {f['rule']} ({f['severity']}): {f['message']}"
        for f in turn["new_findings"]
        if not f["noise"]
    ]
    return lines
