"""End to end: a Bot Framework SDK bot behind the real embedded recorder, a Connector stand-in taking
its replies over real loopback HTTP, and the rows that land in a real SQLite file."""

import asyncio
import json

import pytest
from aiohttp import web
from botbuilder.core import ActivityHandler, BotAdapter, MessageFactory, TurnContext
from botbuilder.integration.aiohttp import ConfigurationBotFrameworkAuthentication
from botbuilder.schema import ConversationParameters
from botframework.connector.aio import ConnectorClient

from botproxy.sample_bot import AnonymousConfig, SampleCloudAdapter, start_bot
from botproxy.standins.server import serve

CONV = "conv-e2e"


def by_text(activities, text):
    [found] = [a for a in activities if a["text"] == text]
    return found


async def test_sdk_bot_turns_replies_and_connector_ids(recorders, connector, sample_bot):
    proxy = await recorders.start(sample_bot.url)
    user = {"id": "user1", "name": "Ada"}
    send = connector.send

    status, _ = await send(proxy.endpoint, connector.activity("conversationUpdate", conversation_id=CONV,
                                                               membersAdded=[user, connector.bot]))
    assert status == 201
    for text in ("hello", "update", "delete", "proactive"):
        status, _ = await send(proxy.endpoint, connector.activity(text=text, conversation_id=CONV))
        assert status == 201
    await asyncio.wait_for(sample_bot.proactive_done.wait(), 10)
    status, body = await send(proxy.endpoint, connector.activity("invoke", conversation_id=CONV, name="test/echo",
                                                                  value={"n": 7}))
    assert status == 200 and json.loads(body) == {"echo": {"n": 7}}
    status, body = await send(proxy.endpoint, connector.activity(text="expect", conversation_id=CONV,
                                                                  deliveryMode="expectReplies"))
    assert status == 200 and json.loads(body)["activities"][0]["text"] == "You said: expect"
    summary = await recorders.stop(proxy)

    acts = recorders.activities()
    assert summary["activities"] == len(acts) == 17
    assert [a["seq"] for a in acts] == list(range(1, 18))
    inbound = {a["text"] or a["type"]: a for a in acts if a["direction"] == "to_bot"}

    welcome = by_text(acts, "Welcome, Ada!")
    assert welcome["route"] == "send_to_conversation" and welcome["turn_seq"] == inbound["conversationUpdate"]["seq"]

    reply = by_text(acts, "You said: hello")
    assert reply["route"] == "reply_to_activity" and reply["reply_to_id"] == inbound["hello"]["activity_id"]
    assert reply["turn_seq"] == inbound["hello"]["seq"]
    # The id the connector assigned is the activity's id in the recording.
    assigned = {c.response["id"] for c in connector.calls if c.route == "reply_to_activity" and c.response}
    assert reply["activity_id"] in assigned

    original, updated = by_text(acts, "original"), by_text(acts, "updated")
    assert updated["route"] == "update_activity" and updated["activity_id"] == original["activity_id"]
    assert updated["target_seq"] == original["seq"] and updated["turn_seq"] == inbound["update"]["seq"]

    doomed = by_text(acts, "to be deleted")
    [delete] = [a for a in acts if a["route"] == "delete_activity"]
    assert delete["activity_id"] == doomed["activity_id"] and delete["target_seq"] == doomed["seq"]
    assert delete["status"] == 200

    proactive = by_text(acts, "proactive hello")
    assert proactive["turn_seq"] is None  # sent after its turn ended: proactive
    assert by_text(acts, "will send proactively")["turn_seq"] == inbound["proactive"]["seq"]

    [invoke_response] = [a for a in acts if a["type"] == "invokeResponse"]
    assert invoke_response["source"] == "response" and invoke_response["turn_seq"] == inbound["invoke"]["seq"]
    assert invoke_response["body"]["value"] == {"status": 200, "body": {"echo": {"n": 7}}}

    expected = by_text(acts, "You said: expect")
    assert expected["route"] == "expected_replies" and expected["turn_seq"] == inbound["expect"]["seq"]

    # The recording keeps the serviceUrl the channel sent, not the one we rewrote for the bot.
    assert {a["service_url"] for a in acts if a["service_url"]} == {connector.service_url}
    assert all(c.body.get("serviceUrl") == connector.service_url for c in connector.calls if isinstance(c.body, dict))
    ex = recorders.exchanges()
    assert {e["leg"] for e in ex} == {"inbound", "outbound"}
    assert all(e["rewritten"] == 1 for e in ex if e["leg"] == "inbound")
    assert all(e["closed"] > e["opened"] for e in ex)


async def test_many_conversations_at_once_lose_nothing_and_keep_order(recorders, connector, sample_bot):
    proxy = await recorders.start(sample_bot.url)
    conversations, turns = 20, 20

    async def converse(c: int) -> None:
        for t in range(turns):
            status, _ = await connector.send(proxy.endpoint, connector.activity(text=f"c{c} t{t}",
                                                                                conversation_id=f"conv-{c}"))
            assert status == 201

    await asyncio.gather(*(converse(c) for c in range(conversations)))
    await recorders.stop(proxy)

    acts = recorders.activities()
    assert len(acts) == conversations * turns * 2
    by_seq = {a["seq"]: a for a in acts}
    for c in range(conversations):
        mine = [a for a in acts if a["conversation_id"] == f"conv-{c}"]
        inbound = [a["text"] for a in mine if a["direction"] == "to_bot"]
        replies = [a for a in mine if a["direction"] == "from_bot"]
        assert inbound == [f"c{c} t{t}" for t in range(turns)]
        assert [r["text"] for r in replies] == [f"You said: c{c} t{t}" for t in range(turns)]
        for r in replies:
            assert by_seq[r["turn_seq"]]["text"] == r["text"].removeprefix("You said: ")
    assert len(recorders.exchanges()) == conversations * turns * 2


async def test_two_builds_side_by_side_record_into_separate_sessions(recorders, connector):
    bot2 = await start_bot(build=2)
    try:
        first = await recorders.start(bot2.url, name="one")
        await connector.send(first.endpoint, connector.activity(text="weather?", conversation_id="w"))
        await recorders.stop(first)
        second = await recorders.start(bot2.url, name="two")
        await connector.send(second.endpoint, connector.activity(text="weather?", conversation_id="w"))
        await recorders.stop(second)
    finally:
        await bot2.stop()
    assert [a["text"] for a in recorders.activities("one")] == ["weather?", "You said: weather?!"]
    assert len(recorders.activities("two")) == 2


async def test_a_bot_that_cannot_be_reached_is_said_on_the_console_as_it_happens(recorders, connector, free_port):
    # Issue 11 (12): a recording of nothing but 502s warns while it runs, once per outage.
    from botproxy.present.console import Console

    loop = asyncio.get_running_loop()
    lines: list[str] = []
    warned = asyncio.Event()

    def echo(line: str) -> None:  # the console runs on the recorder's writer thread
        lines.append(line)
        if line.startswith("warning: the bot did not answer"):
            loop.call_soon_threadsafe(warned.set)

    proxy = await recorders.start(f"http://127.0.0.1:{free_port()}/api/messages", observers=[Console(echo)])
    for text in ("one", "two"):
        status, _ = await connector.send(proxy.endpoint, connector.activity(text=text, conversation_id=CONV))
        assert status == 502
    await asyncio.wait_for(warned.wait(), 10)
    await recorders.stop(proxy)
    warnings = [line for line in lines if line.startswith("warning: the bot did not answer")]
    assert len(warnings) == 1 and "Is the bot running" in warnings[0]


class CreatesAndContinuesBot(ActivityHandler):
    """Starts a conversation and goes on in it at the serviceUrl the answer names, as botbuilder-js's and
    .NET's BotFrameworkAdapter.createConversation do (`request.serviceUrl = response.serviceUrl`)."""

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        client = turn_context.turn_state[BotAdapter.BOT_CONNECTOR_CLIENT_KEY]
        activity = turn_context.activity
        created = await client.conversations.create_conversation(
            ConversationParameters(bot=activity.recipient, members=[activity.from_property], is_group=False)
        )
        there = ConnectorClient(client.config.credentials, base_url=created.service_url)
        await there.conversations.send_to_conversation(created.id, MessageFactory.text("hello in the new one"))
        await turn_context.send_activity("started one")


@pytest.mark.slow
async def test_a_created_conversations_service_url_brings_its_calls_through_the_recorder(recorders, connector):
    """The CreateConversation answer names the new conversation's serviceUrl; the bot gets ours for it (the
    recording keeps the connector's), so what it sends there is recorded too, and reaches the connector."""
    adapter = SampleCloudAdapter(ConfigurationBotFrameworkAuthentication(AnonymousConfig()))
    app = web.Application()
    bot = CreatesAndContinuesBot()
    app.router.add_post("/api/messages", lambda request: adapter.process(request, bot))
    runner, port = await serve(app)
    try:
        proxy = await recorders.start(f"http://127.0.0.1:{port}/api/messages")
        status, _ = await connector.send(proxy.endpoint, connector.activity(text="start", conversation_id=CONV))
        assert status == 201
        await recorders.stop(proxy)
    finally:
        await runner.cleanup()
    acts = recorders.activities()
    [sent] = [a for a in acts if a["text"] == "hello in the new one"]
    assert sent["route"] == "send_to_conversation" and sent["service_url"] == connector.service_url
    [created] = [e for e in recorders.exchanges() if e["route"] == "create_conversation"]
    assert json.loads(created["response_body"])["serviceUrl"] == connector.service_url  # as the connector sent it
    [call] = [c for c in connector.calls if c.body and c.body.get("text") == "hello in the new one"]
    assert call.route == "send_to_conversation" and call.conversation_id != CONV
