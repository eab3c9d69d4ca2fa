import json
import sqlite3
import threading

import pytest

from botproxy import store
from botproxy.errors import SessionNotFound, StoreError


def new_writer(tmp_path, name="s"):
    writer = store.Writer(str(tmp_path / "t.db"), {"name": name, "started_at": "now"})
    writer.start()
    return writer


def test_writer_runs_jobs_in_order_on_its_own_thread_and_flushes_on_close(tmp_path):
    writer = new_writer(tmp_path)
    threads = set()

    def job(n):
        def run():
            threads.add(threading.current_thread().name)
            return [("errors", {"session_id": writer.session_id, "at": float(n), "stage": "x", "message": str(n)})]
        return run

    for n in range(5000):
        writer.submit(job(n))
    writer.close()
    rows = list(store.open_db(tmp_path / "t.db").query("select at from errors order by rowid"))
    assert [r["at"] for r in rows] == [float(n) for n in range(5000)]
    assert threads == {"botproxy-writer"}


def test_a_failing_job_costs_only_itself(tmp_path):
    writer = new_writer(tmp_path)
    writer.submit(lambda: 1 / 0)
    writer.put("errors", {"session_id": writer.session_id, "at": 1.0, "stage": "kept", "message": "m"})
    writer.close()
    assert [r["stage"] for r in store.open_db(tmp_path / "t.db")["errors"].rows] == ["kept"]


def test_session_names_are_unique(tmp_path):
    new_writer(tmp_path, "dup").close()
    with pytest.raises(StoreError, match="already exists"):
        new_writer(tmp_path, "dup")


def test_resolve_by_name_id_and_latest(tmp_path):
    for name in ("first", "second"):
        new_writer(tmp_path, name).close()
    db = store.open_db(tmp_path / "t.db")
    assert store.resolve_session(db, "first")["id"] == 1
    assert store.resolve_session(db, "2")["name"] == "second"
    assert store.resolve_session(db, "latest")["name"] == "second"
    with pytest.raises(SessionNotFound, match="recent sessions: second, first"):
        store.resolve_session(db, "third")


def test_an_old_database_is_migrated_and_a_newer_one_refused(tmp_path):
    path = tmp_path / "old.db"
    sqlite3.connect(path).close()  # an empty SQLite file: schema version 0
    db = store.open_db(path, create=True)
    assert db.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    assert {"sessions", "exchanges", "activities", "errors", "findings"} <= set(db.table_names())
    db.execute(f"PRAGMA user_version = {store.SCHEMA_VERSION + 1}")
    db.conn.close()
    with pytest.raises(StoreError, match="newer botproxy"):
        store.open_db(path)


def test_sqlite_file_that_is_not_ours(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("create table t (x)")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError):
        store.open_db(path)


def test_read_commands_never_write_into_a_foreign_sqlite_file(tmp_path):
    path = tmp_path / "foreign.db"
    conn = sqlite3.connect(path)
    conn.execute("create table notes (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a botproxy database"):
        store.open_db(path)
    tables = [r[0] for r in sqlite3.connect(path).execute("select name from sqlite_master where type='table'")]
    assert tables == ["notes"]


def test_one_bad_row_costs_only_itself_and_odd_text_is_stored_escaped_and_exact(tmp_path):
    db = store.open_db(tmp_path / "r.db", create=True)
    session_id = store.create_session(db, {"name": "r", "started_at": "now"})
    rows = store.RowWriter(db)

    def error(n, message):
        return {"session_id": session_id, "at": float(n), "stage": "x", "message": message}

    batch = [error(1, "fine"), error(2, {"a dict": "SQLite cannot bind"}), error(3, "half \ud83d an emoji"),
             error(4, "a byte \udcff that was not UTF-8"), error(5, "fine too")]
    rows.write({"errors": batch})
    assert rows.lost == {"errors": 1} and rows.escaped == 2 and not rows.waiting
    kept = list(db.query("select at, message, odd_text from errors order by at"))
    assert [r["at"] for r in kept] == [1.0, 3.0, 4.0, 5.0]
    assert kept[1]["message"] == "half \\ud83d an emoji" and kept[0]["odd_text"] is None
    assert json.loads(kept[1]["odd_text"]) == {"message": "half \ud83d an emoji"}
    original = json.loads(kept[2]["odd_text"])["message"]
    assert original.encode("utf-8", "surrogateescape") == b"a byte \xff that was not UTF-8"


def test_rows_wait_while_the_storage_fails_and_land_in_order_when_it_works_again(tmp_path):
    db = store.open_db(tmp_path / "r.db", create=True)
    session_id = store.create_session(db, {"name": "r", "started_at": "now"})
    rows = store.RowWriter(db)
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
    for n in range(50):
        rows.write({"errors": [{"session_id": session_id, "at": float(n), "stage": "x", "message": "m" * 2000}]})
    assert rows.waiting and rows.failing == "database or disk is full" and not rows.lost
    db.execute("PRAGMA max_page_count = 1073741823")
    assert rows.flush() and not rows.waiting
    assert [r["at"] for r in db.query("select at from errors order by rowid")] == [float(n) for n in range(50)]


def test_the_backlog_is_bounded_and_what_it_drops_is_counted(tmp_path):
    db = store.open_db(tmp_path / "r.db", create=True)
    session_id = store.create_session(db, {"name": "r", "started_at": "now"})
    rows = store.RowWriter(db, limit=50_000)
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
    for n in range(100):
        rows.write({"exchanges": [{"session_id": session_id, "seq": n + 1, "url": "u" * 2000}]})
    landed = db["exchanges"].count  # before the last page filled up
    assert rows.backlog_size <= 50_000 and rows.lost["exchanges"] == 100 - landed - len(rows.backlog) > 0
    rows.close(patience=0)
    assert rows.lost["exchanges"] == 100 - landed and not rows.waiting


def test_close_waits_for_a_slow_writer_that_gets_on(tmp_path):
    # A fixed 30 s join once returned with a large backlog unwritten (and uncounted): close now waits
    # as long as the writer makes progress, here ten jobs of 0.3 s against a 1 s stall limit.
    writer = new_writer(tmp_path)

    def slow(n):
        def run():
            threading.Event().wait(0.3)
            return [("errors", {"session_id": writer.session_id, "at": float(n), "stage": "slow", "message": "m"})]
        return run

    for n in range(10):
        writer.submit(slow(n))
    writer.close(stall=1.0)
    assert writer.abandoned == 0
    assert store.open_db(tmp_path / "t.db")["errors"].count == 10


def test_close_gives_up_on_a_stuck_writer_and_counts_what_it_leaves(tmp_path, caplog):
    writer = new_writer(tmp_path)
    release = threading.Event()
    writer.submit(lambda: release.wait() and [])
    for n in range(3):
        writer.put("errors", {"session_id": writer.session_id, "at": float(n), "stage": "x", "message": "m"})
    writer.close(stall=0.5)
    assert writer.abandoned == 4  # the stuck job and the three rows behind it
    assert "no progress for 0.5 s; 4 records left unwritten" in caplog.text
    release.set()
