"""The addon's hooks, called directly with mitmproxy's test flows (no network)."""

import gzip
import json
import stat

import pytest
from mitmproxy import http
from mitmproxy.net import encoding
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow, tutils

from botproxy.errors import UsageError
from botproxy.record.mitm.capture import REFUSED_CODE, Capture, _StreamTap
from botproxy.record.recorder import FailureSeen, RequestSeen, ResponseSeen
from botproxy.wire.service_url import (
    SECRET_FILE,
    SVC_PREFIX,
    ServiceUrlKeys,
    decode_service_url,
    key_in,
    restore,
    split_svc_path,
    unsigned_original,
)

ORIGINAL = "https://smba.trafficmanager.net/amer/"
KEYS = ServiceUrlKeys(b"k" * 32)


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
    return Capture(seen.append, keys=KEYS)


def svc_flow(key: str, body: bytes, headers=()) -> http.HTTPFlow:
    """The bot calling a rewritten serviceUrl on the reverse listener."""
    req = tutils.treq(
        method=b"POST",
        host="127.0.0.1",
        port=3978,
        content=body,
        headers=http.Headers([(b"host", b"127.0.0.1:5055"), (b"content-type", b"application/json"), *headers]),
        path=f"{SVC_PREFIX}{key}/v3/conversations/a%3A1/activities/x".encode(),
    )
    flow = tflow.tflow(req=req)
    flow.client_conn.proxy_mode = ProxyMode.parse("reverse:http://127.0.0.1:3978@127.0.0.1:5055")
    flow.client_conn.sockname = ("127.0.0.1", 5055)
    return flow


def test_service_url_key_round_trips_and_is_signed():
    for url in (ORIGINAL, "http://localhost:51234", "https://x.example/gcc?q=1"):
        key = KEYS.mint(url)
        assert "/" not in key and KEYS.verify(key) == url and decode_service_url(key) == url
        assert ServiceUrlKeys(b"o" * 32).verify(key) is None  # another secret did not mint it
        encoded, _, mac = key.partition(".")
        assert KEYS.verify(encoded) is None  # unsigned (as botproxy's keys were before they were signed)
        assert KEYS.verify(encoded + "." + mac[::-1]) is None
        forged = KEYS.mint("http://127.0.0.1:9/internal/admin").partition(".")[0] + "." + mac
        assert KEYS.verify(forged) is None  # a signature of another URL


def test_the_secret_is_made_once_owner_only_and_kept(tmp_path):
    keys = ServiceUrlKeys.in_confdir(tmp_path / "conf")
    secret = tmp_path / "conf" / SECRET_FILE
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    again = ServiceUrlKeys.in_confdir(tmp_path / "conf")
    assert again.verify(keys.mint(ORIGINAL)) == ORIGINAL and again.proxy_credential() == keys.proxy_credential()
    assert ServiceUrlKeys.in_confdir(tmp_path / "other").verify(keys.mint(ORIGINAL)) is None
    secret.chmod(0o644)
    ServiceUrlKeys.in_confdir(tmp_path / "conf")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    (tmp_path / "a-file").write_text("")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        ServiceUrlKeys.in_confdir(tmp_path / "a-file")
    secret.write_bytes(b"short")
    with pytest.raises(UsageError, match="not a botproxy key file"):
        ServiceUrlKeys.in_confdir(tmp_path / "conf")


def test_inbound_service_url_is_rewritten_to_come_back_through_us(addon, seen):
    flow = inbound_flow(activity())
    with taddons.context(addon):
        addon.request(flow)
    sent = json.loads(flow.request.content or b'')
    assert sent["serviceUrl"] == f"http://127.0.0.1:5055{SVC_PREFIX}{KEYS.mint(ORIGINAL)}/"
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
    key = KEYS.mint(ORIGINAL)
    proxy_url = f"http://127.0.0.1:5055{SVC_PREFIX}{key}/"
    body = json.dumps({"type": "message", "serviceUrl": proxy_url, "text": "yo"}).encode()
    flow = svc_flow(key, body)
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
    flow = inbound_flow(activity())
    addon.keys = None  # breaks the rewrite: the request must pass as it came
    with taddons.context(addon):
        addon.request(flow)
    assert flow.request.content == activity()
    assert addon.failures == 1
    assert isinstance(seen[-1], FailureSeen) and seen[-1].stage == "request"


@pytest.mark.parametrize("key", [
    "%%%not-base64",
    KEYS.mint(ORIGINAL).partition(".")[0],  # unsigned, as keys were before botproxy signed them
    ServiceUrlKeys(b"o" * 32).mint("http://127.0.0.1:9/internal/admin"),  # another confdir's secret
    KEYS.mint(ORIGINAL).replace(".", ".x"),  # tampered
])
def test_a_key_we_did_not_mint_is_answered_403_here_and_recorded(addon, seen, key):
    flow = svc_flow(key, b'{"type":"message"}')
    with taddons.context(addon):
        addon.request(flow)
        assert flow.response is not None  # mitmproxy sends this and contacts no server
        addon.response(flow)
    assert flow.response.status_code == 403
    assert json.loads(flow.response.content or b"")["error"]["code"] == REFUSED_CODE
    assert flow.request.host == "127.0.0.1" and flow.request.port == 3978  # not re-routed anywhere
    request, response = seen
    assert request.listener == "svc" and request.service_url is None
    assert request.url.startswith("http://127.0.0.1:5055/_botproxy/svc/")
    assert response.status == 403 and "nothing was forwarded" in response.error
    assert addon.failures == 0


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


def test_only_the_top_level_service_url_is_rewritten(addon, seen):
    body = b'{"serviceUrl":"https://a/","channelData":{"serviceUrl":"https://b/","x":["serviceUrl"]}}'
    flow = inbound_flow(body)
    with taddons.context(addon):
        addon.request(flow)
    sent = json.loads(flow.request.content or b"")
    assert KEYS.verify(sent["serviceUrl"].split("/")[-2]) == "https://a/"
    assert sent["channelData"] == {"serviceUrl": "https://b/", "x": ["serviceUrl"]}
    assert (flow.request.content or b"").endswith(b',"channelData":{"serviceUrl":"https://b/","x":["serviceUrl"]}}')


@pytest.mark.parametrize("body", [
    b'{"type":"message"}',  # no serviceUrl
    b'{"type":"message","channelData":{"serviceUrl":"https://b/"}}',  # only a nested one
    b'{"serviceUrl":"https://a/","serviceUrl":"https://b/"}',  # two at the top: which one would the bot use?
    b'{"service\\u0055rl":"https://a/","channelData":{"serviceUrl":"https://a/"}}',  # the top one is escaped
    b'{"serviceUrl":"urn:not-http"}',
    b'[{"serviceUrl":"https://a/"}]',  # not an activity
    b'{"serviceUrl":"https://a/", "text": "truncated',  # not JSON
    b'{"serviceUrl":"https://a/","text":"\xff"}',  # not UTF-8
])
def test_bodies_that_are_not_one_json_activity_with_a_service_url_are_left_alone(addon, seen, body):
    flow = inbound_flow(body)
    with taddons.context(addon):
        addon.request(flow)
    assert flow.request.content == body and not seen[-1].rewritten


@pytest.mark.parametrize("content_type", [b"text/plain", b"application/x-www-form-urlencoded", b"text/html"])
def test_a_body_that_is_not_declared_json_is_left_alone(addon, seen, content_type):
    body = activity()
    flow = inbound_flow(body)
    flow.request.headers["content-type"] = content_type.decode()
    with taddons.context(addon):
        addon.request(flow)
    assert flow.request.content == body and not seen[-1].rewritten


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_an_encoded_activity_is_rewritten_inside_and_sent_on_in_its_encoding(addon, seen, coding):
    body = activity(text="compressed")
    flow = inbound_flow(encoding.encode(body, coding), headers=[(b"content-encoding", coding.encode())])
    with taddons.context(addon):
        addon.request(flow)
    assert flow.request.headers["content-encoding"] == coding
    sent = encoding.decode(flow.request.raw_content or b"", coding)
    assert sent == body.replace(ORIGINAL.encode(), f"http://127.0.0.1:5055{SVC_PREFIX}{KEYS.mint(ORIGINAL)}/".encode())
    assert seen[0].rewritten and seen[0].content == body  # the recording keeps the decoded original


def test_a_body_whose_encoding_cannot_be_undone_passes_as_it_came(addon, seen):
    flow = inbound_flow(b"\x1f\x8b not really gzip", headers=[(b"content-encoding", b"gzip")])
    with taddons.context(addon):
        addon.request(flow)
    assert flow.request.raw_content == b"\x1f\x8b not really gzip" and not seen[0].rewritten
    assert addon.failures == 0 and seen[0].content == b"\x1f\x8b not really gzip"


OURS = f"http://127.0.0.1:5055{SVC_PREFIX}{{key}}/"


@pytest.mark.parametrize("original", ["http://localhost:51234", "http://localhost:51234/",
                                      "https://smba.trafficmanager.net/amer/", "https://smba.infra.gcc.teams.microsoft.com/gcc"])
def test_restore_gives_each_form_the_bot_builds_what_it_would_build_from_the_original(original):
    ours = OURS.format(key=KEYS.mint(original))
    trimmed, with_slash = original.rstrip("/"), original.rstrip("/") + "/"
    forms = {  # what the bot wrote, given `ours` -> what it writes given the original
        ours: original,  # the serviceUrl as it is
        ours.rstrip("/"): trimmed,  # rstrip("/")
        ours + "v3/attachments/a1/views/original": with_slash + "v3/attachments/a1/views/original",
        ours.rstrip("/") + "/v3/attachments/a2": with_slash + "v3/attachments/a2",
        ours + "/v3/x": original + "/v3/x",  # serviceUrl + "/v3/x": the same double slash, or none
        ours + "?q=1": original + "?q=1",
        ours + "#frag": original + "#frag",
    }
    for bot_wrote, expected in forms.items():
        for context in ('{"u":"%s"}', "see %s.", "[file](%s)", "<a href='%s'>", "%s"):
            assert restore((context % bot_wrote).encode(), KEYS.verify) == (context % expected).encode(), bot_wrote


def test_restore_leaves_keys_we_did_not_mint_and_other_text_alone():
    text = (f"http://127.0.0.1:5055{SVC_PREFIX}{ServiceUrlKeys(b'o' * 32).mint('http://x/')}/v3 "
            f"{SVC_PREFIX}not-a-url http://example.com/_botproxy/svcx/").encode()
    assert restore(text, KEYS.verify) == text


def test_a_reply_body_with_urls_under_the_service_url_reaches_the_connector_as_without_us(addon, seen):
    original = "http://localhost:51234"
    key = KEYS.mint(original)
    ours = OURS.format(key=key)
    reply = {"type": "message", "serviceUrl": ours,
             "attachments": [{"contentType": "image/png", "contentUrl": ours + "v3/attachments/a1/views/original"}],
             "channelData": {"ref": ours.rstrip("/")}, "value": {"next": ours + "?page=2"}}
    flow = svc_flow(key, json.dumps(reply).encode())
    with taddons.context(addon):
        addon.request(flow)
    assert flow.request.url == "http://localhost:51234/v3/conversations/a%3A1/activities/x"
    expected = {"type": "message", "serviceUrl": original,
                "attachments": [{"contentType": "image/png",
                                 "contentUrl": "http://localhost:51234/v3/attachments/a1/views/original"}],
                "channelData": {"ref": original}, "value": {"next": original + "?page=2"}}
    assert flow.request.content == json.dumps(expected).encode()
    assert seen[0].content == flow.request.content  # recorded as the connector got it


def test_a_gzip_reply_is_restored_inside_and_stays_gzip(addon, seen):
    key = KEYS.mint(ORIGINAL)
    body = json.dumps({"type": "message", "serviceUrl": OURS.format(key=key)}).encode()
    flow = svc_flow(key, gzip.compress(body), headers=[(b"content-encoding", b"gzip")])
    with taddons.context(addon):
        addon.request(flow)
    assert json.loads(gzip.decompress(flow.request.raw_content or b""))["serviceUrl"] == ORIGINAL


def test_a_reply_without_our_urls_passes_byte_for_byte(addon, seen):
    key = KEYS.mint(ORIGINAL)
    raw = gzip.compress(b'{"type":"message","text":"no urls"}', mtime=1)
    flow = svc_flow(key, raw, headers=[(b"content-encoding", b"gzip")])
    with taddons.context(addon):
        addon.request(flow)
    assert flow.request.raw_content == raw  # not re-compressed


def test_a_streamed_answer_gets_rewritten_urls_restored_even_when_split_between_reads():
    ours = OURS.format(key=KEYS.mint(ORIGINAL))
    body = (b'event: activity\ndata: {"type":"typing","serviceUrl":"' + ours.encode() + b'"}\n\n'
            b'event: activity\ndata: {"type":"message","text":"' + ours.encode() + b'v3/x"}\n\n')
    expected = body.replace(ours.encode() + b"v3", ORIGINAL.encode() + b"v3").replace(ours.encode(), ORIGINAL.encode())
    for split in range(1, len(body), 7):
        tap = _StreamTap(KEYS.verify)
        sent = tap(body[:split]) + tap(body[split:]) + tap(b"")
        assert sent == expected, split
        assert b"".join(c for _, c in tap.chunks) == expected


def test_a_direct_line_stream_url_is_the_only_bytes_changed_in_its_answer(seen):
    addon = Capture(seen.append, keys=KEYS, directline_targets=frozenset({("directline.botframework.com", 443)}))
    body = (b'{\n  "conversationId" : "c1",\n  "token" : "tok",\n  "expires_in" : 1800,\n  "streamUrl" : '
            b'"wss://directline.botframework.com/v3/directline/conversations/c1/stream?watermark=-&t=abc",\n'
            b'  "referenceGrammarId" : "g"\n}')
    req = tutils.treq(method=b"POST", host="directline.botframework.com", port=443,
                      path=b"/v3/directline/conversations", content=b"")
    flow = tflow.tflow(req=req, resp=tutils.tresp(content=body))
    flow.client_conn.proxy_mode = ProxyMode.parse("reverse:https://directline.botframework.com@127.0.0.1:5057")
    flow.client_conn.sockname = ("127.0.0.1", 5057)
    with taddons.context(addon):
        addon.request(flow)
        addon.response(flow)
    ours = b"ws://127.0.0.1:5057/v3/directline/conversations/c1/stream?watermark=-&t=abc"
    assert flow.response.content == body.replace(
        b"wss://directline.botframework.com/v3/directline/conversations/c1/stream?watermark=-&t=abc", ours)
    assert seen[-1].content == body  # the recording keeps what the service sent


@pytest.mark.parametrize("original", ["http://localhost:51234", "https://smba.trafficmanager.net/amer/"])
def test_restore_gives_back_urls_a_json_writer_wrote_with_escaped_slashes(original):
    # PHP's json_encode writes "/" as "\/": such a bot's reply reached the channel with our local URL in it.
    def esc(url: str) -> str:
        return url.replace("/", "\\/")

    ours = OURS.format(key=KEYS.mint(original))
    with_slash = original.rstrip("/") + "/"
    forms = {
        esc(ours): esc(original),
        esc(ours.rstrip("/")): esc(original.rstrip("/")),
        esc(ours + "v3/attachments/a1/views/original"): esc(with_slash + "v3/attachments/a1/views/original"),
    }
    for bot_wrote, expected in forms.items():
        body = f'{{"serviceUrl":"{bot_wrote}","text":"see {bot_wrote}"}}'.encode()
        assert restore(body, KEYS.verify) == f'{{"serviceUrl":"{expected}","text":"see {expected}"}}'.encode()
        assert json.loads(restore(body, KEYS.verify))["serviceUrl"] == json.loads(f'"{expected}"')


def test_an_escaped_slash_reply_reaches_the_connector_as_without_us(addon, seen):
    original = "https://smba.trafficmanager.net/amer/"
    key = KEYS.mint(original)
    ours = OURS.format(key=key)
    reply = json.dumps({"type": "message", "serviceUrl": ours, "text": "hi"}).replace("/", "\\/").encode()
    flow = svc_flow(key, reply)
    with taddons.context(addon):
        addon.request(flow)
    escaped_ours, escaped_original = (url.replace("/", "\\/").encode() for url in (ours, original))
    assert flow.request.content == reply.replace(escaped_ours, escaped_original)
    assert json.loads(flow.request.content)["serviceUrl"] == original


def test_the_codec_reads_a_key_back_wherever_it_appears():
    """capture's relay, the checks' norm_url and interop's traffic read keys through these three alone."""
    keys = ServiceUrlKeys(b"s" * 32)
    signed, unsigned = keys.mint("https://smba.example/amer/"), "aHR0cHM6Ly9zbWJhLmV4YW1wbGUvYW1lci8"
    assert split_svc_path(f"{SVC_PREFIX}{signed}/v3/conversations/c1") == (signed, "v3/conversations/c1")
    assert key_in(f"http://127.0.0.1:1/{SVC_PREFIX[1:]}{signed}/v3/x") == signed
    assert key_in(f"http://127.0.0.1:1/{SVC_PREFIX[1:]}{unsigned}") == unsigned
    assert key_in("https://smba.example/amer/") is None
    assert unsigned_original(signed) == unsigned_original(unsigned) == "https://smba.example/amer/"
    assert unsigned_original("!!") is None
    assert unsigned_original("ZnRwOi8vaG9zdC8") is None  # ftp://host/: not a serviceUrl
