"""The database and the tools people use on SQLite: full-text search on activity text."""

import json

import sqlite_utils

from botproxy import store
from botproxy.interop import import_files


def test_full_text_search_finds_an_activity_by_its_text(tmp_path):
    base = {"conversation": {"id": "c"}, "channelId": "test", "serviceUrl": "https://connector.example/"}
    transcript = [
        {
            **base,
            "type": "message",
            "id": "1",
            "text": "what is the weather in Lisbon",
            "from": {"id": "u", "role": "user"},
        },
        {**base, "type": "message", "text": "Sunny in Lisbon today", "from": {"id": "b", "role": "bot"}},
        {**base, "type": "message", "id": "2", "text": "thanks", "from": {"id": "u", "role": "user"}},
    ]
    path = tmp_path / "c.transcript"
    path.write_text(json.dumps(transcript))
    db_path = tmp_path / "t.db"
    import_files(str(db_path), [path], "weather")
    db = sqlite_utils.Database(db_path)
    assert db["activities"].detect_fts() == "activities_fts"
    found = [r["text"] for r in db["activities"].search("lisbon", columns=["text"])]
    assert sorted(found) == ["Sunny in Lisbon today", "what is the weather in Lisbon"]
    # The README's SQL recipe.
    sql = (
        "select a.session_id, a.seq, a.direction, a.text from activities_fts"
        " join activities a on a.rowid = activities_fts.rowid where activities_fts match ? order by a.seq"
    )
    assert [r[3] for r in db.execute(sql, ["sunny"]).fetchall()] == ["Sunny in Lisbon today"]


def test_a_database_from_before_full_text_search_gets_it_with_existing_rows(tmp_path):
    db_path = tmp_path / "old.db"
    db = sqlite_utils.Database(db_path)
    for migration in store.MIGRATIONS[:3]:
        migration(db)
    db.execute("PRAGMA user_version = 3")
    db["sessions"].insert({"id": 1, "name": "old"})
    db["activities"].insert({"session_id": 1, "seq": 1, "text": "an old hello"})
    db.conn.commit()
    db.conn.close()
    migrated = store.open_db(db_path)
    assert [r["seq"] for r in migrated["activities"].search("hello")] == [1]
