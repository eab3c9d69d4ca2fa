"""A replay run as JUnit XML, so CI systems (GitHub, GitLab, Jenkins, Azure Pipelines) show it natively.

One testcase per replayed turn, named ``<conversation> turn <index> (#<inbound seq>): <inbound text>``
(the numbering `botproxy show` uses): a `changed` turn
is a <failure> listing its differences, an `error` turn an <error> (or <skipped> when the recording
itself was incomplete, which is no fault of the build under test).

A corpus run (several sessions) is one <testsuite> per session, its turns as testcases: GitHub's test
reporters, GitLab, Jenkins and Azure Pipelines all group a file's cases by testsuite (and Jenkins by
classname, ``<session>.<conversation>``), so each session is one line to open, and the failing
testcase is the regressed turn itself, its differences as the message.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import OutputError
from ..replay.diff import describe
from ..turns import turn_label


def case_name(turn: Mapping[str, Any], limit: int = 80) -> str:
    text = " ".join(str(turn.get("inbound_text") or turn.get("inbound_name") or turn.get("inbound_type") or "").split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{turn['conversation_id']} {turn_label(turn['index'], turn.get('inbound_seq'))}: {text}"


def to_xml(result: Mapping[str, Any]) -> ET.ElementTree:
    """The tree for a `ReplayResult.to_json()` dict, or a corpus run's (`CorpusResult.to_json()`: one
    testsuite per session, the totals on <testsuites>)."""
    sessions = result["sessions"] if "sessions" in result else [result]
    root = ET.Element("testsuites", {"name": "botproxy replay"})
    totals = [_suite(root, session) for session in sessions]
    root.attrib.update({name: _total(totals, name) for name in ("tests", "failures", "errors", "skipped")})
    root.set("time", f"{sum(float(t['time']) for t in totals):.3f}")
    ET.indent(root)
    return ET.ElementTree(root)


def _total(counts: list[dict[str, str]], name: str) -> str:
    return str(sum(int(c[name]) for c in counts))


def _suite(root: ET.Element, result: Mapping[str, Any]) -> dict[str, str]:
    """One session's run as a <testsuite> with a testcase per turn; returns its counts."""
    session = result["session"]["name"]
    run = result["run"]
    turns = result["turns"]
    failures = sum(1 for t in turns if t["status"] == "changed")
    errors = sum(1 for t in turns if t["status"] == "error" and t["regressed"])
    skipped = sum(1 for t in turns if t["status"] == "error" and not t["regressed"])
    seconds = sum((t.get("duration_ms") or 0) for t in turns) / 1000
    counts = {"tests": str(len(turns)), "failures": str(failures), "errors": str(errors), "skipped": str(skipped),
              "time": f"{seconds:.3f}"}
    label = f" [{run['candidate_label']}]" if run.get("candidate_label") else ""
    suite = ET.SubElement(root, "testsuite", {"name": f"botproxy replay {session}{label}", **counts,
                                              "timestamp": run.get("started_at") or ""})
    properties = ET.SubElement(suite, "properties")
    named = [("run", run["id"]), ("candidate", run["candidate_url"]), ("baseline", run.get("baseline_url") or ""),
             ("noise_paths", ", ".join(run.get("noise_paths") or []))]
    named += [(name, run[name]) for name in ("candidate_label", "baseline_label", "shard", "parent_id")
              if run.get(name) is not None]
    for name, value in named:
        ET.SubElement(properties, "property", {"name": name, "value": str(value)})
    for turn in turns:
        case = ET.SubElement(suite, "testcase", {
            "classname": f"{session}.{turn['conversation_id']}",
            "name": case_name(turn),
            "time": f"{(turn.get('duration_ms') or 0) / 1000:.3f}",
        })
        if turn["status"] == "changed":
            lines = [describe(d) for d in turn["differences"]]
            lines += [f"new finding {f['rule']} ({f['severity']}): {f['message']}" for f in turn["new_findings"]
                      if not f.get("noise")]
            failure = ET.SubElement(case, "failure", {"message": _message(lines), "type": "changed"})
            failure.text = "\n".join(lines)
        elif turn["status"] == "error" and turn["regressed"]:
            ET.SubElement(case, "error", {"message": turn["error"] or "error", "type": "error"}).text = turn["error"]
        elif turn["status"] == "error":
            ET.SubElement(case, "skipped", {"message": turn["error"] or "incomplete recording"})
        noise = [describe(d) for d in turn.get("noise") or []]
        if noise:
            ET.SubElement(case, "system-out").text = "not counted (the baseline differs there too):\n" + "\n".join(
                noise)
    return counts


def _message(lines: list[str]) -> str:
    first = lines[0] if lines else "changed"
    more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
    return first + more


def write_junit(result: Mapping[str, Any], path: str | Path) -> None:
    try:
        to_xml(result).write(path, encoding="utf-8", xml_declaration=True)
    except OSError as exc:
        raise OutputError(f"cannot write JUnit XML {path}: {exc.strerror or exc}") from exc
