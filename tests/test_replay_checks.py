"""Checks over the replayed traffic, and the members a recording's connector returned.

A small wire-level bot (plain aiohttp, no SDK) whose builds differ in ways the diff cannot see but the
checks can: build "stamps" puts a `timestamp` on its replies (a volatile field, so no difference, but
rule BP-A15 now fires).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from botproxy import store
from botproxy.replay.driver import replay_session
from botproxy.replay.plan import ReplayOptions, load_plan
from botproxy.standins.connector import ConnectorChannel
from botproxy.standins.server import serve

pytest.importorskip("botproxy.checks")


class WireBot:
    """Echoes messages via ReplyToActivity; `members` answers with the roster the connector returns."""

    def __init__(self, stamps: bool = False, late: bool = False, status: int = 200) -> None:
        self.stamps = stamps
        self.status = status  # what it answers to a message
        self.late = late  # answer the POST first, then reply 50 ms later (fire and forget)
        self.runner: web.AppRunner | None = None
        self.session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/messages", self.messages)
        self.runner, port = await serve(app)
        self.url = f"http://127.0.0.1:{port}/api/messages"
        self.session = aiohttp.ClientSession()

    async def stop(self) -> None:
        assert self.runner is not None and self.session is not None
        await self.session.close()
        await self.runner.cleanup()

    async def messages(self, request: web.Request) -> web.Response:
        assert self.session is not None
        activity = await request.json()
        if activity.get("type") != "message":
            return web.Response(status=200)
        if self.late:
            answer = web.Response(status=200)
            await answer.prepare(request)
            await answer.write_eof()
            await asyncio.sleep(0.05)  # the bot's own behaviour: a reply sent after it answered
            await self._reply(activity)
            return answer
        await self._reply(activity)
        return web.Response(status=self.status)

    async def _reply(self, activity: dict) -> None:
        assert self.session is not None
        base = activity["serviceUrl"].rstrip("/")
        conversation = quote(activity["conversation"]["id"], safe="")
        text = activity.get("text") or ""
        if text == "members":
            async with self.session.get(f"{base}/v3/conversations/{conversation}/members") as resp:
                roster = await resp.json()
            text = "members: " + ", ".join(m.get("name") or m["id"] for m in roster)
        else:
            text = f"echo: {text}"
        reply = {"type": "message", "text": text, "from": {"id": activity["recipient"]["id"]},
                 "recipient": {"id": activity["from"]["id"]}, "conversation": activity["conversation"],
                 "replyToId": activity["id"], "channelId": activity["channelId"]}
        if self.stamps:
            reply["timestamp"] = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        url = f"{base}/v3/conversations/{conversation}/activities/{quote(activity['id'], safe='')}"
        async with self.session.post(url, json=reply) as resp:
            await resp.read()


@pytest.fixture
async def wire_bots() -> AsyncIterator[tuple[WireBot, WireBot]]:
    plain, stamps = WireBot(), WireBot(stamps=True)
    await plain.start()
    await stamps.start()
    try:
        yield plain, stamps
    finally:
        await plain.stop()
        await stamps.stop()


async def test_a_new_finding_alone_makes_a_turn_changed_unless_the_baseline_has_it(recorders, connector, wire_bots):
    plain, stamps = wire_bots
    proxy = await recorders.start(plain.url, name="s")
    for text in ("hello", "again"):
        await connector.send(proxy.endpoint, connector.activity(text=text, conversation_id="c1"))
    await recorders.stop(proxy)

    same = await replay_session(recorders.db_path, "s", plain.url, options=ReplayOptions(quiet_ms=50))
    assert {t.status for t in same.turns} == {"same"} and same.summary["new_findings"] == 0

    result = await replay_session(recorders.db_path, "s", stamps.url, options=ReplayOptions(quiet_ms=50))
    assert result.summary["differences"] == 0  # the timestamp is volatile: the diff cannot see it...
    first, second = result.turns  # BP-A15 is reported once per conversation: at its first reply
    assert first.status == "changed" and first.regressed  # ...but the checks can
    [finding] = first.new_findings
    assert finding["rule"] == "BP-A15" and finding["noise"] is False
    assert finding["seq"] == first.replayed[0]["seq"]  # it points at the replayed activity
    assert second.status == "same" and second.new_findings == []
    assert result.summary["new_findings"] == 1 and result.summary["regressed"] == 1

    with_baseline = await replay_session(recorders.db_path, "s", stamps.url, baseline_url=stamps.url,
                                         options=ReplayOptions(quiet_ms=50))
    assert {t.status for t in with_baseline.turns} == {"same"}
    assert all(f["noise"] for t in with_baseline.turns for f in t.new_findings)

    unchecked = await replay_session(recorders.db_path, "s", stamps.url,
                                     options=ReplayOptions(quiet_ms=50, checks=False))
    assert {t.status for t in unchecked.turns} == {"same"} and unchecked.summary["checks"] is False


async def test_the_channel_knows_the_members_the_recording_s_connector_returned(recorders, wire_bots):
    plain, _ = wire_bots
    channel = ConnectorChannel(members=[{"id": "u9", "name": "Nine"}])  # a roster only the recording knew
    await channel.start()
    try:
        proxy = await recorders.start(plain.url, name="s")
        await channel.send(proxy.endpoint, channel.activity(text="members", conversation_id="c1", user_name="Ada"))
        await recorders.stop(proxy)
    finally:
        await channel.stop()
    [recorded] = [a["text"] for a in recorders.activities("s") if a["direction"] == "from_bot"]
    assert recorded == "members: Nine, Ada"

    result = await replay_session(recorders.db_path, "s", plain.url, options=ReplayOptions(quiet_ms=50))
    [turn] = result.turns
    assert turn.replayed[0]["text"] == "members: Nine, Ada" and turn.status == "same"


async def test_turns_the_recording_shows_answered_late_wait_for_the_quiet_window(recorders, connector):
    bot = WireBot(late=True)
    await bot.start()
    try:
        proxy = await recorders.start(bot.url, name="s")
        for text in ("one", "two"):
            await connector.send(proxy.endpoint, connector.activity(text=text, conversation_id="c1"))
        await connector.wait_for_calls(2)
        await recorders.stop(proxy)
        db = store.open_db(recorders.db_path)
        plan = load_plan(db, store.resolve_session(db, "s"))
        assert [t.late for t in plan.turns] == [True, True]  # each reply came after the bot's answer

        result = await replay_session(recorders.db_path, "s", bot.url, options=ReplayOptions(quiet_ms=300))
        assert [(t.status, [a["text"] for a in t.replayed]) for t in result.turns] == [
            ("same", ["echo: one"]), ("same", ["echo: two"])]
    finally:
        await bot.stop()


async def test_turns_answered_in_time_do_not_wait_and_every_turn_can_be_asked_for(recorders, connector, wire_bots):
    plain, _ = wire_bots
    proxy = await recorders.start(plain.url, name="s")
    await connector.send(proxy.endpoint, connector.activity(text="one", conversation_id="c1"))
    await recorders.stop(proxy)
    db = store.open_db(recorders.db_path)
    assert [t.late for t in load_plan(db, store.resolve_session(db, "s")).turns] == [False]
    result = await replay_session(recorders.db_path, "s", plain.url,
                                  options=ReplayOptions(quiet_ms=100, quiet_every_turn=True))
    assert result.run["options"]["quiet_every_turn"] is True and result.turns[0].status == "same"


async def test_a_changed_http_answer_is_a_difference(recorders, connector, wire_bots):
    plain, _ = wire_bots
    proxy = await recorders.start(plain.url, name="s")
    await connector.send(proxy.endpoint, connector.activity(text="one", conversation_id="c1"))
    await recorders.stop(proxy)
    accepted = WireBot(status=202)
    await accepted.start()
    try:
        result = await replay_session(recorders.db_path, "s", accepted.url, options=ReplayOptions(quiet_ms=50))
    finally:
        await accepted.stop()
    [turn] = result.turns
    assert turn.status == "changed" and turn.outcome.status == 202
    assert [(d.kind, d.path, d.recorded, d.replayed) for d in turn.differences] == [
        ("changed", "http_status", 200, 202)]
