"""Planted secrets (issue 10 §2): every kind of secret botproxy promises to remove is sent, each as its own
string, through `botproxy record -v` (the real embedded mitmproxy and the recorder child process) between a
connector stand-in, a Direct Line client and the SDK sample bot. Then every artefact is produced (the
database with its -wal/-shm files, the console, `show`, `show --json`, `check --json`, HAR and transcript
exports, `report`, and a replay of the session against the same bot with its HTML report and JUnit) and
none of the strings may appear in any of them, while the traffic they travelled in is there."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from botproxy.standins.directline import DirectLineChannel

BOTPROXY = [sys.executable, "-m", "botproxy"]
# Only letters, digits and `-`: what a report escapes or a URL encodes could hide a leak from the search.
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwbGFudGVkLWp3dCJ9.cGxhbnRlZC1qd3Qtc2lnbmF0dXJlLXg5"
PLANTED = {
    "authorization header repeated in its body": "AuthBody-opaque-3f9c1e7a",
    "token in a query string that fails a hook": "QueryTb-token-81d2c4",
    "api_key= query parameter": "ApiKeyQ-5b7e2d",
    "key= query parameter": "KeyQ-0c4e9b1f",
    "sig= query parameter": "SigQ-7a2d5c9e",
    "X-Amz-Signature= query parameter": "AmzSigQ-e1b4f8a2",
    "JWT in a body that is not UTF-8": JWT,
    "short password repeated in the text": "Pw7x9Qz",
    "client_secret= in a text/plain body": "FormSecret-9e1f2a",
    "password= in a text/plain body": "FormPw-4c8d6b",
    "accessToken key": "AccessTok-2b5e8c1d",
    "clientSecret key": "ClientSec-6f3a9d2e",
    "apiKey key": "ApiKeyJ-8d1c4b7f",
    "X-Api-Key header": "XApiKey-3c6f9a1e",
    "Ocp-Apim-Subscription-Key header": "ApimKey-7e2b5d8c",
    "X-Functions-Key header": "FuncKey-1a4d7e9b",
    "user:password@ in a URL": "UserInfoPw-5d8a2c",
    "Azure SAS sig in an attachment URL": "SasSig-9b3e6f1a",
    "password= in a connector's error answer": "RespPw-2e7c4a9d",
    "Direct Line secret": "DlSecret-4f8b2e6a1c9d",
    "Azure Functions key (?code=) in the bot's URL": "FnCode-8c3e1b7d",
}
FUNCTION_KEY = "?code=" + PLANTED["Azure Functions key (?code=) in the bot's URL"]


async def run(*args: str, check: bool = True) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *BOTPROXY, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    if check:
        assert proc.returncode in (0, 1), (args, out.decode(), err.decode())
        assert "Traceback" not in err.decode(), (args, err.decode())
    return proc.returncode, out.decode(), err.decode()


async def start_recorder(tmp_path: Path, bot_url: str, directline: str) -> tuple[Any, dict[str, str], list[str]]:
    proc = await asyncio.create_subprocess_exec(
        *BOTPROXY, "record", "-v", "--bot", bot_url, "--listen", "127.0.0.1:0", "--no-forward",
        "--directline", directline, "--directline-listen", "127.0.0.1:0", "--db", str(tmp_path / "planted.db"),
        "--session", "planted", "--confdir", str(tmp_path / "mitm"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    banner: list[str] = []
    while not banner or not banner[-1].startswith("press Ctrl-C"):  # the banner is the readiness signal
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line, (banner, (await proc.stderr.read()).decode())
        banner.append(line)
    endpoints = {
        "bot": next(line.split("→")[1].strip() for line in banner if "channel →" in line),
        "directline": next(line.split("→")[1].strip() for line in banner if "Direct Line clients →" in line),
    }
    return proc, endpoints, banner


async def read_until(proc: Any, done: Any) -> list[str]:
    lines: list[str] = []
    while not done(lines):
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line, lines
        lines.append(line)
    return lines


async def plant_connector_traffic(connector: Any, endpoint: str, sample_bot: Any) -> None:
    """The connector stand-in (a channel) posts to the recorder in every way a secret can travel."""
    p = PLANTED
    send = connector.send
    conv = "planted-conv"
    base = endpoint.split("/api/messages")[0]

    # An opaque bearer token (no JWT shape to catch it) that the body repeats. The bot refuses it: 401.
    await send(endpoint, connector.activity(text=f"my token is {p['authorization header repeated in its body']}",
                                            conversation_id=conv),
               headers={"Authorization": f"Bearer {p['authorization header repeated in its body']}"})
    # Secret query parameters on an ordinary message, and API-key headers.
    query = (f"?api_key={p['api_key= query parameter']}&key={p['key= query parameter']}"
             f"&sig={p['sig= query parameter']}&X-Amz-Signature={p['X-Amz-Signature= query parameter']}")
    status, _ = await send(endpoint + query, connector.activity(text="hello with keys", conversation_id=conv),
                           headers={"X-Api-Key": p["X-Api-Key header"],
                                    "Ocp-Apim-Subscription-Key": p["Ocp-Apim-Subscription-Key header"],
                                    "X-Functions-Key": p["X-Functions-Key header"]})
    assert status == 201
    # A 7-character password in a secret field, repeated in the text: the bot echoes it to the connector.
    short = p["short password repeated in the text"]
    status, _ = await send(endpoint, connector.activity(text=f"my password is {short}", conversation_id=conv,
                                                        channelData={"password": short}))
    assert status == 201
    # A URL with user:password@ in the text (echoed), an Azure SAS URL in an attachment.
    sas = ("https://acct.blob.core.windows.net/files/report.png?sv=2022-11-02&se=2026-12-31&sp=r"
           f"&sig={p['Azure SAS sig in an attachment URL']}")
    status, _ = await send(endpoint, connector.activity(
        text=f"fetch https://alice:{p['user:password@ in a URL']}@files.example.invalid/report", conversation_id=conv,
        attachments=[{"contentType": "image/png", "contentUrl": sas, "name": "report.png"}]))
    assert status == 201
    # camelCase secret keys in an invoke's value: the bot echoes them in its HTTP answer (the response leg).
    value = {"accessToken": p["accessToken key"], "clientSecret": p["clientSecret key"], "apiKey": p["apiKey key"]}
    status, body = await send(endpoint, connector.activity("invoke", conversation_id=conv, name="test/echo",
                                                           value=value))
    assert status == 200 and json.loads(body) == {"echo": value}
    # The connector answers the bot's reply with an error whose message holds a password.
    answer_password = p["password= in a connector's error answer"]
    connector.fail_next(500, message=f"backend said password={answer_password}", route="reply_to_activity")
    await send(endpoint, connector.activity(text="this reply fails", conversation_id=conv))
    assert sample_bot.bot.turn_errors

    async with aiohttp.ClientSession() as session:
        # A JWT inside a body that is not UTF-8.
        raw = b"\xff\xfe\x00\x81 binary " + JWT.encode() + b" \x80\xfe tail"
        async with session.post(endpoint, data=raw, headers={"Content-Type": "application/octet-stream"}) as r:
            assert r.status >= 400
        # client_secret= and password= in a form body sent as text/plain.
        form = (f"client_secret={p['client_secret= in a text/plain body']}&grant_type=client_credentials"
                f"&client_id=planted-app&password={p['password= in a text/plain body']}")
        async with session.post(endpoint, data=form.encode(), headers={"Content-Type": "text/plain"}) as r:
            assert r.status >= 400
        # A token in the query string of a forged serviceUrl key: our request hook fails and logs it, with
        # its traceback, at -v (or, once keys are signed, refuses it): the token must be in neither.
        forged = (f"{base}/_botproxy/svc/not-a-key/v3/conversations/c/activities"
                  f"?token={p['token in a query string that fails a hook']}")
        async with session.post(forged, json={"type": "message", "text": "forged"}) as r:
            assert r.status >= 400


async def plant_directline_traffic(endpoint: str) -> list[str]:
    """A Direct Line client: secret -> token -> conversation -> stream (`t=`) -> a message. Returns the
    tokens the service issued, which are secrets too."""
    tokens = []
    async with aiohttp.ClientSession() as session:
        auth = {"Authorization": f"Bearer {PLANTED['Direct Line secret']}"}
        async with session.post(f"{endpoint}/tokens/generate", headers=auth, json={"user": {"id": "dl-user"}}) as r:
            assert r.status == 200
            tokens.append((await r.json())["token"])
        auth = {"Authorization": f"Bearer {tokens[0]}"}
        async with session.post(f"{endpoint}/conversations", headers=auth) as r:
            assert r.status == 201
            started = await r.json()
        tokens.append(started["token"])
        assert "t=" in started["streamUrl"]
        async with session.ws_connect(started["streamUrl"]) as ws:
            async with session.post(f"{endpoint}/conversations/{started['conversationId']}/activities",
                                    headers={"Authorization": f"Bearer {started['token']}"},
                                    json={"type": "message", "from": {"id": "dl-user"}, "text": "hello over dl"}) as r:
                assert r.status == 200
            while True:  # the echo arrives on the stream
                frame = await asyncio.wait_for(ws.receive(), 30)
                if frame.type == aiohttp.WSMsgType.TEXT and "You said: hello over dl" in frame.data:
                    break
    return [t for t in tokens if t]


def database_text(db_path: Path) -> bytes:
    """Every value of every table, as stored (a raw search of the file could miss a value split across
    overflow pages)."""
    conn = sqlite3.connect(db_path)
    try:
        out = []
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")]
        for table in tables:
            for row in conn.execute(f'select * from "{table}"'):
                for value in row:
                    out.append(value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogateescape"))
        return b"\n".join(out)
    finally:
        conn.close()


def database_files(db_path: Path) -> dict[str, bytes]:
    return {f"file {p.name}": p.read_bytes() for p in sorted(db_path.parent.glob(db_path.name + "*"))}


def har_bodies(har: dict[str, Any]) -> bytes:
    """The HAR's base64 bodies, decoded: a secret inside a raw body is only visible there."""
    out = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("encoding") == "base64" and isinstance(node.get("text"), str):
                out.append(base64.b64decode(node["text"]))
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(har)
    return b"\n".join(out)


@pytest.mark.slow
async def test_no_planted_secret_reaches_any_artefact(tmp_path, connector, sample_bot):
    dl_channel = DirectLineChannel("http://127.0.0.1:9/unset", secret=PLANTED["Direct Line secret"])
    await dl_channel.start()
    try:
        proc, endpoints, banner = await start_recorder(tmp_path, sample_bot.url + FUNCTION_KEY, dl_channel.base_url)
        dl_channel.bot_url = endpoints["bot"]  # the Direct Line channel's bot side goes through the recorder too
        db_path = tmp_path / "planted.db"
        try:
            await plant_connector_traffic(connector, endpoints["bot"], sample_bot)
            issued = await plant_directline_traffic(endpoints["directline"])
            # The child prints a batch's lines after writing it: once the last echo is printed (by the bot's
            # reply and by the stream), the database holds it, in its -wal file while the recorder runs.
            printed = await read_until(proc, lambda lines: sum("You said: hello over dl" in x for x in lines) >= 2)
            while_recording = database_files(db_path)
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        await dl_channel.stop()
    assert proc.returncode == 0, err.decode()
    assert any(name.endswith("-wal") for name in while_recording)
    artefacts: dict[str, bytes] = {
        "record stdout (console)": "".join(banner + printed).encode() + out,
        "record stderr (-v log)": err,
        **{f"while recording: {name}": data for name, data in while_recording.items()},
        **{f"after record: {name}": data for name, data in database_files(db_path).items()},
    }
    db = str(db_path)
    for name, args in {
        "show": ("show", "planted"),
        "show --json": ("show", "planted", "--json"),
        "check --json": ("check", "planted", "--json"),
        "sessions --json": ("sessions", "--json"),
    }.items():
        _, stdout, stderr = await run(*args, "--db", db)
        artefacts[name] = (stdout + stderr).encode()
    _, _, stderr = await run("export", "planted", "--format", "har", "--out", str(tmp_path / "s.har"), "--db", db)
    har = json.loads((tmp_path / "s.har").read_text())
    artefacts["HAR export"] = (tmp_path / "s.har").read_bytes() + stderr.encode()
    artefacts["HAR export, base64 bodies decoded"] = har_bodies(har)
    await run("export", "planted", "--format", "transcript", "--out", str(tmp_path / "transcripts"), "--db", db)
    transcripts = sorted((tmp_path / "transcripts").glob("*.transcript"))
    artefacts["transcript exports"] = b"\n".join(t.read_bytes() for t in transcripts)
    await run("report", "planted", "--out", str(tmp_path / "report.html"), "--db", db)
    artefacts["report HTML"] = (tmp_path / "report.html").read_bytes()
    _, stdout, stderr = await run("replay", "planted", "--bot", sample_bot.url + FUNCTION_KEY, "--report",
                                  str(tmp_path / "replay.html"), "--junit", str(tmp_path / "replay.xml"), "--json",
                                  "-v", "--cap-ms", "300", "--db", db)
    artefacts["replay output (-v)"] = (stdout + stderr).encode()
    artefacts["replay report HTML"] = (tmp_path / "replay.html").read_bytes()
    artefacts["replay JUnit"] = (tmp_path / "replay.xml").read_bytes()
    artefacts.update({f"at the end: {name}": data for name, data in database_files(db_path).items()})
    artefacts["database values"] = database_text(db_path)

    secrets = {**PLANTED, **{f"Direct Line token {n}": t for n, t in enumerate(issued)}}
    leaks = [f"{what} ({secret}) in {where}" for what, secret in secrets.items()
             for where, data in artefacts.items() if secret.encode() in data]
    assert not leaks, "\n".join(leaks)

    # The artefacts hold the traffic, redacted: the search looks at real content.
    stored = artefacts["database values"]
    assert b"[REDACTED]" in stored
    for seen in (b"You said: my password is [REDACTED]", b"my token is [REDACTED]", b"hello with keys",
                 b"client_id=planted-app", b"hello over dl", b"You said: hello over dl", b"binary [REDACTED]"):
        assert seen in stored, seen
    assert har["log"]["entries"] and transcripts
    assert b"You said: fetch https://alice:[REDACTED]@files.example.invalid/report" in artefacts["report HTML"]
    assert b"my password is [REDACTED]" in artefacts["record stdout (console)"]
    # The forged key was logged as a failed hook, or refused and recorded: either way it is there.
    assert b"not-a-key" in artefacts["record stderr (-v log)"] + stored
    assert b"<testcase" in artefacts["replay JUnit"] and b"You said" in artefacts["replay report HTML"]


def test_a_key_in_a_url_given_on_the_command_line_is_not_echoed_in_its_error():
    from click.testing import CliRunner

    from botproxy.cli import cli

    key = "FnCode-err-5a2d9c"
    result = CliRunner().invoke(cli, ["record", "--bot", f"ftp://host/api/messages?code={key}"])
    assert result.exit_code == 2 and "--bot must be" in result.output and key not in result.output
