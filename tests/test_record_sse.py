"""`deliveryMode: stream` turns: a bot answering the inbound POST with `text/event-stream` behind the real
embedded recorder. Each frame passes on to the channel as it comes (not buffered until the end), the
activities are recorded in order as the inbound response's (`source` `response`, route `event_stream`),
with botproxy's rewritten serviceUrl given back its original, and the checks see them."""

import asyncio
import json

import aiohttp
import pytest
from bots.sse_bot import SseBot

from botproxy import store
from botproxy.checks import check_session
from botproxy.record.recorder import RequestSeen, ResponseSeen, SessionRecorder
from botproxy.replay.plan import ReplayOptions
from botproxy.wire import protocol as p

CONV = "conv-sse"


@pytest.fixture
async def sse_bot():
    bot = SseBot()
    await bot.start()
    try:
        yield bot
    finally:
        await bot.stop()


async def read_events(resp: aiohttp.ClientResponse, first_seen: asyncio.Event) -> list[tuple[str, str]]:
    """The SSE events of a response, read as they arrive; `first_seen` is set at the first one."""
    raw = b""
    async for chunk in resp.content.iter_any():
        raw += chunk
        if p.sse_events(raw):
            first_seen.set()
    return p.sse_events(raw)


async def test_stream_turn_recorded_as_the_inbound_response(recorders, connector, sse_bot):
    proxy = await recorders.start(sse_bot.url)
    sse_bot.hold = asyncio.Event()
    inbound = connector.activity(text="what is the answer?", conversation_id=CONV, deliveryMode="stream")
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.endpoint, json=inbound) as resp:
            assert resp.status == 200 and resp.headers["content-type"].startswith("text/event-stream")
            first_seen = asyncio.Event()
            reading = asyncio.create_task(read_events(resp, first_seen))
            # The bot writes nothing more until the channel has the first frame: a proxy that buffered
            # the stream would never deliver it, and this wait would time out.
            await asyncio.wait_for(first_seen.wait(), 20)
            sse_bot.hold.set()
            events = await asyncio.wait_for(reading, 20)
    assert [name for name, _ in events] == ["activity"] * 4
    delivered = [json.loads(data) for _, data in events]
    # The channel gets its own serviceUrl back in the frames, as in a buffered answer.
    assert {a["serviceUrl"] for a in delivered} == {connector.service_url}
    summary = await recorders.stop(proxy)

    acts = recorders.activities()
    assert summary["activities"] == len(acts) == 5
    [turn] = [a for a in acts if a["direction"] == "to_bot"]
    replies = [a for a in acts if a["direction"] == "from_bot"]
    assert turn["delivery_mode"] == "stream" and turn["status"] == 200
    assert [a["type"] for a in replies] == ["typing", "typing", "typing", "message"]
    assert [a["text"] for a in replies] == ["Thinking...", "The answer", "The answer is 42.", "The answer is 42."]
    assert all(a["source"] == "response" and a["route"] == p.EVENT_STREAM for a in replies)
    assert all(a["turn_seq"] == turn["seq"] for a in replies)
    assert [a["seq"] for a in replies] == sorted(a["seq"] for a in replies)
    assert {a["body"]["serviceUrl"] for a in replies} == {connector.service_url}
    # Each frame keeps the time it came: the first was seen before the bot was let go on.
    assert replies[0]["observed_at"] <= replies[1]["observed_at"] <= replies[-1]["observed_at"]
    [exchange] = recorders.exchanges()
    assert "event: activity" in exchange["response_body"] and exchange["rewritten"] == 1
    # A correct bot: the checks ran over the frames and found nothing to complain about.
    db = recorders.db()
    session_id = store.resolve_session(db, "test")["id"]
    findings = [(f.rule, f.severity, f.message) for f in check_session(db, session_id)]  # `botproxy check`
    assert [f for f in findings if f[1] in ("error", "warning")] == []


async def test_stream_invoke_answer_is_its_invoke_response(recorders, connector, sse_bot):
    proxy = await recorders.start(sse_bot.url)
    inbound = connector.activity("invoke", conversation_id=CONV, name="test/echo", value={"n": 7},
                                 deliveryMode="stream")
    status, body = await connector.send(proxy.endpoint, inbound)
    assert status == 200 and b"event: invokeResponse" in body
    await recorders.stop(proxy)
    [answer] = [a for a in recorders.activities() if a["direction"] == "from_bot"]
    assert answer["type"] == "invokeResponse" and answer["route"] == p.INVOKE_RESPONSE
    assert answer["body"]["value"] == {"status": 200, "body": {"echo": {"n": 7}}}


def test_frames_cut_across_chunks_and_secrets_in_frames():
    """The recorder joins an event split over chunks, leaves out a cut-off last one, and redacts a
    secret inside a frame before anything is stored."""
    recorder = SessionRecorder(1)
    activity = {"type": "message", "id": "a1", "serviceUrl": "http://127.0.0.1:9/", "conversation": {"id": "c"},
                "deliveryMode": "stream"}
    recorder.handle(RequestSeen("f", 1.0, "reverse", "POST", "http://127.0.0.1:9/api/messages",
                                [("content-type", "application/json")], json.dumps(activity).encode()))
    secret = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2lnbmF0dXJl"
    frame = json.dumps({"type": "message", "text": "ok", "value": {"token": secret}})
    chunks = [(2.0, b"event: activity\r\ndata: " + frame[:10].encode()), (3.0, frame[10:].encode() + b"\r\n\r\n"),
              (4.0, b"event: activity\r\ndata: {\"type\": \"typ")]
    rows = recorder.handle(ResponseSeen("f", 4.0, 200, [("Content-Type", "text/event-stream; charset=utf-8")],
                                        b"".join(c for _, c in chunks), chunks=chunks))
    acts = [row for table, row in rows if table == "activities"]
    [reply] = [a for a in acts if a["direction"] == "from_bot"]
    assert reply["text"] == "ok" and reply["observed_at"] == 3.0 and reply["source"] == "response"
    stored = json.dumps(rows, default=str)
    assert secret not in stored


async def record_stream_session(recorders, connector, bot_url: str) -> None:
    proxy = await recorders.start(bot_url)
    for text in ("first question", "second question"):
        status, body = await connector.send(proxy.endpoint, connector.activity(
            text=text, conversation_id=CONV, deliveryMode="stream"))
        assert status == 200 and body.count(b"event: activity") == 4
    await recorders.stop(proxy)


async def test_stream_turns_replayed(recorders, connector, sse_bot):
    """Replay sends the activities with `deliveryMode: stream` again and reads the bot's SSE answer:
    the same build is `same` turn by turn, a build with another final text `changed`."""
    from botproxy.replay.driver import replay_session

    await record_stream_session(recorders, connector, sse_bot.url)
    result = await replay_session(recorders.db_path, "test", sse_bot.url, options=ReplayOptions(quiet_ms=50))
    assert [t.status for t in result.turns] == ["same", "same"]
    replayed = [a for t in result.turns for a in t.replayed]
    assert [a["route"] for a in replayed] == [p.EVENT_STREAM] * 8

    changed = SseBot(answer="The answer is 43.")
    await changed.start()
    try:
        result = await replay_session(recorders.db_path, "test", changed.url, options=ReplayOptions(quiet_ms=50))
    finally:
        await changed.stop()
    assert [t.status for t in result.turns] == ["changed", "changed"]
    assert changed.received and all(a["deliveryMode"] == "stream" for a in changed.received)
    paths = {d.path for d in result.turns[0].differences}
    assert "root['text']" in paths


async def test_stream_turn_survives_a_har_round_trip(recorders, connector, sse_bot, tmp_path):
    """A session's HAR keeps the SSE answer as its body: imported again, the frames are the same
    activities of the inbound response."""
    from botproxy.interop import export_session, import_files

    await record_stream_session(recorders, connector, sse_bot.url)
    har_path = str(tmp_path / "stream.har")
    export_session(recorders.db_path, "test", "har", har_path)
    import_files(recorders.db_path, [har_path], name="again")
    def shape(name):
        return [(a["direction"], a["source"], a["route"], a["type"], a["text"]) for a in recorders.activities(name)]
    assert shape("again") == shape("test")
    assert [r for r in shape("again") if r[2] == p.EVENT_STREAM] and len(shape("again")) == 10
