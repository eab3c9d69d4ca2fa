"""Reports draw a stream as one bubble: the final's text and card, the chunk count, a small timeline of the
chunks (escaped text, no script of its own), and every chunk's finding, each chunk keeping its anchor."""

from __future__ import annotations

import pytest
from agentskit import STREAMED_TEXT
from browser import Browser
from checkkit import Wire, store_rows
from test_agents_sdk_bots import converse
from test_checks_streaming import Streamer, teams_turn
from test_report import XSS_TEXT, Page, self_contained
from test_report_browser import nothing_ran, open_report, screenshot

from botproxy import store
from botproxy.present import report

CARD = {"contentType": "application/vnd.microsoft.card.hero", "content": {"title": "Fox facts"}}


def stream_session(tmp_path, wire: Wire) -> str:
    db_path = tmp_path / "streams.db"
    store_rows(db_path, wire.rows, name="streams")
    db = store.open_db(db_path)
    return report.render_session(db, store.resolve_session(db, "streams"), tmp_path / "s.html").read_text()


def test_a_stream_is_one_bubble_with_its_final_text_chunk_count_and_timeline(tmp_path):
    w, inbound, st = teams_turn()
    chunks = [st.send("Looking it up...", "informative"), st.send("A brown"), st.send("A brown fox")]
    final = st.send("A brown fox jumps.", "final", attachments=[CARD])
    w.done(w.reply(inbound, "and one more thing"))
    w.done(inbound)
    html = stream_session(tmp_path, w)
    page = Page(html)
    self_contained(html)
    bubbles = [a for t, a in page.tags if t == "div" and "k-stream" in (a.get("class") or "")]
    assert [b.get("id") for b in bubbles] == [f"a{final.seq}"]  # one bubble, anchored at the final
    assert not [a for t, a in page.tags if t == "span" and a.get("class") == "typing"]  # no bare •••
    start = html.index(f'id="a{final.seq}"')
    bubble = html[start : html.index('<div class="act ', start + 1)]
    assert "A brown fox jumps." in bubble and "Fox facts" in bubble and "3 chunks" in bubble
    assert [a.get("id") for t, a in Page(bubble).tags if t == "li"] == [f"a{c.seq}" for c in chunks] + [None]
    assert "+1.2s" in bubble and "informative 1" in bubble and "final" in bubble
    assert "and one more thing" in html[html.index("</ol>", start) :]  # the reply after it keeps its place


def test_a_chunks_findings_are_on_the_bubble_and_its_link_lands_on_the_chunk(tmp_path):
    w, inbound, st = teams_turn()
    st.send("A brown")
    repeated = st.send("A brown fox", seq=1)  # BP-S01 at this chunk
    st.send("A brown fox jumps.", "final")
    w.done(inbound)
    html = stream_session(tmp_path, w)
    page = Page(html)
    assert f'href="#a{repeated.seq}"' in html and page.find("li", id=f"a{repeated.seq}")
    assert page.find("details", data_rule="BP-S01")


def test_chunk_texts_are_escaped_and_an_unfinished_stream_says_so(tmp_path):
    w, inbound, st = teams_turn()
    st.send(XSS_TEXT)
    st.send(XSS_TEXT + " more")
    w.done(inbound)
    html = stream_session(tmp_path, w)
    assert XSS_TEXT not in html and "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html
    assert html.count("<script") == 1  # ours, allowed by its hash
    assert "no final message" in html and "2 chunks" in html


def test_a_plain_conversation_is_drawn_as_before():
    views = [{"stream_part": None, "activity_id": "x", "seq": 1}]
    assert report.stream_bubbles(views) is views
    assert isinstance(Streamer, type)


@pytest.mark.slow
async def test_a_real_agents_sdk_stream_in_chromium(tmp_path):
    db_path, activities = await converse(tmp_path, "js", "msteams")
    db = store.open_db(db_path)
    out = report.render_session(db, store.resolve_session(db, "js-msteams"), tmp_path / "stream.html")
    chunks = [a for a in activities if a["type"] == "typing"]
    async with Browser.launch(tmp_path, width=1100, height=1400) as browser:
        page = await open_report(browser, out)
        await nothing_ran(page)
        bubbles = await page.evaluate(
            "[...document.querySelectorAll('.act.k-stream')].map(e => [e.querySelector('.text').textContent,"
            " e.querySelectorAll('ol.timeline li').length, e.offsetParent !== null])"
        )
        assert bubbles == [[STREAMED_TEXT, len(chunks) + 1, True]]
        assert await page.evaluate("document.querySelectorAll('.typing').length") == 0
        assert await page.evaluate("document.querySelector('.act.k-stream .card-title').textContent") == "Fox facts"
        # the BP-S02 row of the rules table links to the stream's bubble
        link = await page.evaluate("document.querySelector('tr[data-rule=\"BP-S02\"] a').getAttribute('href')")
        assert await page.evaluate(f"document.querySelector('{link}').classList.contains('k-stream')")
        await screenshot(page, tmp_path / "stream-report.png")
        assert page.errors == []
