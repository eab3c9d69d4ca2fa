"""Opening a database: the file checked (a folder, unreadable, missing), created owner-only, told apart
from another application's SQLite file or a damaged one, the write lock waited for, then migrated. Every
failure is one StoreError line."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import sqlite_utils

from ..errors import StoreError
from .files import describe_sqlite_error, lock_timeout
from .schema import APPLICATION_ID, migrate, refuse_newer

_OUR_TABLES = frozenset({"sessions", "exchanges", "activities", "errors", "findings"})
_OUR_SESSION_COLUMNS = frozenset({"name", "source", "capture_mode", "botproxy_version"})



def open_db(path: str | os.PathLike[str], *, create: bool = False, write: bool = False) -> sqlite_utils.Database:
    """Open (and migrate) a botproxy database; every failure is a one-line StoreError.

    `create`: make the file when it is missing (owner-only, it holds traffic) and accept an empty SQLite
    file. `create` or `write`: wait for the write lock now (BOTPROXY_LOCK_TIMEOUT), so a database that
    cannot be written is said before any work. A file that is not ours is refused before anything is
    written to it."""
    path = Path(path)
    _check_path(path, create)
    conn = None
    try:
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=lock_timeout())
        db = sqlite_utils.Database(conn)
        fresh = _recognise(db, path, create)
        if fresh or create or write:
            _wait_for_write_lock(db)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        migrate(db)
        return db
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        raise StoreError(describe_sqlite_error(path, exc)) from exc
    except BaseException:
        if conn is not None:
            conn.close()
        raise


def _check_path(path: Path, create: bool) -> None:
    if path.is_dir():
        raise StoreError(f"{path} is a folder, not a database file: pass --db with a file name")
    if path.exists():
        if not path.is_file():
            raise StoreError(f"{path} is not a regular file: pass --db with a database file")
        if not os.access(path, os.R_OK):
            raise StoreError(f"cannot read database {path}: permission denied")
        return
    if not create:
        raise StoreError(f"no database at {path}: record a session first (botproxy record) or pass --db")
    folder = path.parent
    if not folder.is_dir():
        raise StoreError(f"cannot create database {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(f"cannot create database {path}: folder {folder} is not writable")
    try:  # owner-only from the first byte: the database holds traffic (SQLite gives -wal/-shm the same mode)
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreError(f"cannot create database {path}: {exc.strerror or exc}") from exc


def _recognise(db: sqlite_utils.Database, path: Path, create: bool) -> bool:
    """True for an empty file (ours to fill when `create`); raise StoreError for a file that is not ours."""
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    version = db.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in db.execute("select name from sqlite_master where type = 'table'")}
    if app_id == 0 and version == 0 and not tables:
        if not create:
            raise StoreError(f"{path} holds no botproxy data yet: record a session first (botproxy record)")
        return True
    if app_id == APPLICATION_ID or (app_id == 0 and _looks_like_ours(db, tables)):
        refuse_newer(db, version)
        return False
    raise StoreError(
        f"{path} is another application's SQLite file, not a botproxy database: botproxy leaves it alone;"
        " pass --db with a new file name"
    )


def _looks_like_ours(db: sqlite_utils.Database, tables: set[str]) -> bool:
    """A database of a botproxy from before `application_id` was set."""
    if not _OUR_TABLES <= tables:
        return False
    columns = {r[1] for r in db.execute("PRAGMA table_info(sessions)")}
    return _OUR_SESSION_COLUMNS <= columns


def _wait_for_write_lock(db: sqlite_utils.Database) -> None:
    """Take and release the write lock: waits for another writer up to the busy timeout, fails on a
    read-only file or folder."""
    db.execute("BEGIN IMMEDIATE")
    db.execute("ROLLBACK")
