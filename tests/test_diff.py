"""diff.py on plain dicts: alignment kinds, deepdiff paths, the volatile profile, ignore paths, noise."""

from __future__ import annotations

import pytest

from botproxy.errors import UsageError
from botproxy.replay.diff import (
    ABSENT,
    GENERATED,
    Difference,
    align,
    comparable,
    describe,
    diff_turn,
    noise_label,
    noise_paths,
    parse_ignore,
    prune,
)


def msg(text, **fields):
    return {"type": "message", "text": text, "@route": "reply_to_activity", **fields}


def card(title, **fields):
    content = {"title": title, "buttons": [{"type": "imBack", "value": "hello"}]}
    return {"type": "message", "@route": "reply_to_activity",
            "attachments": [{"contentType": "application/vnd.microsoft.card.hero", "content": content}], **fields}


def kinds(differences):
    return [(d.kind, d.path) for d in differences]


def test_identical_turns_have_no_differences():
    turn = [msg("a"), card("c"), {"type": "typing", "@route": "reply_to_activity"}]
    assert diff_turn(turn, [dict(a) for a in turn]) == []


def test_changed_text_is_one_changed_field_with_both_values():
    [d] = diff_turn([msg("You said: weather")], [msg("You said: weather!")])
    assert d == Difference("changed", "root['text']", "You said: weather", "You said: weather!", 0, 0)


def test_changed_card_points_into_the_card():
    assert kinds(diff_turn([msg("x"), card("Sample card")], [msg("x"), card("Sample card (build 2)")])) == [
        ("changed", "root['attachments'][0]['content']['title']")
    ]


def test_missing_and_extra_replies_carry_their_positions_and_a_summary():
    missing = diff_turn([{"type": "typing", "@route": "reply_to_activity"}, msg("done typing")], [msg("done typing")])
    assert kinds(missing) == [("missing", "[0]")]
    assert missing[0].recorded == {"type": "typing", "route": "reply_to_activity"} and missing[0].replayed is None
    extra = diff_turn([msg("Welcome, Ada!")], [msg("Welcome, Ada!"), msg("Type help")])
    assert kinds(extra) == [("extra", "[1]")]
    assert extra[0].replayed == {"type": "message", "route": "reply_to_activity", "text": "Type help"}


def test_a_swapped_pair_is_reordered_not_two_changes():
    [d] = diff_turn([msg("first"), msg("second")], [msg("second"), msg("first")])
    assert d.kind == "reordered" and (d.recorded_index, d.replayed_index) == (1, 0)
    assert d.recorded["text"] == "second"


def test_a_moved_reply_among_others():
    ops = align([msg("a"), msg("b"), msg("c")], [msg("c"), msg("a"), msg("b")])
    assert ("reordered", 2, 0) in ops and ("same", 0, 1) in ops and ("same", 1, 2) in ops


def test_text_that_became_a_card_is_the_same_reply_changed():
    differences = diff_turn([msg("hi")], [card("hi")])
    assert {d.kind for d in differences} == {"changed"}
    assert {d.path for d in differences} == {"root['text']", "root['attachments']"}
    assert next(d for d in differences if d.path == "root['text']").replayed == ABSENT


def test_a_different_kind_of_activity_is_missing_plus_extra():
    differences = diff_turn([{"type": "typing", "@route": "reply_to_activity"}], [msg("x")])
    assert kinds(differences) == [("missing", "[0]"), ("extra", "[0]")]


def test_extras_sort_after_the_pair_before_them():
    differences = diff_turn([msg("a"), msg("c")], [msg("a"), {"type": "typing", "@route": "r"}, msg("c!")])
    assert kinds(differences) == [("extra", "[1]"), ("changed", "root['text']")]


def test_route_changes_show_as_a_field():
    [d] = diff_turn([msg("x")], [msg("x", **{"@route": "send_to_conversation"})])
    assert (d.path, d.recorded, d.replayed) == ("root['@route']", "reply_to_activity", "send_to_conversation")


def test_volatile_fields_never_count():
    rec = msg("x", timestamp="2024-01-01T00:00:00Z", localTimestamp="x", serviceUrl="https://smba/amer/")
    rep = msg("x", timestamp="2025-02-02T00:00:00Z", serviceUrl="http://127.0.0.1:5/")
    assert diff_turn([rec], [rep]) == []
    assert kinds(diff_turn([rec], [rep], ignore=parse_ignore(volatile=False))) == [
        ("changed", "root['localTimestamp']"), ("changed", "root['serviceUrl']"), ("changed", "root['timestamp']")]


def test_ignore_paths_exact_cover_their_subtree_regexes_search():
    rec = msg("x", channelData={"a": 1}, value={"nonce": "1", "n": 1})
    rep = msg("x", channelData={"a": 2, "b": 3}, value={"nonce": "2", "n": 2})
    assert kinds(diff_turn([rec], [rep], ignore=parse_ignore(["root['channelData']", r"\['nonce'\]"]))) == [
        ("changed", "root['value']['n']")]
    assert parse_ignore(["root['channelData']"]).user == ("root['channelData']",)


def test_ignored_list_items_keep_the_positions_of_the_others():
    value = {"attachments": [{"id": 1}, {"id": 2}]}
    assert prune(value, parse_ignore([r"^root\['attachments'\]\[0\]$"])) == {"attachments": ["<ignored>", {"id": 2}]}


def test_a_bad_ignore_is_a_usage_error():
    with pytest.raises(UsageError, match="neither a deepdiff path"):
        parse_ignore(["root['x"])


def test_noise_marks_differences_at_or_below_its_paths():
    rec = [msg("x", value={"nonce": "a", "deep": {"n": 1}}), msg("y")]
    rep = [msg("x!", value={"nonce": "b", "deep": {"n": 2}})]
    differences = diff_turn(rec, rep, noise={"root['value']['nonce']", "root['value']['deep']", "<missing>"})
    assert {(d.path, d.noise) for d in differences} == {
        ("root['text']", False), ("root['value']['nonce']", True), ("root['value']['deep']['n']", True),
        ("[1]", True)}
    indexed = diff_turn(rec, rep, noise={"[0]root['value']", "<missing>[1]"})
    assert {(d.path, d.noise) for d in indexed} == {
        ("root['text']", False), ("root['value']['nonce']", True), ("root['value']['deep']['n']", True),
        ("[1]", True)}
    assert not any(d.noise for d in diff_turn(rec, rep, noise={"[1]root['value']", "<missing>[0]"}))


def test_noise_paths_learns_from_the_baseline_turn_by_turn():
    recorded = [[msg("a", value={"nonce": "1"})], [msg("b"), msg("c")]]
    baseline = [[msg("a", value={"nonce": "2"})], [msg("b")]]
    assert noise_paths(recorded, baseline) == {"[0]root['value']['nonce']", "<missing>[1]"}
    with pytest.raises(ValueError):
        noise_paths(recorded, baseline[:1])


def test_noise_is_learnt_per_activity_so_a_random_greeting_hides_no_other_change():
    # Reproduces issue 11 (7): the greeting's text is random, the next activity's text a real change.
    recorded = [msg("Hello, Ada!"), msg("Pick a number")]
    baseline = [msg("Hello, Bob!"), msg("Pick a number")]
    candidate = [msg("Hello, Cy!"), msg("Pick a NUMBER")]
    noise = noise_paths([recorded], [baseline])
    assert noise == {"[0]root['text']"}
    differences = diff_turn(recorded, candidate, noise=noise)
    assert [(d.recorded_index, d.path, d.noise) for d in differences] == [
        (0, "root['text']", True), (1, "root['text']", False)]
    assert noise_label("[0]root['text']") == "root['text'] (activity 1)"
    assert noise_label("<missing>[2]") == "<missing> (activity 3)"
    # A key without a position still covers that path in every activity.
    assert all(d.noise for d in diff_turn(recorded, candidate, noise={"root['text']"}))


def test_comparable_maps_connector_issued_ids_wherever_they_are_copied():
    # Reproduces issue 11 (5): a streaming agent copies the first chunk's id into entities[].streamId.
    record = {"route": "reply_to_activity",
              "body": {"type": "message", "text": "done", "replyToId": "in-1",
                       "entities": [{"type": "streaminfo", "streamId": "candidate-0000001", "streamType": "final"}],
                       "channelData": {"thread": "conv-candidate-0000002", "other": "candidate-0000001x"}}}
    issued = {"candidate-0000001": "0000007", "conv-candidate-0000002": "conv-0000003"}
    view = comparable(record, canon_id=lambda x: x, issued=issued)
    assert view["entities"][0]["streamId"] == "0000007"
    assert view["channelData"] == {"thread": "conv-0000003", "other": "candidate-0000001x"}
    assert view["replyToId"] == "in-1"


def test_comparable_writes_any_service_url_the_same_way_with_or_without_slash():
    # Reproduces issue 11 (1): the recorded URL and the stand-in's both become <serviceUrl>.
    urls = ["https://smba.example/amer/", "http://127.0.0.1:9"]
    for base in ("https://smba.example/amer", "http://127.0.0.1:9/"):
        url = base.rstrip("/") + "/v3/attachments/a1/views/original"
        body = {"type": "message", "attachments": [{"contentUrl": url}]}
        view = comparable({"route": "reply_to_activity", "body": body}, service_urls=urls)
        assert view["attachments"][0]["contentUrl"] == "<serviceUrl>/v3/attachments/<id>/views/original"


def test_comparable_maps_ids_marks_edits_and_hides_service_urls():
    record = {"route": "update_activity", "url_activity_id": "replay-0000004",
              "body": {"type": "message", "id": "replay-0000004", "replyToId": "in-1", "text": "updated",
                       "serviceUrl": "http://127.0.0.1:9/",
                       "attachments": [{"contentUrl": "http://127.0.0.1:9/v3/attachments/att-replay-3/views/original"}]}}
    ids = {"replay-0000004": "rec-7", "in-1": "in-1"}
    view = comparable(record, canon_id=lambda x: ids.get(x, GENERATED), service_urls=["http://127.0.0.1:9/"])
    assert view["id"] == view["@target"] == "rec-7" and view["replyToId"] == "in-1"
    assert view["@route"] == "update_activity"
    assert view["attachments"][0]["contentUrl"] == "<serviceUrl>/v3/attachments/<id>/views/original"
    assert record["body"]["id"] == "replay-0000004"  # the record itself is untouched
    delete = comparable({"route": "delete_activity", "url_activity_id": "x", "body": None}, canon_id=lambda x: "y")
    assert delete == {"@route": "delete_activity", "@target": "y"}


def test_describe_reads_like_a_sentence():
    assert describe(Difference("changed", "root['text']", "a", ABSENT)) == "changed root['text']: 'a' → (absent)"
    assert describe({"kind": "missing", "path": "[0]", "recorded": {"type": "typing"}, "replayed": None}) == (
        "missing [0]: typing")
    d = diff_turn([msg("first"), msg("second")], [msg("second"), msg("first")])[0]
    assert describe(d) == "reordered [1] → [0]: message 'second' (reply_to_activity)"
    assert describe(Difference("extra", "[2]", None, {"type": "message", "attachments": ["x/card"]})) == (
        "extra [2]: message with x/card")


def test_an_exact_ignore_path_prunes_the_key_deepdiff_names_quotes_and_indexes_included():
    value = {"a": [{"b'c": 1, "keep": 2}], 'd"e': 3, "f": 4}
    ignore = parse_ignore(["root['a'][0][\"b'c\"]", "root['d\"e']"], volatile=False)
    assert prune(value, ignore) == {"a": [{"keep": 2}], "f": 4}
