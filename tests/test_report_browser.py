"""HTML reports in headless Chromium: the page a reviewer sees, its numbers, its filter, and that nothing runs
that should not.

A session is recorded for real (the SDK sample bot through the embedded recorder) with hostile texts the
bot echoes, plus a crafted card and findings; a replay run is crafted row by row. Each page is loaded
from a file:// URL over the DevTools protocol (tests/browser.py), its console and exceptions watched,
and a full-page screenshot saved under the test's tmp_path (the path is printed: `pytest -s`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from browser import Browser, Page
from test_report import XSS_IMG, XSS_TEXT, add_run, add_session, bot, compact, new_db, user

from botproxy import store
from botproxy.present import report
from botproxy.replay.plan import ReplayOptions

pytestmark = pytest.mark.slow

XSS_CARD = '<img src=x onerror="window.__xss=3">'
XSS_BUTTON = "<script>window.__xss=4</script>"
TEXTS = "[...document.querySelectorAll('.text')].map(e => e.textContent)"
VISIBLE_TURNS = "[...document.querySelectorAll('details.turn')].filter(d => d.offsetParent !== null).length"


async def open_report(browser: Browser, path: Path) -> Page:
    page = await browser.new_page()
    await page.goto(path.as_uri())
    await page.wait_for("document.documentElement.dataset.ready === '1'")  # our script ran
    return page


async def counts(page: Page) -> dict[str, int]:
    return await page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('[data-count]')]"
        ".map(e => [e.dataset.count, Number(e.textContent)]))"
    )


async def nothing_ran(page: Page) -> None:
    """The payloads are on the page as text, and none of them became an element or ran."""
    assert await page.evaluate("typeof window.__xss") == "undefined"
    assert await page.evaluate("document.images.length") == 0
    assert await page.evaluate("document.scripts.length") == 1  # ours
    assert await page.evaluate("document.querySelectorAll('[onerror], [onclick], [onmouseover]').length") == 0


async def screenshot(page: Page, path: Path) -> None:
    path.write_bytes(await page.screenshot(full_page=True))
    print(f"\nscreenshot: {path}")


async def test_a_recorded_session_in_chromium(recorders, connector, sample_bot, tmp_path):
    proxy = await recorders.start(sample_bot.url, name="hostile")
    for text in ("hello", "card", XSS_TEXT, XSS_IMG, "typing"):
        status, _ = await connector.send(proxy.endpoint, connector.activity(text=text, conversation_id="conv-x"))
        assert status < 300
    await recorders.stop(proxy)
    db = recorders.db()
    session = store.resolve_session(db, "hostile")
    activities = list(store.iter_activities(db, session["id"]))
    xss_inbound = next(a for a in activities if a["text"] == XSS_TEXT)
    # A card with hostile titles and findings with hostile messages, as a bot and the checks could produce.
    seq = activities[-1]["seq"] + 1
    card = {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "content": {
            "type": "AdaptiveCard", "body": [{"type": "TextBlock", "text": XSS_CARD, "weight": "bolder"}],
            "actions": [{"type": "Action.Submit", "title": XSS_BUTTON}]}},
        {"contentType": "application/vnd.microsoft.card.hero", "content": {"title": XSS_TEXT}}]}
    db["activities"].insert({"session_id": session["id"], "seq": seq, "direction": "from_bot", "type": "message",
                             "route": "reply_to_activity", "status": 200, "conversation_id": "conv-x",
                             "turn_seq": xss_inbound["seq"], "body": json.dumps(card)})
    db["findings"].insert_all([
        {"session_id": session["id"], "seq": seq, "rule": "BP-A04", "name": "dangling-replyToId",
         "severity": "warning", "conversation_id": "conv-x", "message": XSS_IMG,
         "details": json.dumps({"x": XSS_TEXT})},
        {"session_id": session["id"], "seq": xss_inbound["seq"], "rule": "BP-Z01", "name": "crafted",
         "severity": "error", "conversation_id": "conv-x", "message": "crafted error", "details": "{}"},
    ])
    db.conn.commit()
    out = report.render_session(db, session, tmp_path / "session.html")

    async with Browser.launch(tmp_path, width=1280, height=2000) as browser:
        page = await open_report(browser, out)
        await nothing_ran(page)
        texts = await page.evaluate(TEXTS)
        assert XSS_TEXT in texts and XSS_IMG in texts and f"You said: {XSS_IMG}" in texts
        titles = await page.evaluate(
            "[...document.querySelectorAll('.card-title, .card-item')].map(e => e.textContent)")
        assert XSS_TEXT in titles and XSS_CARD in titles
        assert await page.evaluate("[...document.querySelectorAll('.card .button')].map(e => e.textContent)") == [
            "Say hello", "Docs", XSS_BUTTON]
        finding = await page.evaluate("document.querySelector('details.finding[data-rule=\"BP-A04\"] .message')"
                                      ".textContent")
        assert finding == XSS_IMG

        shown = await counts(page)
        assert shown["activities"] == len(activities) + 1
        assert shown["turns"] == 5 and shown["conversations"] == 1
        by_severity = [shown[f"{severity}_findings"] for severity in ("error", "warning", "info")]
        assert shown["findings"] == 2 and by_severity == [1, 1, 0]
        assert shown["flagged_turns"] == 1
        await screenshot(page, tmp_path / "session-report.png")

        # the filter leaves the turn with findings; collapse and expand reach every turn
        assert await page.evaluate(VISIBLE_TURNS) == 5
        await page.click("#only-flagged")
        assert await page.evaluate(VISIBLE_TURNS) == 1
        await page.click("#only-flagged")
        await page.click("button[data-expand='0']")
        assert await page.evaluate("[...document.querySelectorAll('details.turn')].every(d => !d.open)")
        await page.click("button[data-expand='1']")
        assert await page.evaluate("[...document.querySelectorAll('details.turn')].every(d => d.open)")
        assert page.errors == []


async def test_a_replay_report_in_chromium(tmp_path):
    db = new_db(tmp_path / "r.db")
    session = add_session(db, "rec", [user("hello"), user(XSS_TEXT), user("same"), user("boom")])
    run_id = add_run(db, session, [
        {"inbound_seq": 1, "inbound_text": "hello", "status": "changed", "regressed": 1,
         "recorded": [compact(10, "hi"), compact(11, "bye")], "replayed": [compact(20, "hi!")],
         "differences": [
             {"kind": "changed", "path": "root['text']", "recorded": "hi", "replayed": "hi!",
              "recorded_index": 0, "replayed_index": 0},
             {"kind": "missing", "path": "[1]", "recorded": {"text": "bye"}, "replayed": None,
              "recorded_index": 1, "replayed_index": None}],
         "new_findings": [{"rule": "BP-A04", "name": "dangling-replyToId", "severity": "warning", "seq": 20,
                           "message": XSS_IMG, "details": {}, "noise": False}]},
        {"inbound_seq": 2, "inbound_text": XSS_TEXT, "status": "changed", "regressed": 1,
         "recorded": [compact(12, "x")], "replayed": [compact(21, XSS_IMG)],
         "differences": [{"kind": "changed", "path": "root['text']", "recorded": "x", "replayed": XSS_IMG,
                          "recorded_index": 0, "replayed_index": 0}]},
        {"inbound_seq": 3, "inbound_text": "same", "status": "same",
         "recorded": [compact(13, "ok")], "replayed": [compact(22, "ok")]},
        {"inbound_seq": 4, "inbound_text": "boom", "status": "error", "error": XSS_TEXT},
    ], noise_paths=json.dumps(["root['channelData']"]))
    out = report.render_replay(db, run_id, tmp_path / "replay.html")

    async with Browser.launch(tmp_path, width=1280, height=1800) as browser:
        page = await open_report(browser, out)
        await nothing_ran(page)
        shown = await counts(page)
        expected = {"turns": 4, "same": 1, "changed": 2, "error": 1, "regressed": 2, "findings": 1,
                    "warning_findings": 1}
        assert {key: shown[key] for key in expected} == expected
        highlighted = await page.evaluate("[...document.querySelectorAll('.text.hl')].map(e => e.textContent)")
        assert highlighted == ["hi", "hi!", "x", XSS_IMG]
        # the new parts carry hostile text as text: the marked insertion, the regressed-turn index
        assert await page.evaluate("[...document.querySelectorAll('.text ins')].map(e => e.textContent)") == [
            "!", "<img src=", ' onerror="window.__xss=2">']  # "x" -> XSS_IMG keeps its x
        assert await page.evaluate("document.querySelectorAll('.text del').length") == 0
        index = await page.evaluate("[...document.querySelectorAll('nav.regressed-index a')]"
                                    ".map(a => [a.textContent, !!document.getElementById(a.hash.slice(1))])")
        assert index == [["turn 1 (#1) · “hello”", True], [f"turn 2 (#2) · “{XSS_TEXT}”", True]]
        assert await page.evaluate("document.querySelectorAll('.act.mark-missing').length") == 1
        assert XSS_TEXT in await page.evaluate("document.querySelector('.error-box').textContent")
        assert "root['channelData']" in await page.evaluate("document.querySelector('.noise-paths').textContent")
        await screenshot(page, tmp_path / "replay-report.png")
        assert await page.evaluate(VISIBLE_TURNS) == 4
        await page.click("#only-flagged")
        assert await page.evaluate(VISIBLE_TURNS) == 3  # the same turn is hidden
        assert page.errors == []


async def test_the_policy_stops_markup_that_escaped_escaping(tmp_path):
    """Defence in depth: markup spliced into a report unescaped (a bug we do not have) still runs nothing,
    fetches nothing, and the report's own script still works."""
    db = new_db(tmp_path / "t.db")
    out = report.render_session(db, add_session(db, "t", [user("hi")]), tmp_path / "t.html")
    html = out.read_text()
    spliced = '<script>window.__xss=1</script><img src="x" onerror="window.__xss=2"><img src="https://example.com/p.png">'
    out.write_text(html.replace('<div class="text">hi</div>', spliced, 1))
    async with Browser.launch(tmp_path) as browser:
        page = await open_report(browser, out)
        assert await page.evaluate("typeof window.__xss") == "undefined"
        assert any("Content Security Policy" in e for e in page.errors), page.errors


async def test_a_10000_activity_session_opens_and_filters_quickly(tmp_path):
    db = new_db(tmp_path / "big.db")
    activities = []
    for n in range(5000):
        conversation = f"conv-{n % 20}"
        activities += [user(f"question {n}", conversation=conversation),
                       bot(f"answer {n}", 2 * n + 1, conversation=conversation)]
    session = add_session(db, "big", activities, findings=[
        {"seq": s, "rule": "BP-A04", "severity": "warning", "message": "dangling"} for s in range(2, 10000, 500)])
    out = report.render_session(db, session, tmp_path / "big.html")
    async with Browser.launch(tmp_path) as browser:
        page = await browser.new_page()
        started = time.perf_counter()
        await page.goto(out.as_uri())
        await page.wait_for("document.documentElement.dataset.ready === '1'")
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        await page.click("#only-flagged")
        visible = await page.evaluate(VISIBLE_TURNS)
        filtered = time.perf_counter() - started
        size = out.stat().st_size / 1e6
        print(f"\n10,000 activities: {size:.1f} MB, loaded in {loaded:.2f} s, filtered in {filtered:.2f} s")
        assert visible == 20 and (await counts(page))["activities"] == 10000
        assert loaded < 30 and filtered < 10
        assert page.errors == []


# -- time: the waterfall of each turn (issue 14 §4) -----------------------------------------------------------

BARS = """[...document.querySelectorAll('.waterfall')].map(w => [...w.querySelectorAll('.wf-bar')].map(b => {
    const track = b.parentElement.getBoundingClientRect(), bar = b.getBoundingClientRect();
    return {seq: Number(b.id.slice(1)), left: bar.left - track.left, width: bar.width, track: track.width,
            row: b.closest('.wf-row').className};
}))"""


async def record_wire_bot_turns(tmp_path: Path) -> tuple[str, list[dict]]:
    """A real recording (the embedded recorder, the wire bot, its Connector stand-in holding answers): a plain
    turn, two sends answered in the other order (BP-O02), and a reply to a turn long over (BP-O04)."""
    from checkkit import ChannelClient, MiniConnector, record_session
    from wirebot import WireBot

    connector = MiniConnector()
    await connector.start()
    bot = WireBot(connector)
    await bot.start()
    try:
        async with record_session(tmp_path, bot.url, name="timing") as recording, \
                ChannelClient(recording.endpoint) as channel:
            url = connector.url("amer")
            for conv, text in (("c-ok", "hello"), ("c-o2", "mistake:BP-O02"), ("c-o4", "an earlier message"),
                               ("c-o4", "mistake:BP-O04")):
                assert (await channel.say(url, conv, text))[0] == 200
    finally:
        await bot.stop()
        await connector.stop()
    assert bot.failures == []
    db = store.open_db(recording.db_path)
    session_id = store.resolve_session(db, "timing")["id"]
    return recording.db_path, [dict(r) for r in db.query("select * from exchanges where session_id = ?", [session_id])]


async def test_the_waterfall_draws_each_exchange_where_and_as_long_as_it_happened(tmp_path):
    db_path, exchanges = await record_wire_bot_turns(tmp_path)
    by_seq = {e["seq"]: e for e in exchanges}
    db = store.open_db(db_path)
    session = store.resolve_session(db, "timing")
    activities = list(store.iter_activities(db, session["id"]))
    out = report.render_session(db, session, tmp_path / "timing.html")

    async with Browser.launch(tmp_path, width=1400, height=2400) as browser:
        page = await open_report(browser, out)
        waterfalls = await page.evaluate(BARS)
        await screenshot(page, tmp_path / "timing.png")
        # one waterfall per turn (4 inbound activities), every exchange of the recording drawn once
        assert len(waterfalls) == 4
        drawn = [b["seq"] for w in waterfalls for b in w]
        assert sorted(drawn) == sorted(by_seq)
        for bars in waterfalls:
            starts = [by_seq[b["seq"]]["started_at"] for b in bars]
            ends = [by_seq[b["seq"]]["ended_at"] for b in bars]
            t0, span = min(starts), max(ends) - min(starts)
            track = bars[0]["track"]
            assert track > 300
            for bar, start, end in zip(bars, starts, ends, strict=True):
                # x as the timestamps say, widths proportional to the durations (a 2 px floor for instants)
                assert abs(bar["left"] - (start - t0) / span * track) <= 2, bar
                assert abs(bar["width"] - max((end - start) / span * track, 2)) <= 2, bar
            ordered = sorted(bars, key=lambda b: by_seq[b["seq"]]["started_at"])
            assert [b["left"] for b in ordered] == sorted(b["left"] for b in ordered)
            inbound = [b for b in bars if by_seq[b["seq"]]["leg"] == "inbound"]
            assert len(inbound) == 1 and "inbound" in inbound[0]["row"]

        # the inversion is seen: the later-started send ends left of the earlier one's end
        o2_inbound = next(a for a in activities if a["text"] == "mistake:BP-O02")
        o2 = next(w for w in waterfalls if o2_inbound["exchange_seq"] in [b["seq"] for b in w])
        first, second = sorted((b for b in o2 if by_seq[b["seq"]]["leg"] == "outbound"),
                               key=lambda b: by_seq[b["seq"]]["started_at"])
        assert by_seq[second["seq"]]["ended_at"] < by_seq[first["seq"]]["ended_at"]  # what the recording says
        assert first["left"] < second["left"]
        assert second["left"] + second["width"] < first["left"] + first["width"]
        assert "overtook" in second["row"] and "overtook" not in first["row"]
        note = await page.evaluate(f"document.getElementById('x{second['seq']}').closest('.wf-row').textContent")
        carried = {a["exchange_seq"]: a["seq"] for a in reversed(activities)}
        assert f"answered before #{carried[first['seq']]}" in note  # named by its activity, as everywhere

        # the reply to the earlier turn, sent in the later one, starts after its turn's answer: late
        earlier = next(a for a in activities if a["text"] == "an earlier message")
        o4 = next(w for w in waterfalls if earlier["exchange_seq"] in [b["seq"] for b in w])
        late = [b for b in o4 if "late" in b["row"]]
        assert len(late) == 1 and late[0]["left"] > next(b for b in o4 if "inbound" in b["row"])["width"]

        # the findings point into it: BP-O02's link anchors and highlights the bar of its exchange
        link = await page.evaluate("document.querySelector('details.finding[data-rule=\"BP-O02\"] a.to-bar')"
                                   ".getAttribute('href')")
        finding_seq = db.execute("select seq from findings where session_id = ? and rule = 'BP-O02'",
                                 [session["id"]]).fetchone()[0]
        exchange = next(a["exchange_seq"] for a in activities if a["seq"] == finding_seq)
        assert link == f"#x{exchange}" and exchange == second["seq"]
        await page.click("button[data-expand='0']")
        await page.click("details.finding[data-rule='BP-O02'] a.to-bar")
        await page.wait_for(f"document.querySelector(':target')?.id === 'x{exchange}'")
        assert await page.evaluate(f"document.getElementById('x{exchange}').getBoundingClientRect().width") > 0
        assert await page.evaluate(f"getComputedStyle(document.getElementById('x{exchange}')).outlineStyle") == "solid"
        # and each bar links back to the activity its exchange carried
        href = await page.evaluate(f"document.getElementById('x{exchange}').getAttribute('href')")
        assert href == f"#a{finding_seq}" and await page.evaluate(f"!!document.getElementById('a{finding_seq}')")
        assert page.errors == []


async def test_a_real_replay_report_opens_with_its_regressed_turns_and_marks_the_exact_change(demo_db, tmp_path):
    from botproxy.replay.driver import replay_session
    from botproxy.sample_bot import start_bot

    bot2 = await start_bot(build=2)
    try:
        result = await replay_session(str(demo_db), "demo", bot2.url, options=ReplayOptions(quiet_ms=50))
    finally:
        await bot2.stop()
    db = store.open_db(demo_db)
    out = report.render_replay(db, result.run["id"], tmp_path / "replay.html")
    regressed = [t for t in result.turns if t.regressed]
    assert regressed  # build 2 differs on purpose

    async with Browser.launch(tmp_path, width=1280, height=900) as browser:
        page = await open_report(browser, out)
        # the index comes first in the page, one link per regressed turn, each to a turn that exists
        assert await page.evaluate("document.querySelector('main section.summary').firstElementChild.id") == "regressed"
        links = await page.evaluate("[...document.querySelectorAll('nav.regressed-index a')].map(a => a.hash)")
        assert len(links) == len(regressed) == result.summary["regressed"]
        targets = await page.evaluate(f"""{json.dumps(links)}.map(h => {{
            const t = document.getElementById(h.slice(1));
            return t && t.matches('details.turn') ? [t.dataset.status, t.querySelector('summary').textContent] : null;
        }})""")
        for target, turn in zip(targets, regressed, strict=True):
            assert target is not None and target[0] == turn.status != "same"
            assert f"turn {turn.turn.index} (#{turn.turn.inbound['seq']})" in target[1]
        # following a link opens its turn (collapsed before) and brings it into view
        await page.click("button[data-expand='0']")
        last = links[-1]
        await page.click(f"nav.regressed-index a[href='{last}']")
        await page.wait_for(f"document.querySelector(':target')?.id === '{last[1:]}'")
        assert await page.evaluate(f"document.getElementById('{last[1:]}').open")
        top = await page.evaluate(f"document.getElementById('{last[1:]}').getBoundingClientRect().top")
        assert 0 <= top < 900
        await page.click("button[data-expand='1']")

        # "weather?" → "weather?!": exactly the "!" is marked inserted, the rest of the text is not
        marked = await page.evaluate("""[...document.querySelectorAll('.side.replayed .text ins')]
            .map(e => [e.textContent, e.parentElement.textContent])""")
        assert ["!", "You said: what is the weather?!"] in marked
        assert await page.evaluate("[...document.querySelectorAll('.side.recorded .text')]"
                                   ".filter(e => e.textContent === 'You said: what is the weather?')"
                                   ".every(e => e.querySelectorAll('ins, del').length === 0)")
        # the reordered pair says where it was and where it is
        moved = await page.evaluate("[...document.querySelectorAll('.tag.mark-reordered')].map(e => e.textContent)")
        assert moved and all(m == "reordered: moved from position 2 to 1" for m in moved)
        # the header speaks words, not option keys
        facts = await page.evaluate("document.querySelector('dl.facts').textContent")
        assert "quiet_ms" not in facts and "a turn ends after this long without a Connector call50 ms" in facts
        await screenshot(page, tmp_path / "replay-real.png")
        assert page.errors == []
