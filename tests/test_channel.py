"""ConnectorChannel over real loopback HTTP: raw aiohttp requests and the SDK's own ConnectorClient."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from botbuilder.schema import (
    Activity,
    AttachmentData,
    ChannelAccount,
    ConversationParameters,
)
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import MicrosoftAppCredentials
from botframework.connector.models import ErrorResponseException
from yarl import URL

from botproxy.standins.connector import ROUTE_NAMES, ConnectorCall, ConnectorChannel
from botproxy.standins.server import serve
from botproxy.wire import protocol as p

TEAMS_CONVERSATION = "19:x@thread.skype;messageid=123"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


class Http:
    """Tiny client: requests relative to the channel's serviceUrl."""

    def __init__(self, session: aiohttp.ClientSession, channel: ConnectorChannel) -> None:
        self.session = session
        self.channel = channel

    async def __call__(self, method: str, path: str, body: Any = None, *, data: bytes | None = None) -> Reply:
        # encoded=True: send the path exactly as given; yarl would otherwise unquote %3A, %40, ...
        url = URL(self.channel.service_url + path, encoded=True)
        kwargs: dict[str, Any] = {"data": data} if data is not None else {"json": body}
        async with self.session.request(method, url, **kwargs) as resp:
            return Reply(resp.status, dict(resp.headers), await resp.read())


@pytest.fixture
async def http(connector: ConnectorChannel) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession() as session:
        yield Http(session, connector)


@pytest.fixture
async def sdk(connector: ConnectorChannel) -> AsyncIterator[ConnectorClient]:
    """The Bot Framework SDK's connector client, anonymous, pointed at the channel."""
    async with ConnectorClient(MicrosoftAppCredentials.empty(), base_url=connector.service_url) as client:
        yield client


def assert_error(reply: Reply, status: int, code: str) -> None:
    assert reply.status == status
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def message(text: str, conversation_id: str = "conv1") -> dict[str, Any]:
    return {"type": "message", "text": text, "conversation": {"id": conversation_id}}


# -- basics ----------------------------------------------------------------------------------------


async def test_service_url_is_loopback_with_trailing_slash(connector: ConnectorChannel) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", connector.service_url)
    assert connector.port != 0


async def test_service_url_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        _ = ConnectorChannel().service_url


async def test_every_response_carries_a_correlating_operation_id(http: Http) -> None:
    ok = await http("POST", "v3/conversations/c1/activities", message("hi"))
    missing = await http("GET", "nowhere")
    assert ok.status == 200 and missing.status == 404
    ids = {ok.headers["X-Correlating-OperationId"], missing.headers["X-Correlating-OperationId"]}
    assert len(ids) == 2 and all(ids)


# -- conversations ---------------------------------------------------------------------------------


async def test_send_to_conversation_assigns_unique_ids_and_records_the_call(
    connector: ConnectorChannel, http: Http
) -> None:
    first = await http("POST", "v3/conversations/c1/activities", message("one", "c1"))
    second = await http("POST", "v3/conversations/c1/activities", message("two", "c1"))
    assert first.status == second.status == 200
    assert first.json["id"] != second.json["id"]
    call = connector.calls[0]
    assert (call.method, call.route, call.conversation_id, call.activity_id) == (
        "POST",
        "send_to_conversation",
        "c1",
        None,
    )
    assert call.path == "/v3/conversations/c1/activities"
    assert call.body["text"] == "one" and json.loads(call.raw) == call.body
    assert call.headers["Content-Type"].startswith("application/json")
    assert (call.status, call.response) == (200, first.json)
    assert list(connector.conversations["c1"].sent) == [first.json["id"], second.json["id"]]


async def test_history_route_is_matched_before_reply(connector: ConnectorChannel, http: Http) -> None:
    transcript = {"activities": [{"type": "message", "id": "h1", "timestamp": "2024-01-01T00:00:00Z"}]}
    reply = await http("POST", "v3/conversations/c1/activities/history", transcript)
    assert reply.status == 200 and reply.json["id"]
    assert connector.calls[0].route == "send_history"
    assert connector.calls[0].activity_id is None


async def test_history_without_activities_is_a_bad_argument(http: Http) -> None:
    assert_error(await http("POST", "v3/conversations/c1/activities/history", {"x": 1}), 400, "BadArgument")


async def test_reply_to_activity_records_the_decoded_activity_id(
    connector: ConnectorChannel, http: Http
) -> None:
    reply = await http("POST", "v3/conversations/c1/activities/" + quote("a|1", safe=""), message("re", "c1"))
    assert reply.status == 200 and reply.json["id"]
    call = connector.calls[0]
    assert (call.route, call.activity_id) == ("reply_to_activity", "a|1")


async def test_update_only_answers_for_ids_this_channel_assigned(
    connector: ConnectorChannel, http: Http
) -> None:
    inbound = connector.activity(text="user says", conversation_id="c1")
    sent_id = (await http("POST", "v3/conversations/c1/activities", message("v1", "c1"))).json["id"]
    other_id = (await http("POST", "v3/conversations/c2/activities", message("v1", "c2"))).json["id"]

    updated = await http("PUT", f"v3/conversations/c1/activities/{sent_id}", message("v2", "c1"))
    assert (updated.status, updated.json) == (200, {"id": sent_id})
    assert connector.conversations["c1"].sent[sent_id]["text"] == "v2"

    for unknown in ("9999999", inbound["id"], other_id):
        reply = await http("PUT", f"v3/conversations/c1/activities/{unknown}", message("v3", "c1"))
        assert_error(reply, 404, "ActivityNotFoundInConversation")


async def test_delete_answers_empty_200_once_then_404(connector: ConnectorChannel, http: Http) -> None:
    sent_id = (await http("POST", "v3/conversations/c1/activities", message("bye", "c1"))).json["id"]
    deleted = await http("DELETE", f"v3/conversations/c1/activities/{sent_id}")
    assert (deleted.status, deleted.raw) == (200, b"")
    assert connector.calls[-1].route == "delete_activity" and connector.calls[-1].response is None
    assert_error(
        await http("DELETE", f"v3/conversations/c1/activities/{sent_id}"),
        404,
        "ActivityNotFoundInConversation",
    )
    assert_error(
        await http("PUT", f"v3/conversations/c1/activities/{sent_id}", message("x", "c1")),
        404,
        "ActivityNotFoundInConversation",
    )
    assert connector.conversations["c1"].deleted == {sent_id}


async def test_create_conversation_with_and_without_activity(connector: ConnectorChannel, http: Http) -> None:
    params = {"bot": {"id": "bot"}, "members": [{"id": "u9", "name": "Nine"}], "isGroup": False}
    bare = await http("POST", "v3/conversations", params)
    assert bare.status == 200
    assert set(bare.json) == {"id", "serviceUrl"}
    assert bare.json["serviceUrl"] == connector.service_url

    with_activity = await http("POST", "v3/conversations", {**params, "activity": message("first")})
    assert set(with_activity.json) == {"id", "serviceUrl", "activityId"}
    new_id, activity_id = with_activity.json["id"], with_activity.json["activityId"]
    assert new_id != bare.json["id"]
    assert activity_id in connector.conversations[new_id].sent
    assert connector.conversations[new_id].members == {"u9": {"id": "u9", "name": "Nine"}}
    # The created activity is the channel's, so the bot may update it.
    assert (
        await http("PUT", f"v3/conversations/{new_id}/activities/{activity_id}", message("x"))
    ).status == 200


async def test_get_conversations_lists_conversations_with_members(
    connector: ConnectorChannel, http: Http
) -> None:
    connector.activity(text="hi", conversation_id="c1", user_id="u1", user_name="Ann")
    reply = await http("GET", "v3/conversations")
    assert reply.status == 200
    assert reply.json == {
        "conversations": [{"id": "c1", "members": [{"id": "u1", "name": "Ann"}]}],
        "continuationToken": None,
    }


# -- members ---------------------------------------------------------------------------------------


async def test_member_routes() -> None:
    channel = ConnectorChannel(members=[{"id": "u2", "name": "Configured"}])
    await channel.start()
    try:
        async with aiohttp.ClientSession() as session:
            http = Http(session, channel)
            inbound = channel.activity(text="hi", conversation_id="c1", user_id="u1", user_name="Ann")
            expected = [{"id": "u2", "name": "Configured"}, {"id": "u1", "name": "Ann"}]

            assert (await http("GET", "v3/conversations/c1/members")).json == expected
            paged = await http("GET", "v3/conversations/c1/pagedmembers?pageSize=10")
            assert paged.json == {"members": expected, "continuationToken": None}
            assert channel.calls[-1].query == {"pageSize": "10"}
            assert (await http("GET", "v3/conversations/c1/members/u1")).json == {"id": "u1", "name": "Ann"}
            activity_members = await http("GET", f"v3/conversations/c1/activities/{inbound['id']}/members")
            assert (activity_members.status, activity_members.json) == (200, expected)
            assert channel.calls[-1].route == "get_activity_members"
            unknown_activity = await http("GET", "v3/conversations/c1/activities/nope/members")
            assert_error(unknown_activity, 404, "ActivityNotFoundInConversation")

            removed = await http("DELETE", "v3/conversations/c1/members/u1")
            assert (removed.status, removed.raw) == (200, b"")
            assert_error(
                await http("GET", "v3/conversations/c1/members/u1"), 404, "MemberNotFoundInConversation"
            )
            assert_error(
                await http("DELETE", "v3/conversations/c1/members/u1"), 404, "MemberNotFoundInConversation"
            )
            assert (await http("GET", "v3/conversations/c1/members")).json == expected[:1]
            assert [c.route for c in channel.calls] == [
                "get_members",
                "get_paged_members",
                "get_member",
                "get_activity_members",
                "get_activity_members",
                "delete_member",
                "get_member",
                "delete_member",
                "get_members",
            ]
    finally:
        await channel.stop()


# -- attachments -----------------------------------------------------------------------------------


async def test_attachment_upload_info_and_view(http: Http) -> None:
    data = b"\x89PNG fake image"
    upload = {"type": "image/png", "name": "pic.png", "originalBase64": base64.b64encode(data).decode()}
    att_id = (await http("POST", "v3/conversations/c1/attachments", upload)).json["id"]

    info = await http("GET", f"v3/attachments/{att_id}")
    assert info.json == {
        "name": "pic.png",
        "type": "image/png",
        "views": [{"viewId": "original", "size": len(data)}],
    }
    view = await http("GET", f"v3/attachments/{att_id}/views/original")
    assert (view.status, view.raw, view.headers["Content-Type"]) == (200, data, "image/png")

    assert_error(await http("GET", f"v3/attachments/{att_id}/views/thumbnail"), 404, "NotFound")
    assert_error(await http("GET", "v3/attachments/unknown"), 404, "NotFound")
    bad = {"type": "image/png", "originalBase64": "not base64!"}
    assert_error(await http("POST", "v3/conversations/c1/attachments", bad), 400, "BadArgument")


# -- Teams -----------------------------------------------------------------------------------------


async def test_teams_routes_answer_plausible_json(connector: ConnectorChannel, http: Http) -> None:
    team = "19:team@thread.tacv2"
    team_reply = await http("GET", f"v3/teams/{quote(team, safe='')}")
    assert team_reply.status == 200 and team_reply.json["id"] == team and team_reply.json["name"]
    channels = await http("GET", f"v3/teams/{quote(team, safe='')}/conversations")
    assert channels.json == {"conversations": [{"id": team, "name": "General"}]}

    meeting = await http("GET", "v1/meetings/MCMx")
    assert meeting.json["details"]["id"] == "MCMx" and meeting.json["conversation"]["isGroup"] is True
    participant = await http("GET", "v1/meetings/MCMx/participants/29%3Aabc?tenantId=t1")
    assert participant.json["user"]["id"] == "29:abc" and participant.json["meeting"]["inMeeting"] is True
    notified = await http("POST", "v1/meetings/MCMx/notification", {"type": "targetedMeetingNotification"})
    assert (notified.status, notified.raw) == (202, b"")

    assert [c.route for c in connector.calls] == [
        "teams_get_team",
        "teams_get_channels",
        "teams_get_meeting",
        "teams_get_participant",
        "teams_meeting_notification",
    ]
    assert connector.calls[3].params == {"meeting": "MCMx", "pid": "29:abc"}


# -- addressing: prefixes and encoded ids ----------------------------------------------------------


async def test_routes_match_after_any_path_prefix(connector: ConnectorChannel) -> None:
    base = f"http://127.0.0.1:{connector.port}"
    async with aiohttp.ClientSession() as session:
        for prefix in ("/amer", "/teams/gcc/deep"):
            async with session.post(f"{base}{prefix}/v3/conversations/c1/activities", json=message("x")) as r:
                assert r.status == 200
    assert [c.route for c in connector.calls] == ["send_to_conversation", "send_to_conversation"]
    assert connector.calls[1].path == "/teams/gcc/deep/v3/conversations/c1/activities"


@pytest.mark.slow
async def test_prefixed_service_url() -> None:
    channel = ConnectorChannel(path_prefix="/amer/")
    await channel.start()
    try:
        assert channel.service_url == f"http://127.0.0.1:{channel.port}/amer/"
        assert channel.activity(conversation_id="c1")["serviceUrl"] == channel.service_url
        async with ConnectorClient(MicrosoftAppCredentials.empty(), base_url=channel.service_url) as client:
            response = await client.conversations.send_to_conversation(
                "c1", Activity(type="message", text="x")
            )
        assert response.id
        assert channel.calls[0].path == "/amer/v3/conversations/c1/activities"
    finally:
        await channel.stop()


async def test_teams_style_ids_are_url_decoded(connector: ConnectorChannel, http: Http) -> None:
    encoded = quote(TEAMS_CONVERSATION, safe="")
    assert encoded == "19%3Ax%40thread.skype%3Bmessageid%3D123"
    sent = await http("POST", f"v3/conversations/{encoded}/activities", message("x", TEAMS_CONVERSATION))
    updated = await http(
        "PUT", f"v3/conversations/{encoded}/activities/{sent.json['id']}", message("y", TEAMS_CONVERSATION)
    )
    assert updated.status == 200
    assert connector.calls[0].conversation_id == TEAMS_CONVERSATION
    assert connector.calls[0].path == f"/v3/conversations/{encoded}/activities"
    assert TEAMS_CONVERSATION in connector.conversations


# -- errors ----------------------------------------------------------------------------------------


async def test_unknown_routes_and_methods_are_404_not_found(connector: ConnectorChannel, http: Http) -> None:
    assert_error(await http("GET", "v3/nothing/here"), 404, "NotFound")
    assert_error(await http("PATCH", "v3/conversations/c1/activities/1", message("x")), 404, "NotFound")
    assert_error(await http("GET", "v3/conversations/c1/activities"), 404, "NotFound")
    assert {c.route for c in connector.calls} == {"unknown"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "v3/conversations"),
        ("POST", "v3/conversations/c1/activities"),
        ("POST", "v3/conversations/c1/activities/a1"),
        ("PUT", "v3/conversations/c1/activities/a1"),
        ("POST", "v3/conversations/c1/attachments"),
    ],
)
@pytest.mark.parametrize("payload", [b"{not json", b"", b"[1, 2]"])
async def test_bodies_that_are_not_a_json_object_are_bad_arguments(
    connector: ConnectorChannel, http: Http, method: str, path: str, payload: bytes
) -> None:
    reply = await http(method, path, data=payload)
    assert_error(reply, 400, "BadArgument")
    assert connector.calls[0].raw == payload
    assert not any(conv.sent for conv in connector.conversations.values())


async def test_handler_crash_becomes_a_500_error_response(
    connector: ConnectorChannel, http: Http, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(call: ConnectorCall) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(connector, "_on_get_members", crash)
    reply = await http("GET", "v3/conversations/c1/members")
    assert_error(reply, 500, "ServiceError")
    assert b"Traceback" not in reply.raw and b"boom" not in reply.raw


async def test_strict_conversations() -> None:
    channel = ConnectorChannel(strict_conversations=True)
    await channel.start()
    try:
        async with aiohttp.ClientSession() as session:
            http = Http(session, channel)
            assert_error(
                await http("POST", "v3/conversations/zz/activities", message("x")),
                404,
                "ConversationNotFound",
            )
            assert_error(await http("GET", "v3/conversations/zz/members"), 404, "ConversationNotFound")
            channel.activity(conversation_id="seen")
            assert (await http("POST", "v3/conversations/seen/activities", message("x"))).status == 200
            created = (await http("POST", "v3/conversations", {"bot": {"id": "bot"}})).json["id"]
            assert (await http("POST", f"v3/conversations/{created}/activities", message("x"))).status == 200
            assert "zz" not in channel.conversations
    finally:
        await channel.stop()


async def test_lenient_by_default_for_unseen_conversations(connector: ConnectorChannel, http: Http) -> None:
    assert (await http("POST", "v3/conversations/never-seen/activities", message("x"))).status == 200
    assert "never-seen" in connector.conversations


async def test_fail_next_by_route_and_count(connector: ConnectorChannel, http: Http) -> None:
    connector.fail_next(429, code="Throttled", message="slow down", route="send_to_conversation", times=2)
    assert (await http("GET", "v3/conversations/c1/members")).status == 200  # other routes unaffected
    for _ in range(2):
        reply = await http("POST", "v3/conversations/c1/activities", message("x"))
        assert reply.status == 429
        assert reply.json == {"error": {"code": "Throttled", "message": "slow down"}}
    assert (await http("POST", "v3/conversations/c1/activities", message("x"))).status == 200
    assert [c.status for c in connector.calls] == [200, 429, 429, 200]
    # A failed send assigns no id.
    assert len(connector.conversations["c1"].sent) == 1


async def test_fail_next_without_route_hits_the_next_call(connector: ConnectorChannel, http: Http) -> None:
    connector.fail_next(503)
    assert_error(await http("GET", "v3/conversations"), 503, "ServiceError")
    assert (await http("GET", "v3/conversations")).status == 200


def test_fail_next_rejects_unknown_route_names() -> None:
    with pytest.raises(ValueError, match="reply_to_activity"):
        ConnectorChannel().fail_next(500, route="reply")
    assert "reply_to_activity" in ROUTE_NAMES


# -- waiting ---------------------------------------------------------------------------------------


async def test_wait_for_calls_wakes_up_on_arrival(connector: ConnectorChannel, http: Http) -> None:
    waiter = asyncio.create_task(
        connector.wait_for_calls(2, predicate=lambda c: c.route == "send_to_conversation")
    )
    await http("GET", "v3/conversations")
    await http("POST", "v3/conversations/c1/activities", message("a"))
    assert not waiter.done()
    await http("POST", "v3/conversations/c1/activities", message("b"))
    calls = await waiter
    assert [c.body["text"] for c in calls] == ["a", "b"]


async def test_wait_for_calls_timeout_lists_what_arrived(connector: ConnectorChannel, http: Http) -> None:
    await http("GET", "v3/conversations")
    with pytest.raises(TimeoutError, match=r"got 1; arrived: GET get_conversations -> 200"):
        await connector.wait_for_calls(2, timeout=0.05)


# -- channel -> bot --------------------------------------------------------------------------------


async def test_activity_builds_a_channel_shaped_inbound(connector: ConnectorChannel) -> None:
    act = connector.activity(text="hi", conversation_id="c1", user_id="u1", user_name="Ann", value={"k": 1})
    assert act["type"] == "message" and act["text"] == "hi" and act["value"] == {"k": 1}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", act["timestamp"])
    assert act["channelId"] == "test" and act["serviceUrl"] == connector.service_url
    assert act["from"] == {"id": "u1", "name": "Ann", "role": "user"}
    assert act["recipient"] == {"id": "bot", "name": "Bot", "role": "bot"}
    assert act["conversation"] == {"id": "c1"} and act["locale"] == "en-US"

    other = connector.activity("conversationUpdate", conversation_id="c1", membersAdded=[{"id": "u3"}])
    assert other["id"] != act["id"] and "text" not in other
    assert connector.activity(conversation_id="c1", id="fixed", locale="de-DE")["locale"] == "de-DE"
    assert set(connector.conversations["c1"].members) == {"u1", "u3", "user1"}


async def test_activity_uses_configured_identity() -> None:
    channel = ConnectorChannel(channel_id="msteams", bot={"id": "28:app", "name": "Helper"})
    await channel.start()
    try:
        act = channel.activity(conversation_id=TEAMS_CONVERSATION)
        assert act["channelId"] == "msteams"
        assert act["recipient"] == {"id": "28:app", "name": "Helper", "role": "bot"}
    finally:
        await channel.stop()


async def test_send_posts_json_and_remembers_the_inbound_id(connector: ConnectorChannel) -> None:
    received: list[tuple[str, dict[str, Any]]] = []

    async def endpoint(request: web.Request) -> web.Response:
        received.append((request.headers["X-Test"], await request.json()))
        return web.json_response({"ok": True}, status=202)

    app = web.Application()
    app.router.add_post("/api/messages", endpoint)
    runner, port = await serve(app)
    try:
        url = f"http://127.0.0.1:{port}/api/messages"
        act = connector.activity(text="hi", conversation_id="c1")
        status, body = await connector.send(url, act, headers={"X-Test": "yes"})
    finally:
        await runner.cleanup()
    assert (status, json.loads(body)) == (202, {"ok": True})
    assert received == [("yes", act)]
    assert connector.conversations["c1"].inbound_ids == [act["id"]]


# -- the SDK's ConnectorClient accepts our answers -------------------------------------------------


async def test_sdk_send_reply_update_delete(connector: ConnectorChannel, sdk: ConnectorClient) -> None:
    inbound = connector.activity(text="hi", conversation_id=TEAMS_CONVERSATION)
    sent = await sdk.conversations.send_to_conversation(
        TEAMS_CONVERSATION, Activity(type="message", text="hello")
    )
    reply = await sdk.conversations.reply_to_activity(
        TEAMS_CONVERSATION, inbound["id"], Activity(type="message", text="re", reply_to_id=inbound["id"])
    )
    updated = await sdk.conversations.update_activity(
        TEAMS_CONVERSATION, sent.id, Activity(type="message", id=sent.id, text="hello again")
    )
    deleted = await sdk.conversations.delete_activity(TEAMS_CONVERSATION, reply.id)
    assert sent.id and reply.id and sent.id != reply.id
    assert updated.id == sent.id and deleted is None
    assert [(c.route, c.status) for c in connector.calls] == [
        ("send_to_conversation", 200),
        ("reply_to_activity", 200),
        ("update_activity", 200),
        ("delete_activity", 200),
    ]
    # msrest percent-encodes path ids with quote(safe=""); the channel decodes them.
    assert connector.calls[0].path == f"/v3/conversations/{quote(TEAMS_CONVERSATION, safe='')}/activities"
    assert {c.conversation_id for c in connector.calls} == {TEAMS_CONVERSATION}


async def test_sdk_sees_error_responses(connector: ConnectorChannel, sdk: ConnectorClient) -> None:
    with pytest.raises(ErrorResponseException) as missing:
        await sdk.conversations.update_activity("c1", "9999", Activity(type="message", id="9999"))
    assert missing.value.error.error.code == "ActivityNotFoundInConversation"

    connector.fail_next(429, code="Throttled", route="send_to_conversation")
    with pytest.raises(ErrorResponseException) as throttled:
        await sdk.conversations.send_to_conversation("c1", Activity(type="message", text="x"))
    assert throttled.value.error.error.code == "Throttled"


async def test_sdk_retries_5xx_on_idempotent_methods(
    connector: ConnectorChannel, sdk: ConnectorClient
) -> None:
    # msrest's urllib3 Retry re-sends GET/PUT/DELETE on 5xx (not POST, with urllib3 2.x), so one injected
    # 503 is invisible to the bot but shows up as two calls on the wire.
    sent = await sdk.conversations.send_to_conversation("c1", Activity(type="message", text="x"))
    connector.fail_next(503, route="update_activity")
    updated = await sdk.conversations.update_activity("c1", sent.id, Activity(type="message", id=sent.id))
    assert updated.id == sent.id
    assert [(c.route, c.status) for c in connector.calls] == [
        ("send_to_conversation", 200),
        ("update_activity", 503),
        ("update_activity", 200),
    ]


async def test_sdk_members_and_conversations(connector: ConnectorChannel, sdk: ConnectorClient) -> None:
    created = await sdk.conversations.create_conversation(
        ConversationParameters(
            bot=ChannelAccount(id="bot"),
            members=[ChannelAccount(id="u1", name="Ann")],
            activity=Activity(type="message", text="first"),
        )
    )
    assert created.id and created.activity_id and created.service_url == connector.service_url

    members = await sdk.conversations.get_conversation_members(created.id)
    assert [(m.id, m.name) for m in members] == [("u1", "Ann")]
    member = await sdk.conversations.get_conversation_member(created.id, "u1")
    assert member.name == "Ann"
    paged = await sdk.conversations.get_conversation_paged_members(created.id, page_size=5)
    assert [m.id for m in paged.members] == ["u1"] and paged.continuation_token is None
    activity_members = await sdk.conversations.get_activity_members(created.id, created.activity_id)
    assert [m.id for m in activity_members] == ["u1"]
    conversations = await sdk.conversations.get_conversations()
    assert [c.id for c in conversations.conversations] == [created.id]
    await sdk.conversations.delete_conversation_member(created.id, "u1")
    with pytest.raises(ErrorResponseException) as gone:
        await sdk.conversations.get_conversation_member(created.id, "u1")
    assert gone.value.error.error.code == "MemberNotFoundInConversation"


async def test_sdk_attachments(connector: ConnectorChannel, sdk: ConnectorClient) -> None:
    data = b"hello attachment"
    uploaded = await sdk.conversations.upload_attachment(
        "c1", AttachmentData(type="text/plain", name="a.txt", original_base64=bytearray(data))
    )
    info = await sdk.attachments.get_attachment_info(uploaded.id)
    assert (info.name, info.type) == ("a.txt", "text/plain")
    assert [(v.view_id, v.size) for v in info.views] == [("original", len(data))]
    chunks = [chunk async for chunk in await sdk.attachments.get_attachment(uploaded.id, "original")]
    assert b"".join(chunks) == data


async def test_sdk_create_conversation_wire_body(connector: ConnectorChannel, sdk: ConnectorClient) -> None:
    # What the SDK puts on the wire, as the channel records it. Note "tenantID": botbuilder-schema's
    # ConversationParameters (and ConversationAccount) map tenant_id to "tenantID", not the swagger's
    # "tenantId".
    await sdk.conversations.create_conversation(
        ConversationParameters(
            bot=ChannelAccount(id="bot"),
            is_group=True,
            tenant_id="t1",
            members=[ChannelAccount(id="u1")],
        )
    )
    body = connector.calls[0].body
    assert body["isGroup"] is True and body["tenantID"] == "t1" and body["members"] == [{"id": "u1"}]
    assert "activity" not in body


@pytest.mark.parametrize("spec", [*p.CONNECTOR_ROUTES], ids=lambda spec: spec.name)
async def test_the_stand_in_and_the_recorder_read_every_route_alike(
    connector: ConnectorChannel, spec: p.RouteSpec
) -> None:
    """One table: what the recorder calls a request is what the stand-in answers it as, on every route,
    under a serviceUrl path prefix and with a percent-encoded Teams id."""
    path = "/amer" + re.sub(r"\{\w+\}", quote(TEAMS_CONVERSATION, safe=""), spec.template)
    route = p.classify_connector(spec.method or "GET", path)
    assert route.name == spec.name and route.prefix == "/amer"
    async with aiohttp.ClientSession() as session:
        url = URL(connector.service_url.rstrip("/") + path, encoded=True)
        async with session.request(spec.method or "GET", url, json={"type": "message"}) as resp:
            await resp.read()
    [call] = connector.calls
    assert call.route == spec.name
    assert call.params == dict.fromkeys(re.findall(r"\{(\w+)\}", spec.template), TEAMS_CONVERSATION)
    if "{cid}" in spec.template:
        assert call.conversation_id == route.conversation_id == TEAMS_CONVERSATION
