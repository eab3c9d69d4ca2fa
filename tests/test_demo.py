"""The README's first command: `botproxy demo` runs the whole loop on embedded defaults."""

import pytest
from click.testing import CliRunner

from botproxy import store
from botproxy.cli import cli


@pytest.mark.slow
def test_demo_records_checks_replays_and_reports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["demo", "--db", "demo.db", "--session", "demo"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.output
    assert '"You said: hello"' in out and "proactive hello" in out  # the live lines and the show output
    assert "session 'demo' (id 1): 23 exchanges, 25 activities, 1 conversation, 0 recorder errors" in out
    assert "checked: 2 info findings" in out
    assert "replayed 10 turns: 5 same, 5 changed, 0 errors (5 regressed" in out
    reports = [line.split("report: ", 1)[1] for line in out.splitlines() if line.startswith("report: ")]
    assert reports == ["reports/demo.html", "reports/demo-replay.html"]
    for path in reports:
        html = (tmp_path / path).read_text()
        assert "<script src" not in html and "You said: hello" in html
    db = store.open_db(tmp_path / "demo.db")
    assert [s["source"] for s in store.list_sessions(db)] == ["record", "replay", "replay"]
    assert db["replay_runs"].count == 1 and db["replay_turns"].count == 10
