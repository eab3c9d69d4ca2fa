"""Real Microsoft 365 Agents SDK bots (Python and JavaScript) behind the real recorder: a streamed reply, a card
and a proactive send, on Teams (personal chat), Web Chat and Direct Line. What the stream rules find on them is pinned
here, SDK by SDK: a stream that is correct for its channel gets no error, and the one quirk a warning is
the Agents SDK for JavaScript's numbered final on Teams (1, 2, 4). When the channel ends a stream with 403
ContentStreamNotAllowed (the user pressed stop, the time ran out), or a group chat's stream with BadArgument,
both SDKs do right: info only."""

from __future__ import annotations

import asyncio

import pytest
from agentskit import SDKS, STREAMED_TEXT, agents_bot
from checkkit import record_session
from conftest import pick_free_port

from botproxy import store
from botproxy.checks import check_session
from botproxy.standins.connector import ConnectorChannel
from botproxy.wire import streams

pytestmark = pytest.mark.slow
# "copilot": Microsoft 365 Copilot, channel msteams with a ProductInfo COPILOT entity (its own profile).
CHANNELS = ("msteams", "copilot", "webchat", "directline")
# What the checks say about each SDK's traffic beyond the info every SDK earns (A19 roles, A04/O04 on the
# proactive send): only these, at the stream's final.
EXPECTED = {
    ("py", "msteams"): [],
    ("py", "webchat"): [],
    ("js", "msteams"): [("BP-S02", "warning")],  # final streamSequence = last + 2
    ("js", "webchat"): [("BP-S02", "info")],
    ("py", "copilot"): [],
    ("js", "copilot"): [("BP-S02", "warning")],
    ("py", "directline"): [],
    ("js", "directline"): [("BP-S02", "info")],
}
EVERY_SDK_INFO = {"BP-A19", "BP-A04", "BP-O04"}


async def converse(tmp_path, sdk: str, channel_id: str) -> tuple[str, list[dict]]:
    """Record "stream", "card" and "proactive" through the recorder; the session's activities."""
    channel = ConnectorChannel(channel_id="msteams" if channel_id == "copilot" else channel_id)
    await channel.start()
    try:
        async with agents_bot(sdk, pick_free_port()) as bot_url:
            async with record_session(tmp_path, bot_url, name=f"{sdk}-{channel_id}") as rec:
                extra = {"conversation": {"id": "conv-1", "conversationType": "personal", "tenantId": "t1"}}
                for text in ("stream", "card", "proactive"):
                    fields = extra if channel_id in ("msteams", "copilot") else {}
                    if channel_id == "copilot":
                        fields = {**fields, "entities": [{"type": "ProductInfo", "id": "COPILOT"}]}
                    status, _ = await channel.send(
                        rec.endpoint, channel.activity(text=text, conversation_id="conv-1", **fields)
                    )
                    assert status < 300, (text, status)
                # the proactive "later" comes after its turn ended
                await channel.wait_for_calls(1, 30, lambda c: (c.body or {}).get("text") == "later")
    finally:
        await channel.stop()
    db = store.open_db(rec.db_path)
    return rec.db_path, list(store.iter_activities(db, 1))


@pytest.mark.parametrize("channel_id", CHANNELS)
@pytest.mark.parametrize("sdk", SDKS)
async def test_a_real_agents_sdk_stream_is_recorded_and_checked(tmp_path, sdk, channel_id):
    db_path, activities = await converse(tmp_path, sdk, channel_id)
    sent = [a for a in activities if a["direction"] == "from_bot"]
    parts = [(a, streams.stream_part(a["body"] or {})) for a in sent]
    stream = [(a, part) for a, part in parts if part is not None]
    kinds = [part.stream_type for _, part in stream]
    assert kinds[0] == "informative" and kinds[-1] == "final" and "streaming" in kinds, kinds
    assert [a["type"] for a, _ in stream] == ["typing"] * (len(stream) - 1) + ["message"]
    final = stream[-1][0]
    assert final["text"] == STREAMED_TEXT
    assert [x["contentType"] for x in final["body"]["attachments"]] == ["application/vnd.microsoft.card.hero"]
    # one stream: the first chunk's returned id (Teams, JS) or the SDK's own GUID (PY on Web Chat) names it
    assert len({part.stream_id for _, part in stream[1:]}) == 1
    assert streams.groups([(part, a["activity_id"]) for a, part in parts])[0] == list(range(len(stream)))
    cards = [a for a, part in parts if part is None and (a["body"] or {}).get("attachments")]
    assert [c["body"]["attachments"][0]["contentType"] for c in cards] == ["application/vnd.microsoft.card.adaptive"]
    assert [a["text"] for a in sent if a["text"] in ("ok", "later")] == ["ok", "later"]

    db = store.open_db(db_path)
    live = [dict(f) for f in db.query("select seq, rule, severity from findings order by rowid")]
    beyond = [(f["rule"], f["severity"]) for f in live if f["rule"] not in EVERY_SDK_INFO]
    assert beyond == EXPECTED[(sdk, channel_id)], live
    assert all(f["severity"] == "info" for f in live if f["rule"] in EVERY_SDK_INFO), live
    assert all(f["seq"] == final["seq"] for f in live if f["rule"].startswith("BP-S")), live
    assert not any(f["rule"] == "BP-O12" for f in live)  # chunks are not typing indicators
    again = [(f.seq, f.rule, f.severity) for f in check_session(db, 1)]
    assert again == [(f["seq"], f["rule"], f["severity"]) for f in live]


ENDINGS = {
    "timeout": "Content stream finished due to exceeded streaming time.",
    "cancelled": "Content stream was cancelled by user.",
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
@pytest.mark.parametrize("sdk", SDKS)
async def test_the_channel_ending_a_real_stream_with_403_is_understood(tmp_path, sdk, ending):
    """Teams answers a chunk 403 ContentStreamNotAllowed: the SDKs stop streaming, and after a timeout
    finish the answer by updating the stream's message (PUT). Info, not a warning: the bots did right."""
    channel = ConnectorChannel(channel_id="msteams")
    await channel.start()
    try:
        async with agents_bot(sdk, pick_free_port()) as bot_url:
            async with record_session(tmp_path, bot_url, name=ending) as rec:
                conversation = {"id": "conv-1", "conversationType": "personal", "tenantId": "t1"}
                inbound = channel.activity(text="stream", conversation_id="conv-1", conversation=conversation)
                turn = asyncio.create_task(channel.send(rec.endpoint, inbound))
                await channel.wait_for_calls(1, 30)  # the informative update went out: refuse the next chunk
                channel.fail_next(403, code="ContentStreamNotAllowed", message=ENDINGS[ending])
                status, _ = await turn
                assert status < 300
    finally:
        await channel.stop()
    db = store.open_db(rec.db_path)
    sent = [a for a in store.iter_activities(db, 1) if a["direction"] == "from_bot"]
    refused = next(a for a in sent if a["status"] == 403)
    after = sent[sent.index(refused) + 1 :]
    if ending == "timeout":
        stream_id = sent[0]["activity_id"]
        assert [(a["route"], a["url_activity_id"]) for a in after] == [("update_activity", stream_id)] * len(after)
        assert after and after[-1]["text"] == STREAMED_TEXT
    else:
        assert after == []  # nothing more once the user pressed stop
    findings = [dict(f) for f in db.query("select seq, rule, severity, message from findings order by rowid")]
    assert [(f["seq"], f["rule"]) for f in findings if f["rule"].startswith("BP-S")] == [(refused["seq"], "BP-S14")]
    assert all(f["severity"] == "info" for f in findings), findings


@pytest.mark.parametrize("sdk", SDKS)
async def test_a_real_stream_in_a_teams_group_chat_is_refused_and_falls_back_to_one_message(tmp_path, sdk):
    """Teams answers a stream in a group chat BadArgument; the SDKs try on every turn and then send the
    answer as one message: BP-S13 says so as info, at the refused request, and nothing else is reported."""
    channel = ConnectorChannel(channel_id="msteams")
    await channel.start()
    try:
        async with agents_bot(sdk, pick_free_port()) as bot_url:
            async with record_session(tmp_path, bot_url, name="group") as rec:
                conversation = {"id": "conv-g", "conversationType": "groupChat", "isGroup": True, "tenantId": "t1"}
                message = "Streaming API is not enabled for non personal scope or non copilot conversations."
                channel.fail_next(400, code="BadArgument", message=message)
                inbound = channel.activity(text="stream", conversation_id="conv-g", conversation=conversation)
                status, _ = await channel.send(rec.endpoint, inbound)
                assert status < 300
    finally:
        await channel.stop()
    db = store.open_db(rec.db_path)
    refused, *rest = [a for a in store.iter_activities(db, 1) if a["direction"] == "from_bot"]
    assert refused["status"] == 400 and streams.stream_part(refused["body"]) is not None
    assert [(a["type"], a["text"], streams.stream_part(a["body"])) for a in rest] == [("message", STREAMED_TEXT, None)]
    findings = [dict(f) for f in db.query("select seq, rule, severity from findings order by rowid")]
    assert [(f["seq"], f["rule"], f["severity"]) for f in findings if f["rule"].startswith("BP-S")] == [
        (refused["seq"], "BP-S13", "info")
    ]
    assert all(f["severity"] == "info" for f in findings), findings
