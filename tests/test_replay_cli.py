"""`botproxy replay` as a user meets it: exit codes, one-line errors, --json, --junit, --report, config."""

from __future__ import annotations

import asyncio
import json
import re
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from botproxy.cli import cli
from botproxy.errors import UsageError
from botproxy.replay.plan import ReplayOptions
from botproxy.settings import load_replay_config


async def run_cli(*args: str):
    """The CLI runs its own event loop (asyncio.run), so it runs in a thread while the bots serve here."""
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args), catch_exceptions=False)


async def test_same_build_exits_0_and_prints_a_summary(demo_db, sample_bot):
    result = await run_cli("replay", "demo", "--db", demo_db, "--bot", sample_bot.url, "--quiet-ms", "50")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"replayed session 'demo' against {sample_bot.url}"
    assert lines[-1].startswith("run 1: 10 turns, 10 same, 0 changed, 0 errors") and "0 regressed" in lines[-1]


async def test_latest_is_the_latest_recorded_session_never_a_replay_s_own(demo_db, sample_bot):
    # Issue 11 (10): `replay latest` twice used to replay the first replay's candidate session.
    for _ in range(2):
        result = await run_cli("replay", "latest", "--db", demo_db, "--bot", sample_bot.url, "--quiet-ms", "50")
        assert result.exit_code == 0 and "replayed session 'demo'" in result.output
    assert (await run_cli("show", "--db", demo_db)).output.startswith("session 'demo' ")
    replays = (await run_cli("sessions", "--db", demo_db, "--source", "replay")).output.splitlines()
    assert [line.split()[1] for line in replays[1:]] == ["demo-replay-1-candidate", "demo-replay-2-candidate"]
    recorded = json.loads((await run_cli("sessions", "--db", demo_db, "--source", "record", "--json")).output)
    assert [r["name"] for r in recorded] == ["demo"]
    assert "no import sessions" in (await run_cli("sessions", "--db", demo_db, "--source", "import")).output


async def test_a_regression_exits_1_with_json_and_junit(demo_db, bot2, tmp_path):
    junit = tmp_path / "results.xml"
    result = await run_cli("replay", "demo", "--db", demo_db, "--bot", bot2.url, "--quiet-ms", "50", "--json",
                           "--junit", str(junit))
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert set(data) == {"run", "session", "summary", "turns", "proactive"}
    assert data["session"]["name"] == "demo" and data["run"]["candidate_url"] == bot2.url
    assert data["summary"]["turns"] == 10 and data["summary"]["changed"] == 5 and data["summary"]["regressed"] == 5
    for turn in data["turns"]:
        assert {"conversation_id", "index", "inbound_seq", "inbound_text", "status", "differences"} <= set(turn)
        assert turn["status"] in ("same", "changed", "error")
        for difference in turn["differences"]:
            assert {"kind", "path", "recorded", "replayed"} <= set(difference)
    card = next(t for t in data["turns"] if t["inbound_text"] == "card")
    assert card["differences"] == [{
        "kind": "changed", "path": "root['attachments'][0]['content']['title']", "recorded": "Sample card",
        "replayed": "Sample card (build 2)", "recorded_index": 0, "replayed_index": 0}]

    suite = ET.parse(junit).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == 10 and suite.get("tests") == "10" and suite.get("failures") == "5"
    # One numbering everywhere: the turn's position in its conversation, the inbound seq beside (as show).
    names = {c.get("name") for c in cases}
    assert all(any(f" turn {t['index']} (#{t['inbound_seq']}): " in n for n in names) for t in data["turns"])
    by_name = {re.sub(r" \(#\d+\)", "", c.get("name")): c for c in cases}
    assert by_name["demo-conversation turn 3: card"].find("failure").text == (
        "changed root['attachments'][0]['content']['title']: 'Sample card' → 'Sample card (build 2)'")
    assert by_name["demo-conversation turn 2: hello"].find("failure") is None
    assert "demo-conversation turn 9: test/echo" in by_name  # an invoke is named by its name


async def test_text_output_lists_each_changed_turn_with_its_differences(demo_db, bot2):
    result = await run_cli("replay", "demo", "--db", demo_db, "--bot", bot2.url, "--quiet-ms", "50")
    assert result.exit_code == 1
    seq = json.loads((await run_cli("show", "demo", "--db", demo_db, "--json")).output)["activities"]
    seven = [a["seq"] for a in seq if a["direction"] == "to_bot"][6]
    assert (f"  demo-conversation turn 7 (#{seven}) 'two': changed\n      reordered [1] → [0]: message 'second'"
            in result.output)
    show = (await run_cli("show", "demo", "--db", demo_db)).output
    assert f"  turn 7 (#{seven})\n" in show  # show numbers the turn the same way
    assert "turn 2 'hello'" not in result.output


async def test_a_bot_that_is_down_is_one_line_and_exit_2(demo_db, free_port):
    url = f"http://127.0.0.1:{free_port()}/api/messages"
    result = await run_cli("replay", "demo", "--db", demo_db, "--bot", url)
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert result.output == f"botproxy: error: cannot reach the bot at {url} (connection refused); is it running?\n"


async def test_unknown_session_and_bad_options_are_one_line_and_exit_2(demo_db, sample_bot):
    unknown = await run_cli("replay", "nope", "--db", demo_db, "--bot", sample_bot.url)
    assert unknown.exit_code == 2 and unknown.output.count("\n") == 1 and "no session 'nope'" in unknown.output
    bad_ignore = await run_cli("replay", "demo", "--db", demo_db, "--bot", sample_bot.url, "--ignore", "root['x")
    assert bad_ignore.exit_code == 2 and "neither a deepdiff path" in bad_ignore.output
    bad_url = await run_cli("replay", "demo", "--db", demo_db, "--bot", "localhost:3978")
    assert bad_url.exit_code == 2 and bad_url.output.count("\n") == 1 and "--bot" in bad_url.output


async def test_ignore_paths_come_from_the_project_config_too(tmp_path, recorders, connector, sample_bot, monkeypatch):
    proxy = await recorders.start(sample_bot.url, name="s")
    await connector.send(proxy.endpoint, connector.activity(text="random", conversation_id="c1"))
    await recorders.stop(proxy)
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[tool.botproxy.replay]\nignore = [\"root['value']['nonce']\"]\n")
    monkeypatch.chdir(project)
    result = await run_cli("replay", "s", "--db", recorders.db_path, "--bot", sample_bot.url, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["run"]["ignore"] == ["root['value']['nonce']"]


def test_config_tables_and_their_mistakes(tmp_path):
    assert load_replay_config(tmp_path).ignore == ()
    (tmp_path / "pyproject.toml").write_text("[tool.botproxy.replay]\nignore = ['a']\n")
    (tmp_path / "sub").mkdir()
    assert load_replay_config(tmp_path / "sub").ignore == ("a",)  # the nearest project upwards
    (tmp_path / "botproxy.toml").write_text("[replay]\nignore = ['b']\n")
    config = load_replay_config(tmp_path)
    assert config.ignore == ("b",) and config.source.endswith("botproxy.toml [replay]")  # botproxy.toml wins
    (tmp_path / "botproxy.toml").write_text("[replay]\nignored = ['b']\n")
    with pytest.raises(UsageError, match="unknown key"):
        load_replay_config(tmp_path)
    (tmp_path / "botproxy.toml").write_text("[replay]\nignore = 'b'\n")
    with pytest.raises(UsageError, match="must be a list"):
        load_replay_config(tmp_path)
    (tmp_path / "botproxy.toml").write_text("[replay\n")
    with pytest.raises(UsageError, match="cannot read"):
        load_replay_config(tmp_path)


async def test_report_is_written_by_the_report_module(demo_db, sample_bot, tmp_path):
    pytest.importorskip("botproxy.present.report")
    report = tmp_path / "run.html"
    result = await run_cli("replay", "demo", "--db", demo_db, "--bot", sample_bot.url, "--report", str(report))
    assert result.exit_code == 0
    assert report.is_file() and "demo" in report.read_text()


def test_cli_defaults_are_the_library_defaults():
    params = {p.name: p.default for p in cli.commands["replay"].params}
    library = ReplayOptions()
    assert params["concurrency"] == library.concurrency
    assert params["quiet_ms"] == library.quiet_ms and params["cap_ms"] == library.cap_ms
    assert params["timeout_s"] == library.timeout_s
