"""`botproxy record` in bad surroundings: one line before any traffic is accepted; what it records about
where it listened; a bot answer that is not JSON (issue 9 §3)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from botproxy.standins.server import serve

BOTPROXY = [sys.executable, "-m", "botproxy"]
NOBODY = 65534


# -- a bot answer that is not JSON -----------------------------------------------------------------


@pytest.fixture
async def html_bot():
    """A bot whose framework answers some activities with an HTML error page, others with JSON or nothing."""

    async def answer(request: web.Request) -> web.Response:
        activity = await request.json()
        if activity.get("text") == "crash":
            return web.Response(status=500, text="<html><h1>500 Internal Server Error</h1></html>",
                                content_type="text/html")
        if activity.get("type") == "invoke":
            return web.json_response({"status": 200, "body": {"ok": True}})
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/api/messages", answer)
    runner, port = await serve(app)
    yield f"http://127.0.0.1:{port}/api/messages"
    await runner.cleanup()


async def test_a_bot_answer_that_is_not_json_is_flagged_malformed(recorders, html_bot):
    proxy = await recorders.start(html_bot)
    base = {"serviceUrl": "http://127.0.0.1:9/", "conversation": {"id": "c"}, "from": {"id": "u"},
            "recipient": {"id": "b"}}
    answers = []
    async with aiohttp.ClientSession() as session:
        for extra in ({"type": "message", "text": "crash"}, {"type": "invoke", "name": "x"},
                      {"type": "message", "text": "fine"}):
            async with session.post(proxy.endpoint, json={**base, **extra}) as resp:
                answers.append((resp.status, await resp.text()))
    await recorders.stop(proxy)
    assert [status for status, _ in answers] == [500, 200, 202]
    assert "<h1>" in answers[0][1]  # the bot's own answer reached the channel
    exchanges = recorders.exchanges()
    assert [(e["status"], e["response_malformed"]) for e in exchanges] == [(500, 1), (200, 0), (202, 0)]
    assert "<h1>500" in exchanges[0]["response_body"]


# -- where it listened -------------------------------------------------------------------------------


async def test_the_session_row_says_where_the_recorder_listened(recorders, html_bot):
    proxy = await recorders.start(html_bot, forward=True)
    row = dict(recorders.db()["sessions"].get(1))
    assert row["listen"] == f"127.0.0.1:{proxy.listen[1]}" and proxy.listen[1] != 0
    assert row["forward_listen"] == f"127.0.0.1:{proxy.forward_listen[1]}"
    await recorders.stop(proxy)


@pytest.mark.slow
async def test_botproxy_record_fills_in_listen_and_forward_listen(tmp_path, html_bot):
    db = tmp_path / "cli.db"
    proc = await asyncio.create_subprocess_exec(
        *BOTPROXY, "record", "--bot", html_bot, "--listen", "127.0.0.1:0", "--forward-listen", "127.0.0.1:0",
        "--db", str(db), "--session", "where", "--confdir", str(tmp_path / "mitm"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    try:
        while not lines or not lines[-1].startswith("press Ctrl-C"):
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, (lines, (await proc.stderr.read()).decode())
            lines.append(line)
        endpoint = next(line.split("→")[1].strip() for line in lines if "channel →" in line)
        # The printed proxy URL carries its credential (user:password@host:port); the row only the address.
        forward = next(line.split("http://")[1].strip().split("@")[-1] for line in lines if "forward proxy" in line)
        row = sqlite3.connect(db).execute("select listen, forward_listen from sessions where name = 'where'").fetchone()
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.communicate(), 60)
    assert row == (endpoint.split("//")[1].split("/")[0], forward)
    assert not row[0].endswith(":0") and not row[1].endswith(":0")


# -- what cannot be written (as an unprivileged user: root writes anywhere) ----------------------------


AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


@pytest.fixture
def nobody_dir():
    """A folder an unprivileged user owns (pytest's tmp_path is root's and closed to others)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run the command as another user (root writes anywhere)")
    probe = subprocess.run([*AS_NOBODY, sys.executable, "-c", "import botproxy"], capture_output=True, text=True,
                           cwd="/tmp")
    if probe.returncode != 0:  # e.g. an interpreter whose shared library lives in root's home
        pytest.skip(f"this Python cannot run as another user: {probe.stderr.strip()[:120]}")
    folder = Path(tempfile.mkdtemp(prefix="botproxy-nobody-"))
    folder.chmod(0o755)
    os.chown(folder, NOBODY, NOBODY)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run_as_nobody(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(cwd), "BOTPROXY_LOCK_TIMEOUT": "1"}
    return subprocess.run([*AS_NOBODY, *BOTPROXY, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("botproxy: error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout and "press Ctrl-C" not in proc.stdout
    return lines[0]


def _root_owned(path: Path, mode: int, *, folder: bool) -> Path:
    path.mkdir() if folder else path.write_bytes(b"")
    os.chown(path, 0, 0)
    path.chmod(mode)
    return path


RECORD = ["record", "--bot", "http://127.0.0.1:9/api/messages", "--listen", "127.0.0.1:0", "--no-forward"]


@pytest.mark.slow
def test_a_read_only_confdir_is_one_line_before_any_traffic(nobody_dir):
    confdir = _root_owned(nobody_dir / "mitm", 0o555, folder=True)
    line = one_line(run_as_nobody(*RECORD, "--confdir", str(confdir), "--db", "x.db", cwd=nobody_dir))
    assert "--confdir" in line and "not writable" in line
    assert not (nobody_dir / "x.db").exists()  # said before the session was opened


@pytest.mark.slow
def test_a_confdir_holding_the_ca_may_be_read_only(nobody_dir):
    """mitmproxy only reads an existing CA: a read-only confdir with one is fine (the check is not too eager)."""
    from botproxy.record.mitm.proxy import check_confdir

    confdir = nobody_dir / "ca"
    confdir.mkdir()
    (confdir / "mitmproxy-ca.pem").write_text("a CA")
    confdir.chmod(0o555)
    check_confdir(confdir)


@pytest.mark.slow
def test_a_folder_that_cannot_be_written_is_one_line(nobody_dir):
    folder = _root_owned(nobody_dir / "ro", 0o555, folder=True)
    line = one_line(run_as_nobody(*RECORD, "--confdir", "mitm", "--db", str(folder / "x.db"), cwd=nobody_dir))
    assert "not writable" in line and str(folder) in line


@pytest.mark.slow
@pytest.mark.parametrize("command", ["record", "import", "check"])
def test_a_database_that_cannot_be_written_is_one_line(nobody_dir, command):
    db = nobody_dir / "theirs.db"
    conn = sqlite3.connect(db)  # a real botproxy database, owned by root, readable by all
    conn.close()
    from botproxy import store

    opened = store.open_db(db, create=True)
    store.create_session(opened, {"name": "s", "started_at": "now"})
    opened.conn.commit()
    opened.execute("PRAGMA journal_mode=DELETE")  # no -wal/-shm for the other user to need
    opened.conn.close()
    db.chmod(0o644)
    before = db.read_bytes()
    (nobody_dir / "t.transcript").write_text('[{"type": "message", "text": "hi", "from": {"id": "u", "role": "user"}}]')
    args = {"record": [*RECORD, "--confdir", "mitm"], "import": ["import", "t.transcript"], "check": ["check", "s"]}
    line = one_line(run_as_nobody(*args[command], "--db", str(db), cwd=nobody_dir))
    assert "cannot write" in line or "permission denied" in line, line
    assert db.read_bytes() == before
