"""`botproxy check` and `botproxy rules` as a user runs them, over a session recorded through the real
proxy from a bot that makes one addressing mistake."""

import json

import pytest
from click.testing import CliRunner
from wirebot import WireBot

from botproxy import store
from botproxy.checks import Engine
from botproxy.cli import cli
from botproxy.record.mitm.proxy import ProxyConfig, RecordingProxy
from botproxy.record.session import LiveSession
from botproxy.standins.connector import ConnectorChannel


@pytest.fixture
async def mistaken_session(tmp_path):
    """A session with one BP-A01 error, recorded with live checks the way `botproxy record` runs them."""
    connector = ConnectorChannel()
    await connector.start()
    bot = WireBot()
    await bot.start()
    db_path = str(tmp_path / "check.db")
    live = LiveSession(db_path, name="mistakes", engine=Engine(), bot_url=bot.url)
    proxy = RecordingProxy(ProxyConfig(bot_url=bot.url, listen="127.0.0.1:0", forward_listen=None,
                                       confdir=str(tmp_path / "mitm")), live)
    await proxy.start()
    try:
        for text in ("hello", "mistake:BP-A01"):
            status, _ = await connector.send(proxy.endpoint, connector.activity(text=text, conversation_id="conv-1"))
            assert status == 200
    finally:
        summary = await proxy.stop()
        await bot.stop()
        await connector.stop()
    assert bot.failures == []
    return db_path, summary


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.slow
async def test_check_reports_the_mistake_at_the_bots_activity_and_agrees_with_live(mistaken_session):
    db_path, summary = mistaken_session
    assert summary["findings"].get("error") == 1
    db = store.open_db(db_path)
    live = sorted((r["seq"], r["rule"]) for r in db["findings"].rows)

    result = run("check", "mistakes", "--db", db_path, "--json")
    assert result.exit_code == 1  # an error exists and --fail-on defaults to error
    payload = json.loads(result.output)
    errors = [f for f in payload["findings"] if f["severity"] == "error"]
    assert [f["rule"] for f in errors] == ["BP-A01"]
    [bad] = errors
    acts = {a["seq"]: a for a in store.iter_activities(db, 1)}
    assert acts[bad["seq"]]["direction"] == "from_bot"  # the bot's activity, not the inbound it answered
    assert acts[bad["turn_seq"]]["text"] == "mistake:BP-A01"
    assert {"rule", "name", "severity", "seq", "conversation_id", "message", "fix", "excerpt"} <= set(bad)
    offline = sorted((r["seq"], r["rule"]) for r in store.open_db(db_path)["findings"].rows)
    assert offline == live  # re-running replaced the stored findings with the same ones

    text = run("check", "mistakes", "--db", db_path)
    assert text.exit_code == 1
    assert "conversation conv-1" in text.output and "ERROR   BP-A01 path-conversation-mismatch" in text.output
    assert "fix:" in text.output
    # The turn is named as `show` names it: its number in the conversation, its inbound seq beside.
    assert f"  turn 2 (#{bad['turn_seq']})\n" in text.output
    assert f"  turn 2 (#{bad['turn_seq']})\n" in run("show", "mistakes", "--db", db_path).output


@pytest.mark.slow
async def test_fail_on_and_disable_decide_the_exit_code(mistaken_session):
    db_path, _ = mistaken_session
    assert run("check", "--db", db_path, "--disable", "BP-A01").exit_code == 0
    assert run("check", "--db", db_path, "--disable", "BP-A01", "--fail-on", "info").exit_code in (0, 1)
    unknown = run("check", "--db", db_path, "--disable", "BP-A99")
    assert unknown.exit_code == 2 and unknown.output.count("\n") == 1 and "BP-A99" in unknown.output


@pytest.mark.slow
async def test_project_configuration_regrades_and_disables(mistaken_session, tmp_path, monkeypatch):
    db_path, _ = mistaken_session
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[tool.botproxy.checks]\nseverity = { "BP-A01" = "info" }\n')
    monkeypatch.chdir(project)
    regraded = json.loads(run("check", "--db", db_path, "--json").output)
    assert [f["severity"] for f in regraded["findings"] if f["rule"] == "BP-A01"] == ["info"]
    assert run("check", "--db", db_path).exit_code == 0
    (project / "botproxy.toml").write_text('[checks]\ndisable = ["BP-A01"]\n')
    assert all(f["rule"] != "BP-A01" for f in json.loads(run("check", "--db", db_path, "--json").output)["findings"])
    (project / "botproxy.toml").write_text('[checks]\nseverity = { "BP-A01" = "fatal" }\n')
    bad = run("check", "--db", db_path)
    assert bad.exit_code == 2 and "fatal" in bad.output and bad.output.count("\n") == 1


def test_rules_lists_every_rule_with_explanation_and_fix():
    from botproxy.checks import RULES

    listed = json.loads(run("rules", "--json").output)
    assert [r["code"] for r in listed] == sorted(RULES)
    assert all(r["explanation"] and r["fix"] and r["severity"] in ("error", "warning", "info") for r in listed)
    text = run("rules").output
    assert "BP-A01 path-conversation-mismatch [error]" in text and "fix:" in text
