"""The Direct Line client leg through the recorder's state machine (no network), and the addon's
streamUrl rewrite that brings the client's WebSocket through the recorder."""

import json

from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow, tutils

from botproxy.record.mitm.capture import Capture
from botproxy.record.recorder import RequestSeen, ResponseSeen, SessionRecorder, WebSocketSeen

DL = "https://directline.botframework.com"
TOKEN = "dl-token-abcdef123456"


def rows_of(rows, table):
    return [row for t, row in rows if t == table]


def test_client_leg_post_get_and_stream_become_activities():
    rec = SessionRecorder(1)
    rows = []

    def exchange(flow, method, path, body=None, status=200, response=None, headers=()):
        rows.extend(
            rec.handle(
                RequestSeen(
                    flow,
                    1.0,
                    "directline",
                    method,
                    DL + path,
                    [("Authorization", f"Bearer {TOKEN}"), *headers],
                    json.dumps(body).encode() if body is not None else None,
                )
            )
        )
        rows.extend(
            rec.handle(
                ResponseSeen(
                    flow,
                    2.0,
                    status,
                    [("content-type", "application/json")],
                    json.dumps(response).encode() if response is not None else None,
                )
            )
        )

    exchange(
        "f1",
        "POST",
        "/v3/directline/conversations",
        status=201,
        response={
            "conversationId": "abc",
            "token": TOKEN,
            "expires_in": 1800,
            "streamUrl": f"wss://directline.botframework.com/v3/directline/conversations/abc/stream?t={TOKEN}",
        },
    )
    exchange(
        "f2",
        "POST",
        "/v3/directline/conversations/abc/activities",
        body={"type": "message", "from": {"id": "user1"}, "text": "hello"},
        response={"id": "abc|0000001"},
    )
    exchange(
        "f3",
        "GET",
        "/v3/directline/conversations/abc/activities?watermark=0",
        response={
            "activities": [
                {
                    "type": "message",
                    "id": "abc|0000001",
                    "from": {"id": "user1"},
                    "text": "hello",
                    "conversation": {"id": "abc"},
                },
                {
                    "type": "message",
                    "id": "abc|0000002",
                    "from": {"id": "bot"},
                    "text": "hi there",
                    "conversation": {"id": "abc"},
                    "replyToId": "abc|0000001",
                },
            ],
            "watermark": "2",
        },
    )
    exchange("f4", "GET", f"/v3/directline/conversations/abc/stream?t={TOKEN}", status=101)
    for frame in (
        b"",
        b"{not json",
        json.dumps(
            {
                "activities": [
                    {"type": "typing", "id": "abc|0000003", "from": {"id": "bot"}, "conversation": {"id": "abc"}}
                ],
                "watermark": "3",
            }
        ).encode(),
    ):
        rows.extend(rec.handle(WebSocketSeen("f4", 3.0, False, frame)))
    rows.extend(rec.handle(WebSocketSeen("f4", 4.0, False, None)))
    rows.extend(rec.handle(WebSocketSeen("f4", 5.0, False, b'{"activities": [{"type": "message"}]}')))

    activities = rows_of(rows, "activities")
    assert [(a["direction"], a["route"], a["activity_id"], a["watermark"]) for a in activities] == [
        ("from_client", "dl_post_activity", "abc|0000001", None),
        ("to_client", "dl_get_activities", "abc|0000001", "2"),
        ("to_client", "dl_get_activities", "abc|0000002", "2"),
        ("to_client", "dl_stream", "abc|0000003", "3"),
    ]
    assert [a["seq"] for a in activities] == [1, 2, 3, 4]
    assert activities[0]["conversation_id"] == "abc" and activities[0]["from_id"] == "user1"
    exchanges = rows_of(rows, "exchanges")
    assert [e["route"] for e in exchanges] == [
        "dl_start_conversation",
        "dl_post_activity",
        "dl_get_activities",
        "dl_stream",
    ]
    assert {e["leg"] for e in exchanges} == {"client"}
    everything = json.dumps(rows)
    assert TOKEN not in everything and "[REDACTED]" in everything
    assert rec.counts["malformed_frames"] == 1


def test_direct_line_1_1_messages():
    rec = SessionRecorder(1)
    rows = rec.handle(
        RequestSeen(
            "a",
            1.0,
            "directline",
            "POST",
            DL + "/api/conversations/c1/messages",
            [],
            json.dumps({"from": "user1", "text": "yo"}).encode(),
        )
    )
    rows += rec.handle(ResponseSeen("a", 2.0, 204, [], None))
    rows += rec.handle(RequestSeen("b", 3.0, "directline", "GET", DL + "/api/conversations/c1/messages", [], None))
    rows += rec.handle(
        ResponseSeen(
            "b",
            4.0,
            200,
            [],
            json.dumps(
                {
                    "messages": [{"id": "c1|000", "conversationId": "c1", "from": "user1", "text": "yo"}],
                    "watermark": "1",
                }
            ).encode(),
        )
    )
    activities = rows_of(rows, "activities")
    assert [(a["direction"], a["from_id"], a["text"], a["watermark"]) for a in activities] == [
        ("from_client", "user1", "yo", None),
        ("to_client", "user1", "yo", "1"),
    ]


def test_stream_url_in_start_response_is_pointed_at_our_listener():
    seen = []
    addon = Capture(seen.append, directline_targets=frozenset({("directline.botframework.com", 443)}))
    body = {
        "conversationId": "abc",
        "token": TOKEN,
        "streamUrl": f"wss://directline.botframework.com/v3/directline/conversations/abc/stream?t={TOKEN}",
    }
    flow = tflow.tflow(
        req=tutils.treq(method=b"POST", path=b"/v3/directline/conversations"),
        resp=tutils.tresp(status_code=201, content=json.dumps(body).encode()),
    )
    flow.client_conn.proxy_mode = ProxyMode.parse(f"reverse:{DL}@127.0.0.1:5057")
    flow.client_conn.sockname = ("127.0.0.1", 5057)
    with taddons.context(addon):
        addon.response(flow)
    assert json.loads(flow.response.content)["streamUrl"] == (
        f"ws://127.0.0.1:5057/v3/directline/conversations/abc/stream?t={TOKEN}"
    )
    assert json.loads(seen[0].content)["streamUrl"].startswith("wss://directline.botframework.com/")

    other = tflow.tflow(resp=tutils.tresp(content=json.dumps(body).encode()))
    other.client_conn.proxy_mode = ProxyMode.parse("reverse:http://127.0.0.1:3978@127.0.0.1:5055")
    with taddons.context(addon):
        addon.response(other)
    assert json.loads(other.response.content)["streamUrl"].startswith("wss://")  # only Direct Line listeners


def test_websocket_messages_are_handed_on():
    seen = []
    addon = Capture(seen.append)
    flow = tflow.tflow(resp=True, ws=True)
    with taddons.context(addon):
        addon.websocket_message(flow)
        addon.websocket_end(flow)
    assert isinstance(seen[0], WebSocketSeen) and seen[0].content == flow.websocket.messages[-1].content
    assert seen[1].content is None


def test_the_console_prints_stream_frames_as_they_arrive():
    from botproxy.present.console import Console

    lines = []
    rec = SessionRecorder(1, observers=[Console(echo=lines.append)])
    rec.handle(RequestSeen("s", 1.0, "directline", "GET", DL + f"/v3/directline/conversations/abc/stream?t={TOKEN}",
                           [], None))
    rec.handle(ResponseSeen("s", 1.5, 101, [], None))
    rec.handle(WebSocketSeen("s", 2.0, False, json.dumps({"activities": [
        {"type": "message", "id": "abc|0000002", "text": "from the bot", "conversation": {"id": "abc"}}],
        "watermark": "2"}).encode()))
    assert any("⇠" in line and '"from the bot"' in line and "stream" in line for line in lines), lines
