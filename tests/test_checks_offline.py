"""Offline = live: the engine over a stored session (real SQLite) sees the same events in the same order as
it did inside the recorder, and so finds the same things."""

from __future__ import annotations

from typing import Any

import pytest
import test_checks_addressing as addressing_cases
import test_checks_ordering as ordering_cases
from checkkit import Wire, sent_id, store_rows
from test_checks_engine import sdk_session

from botproxy import store
from botproxy.checks import Engine, check_session, store_findings, stored_findings

SCENARIOS = {
    **{f"fires {c}": f for c, f in addressing_cases.FIRES.items()},
    **{f"fires {c}": f for c, f in ordering_cases.FIRES.items()},
    **{f"holds {c}": f for c, f in ordering_cases.HOLDS.items()},
}


class TracingEngine(Engine):
    """Remembers what it was fed, in order, as the engine would read it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trace: list[tuple[Any, ...]] = []

    def activity_seen(self, activity):
        self.trace.append(
            (
                "seen",
                activity["seq"],
                activity["status"],
                activity["activity_id"],
                activity["conversation_id"],
                activity["turn_seq"],
                activity["body"],
            )
        )
        return super().activity_seen(activity)

    def exchange_done(self, exchange, activities):
        self.trace.append(
            (
                "done",
                exchange["seq"],
                exchange["status"],
                exchange["opened"],
                exchange["closed"],
                [(a["seq"], a["status"], a["activity_id"], a["conversation_id"]) for a in activities],
            )
        )
        return super().exchange_done(exchange, activities)


def mixed_session() -> Wire:
    """Three conversations interleaved: concurrency, late decisions, a create, buffered replies, history."""
    w = Wire(engine_class=TracingEngine)
    one = w.inbound("hi", conversation={"id": "c1", "tenantId": "t1"})
    two = w.inbound("hello", conv="c2", deliveryMode="expectReplies")
    a, b = w.reply(one, "a"), w.reply(one, "b")
    guessed = w.update("c1", "srv-guess")
    w.done(b, body={"id": "srv-guess"})
    w.done(guessed)
    w.done(a)
    early = w.reply(one, "early", replyToId="in-future")
    w.done(early)
    w.done(w.reply(two, "async"))
    assert two.activity is not None
    w.done(two, 200, {"activities": [w.reply_body(two.activity, "buffered"), {"type": "typing"}]})
    w.done(one)
    created = w.done(
        w.create({"bot": {"id": "b1"}, "members": [{"id": "u1"}], "activity": {"type": "message"}})
    )
    assert created.response is not None
    w.turn("the future", id="in-future")
    three = w.inbound("in c3", conv=created.response["id"])
    w.done(w.reply(three, "ok"))
    gone = sent_id(w.done(w.reply(three, "bye")))
    w.done(w.delete(created.response["id"], gone))
    w.done(w.update(created.response["id"], gone))
    w.done(three)
    w.done(w.call("GET", w.url("c1").replace("/activities", "/members")), body=[])
    w.done(w.call("GET", w.service_url + "v3/conversations"), body={"conversations": []})
    w.done(w.call("POST", w.url("c1", suffix="/history"), {"activities": [{"type": "message"}]}), body={})
    w.done(w.send("c-nowhere", {"type": "message", "conversation": {"id": "c-nowhere"}}))
    return w


def replay(tmp_path, wire: Wire) -> tuple[list[dict], list[dict], TracingEngine]:
    db_path = tmp_path / "session.db"
    session_id = store_rows(db_path, wire.rows)
    db = store.open_db(db_path)
    engine = TracingEngine(strict=True)
    offline = [f.to_dict() for f in check_session(db, session_id, engine=engine)]
    stored = [f.to_dict() for f in stored_findings(db, session_id)]
    return offline, stored, engine


def test_mixed_session_offline_sees_the_same_events_and_finds_the_same(tmp_path):
    wire = mixed_session()
    offline, stored, engine = replay(tmp_path, wire)
    live = [f.to_dict() for f in wire.findings]
    assert {f["rule"] for f in live} >= {
        "BP-O01",
        "BP-O02",
        "BP-O07",
        "BP-O03",
        "BP-O05",
        "BP-A23",
        "BP-A29",
        "BP-A31",
        "BP-O13",
    }
    assert offline == live
    assert stored == live  # what LiveChecks stored during recording
    assert isinstance(wire.engine, TracingEngine)
    assert engine.trace == wire.engine.trace


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_rule_scenario_finds_the_same_offline(tmp_path, name):
    wire = SCENARIOS[name]()
    offline, stored, _ = replay(tmp_path, wire)
    assert offline == stored == [f.to_dict() for f in wire.findings]


def test_sdk_session_is_quiet_offline_too(tmp_path):
    offline, _, _ = replay(tmp_path, sdk_session())
    assert [f for f in offline if f["severity"] != "info"] == []
    assert offline  # the SDK's own quirks (BP-A04 info for the proactive id, ...) are still recorded


def test_store_findings_replaces_a_sessions_findings_only(tmp_path):
    db_path = tmp_path / "session.db"
    first = store_rows(db_path, FIRESTORE().rows, name="first")
    second = store_rows(db_path, FIRESTORE().rows, name="second")
    db = store.open_db(db_path)
    before_second = stored_findings(db, second)
    findings = list(check_session(db, first, engine=Engine(strict=True)))
    assert store_findings(db, first, findings[:1]) == 1
    assert stored_findings(db, first) == findings[:1]
    assert stored_findings(db, second) == before_second and before_second
    assert store_findings(db, first, iter(findings)) == len(findings)
    assert stored_findings(db, first) == findings


def FIRESTORE() -> Wire:  # noqa: N802  (a scenario with more than one finding)
    return addressing_cases.FIRES["BP-A01"]()


def test_exchanges_that_never_completed_are_skipped_like_live(tmp_path):
    # The recorder stores an exchange (and its activities) only when it completes; a stored row without
    # `closed` (an import, a crash) must not derail the merge.
    wire = Wire()
    wire.turn("hi")
    db_path = tmp_path / "session.db"
    session_id = store_rows(db_path, wire.rows)
    db = store.open_db(db_path)
    db.table("exchanges").insert(
        {
            "session_id": session_id,
            "seq": 99,
            "opened": 99,
            "closed": None,
            "leg": "outbound",
            "route": "other",
        }
    )
    assert list(check_session(db, session_id, engine=Engine(strict=True))) == []
