"""The command line as a user meets it: real `botproxy` processes, signals, one-line errors, exit codes."""

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from botproxy.cli import cli
from botproxy.wire.service_url import ServiceUrlKeys

README = Path(__file__).parent.parent / "README.md"
BOTPROXY = [sys.executable, "-m", "botproxy"]


def run_cli(*args: str, env: dict | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_has_help_ending_with_an_example_and_is_in_the_readme(name):
    result = run_cli(name, "--help")
    assert result.exit_code == 0
    help_text = result.output.rstrip()
    assert "Example" in help_text and help_text.splitlines()[-1].strip().startswith("botproxy"), help_text
    assert f"botproxy {name}" in README.read_text(), f"README does not document `botproxy {name}`"


def test_top_level_help_lists_every_command():
    output = run_cli("--help").output
    assert all(name in output for name in cli.commands)


def test_unknown_session_missing_database_corrupt_database(tmp_path):
    missing = run_cli("show", "x", "--db", str(tmp_path / "nope.db"))
    assert missing.exit_code == 2 and missing.output.count("\n") == 1 and "no database" in missing.output
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not sqlite at all" * 100)
    result = run_cli("sessions", "--db", str(corrupt))
    assert result.exit_code == 2 and "not a database" in result.output and "Traceback" not in result.output


async def test_unknown_session_names_the_ones_there_are(recorders, connector, sample_bot):
    proxy = await recorders.start(sample_bot.url, name="known-session")
    await connector.send(proxy.endpoint, connector.activity(text="hello", conversation_id="c"))
    await recorders.stop(proxy)
    result = run_cli("show", "unknown", "--db", recorders.db_path)
    assert result.exit_code == 2 and "known-session" in result.output and result.output.count("\n") == 1
    shown = json.loads(run_cli("show", "latest", "--db", recorders.db_path, "--json").output)
    assert shown["session"]["name"] == "known-session"
    assert [a["text"] for a in shown["activities"]] == ["hello", "You said: hello"]
    required = {"seq", "direction", "method", "route", "status", "type", "text", "conversation_id", "activity_id",
                "reply_to_id", "from_id", "recipient_id", "service_url", "turn_seq", "body"}
    assert required <= set(shown["activities"][0])
    assert run_cli("show", "1", "--db", recorders.db_path).output.count("You said: hello") == 1
    listed = json.loads(run_cli("sessions", "--db", recorders.db_path, "--json").output)
    assert [(s["name"], s["activity_count"]) for s in listed] == [("known-session", 2)]


def test_bad_options_are_one_line_exit_2(tmp_path):
    bad_url = run_cli("record", "--bot", "ftp://x/api/messages", "--db", str(tmp_path / "a.db"))
    assert bad_url.exit_code == 2 and "http(s)" in bad_url.output and bad_url.output.count("\n") == 1
    bad_listen = run_cli("record", "--bot", "http://127.0.0.1:3978/api/messages", "--listen", "nowhere")
    assert bad_listen.exit_code == 2 and "HOST:PORT" in bad_listen.output


def test_port_in_use_is_one_line_exit_2(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("record", "--bot", "http://127.0.0.1:3978/api/messages", "--listen", f"127.0.0.1:{port}",
                         "--db", str(tmp_path / "x.db"))
    assert result.exit_code == 2 and "already in use" in result.output and result.output.count("\n") == 1


def test_unwritable_database_is_one_line_exit_2(tmp_path):
    result = run_cli("record", "--bot", "http://127.0.0.1:3978/api/messages", "--listen", "127.0.0.1:0",
                     "--no-forward", "--db", str(tmp_path / "no" / "such" / "folder" / "x.db"))
    assert result.exit_code == 2 and "does not exist" in result.output and result.output.count("\n") == 1


async def start_record_process(tmp_path: Path, bot_url: str, *extra: str):
    proc = await asyncio.create_subprocess_exec(
        *BOTPROXY, "record", "--bot", bot_url, "--listen", "127.0.0.1:0", "--no-forward", "--db",
        str(tmp_path / "cli.db"), "--session", "cli", "--confdir", str(tmp_path / "mitm"), *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    while True:  # the banner names the address to post to; reading it is the readiness signal
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line, (lines, (await proc.stderr.read()).decode())
        lines.append(line)
        if line.startswith("press Ctrl-C"):
            break
    endpoint = next(line.split("→")[1].strip() for line in lines if "channel →" in line)
    return proc, endpoint


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_record_process_prints_each_activity_and_a_summary_on_signal(tmp_path, connector, sample_bot, sig):
    proc, endpoint = await start_record_process(tmp_path, sample_bot.url)
    status, _ = await connector.send(endpoint, connector.activity(text="hello cli", conversation_id="cli-conv"))
    assert status == 201
    proc.send_signal(sig)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert '→  cli-conv' in text and '"hello cli"' in text and '"You said: hello cli"' in text
    assert "session 'cli' (id 1): 2 exchanges, 2 activities, 1 conversation, 0 recorder errors" in text
    assert "Traceback" not in err.decode()
    assert "listening beyond this machine" not in err.decode() + text  # loopback only: no warning


@pytest.mark.slow
async def test_authorization_header_prints_forward_proxy_instructions_once(tmp_path, connector, sample_bot):
    proc = await asyncio.create_subprocess_exec(
        *BOTPROXY, "record", "--bot", sample_bot.url, "--listen", "127.0.0.1:0", "--forward-listen", "127.0.0.1:0",
        "--db", str(tmp_path / "auth.db"), "--confdir", str(tmp_path / "mitm"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    banner = []
    while not banner or not banner[-1].startswith("press Ctrl-C"):
        banner.append((await asyncio.wait_for(proc.stdout.readline(), 60)).decode())
    endpoint = next(line.split("→")[1].strip() for line in banner if "channel →" in line)
    for _ in range(2):
        await connector.send(endpoint, connector.activity(text="x", conversation_id="c"),
                             headers={"Authorization": "Bearer not-a-real-token"})
    proc.send_signal(signal.SIGINT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    text = out.decode()
    credential = ServiceUrlKeys.in_confdir(tmp_path / "mitm").proxy_credential()  # the same confdir's
    assert text.count(f"export HTTPS_PROXY=http://{credential}@127.0.0.1:") == 1
    assert any(f"forward proxy for the bot's outbound calls: http://{credential}@127.0.0.1:" in line for line in banner)
    assert f"export REQUESTS_CA_BUNDLE={tmp_path / 'mitm' / 'mitmproxy-ca-cert.pem'}" in text
    assert "not-a-real-token" not in text


def test_botproxy_db_environment_variable(tmp_path):
    result = run_cli("sessions", env={"BOTPROXY_DB": str(tmp_path / "env.db")})
    assert result.exit_code == 2 and "env.db" in result.output


def test_readme_rule_table_is_generated_from_the_code():
    from botproxy.checks import rules_markdown

    text = README.read_text()
    table = text.split("<!-- rules:start -->\n", 1)[1].split("<!-- rules:end -->", 1)[0]
    assert table == rules_markdown(), "regenerate the README rule table from botproxy.checks.rules_markdown()"


@pytest.mark.slow
def test_a_reader_that_stops_early_gets_no_error_line():
    # `botproxy rules | head -1` printed "botproxy: error: Broken pipe" on stderr.
    import subprocess

    proc = subprocess.Popen([sys.executable, "-m", "botproxy", "rules"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before botproxy writes
    _, err = proc.communicate(timeout=60)
    assert err == b"" and proc.returncode == 1, err
