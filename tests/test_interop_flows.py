"""Importing mitmproxy flow files (`mitmdump -w`), and files that are no capture at all."""

import json

import pytest
from click.testing import CliRunner
from mitmdumpkit import finding_codes, record_through_mitmdump, summary

from botproxy import store
from botproxy.cli import cli


async def test_mitmdump_flow_file_imports_as_botproxy_recorded_the_same_traffic(tmp_path, recorders, free_port):
    captures = await record_through_mitmdump(tmp_path, recorders, free_port)
    live = summary(captures.db_path, "live")
    assert len(live) > 20
    result = CliRunner().invoke(
        cli, ["import", str(captures.flows), "--session", "from-flows", "--db", captures.db_path, "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["unfinished"] == 0
    assert summary(captures.db_path, "from-flows") == live
    assert finding_codes(captures.db_path, "from-flows")[0] == finding_codes(captures.db_path, "live")[0]
    db = store.open_db(captures.db_path)
    session = store.resolve_session(db, "from-flows")
    assert session["capture_mode"] == "flows" and session["source"] == "import"
    legs = {(x["listener"], x["leg"]) for x in store.iter_exchanges(db, session["id"])}
    assert legs == {("reverse", "inbound"), ("forward", "outbound")}
    # The HAR and the flow file of one capture give one session.
    CliRunner().invoke(cli, ["import", str(captures.har), "--session", "from-har", "--db", captures.db_path])
    assert summary(captures.db_path, "from-har") == summary(captures.db_path, "from-flows")


def counts(db_path):
    db = store.open_db(db_path, create=True)
    try:
        return {t: db[t].count for t in ("sessions", "exchanges", "activities", "findings")}
    finally:
        db.conn.close()


HAR_ENTRY = {
    "startedDateTime": "2024-01-01T00:00:00Z",
    "time": 1,
    "request": {"method": "GET", "url": "http://x/", "headers": []},
    "response": {"status": 200, "headers": [], "content": {}},
}


@pytest.mark.parametrize(
    "name, content, says",
    [
        ("junk.bin", b"\x00\x01garbage that is no capture", "not a HAR, mitmproxy flow or .transcript file"),
        ("empty.flows", b"", "not a HAR, mitmproxy flow or .transcript file"),
        ("object.json", b'{"log": {"no": "entries"}}', "not a HAR, mitmproxy flow or .transcript file"),
        ("number.json", b"5", "not a HAR, mitmproxy flow or .transcript file"),
        ("bad.har", json.dumps({"log": {"entries": [{"request": {}}]}}).encode(), "entry 1 is not a usable HAR entry"),
        (
            "b64.har",
            json.dumps({"log": {"entries": [{**HAR_ENTRY, "response": {"status": 200, "content": {
                "text": "%%%", "encoding": "base64"}}}]}}).encode(),
            "entry 1 is not a usable HAR entry",
        ),
    ],
)
def test_a_file_that_is_no_capture_gets_one_line_exit_2_and_nothing_written(tmp_path, name, content, says):
    db_path = str(tmp_path / "t.db")
    good = tmp_path / "good.har"
    good.write_text(json.dumps({"log": {"entries": [HAR_ENTRY]}}))
    before = counts(db_path)
    path = tmp_path / name
    path.write_bytes(content)
    result = CliRunner().invoke(cli, ["import", str(good), str(path), "--db", db_path])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and name in lines[0]
    assert counts(db_path) == before


def test_transcripts_and_captures_do_not_mix(tmp_path):
    db_path = str(tmp_path / "t.db")
    har = tmp_path / "a.har"
    har.write_text(json.dumps({"log": {"entries": [HAR_ENTRY]}}))
    chat = tmp_path / "chat.transcript"
    chat.write_text(json.dumps([{"type": "message", "text": "hi", "from": {"id": "u", "role": "user"}}]))
    before = counts(db_path)
    result = CliRunner().invoke(cli, ["import", str(har), str(chat), "--db", db_path])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert counts(db_path) == before
    # A lone foreign HAR with a non-Bot-Framework call still imports (an `other` exchange).
    result = CliRunner().invoke(cli, ["import", str(har), "--db", db_path, "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["exchanges"] == 1
