"""Recording in a child process (`botproxy record`'s mode): same rows as in-process, console from the
child, and the proxy keeps carrying traffic when the child dies."""

import asyncio
import logging
import os
import signal
import time
from functools import partial

import pytest

from botproxy import store
from botproxy.checks import CheckConfig
from botproxy.present.console import recorder_observers
from botproxy.record import worker
from botproxy.record.mitm.proxy import ProxyConfig, RecordingProxy
from botproxy.record.recorder import RequestSeen
from botproxy.record.worker import WorkerSession


async def start_proxy(tmp_path, bot_url, name="w"):
    session = WorkerSession(str(tmp_path / "w.db"), name=name, bot_url=bot_url,
                            observers=partial(recorder_observers, CheckConfig(), True, False))
    proxy = RecordingProxy(ProxyConfig(bot_url=bot_url, listen="127.0.0.1:0", forward_listen=None,
                                       confdir=str(tmp_path / "mitm")), session)
    await proxy.start()
    return proxy, session


@pytest.mark.slow
async def test_worker_records_the_same_rows_checks_and_prints(tmp_path, connector, sample_bot, capfd):
    proxy, session = await start_proxy(tmp_path, sample_bot.url)
    for text in ("hello", "proactive"):
        status, _ = await connector.send(proxy.endpoint, connector.activity(text=text, conversation_id="wc"))
        assert status == 201
    await asyncio.wait_for(sample_bot.proactive_done.wait(), 10)
    summary = await proxy.stop()
    assert summary["name"] == "w" and summary["exchanges"] == 5 and summary["activities"] == 5
    assert summary["findings"].get("info", 0) >= 1 and summary["errors"] == 0
    db = store.open_db(tmp_path / "w.db")
    acts = list(store.iter_activities(db, session.session_id))
    assert [a["text"] for a in acts if a["direction"] == "from_bot"] == [
        "You said: hello", "will send proactively", "proactive hello"]
    assert [a["turn_seq"] for a in acts if a["text"] == "You said: hello"] == [1]
    assert db["findings"].count >= 1 and db["sessions"].get(session.session_id)["ended_at"]
    out = capfd.readouterr().out
    assert '"You said: hello"' in out and "BP-A04" in out  # printed by the child, findings under their line


@pytest.mark.slow
async def test_a_session_name_in_use_is_refused_before_any_traffic(tmp_path, sample_bot):
    proxy, _ = await start_proxy(tmp_path, sample_bot.url, name="taken")
    await proxy.stop()
    again = WorkerSession(str(tmp_path / "w.db"), name="taken", bot_url=sample_bot.url)
    try:
        again.start()
        raise AssertionError("expected a StoreError")
    except store.StoreError as exc:
        assert "already exists" in str(exc)


@pytest.mark.slow
async def test_traffic_flows_when_the_recorder_process_dies(tmp_path, connector, sample_bot):
    proxy, session = await start_proxy(tmp_path, sample_bot.url)
    status, _ = await connector.send(proxy.endpoint, connector.activity(text="before", conversation_id="d"))
    assert status == 201
    os.kill(session._process.pid, signal.SIGKILL)
    session._process.join(10)
    for n in range(3):
        status, _ = await connector.send(proxy.endpoint, connector.activity(text=f"after {n}", conversation_id="d"))
        assert status == 201  # the channel and the bot never notice
    assert [c.body["text"] for c in connector.calls[-3:]] == ["You said: after 0", "You said: after 1",
                                                              "You said: after 2"]
    summary = await proxy.stop()
    assert summary["errors"] > 0  # what could not be recorded is counted


@pytest.mark.slow
def test_a_recorder_that_stops_reading_costs_bounded_memory_and_what_it_missed_is_counted(tmp_path, monkeypatch,
                                                                                         caplog):
    """A stopped child (SIGSTOP: swapped out, suspended) reads nothing; the proxy keeps at most MAX_WAITING
    bytes for it and counts the rest as not stored instead of growing until it runs out of memory."""
    monkeypatch.setattr(worker, "MAX_WAITING", 4 * 1024 * 1024)
    session = WorkerSession(str(tmp_path / "w.db"), name="stopped", bot_url="http://127.0.0.1:9/api/messages")
    session.start()
    body = b"x" * (200 * 1024)
    os.kill(session._process.pid, signal.SIGSTOP)
    try:
        with caplog.at_level(logging.WARNING, logger="botproxy.record.worker"):
            for n in range(40):  # 8 MB for a child that takes nothing
                session.submit(RequestSeen(f"f{n}", time.time(), "forward", "POST", f"http://127.0.0.1:9/{n}",
                                           [("content-type", "text/plain")], body))
                assert session._queued_bytes - session._shipped_bytes <= worker.MAX_WAITING
    finally:
        os.kill(session._process.pid, signal.SIGCONT)
    summary = session.close()
    assert session.refused_requests >= 15  # at most 1 MB in the pipe and 4 MB waiting were kept
    assert summary["exchanges"] == 40 - session.refused_requests
    assert summary["not_stored"] == session.refused_requests and summary["errors"] >= session.refused_requests
    db = store.open_db(tmp_path / "w.db")
    assert db["sessions"].get(session.session_id)["exchanges_not_stored"] == session.refused_requests
    said = [r.getMessage() for r in caplog.records]
    assert len([m for m in said if "has not taken events" in m]) == 1  # said once, not per event
