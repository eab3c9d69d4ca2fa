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
