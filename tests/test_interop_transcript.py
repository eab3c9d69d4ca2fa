"""`botproxy import` / `export` of .transcript files: shapes, producer quirks, errors, the round trip."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from botproxy import store
from botproxy.checks import check_session
from botproxy.cli import cli
from botproxy.demo import record_demo
from botproxy.errors import StoreError
from botproxy.interop import export_session, import_files
from botproxy.interop.transcript import PLACEHOLDER_SERVICE_URL
from botproxy.replay.plan import ReplayOptions

USER = {"id": "user1", "name": "User", "role": "user"}
BOT = {"id": "bot1", "name": "Bot", "role": "bot"}


def conversation(cid="conv1", roles=True):
    user = USER if roles else {"id": "user1", "name": "User"}
    bot = BOT if roles else {"id": "bot1", "name": "Bot"}
    base = {"channelId": "emulator", "conversation": {"id": cid}, "serviceUrl": "https://connector.example/"}
    return [
        {
            **base,
            "type": "message",
            "id": "u1",
            "text": "hi",
            "from": USER,
            "recipient": BOT,
            "timestamp": "2024-01-01T10:00:00Z",
        },
        {
            **base,
            "type": "message",
            "id": "b1",
            "text": "hello",
            "from": bot,
            "recipient": user,
            "replyToId": "u1",
            "timestamp": "2024-01-01T10:00:01Z",
        },
        {**base, "type": "message", "id": "u2", "text": "again", "from": user, "recipient": bot},
        {**base, "type": "message", "id": "b2", "text": "once more", "from": bot, "recipient": user},
    ]


def rows(db_path, name):
    db = store.open_db(db_path)
    session = store.resolve_session(db, name)
    return session, list(store.iter_activities(db, session["id"]))


def summary_of(activities):
    """(direction, route, type, text, index of its turn's inbound) in order."""
    index = {a["seq"]: i for i, a in enumerate(activities)}
    return [(a["direction"], a["route"], a["type"], a["text"], index.get(a["turn_seq"])) for a in activities]


EXPECTED = [
    ("to_bot", "bot_messages", "message", "hi", None),
    ("from_bot", "reply_to_activity", "message", "hello", 0),
    ("to_bot", "bot_messages", "message", "again", None),
    ("from_bot", "send_to_conversation", "message", "once more", 2),
]


@pytest.mark.parametrize("shape", ["array", "transcript", "activities", "bom"])
def test_each_shape_imports(tmp_path, shape):
    activities = conversation()
    document = {"array": activities, "bom": activities}.get(shape) or {shape: activities}
    path = tmp_path / "chat.transcript"
    data = json.dumps(document).encode()
    path.write_bytes(b"\xef\xbb\xbf" + data if shape == "bom" else data)
    summary = import_files(str(tmp_path / "t.db"), [path], "imported")
    assert summary["activities"] == 4 and summary["conversations"] == 1
    session, acts = rows(tmp_path / "t.db", "imported")
    assert session["source"] == "import" and summary_of(acts) == EXPECTED
    assert acts[1]["activity_id"] == "b1" and "id" not in acts[1]["body"]  # the connector's id, as on the wire


def test_several_files_and_quirks(tmp_path):
    """Roles missing (ids tell), no serviceUrl (placeholder), an update and a delete tombstone."""
    first = conversation("c1")
    second = conversation("c2", roles=False)
    for a in second:
        a.pop("serviceUrl")
    second[0]["from"] = USER  # one activity with a role is enough to learn the ids
    second += [
        {"type": "messageUpdate", "id": "b2", "text": "changed", "from": {"id": "bot1"}, "conversation": {"id": "c2"}},
        {"type": "messageDelete", "id": "b1", "from": {"id": "bot1"}, "conversation": {"id": "c2"}},
        # a tombstone left in place of a message the file no longer holds
        {"type": "messageDelete", "id": "gone", "from": {"id": "deleted", "role": "bot"}, "conversation": {"id": "c2"}},
    ]
    (tmp_path / "a.transcript").write_text(json.dumps(first))
    (tmp_path / "b.transcript").write_text(json.dumps({"transcript": second}))
    import_files(str(tmp_path / "t.db"), [tmp_path / "a.transcript", tmp_path / "b.transcript"], "both")
    session, acts = rows(tmp_path / "t.db", "both")
    assert PLACEHOLDER_SERVICE_URL in session["notes"]
    c2 = [a for a in acts if a["conversation_id"] == "c2"]
    assert summary_of([a for a in acts if a["conversation_id"] == "c1"]) == EXPECTED
    assert [(a["direction"], a["route"], a["text"]) for a in c2] == [
        ("to_bot", "bot_messages", "hi"),
        ("from_bot", "reply_to_activity", "hello"),
        ("to_bot", "bot_messages", "again"),
        ("from_bot", "send_to_conversation", "once more"),
        ("from_bot", "update_activity", "changed"),
        ("from_bot", "delete_activity", None),
        ("from_bot", "send_to_conversation", None),
        ("from_bot", "delete_activity", None),
    ]
    assert c2[0]["service_url"] == PLACEHOLDER_SERVICE_URL
    assert c2[4]["target_seq"] == c2[3]["seq"] and c2[5]["target_seq"] == c2[1]["seq"]
    assert c2[7]["target_seq"] == c2[6]["seq"]


@pytest.mark.slow
@pytest.mark.parametrize("content", [b"not json at all", b'{"hello": "world"}', b"[1, 2, 3]", b'[{"text": "no type"}]'])
def test_not_a_transcript_is_one_line_exit_2_and_nothing_written(tmp_path, content):
    db_path = tmp_path / "t.db"
    good = tmp_path / "good.transcript"
    good.write_text(json.dumps(conversation()))
    import_files(str(db_path), [good], "first")
    counts = _counts(db_path)
    bad = tmp_path / "bad.transcript"
    bad.write_bytes(content)
    result = subprocess.run(
        [sys.executable, "-m", "botproxy", "import", str(good), str(bad), "--db", str(db_path), "--session", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "bad.transcript" in result.stderr, result.stderr
    assert _counts(db_path) == counts


def test_a_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    db_path = tmp_path / "t.db"
    path = tmp_path / "c.transcript"
    path.write_text(json.dumps(conversation()))
    import_files(str(db_path), [path], "first")
    counts = _counts(db_path)

    def broken(db, rows):
        raise RuntimeError("disk on fire")

    # Every row fails (as a row SQLite cannot take would): the import keeps none of them, not even the session.
    monkeypatch.setattr(store.writing, "insert_rows", broken)
    with pytest.raises(StoreError, match="could not be stored; nothing was imported"):
        import_files(str(db_path), [path], "second")
    assert _counts(db_path) == counts


def test_an_existing_session_name_is_refused(tmp_path):
    path = tmp_path / "c.transcript"
    path.write_text(json.dumps(conversation()))
    import_files(str(tmp_path / "t.db"), [path], "same")
    result = CliRunner().invoke(cli, ["import", str(path), "--db", str(tmp_path / "t.db"), "--session", "same"])
    assert result.exit_code == 2 and "already exists" in result.output


def _counts(db_path):
    db = store.open_db(db_path)
    return {t: db[t].count for t in ("sessions", "exchanges", "activities", "findings")}


@pytest.mark.slow
async def test_round_trip_recorded_export_import_same_activities_turns_findings(tmp_path):
    db_path = str(tmp_path / "rt.db")
    await record_demo(db_path, "demo")
    out = tmp_path / "out"
    written = export_session(db_path, "demo", "transcript", str(out) + "/")
    assert len(written) == 1
    document = json.loads(open(written[0]).read())
    assert isinstance(document, list) and all(a.get("from", {}).get("role") in ("user", "bot") for a in document)
    import_files(db_path, written, "back")
    db = store.open_db(db_path)
    recorded, imported = rows(db_path, "demo")[1], rows(db_path, "back")[1]
    assert summary_of(imported) == summary_of(recorded)
    assert [a["body"] for a in imported if a["direction"] == "to_bot"] == [
        a["body"] for a in recorded if a["direction"] == "to_bot"
    ]

    def codes(name):
        sid = store.resolve_session(db, name)["id"]
        return sorted(f.rule for f in check_session(db, sid)), sorted(
            r["rule"] for r in db.query("select rule from findings where session_id = ?", [sid])
        )

    assert codes("back") == codes("demo")
    # The CLI: one conversation to standard output.
    result = CliRunner().invoke(cli, ["export", "back", "--db", db_path])
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["type"] == "conversationUpdate"


@pytest.mark.slow
async def test_record_export_import_replay_against_the_same_build_is_all_same(tmp_path, sample_bot):
    # Issue 11 (8): export adds roles, an invokeResponse record carried no conversation; (9) an
    # import's unknown statuses are not failed calls.
    from botproxy.present.report import session_view
    from botproxy.replay.driver import replay_session

    db_path = str(tmp_path / "rt.db")
    await record_demo(db_path, "demo", confdir=str(tmp_path / "mitm"))
    written = export_session(db_path, "demo", "transcript", str(tmp_path / "out") + "/")
    document = json.loads(open(written[0]).read())
    assert all(a.get("conversation", {}).get("id") for a in document)  # invokeResponse records too
    import_files(db_path, written, "back")
    db = store.open_db(db_path)
    back = store.resolve_session(db, "back")
    assert {a["conversation_id"] for a in store.iter_activities(db, back["id"])} == {
        a["conversation_id"] for a in store.iter_activities(db, store.resolve_session(db, "demo")["id"])}
    view = session_view(db, back)
    assert view["summary"]["failed"] == 0 and view["summary"]["turns"] == 10
    assert sum(c["turn_count"] for c in view["conversations"]) == view["summary"]["turns"]

    result = await replay_session(db_path, "back", sample_bot.url, options=ReplayOptions(quiet_ms=50))
    assert result.summary["turns"] == 10
    assert {t.status for t in result.turns} == {"same"}, [
        (t.turn.text, [d.to_dict() for d in t.differences if not d.noise], t.new_findings) for t in result.turns
        if t.status != "same"]
    assert not result.regressed


def test_a_lone_surrogate_in_a_transcript_imports_and_is_kept(tmp_path):
    """JSON may hold half an emoji (`\\ud83d`), UTF-8 cannot: the import said "internal error" here."""
    path = tmp_path / "half.transcript"
    path.write_text(json.dumps(conversation()).replace('"hi"', '"hi \\ud83d"'))
    db_path = str(tmp_path / "t.db")
    result = CliRunner().invoke(cli, ["import", str(path), "--session", "half", "--db", db_path])
    assert result.exit_code == 0, result.output
    _, activities = rows(db_path, "half")
    assert len(activities) == 4 and activities[0]["text"] == "hi \\ud83d"  # shown escaped; the exact text in odd_text
    [(odd,)] = store.open_db(db_path).execute("select odd_text from activities where seq = 1").fetchall()
    assert json.loads(odd)["text"] == "hi \ud83d"
