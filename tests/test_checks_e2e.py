"""End to end through the real proxy (embedded mitmproxy, serviceUrl rewrite, real SQLite): a hand-written
wire bot caught making each mistake, and the SDK sample bot caught making none; live findings equal the
findings of a check of the stored session."""

from __future__ import annotations

import asyncio
import json

import pytest
from checkkit import ChannelClient, MiniConnector, record_session
from wirebot import WireBot

from botproxy import store
from botproxy.checks import Engine, Finding, check_session, stored_findings
from botproxy.sample_bot import start_bot
from botproxy.standins.connector import ConnectorChannel

# Inbound fields a mistake needs (Teams-only rules need a Teams conversation).
SETUP = {
    "BP-A24": {"channelId": "msteams"},
    "BP-A27": {"channelId": "msteams"},
    "BP-O05": {"deliveryMode": "expectReplies"},
}
# Findings that come with a mistake because they describe the same act from another side.
COMPANIONS = {
    "BP-A01": {"BP-A31"},  # the URL's conversation was never seen
    "BP-O01": {"BP-O02"},  # two truly concurrent sends may also complete inverted
    "BP-O02": {"BP-O01"},  # an inversion needs an overlap
    "BP-O03": {"BP-A04"},  # when the reply went out, its parent was unknown
}


def session_findings(db_path: str, name: str) -> tuple[list[Finding], list[Finding], list[dict], list[dict]]:
    db = store.open_db(db_path)
    session_id = store.resolve_session(db, name)["id"]
    live = stored_findings(db, session_id)
    offline = list(check_session(db, session_id, engine=Engine(strict=True)))
    activities = list(store.iter_activities(db, session_id))
    errors = [dict(r) for r in db.query("select * from errors where session_id = ?", [session_id])]
    return live, offline, activities, errors


@pytest.mark.slow
async def test_wire_bot_mistakes_are_caught_live_and_offline(tmp_path):
    connector = MiniConnector()
    await connector.start()
    bot = WireBot(connector)
    await bot.start()
    amer, emea = connector.url("amer"), connector.url("emea")
    try:
        async with (
            record_session(tmp_path, bot.url) as recording,
            ChannelClient(recording.endpoint) as channel,
        ):
            assert (await channel.say(amer, "ok", "hello"))[0] == 200
            assert (await channel.say(emea, "ok-emea", "hello"))[0] == 200
            for code in sorted(bot.mistakes):
                conv = f"m-{code}"
                if code == "BP-O04":
                    assert (await channel.say(amer, conv, "an earlier message"))[0] == 200
                status, _ = await channel.say(amer, conv, f"mistake:{code}", **SETUP.get(code, {}))
                assert status == 200, code
                if code == "BP-O03":
                    assert (await channel.say(amer, conv, "the parent, late", id="future-1"))[0] == 200
            assert (await channel.say(amer, "ok", "still fine"))[0] == 200
    finally:
        await bot.stop()
        await connector.stop()
    assert bot.failures == []
    assert recording.checks.engine.failures == 0

    live, offline, activities, errors = session_findings(recording.db_path, "e2e")
    assert errors == []
    assert offline == live

    # Each mistake is found between its inbound message and the next one, at the bot's own activity.
    inbound = [a for a in activities if a["direction"] == "to_bot"]
    by_seq = {a["seq"]: a for a in activities}
    for start, end in zip(inbound, [*inbound[1:], None], strict=True):
        window = [
            f for f in live if f.seq is not None and start["seq"] <= f.seq < (end["seq"] if end else 10**9)
        ]
        text = start["text"] or ""
        code = text.removeprefix("mistake:") if text.startswith("mistake:") else None
        loud = {f.rule for f in window if f.severity != "info"}
        if code is None:
            assert loud == set(), (text, [f.to_dict() for f in window])
            continue
        found = [f for f in window if f.rule == code]
        assert found, (code, [f.to_dict() for f in window])
        assert all(by_seq[f.seq]["direction"] == "from_bot" for f in found), code
        assert loud <= {code} | COMPANIONS.get(code, set()), (code, loud)


@pytest.mark.slow
@pytest.mark.parametrize("channel_id", ["msteams", "emulator", "directline"])
async def test_sdk_sample_bot_gets_no_errors_or_warnings(tmp_path, channel_id):
    channel = ConnectorChannel(channel_id=channel_id)
    await channel.start()
    sample = await start_bot()
    conv = f"sdk-{channel_id}"
    try:
        async with record_session(tmp_path, sample.url, name="sdk") as recording:
            send = channel.send
            user = {"id": "user1", "name": "Ada"}
            status, _ = await send(
                recording.endpoint,
                channel.activity(
                    "conversationUpdate", conversation_id=conv, membersAdded=[user, channel.bot]
                ),
            )
            assert status == 201
            for text in ("hello", "help", "typing", "card", "update", "delete", "two", "proactive"):
                status, _ = await send(recording.endpoint, channel.activity(text=text, conversation_id=conv))
                assert status == 201, text
            await asyncio.wait_for(sample.proactive_done.wait(), 10)
            status, body = await send(
                recording.endpoint,
                channel.activity("invoke", conversation_id=conv, name="test/echo", value={"n": 1}),
            )
            assert status == 200 and json.loads(body) == {"echo": {"n": 1}}
            status, body = await send(
                recording.endpoint,
                channel.activity(text="expect", conversation_id=conv, deliveryMode="expectReplies"),
            )
            assert status == 200 and json.loads(body)["activities"]
            await channel.wait_for_calls(13)
    finally:
        await sample.stop()
        await channel.stop()
    assert sample.bot.proactive_errors == [] and sample.bot.turn_errors == []

    live, offline, activities, errors = session_findings(recording.db_path, "sdk")
    assert errors == []
    assert offline == live
    assert [f.to_dict() for f in live if f.severity != "info"] == []
    routes = {a["route"] for a in activities if a["direction"] == "from_bot"}
    assert {"update_activity", "delete_activity", "expected_replies", "invoke_response"} <= routes
    proactive = [f for f in live if f.rule == "BP-A04"]
    if channel_id == "directline":
        # protocol.md S-2: on Direct Line the Python SDK never sets replyToId, so it never dangles.
        assert proactive == [] and "reply_to_activity" not in routes
    else:
        [finding] = proactive
        assert finding.severity == "info" and finding.details["sdk_continuation_id"] is True
        assert next(a for a in activities if a["seq"] == finding.seq)["text"] == "proactive hello"
