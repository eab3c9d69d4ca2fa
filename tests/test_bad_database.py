"""A bad database × every command that opens one: one line on stderr, exit 2, no traceback, and nothing
written to a file that is not ours (issue 9 §3, issue 10 §3).

The commands run in-process through click's runner (a leaked exception would be `result.exception`);
the lock is held by a real second process.
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from botproxy import store
from botproxy.cli import cli

DEAD_BOT = "http://127.0.0.1:9/api/messages"  # the discard port: nothing listens there
TRANSCRIPT = [
    {
        "type": "message",
        "id": f"{who}{n}",
        "text": f"{who} says {n}",
        "channelId": "emulator",
        "serviceUrl": "https://connector.example/",
        "conversation": {"id": f"conv{n % 3}"},
        "from": {"id": who, "role": "user" if who == "u" else "bot"},
        "recipient": {"id": "b" if who == "u" else "u", "role": "bot" if who == "u" else "user"},
        **({"replyToId": f"u{n}"} if who == "b" else {}),
    }
    for n in range(40)
    for who in ("u", "b")
]


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env)


def assert_one_line_exit_2(result, *words: str) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("botproxy: error: "), result.output
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    assert not words or any(w in lines[0] for w in words), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def ours(tmp_path_factory) -> bytes:
    """The bytes of a real botproxy database holding one imported session (several pages)."""
    folder = tmp_path_factory.mktemp("ours")
    (folder / "t.transcript").write_text(json.dumps(TRANSCRIPT))
    db = folder / "ours.db"
    result = invoke("import", str(folder / "t.transcript"), "--session", "imported", "--db", str(db))
    assert result.exit_code == 0, result.output
    data = db.read_bytes()
    assert len(data) > 10 * 4096 and not Path(f"{db}-wal").exists()
    return data


def _sqlite(path: Path, *sql: str) -> None:
    conn = sqlite3.connect(path)
    for statement in sql:
        conn.execute(statement)
    conn.commit()
    conn.close()


def make_bad(kind: str, path: Path, ours: bytes) -> None:
    rng = random.Random(kind)
    if kind == "random bytes":
        path.write_bytes(rng.randbytes(16384))
    elif kind == "truncated":
        path.write_bytes(ours[: len(ours) // 3])
    elif kind == "damaged pages":  # the schema page intact, every other page garbage
        path.write_bytes(ours[:4096] + rng.randbytes(len(ours) - 4096))
    elif kind == "foreign, user_version 0":
        _sqlite(path, "create table notes (id integer primary key, body text)", "insert into notes values (1, 'x')")
    elif kind in ("foreign, user_version 2", "foreign, user_version 4"):
        _sqlite(path, "create table sessions (id integer primary key, token text)", "create table log (line text)",
                f"PRAGMA user_version = {kind[-1]}")
    elif kind == "foreign, other application_id":
        _sqlite(path, "create table t (x)", "PRAGMA application_id = 252006674")  # Fossil's
    elif kind == "newer schema":
        path.write_bytes(ours)
        _sqlite(path, f"PRAGMA user_version = {store.SCHEMA_VERSION + 1}")
    elif kind == "a directory":
        path.mkdir()
    elif kind == "empty file":
        path.write_bytes(b"")
    else:
        raise AssertionError(kind)


KINDS = {  # kind -> words one of which the line must hold
    "random bytes": ("not a botproxy database", "damaged"),
    "truncated": ("damaged",),
    "damaged pages": ("damaged",),
    "foreign, user_version 0": ("not a botproxy database",),
    "foreign, user_version 2": ("not a botproxy database",),
    "foreign, user_version 4": ("not a botproxy database",),
    "foreign, other application_id": ("not a botproxy database",),
    "newer schema": ("newer botproxy",),
    "a directory": ("is a folder",),
    "empty file": ("no botproxy data",),
}
WRITERS = {"record", "import", "demo"}  # these make a database of an empty file
TIMEOUT_ENV = {"BOTPROXY_LOCK_TIMEOUT": "1"}


def commands(db: Path, tmp: Path) -> dict[str, list[str]]:
    (tmp / "in.transcript").write_text(json.dumps(TRANSCRIPT[:2]))
    out = tmp / "out"
    return {
        "record": ["record", "--bot", DEAD_BOT, "--listen", "127.0.0.1:0", "--no-forward",
                   "--confdir", str(tmp / "mitm")],
        "sessions": ["sessions"],
        "show": ["show", "latest"],
        "check": ["check", "latest"],
        "replay": ["replay", "latest", "--bot", DEAD_BOT, "--report", str(out / "r.html")],
        "report": ["report", "latest", "--out", str(out / "r.html")],
        "import": ["import", str(tmp / "in.transcript")],
        "export": ["export", "latest", "--out", str(out / "x.transcript")],
        "demo": ["demo"],
    }


COMMANDS = ["record", "sessions", "show", "check", "replay", "report", "import", "export", "demo"]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


CELLS = [(k, c) for k in KINDS for c in COMMANDS if not (k == "empty file" and c in WRITERS)]


@pytest.mark.parametrize(("kind", "command"), CELLS, ids=[f"{k}-{c}" for k, c in CELLS])
def test_bad_database_is_one_line_exit_2_and_nothing_written(tmp_path, ours, kind, command):
    db_folder = tmp_path / "db"
    db_folder.mkdir()
    db = db_folder / "bad.db"
    make_bad(kind, db, ours)
    args = commands(db, tmp_path)[command]
    before = snapshot(db_folder)
    result = invoke(*args, "--db", str(db), env=TIMEOUT_ENV)
    assert_one_line_exit_2(result, *KINDS[kind])
    assert snapshot(db_folder) == before, "the bad database (or a -wal/-shm beside it) was written"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "empty file"])
@pytest.mark.parametrize("where", ["input", "output"])
def test_merge_refuses_a_bad_database_in_one_line_and_writes_nothing(tmp_path, ours, kind, where):
    db_folder = tmp_path / "db"
    db_folder.mkdir()
    bad, good = db_folder / "bad.db", db_folder / "good.db"
    make_bad(kind, bad, ours)
    good.write_bytes(ours)
    out = db_folder / "merged.db"
    args = ["merge", str(out), str(good), str(bad)] if where == "input" else ["merge", str(bad), str(good)]
    before = snapshot(db_folder)
    result = invoke(*args, env=TIMEOUT_ENV)
    assert_one_line_exit_2(result, *KINDS[kind])
    assert snapshot(db_folder) == before or where == "input" and not out.exists()
    assert snapshot(db_folder).get("bad.db") == before.get("bad.db")


@pytest.mark.parametrize("command", sorted(WRITERS - {"demo"}))
def test_an_empty_file_becomes_a_botproxy_database(tmp_path, command):
    db = tmp_path / "empty.db"
    db.write_bytes(b"")
    if command == "import":
        (tmp_path / "in.transcript").write_text(json.dumps(TRANSCRIPT[:2]))
        assert invoke("import", str(tmp_path / "in.transcript"), "--db", str(db)).exit_code == 0
    else:
        opened = store.open_db(db, create=True)
        opened.conn.close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == store.APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION


def test_a_database_from_before_application_id_is_still_ours(tmp_path, ours):
    db = tmp_path / "old.db"
    db.write_bytes(ours)
    _sqlite(db, "PRAGMA application_id = 0")
    result = invoke("sessions", "--db", str(db), "--json")
    assert result.exit_code == 0 and [s["name"] for s in json.loads(result.stdout)] == ["imported"]
    assert sqlite3.connect(db).execute("PRAGMA application_id").fetchone()[0] == store.APPLICATION_ID


# -- locked by another process -------------------------------------------------------------------

LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def locked_db(tmp_path, ours):
    db = tmp_path / "locked.db"
    db.write_bytes(ours)
    store.open_db(db).conn.close()  # in WAL mode, as botproxy leaves it
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        yield db
    finally:
        locker.stdin.close()
        locker.wait(30)


LOCK_WRITERS = ["record", "check", "import", "replay", "demo"]


@pytest.mark.slow
@pytest.mark.parametrize("command", LOCK_WRITERS)
def test_a_database_locked_by_another_process_waits_then_one_line(tmp_path, locked_db, command):
    before = locked_db.read_bytes()
    result = invoke(*commands(locked_db, tmp_path)[command], "--db", str(locked_db), env=TIMEOUT_ENV)
    assert_one_line_exit_2(result, "locked by another process")
    assert "waited 1 s" in result.stderr
    assert locked_db.read_bytes() == before
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_readers_read_a_locked_database(tmp_path, locked_db):
    result = invoke("sessions", "--db", str(locked_db), "--json", env=TIMEOUT_ENV)
    assert result.exit_code == 0 and [s["name"] for s in json.loads(result.stdout)] == ["imported"]


@pytest.mark.slow
def test_a_lock_released_within_the_wait_is_waited_for(tmp_path, ours):
    db = tmp_path / "briefly.db"
    db.write_bytes(ours)
    store.open_db(db).conn.close()
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert locker.stdout.readline().strip() == "locked"
    (tmp_path / "in.transcript").write_text(json.dumps(TRANSCRIPT[:2]))
    # The import waits on the lock (up to 60 s); closing the locker's stdin from a timer releases it.
    import threading

    threading.Timer(1.0, locker.stdin.close).start()
    result = invoke("import", str(tmp_path / "in.transcript"), "--session", "after-lock", "--db", str(db),
                    env={"BOTPROXY_LOCK_TIMEOUT": "60"})
    locker.wait(30)
    assert result.exit_code == 0, result.output
    names = [s["name"] for s in store.list_sessions(store.open_db(db))]
    assert names == ["imported", "after-lock"]


# -- the database file's mode ----------------------------------------------------------------------


def test_a_new_database_and_its_wal_and_shm_are_owner_only(tmp_path):
    (tmp_path / "in.transcript").write_text(json.dumps(TRANSCRIPT[:2]))
    db = tmp_path / "new.db"
    assert invoke("import", str(tmp_path / "in.transcript"), "--db", str(db)).exit_code == 0
    assert db.stat().st_mode & 0o777 == 0o600
    reader = store.open_db(db)  # a reader keeps the -wal and -shm files while it is open
    reader.execute("select count(*) from sessions").fetchone()
    for suffix in ("-wal", "-shm"):
        side = Path(f"{db}{suffix}")
        assert side.exists() and side.stat().st_mode & 0o777 == 0o600, suffix
    reader.conn.close()
