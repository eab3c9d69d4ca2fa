"""What replay needs from the ConnectorChannel: observers, quiet windows, seeded rosters, id prefixes."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from botproxy.standins.connector import ConnectorChannel


async def post(channel: ConnectorChannel, path: str, body: dict | None = None, method: str = "POST"):
    async with aiohttp.ClientSession() as session:
        async with session.request(method, channel.service_url + path, json=body) as resp:
            return resp.status, (await resp.json()) if resp.content_type == "application/json" else None


async def test_ids_carry_the_prefix_so_they_never_meet_recorded_ids():
    channel = ConnectorChannel(id_prefix="replay-")
    await channel.start()
    try:
        status, body = await post(channel, "v3/conversations/c1/activities", {"type": "message", "text": "x"})
        assert status == 200 and body["id"].startswith("replay-")
        status, _ = await post(channel, f"v3/conversations/c1/activities/{body['id']}", {"type": "message"}, "PUT")
        assert status == 200
    finally:
        await channel.stop()


async def test_observers_hear_each_call_with_its_answer_and_cannot_break_it(connector):
    heard = []

    def broken(call, response):
        raise RuntimeError("observer bug")

    connector.observers += [lambda call, response: heard.append((call, response)), broken]
    status, body = await post(connector, "v3/conversations/c1/activities", {"type": "message", "text": "hi"})
    assert status == 200
    [(call, response)] = heard
    assert call.route == "send_to_conversation" and call.at > 0
    assert response.status == 200 and response.body == b'{"id": "%s"}' % body["id"].encode()
    assert response.headers["X-Correlating-OperationId"]


async def test_wait_quiet_returns_at_once_counting_from_now_when_nothing_calls(connector):
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await connector.wait_quiet("c1", 0.05, 5.0) is True
    assert 0.05 <= loop.time() - started < 2.0


async def test_a_call_restarts_the_quiet_window_of_its_own_conversation_only(connector):
    waiter = asyncio.create_task(connector.wait_quiet("c1", 0.2, 5.0))
    other = asyncio.create_task(connector.wait_quiet("c2", 0.2, 5.0))
    await post(connector, "v3/conversations/c1/activities", {"type": "message"})
    assert await waiter is True
    assert time.time() >= connector.calls[-1].at + 0.2  # the window counted from the call, not from the start
    assert await other is True


async def test_wait_quiet_gives_up_at_the_cap_when_calls_keep_coming(connector):
    stop = asyncio.Event()

    async def chatter():  # traffic, not synchronisation: a bot that never stops talking
        while not stop.is_set():
            await post(connector, "v3/conversations/c1/activities", {"type": "typing"})
            await asyncio.sleep(0.01)

    task = asyncio.create_task(chatter())
    try:
        assert await connector.wait_quiet("c1", 0.3, 0.5) is False
    finally:
        stop.set()
        await task


async def test_created_conversations_count_as_calls_of_the_new_conversation(connector):
    status, body = await post(connector, "v3/conversations", {"bot": {"id": "bot"}, "members": [{"id": "u"}]})
    assert status == 200
    assert body["id"] in connector._last_call


async def test_seeded_members_and_remembered_inbound_senders_are_the_roster(connector):
    connector.add_members("c1", [{"id": "u1", "name": "Ada", "aadObjectId": "a-1"}, {"name": "no id"}])
    connector.remember_inbound({"type": "message", "id": "i1", "from": {"id": "u2", "name": "Bo"},
                                "conversation": {"id": "c1"}})
    status, members = await post(connector, "v3/conversations/c1/members", method="GET")
    assert status == 200
    assert members == [{"id": "u1", "name": "Ada", "aadObjectId": "a-1"}, {"id": "u2", "name": "Bo"}]
    status, _ = await post(connector, "v3/conversations/c1/activities/i1/members", method="GET")
    assert status == 200  # the remembered inbound id is one the channel knows


@pytest.mark.parametrize("route", ["v3/conversations/c1/activities/nope", "v3/conversations/c1/activities/0000001"])
async def test_unknown_ids_are_404_error_responses(connector, route):
    status, body = await post(connector, route, {"type": "message"}, "PUT")
    assert status == 404 and body["error"]["code"] == "ActivityNotFoundInConversation"


async def test_wait_quiet_for_the_whole_channel_hears_every_conversation(connector):
    waiter = asyncio.create_task(connector.wait_quiet(None, 0.2, 5.0))
    await post(connector, "v3/conversations/c1/activities", {"type": "message"})
    await post(connector, "v3/conversations", {"bot": {"id": "bot"}, "members": [{"id": "u"}]})  # no conversation
    assert await waiter is True
    assert time.time() >= connector.calls[-1].at + 0.2
