"""What the commands print for a person to read and to run next: `import`'s summary, `sessions`' table,
the hints that name a further command (they keep `--db`), a HAR import's start and bot URL."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from botproxy import store
from botproxy.cli import cli
from botproxy.present.console import Console

BOT_URL = "http://127.0.0.1:3978/api/messages"
SERVICE_URL = "http://127.0.0.1:9000/"
FIRST_START = "2026-11-02T09:15:00.123Z"
LONG_NAME = "a-session-name-longer-than-twenty-eight-characters"


def run_cli(*args: str, cwd: Path | None = None) -> Any:
    runner = CliRunner()
    if cwd is None:
        return runner.invoke(cli, list(args), catch_exceptions=False)
    with runner.isolated_filesystem(temp_dir=cwd):
        return runner.invoke(cli, list(args), catch_exceptions=False)


def entry(started: str, method: str, url: str, body: dict[str, Any], status: int, answer: Any) -> dict[str, Any]:
    """A HAR entry as a browser or mitmproxy's hardump writes it: no `_botproxy` field."""
    json_type = [{"name": "Content-Type", "value": "application/json"}]
    return {
        "startedDateTime": started,
        "time": 12.5,
        "request": {
            "method": method,
            "url": url,
            "httpVersion": "HTTP/1.1",
            "headers": json_type,
            "postData": {"mimeType": "application/json", "text": json.dumps(body)},
        },
        "response": {
            "status": status,
            "headers": json_type if answer is not None else [],
            "content": {"mimeType": "application/json", "text": json.dumps(answer) if answer is not None else ""},
        },
    }


def foreign_har(path: Path) -> Path:
    """A user's message to the bot and the bot's reply through the Connector, recorded a month ago."""
    inbound = {
        "type": "message",
        "id": "act-1",
        "text": "hello",
        "serviceUrl": SERVICE_URL,
        "channelId": "emulator",
        "from": {"id": "user1", "role": "user"},
        "recipient": {"id": "bot1", "role": "bot"},
        "conversation": {"id": "conv1"},
    }
    reply = {
        "type": "message",
        "text": "You said: hello",
        "replyToId": "act-1",
        "from": {"id": "bot1", "role": "bot"},
        "recipient": {"id": "user1", "role": "user"},
        "conversation": {"id": "conv1"},
    }
    reply_url = f"{SERVICE_URL}v3/conversations/conv1/activities/act-1"
    entries = [
        # HAR lists entries in the order they were seen; the reply is sent while the inbound POST is open.
        entry(FIRST_START, "POST", BOT_URL, inbound, 200, None),
        entry("2026-11-02T09:15:00.130Z", "POST", reply_url, reply, 200, {"id": "reply-1"}),
    ]
    path.write_text(json.dumps({"log": {"version": "1.2", "creator": {"name": "browser"}, "entries": entries}}))
    return path


def test_har_import_starts_at_its_first_entry_and_knows_the_bot(tmp_path: Path) -> None:
    db_path = str(tmp_path / "corpus.db")
    result = run_cli("import", str(foreign_har(tmp_path / "capture.har")), "--session", "from-har", "--db", db_path)
    assert result.exit_code == 0, result.output
    session = store.resolve_session(store.open_db(db_path), "from-har")
    assert session["started_at"] == FIRST_START
    assert session["bot_url"] == BOT_URL
    assert session["source"] == "import"
    assert session["ended_at"] > FIRST_START  # the import's own time, after the capture


def test_import_summary_is_words_and_its_hint_keeps_the_database(tmp_path: Path) -> None:
    db_path = str(tmp_path / "corpus.db")
    result = run_cli("import", str(foreign_har(tmp_path / "capture.har")), "--session", "from-har", "--db", db_path)
    assert result.exit_code == 0, result.output
    summary = json.loads(
        run_cli("import", str(tmp_path / "capture.har"), "--session", "again", "--db", db_path, "--json").output
    )
    assert summary["findings"], "the capture should give at least one finding to count"
    words = ", ".join(f"{n} {sev}" for sev in ("error", "warning", "info") if (n := summary["findings"].get(sev)))
    (line,) = result.output.splitlines()
    assert line == (
        f"session 'from-har' (id 1): 2 activities, 1 conversation, findings: {words} "
        f"(details: botproxy check from-har --db {shlex.quote(db_path)})"
    )
    assert "{" not in line


def test_recording_summary_hints_keep_a_non_default_database() -> None:
    lines: list[str] = []
    summary = {
        "id": 4, "name": "login flow", "db": "runs/ci.db", "exchanges": 2, "activities": 2, "conversations": 1,
        "errors": 0, "findings": {"info": 3, "warning": 1},
    }  # fmt: skip
    Console(lines.append).summary(summary)
    assert "findings: 1 warning, 3 info (details: botproxy check 'login flow' --db runs/ci.db)" in lines
    assert "saved to runs/ci.db (see it with: botproxy show 'login flow' --db runs/ci.db)" in lines
    lines.clear()
    Console(lines.append).summary({**summary, "db": store.DEFAULT_DB, "name": "rec-1"})
    assert "findings: 1 warning, 3 info (details: botproxy check rec-1)" in lines  # the default needs no --db


def test_unknown_session_hint_keeps_the_database(tmp_path: Path) -> None:
    db_path = str(tmp_path / "corpus.db")
    run_cli("import", str(foreign_har(tmp_path / "capture.har")), "--session", "from-har", "--db", db_path)
    result = CliRunner().invoke(cli, ["show", "nosuch", "--db", db_path])
    assert result.exit_code == 2
    assert result.output.rstrip().endswith(f"(list them with botproxy sessions --db {shlex.quote(db_path)})")


def test_sessions_columns_fit_their_content_and_show_the_source(tmp_path: Path) -> None:
    db_path = str(tmp_path / "corpus.db")
    har = foreign_har(tmp_path / "capture.har")
    for name in (LONG_NAME, "short"):
        assert run_cli("import", str(har), "--session", name, "--db", db_path).exit_code == 0
    header, *rows = run_cli("sessions", "--db", db_path).output.splitlines()
    assert len(rows) == 2
    columns = ["name", "source", "started", "exch", "acts"]
    starts = {c: header.index(c) for c in columns}
    for row, name in zip(rows, (LONG_NAME, "short"), strict=True):
        # Each value starts in its header's column (left-aligned ones) whatever the name's length...
        assert row[starts["name"] :].startswith(name)
        assert row[starts["source"] :].startswith("import ")
        assert row[starts["started"] :].startswith(FIRST_START)
        # ...and right-aligned counts end where their header ends.
        assert row[: starts["exch"] + len("exch")].endswith(" 2")
        assert row[: starts["acts"] + len("acts")].endswith(" 2")
    assert header.index("source") == header.index("name") + len(LONG_NAME) + 2
