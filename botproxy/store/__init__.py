"""The SQLite store (through sqlite-utils): schema and migrations, opening, the one writer, the queries.

One module a job:
- `files`: where a database lives and how its troubles are said (`describe_sqlite_error`, `command_hint`);
- `schema`: the migrations (`PRAGMA user_version`), and the refusal of a database from a newer botproxy;
- `opening`: `open_db`, which tells a foreign, damaged or locked file apart before it writes anything;
- `writing`: the writer thread and the one way rows are stored, so that nothing is dropped uncounted;
- `queries`: sessions, activities and exchanges read back.

This `__init__` is a deliberate facade (as sqlite-utils' own `__init__` re-exports `Database`): callers
write `from botproxy import store; store.open_db(...)` and need not know which module holds a name.
Inside the package, modules import each other, never this facade; the layers contract in pyproject.toml
keeps them in the order above (files < schema < opening < writing, queries).
"""

from ..errors import SessionNotFound, StoreError  # as before the split: `except store.StoreError`
from .files import DEFAULT_DB, command_hint, db_path, describe_sqlite_error, lock_timeout
from .opening import open_db
from .queries import (
    ACTIVITY_COLUMNS,
    SESSION_FIELDS,
    SOURCES,
    activity_record,
    free_session_name,
    iter_activities,
    iter_exchanges,
    list_sessions,
    resolve_session,
    session_summary,
    stored_counts,
    turn_numbers,
)
from .schema import APPLICATION_ID, MIGRATIONS, ODD_TEXT_TABLES, SCHEMA_VERSION, migrate
from .writing import (
    BACKLOG_LIMIT,
    BUSY_TIMEOUT_MS,
    CLOSE_PATIENCE,
    RETRY_DELAY,
    SAY_EVERY,
    Job,
    Row,
    Rows,
    RowWriter,
    Stored,
    Writer,
    create_session,
    grouped,
    insert_rows,
    insert_session,
    is_transient,
    lost_text,
    replace_findings,
    run_jobs,
    set_session_fields,
    storable,
    store_rows,
    update_session,
)

__all__ = [
    "ACTIVITY_COLUMNS",
    "APPLICATION_ID",
    "BACKLOG_LIMIT",
    "BUSY_TIMEOUT_MS",
    "CLOSE_PATIENCE",
    "DEFAULT_DB",
    "MIGRATIONS",
    "ODD_TEXT_TABLES",
    "RETRY_DELAY",
    "SAY_EVERY",
    "SCHEMA_VERSION",
    "SESSION_FIELDS",
    "SOURCES",
    "activity_record",
    "command_hint",
    "create_session",
    "db_path",
    "describe_sqlite_error",
    "free_session_name",
    "grouped",
    "insert_rows",
    "insert_session",
    "is_transient",
    "iter_activities",
    "iter_exchanges",
    "Job",
    "list_sessions",
    "lock_timeout",
    "lost_text",
    "migrate",
    "open_db",
    "replace_findings",
    "resolve_session",
    "Row",
    "Rows",
    "RowWriter",
    "run_jobs",
    "session_summary",
    "SessionNotFound",
    "set_session_fields",
    "storable",
    "store_rows",
    "Stored",
    "stored_counts",
    "StoreError",
    "turn_numbers",
    "update_session",
    "Writer",
]
