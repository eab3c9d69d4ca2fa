"""`botproxy import` of Agents Playground events recordings, in the shape the Playground 0.2.28 writes
(pretty-printed objects, each followed by a `---` line, in the order the exchanges completed; the
suite's test_playground.py imports one the real Playground wrote). Here: the turn model rebuilt from
that order, an invoke's answer, the other layouts (JSON lines, one object), bad files."""

import json

import pytest
from click.testing import CliRunner

from botproxy import store
from botproxy.cli import cli
from botproxy.interop import playground as pg

PG = "http://localhost:56150/_connector"
CONV = "c0ffee00-1111-2222-3333-444455556666"
USER = {"id": "user-id-0", "aadObjectId": "00000000-0000-0000-0000-0000000000020"}
BOT = {"id": "00000000-0000-0000-0000-00000000000011", "name": "Test Bot"}


def to_bot(at, activity, status=201, answer=""):
    body = {"id": f"in-{at}", "serviceUrl": PG, "channelId": "emulator", "from": USER, "recipient": BOT,
            "conversation": {"id": CONV, "conversationType": "personal"}, **activity}
    return {"logId": f"log-{at}", "timestamp": at, "conversationId": CONV, "direction": pg.PLAYGROUND_TO_BOT,
            "activityName": activity["type"], "messageId": body["id"],
            "request": {"headers": {"Content-Type": "application/json", "x-ms-agents-playground": "true",
                                    "User-Agent": "axios/1.12.2"},
                        "body": body, "url": "http://127.0.0.1:3978/api/messages", "method": "POST"},
            "response": {"statusCode": status, "body": answer}, "displayText": activity.get("text", "")}


def from_bot(at, text, reply_to=None, method="POST", answer_id=None):
    path = f"/_connector/v3/conversations/{CONV}/activities" + (f"/{reply_to}" if reply_to else "")
    body = {"type": "message", "text": text, "serviceUrl": PG, "channelId": "emulator", "from": BOT,
            "recipient": USER, "conversation": {"id": CONV}, **({"replyToId": reply_to} if reply_to else {})}
    return {"logId": f"log-{at}", "timestamp": at, "conversationId": CONV, "direction": pg.PLAYGROUND_FROM_BOT,
            "activityName": "message", "messageId": answer_id or str(at),
            "request": {"headers": {"host": "localhost:56150", "content-type": "application/json; charset=utf-8",
                                    "authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJib3QifQ.c2lnbmF0dXJl"},
                        "body": body, "url": path, "method": method},
            "response": {"statusCode": 201, "body": {"id": answer_id or str(at)}}, "displayText": text}


def recording_text(events):
    """As the Playground writes it: JSON.stringify(item, null, 2) + "\\n---\\n" per exchange."""
    return "".join(json.dumps(e, indent=2) + "\n---\n" for e in events)


# File order is completion order: each reply is written before the inbound exchange it was made in.
EVENTS = [
    from_bot(1000_010, "Welcome, user-id-0!"),
    to_bot(1000_000, {"type": "conversationUpdate", "membersAdded": [USER, BOT]}),
    from_bot(1000_120, "You said: hello", reply_to="in-1000100"),
    to_bot(1000_100, {"type": "message", "text": "hello"}),
    to_bot(1000_200, {"type": "invoke", "name": "test/echo", "value": {"n": 7}}, 200, {"echo": {"n": 7}}),
]


def imported(tmp_path, text, *args):
    path = tmp_path / "events_recording_2026-12-03T00-07-53.log"
    path.write_text(text)
    db_path = str(tmp_path / "t.db")
    result = CliRunner().invoke(cli, ["import", str(path), "--db", db_path, "--session", "pg", *args])
    return result, db_path


def rows(db_path, name="pg"):
    db = store.open_db(db_path)
    return list(store.iter_activities(db, store.resolve_session(db, name)["id"]))


def test_recording_becomes_turns_as_recorded_live(tmp_path):
    result, db_path = imported(tmp_path, recording_text(EVENTS), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["exchanges"] == 5 and summary["activities"] == 6
    acts = rows(db_path)
    inbound = {a["type"]: a for a in acts if a["direction"] == "to_bot"}
    assert [(a["direction"], a["type"], a["text"], a["route"]) for a in acts] == [
        ("to_bot", "conversationUpdate", None, "bot_messages"),
        ("from_bot", "message", "Welcome, user-id-0!", "send_to_conversation"),
        ("to_bot", "message", "hello", "bot_messages"),
        ("from_bot", "message", "You said: hello", "reply_to_activity"),
        ("to_bot", "invoke", None, "bot_messages"),
        ("from_bot", "invokeResponse", None, "invoke_response"),
    ]
    welcome, reply, answer = (a for a in acts if a["direction"] == "from_bot")
    # The welcome names no activity: it joins its turn by being sent while the conversationUpdate was open.
    assert welcome["turn_seq"] == inbound["conversationUpdate"]["seq"]
    assert reply["turn_seq"] == inbound["message"]["seq"] and reply["activity_id"] == "1000120"
    assert answer["body"]["value"] == {"status": 200, "body": {"echo": {"n": 7}}}
    assert {a["service_url"] for a in acts if a["source"] == "request"} == {PG, PG + "/"}
    db = store.open_db(db_path)
    session = store.resolve_session(db, "pg")
    assert session["capture_mode"] == "playground" and session["source"] == "import"
    exchanges = list(store.iter_exchanges(db, session["id"]))
    assert "eyJzdWIiOiJib3QifQ" not in json.dumps(exchanges)  # the bot's bearer token is redacted
    findings = [f["rule"] for f in db["findings"].rows_where("session_id = ?", [session["id"]])
                if f["severity"] in ("error", "warning")]
    assert findings == []


@pytest.mark.parametrize("layout", ["json-lines", "one-object"])
def test_other_layouts_read_alike(tmp_path, layout):
    events = EVENTS[:2] if layout == "json-lines" else [EVENTS[1]]
    text = "\n".join(json.dumps(e) for e in events) + "\n" if layout == "json-lines" else json.dumps(events[0])
    result, db_path = imported(tmp_path, text)
    assert result.exit_code == 0, result.output
    assert sorted(a["type"] for a in rows(db_path)) == sorted(e["activityName"] for e in events)


@pytest.mark.parametrize(
    "text, says",
    [
        (recording_text(EVENTS)[:-200], "an Agents Playground recording, but event 5 is not JSON"),
        (recording_text([{**EVENTS[0], "direction": "Somebody -> Somebody else"}]), "unknown direction"),
        (recording_text(EVENTS[:1]) + '{"logId": "x"}\n---\n', "event 2 is not a Playground event"),
    ],
)
def test_a_damaged_recording_gets_one_line_exit_2_and_nothing_written(tmp_path, text, says):
    result, db_path = imported(tmp_path, text)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "events_recording_" in lines[0]
    db = store.open_db(db_path, create=True)
    assert db["sessions"].count == 0
