"""The benchmark's session generator writes what the recorder writes, and what it writes is correct SDK
traffic except for the mistakes it was asked to make."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

from checkkit import Wire, store_rows

from botproxy import store
from botproxy.checks import Engine, check_session

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gen_session = load("gen_session")


def findings(db_path: Path, session_id: int) -> Counter[tuple[str, str]]:
    db = store.open_db(db_path)
    return Counter((f.rule, f.severity) for f in check_session(db, session_id, engine=Engine(strict=True)))


def test_generated_rows_have_the_recorders_columns(tmp_path):
    result = gen_session.generate(tmp_path / "gen.db", 500, conversations=20)
    wire = Wire()
    wire.turn("hi")
    store_rows(tmp_path / "wire.db", wire.rows)
    gen_db, wire_db = store.open_db(tmp_path / "gen.db"), store.open_db(tmp_path / "wire.db")
    for table in ("activities", "exchanges"):
        generated = {k for row in gen_db.table(table).rows for k, v in row.items() if v is not None}
        recorded = {k for row in wire_db.table(table).rows for k, v in row.items() if v is not None}
        assert recorded - generated <= {"request_body_raw", "response_body_raw"}, table
    assert result["activities"] >= 500


def test_generated_traffic_is_clean_without_mistakes(tmp_path):
    result = gen_session.generate(tmp_path / "gen.db", 3000, conversations=50, seed=3)
    found = findings(tmp_path / "gen.db", result["session_id"])
    assert {rule for rule, severity in found if severity != "info"} == set(), found
    assert found[("BP-A04", "info")] > 0  # the SDK's proactive ids are in there


def test_generated_mistakes_are_found(tmp_path):
    result = gen_session.generate(tmp_path / "gen.db", 3000, conversations=50, seed=4, mistake_rate=0.2)
    found = findings(tmp_path / "gen.db", result["session_id"])
    loud = {rule for rule, severity in found if severity != "info"}
    assert loud == {"BP-A04", "BP-A07", "BP-A08", "BP-A11", "BP-A13"}, found
    assert sum(result["mistakes"].values()) >= sum(
        n for (rule, severity), n in found.items() if severity != "info"
    )
