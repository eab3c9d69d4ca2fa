"""Bad surroundings get one line and exit 2 before any work: configuration files, output paths (issue 9 §3,
issue 10 §3)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from botproxy.cli import cli


def invoke(*args: str, cwd=None):
    runner = CliRunner()
    if cwd is None:
        return runner.invoke(cli, list(args))
    import os

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(cli, list(args))
    finally:
        os.chdir(old)


def one_line(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("botproxy: error: "), result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    return lines[0]


def test_every_command_turns_failures_into_one_line():
    """The CLI's one place for errors (cli.friendly_errors) wraps every command, those added later too."""
    unwrapped = [name for name, command in cli.commands.items() if not getattr(command.callback, "friendly_errors", 0)]
    assert unwrapped == []


CONFIGS = [
    ("botproxy.toml", b'[checks]\ndisable = ["BP-A15\xff"]\n', "not UTF-8"),
    ("botproxy.toml", b"[checks\n", "cannot read"),
    ("pyproject.toml", b"tool = 5\n", "[tool] must be a table"),
    ("pyproject.toml", b"[tool]\nbotproxy = 5\n", "[tool.botproxy] must be a table"),
    ("pyproject.toml", b'[tool.botproxy]\nchecks = "all"\n', "[tool.botproxy.checks] must be a table"),
    ("pyproject.toml", b"[tool.botproxy.checks]\ndisable = 5\n", "disable must be a list"),
    ("pyproject.toml", b"[tool.botproxy.checks]\nseverity = { BP-A01 = 5 }\n", "severity must be a table"),
    ("botproxy.toml", b"replay = [1, 2]\n", "[replay] must be a table"),
    ("botproxy.toml", b"[replay]\nignore = \"root['x']\"\n", "ignore must be a list"),
]


REPLAY_ONLY = {"[replay] must be a table", "ignore must be a list"}
CONFIG_CELLS = [(*c, command) for c in CONFIGS for command in ("rules", "check", "replay")
                if command == "replay" or c[2] not in REPLAY_ONLY]


@pytest.mark.parametrize(("name", "content", "says", "command"), CONFIG_CELLS,
                         ids=[f"{c[2]}-{c[3]}" for c in CONFIG_CELLS])
def test_a_bad_configuration_file_is_one_line(tmp_path, name, content, says, command):
    (tmp_path / name).write_bytes(content)
    args = {"rules": ["rules"], "check": ["check", "--db", "none.db"],
            "replay": ["replay", "latest", "--bot", "http://127.0.0.1:9/api/messages", "--db", "none.db"]}[command]
    line = one_line(invoke(*args, cwd=tmp_path))
    assert says in line and name in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize(
    "args",
    [
        ["replay", "latest", "--bot", "http://127.0.0.1:9/api/messages", "--junit", "/nonexistent/dir/x.xml"],
        ["replay", "latest", "--bot", "http://127.0.0.1:9/api/messages", "--report", "{tmp}/file/x.html"],
        ["report", "latest", "--out", "{tmp}/file/x.html"],
        ["export", "latest", "--out", "{tmp}/file/x.transcript"],
        ["export", "latest", "--format", "har", "--out", "{tmp}"],
    ],
    ids=["junit-no-folder", "replay-report-under-a-file", "report-under-a-file",
         "export-under-a-file", "har-into-a-folder"],
)
def test_an_output_path_that_cannot_be_written_is_said_before_any_work(tmp_path, args):
    (tmp_path / "file").write_text("a file, not a folder")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    # The database does not exist: an output problem said first proves it is checked before any work.
    line = one_line(invoke(*args, "--db", str(tmp_path / "missing.db")))
    assert "no database" not in line and ("--junit" in line or "--out" in line or "--report" in line), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
