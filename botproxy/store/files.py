"""Where a database lives and how its troubles are said: the default file, the file of an open
connection, a command hint that works as printed, the lock wait, and one line for an sqlite failure."""

from __future__ import annotations

import os
import shlex
import sqlite3

import sqlite_utils

from ..settings import DEFAULTS

DEFAULT_DB = DEFAULTS.db


def db_path(db: sqlite_utils.Database) -> str:
    row = db.execute("PRAGMA database_list").fetchone()
    return row[2] if row else "database"


def command_hint(path: str, command: str, *args: str) -> str:
    """`botproxy COMMAND ARGS` as a hint to run next on the database at `path`: with `--db PATH` unless it
    is the default one, so that the hint works as printed; quoted for a shell."""
    words = ["botproxy", command, *args]
    if os.path.abspath(path) != os.path.abspath(DEFAULT_DB):
        words += ["--db", path]
    return shlex.join(words)


def lock_timeout() -> float:
    """Seconds to wait for a database another process holds locked (BOTPROXY_LOCK_TIMEOUT, default 30)."""
    try:
        return max(0.0, float(os.environ.get("BOTPROXY_LOCK_TIMEOUT", "30")))
    except ValueError:
        return 30.0

def describe_sqlite_error(path: str | os.PathLike[str], exc: sqlite3.Error) -> str:
    """One line for an sqlite failure on the database at `path`: what is wrong and what to do."""
    text = str(exc)
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        return (
            f"database {path} is locked by another process (waited {lock_timeout():g} s): close the program"
            " holding it or pass another --db (BOTPROXY_LOCK_TIMEOUT sets the wait)"
        )
    if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        return f"cannot write to database {path} ({text}): check the permissions of the file and its folder"
    if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        return f"{path} is damaged or not a botproxy database ({text}): pass --db with another file"
    if "disk" in lowered and "full" in lowered:
        return f"cannot write to database {path}: the disk is full"
    return f"cannot use database {path}: {text}"
