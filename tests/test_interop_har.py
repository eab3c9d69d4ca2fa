"""`botproxy export --format har` and HAR import: botproxy's own HAR, foreign HAR, mitmproxy's hardump."""

import base64
import json
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from mitmdumpkit import finding_codes, record_through_mitmdump, summary

from botproxy import store
from botproxy.cli import cli
from botproxy.demo import record_demo
from botproxy.interop import import_files
from botproxy.wire.service_url import ServiceUrlKeys


def unsigned_key(url: str) -> str:
    """A key as botproxy made them before it signed them."""
    return base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


async def recorded_har(tmp_path):
    db_path = str(tmp_path / "rt.db")
    await record_demo(db_path, "demo", confdir=str(tmp_path / "mitm"))
    out = tmp_path / "demo.har"
    result = CliRunner().invoke(cli, ["export", "demo", "--format", "har", "--out", str(out), "--db", db_path])
    assert result.exit_code == 0, result.output
    return db_path, out


@pytest.mark.slow
async def test_botproxy_har_is_har_1_2_and_reimports_the_same_session(tmp_path):
    db_path, out = await recorded_har(tmp_path)
    document = json.loads(out.read_text())
    log = document["log"]
    assert log["version"] == "1.2" and log["creator"]["name"] == "botproxy"
    db = store.open_db(db_path)
    exchanges = list(store.iter_exchanges(db, store.resolve_session(db, "demo")["id"]))
    assert len(log["entries"]) == len(exchanges) > 0
    for entry, exchange in zip(log["entries"], exchanges, strict=True):
        assert entry["startedDateTime"].endswith("+00:00") and entry["time"] == exchange["duration_ms"]
        request, response = entry["request"], entry["response"]
        assert (request["method"], request["url"], request["headersSize"]) == (exchange["method"], exchange["url"], -1)
        assert all(set(h) == {"name", "value"} for h in request["headers"] + response["headers"])
        assert entry["timings"] == {"send": 0, "wait": exchange["duration_ms"], "receive": 0} and entry["cache"] == {}
        assert response["status"] == exchange["status"] and response["redirectURL"] == ""
        assert entry["_botproxy"]["listener"] == exchange["listener"] and entry["_botproxy"]["leg"] == exchange["leg"]
        if exchange["request_body"]:
            assert request["postData"]["text"] == exchange["request_body"]
            assert request["bodySize"] == len(exchange["request_body"].encode())
        if exchange["response_body"]:
            assert response["content"]["text"] == exchange["response_body"]
    assert {e["_botproxy"]["listener"] for e in log["entries"]} == {"reverse", "svc"}

    result = CliRunner().invoke(cli, ["import", str(out), "--session", "back", "--db", db_path, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["unfinished"] == 0
    assert summary(db_path, "back") == summary(db_path, "demo")
    assert finding_codes(db_path, "back") == finding_codes(db_path, "demo")
    back = store.resolve_session(db, "back")
    assert back["source"] == "import" and back["capture_mode"] == "har"
    again = list(store.iter_exchanges(db, back["id"]))
    keys = ("listener", "route", "url", "status", "request_body", "response_body")
    assert [[x[k] for k in keys] for x in again] == [[x[k] for k in keys] for x in exchanges]
    # Standard output without --out.
    result = CliRunner().invoke(cli, ["export", "demo", "--format", "har", "--db", db_path])
    assert result.exit_code == 0 and json.loads(result.stdout)["log"]["entries"]


@pytest.mark.parametrize(
    "encode_service_url", [ServiceUrlKeys.ephemeral().mint, unsigned_key], ids=["signed-by-another-confdir", "unsigned"]
)
@pytest.mark.slow
async def test_foreign_har_listeners_inferred_and_rewritten_service_urls_mapped_back(tmp_path, encode_service_url):
    """Without `_botproxy`, the listener comes from path and body; a capture taken of traffic botproxy was
    rewriting (the bot calling /_botproxy/svc/<key>/v3/...) maps back to the original connector URL, whichever
    secret signed the key, or none (an older botproxy's)."""
    db_path, out = await recorded_har(tmp_path)
    document = json.loads(out.read_text())
    for entry in document["log"]["entries"]:
        ours = entry.pop("_botproxy")
        request = entry["request"]
        if ours["listener"] == "svc":
            parts = urlsplit(request["url"])
            original = f"{parts.scheme}://{parts.netloc}/"
            request["url"] = f"http://127.0.0.1:9/_botproxy/svc/{encode_service_url(original)}{parts.path}"
        elif ours["listener"] == "reverse" and "serviceUrl" in request["postData"]["text"]:
            body = json.loads(request["postData"]["text"])
            body["serviceUrl"] = f"http://127.0.0.1:9/_botproxy/svc/{encode_service_url(body['serviceUrl'])}/"
            request["postData"]["text"] = json.dumps(body)
    foreign = tmp_path / "foreign.har"
    foreign.write_text(json.dumps(document))
    import_files(db_path, [foreign], "foreign")
    assert summary(db_path, "foreign") == summary(db_path, "demo")
    assert finding_codes(db_path, "foreign")[0] == finding_codes(db_path, "demo")[0]
    db = store.open_db(db_path)
    pairs = lambda name: [  # noqa: E731
        (x["listener"], x["url"], x["rewritten"])
        for x in store.iter_exchanges(db, store.resolve_session(db, name)["id"])
    ]
    assert pairs("foreign") == pairs("demo")


async def test_mitmproxy_hardump_of_both_legs_imports_as_botproxy_recorded_it(tmp_path, recorders, free_port):
    captures = await record_through_mitmdump(tmp_path, recorders, free_port)
    document = json.loads(captures.har.read_text())
    assert document["log"]["creator"]["name"] == "mitmproxy"
    live = summary(captures.db_path, "live")
    assert len(live) > 20 and {a[0] for a in live} == {"to_bot", "from_bot"}
    result = CliRunner().invoke(
        cli, ["import", str(captures.har), "--session", "from-hardump", "--db", captures.db_path]
    )
    assert result.exit_code == 0, result.output
    assert summary(captures.db_path, "from-hardump") == live
    assert finding_codes(captures.db_path, "from-hardump")[0] == finding_codes(captures.db_path, "live")[0]


def _mitmproxy_flow(method, url, body, answer, start, end, connect_s):
    """One exchange as mitmproxy holds it: the server connection opened (and its connect timed) while
    the request was already in, as mitmproxy does."""
    from mitmproxy import http
    from mitmproxy.test import tflow

    flow = tflow.tflow(resp=True)
    flow.request = http.Request.make(method, url, json.dumps(body), {"content-type": "application/json"})
    flow.response = http.Response.make(200, json.dumps(answer), {"content-type": "application/json"})
    flow.request.timestamp_start, flow.request.timestamp_end = start, start + 0.001
    flow.response.timestamp_start, flow.response.timestamp_end = end - 0.001, end
    flow.server_conn = tflow.tserver_conn()
    flow.server_conn.timestamp_start = start + 0.0005
    flow.server_conn.timestamp_tcp_setup = start + 0.0005 + connect_s
    flow.server_conn.timestamp_tls_setup = None
    return flow


def test_mitmproxy_hardump_timings_do_not_stretch_an_exchange_past_its_end(tmp_path):
    """mitmproxy's HAR `time` counts a new connection's connect inside `wait` and again on its own: an
    update sent 10 ms after its reply returned would sort before that reply's answer (a false BP-O07)."""
    from mitmproxy.addons.savehar import SaveHar

    service = "https://smba.example/amer/"
    conversation = {"id": "c1"}
    user, bot = {"id": "u1", "name": "user"}, {"id": "b1", "name": "bot"}
    inbound = {
        "type": "message",
        "id": "in1",
        "serviceUrl": service,
        "channelId": "msteams",
        "text": "hi",
        "conversation": conversation,
        "from": user,
        "recipient": bot,
    }
    reply = {
        "type": "message",
        "text": "working",
        "replyToId": "in1",
        "conversation": conversation,
        "from": bot,
        "recipient": user,
    }
    t = 1_780_000_000.0
    flows = [
        _mitmproxy_flow("POST", "http://127.0.0.1:3978/api/messages", inbound, {}, t, t + 0.200, 0.0),
        _mitmproxy_flow(
            "POST", f"{service}v3/conversations/c1/activities/in1", reply, {"id": "r1"}, t + 0.010, t + 0.020, 0.080
        ),
        _mitmproxy_flow(
            "PUT",
            f"{service}v3/conversations/c1/activities/r1",
            {**reply, "id": "r1", "text": "done"},
            {"id": "r1"},
            t + 0.030,
            t + 0.040,
            0.0,
        ),
    ]
    document = SaveHar().make_har(flows)
    assert document["log"]["creator"]["name"] == "mitmproxy"
    assert document["log"]["entries"][1]["time"] > 30  # the connect counted twice: 10 ms + 80 ms
    har = tmp_path / "hardump.har"
    har.write_text(json.dumps(document))
    db_path = str(tmp_path / "h.db")
    result = CliRunner().invoke(cli, ["import", str(har), "--session", "dump", "--db", db_path])
    assert result.exit_code == 0, result.output
    assert [(a[0], a[3], a[5], a[6]) for a in summary(db_path, "dump")] == [
        ("to_bot", "bot_messages", "in1", 200),
        ("from_bot", "reply_to_activity", "r1", 200),
        ("from_bot", "update_activity", "r1", 200),
    ]
    found, stored = finding_codes(db_path, "dump")
    assert "BP-O07" not in found and "BP-O07" not in stored


@pytest.mark.parametrize(
    ("text", "raw"),
    [("\udcff\udcfe", b"\xff\xfe"), ("half \ud83d", "half \ud83d".encode("utf-8", "surrogatepass"))],
    ids=["bytes-a-python-writer-escaped", "half-an-emoji"],
)
def test_a_har_body_text_utf8_cannot_hold_is_stored_raw_and_flagged(tmp_path, text, raw):
    """HAR text with lone surrogates: undecodable bytes a Python writer kept (`surrogateescape`) come back
    as those bytes, any other as its raw form; the body is recorded raw and flagged, the import goes on."""
    entry = {
        "startedDateTime": "2024-01-01T10:00:00+00:00",
        "time": 5,
        "request": {
            "method": "POST",
            "url": "https://connector.example/v3/conversations/c1/activities",
            "headers": [{"name": "Content-Type", "value": "application/json"}],
            "postData": {"mimeType": "application/json", "text": text},
        },
        "response": {"status": 200, "headers": [], "content": {"text": '{"id": "a1"}'}},
    }
    har = tmp_path / "odd.har"
    har.write_text(json.dumps({"log": {"version": "1.2", "creator": {"name": "x"}, "entries": [entry]}}))
    db_path = str(tmp_path / "h.db")
    result = CliRunner().invoke(cli, ["import", str(har), "--session", "odd", "--db", db_path])
    assert result.exit_code == 0, result.output
    db = store.open_db(db_path)
    [exchange] = store.iter_exchanges(db, store.resolve_session(db, "odd")["id"])
    assert exchange["request_body_raw"] == raw and exchange["request_malformed"] == 1
