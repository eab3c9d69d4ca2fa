"""Replay end to end: SDK sample bot builds over loopback, the real recorder, real SQLite.

A session of build 1 is recorded (the demo conversation, or a script through the `recorders` fixture),
then replayed against build 1 (everything `same`), build 2 (each deliberate change on its turn, with
its kind), and build 2 with build 1 as the baseline (random values are noise, not regressions).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from botproxy import store
from botproxy.errors import SessionNotFound, UpstreamError, UsageError
from botproxy.replay.driver import replay_session
from botproxy.replay.plan import ReplayOptions
from botproxy.replay.results import iter_turn_rows
from botproxy.sample_bot import make_app
from botproxy.standins.server import serve

QUIET = 50  # ms; the quiet window is a product feature, kept short here


class FaultyBot:
    """The SDK sample bot behind a middleware that misbehaves for chosen texts, when told to."""

    def __init__(self) -> None:
        self.faults: dict[str, str] = {}  # inbound text -> "500", "hang" or "drop"
        self.release = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, build: int = 1) -> None:
        app = make_app(build)
        app.middlewares.append(self._middleware)
        self.runner, port = await serve(app)
        self.url = f"http://127.0.0.1:{port}/api/messages"

    async def stop(self) -> None:
        self.release.set()
        assert self.runner is not None
        await self.runner.cleanup()

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        if request.method == "POST":
            fault = self.faults.get((await request.json()).get("text"))
            if fault == "500":
                return web.json_response({"error": "boom"}, status=500)
            if fault == "hang":
                await self.release.wait()
                return web.Response(status=503)
            if fault == "drop":
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)
        return await handler(request)


@pytest.fixture
async def faulty() -> AsyncIterator[FaultyBot]:
    bot = FaultyBot()
    await bot.start()
    try:
        yield bot
    finally:
        await bot.stop()


async def record(recorders, connector, bot_url: str, script: dict[str, list[str]], name: str = "s") -> str:
    """Record `script` (conversation -> texts) through the real recorder; returns the database path."""
    proxy = await recorders.start(bot_url, name=name)
    for conversation, texts in script.items():
        await connector.send(proxy.endpoint, connector.activity("conversationUpdate", conversation_id=conversation,
                                                                membersAdded=[{"id": "user1", "name": "Ada"}]))
        for text in texts:
            await connector.send(proxy.endpoint, connector.activity(text=text, conversation_id=conversation))
    await recorders.stop(proxy)
    return recorders.db_path


def by_text(result) -> dict[str, object]:
    return {t.turn.text: t for t in result.turns}


def diffs(turn) -> list[tuple[str, str]]:
    return [(d.kind, d.path) for d in turn.differences if not d.noise]


# -- the same build -------------------------------------------------------------------------------------


async def test_the_same_build_comes_back_same_and_the_run_is_stored(demo_db, sample_bot):
    ticks = []
    result = await replay_session(demo_db, "demo", sample_bot.url,
                                  progress=lambda done, total: ticks.append((done, total)),
                                  options=ReplayOptions(quiet_ms=QUIET))
    assert [(t.turn.index, t.status) for t in result.turns] == [(n, "same") for n in range(1, 11)]
    assert result.summary["regressed"] == 0 and not result.regressed
    assert ticks[-1] == (10, 10) and len(ticks) == 10

    db = store.open_db(demo_db)
    run = db["replay_runs"].get(result.run_id)
    assert run["status"] == "passed" and run["candidate_url"] == sample_bot.url and run["baseline_url"] is None
    assert json.loads(run["summary"])["same"] == 10
    candidate = db["sessions"].get(run["candidate_session_id"])
    assert candidate["source"] == "replay" and candidate["name"] == f"demo-replay-{result.run_id}-candidate"
    rows = list(iter_turn_rows(db, result.run_id))
    assert [(r["idx"], r["status"], r["regressed"]) for r in rows] == [(n, "same", 0) for n in range(1, 11)]
    assert rows[1]["inbound_text"] == "hello" and rows[1]["recorded"][0]["text"] == "You said: hello"
    assert rows[1]["replayed"][0]["text"] == "You said: hello"
    # The replay's own traffic is a session like any other: same turn model, connector ids of its own.
    replayed = list(store.iter_activities(db, candidate["id"]))
    assert len(replayed) == len(list(store.iter_activities(db, 1)))
    assert all(a["activity_id"].startswith("candidate-") for a in replayed if a["route"] == "reply_to_activity")


async def test_ids_timestamps_and_service_urls_differ_but_do_not_count(demo_db, sample_bot):
    result = await replay_session(demo_db, "demo", sample_bot.url, options=ReplayOptions(quiet_ms=QUIET))
    update = by_text(result)["update"]
    recorded, replayed = update.recorded, update.replayed
    assert [a["route"] for a in replayed] == ["reply_to_activity", "update_activity"]
    assert recorded[0]["activity_id"] != replayed[0]["activity_id"]  # connector-assigned, mapped
    assert replayed[1]["activity_id"] == replayed[0]["activity_id"]  # the update targets the replay's own id
    assert recorded[0]["body"]["serviceUrl"] != replayed[0]["body"]["serviceUrl"]
    assert update.status == "same"


async def test_a_replay_answers_the_invoke_and_expect_replies_turns_from_the_http_body(demo_db, sample_bot):
    result = await replay_session(demo_db, "demo", sample_bot.url, options=ReplayOptions(quiet_ms=QUIET))
    invoke = next(t for t in result.turns if t.turn.inbound["type"] == "invoke")
    assert [a["route"] for a in invoke.replayed] == ["invoke_response"]
    assert invoke.replayed[0]["body"]["value"] == {"status": 200, "body": {"echo": {"n": 1}}}
    weather = by_text(result)["what is the weather?"]
    assert [a["route"] for a in weather.replayed] == ["expected_replies"] and weather.status == "same"


# -- build 2 ----------------------------------------------------------------------------------------------


async def test_each_deliberate_change_of_build_2_is_on_its_turn_with_its_kind(demo_db, bot2):
    result = await replay_session(demo_db, "demo", bot2.url, options=ReplayOptions(quiet_ms=QUIET))
    turns = by_text(result)
    assert diffs(turns["conversationUpdate"]) == [("extra", "[1]")]
    assert turns["conversationUpdate"].differences[0].replayed["text"] == "Type help to see what I can do."
    assert diffs(turns["card"]) == [("changed", "root['attachments'][0]['content']['title']")]
    assert diffs(turns["typing"]) == [("missing", "[0]")]
    assert turns["typing"].differences[0].recorded == {"type": "typing", "route": "reply_to_activity"}
    assert diffs(turns["two"]) == [("reordered", "[1]")]
    assert diffs(turns["what is the weather?"]) == [("changed", "root['text']")]
    changed = {text for text, t in turns.items() if t.status == "changed"}
    assert changed == {"conversationUpdate", "card", "typing", "two", "what is the weather?"}
    assert {t.status for text, t in turns.items() if text not in changed} == {"same"}
    assert result.summary["regressed"] == 5 and result.regressed
    assert store.open_db(demo_db)["replay_runs"].get(result.run_id)["status"] == "regressed"


async def test_a_random_value_is_a_change_alone_and_noise_against_a_baseline(recorders, connector, sample_bot, bot2):
    db = await record(recorders, connector, sample_bot.url, {"c1": ["hello", "random", "weather?"]})

    alone = await replay_session(db, "s", sample_bot.url, options=ReplayOptions(quiet_ms=QUIET))
    assert diffs(by_text(alone)["random"]) == [("changed", "root['value']['nonce']")]  # really random

    same_build = await replay_session(db, "s", sample_bot.url, baseline_url=sample_bot.url,
                                      options=ReplayOptions(quiet_ms=QUIET))
    assert {t.status for t in same_build.turns} == {"same"} and not same_build.regressed
    assert same_build.run["noise_paths"] == ["[0]root['value']['nonce']"]
    random_turn = by_text(same_build)["random"]
    assert [(d.kind, d.path, d.noise) for d in random_turn.differences] == [
        ("changed", "root['value']['nonce']", True)]
    assert random_turn.to_json()["noise_paths"] == ["[0]root['value']['nonce']"]

    new_build = await replay_session(db, "s", bot2.url, baseline_url=sample_bot.url,
                                     options=ReplayOptions(quiet_ms=QUIET))
    turns = by_text(new_build)
    assert turns["random"].status == "same" and turns["hello"].status == "same"
    assert diffs(turns["weather?"]) == [("changed", "root['text']")] and turns["weather?"].status == "changed"
    assert diffs(turns["conversationUpdate"]) == [("extra", "[1]")]
    assert new_build.summary["regressed"] == 2
    runs = store.open_db(db)["replay_runs"]
    assert runs.get(new_build.run_id)["baseline_session_id"] is not None
    assert json.loads(runs.get(new_build.run_id)["noise_paths"]) == ["[0]root['value']['nonce']"]


async def test_ignore_paths_leave_fields_out(recorders, connector, sample_bot):
    db = await record(recorders, connector, sample_bot.url, {"c1": ["random"]})
    result = await replay_session(db, "s", sample_bot.url,
                                  options=ReplayOptions(quiet_ms=QUIET, ignore=[r"\['nonce'\]"]))
    assert {t.status for t in result.turns} == {"same"}
    assert result.run["ignore"] == [r"\['nonce'\]"]


# -- failures ---------------------------------------------------------------------------------------------


async def test_a_500_on_one_turn_is_an_error_and_the_rest_completes(recorders, connector, faulty):
    db = await record(recorders, connector, faulty.url, {"c1": ["hello", "boom", "card"], "c2": ["two"]})
    faulty.faults["boom"] = "500"
    result = await replay_session(db, "s", faulty.url, options=ReplayOptions(quiet_ms=QUIET))
    turns = by_text(result)
    assert turns["boom"].status == "error" and turns["boom"].regressed
    assert turns["boom"].error.startswith("the bot answered HTTP 500")
    assert {text: t.status for text, t in turns.items() if text != "boom"} == {
        "conversationUpdate": "same", "hello": "same", "card": "same", "two": "same"}
    assert result.summary["error"] == 1 and result.summary["regressed"] == 1


async def test_a_bot_that_never_answers_times_out_and_the_run_completes(recorders, connector, faulty):
    db = await record(recorders, connector, faulty.url, {"c1": ["hello", "hang", "card"]})
    faulty.faults["hang"] = "hang"
    started = time.monotonic()
    result = await replay_session(db, "s", faulty.url, options=ReplayOptions(quiet_ms=QUIET, timeout_s=0.5))
    assert time.monotonic() - started < 15
    turns = by_text(result)
    assert turns["hang"].status == "error" and turns["hang"].error == "timeout: the bot did not answer within 0.5 s"
    assert turns["card"].status == "same" and turns["hello"].status == "same"


async def test_a_dropped_connection_is_an_error(recorders, connector, faulty):
    db = await record(recorders, connector, faulty.url, {"c1": ["hello", "drop"]})
    faulty.faults["drop"] = "drop"
    result = await replay_session(db, "s", faulty.url, options=ReplayOptions(quiet_ms=QUIET))
    drop = by_text(result)["drop"]
    assert drop.status == "error" and drop.error.startswith("the bot's answer broke off")


async def test_an_incomplete_recording_is_reported_not_guessed(recorders, connector, faulty):
    faulty.faults["drop"] = "drop"  # the bot never answered it while recording
    db = await record(recorders, connector, faulty.url, {"c1": ["hello", "drop", "card"]})
    faulty.faults.clear()
    result = await replay_session(db, "s", faulty.url, options=ReplayOptions(quiet_ms=QUIET))
    drop = by_text(result)["drop"]
    assert drop.status == "error" and not drop.regressed
    assert drop.error.startswith("incomplete recording: the bot was not reached")
    assert drop.candidate_seq is None  # not sent: the bot did not see it in the recording either
    assert by_text(result)["card"].status == "same"
    assert result.summary["incomplete"] == 1 and not result.regressed


async def test_a_bot_that_is_down_or_a_bad_session_cannot_run(demo_db, free_port):
    with pytest.raises(UpstreamError, match=r"cannot reach the bot at .*connection refused"):
        await replay_session(demo_db, "demo", f"http://127.0.0.1:{free_port()}/api/messages")
    with pytest.raises(SessionNotFound):
        await replay_session(demo_db, "nope", "http://127.0.0.1:1/api/messages")
    with pytest.raises(UsageError, match="--bot"):
        await replay_session(demo_db, "demo", "ftp://x/api/messages")
    with pytest.raises(UsageError, match="concurrency"):
        await replay_session(demo_db, "demo", "http://127.0.0.1:1/api/messages", options=ReplayOptions(concurrency=0))
    assert store.open_db(demo_db)["replay_runs"].count == 0  # nothing started


async def test_a_bot_that_goes_away_after_the_check_makes_errors_not_a_crash(demo_db, free_port, monkeypatch):
    async def reachable(url):  # it was there when the run started...
        return None

    monkeypatch.setattr("botproxy.replay.driver._reachable", reachable)
    result = await replay_session(demo_db, "demo", f"http://127.0.0.1:{free_port()}/api/messages",
                                  options=ReplayOptions(quiet_ms=QUIET))
    assert {t.status for t in result.turns} == {"error"} and result.summary["regressed"] == 10
    assert all(t.error.endswith("connection refused") for t in result.turns)
    assert store.open_db(demo_db)["replay_runs"].get(result.run_id)["status"] == "regressed"


# -- proactive sends and ids ------------------------------------------------------------------------------


async def test_proactive_sends_that_happen_again_belong_to_the_turn_they_follow(demo_db, sample_bot):
    result = await replay_session(demo_db, "demo", sample_bot.url, options=ReplayOptions(quiet_ms=QUIET))
    proactive = by_text(result)["proactive"]
    assert [(a["text"], a["proactive"]) for a in proactive.recorded] == [
        ("will send proactively", False), ("proactive hello", True)]
    assert [(a["text"], a["proactive"]) for a in proactive.replayed] == [
        ("will send proactively", False), ("proactive hello", True)]
    assert proactive.status == "same" and result.proactive == []


async def test_proactive_sends_that_do_not_happen_again_are_reported_not_counted(recorders, connector, sample_bot):
    proxy = await recorders.start(sample_bot.url, name="s")
    await connector.send(proxy.endpoint, connector.activity(text="hello", conversation_id="c1"))
    # The bot's own initiative, some time later: a send through the recorder outside any turn.
    svc = f"http://127.0.0.1:{proxy.listen[1]}/_botproxy/svc/{proxy.keys.mint(connector.service_url)}"
    async with aiohttp.ClientSession() as http:
        reminder = {"type": "message", "text": "reminder!", "conversation": {"id": "c1"}, "from": {"id": "bot"}}
        async with http.post(f"{svc}/v3/conversations/c1/activities", json=reminder) as resp:
            assert resp.status == 200
    await connector.send(proxy.endpoint, connector.activity(text="card", conversation_id="c1"))
    await recorders.stop(proxy)

    result = await replay_session(recorders.db_path, "s", sample_bot.url, options=ReplayOptions(quiet_ms=QUIET))
    assert {t.status for t in result.turns} == {"same"} and not result.regressed
    [entry] = result.proactive
    assert (entry["conversation_id"], entry["after_index"], entry["status"]) == ("c1", 1, "not_replayed")
    assert [a["text"] for a in entry["recorded"]] == ["reminder!"]
    assert result.summary["proactive_not_replayed"] == 1


async def test_an_inbound_reply_to_a_bot_message_names_the_replay_s_id_for_it(recorders, connector, sample_bot):
    proxy = await recorders.start(sample_bot.url, name="s")
    await connector.send(proxy.endpoint, connector.activity(text="hello", conversation_id="c1"))
    [reply] = [c for c in connector.calls if c.route == "reply_to_activity"]
    reaction = connector.activity("messageReaction", conversation_id="c1", replyToId=reply.response["id"],
                                  reactionsAdded=[{"type": "like"}])
    await connector.send(proxy.endpoint, reaction)
    await recorders.stop(proxy)

    result = await replay_session(recorders.db_path, "s", sample_bot.url, options=ReplayOptions(quiet_ms=QUIET))
    db = store.open_db(recorders.db_path)
    replayed = list(store.iter_activities(db, result.run["candidate_session"]["id"]))
    hello_reply = next(a for a in replayed if a["text"] == "You said: hello")
    inbound_reaction = next(a for a in replayed if a["type"] == "messageReaction")
    assert inbound_reaction["reply_to_id"] == hello_reply["activity_id"] != reply.response["id"]
    assert {t.status for t in result.turns} == {"same"}


async def test_conversations_run_in_parallel_with_their_turns_in_order(recorders, connector, sample_bot):
    script = {f"conv-{c}": [f"c{c} t{t}" for t in range(4)] for c in range(6)}
    db = await record(recorders, connector, sample_bot.url, script)
    result = await replay_session(db, "s", sample_bot.url, options=ReplayOptions(quiet_ms=QUIET, concurrency=3))
    assert result.summary["turns"] == 30 and {t.status for t in result.turns} == {"same"}
    replayed = list(store.iter_activities(store.open_db(db), result.run["candidate_session"]["id"]))
    for conversation, texts in script.items():
        inbound = [a["text"] for a in replayed if a["conversation_id"] == conversation and a["direction"] == "to_bot"]
        assert inbound == [None, *texts]  # conversationUpdate first, then the messages in order


async def test_an_inbound_activity_without_a_body_is_reported_not_sent(recorders, connector, sample_bot):
    db_path = await record(recorders, connector, sample_bot.url, {"c1": ["hello", "card"]})
    db = store.open_db(db_path)
    with db.conn:  # as an import that lost the body of one inbound activity
        db.execute("update activities set body = null where session_id = 1 and direction = 'to_bot' and text = 'hello'")
    result = await replay_session(db_path, "s", sample_bot.url, options=ReplayOptions(quiet_ms=QUIET))
    hello = by_text(result)["hello"]
    assert hello.status == "error" and not hello.regressed and hello.candidate_seq is None
    assert hello.error == "incomplete recording: the inbound body is missing or not an activity"
    assert by_text(result)["card"].status == "same" and not result.regressed
