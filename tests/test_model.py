"""The shared vocabulary (botproxy/model.py) against what the code writes."""

from __future__ import annotations

import re
from typing import get_type_hints

from botproxy import model, store


def test_the_row_types_are_the_tables_columns(tmp_path):
    db = store.open_db(tmp_path / "m.db", create=True, write=True)
    tables = {name for name in db.table_names() if not name.startswith("activities_fts")}
    assert tables == set(model.ROWS), "a table without a row type in botproxy/model.py (or the reverse)"
    for table, row in model.ROWS.items():
        columns = set(db[table].columns_dict)
        assert set(get_type_hints(row)) == columns, f"{row.__name__} (botproxy/model.py) is not the columns of {table}"


def test_enums_are_their_strings():
    assert model.Direction.TO_BOT == "to_bot" and f"{model.Direction.TO_CLIENT}" == "to_client"
    assert model.SEVERITIES == ("error", "warning", "info")


def test_utc_now_is_iso_milliseconds_z():
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", model.utc_now())
