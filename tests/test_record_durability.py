"""Nothing the proxy carried is dropped without being counted, and one bad row never takes others with it.

Faults injected into real recordings (the embedded mitmproxy, the SDK sample bot, the connector stand-in,
real SQLite files, and for `botproxy record`'s mode the recorder child process): a full disk (SQLite's
max_page_count on the recorder's connection; RLIMIT_FSIZE on the recorder process), a write lock held by
another process past the busy timeout, lone surrogates and bytes that are not UTF-8 in every field, the
recorder process killed mid-load, and our own code failing on a request. Each test checks the exact count:
every exchange the proxy carried is in the database or counted as not stored.
"""

import asyncio
import json
import logging
import os
import resource
import signal
import subprocess
import sys
from functools import partial

import pytest
from click.testing import CliRunner

from botproxy import store
from botproxy.checks import CheckConfig
from botproxy.cli import cli
from botproxy.present.console import Console, recorder_observers
from botproxy.present.words import counted
from botproxy.record.mitm.capture import Capture
from botproxy.record.mitm.proxy import ProxyConfig, RecordingProxy
from botproxy.record.worker import WorkerSession


async def turns(connector, endpoint, conversation, texts):
    for text in texts:
        status, _ = await connector.send(endpoint, connector.activity(text=text, conversation_id=conversation))
        assert status == 201  # whatever fails in the recorder, the traffic flows


def stored(db_path, session_id):
    db = store.open_db(db_path)
    try:
        return store.stored_counts(db, session_id)["exchanges"], db["sessions"].get(session_id)
    finally:
        db.conn.close()


def sessions_line(db_path, name):
    out = CliRunner().invoke(cli, ["sessions", "--db", db_path], catch_exceptions=False).output
    [line] = [line for line in out.splitlines() if f" {name} " in line]
    return line.split()


async def start_worker(tmp_path, bot_url, *, console=False):
    session = WorkerSession(str(tmp_path / "w.db"), name="w", bot_url=bot_url,
                            observers=partial(recorder_observers, CheckConfig(), console, False))
    proxy = RecordingProxy(ProxyConfig(bot_url=bot_url, listen="127.0.0.1:0", forward_listen=None,
                                       confdir=str(tmp_path / "mitm")), session)
    await proxy.start()
    return proxy, session


async def until(condition, timeout=60.0, what="the condition"):
    """Poll a condition that no event announces (another process's state), boundedly."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


def fill_up(db):
    """The disk is full from here on, for the recorder's connection (SQLite's own limit, no root needed)."""
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")


# -- disk full ---------------------------------------------------------------------------------------------


async def test_disk_full_to_the_end_counts_every_exchange_not_stored(recorders, connector, sample_bot, caplog):
    # The recorder's child process gives up after store.CLOSE_PATIENCE (10 s) of last attempts.
    proxy = await recorders.start(sample_bot.url)
    await turns(connector, proxy.endpoint, "before", ["w1", "w2", "w3"])
    proxy.session.writer.call(fill_up)  # in order: the three turns before it are written first
    with caplog.at_level(logging.WARNING):
        await asyncio.gather(*(turns(connector, proxy.endpoint, f"full-{c}", [f"t{c}-{n}" for n in range(6)])
                               for c in range(4)))
        assert len([c for c in connector.calls if c.route == "reply_to_activity"]) == 27  # every turn answered
        summary = await recorders.stop(proxy)

    in_db, row = stored(recorders.db_path, summary["id"])
    assert summary["exchanges"] == in_db and in_db >= 6  # what the database really holds, not what was seen
    assert summary["exchanges"] + summary["not_stored"] == 2 * 27  # each turn: the inbound POST and the reply
    assert summary["not_stored"] > 0 and summary["errors"] >= summary["not_stored"]
    assert row["exchanges_not_stored"] == summary["not_stored"] and row["error_count"] == summary["errors"]
    assert row["ended_at"]
    assert any("database or disk is full" in p for p in summary["problems"])
    # Said once when writes started failing (not a traceback per batch), and once when giving up.
    said = [r.getMessage() for r in caplog.records if r.name == "botproxy.store"]
    assert len([m for m in said if m.startswith("botproxy: cannot write")]) == 1 and any("gave up" in m for m in said)
    assert not [r for r in caplog.records if r.exc_info]

    lines: list[str] = []
    Console(echo=lines.append).summary(summary)
    assert f"NOT STORED: {counted(summary['not_stored'], 'exchange')}" in "\n".join(lines)
    assert counted(summary["errors"], "recorder error") in lines[1] and "0 recorder errors" not in lines[1]
    assert sessions_line(recorders.db_path, "test")[-2:] == [str(summary["errors"]), str(summary["not_stored"])]


async def test_disk_full_then_freed_stores_everything_that_waited(recorders, connector, sample_bot, caplog):
    proxy = await recorders.start(sample_bot.url)
    await turns(connector, proxy.endpoint, "before", ["w1"])
    proxy.session.writer.call(fill_up)
    with caplog.at_level(logging.WARNING):
        await asyncio.gather(*(turns(connector, proxy.endpoint, f"c{c}", [f"t{c}-{n}" for n in range(5)])
                               for c in range(4)))
        # Space comes back (in order with the turns above, which were all carried while the disk was full).
        proxy.session.writer.call(lambda db: db.execute("PRAGMA max_page_count = 1073741823"))
        summary = await recorders.stop(proxy)
    assert summary["exchanges"] == stored(recorders.db_path, summary["id"])[0] == 2 * 21
    assert summary["not_stored"] == 0 and summary["errors"] == 0
    assert [a["text"] for a in recorders.activities() if a["text"] == "You said: t3-4"] == ["You said: t3-4"]
    said = [r.getMessage() for r in caplog.records if r.name == "botproxy.store"]
    assert len([m for m in said if m.startswith("botproxy: cannot write")]) == 1 and any("again" in m for m in said)


@pytest.mark.slow
async def test_file_size_limit_on_the_recorder_process(tmp_path, connector, sample_bot):
    """RLIMIT_FSIZE on the recorder child: its writes fail (instead of SIGXFSZ killing it); the traffic goes
    on; at the end the main process closes the session row and says exactly what is missing."""
    proxy, session = await start_worker(tmp_path, sample_bot.url)
    await turns(connector, proxy.endpoint, "before", ["w1", "w2"])
    await until(lambda: stored(session.db_path, session.session_id)[0] == 4)
    pid = session._process.pid
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, hard))  # not one more byte in any file
    await asyncio.gather(*(turns(connector, proxy.endpoint, f"c{c}", [f"t{c}-{n}" for n in range(4)])
                           for c in range(3)))
    summary = await proxy.stop()
    assert session._process.exitcode == 0  # not killed by SIGXFSZ
    in_db, row = stored(session.db_path, session.session_id)
    assert summary["exchanges"] == in_db == 4
    assert summary["not_stored"] == 2 * 12 and row["exchanges_not_stored"] == 24
    assert row["ended_at"] and row["error_count"] == summary["errors"] >= 24


# -- a lock held by another process ----------------------------------------------------------------------

LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
print("released", flush=True)
"""


@pytest.mark.slow
async def test_a_write_lock_held_past_the_busy_timeout_loses_nothing(tmp_path, connector, sample_bot, capfd):
    proxy, session = await start_worker(tmp_path, sample_bot.url, console=True)
    await turns(connector, proxy.endpoint, "before", ["w1"])
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, session.db_path], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        await asyncio.gather(*(turns(connector, proxy.endpoint, f"c{c}", [f"t{c}-{n}" for n in range(4)])
                               for c in range(3)))
        err = ""

        def said_so():
            nonlocal err
            err += capfd.readouterr().err
            return "cannot write" in err

        await until(said_so)  # the recorder waited past its busy timeout and keeps the rows in memory
        locker.stdin.write("\n")
        locker.stdin.flush()
        assert locker.stdout.readline().strip() == "released"
    finally:
        locker.kill()
        locker.wait()
    summary = await proxy.stop()
    err += capfd.readouterr().err
    assert summary["exchanges"] == stored(session.db_path, session.session_id)[0] == 2 * 13
    assert summary["not_stored"] == 0 and summary["errors"] == 0
    assert err.count("cannot write") == 1 and "database is locked" in err and "again" in err
    assert "Traceback" not in err


# -- odd but legal input ---------------------------------------------------------------------------------


async def raw_request(endpoint: str, target: bytes, headers: bytes, body: bytes) -> int:
    """An HTTP/1.1 request written byte for byte (aiohttp would refuse the bytes we want to send)."""
    host, port = endpoint.split("//")[1].split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST " + target + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\nConnection: close\r\n"
                 + b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
                 + headers + b"\r\n" + body)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    await reader.read()
    writer.close()
    return status


@pytest.mark.slow
async def test_lone_surrogates_and_bytes_that_are_not_utf8_are_stored_escaped_raw_and_flagged(
        tmp_path, connector, sample_bot, capfd):
    proxy, session = await start_worker(tmp_path, sample_bot.url, console=True)
    path = "/api/messages"
    odd = connector.activity(text="split \ud83d emoji", conversation_id="odd", user_name="\udcff",
                             channelData={"note": "\udfff"}, attachments=[{"contentType": "x", "name": "\ud800"}])
    raw = json.dumps(connector.activity(text="raw query", conversation_id="raw")).encode()
    normal = [turns(connector, proxy.endpoint, f"n{c}", [f"n{c}-{n}" for n in range(3)]) for c in range(3)]

    async def odd_ones():
        assert (await connector.send(proxy.endpoint, odd))[0] == 201
        for n in range(5):  # five raw requests with a byte that is not UTF-8 in the query: aiohttp refuses them
            status = await raw_request(proxy.endpoint, path.encode() + b"?x=\xff&n=" + str(n).encode(), b"", raw)
            assert status == 400
        for _ in range(2):  # ... and in a header, which the bot takes
            assert await raw_request(proxy.endpoint, path.encode(), b"X-Odd: caf\xe9\r\n", raw) == 201
        # An invoke whose value (and so the bot's answer body) holds a lone surrogate.
        status, body = await connector.send(proxy.endpoint, connector.activity(
            "invoke", conversation_id="odd", name="test/echo", value={"half": "\ud83d"}))
        assert status == 200 and json.loads(body) == {"echo": {"half": "\ud83d"}}
        # A body that is not UTF-8 at all: the bot refuses it; we keep its bytes.
        assert await raw_request(proxy.endpoint, path.encode(), b"", b'{"type":"message","text":"\xff"}') >= 400

    await asyncio.gather(odd_ones(), *normal)
    inbound = 1 + 5 + 2 + 1 + 1 + 9
    replies = len(connector.calls)
    summary = await proxy.stop()
    out = capfd.readouterr().out
    assert summary["exchanges"] == stored(session.db_path, session.session_id)[0] == inbound + replies
    assert replies == 1 + 2 + 9 and summary["not_stored"] == 0 and summary["errors"] == 0

    db = store.open_db(session.db_path)
    exchanges = list(store.iter_exchanges(db, session.session_id))
    queried = [e for e in exchanges if "?x=" in (e["url"] or "")]
    assert len(queried) == 5
    for e in queried:
        originals = json.loads(e["odd_text"])
        assert "x=\\udcff" in e["url"] and originals["url"].encode("utf-8", "surrogateescape").count(b"x=\xff") == 1
        assert e["status"] == 400 and e["response_body"]  # the bot's refusal, kept
    headed = [e for e in exchanges if "caf\\udce9" in (e["request_headers"] or "")]  # escaped: the same JSON value
    assert len(headed) == 2 and all(e["status"] == 201 for e in headed)
    for e in headed:
        headers = json.loads(e["request_headers"])
        assert ["X-Odd", "caf\udce9"] in headers and headers == json.loads(json.loads(e["odd_text"])["request_headers"])
    acts = {a["text"]: a for a in store.iter_activities(db, session.session_id)}
    for text in ("split \ud83d emoji", "You said: split \ud83d emoji"):
        row = db.execute("select text, body, odd_text from activities where text = ?",
                         [text.encode("utf-8", "backslashreplace").decode()]).fetchone()
        assert row is not None, text
        assert json.loads(row[2])["text"] == text and json.loads(row[1])["text"] == text
    first = json.loads(db.execute("select body from activities where seq = ?",
                                  [acts["split \\ud83d emoji"]["seq"]]).fetchone()[0])
    assert first["from"]["name"] == "\udcff" and first["channelData"] == {"note": "\udfff"}
    assert first["attachments"][0]["name"] == "\ud800"
    [invoke] = [e for e in exchanges if e["status"] == 200 and e["leg"] == "inbound"]
    assert json.loads(invoke["response_body"]) == {"echo": {"half": "\ud83d"}} and invoke["odd_text"]
    [refused] = [e for e in exchanges if (e["status"] or 0) >= 400 and "?x=" not in e["url"]]
    assert refused["request_body_raw"] == b'{"type":"message","text":"\xff"}' and refused["request_malformed"] == 1
    assert '"split \\ud83d emoji"' in out and '"You said: n2-2"' in out  # printed escaped, the rest printed too


# -- the recorder process killed mid-load ------------------------------------------------------------------


@pytest.mark.slow
async def test_recorder_killed_mid_load_traffic_flows_and_counts_are_right(tmp_path, connector, sample_bot):
    proxy, session = await start_worker(tmp_path, sample_bot.url)
    conversations, per = 6, 12

    async def killer():
        await connector.wait_for_calls(20, timeout=60)
        os.kill(session._process.pid, signal.SIGKILL)

    load = [turns(connector, proxy.endpoint, f"k{c}", [f"k{c}-{n}" for n in range(per)])
            for c in range(conversations)]
    await asyncio.gather(killer(), *load)
    assert len(connector.calls) == conversations * per  # every turn answered, recorder or not
    summary = await proxy.stop()
    in_db, row = stored(session.db_path, session.session_id)
    assert 0 < summary["exchanges"] == in_db < 2 * conversations * per  # what the database really holds
    assert summary["not_stored"] == 2 * conversations * per - in_db
    assert row["exchanges_not_stored"] == summary["not_stored"] and row["ended_at"]  # closed by the main process
    assert summary["errors"] >= 1 and row["error_count"] == summary["errors"]
    assert any("killed by signal 9" in p for p in summary["problems"])
    assert summary["activities"] == store.stored_counts(store.open_db(session.db_path), session.session_id)[
        "activities"]


# -- our own code failing --------------------------------------------------------------------------------


@pytest.mark.parametrize("hook,carried,failing", [
    ("_rewrite_service_url", 2, 2),  # the inbound rewrite: the replies go straight to the connector, unseen
    ("_reroute", 6, 4),  # a reply sent on to the connector: it never arrives, and the bot's error message neither
    ("_restore_in", 4, 4),  # the inbound response, and the reply on its way to the connector
])
async def test_a_hook_of_ours_failing_is_one_line_and_the_exchange_is_kept(recorders, connector, sample_bot,
                                                                          monkeypatch, caplog, hook, carried,
                                                                          failing):
    def broken(self, *args):
        raise RuntimeError(f"boom in {hook}")

    monkeypatch.setattr(Capture, hook, broken)
    proxy = await recorders.start(sample_bot.url)
    with caplog.at_level(logging.WARNING):
        for n in range(2):
            status, _ = await connector.send(proxy.endpoint, connector.activity(text=f"h{n}", conversation_id="h"))
            assert status in (201, 500)  # _reroute: the reply went nowhere, and the SDK bot says so with a 500
        summary = await recorders.stop(proxy)
    exchanges = recorders.exchanges()
    failed = [e for e in exchanges if e["error"] and f"boom in {hook}" in e["error"]]
    # Every request the proxy carried is a row; those our code failed on say so, with their status.
    assert len(exchanges) == summary["exchanges"] == carried
    assert len(failed) == failing and all(e["status"] is not None for e in failed)
    assert summary["not_stored"] == 0 and summary["errors"] == proxy.capture.failures == failing
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "boom" in r.getMessage()]
    assert len(errors) == failing and not [r for r in errors if r.exc_info]  # one line each; the traceback with -v
    assert f"error #{failing}" in errors[-1].getMessage()


def test_traffic_after_the_session_closed_is_said_not_lost_silently(tmp_path, caplog):
    # mitmproxy that does not stop within its 10 s still hands on events after the session closed: they
    # went into a queue nothing read any more, uncounted.
    from botproxy.record.recorder import RequestSeen
    from botproxy.record.session import LiveSession

    live = LiveSession(str(tmp_path / "late.db"), name="late")
    live.start()
    live.submit(RequestSeen("f1", 1.0, "reverse", "POST", "http://127.0.0.1:1/api/messages", [], b"{}"))
    summary = live.close()
    with caplog.at_level(logging.WARNING):
        live.submit(RequestSeen("f2", 2.0, "reverse", "POST", "http://127.0.0.1:1/api/messages", [], b"{}"))
    assert summary["exchanges"] == 1 and live.after_close == 1
    assert "traffic after the session closed is not recorded" in caplog.text
