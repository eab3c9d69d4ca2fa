"""HTML reports without a browser: what the file holds (tests/test_report_browser.py opens it in Chromium).

A session recorded for real (the demo conversation with the SDK sample bot), sessions and replay runs
crafted row by row into real SQLite files, a real replay of build 1 against build 2, and the CLI.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from botproxy import store
from botproxy.cli import cli
from botproxy.errors import OutputError, StoreError
from botproxy.present import report
from botproxy.replay.plan import ReplayOptions

ROOT = Path(__file__).parent.parent
XSS_TEXT = "<script>window.__xss=1</script>"
XSS_IMG = '<img src=x onerror="window.__xss=2">'


# -- helpers: crafted rows in a real SQLite file ---------------------------------------------------------


def new_db(path: Path):
    return store.open_db(path, create=True)


def add_session(db, name: str, activities: list[dict], findings: list[dict] = (), **session) -> dict:
    session_id = db["sessions"].insert({"name": name, "started_at": "2026-11-21T10:00:00.000Z",
                                        "ended_at": "2026-11-21T10:01:00.000Z", "source": "import",
                                        "error_count": 0, **session}).last_pk
    rows = []
    for seq, a in enumerate(activities, 1):
        body = {"type": a.get("type", "message"), **a.get("body", {})}
        if a.get("text") is not None:
            body["text"] = a["text"]
        rows.append({
            "session_id": session_id, "seq": seq, "event": seq, "exchange_seq": seq,
            "direction": a.get("direction", "from_bot"), "source": "request", "method": "POST",
            "route": a.get("route", "bot_messages" if a.get("direction") == "to_bot" else "reply_to_activity"),
            "status": a.get("status", 200), "type": a.get("type", "message"), "text": a.get("text"),
            "name": a.get("name"), "conversation_id": a.get("conversation", "conv-1"),
            "turn_seq": a.get("turn"), "target_seq": a.get("target"), "activity_id": a.get("activity_id"),
            "observed_at": 1795255200.0 + seq / 10, "body": json.dumps(body),
        })
    if rows:
        db["activities"].insert_all(rows)
    for f in findings:
        db["findings"].insert({"session_id": session_id, "name": "", "conversation_id": "conv-1", "details": "{}",
                               **f})
    return store.resolve_session(db, name)


def user(text, **kw):
    return {"direction": "to_bot", "text": text, **kw}


def bot(text, turn, **kw):
    return {"direction": "from_bot", "text": text, "turn": turn, **kw}


class Page(HTMLParser):
    """The parts of a report the tests look at: summary counts, ids, tags, text, `open` details."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.counts: dict[str, int] = {}
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._count_key: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        self._count_key = attributes.get("data-count")

    def handle_data(self, data):
        if self._count_key:
            self.counts[self._count_key] = int(data)
            self._count_key = None
        self.text.append(data)

    def all_text(self) -> str:
        return "".join(self.text)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]


def element_html(html: str, element_id: str) -> str:
    """The HTML from the element with this id to the next activity (enough to see what belongs to it)."""
    start = html.rindex("<", 0, html.index(f'id="{element_id}"'))
    following = html.find('<div class="act ', start + 1)
    return html[start: following if following > 0 else None]


def self_contained(html: str) -> None:
    """Nothing in the page fetches anything; the policy says so to the browser too."""
    assert "Content-Security-Policy" in html and "default-src 'none'" in html.replace("&#39;", "'")
    assert not re.search(r"<(link|iframe|object|embed|img|audio|video|source)\b", html, re.I)
    assert not re.search(r"""\s(src|href)=["']?(https?:|//)""", html, re.I)
    assert "@import" not in html and "url(" not in html


# -- a session recorded for real -------------------------------------------------------------------------


async def test_a_recorded_session_is_one_self_contained_file_with_its_transcript(demo_db, tmp_path):
    db = store.open_db(demo_db)
    session = store.resolve_session(db, "demo")
    with db.conn:  # as a session recorded without the checks: the report runs them
        db.execute("delete from findings where session_id = ?", [session["id"]])
    out = report.render_session(db, session, tmp_path / "out" / "demo.html")
    html = out.read_text()
    self_contained(html)
    page = Page(html)
    activities = list(store.iter_activities(db, session["id"]))
    assert page.counts["activities"] == len(activities) == 25
    assert page.counts["turns"] == sum(a["direction"] == "to_bot" for a in activities) == 10
    assert page.counts["conversations"] == 1 and page.counts["proactive"] == 1 and page.counts["failed"] == 0
    text = page.all_text()
    # Issue 11 (11): the conversation's count agrees with the tile (it said "11 turns" beside "10 turns"),
    # and turns are numbered as `show` numbers them.
    assert "10 turns · 1 proactive · 25 activities" in text
    first = min(a["seq"] for a in activities if a["direction"] == "to_bot")
    assert f"turn 1 (#{first})" in text
    # user left, bot right; the card structurally, suggested actions as chips, typing as an indicator
    assert page.find("div", id="a3")[0]["class"].startswith("act user")
    assert page.find("div", id="a4")[0]["class"].startswith("act bot")
    card = element_html(html, "a6")
    assert "Hero card" in card and '<div class="card-title">Sample card</div>' in card
    assert '<span class="button" title="imBack hello">Say hello</span>' in card
    assert '<span class="chip" title="imBack help">Help</span>' in card
    assert '<span class="typing"' in element_html(html, "a8")
    # invoke responses, updates and deletes are system lines
    assert "sys" in page.find("div", id="a12")[0]["class"] and "updated #11 → &#34;updated&#34;" in html
    assert "deleted #14" in text and 'invoke response 200: {"echo": {"n": 1}}' in text
    # no findings were stored, so the checks ran for the report (writing nothing), with the rules' explanations
    assert "ran its checks over the recorded traffic" in text
    findings, source = report.session_findings(db, session["id"])
    assert source == "checked" and db.execute("select count(*) from findings").fetchone()[0] == 0
    assert page.counts["findings"] == len(findings) and page.counts["error_findings"] == 0
    for finding in findings:
        assert f'data-rule="{finding["rule"]}"' in element_html(html, f"a{finding['seq']}")
        assert finding["explanation"] and finding["explanation"].replace("`", "")[:60] in text
    # Issue 14 §4: a rule's `code` marks are shown as <code>, not as raw backticks
    assert any("`role`" in f["explanation"] for f in findings) and "<code>role</code>" in html
    assert not any("`" in p for p in re.findall(r'<div class="explain">(.*?)</div>', html, re.S))


# -- crafted sessions ----------------------------------------------------------------------------------


def test_everything_from_the_traffic_is_escaped_text_and_the_policy_allows_only_our_script(tmp_path):
    db = new_db(tmp_path / "x.db")
    hostile_card = {"attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "content": {
            "type": "AdaptiveCard", "body": [{"type": "TextBlock", "text": XSS_IMG, "weight": "bolder"}],
            "actions": [{"type": "Action.Submit", "title": '"><script>window.__xss=4</script>',
                         "data": {"x": "' onmouseover='window.__xss=5"}}]}},
        {"contentType": "application/vnd.microsoft.card.hero", "content": {
            "title": XSS_TEXT, "buttons": [{"type": "openUrl", "title": "go", "value": "javascript:window.__xss=6"}]}},
    ], "suggestedActions": {"actions": [{"type": "imBack", "title": "</span><b>bold</b>", "value": "x"}]}}
    session = add_session(db, "x<s>", [
        user(XSS_TEXT), bot(XSS_IMG, 1), bot(None, 1, body=hostile_card),
    ], findings=[{"seq": 2, "rule": "BP-X99", "severity": "warning", "message": XSS_IMG,
                  "details": json.dumps({"text": XSS_TEXT})}])
    html = report.render_session(db, session, tmp_path / "x.html").read_text()
    self_contained(html)
    for raw in (XSS_TEXT, XSS_IMG, "<b>bold</b>", "<s>", "onmouseover='", '"><script>'):
        assert raw not in html
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;window.__xss=2&#34;&gt;" in html
    assert html.count("<script") == 1  # ours, at the end
    assert [h for h in re.findall(r'href="([^"]*)"', html) if not re.fullmatch(r"#a\d+", h)] == []  # no data links
    page = Page(html)
    assert XSS_TEXT in page.all_text() and XSS_IMG in page.all_text()
    # the only script is allowed by its hash, so an injected one would not run even unescaped
    csp = next(a["content"] for a in page.find("meta") if a.get("http-equiv") == "Content-Security-Policy")
    script = html[html.rindex("<script>") + 8: html.rindex("</script>")]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}';" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]


def test_findings_sit_next_to_their_activity_with_the_rule_s_explanation(tmp_path):
    db = new_db(tmp_path / "f.db")
    session = add_session(db, "f", [
        user("hi"), bot("hello", 1), bot("again", 1), user("bye"), bot("ciao", 4, status=404),
        bot("late", None, conversation="conv-2"),
    ], findings=[
        {"seq": 2, "rule": "BP-A04", "name": "dangling-replyToId", "severity": "warning", "message": "dangling 1"},
        {"seq": 2, "rule": "BP-A19", "name": "bot-sets-role/isGroup", "severity": "info", "message": "role"},
        {"seq": 5, "rule": "BP-Z00", "name": "made-up", "severity": "error", "message": "only the message"},
        {"seq": None, "rule": "BP-O99", "name": "exchange-level", "severity": "error", "message": "no activity",
         "conversation_id": "conv-1"},
    ])
    out = report.render_session(db, session, tmp_path / "f.html")
    html = out.read_text()
    page = Page(html)
    assert page.counts == {
        "activities": 6, "conversations": 2, "turns": 2, "proactive": 1, "failed": 1, "recorder_errors": 0,
        "findings": 4, "error_findings": 2, "warning_findings": 1, "info_findings": 1, "flagged_turns": 2,
    }
    first = element_html(html, "a2")
    assert 'data-rule="BP-A04"' in first and 'data-rule="BP-A19"' in first
    from botproxy.checks.registry import RULES
    assert RULES["BP-A04"].explanation.replace("`", "")[:80] in Page(first).all_text()
    assert RULES["BP-A04"].fix.replace("`", "")[:60] in Page(first).all_text()
    assert "<p><code>replyToId</code> is only valid" in first  # its `code` marks, as code
    unknown = element_html(html, "a5")
    assert 'data-rule="BP-Z00"' in unknown and "only the message" in unknown and "failed" in unknown
    assert "exchange-level" in html and "no activity" in html  # a finding without an activity: in its conversation
    # the rules table links to the first activity that broke each rule, worst first
    rules = [a["data-rule"] for a in page.find("tr") if a.get("data-rule")]
    assert rules == ["BP-O99", "BP-Z00", "BP-A04", "BP-A19"]
    assert '<a href="#a2">dangling-replyToId</a>' in html
    assert report.session_findings(db, session["id"])[1] == "stored"


def test_a_large_session_collapses_quiet_turns_and_keeps_json_only_where_findings_are(tmp_path):
    db = new_db(tmp_path / "big.db")
    activities = []
    for n in range(report.LARGE // 2 + 1):
        activities += [user(f"q{n}"), bot(f"a{n}", len(activities) + 1)]
    session = add_session(db, "big", activities, findings=[
        {"seq": 4, "rule": "BP-A04", "severity": "warning", "message": "dangling"}])
    html = report.render_session(db, session, tmp_path / "big.html").read_text()
    page = Page(html)
    turns = page.find("details")
    turns = [a for a in turns if "turn" in (a.get("class") or "").split()]
    assert len(turns) == len(activities) // 2
    opened = [a for a in turns if "open" in a]
    assert [a["data-flagged"] for a in opened] == ["1"] and opened == [a for a in turns if a["data-flagged"] == "1"]
    assert html.count("<summary>JSON</summary>") == 1 and "Large session" in html
    small = add_session(db, "small", activities[:10])
    small_html = report.render_session(db, small, tmp_path / "small.html").read_text()
    assert all("open" in a for a in Page(small_html).find("details") if "turn" in (a.get("class") or ""))
    assert small_html.count("<summary>JSON</summary>") == 10


def test_a_session_without_activities_and_odd_rows_still_renders(tmp_path):
    db = new_db(tmp_path / "e.db")
    empty = add_session(db, "empty", [])
    assert "No activities were recorded" in report.render_session(db, empty, tmp_path / "e.html").read_text()
    odd = add_session(db, "odd", [
        {"direction": "from_bot", "type": None, "route": "delete_activity", "text": None, "target": 7},
        {"direction": "from_bot", "type": "message", "text": "x", "turn": 99, "status": None},
        bot(None, None, body={"attachments": [{"contentType": "image/png", "contentUrl": "https://e.test/a.png",
                                               "name": "a.png"}, "not a dict"], "suggestedActions": "nope"}),
        bot(None, None, type="event", name="weird", body={"value": list(range(500))}),
    ])
    html = report.render_session(db, odd, tmp_path / "o.html").read_text()
    assert "deleted #7" in html and "https://e.test/a.png" in html and "event weird" in html
    self_contained(html)


def test_a_direct_line_client_s_view_sits_beside_the_bot_s_turn_it_belongs_to_and_links_to_it(tmp_path):
    db = new_db(tmp_path / "dl.db")
    session = add_session(db, "dl", [
        {"direction": "from_client", "text": "hi", "route": "dl_post_activity", "activity_id": "c1|1",
         "body": {"from": {"id": "u", "role": "user"}}},
        user("hi", activity_id="c1|1"),
        bot("hello", 2, activity_id="c1|2"),
        {"direction": "to_client", "text": "hi", "route": "dl_get_activities", "activity_id": "c1|1",
         "body": {"from": {"id": "u", "role": "user"}}},
        {"direction": "to_client", "text": "hello", "route": "dl_get_activities", "activity_id": "c1|2",
         "body": {"from": {"id": "b", "role": "bot"}}},
        user("next", activity_id="c1|3"),
        bot("ok", 6, activity_id="c1|4"),
        {"direction": "to_client", "text": "from elsewhere", "route": "dl_get_activities", "activity_id": "c1|9",
         "body": {"from": {"id": "b", "role": "bot"}}},
    ])
    html = report.render_session(db, session, tmp_path / "dl.html").read_text()
    page = Page(html)
    assert (page.counts["turns"], page.counts["proactive"], page.counts["client"]) == (2, 0, 4)
    # Issue 14 §4: the client's view of turn 1 is beside turn 1 (one turn body: the bot's leg, then the client's
    # column), not interleaved between the turns as a group of its own
    first_turn = html[html.index('<details class="turn"'):html.index('<details class="turn"', html.index("turn 1 ("))]
    bodies = re.findall(r'<div class="turn-body with-client">.*?<div class="client-side">(.*?)</div></div>\n</div>',
                        first_turn, re.S)
    assert len(bodies) == 1 and re.findall(r'id="a(\d+)"', bodies[0]) == ["1", "4", "5"]
    assert [a["class"].split()[1] for a in Page(first_turn).find("div") if (a.get("class") or "").startswith("act ")] \
        == ["user", "bot", "user", "user", "bot"]
    assert '(bot side <a href="#a3">#3</a>)' in html and '(bot side <a href="#a2">#2</a>)' in html
    # what the bot's leg never saw stays a client's view of its own, where it happened
    assert "Direct Line client&#39;s view · 1 activity" in html
    assert html.index("Direct Line client&#39;s view · 1 activity") > html.index("turn 2 (")
    assert html.count('<div class="client-side">') == 1


@pytest.mark.slow
async def test_a_recorded_direct_line_conversation_shows_each_client_view_beside_its_bot_turn(sample_bot, tmp_path):
    """Both legs recorded for real (the local Direct Line channel, the SDK sample bot, a client polling): every
    activity the client posted or was given sits in the turn it belongs to, none in a group between turns."""
    import aiohttp
    from test_checks_directline import SECRET, dl_recorder

    from botproxy.standins.directline import DirectLineChannel

    channel = DirectLineChannel(sample_bot.url, secret=SECRET)
    await channel.start()
    try:
        async with dl_recorder(tmp_path, channel.base_url, bot_url=sample_bot.url) as proxy, \
                aiohttp.ClientSession() as http:
            channel.bot_url = proxy.endpoint
            base = proxy.directline_endpoint
            async with http.post(f"{base}/conversations", headers={"Authorization": f"Bearer {SECRET}"}) as resp:
                conv = await resp.json()
            url = f"{base}/conversations/{conv['conversationId']}/activities"
            auth = {"Authorization": f"Bearer {conv['token']}"}
            for text in ("hello", "card"):
                body = {"type": "message", "text": text, "from": {"id": "user1"}}
                async with http.post(url, json=body, headers=auth) as resp:
                    assert resp.status == 200
            async with http.get(url, headers=auth) as resp:  # the bot answers before the channel's POST returns
                got = (await resp.json())["activities"]
            bot_texts = [a.get("text") for a in got if a["from"]["id"] != "user1"]
            assert "You said: hello" in bot_texts and any(a.get("attachments") for a in got)
    finally:
        await channel.stop()
    db = store.open_db(tmp_path / "botproxy.db")
    session = store.resolve_session(db, "dl")
    activities = list(store.iter_activities(db, session["id"]))
    client = [a for a in activities if a["direction"] in ("from_client", "to_client")]
    assert {a["direction"] for a in activities} == {"from_client", "to_client", "to_bot", "from_bot"}
    html = report.render_session(db, session, tmp_path / "dl.html").read_text()
    assert "Direct Line client&#39;s view ·" not in html  # no group of its own between the turns
    turns = re.split(r'<details class="turn', html)[1:]
    placed = {}
    for turn in turns:
        chat, _, side = turn.partition('<div class="client-side">')
        bot_leg = set(re.findall(r'id="a(\d+)"', chat))
        for seq in re.findall(r'id="a(\d+)"', side):
            placed[int(seq)] = bot_leg
    assert sorted(placed) == [a["seq"] for a in client]
    bot_side = {a["activity_id"]: a["seq"] for a in activities if a["direction"] in ("to_bot", "from_bot")}
    for a in client:  # beside the very turn that holds its bot-leg twin
        assert str(bot_side[a["activity_id"]]) in placed[a["seq"]], a


def test_report_paths_are_safe_file_names_and_unwritable_ones_are_one_error(tmp_path):
    assert report.default_report_path("login-flow") == Path("reports/login-flow.html")
    assert report.default_report_path("../../etc/x y") == Path("reports/etc-x-y.html")
    db = new_db(tmp_path / "w.db")
    session = add_session(db, "w", [user("hi")])
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="cannot write report"):
        report.render_session(db, session, blocker / "r.html")
    assert list(tmp_path.glob("**/.r.html*")) == []


# -- replay runs -----------------------------------------------------------------------------------------


def compact(seq, text=None, *, type="message", route="reply_to_activity", body=None, proactive=False):
    return {"seq": seq, "route": route, "type": type, "text": text, "activity_id": f"id{seq}", "reply_to_id": None,
            "status": 200, "proactive": proactive,
            "body": {"type": type, **({"text": text} if text is not None else {}), **(body or {})}}


def add_run(db, session: dict, turns: list[dict], **run) -> int:
    run_id = db["replay_runs"].insert({
        "session_id": session["id"], "started_at": "2026-11-21T10:02:00.000Z", "ended_at": "2026-11-21T10:02:09.000Z",
        "candidate_url": "http://127.0.0.1:3979/api/messages", "baseline_url": None, "concurrency": 4,
        "options": json.dumps({"quiet_ms": 50}), "ignore_paths": "[]", "noise_paths": "[]", "status": "regressed",
        "summary": json.dumps({"turns": len(turns), "checks": True, "proactive": []}), **run}).last_pk
    for n, turn in enumerate(turns, 1):
        row = {"run_id": run_id, "conversation_id": "conv-1", "idx": n, "status": "same", "regressed": 0,
               "inbound_seq": None, "inbound_text": None, **turn}
        for key in ("recorded", "replayed", "differences", "noise", "noise_paths", "new_findings"):
            row[key] = json.dumps(row.get(key, []))
        db["replay_turns"].insert(row)
    return run_id


def test_a_replay_report_shows_both_sides_marks_each_difference_and_counts_what_counts(tmp_path):
    db = new_db(tmp_path / "r.db")
    session = add_session(db, "rec", [user("hello"), bot("hi", 1), user("card"), bot(None, 3), user("boom")])
    card = {"attachments": [{"contentType": "application/vnd.microsoft.card.hero", "content": {"title": "Old"}}]}
    new_card = {"attachments": [{"contentType": "application/vnd.microsoft.card.hero", "content": {"title": "New"}}]}
    run_id = add_run(db, session, [
        {"inbound_seq": 1, "inbound_text": "hello", "status": "changed", "regressed": 1,
         "recorded": [compact(2, "hi"), compact(3, "second")],
         "replayed": [compact(12, "hi!"), compact(13, "extra one"), compact(14, XSS_IMG)],
         "differences": [
             {"kind": "changed", "path": "root['text']", "recorded": "hi", "replayed": "hi!",
              "recorded_index": 0, "replayed_index": 0},
             {"kind": "missing", "path": "[1]", "recorded": {"text": "second"}, "replayed": None,
              "recorded_index": 1, "replayed_index": None},
             {"kind": "extra", "path": "[1]", "recorded": None, "replayed": {"text": "extra one"},
              "recorded_index": None, "replayed_index": 1},
             {"kind": "changed", "path": "root['text']", "recorded": "x", "replayed": XSS_TEXT,
              "recorded_index": None, "replayed_index": 2},
         ],
         "noise": [{"kind": "changed", "path": "root['channelData']['ts']"}],
         "new_findings": [
             {"rule": "BP-A04", "name": "dangling-replyToId", "severity": "warning", "seq": 13, "message": "m1",
              "details": {}, "noise": False},
             {"rule": "BP-A19", "name": "bot-sets-role/isGroup", "severity": "info", "seq": 12, "message": "m2",
              "details": {}, "noise": True},
             {"rule": "BP-O01", "name": "somewhere", "severity": "error", "seq": None, "message": "turn-level",
              "details": {}, "noise": False},
         ]},
        {"inbound_seq": 3, "inbound_text": "card", "status": "changed", "regressed": 1,
         "recorded": [compact(4, body=card)], "replayed": [compact(15, body=new_card)],
         "differences": [{"kind": "changed", "path": "root['attachments'][0]['content']['title']",
                          "recorded": "Old", "replayed": "New", "recorded_index": 0, "replayed_index": 0}]},
        {"inbound_seq": 5, "inbound_text": "boom", "status": "error", "error": "the bot answered 500",
         "recorded": [], "replayed": []},
        {"inbound_seq": None, "inbound_text": "same", "status": "same", "recorded": [compact(30, "ok")],
         "replayed": [compact(31, "ok")], "conversation_id": "conv-2"},
    ], noise_paths=json.dumps(["root['channelData']['ts']"]), ignore_paths=json.dumps(["root['locale']"]))
    html = report.render_replay(db, run_id, tmp_path / "run.html").read_text()
    self_contained(html)
    assert XSS_IMG not in html and XSS_TEXT not in html
    page = Page(html)
    counts = page.counts
    assert (counts["turns"], counts["same"], counts["changed"], counts["regressed"]) == (4, 1, 2, 2)
    assert counts["conversations"] == 2 and counts["findings"] == 2 and counts["noise"] == 1
    assert (counts["warning_findings"], counts["info_findings"]) == (1, 0)  # the noise finding is shown, not counted
    text = page.all_text()
    assert "root['channelData']['ts']" in text and "root['locale']" in text and "the bot answered 500" in text
    turns = {a["data-status"]: a for a in page.find("details") if "turn" in (a.get("class") or "")}
    assert turns["same"]["data-flagged"] == "0" and turns["changed"]["data-flagged"] == "1"
    # bubbles carry their marks; the changed text and the changed card title are highlighted
    assert html.count("act bot k-message mark-changed") == 5 and "mark-missing" in html and "mark-extra" in html
    assert '<div class="card-title hl">New</div>' in html
    # Issue 14 §4: the text change at word or character level, in the bubbles and the table, escaped
    assert '<div class="text hl tdiff">hi<ins>!</ins></div>' in html and '<div class="text hl tdiff">hi</div>' in html
    assert '<pre class="tdiff">hi</pre></td><td><pre class="tdiff">hi<ins>!</ins></pre>' in html
    assert ('<pre class="tdiff"><del>x</del></pre></td><td><pre class="tdiff"><ins>&lt;script&gt;window.__xss=1'
            '&lt;/script&gt;</ins></pre>') in html
    # the header's options in words; the run opens with its regressed turns, linked to their anchors
    assert "<dt>a turn ends after this long without a Connector call</dt><dd>50 ms</dd>" in html
    assert "quiet_ms" not in html and "<dt>conversations replayed at once</dt><dd>4</dd>" in html
    assert not [dt for dt in re.findall(r"<dt>([^<]*)</dt>", html) if "_" in dt or dt == "concurrency"]
    index = html[html.index('<nav class="regressed-index"'):html.index("</nav>")]
    links = re.findall(r'<a href="#(t\d+)">(.*?)</a>', index)
    assert [title for _, title in links] == ["turn 1 (#1) · “hello”", "turn 2 (#3) · “card”"]
    for anchor, _ in links:
        assert page.find("details", id=anchor)[0]["data-status"] == "changed"
    assert '<div class="card-title hl">Old</div>' in html
    assert "<code>root[&#39;attachments&#39;][0][&#39;content&#39;][&#39;title&#39;]</code>" in html
    # the inbound activity comes from the recorded session
    assert html.count('<div class="act user k-message"') == 4
    # new findings: at the replayed activity they are about, or for the turn
    assert "turn-level" in text and 'data-rule="BP-A04"' in html
    assert report.render_replay(db, run_id, tmp_path / "again.html").read_text().count("data-rule=\"BP-A04\"") == 2


def test_a_replay_report_shows_proactive_activities_and_refuses_unknown_runs(tmp_path):
    db = new_db(tmp_path / "p.db")
    session = add_session(db, "rec", [user("proactive"), bot("later", None)])
    run_id = add_run(db, session, [{"inbound_seq": 1, "inbound_text": "proactive"}], summary=json.dumps({
        "checks": False, "incomplete": 0, "proactive": [
            {"conversation_id": "conv-1", "after_index": 1, "status": "not_replayed",
             "recorded": [compact(2, "proactive hello", proactive=True)], "replayed": []},
            {"conversation_id": "conv-9", "after_index": None, "status": "unattached", "recorded": [],
             "replayed": [compact(40, "out of nowhere")]}]}))
    html = report.render_replay(db, run_id, tmp_path / "p.html").read_text()
    assert "proactive hello" in html and "out of nowhere" in html and "conversation conv-9" in html
    assert "recorded, not brought about by the replay" in html and "checks were not run" in html
    with pytest.raises(StoreError, match="no replay run 99"):
        report.render_replay(db, 99, tmp_path / "none.html")


async def test_a_real_replay_of_build_1_against_build_2(demo_db, tmp_path):
    from botproxy.replay.driver import replay_session
    from botproxy.sample_bot import start_bot

    bot2 = await start_bot(build=2)
    try:
        result = await replay_session(str(demo_db), "demo", bot2.url, options=ReplayOptions(quiet_ms=50))
    finally:
        await bot2.stop()
    db = store.open_db(demo_db)
    html = report.render_replay(db, result.run["id"], tmp_path / "replay.html").read_text()
    page = Page(html)
    summary = result.summary
    for key in ("turns", "same", "changed", "error", "regressed"):
        assert page.counts[key] == summary[key], key
    assert '<div class="card-title hl">Sample card (build 2)</div>' in html
    # Issue 14 §4: the "!" build 2 adds is marked, not the whole text
    assert '<div class="text hl tdiff">You said: what is the weather?<ins>!</ins></div>' in html
    (tmp_path / "replay.keep.html").write_text(html)
    assert "mark-missing" in html and "mark-extra" in html and "mark-reordered" in html
    text = page.all_text()
    assert all(f"turn {t.turn.index} (#{t.turn.inbound['seq']})" in text for t in result.turns)  # as in show


# -- the command line, and the files a wheel ships -----------------------------------------------------


def test_report_command_writes_reports_session_html_and_prints_its_path(tmp_path, monkeypatch):
    db_path = tmp_path / "c.db"
    add_session(new_db(db_path), "cli-session", [user("hi"), bot("ho", 1)])
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["report", "cli-session", "--db", str(db_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output == "reports/cli-session.html\n" and (tmp_path / "reports" / "cli-session.html").is_file()
    out = tmp_path / "deep" / "er" / "x.html"
    result = CliRunner().invoke(cli, ["report", "--db", str(db_path), "--out", str(out)])
    assert result.exit_code == 0 and result.output == f"{out}\n" and "ho" in out.read_text()
    missing = CliRunner().invoke(cli, ["report", "nope", "--db", str(db_path)])
    assert missing.exit_code == 2 and missing.output.count("\n") == 1 and "cli-session" in missing.output
    (tmp_path / "blocker").write_text("")
    unwritable = CliRunner().invoke(cli, ["report", "--db", str(db_path), "--out", str(tmp_path / "blocker" / "r")])
    assert unwritable.exit_code == 2 and unwritable.output.count("\n") == 1
    assert "cannot write report" in unwritable.output


async def test_report_command_checks_an_unchecked_session_with_the_project_s_check_config(demo_db, tmp_path,
                                                                                          monkeypatch):
    db = store.open_db(demo_db)
    with db.conn:
        db.execute("delete from findings")
    project = tmp_path / "project"
    project.mkdir()
    (project / "botproxy.toml").write_text('[checks]\ndisable = ["BP-A19"]\n')
    monkeypatch.chdir(project)
    result = CliRunner().invoke(cli, ["report", "demo", "--db", str(demo_db)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    html = (project / "reports" / "demo.html").read_text()
    assert 'data-rule="BP-A04"' in html and "BP-A19" not in html and "ran its checks" in html
    assert db.execute("select count(*) from findings").fetchone()[0] == 0  # a report writes nothing
    (project / "botproxy.toml").write_text('[checks]\nseverity = "loud"\n')
    bad = CliRunner().invoke(cli, ["report", "demo", "--db", str(demo_db)])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1


def test_every_template_is_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["botproxy"]
    folder = ROOT / "botproxy" / "present" / "templates"
    templates = [p.relative_to(ROOT / "botproxy").as_posix() for p in folder.rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts]
    expected = {f"present/templates/{name}" for name in ("base.html.j2", "report.css", "report.js")}
    assert expected <= set(templates)
    for name in templates:
        shipped = [p for p in patterns if fnmatch.fnmatch(name, p) and name.count("/") == p.count("/")]
        assert shipped, f"{name} is not package data (pyproject.toml [tool.setuptools.package-data])"


# -- issue 14 §4: time, recorder errors, rule prose ----------------------------------------------------------


def add_exchanges(db, session: dict, times: dict[int, tuple[float, float | None]]) -> None:
    """Exchange rows for crafted activities (`add_session` gives activity N exchange N)."""
    for seq, (start, end) in times.items():
        activity = db.execute("select direction, route, conversation_id from activities where session_id = ? "
                              "and seq = ?", [session["id"], seq]).fetchone()
        db["exchanges"].insert({"session_id": session["id"], "seq": seq, "opened": seq, "closed": seq if end else None,
                                "started_at": start, "ended_at": end, "leg": "inbound" if activity[0] == "to_bot"
                                else "outbound", "route": activity[1], "conversation_id": activity[2],
                                "method": "POST", "status": 200 if end else None})


def test_recorder_errors_are_listed_with_when_and_which_exchange_and_hostile_text_stays_text(tmp_path):
    db = new_db(tmp_path / "t.db")
    session = add_session(db, "t", [user(XSS_TEXT), bot(XSS_IMG, 1), bot("never answered", 1)], error_count=3,
                          findings=[{"seq": None, "rule": "BP-O99", "severity": "error", "message": "exchange-level",
                                     "details": json.dumps({"exchange_seq": 3})},
                                    {"seq": 2, "rule": "BP-A04", "severity": "warning", "message": "at #2"}])
    add_exchanges(db, session, {1: (100.0, 100.5), 2: (100.1, 100.2), 3: (100.3, None)})
    # a Connector call that carried no activity (a members lookup), while the turn was open; one after it
    db["exchanges"].insert_all([
        {"session_id": session["id"], "seq": 4, "started_at": 100.25, "ended_at": 100.3, "leg": "outbound",
         "route": "get_members", "conversation_id": "conv-1", "method": "GET", "status": 200},
        {"session_id": session["id"], "seq": 5, "started_at": 200.0, "ended_at": 200.1, "leg": "outbound",
         "route": "get_members", "conversation_id": "conv-1", "method": "GET", "status": 200}])
    db["errors"].insert_all([
        {"session_id": session["id"], "at": 1795255200.25, "stage": "response", "message": XSS_IMG, "exchange_seq": 2},
        {"session_id": session["id"], "at": 1795255201.0, "stage": "<b>stage</b>", "message": "no exchange",
         "exchange_seq": None},
    ])
    html = report.render_session(db, session, tmp_path / "t.html").read_text()
    self_contained(html)
    for raw in (XSS_TEXT, XSS_IMG, "<b>stage</b>"):
        assert raw not in html
    page = Page(html)
    assert page.counts["recorder_errors"] == 3
    start = html.index('<table class="recorder-errors">')
    table = html[start:html.index("</table>", start)]
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td><td class=\"message\">(.*?)</td></tr>", table)
    assert rows == [("10:00:00.250", "response", '<a href="#x2">#2</a>',
                     "&lt;img src=x onerror=&#34;window.__xss=2&#34;&gt;"),
                    ("10:00:01.000", "&lt;b&gt;stage&lt;/b&gt;", "", "no exchange")]
    # the waterfall: three bars, the unanswered one open to the end; hostile text in a bar's label is text
    assert [a["id"] for a in page.find("a", **{"class": "wf-bar"})] == ["x1", "x2", "x3"]
    bars = {a["id"]: a["style"] for a in page.find("a", **{"class": "wf-bar"})}
    assert bars == {"x1": "left:0.000%;width:100.000%", "x2": "left:20.000%;width:20.000%",
                    "x3": "left:60.000%;width:40.000%"}
    lookup = page.find("span", **{"class": "wf-bar"})  # no activity to link to
    assert [(a["id"], a["style"]) for a in lookup] == [("x4", "left:50.000%;width:10.000%")]
    assert "exchange 4 ← get_members" in html and 'id="x5"' not in html  # the later one was in no turn
    assert "→ bot_messages &#34;&lt;script&gt;window.__xss=1&lt;/script&gt;&#34;" in html and "no answer" in html
    rows = [a["class"].split() for a in page.find("div")
            if "wf-row" in (a.get("class") or "") and "wf-axis" not in a["class"]]
    kinds = [[c for c in r if c in ("inbound", "open", "failed", "late")] for r in rows]
    assert kinds == [["inbound"], [], [], ["open", "failed"]]
    # a finding about an activity links to its exchange's bar, one about an exchange to that one's; bars say so
    assert [a["href"] for a in page.find("a", **{"class": "to-bar"})] == ["#x3", "#x2"]
    assert [[c for c in r if c.startswith("sev-")] for r in rows] == [[], ["sev-warning"], [], ["sev-error"]]


def test_rule_prose_code_marks_become_code_and_nothing_else_is_read():
    assert report.code_marks("a `b` c `d") == [(False, "a "), (True, "b"), (False, " c `d")]
    template = report.environment().from_string('{% import "macros.html.j2" as m %}{{ m.marked(parts) }}')
    html = template.render(parts=report.code_marks("use `<script>x</script>` *not* <b>this</b> `a&b`"))
    assert html == ("use <code>&lt;script&gt;x&lt;/script&gt;</code> *not* &lt;b&gt;this&lt;/b&gt; "
                    "<code>a&amp;b</code>")
