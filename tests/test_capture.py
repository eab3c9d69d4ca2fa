"""The addon's hooks, called directly with mitmproxy's test flows (no network)."""

import json

import pytest
from mitmproxy import http
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow, tutils

from botproxy.capture import SVC_PREFIX, Capture, decode_service_url, encode_service_url
from botproxy.recording import FailureSeen, RequestSeen, ResponseSeen

ORIGINAL = "https://smba.trafficmanager.net/amer/"


def inbound_flow(body: bytes, headers=()) -> http.HTTPFlow:
    req = tutils.treq(
        method=b"POST",
        path=b"/api/messages",
        host="127.0.0.1",
        port=3978,
        content=body,
        headers=http.Headers([(b"content-type", b"application/json"), *headers]),
    )
    flow = tflow.tflow(req=req)
    flow.client_conn.proxy_mode = ProxyMode.parse("reverse:http://127.0.0.1:3978@127.0.0.1:5055")
    flow.client_conn.sockname = ("127.0.0.1", 5055)
    return flow


def activity(**fields) -> bytes:
    return json.dumps({"type": "message", "text": "hi", "serviceUrl": ORIGINAL, **fields}).encode()


@pytest.fixture
def seen():
    return []


@pytest.fixture
def addon(seen):
    return Capture(seen.append)


def test_service_url_key_round_trips():
    for url in (ORIGINAL, "http://localhost:51234", "https://x.example/gcc?q=1"):
        key = encode_service_url(url)
        assert "/" not in key and decode_service_url(key) == url


def test_inbound_service_url_is_rewritten_to_come_back_through_us(addon, seen):
    flow = inbound_flow(activity())
    with taddons.context(addon):
        addon.request(flow)
    sent = json.loads(flow.request.content or b'')
    assert sent["serviceUrl"] == f"http://127.0.0.1:5055{SVC_PREFIX}{encode_service_url(ORIGINAL)}/"
    [event] = seen
    assert isinstance(event, RequestSeen) and event.rewritten and event.listener == "reverse"
    assert json.loads(event.content)["serviceUrl"] == ORIGINAL  # the recording keeps what the channel sent


def test_authenticated_inbound_is_forwarded_byte_for_byte(addon, seen):
    body = activity()
    flow = inbound_flow(body, headers=[(b"authorization", b"Bearer abc.def.ghi")])
    notes = []
    addon.on_auth_seen = lambda: notes.append(1)
    with taddons.context(addon):
        addon.request(flow)
        addon.request(inbound_flow(body, headers=[(b"authorization", b"Bearer abc.def.ghi")]))
    assert flow.request.content == body
    assert not seen[0].rewritten
    assert notes == [1]  # said once, not per request


def test_no_rewrite_option(seen):
    addon = Capture(seen.append, rewrite=False)
    body = activity()
    flow = inbound_flow(body)
    with taddons.context(addon):
        addon.request(flow)
    assert flow.request.content == body


def test_reply_to_a_rewritten_service_url_goes_to_the_original_connector(addon, seen):
    key = encode_service_url(ORIGINAL)
    proxy_url = f"http://127.0.0.1:5055{SVC_PREFIX}{key}/"
    body = json.dumps({"type": "message", "serviceUrl": proxy_url, "text": "yo"}).encode()
    req = tutils.treq(
        method=b"POST",
        host="127.0.0.1",
        port=3978,
        content=body,
        headers=http.Headers([(b"host", b"127.0.0.1:5055"), (b"content-type", b"application/json")]),
        path=f"{SVC_PREFIX}{key}/v3/conversations/a%3A1/activities/x".encode(),
    )
    flow = tflow.tflow(req=req)
    flow.client_conn.proxy_mode = ProxyMode.parse("reverse:http://127.0.0.1:3978@127.0.0.1:5055")
    with taddons.context(addon):
        addon.request(flow)
    assert flow.request.url == "https://smba.trafficmanager.net/amer/v3/conversations/a%3A1/activities/x"
    assert flow.request.host_header == "smba.trafficmanager.net"
    assert json.loads(flow.request.content or b'')["serviceUrl"] == ORIGINAL
    assert seen[0].listener == "svc" and seen[0].service_url == ORIGINAL


def test_non_json_inbound_passes_unchanged_and_is_still_recorded(addon, seen):
    flow = inbound_flow(b"{definitely not json")
    with taddons.context(addon):
        addon.request(flow)
    assert flow.request.content == b"{definitely not json"
    assert seen[0].content == b"{definitely not json" and addon.failures == 0


def test_an_error_in_our_code_leaves_the_flow_alone_and_is_counted(addon, seen):
    req = tutils.treq(
        method=b"POST",
        host="127.0.0.1",
        port=3978,
        content=b"{}",
        path=f"{SVC_PREFIX}%%%not-base64/v3/conversations/c/activities".encode(),
    )
    flow = tflow.tflow(req=req)
    flow.client_conn.proxy_mode = ProxyMode.parse("reverse:http://127.0.0.1:3978@127.0.0.1:5055")
    before = flow.request.url
    with taddons.context(addon):
        addon.request(flow)
    assert flow.request.url == before
    assert addon.failures == 1
    assert isinstance(seen[-1], FailureSeen) and seen[-1].stage == "request"


def test_response_and_error_hooks_snapshot(addon, seen):
    flow = tflow.tflow(resp=tutils.tresp(status_code=201, content=b'{"id":"1"}'))
    failed = tflow.tflow(err=True)
    with taddons.context(addon):
        addon.response(flow)
        addon.error(failed)
    assert isinstance(seen[0], ResponseSeen) and seen[0].status == 201 and seen[0].content == b'{"id":"1"}'
    assert seen[1].status is None and seen[1].error == "error"


def test_expected_replies_in_the_response_get_the_original_service_url_back(addon, seen):
    flow = inbound_flow(activity(deliveryMode="expectReplies"))
    with taddons.context(addon):
        addon.request(flow)
        ours = json.loads(flow.request.content or b"")["serviceUrl"]
        reply = {"activities": [{"type": "message", "text": "hi", "serviceUrl": ours}]}
        flow.response = tutils.tresp(content=json.dumps(reply).encode())
        addon.response(flow)
    assert json.loads(flow.response.content or b"")["activities"][0]["serviceUrl"] == ORIGINAL
    assert json.loads(seen[-1].content)["activities"][0]["serviceUrl"] == ORIGINAL


def test_the_rewrite_edits_only_the_service_url_bytes(addon, seen):
    body = (b'{"type":"message",  "text":"keep   my spacing",\n "serviceUrl" : "https://smba.trafficmanager.net/amer/",'
            b' "channelData": {"x": [1, 2]}}')
    flow = inbound_flow(body)
    with taddons.context(addon):
        addon.request(flow)
    sent = flow.request.content or b""
    assert b'"text":"keep   my spacing",\n' in sent and b'"channelData": {"x": [1, 2]}}' in sent
    assert json.loads(sent)["serviceUrl"].startswith("http://127.0.0.1:5055/_botproxy/svc/")
    assert seen[0].content == body


def test_two_service_urls_or_none_are_left_alone(addon, seen):
    for body in (b'{"type":"message"}', b'{"serviceUrl":"https://a/","channelData":{"serviceUrl":"https://b/"}}'):
        flow = inbound_flow(body)
        with taddons.context(addon):
            addon.request(flow)
        assert flow.request.content == body and not seen[-1].rewritten
