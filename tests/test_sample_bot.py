"""The SDK sample bot, driven by the connector stand-in over loopback HTTP (no proxy)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from typing import Any

import aiohttp
import pytest

from botproxy.sample_bot import ERROR_TEXT, HELP_TEXT, HELP_TEXT_BUILD_2, SampleBot, SampleBotServer
from botproxy.standins.connector import ConnectorCall, ConnectorChannel

CONV = "conv1"


async def turn(
    connector: ConnectorChannel,
    bot: SampleBotServer,
    text: str | None,
    activity_type: str = "message",
    **fields: Any,
) -> tuple[int, bytes, dict[str, Any], list[ConnectorCall]]:
    """Send one inbound activity; return the bot's HTTP answer and the connector calls of that turn.

    CloudAdapter answers the inbound POST only after the turn has run, so every call the turn makes has
    arrived by the time send() returns (proactive sends excepted).
    """
    before = len(connector.calls)
    inbound = connector.activity(activity_type, text, conversation_id=CONV, **fields)
    status, body = await connector.send(bot.url, inbound)
    return status, body, inbound, connector.calls[before:]


def texts(calls: list[ConnectorCall]) -> list[str | None]:
    return [c.body.get("text") for c in calls]


async def test_health(sample_bot: SampleBotServer) -> None:
    assert sample_bot.url == f"http://127.0.0.1:{sample_bot.port}/api/messages"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{sample_bot.port}/health") as resp:
            assert (resp.status, await resp.text()) == (200, "ok")


async def test_echo_replies_to_the_inbound_activity(
    connector: ConnectorChannel, sample_bot: SampleBotServer
) -> None:
    status, body, inbound, calls = await turn(connector, sample_bot, "  Hello there ")
    assert (status, body) == (201, b"")
    assert len(calls) == 1
    call = calls[0]
    assert (call.route, call.conversation_id, call.activity_id, call.status) == (
        "reply_to_activity",
        CONV,
        inbound["id"],
        200,
    )
    sent = call.body
    assert sent["text"] == "You said: Hello there"
    assert sent["replyToId"] == inbound["id"]
    assert sent["from"] == {"id": "bot", "name": "Bot", "role": "bot"}
    assert sent["recipient"] == {"id": "user1", "name": "User", "role": "user"}
    assert sent["conversation"] == {"id": CONV}
    assert sent["serviceUrl"] == connector.service_url and sent["channelId"] == "test"
    # Anonymous bot: no token on connector calls.
    assert "Authorization" not in call.headers
    assert sample_bot.bot.turn_errors == []


async def test_welcome_each_added_user_but_not_the_bot(
    connector: ConnectorChannel, sample_bot: SampleBotServer
) -> None:
    added = [{"id": "u1", "name": "Alice"}, {"id": "bot", "name": "Bot"}, {"id": "u2", "name": "Bob"}]
    status, _, _, calls = await turn(connector, sample_bot, None, "conversationUpdate", membersAdded=added)
    assert status == 201
    assert texts(calls) == ["Welcome, Alice!", "Welcome, Bob!"]
    # conversationUpdate turns carry no activity id in the reference, so the SDK uses SendToConversation.
    assert {c.route for c in calls} == {"send_to_conversation"}
    assert all("replyToId" not in c.body for c in calls)


async def test_help(connector: ConnectorChannel, sample_bot: SampleBotServer) -> None:
    _, _, _, calls = await turn(connector, sample_bot, "HELP")
    assert texts(calls) == [HELP_TEXT]


async def test_typing_then_message(connector: ConnectorChannel, sample_bot: SampleBotServer) -> None:
    _, _, _, calls = await turn(connector, sample_bot, "typing")
    assert [c.body["type"] for c in calls] == ["typing", "message"]
    assert calls[1].body["text"] == "done typing"


async def test_card_has_hero_card_and_suggested_actions(
    connector: ConnectorChannel, sample_bot: SampleBotServer
) -> None:
    _, _, _, calls = await turn(connector, sample_bot, "card")
    assert len(calls) == 1
    (attachment,) = calls[0].body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.hero"
    card = attachment["content"]
    assert card["title"] == "Sample card" and card["text"]
    assert [(b["type"], b["value"]) for b in card["buttons"]] == [
        ("imBack", "hello"),
        ("openUrl", "https://aka.ms/botframework"),
    ]
    actions = calls[0].body["suggestedActions"]["actions"]
    assert [a["value"] for a in actions] == ["help", "two"]


async def test_update_uses_the_id_the_channel_assigned(
    connector: ConnectorChannel, sample_bot: SampleBotServer
) -> None:
    _, _, _, calls = await turn(connector, sample_bot, "update")
    assert [(c.method, c.route) for c in calls] == [("POST", "reply_to_activity"), ("PUT", "update_activity")]
    assigned = calls[0].response["id"]
    assert calls[1].activity_id == assigned and calls[1].body["id"] == assigned
    assert calls[1].body["text"] == "updated"
    assert [c.status for c in calls] == [200, 200]
    assert connector.conversations[CONV].sent[assigned]["text"] == "updated"


async def test_delete_uses_the_id_the_channel_assigned(
    connector: ConnectorChannel, sample_bot: SampleBotServer
) -> None:
    _, _, _, calls = await turn(connector, sample_bot, "delete")
    assert [(c.method, c.route) for c in calls] == [
        ("POST", "reply_to_activity"),
        ("DELETE", "delete_activity"),
    ]
    assigned = calls[0].response["id"]
    assert calls[0].body["text"] == "to be deleted"
    assert (calls[1].activity_id, calls[1].status, calls[1].raw) == (assigned, 200, b"")
    assert connector.conversations[CONV].deleted == {assigned}


async def test_two_messages_in_one_call_arrive_in_order(
    connector: ConnectorChannel, sample_bot: SampleBotServer
) -> None:
    _, _, inbound, calls = await turn(connector, sample_bot, "two")
    assert texts(calls) == ["first", "second"]
    assert [c.activity_id for c in calls] == [inbound["id"], inbound["id"]]


async def test_proactive_send_after_the_turn(
    connector: ConnectorChannel, sample_bot: SampleBotServer
) -> None:
    status, _, inbound, _ = await turn(connector, sample_bot, "proactive")
    assert status == 201
    await asyncio.wait_for(sample_bot.proactive_done.wait(), timeout=10)
    calls = await connector.wait_for_calls(2)
    assert texts(calls) == ["will send proactively", "proactive hello"]
    assert sample_bot.bot.proactive_errors == [] and sample_bot.bot.turn_errors == []
    proactive = calls[1]
    # The SDK's continuation activity has a fresh uuid1 id, so the proactive message is a reply to an id
    # the channel never issued (and it carries no locale).
    assert proactive.route == "reply_to_activity"
    assert proactive.activity_id not in connector.conversations[CONV].inbound_ids
    assert proactive.activity_id != inbound["id"]
    assert proactive.body.get("locale") is None
    assert proactive.body["recipient"]["id"] == "user1" and proactive.body["conversation"] == {"id": CONV}


async def test_invoke_answers_in_the_http_body(
    connector: ConnectorChannel, sample_bot: SampleBotServer
) -> None:
    value = {"query": "x", "n": [1, 2]}
    status, body, _, calls = await turn(connector, sample_bot, None, "invoke", name="test/echo", value=value)
    assert status == 200
    assert json.loads(body) == {"echo": value}
    assert calls == []


async def test_expect_replies_come_back_in_the_http_body(
    connector: ConnectorChannel, sample_bot: SampleBotServer
) -> None:
    status, body, inbound, calls = await turn(connector, sample_bot, "two", deliveryMode="expectReplies")
    assert status == 200
    replies = json.loads(body)["activities"]
    assert [r["text"] for r in replies] == ["first", "second"]
    assert all(r["replyToId"] == inbound["id"] for r in replies)
    assert calls == []


async def test_expect_replies_update_has_nothing_to_update(
    connector: ConnectorChannel, sample_bot: SampleBotServer
) -> None:
    status, body, _, calls = await turn(connector, sample_bot, "update", deliveryMode="expectReplies")
    assert status == 200
    assert [r["text"] for r in json.loads(body)["activities"]] == ["original"]
    assert calls == [] and sample_bot.bot.turn_errors == []


async def test_connector_failure_goes_to_on_turn_error(
    connector: ConnectorChannel, sample_bot: SampleBotServer
) -> None:
    connector.fail_next(500, route="reply_to_activity")
    status, _, _, calls = await turn(connector, sample_bot, "hello")
    # The SDK does not retry POSTs; the turn fails, the error handler tells the user, the inbound is answered.
    assert status == 201
    assert [(c.status, c.body["text"]) for c in calls] == [(500, "You said: hello"), (200, ERROR_TEXT)]
    assert len(sample_bot.bot.turn_errors) == 1


@pytest.mark.parametrize(
    ("text", "build1", "build2"),
    [
        ("hello", "You said: hello", "You said: hello"),
        ("What's the Weather?", "You said: What's the Weather?", "You said: What's the Weather?!"),
        ("help", HELP_TEXT, HELP_TEXT_BUILD_2),
    ],
)
async def test_build_2_differs_where_documented(
    connector: ConnectorChannel,
    sample_bot: SampleBotServer,
    bot2: SampleBotServer,
    text: str,
    build1: str,
    build2: str,
) -> None:
    _, _, _, calls1 = await turn(connector, sample_bot, text)
    _, _, _, calls2 = await turn(connector, bot2, text)
    assert (texts(calls1), texts(calls2)) == ([build1], [build2])


async def test_build_2_card_title(connector: ConnectorChannel, bot2: SampleBotServer) -> None:
    _, _, _, calls = await turn(connector, bot2, "card")
    assert calls[0].body["attachments"][0]["content"]["title"] == "Sample card (build 2)"


def test_unknown_build_is_rejected() -> None:
    with pytest.raises(ValueError, match="build"):
        SampleBot(build=3)


@pytest.mark.slow
async def test_main_serves_until_sigterm(free_port: Any) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "botproxy.sample_bot",
        "--port",
        str(port),
        "--build",
        "2",
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stderr is not None
    try:
        # run_app logs "Running on ..." once the socket is bound: that line is the readiness signal.
        log = b""
        async with asyncio.timeout(30):
            while b"Running on" not in (line := await proc.stderr.readline()):
                assert line, "sample bot exited before it was ready"
                log += line
        # Baseline and candidate often run side by side: the log says which build this one is.
        assert f"sample bot build 2 on http://127.0.0.1:{port}/api/messages".encode() in log
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/health") as resp:
                assert (resp.status, await resp.text()) == (200, "ok")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.slow
def test_help_describes_every_option() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "botproxy.sample_bot", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    help_text = " ".join(proc.stdout.split())  # argparse wraps to the terminal width
    assert "Address to listen on (default: 127.0.0.1)" in help_text
    assert "Port to listen on (default: 3978)" in help_text
    assert "Which build to run: 1, or 2, which changes a few answers on purpose" in help_text
