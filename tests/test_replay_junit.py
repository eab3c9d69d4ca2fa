"""junit.py on a made-up run: one testcase per turn, the right element for each outcome."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from botproxy.present.junit import case_name, write_junit


def turn(index, status, *, regressed=False, error=None, differences=(), noise=(), findings=(), text="hi"):
    return {"conversation_id": "c1", "index": index, "inbound_text": text, "inbound_type": "message",
            "inbound_name": None, "status": status, "regressed": regressed, "error": error,
            "duration_ms": 12.5, "differences": list(differences), "noise": list(noise),
            "new_findings": list(findings)}


RUN = {
    "run": {"id": 7, "started_at": "2025-01-01T00:00:00Z", "candidate_url": "http://c", "baseline_url": "http://b",
            "noise_paths": ["root['value']['nonce']"]},
    "session": {"name": "login-flow"},
    "turns": [
        turn(1, "same", noise=[{"kind": "changed", "path": "root['value']['nonce']", "recorded": "a",
                                "replayed": "b"}]),
        turn(2, "changed", regressed=True,
             differences=[{"kind": "changed", "path": "root['text']", "recorded": "a", "replayed": "b"},
                          {"kind": "missing", "path": "[1]", "recorded": {"type": "typing"}, "replayed": None}],
             findings=[{"rule": "BP-A15", "severity": "info", "message": "the bot set timestamp", "noise": False}]),
        turn(3, "error", regressed=True, error="timeout: the bot did not answer within 30 s"),
        turn(4, "error", error="incomplete recording: the bot was not reached (refused)", text="x " * 80),
    ],
}


def test_each_turn_is_a_testcase_with_the_element_its_outcome_needs(tmp_path):
    path = tmp_path / "results.xml"
    write_junit(RUN, path)
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    [suite] = root.findall("testsuite")
    counts = [suite.get(name) for name in ("tests", "failures", "errors", "skipped")]
    assert counts == ["4", "1", "1", "1"]
    assert suite.get("name") == "botproxy replay login-flow" and suite.get("time") == "0.050"
    properties = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert properties["baseline"] == "http://b" and properties["noise_paths"] == "root['value']['nonce']"
    same, changed, error, incomplete = suite.findall("testcase")
    assert same.get("name") == "c1 turn 1: hi" and same.get("classname") == "login-flow.c1"
    assert list(same) == [same.find("system-out")] and "root['value']['nonce']" in same.find("system-out").text
    failure = changed.find("failure")
    assert failure.get("message") == "changed root['text']: 'a' → 'b' (and 2 more)"
    assert failure.text.splitlines() == ["changed root['text']: 'a' → 'b'", "missing [1]: typing",
                                         "new finding BP-A15 (info): the bot set timestamp"]
    assert error.find("error").get("message") == "timeout: the bot did not answer within 30 s"
    assert incomplete.find("skipped").get("message").startswith("incomplete recording")
    assert len(incomplete.get("name")) <= len("c1 turn 4: ") + 80


def test_names_fall_back_to_the_activity_name_or_type():
    invoke = {"conversation_id": "c", "index": 2, "inbound_text": None, "inbound_name": "signin/verifyState",
              "inbound_type": "invoke"}
    assert case_name(invoke) == "c turn 2: signin/verifyState"
    assert case_name({"conversation_id": "c", "index": 1, "inbound_text": "  two\nlines ",
                          "inbound_type": "message"}) == "c turn 1: two lines"
