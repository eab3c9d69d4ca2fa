"""The engine as a whole: SDK-shaped traffic stays quiet; configuration; the rule registry; the live
adapter."""

from __future__ import annotations

import re

import pytest
from checkkit import Wire, sent_id

from botproxy.checks import NOT_CHECKED, RULES, SEVERITIES, CheckConfig, Engine, load_config, rules_markdown
from botproxy.errors import UsageError

# -- a correct Python SDK bot produces no errors and no warnings ----------------------------------------


def sdk_session(channel: str = "msteams") -> Wire:
    """What botbuilder-python 4.17 sends for a typical session (protocol.md S-1, S-2, S-8)."""
    w = Wire(channel=channel)
    reply_to = channel not in ("directline", "webchat")  # S-2: no replyToId on Direct Line / Web Chat

    def reply(inbound, text, **fields):
        if not reply_to:
            assert inbound.activity is not None
            return w.send("c1", w.reply_body(inbound.activity, text, replyToId=None, **fields))
        return w.reply(inbound, text, **fields)

    update = w.inbound(
        None, type="conversationUpdate", membersAdded=[{"id": "u1", "name": "Ada"}, {"id": "b1"}], locale=None
    )
    assert update.activity is not None
    # conversationUpdate turns never carry replyToId: SendToConversation.
    w.done(w.send("c1", w.reply_body(update.activity, "Welcome, Ada!", replyToId=None, locale=None)))
    w.done(update)
    # create_reply: timestamp, empty arrays, role copied from the channel's accounts.
    hello = w.inbound("hello", recipient={"id": "b1", "name": "Bot", "role": "bot"})
    w.done(
        reply(
            hello,
            "You said: hello",
            timestamp="2024-05-01T10:00:00.100000Z",
            attachments=[],
            entities=[],
            **{"from": {"id": "b1", "name": "Bot", "role": "bot"}},
        )
    )
    w.done(hello)
    # typing then text; two in one send_activities call (sequential); update; delete.
    typing = w.inbound("typing")
    w.done(reply(typing, None, type="typing"))
    w.done(reply(typing, "done typing"))
    w.done(typing)
    two = w.inbound("two")
    w.done(reply(two, "first"))
    w.done(reply(two, "second"))
    w.done(two)
    edit = w.inbound("update")
    sent = sent_id(w.done(reply(edit, "original")))
    assert edit.activity is not None
    w.done(
        w.update(
            "c1",
            sent,
            w.reply_body(
                edit.activity, "updated", id=sent, replyToId=edit.activity["id"] if reply_to else None
            ),
        )
    )
    gone = sent_id(w.done(reply(edit, "to be deleted")))
    w.done(w.delete("c1", gone))
    w.done(edit)
    # proactive: continue_conversation's synthetic uuid1 replyToId, no locale; may race the turn's 201.
    proactive = w.inbound("proactive")
    w.done(reply(proactive, "will send proactively"))
    assert proactive.activity is not None
    body = (
        w.proactive_body(proactive.activity)
        if reply_to
        else w.reply_body(proactive.activity, "later", replyToId=None, locale=None)
    )
    late = (
        w.reply(proactive, body["text"], **{k: body.get(k) for k in ("replyToId", "locale")})
        if reply_to
        else w.send("c1", body)
    )
    w.done(proactive)
    w.done(late)
    # the user clicks a card sent before the recording started: the SDK updates the card by replyToId.
    click = w.inbound("clicked", replyToId="card-from-yesterday")
    w.done(w.update("c1", "card-from-yesterday"))
    w.done(click)
    # invoke answered in the body; expectReplies answered in the body.
    invoke = w.inbound(None, type="invoke", name="adaptiveCard/action", value={"x": 1})
    w.done(invoke, 200, {"statusCode": 200})
    expect = w.inbound("exp", deliveryMode="expectReplies")
    assert expect.activity is not None
    w.done(expect, 200, {"activities": [w.reply_body(expect.activity, "You said: exp")]})
    # the SDK's endOfConversation at the end of a dialog, then the user comes back.
    bye = w.inbound("bye")
    w.done(reply(bye, "Goodbye"))
    w.done(reply(bye, None, type="endOfConversation"))
    w.done(bye)
    again = w.inbound("hello again")
    w.done(reply(again, "You said: hello again"))
    w.done(again)
    return w


@pytest.mark.parametrize("channel", ["msteams", "emulator", "directline", "webchat"])
def test_sdk_shaped_traffic_gets_no_errors_or_warnings(channel):
    w = sdk_session(channel)
    assert w.loud() == [], [f.to_dict() for f in w.loud()]


def test_sdk_proactive_id_is_reported_as_info_and_any_other_unknown_id_as_warning():
    w = sdk_session("msteams")
    [proactive] = w.of("BP-A04")
    assert proactive.severity == "info" and proactive.details["sdk_continuation_id"] is True
    # The same uuid on Direct Line is not the Python SDK (it never sets replyToId there): a warning.
    dl = Wire(channel="directline")
    inbound = dl.inbound("hi")
    assert inbound.activity is not None
    dl.done(dl.reply(inbound, "later", replyToId="5e358b10-e570-11f1-91f1-02fc00000001"))
    assert [(f.rule, f.severity) for f in dl.findings] == [("BP-A04", "warning")]


def test_style_findings_come_once_per_conversation():
    w = Wire()
    for conv in ("c1", "c1", "c2"):
        inbound = w.inbound("hi", conv=conv)
        w.done(w.reply(inbound, "ok", timestamp="2024-05-01T10:00:00Z"))
        w.done(inbound)
    assert [f.conversation_id for f in w.of("BP-A15")] == ["c1", "c2"]


def test_missing_from_is_a_warning_and_a_wrong_one_an_error():
    w = Wire()
    inbound = w.inbound("hi")
    w.done(w.reply(inbound, "a", **{"from": None}))
    w.done(w.reply(inbound, "b", **{"from": {"id": "someone"}}))
    assert [f.severity for f in w.of("BP-A07")] == ["warning", "error"]


def test_unknown_type_is_a_warning_missing_type_an_error():
    w = Wire()
    inbound = w.inbound("hi")
    w.done(w.reply(inbound, "a", type="delay"))
    w.done(w.reply(inbound, "b", type=None))
    assert [f.severity for f in w.of("BP-A18")] == ["warning", "error"]


def test_a_call_within_a_turn_may_use_that_turns_service_url():
    # Teams may deliver one conversation's activities through two regional serviceUrls (botbuilder-js#3280);
    # the SDK answers each turn through its own.
    w = Wire()
    old = w.inbound("first")
    new = w.inbound("second", service_url="https://smba.trafficmanager.net/emea/")
    w.done(w.reply(old, "to first"))
    w.done(w.reply(new, "to second"))
    w.done(old)
    w.done(new)
    late = w.reply(old, "after both turns", service_url="https://smba.trafficmanager.net/amer/")
    w.done(late)
    assert [(f.rule, f.seq) for f in w.loud()] == [("BP-A11", late.seq)]


# -- configuration ----------------------------------------------------------------------------------


def test_disabled_rules_are_silent_and_severity_overrides_apply_to_every_finding():
    config = CheckConfig(disabled={"BP-O04"}, severity={"BP-A07": "info", "BP-O01": "error"})
    w = Wire(config=config)
    inbound = w.inbound("hi")
    a, b = w.reply(inbound, "a", **{"from": None}), w.reply(inbound, "b", **{"from": {"id": "x"}})
    w.done(a)
    w.done(b)
    w.done(inbound)
    w.done(w.reply(inbound, "late"))
    assert [(f.rule, f.severity) for f in w.findings] == [
        ("BP-A07", "info"),
        ("BP-A07", "info"),
        ("BP-O01", "error"),
    ]


@pytest.mark.parametrize(
    "config, message",
    [
        (CheckConfig(disabled={"BP-A99"}), "unknown rule 'BP-A99'"),
        (CheckConfig(disabled={"bp-a1"}), "did you mean BP-A01"),
        (
            CheckConfig(severity={"BP-A01": "fatal"}),
            "severity 'fatal' for BP-A01 must be one of error, warning, info",
        ),
    ],
)
def test_engine_refuses_bad_configuration_in_one_line(config, message):
    with pytest.raises(UsageError) as caught:
        Engine(config)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_load_config_from_pyproject(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.botproxy.checks]\n'
        'disable = ["BP-A15"]\nseverity = {"BP-O01" = "error"}\n'
    )
    nested = tmp_path / "src" / "bot"
    nested.mkdir(parents=True)
    config = load_config(nested)
    assert config.disabled == {"BP-A15"} and config.severity == {"BP-O01": "error"}
    assert str(tmp_path / "pyproject.toml") in config.source


def test_botproxy_toml_wins_over_pyproject_in_the_same_folder(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.botproxy.checks]\ndisable = ["BP-A15"]\n')
    (tmp_path / "botproxy.toml").write_text(
        '[checks]\ndisable = ["BP-A19"]\n\n[checks.severity]\n"BP-A17" = "warning"\n'
    )
    config = load_config(tmp_path)
    assert config.disabled == {"BP-A19"} and config.severity == {"BP-A17": "warning"}


def test_pyproject_without_our_table_is_skipped_and_no_file_means_defaults(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.botproxy.checks]\ndisable = ["BP-A15"]\n')
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "pyproject.toml").write_text('[project]\nname = "inner"\n')
    assert load_config(inner).disabled == {"BP-A15"}
    assert load_config(tmp_path / "inner").source.endswith("[tool.botproxy.checks]")


@pytest.mark.parametrize(
    "text, message",
    [
        ('[checks]\ndisable = ["BP-Z01"]\n', "unknown rule 'BP-Z01'"),
        ('[checks]\nseverity = {"BP-A01" = "loud"}\n', "severity 'loud' for BP-A01"),
        ('[checks]\ndisable = "BP-A01"\n', "disable must be a list"),
        ('[checks]\nignore = ["BP-A01"]\n', "unknown key(s) ignore"),
        ("[checks\n", "cannot read"),
    ],
)
def test_bad_config_files_are_usage_errors_in_one_line(tmp_path, text, message):
    (tmp_path / "botproxy.toml").write_text(text)
    with pytest.raises(UsageError) as caught:
        load_config(tmp_path)
    assert message in str(caught.value) and "botproxy.toml" in str(caught.value)
    assert "\n" not in str(caught.value)


# -- the registry --------------------------------------------------------------------------------------


def test_rules_are_complete_data_with_a_source_and_a_one_line_fix():
    assert {c for c in RULES if c.startswith("BP-A")} == {f"BP-A{n:02d}" for n in range(1, 32)}
    assert {c for c in RULES if c.startswith("BP-O")} == {f"BP-O{n:02d}" for n in range(1, 14)}
    assert {c for c in RULES if c.startswith("BP-I")} >= {f"BP-I{n:02d}" for n in range(6, 11)}
    assert set(NOT_CHECKED).isdisjoint(RULES)
    names = [r.name for r in RULES.values()]
    assert len(set(names)) == len(names)
    for rule in RULES.values():
        assert rule.severity in SEVERITIES
        assert "Source:" in rule.explanation and rule.source, rule.code
        assert "\n" not in rule.fix and rule.fix.endswith("."), rule.code
        assert re.fullmatch(r"BP-[AIOSM]\d\d", rule.code)


def test_rules_markdown_has_one_row_per_rule_in_code_order():
    table = rules_markdown()
    lines = table.strip().splitlines()
    assert lines[0] == "| code | name | severity | what it catches | source |"
    rows = lines[2:]
    assert [row.split("|")[1].strip().strip("`") for row in rows] == sorted(RULES)
    assert all(row.count(" | ") == 4 for row in rows)
    assert (
        "| `BP-A04` | `dangling-replyToId` | warning (info when the id is the SDK's synthetic continuation "
        "UUID) |" in table
    )


# -- the live adapter ------------------------------------------------------------------------------------


def test_live_checks_store_rows_and_put_findings_under_their_activity():
    w = Wire(session_id=7)
    inbound = w.inbound("hi")
    bad = w.reply(inbound, "ok", channelId="slack")
    w.done(bad)
    w.done(inbound)
    [row] = [r for t, r in w.rows if t == "findings"]
    assert row["session_id"] == 7 and row["rule"] == "BP-A13" and row["seq"] == bad.seq
    assert isinstance(row["details"], str)
    assert w.checks.counts == {"warning": 1}
    stored = [r for t, r in w.rows if t == "activities" and r["seq"] == bad.seq]
    assert stored and "_findings" not in stored[0]  # the recorder strips it before storing


class ConsoleSpy:
    """An observer after LiveChecks, as the console is: what it would print under each activity."""

    def __init__(self) -> None:
        self.shown: dict[int, list[str]] = {}

    def activity_seen(self, activity):
        return []

    def exchange_done(self, exchange, activities):
        for activity in activities:
            self.shown[activity["seq"]] = [f["message"] for f in activity.get("_findings", ())]
        return []


def test_findings_decided_later_are_shown_under_the_activity_that_revealed_them():
    w = Wire()
    spy = ConsoleSpy()
    w.recorder.observers.append(spy)
    first = w.inbound("hi")
    early = w.reply(first, "answer", replyToId="later-1")
    w.done(early)
    w.done(first)
    parent = w.done(w.inbound("later", id="later-1"))
    [o03] = w.of("BP-O03")
    assert o03.seq == early.seq  # stored against the reply it is about ...
    assert spy.shown[early.seq] == ["replyToId 'later-1' names no activity of this conversation"]
    assert parent.seq is not None  # ... and shown under the inbound activity that revealed it
    assert spy.shown[parent.seq] == [f"#{early.seq}: {o03.message}"]


def test_a_failing_rule_is_logged_and_counted_not_raised(caplog):
    engine = Engine()
    broken = {
        "seq": 1,
        "direction": "from_bot",
        "source": "request",
        "route": "send_to_conversation",
        "body": {},
    }
    assert engine.activity_seen(broken) == []
    assert engine.failures == 1
    assert "botproxy checks failed" in caplog.text
    with pytest.raises(KeyError):
        Engine(strict=True).activity_seen(broken)
