"""Hostile input, generated: `botproxy import` on files of every kind, configuration files, the route
classifier (issue 10 §3). Each property: exit 0, or exit 2 with one line, never a traceback, and nothing
written on failure.

Bounded and repeatable: a fixed derandomized run of BOTPROXY_FUZZ_EXAMPLES examples per property
(default 150); raise it to hunt (`BOTPROXY_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py`).
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import tempfile
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botproxy.cli import cli
from botproxy.wire import protocol as p

EXAMPLES = int(os.environ.get("BOTPROXY_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# -- values shaped like what the formats hold, and not ---------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.floats(allow_nan=False), st.text(max_size=12),
    st.sampled_from(["", "message", "invoke", "user", "bot", "2024-01-01T10:00:00Z", "not a date",
                     "https://connector.example/", "http://[::1", "emulator", "conv1", "\ud800", "0", "-1"]),
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
ACTIVITY_KEYS = ["type", "id", "text", "from", "recipient", "conversation", "timestamp", "localTimestamp",
                 "replyToId", "serviceUrl", "channelId", "name", "value", "attachments", "channelData",
                 "entities", "locale", "deliveryMode", "inputHint", "membersAdded", "role", "label",
                 "suggestedActions", "expectedReplies", "relatesTo"]
account = st.one_of(json_values, st.fixed_dictionaries(
    {}, optional={"id": json_values, "name": json_values, "role": st.sampled_from(["user", "bot", 5, None])}))
activity = st.fixed_dictionaries({}, optional={
    **{key: json_values for key in ACTIVITY_KEYS},
    "type": st.one_of(st.sampled_from(["message", "invoke", "event", "conversationUpdate", "typing"]), json_values),
    "from": account,
    "recipient": account,
    "conversation": st.one_of(json_values, st.fixed_dictionaries({"id": json_values})),
})
transcripts = st.one_of(
    st.lists(activity, max_size=6),
    st.lists(activity, max_size=6).map(lambda acts: {"transcript": acts}),
    st.lists(activity, max_size=6).map(lambda acts: {"activities": acts}),
    st.lists(st.one_of(activity, json_values), max_size=4),
)

headers = st.one_of(json_values, st.lists(st.one_of(
    json_values, st.fixed_dictionaries({"name": st.sampled_from(["Content-Type", "Authorization", 5]),
                                        "value": st.one_of(st.sampled_from(["application/json", "text/html"]),
                                                           json_values)})), max_size=3))
body_text = st.one_of(json_values, activity.map(json.dumps), st.text(max_size=20))
har_entry = st.one_of(json_values, st.fixed_dictionaries(
    {"request": st.one_of(json_values, st.fixed_dictionaries(
        {"method": st.one_of(st.sampled_from(["POST", "GET", "PUT"]), json_values),
         "url": st.one_of(st.sampled_from(["http://127.0.0.1:3978/api/messages",
                                           "https://smba.example/v3/conversations/c/activities/a", "nonsense",
                                           "http://h/v3/conversations/%zz/activities"]), json_values)},
        optional={"headers": headers,
                  "postData": st.one_of(json_values, st.fixed_dictionaries(
                      {"text": body_text}, optional={"encoding": st.sampled_from(["base64", "utf-8", 7])}))})),
     "startedDateTime": st.one_of(st.sampled_from(["2024-01-01T10:00:00Z", "2024-13-01", "x"]), json_values)},
    optional={"response": st.one_of(json_values, st.fixed_dictionaries(
        {}, optional={"status": st.one_of(st.sampled_from([200, 201, 500, "200", -1]), json_values),
                      "headers": headers, "_error": json_values,
                      "content": st.one_of(json_values, st.fixed_dictionaries(
                          {"text": body_text}, optional={"encoding": st.sampled_from(["base64", 1])}))})),
              "time": json_values,
              "_botproxy": st.one_of(json_values, st.fixed_dictionaries(
                  {"listener": st.sampled_from(["reverse", "svc", "forward", "directline", "x"])},
                  optional={"opened": json_values, "closed": json_values, "rewritten": json_values,
                            "service_url": json_values})),
              "_webSocketMessages": st.one_of(json_values, st.lists(st.one_of(json_values, st.fixed_dictionaries(
                  {"time": json_values, "type": st.sampled_from(["send", "receive"]), "data": json_values},
                  optional={"opcode": st.sampled_from([1, 2]), "_event": json_values})), max_size=2))}))
hars = st.one_of(
    st.lists(har_entry, max_size=4).map(lambda entries: {"log": {"entries": entries}}),
    json_values.map(lambda v: {"log": v}),
)


@st.composite
def flow_files(draw) -> bytes:
    """Real mitmproxy flow files of generated HTTP flows, sometimes cut short or with a byte changed."""
    from mitmproxy import io as mio
    from mitmproxy.test import tflow

    buffer = io.BytesIO()
    writer = mio.FlowWriter(buffer)
    for _ in range(draw(st.integers(1, 3))):
        flow = tflow.tflow(resp=draw(st.booleans()), err=draw(st.booleans()))
        flow.request.method = draw(st.sampled_from(["POST", "GET", "DELETE"]))
        flow.request.path = draw(st.sampled_from(["/api/messages", "/v3/conversations/c/activities/a",
                                                  "/v3/conversations", "/%ff", "/v3/conversations/%zz/members"]))
        flow.request.content = draw(st.one_of(st.binary(max_size=40), body_text.map(lambda t: json.dumps(t).encode())))
        if draw(st.booleans()):
            flow.request.headers["content-encoding"] = draw(st.sampled_from(["gzip", "br", "x"]))
        if flow.response is not None:
            flow.response.status_code = draw(st.sampled_from([200, 201, 400, 500, 101]))
            flow.response.content = draw(st.binary(max_size=30))
        writer.add(flow)
    data = buffer.getvalue()
    damage = draw(st.sampled_from(["none", "cut", "flip"]))
    if damage == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif damage == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    return data


def _json_bytes(value) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


files = st.one_of(
    transcripts.map(_json_bytes),
    hars.map(_json_bytes),
    flow_files(),
    json_values.map(_json_bytes),
    st.binary(max_size=200),
    st.text(max_size=50).map(lambda t: t.encode("utf-8", "surrogatepass")),
)

# -- the property -----------------------------------------------------------------------------------

seen = {"import": 0, "imported": 0, "refused": 0}


def assert_exit_0_or_one_line(result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    if result.exit_code != 0:
        assert result.exit_code == 2, result.output
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("botproxy: error: "), result.output


@FUZZ
@given(content=files)
def test_import_of_any_file_is_exit_0_or_one_line_and_nothing_written(content):
    with tempfile.TemporaryDirectory() as tmp:
        path, db = Path(tmp) / "input.file", Path(tmp) / "out.db"
        path.write_bytes(content)
        result = CliRunner().invoke(cli, ["import", str(path), "--session", "fuzz", "--db", str(db)])
        seen["import"] += 1
        assert_exit_0_or_one_line(result)
        if result.exit_code == 0:
            seen["imported"] += 1
            sessions = sqlite3.connect(db).execute("select name from sessions").fetchall()
            assert sessions == [("fuzz",)]
        else:
            seen["refused"] += 1
            # Nothing written on failure: no session row (the file may exist, empty of sessions).
            if db.exists():
                conn = sqlite3.connect(db)
                tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
                assert "sessions" not in tables or conn.execute("select count(*) from sessions").fetchone()[0] == 0


def test_the_smallest_known_crasher_imports_or_is_one_line(tmp_path):
    path = tmp_path / "crash.transcript"
    path.write_text('[{"type":"message","from":true}]')
    result = CliRunner().invoke(cli, ["import", str(path), "--db", str(tmp_path / "x.db")])
    assert_exit_0_or_one_line(result)


# -- configuration files -----------------------------------------------------------------------------

toml_scalars = st.one_of(st.integers(-5, 5), st.booleans(), st.text(max_size=8), st.sampled_from(
    ["BP-A01", "bp-a1", "error", "warning", "loud", "root['channelData']", "("]))
toml_values = st.recursive(toml_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.sampled_from(["disable", "severity", "ignore", "BP-A01", "x"]),
                                             inner, max_size=3), max_leaves=6)


def _toml(value, depth=0) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


config_tables = st.dictionaries(st.sampled_from(["checks", "replay", "other"]), toml_values, max_size=2)
pyprojects = st.one_of(
    config_tables.map(lambda t: {"tool": {"botproxy": t}}),
    toml_values.map(lambda v: {"tool": v}),
    toml_values.map(lambda v: {"tool": {"botproxy": v}}),
)
config_files = st.one_of(
    st.tuples(st.just("botproxy.toml"), config_tables.map(lambda t: "\n".join(f"{k} = {_toml(v)}" for k, v in
                                                                               t.items()).encode())),
    st.tuples(st.just("pyproject.toml"), pyprojects.map(lambda t: "\n".join(f"{k} = {_toml(v)}" for k, v in
                                                                           t.items()).encode())),
    st.tuples(st.sampled_from(["botproxy.toml", "pyproject.toml"]), st.binary(max_size=60)),
)


@FUZZ
@given(config=config_files, command=st.sampled_from(["rules", "check", "replay"]))
def test_any_configuration_file_is_exit_0_or_one_line(config, command):
    name, content = config
    args = {"rules": ["rules", "--json"], "check": ["check", "--db", "none.db"],
            "replay": ["replay", "latest", "--bot", "http://127.0.0.1:9/api/messages", "--db", "none.db"]}[command]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / name).write_bytes(content)
        old = os.getcwd()
        os.chdir(tmp)
        try:
            result = CliRunner().invoke(cli, args)
        finally:
            os.chdir(old)
        assert_exit_0_or_one_line(result)
        assert sorted(x.name for x in Path(tmp).iterdir()) == [name]


# -- the route classifier -------------------------------------------------------------------------

path_parts = st.one_of(st.sampled_from(["v3", "v1", "conversations", "activities", "members", "attachments",
                                        "views", "teams", "meetings", "directline", "api", "tokens", "history",
                                        "pagedmembers", "upload", "stream", "%2F", "%zz", "..", "", "a:b", "\x00"]),
                       st.text(max_size=6))
paths = st.lists(path_parts, max_size=8).map(lambda parts: "/" + "/".join(parts))
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "get", "", "X"])


@FUZZ
@given(method=methods, path=paths, host=st.text(max_size=10))
def test_the_route_classifier_names_every_path(method, path, host):
    for route in (p.classify_connector(method, path), p.classify_directline(method, path),
                  p.classify_outbound(method, host, path)):
        assert isinstance(route.name, str) and route.name
        for value in (route.conversation_id, route.activity_id, route.member_id):
            assert value is None or (isinstance(value, str) and value)
        assert path.startswith(route.prefix)


def test_a_flow_file_with_bytes_that_are_not_utf8_imports_them_escaped(tmp_path):
    """A crasher the fuzzer found: a header byte that is not UTF-8 in a flow file (UnicodeEncodeError in SQLite)."""
    from mitmproxy import io as mio
    from mitmproxy.test import tflow

    flow = tflow.tflow(resp=True)
    flow.request.path = "/api/messages"
    flow.request.headers.fields = ((b"X-Odd", b"caf\xe9"),)
    with (tmp_path / "odd.flows").open("wb") as handle:
        mio.FlowWriter(handle).add(flow)
    result = CliRunner().invoke(cli, ["import", str(tmp_path / "odd.flows"), "--db", str(tmp_path / "x.db")])
    assert_exit_0_or_one_line(result)
    assert result.exit_code == 0, result.output
    [(headers, odd)] = sqlite3.connect(tmp_path / "x.db").execute("select request_headers, odd_text from exchanges")
    assert "caf\\udce9" in headers and "X-Odd" in headers
    assert json.loads(json.loads(odd)["request_headers"]) == [["X-Odd", "caf\udce9"]]


def test_a_flow_file_damaged_at_any_byte_is_read_or_refused(tmp_path):
    """Every byte of a real flow file changed in turn: mitmproxy's reader reads it or botproxy says it cannot
    (the fuzzer found an AssertionError from inside the reader)."""
    from mitmproxy import io as mio
    from mitmproxy.test import tflow

    from botproxy.interop import flows

    flow = tflow.tflow(resp=True)
    flow.request.path = "/%ff"
    buffer = io.BytesIO()
    mio.FlowWriter(buffer).add(flow)
    data = buffer.getvalue()
    path, outcomes = tmp_path / "damaged.flows", {"read": 0, "refused": 0}
    for at in range(len(data)):
        for xor in (0x01, 0x20, 0xFF):
            path.write_bytes(data[:at] + bytes([data[at] ^ xor]) + data[at + 1 :])
            try:
                flows.read(path, "f#")
                outcomes["read"] += 1
            except flows.NotFlows:
                outcomes["refused"] += 1
    assert outcomes["read"] and outcomes["refused"] and sum(outcomes.values()) == 3 * len(data)
