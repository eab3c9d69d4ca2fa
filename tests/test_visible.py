"""Bidi control characters in anything shown are made visible: a file name `exe.txt` behind U+202E
(RIGHT-TO-LEFT OVERRIDE) must not display as `txt.exe` (issue 10 §3). Both HTML reports in headless
Chromium, the console, `show` and `check`."""

from __future__ import annotations

import json

import pytest
from browser import Browser
from click.testing import CliRunner
from test_report import add_run, add_session, bot, compact, new_db, user

from botproxy.cli import cli
from botproxy.present import report
from botproxy.present.console import Console
from botproxy.present.visible import BIDI_CONTROLS, visible

CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
NAME = "invoice-\u202eexe.txt"  # shows as invoice-txt.exe when drawn raw
CARD = {"attachments": [{"contentType": "application/vnd.microsoft.card.hero",
                         "content": {"title": f"open {NAME}", "buttons": [{"title": NAME, "value": NAME}]}},
                        {"contentType": "text/plain", "name": NAME, "contentUrl": f"https://x.example/{NAME}"}]}


def test_visible_names_every_control_and_leaves_other_text_alone():
    shown = visible(f"a{CONTROLS}b שלום")
    assert not BIDI_CONTROLS.search(shown)
    assert shown == "a" + "".join(f"⟨U+{ord(c):04X}⟩" for c in CONTROLS) + "b שלום"
    assert visible("plain ⟨text⟩") == "plain ⟨text⟩"


def _session(tmp_path):
    db = new_db(tmp_path / "b.db")
    session = add_session(db, "bidi", [user(f"send me {NAME}"), bot(f"here is {NAME}", 1, body=CARD)],
                          findings=[{"seq": 2, "rule": "BP-A01", "severity": "warning", "message": f"about {NAME}"}])
    return db, session


def _raw_free(html: str) -> None:
    """No control reaches the page (attributes, text, JSON) and each is shown by its code point."""
    assert not BIDI_CONTROLS.search(html), [hex(ord(c)) for c in BIDI_CONTROLS.findall(html)][:5]
    assert "invoice-⟨U+202E⟩exe.txt" in html


async def _page_text(browser: Browser, path) -> str:
    page = await browser.new_page()
    await page.goto(path.as_uri())
    await page.wait_for("document.documentElement.dataset.ready === '1'")
    [text, html] = await page.evaluate("[document.body.innerText, document.documentElement.outerHTML]")
    return text + html


@pytest.mark.slow
async def test_both_reports_show_bidi_controls_as_code_points_in_chromium(tmp_path):
    db, session = _session(tmp_path)
    session_html = report.render_session(db, session, tmp_path / "s.html")
    run_id = add_run(db, session, [{
        "inbound_seq": 1, "inbound_text": f"send me {NAME}", "status": "changed", "regressed": 1,
        "recorded": [compact(2, f"here is {NAME}", body=CARD)], "replayed": [compact(12, f"now {NAME}")],
        "differences": [{"kind": "changed", "path": "root['text']", "recorded": f"here is {NAME}",
                         "replayed": f"now {NAME}"}]}])
    replay_html = report.render_replay(db, run_id, tmp_path / "r.html")
    for path in (session_html, replay_html):
        _raw_free(path.read_text())
    async with Browser.launch(tmp_path) as browser:
        for path in (session_html, replay_html):
            shown = await _page_text(browser, path)
            _raw_free(shown)
            assert "txt.exe" not in shown


def test_the_console_show_and_check_show_bidi_controls_as_code_points(tmp_path):
    db, session = _session(tmp_path)
    lines: list[str] = []
    console = Console(echo=lines.append)
    console.echo(f"← {NAME}")
    assert lines == ["← invoice-⟨U+202E⟩exe.txt"]
    for args in (["show", "bidi"], ["check", "bidi"]):
        result = CliRunner().invoke(cli, [*args, "--db", str(tmp_path / "b.db")])
        assert result.exit_code in (0, 1), result.output
        assert "invoice-⟨U+202E⟩exe.txt" in result.output and not BIDI_CONTROLS.search(result.output), args
    # What is stored keeps the text as it was: only what is shown changes.
    stored = json.loads(db["activities"].get((session["id"], 2))["body"])
    assert NAME in stored["text"]
