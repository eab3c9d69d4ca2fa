"""Replay compares a stream by its final activity and its structure, not chunk by chunk: a stream of a real
Agents SDK bot replayed against the same build is `same` (however many chunks it sent this time), and
against a build that streams another text it is `changed` at the final's text."""

from __future__ import annotations

import re
from typing import Any

import pytest
from agentskit import CHANGED_TEXT, SDKS, STREAMED_TEXT, agents_bot
from checkkit import record_session
from conftest import pick_free_port
from test_report import Page

from botproxy import store
from botproxy.present import report
from botproxy.replay import diff
from botproxy.replay.driver import replay_session
from botproxy.replay.plan import ReplayOptions
from botproxy.standins.connector import ConnectorChannel

QUIET = 300  # ms; a stream's chunks are ~1 s apart on Teams, but the turn ends with the bot's HTTP answer


@pytest.mark.slow
@pytest.mark.parametrize("sdk", SDKS)
async def test_a_stream_replays_same_against_its_build_and_changed_against_another_text(tmp_path, sdk):
    channel = ConnectorChannel(channel_id="msteams")
    await channel.start()
    try:
        async with agents_bot(sdk, pick_free_port()) as bot_url:
            async with record_session(tmp_path, bot_url, name="streams") as rec:
                conversation = {"id": "conv-1", "conversationType": "personal", "tenantId": "t1"}
                for text in ("stream", "card"):
                    activity = channel.activity(text=text, conversation_id="conv-1", conversation=conversation)
                    status, _ = await channel.send(rec.endpoint, activity)
                    assert status < 300
            same = await replay_session(rec.db_path, "streams", bot_url, options=ReplayOptions(quiet_ms=QUIET))
    finally:
        await channel.stop()
    assert [t.status for t in same.turns] == ["same", "same"], [t.differences for t in same.turns]
    recorded = same.turns[0].recorded
    assert len(recorded) >= 3 and recorded[-1]["text"] == STREAMED_TEXT  # several chunks and the final

    async with agents_bot(sdk, pick_free_port(), build=2) as changed_url:
        changed = await replay_session(rec.db_path, "streams", changed_url, options=ReplayOptions(quiet_ms=QUIET))
    stream_turn, card_turn = changed.turns
    assert stream_turn.status == "changed" and card_turn.status == "same"
    counted = [(d.kind, d.path, d.recorded, d.replayed) for d in stream_turn.differences if not d.noise]
    assert counted == [("changed", "root['text']", STREAMED_TEXT, CHANGED_TEXT)], counted

    # the replay report draws each side's stream as one bubble, its changed text highlighted
    html = report.render_replay(store.open_db(rec.db_path), changed.run_id, tmp_path / "replay.html").read_text()
    turn = html[html.index('data-status="changed"') : html.index('data-status="same"')]
    bubbles = [a for t, a in Page(turn).tags if t == "div" and "k-stream" in (a.get("class") or "")]
    assert [("mark-changed" in (b.get("class") or "")) for b in bubbles] == [True, True]
    # (the change marked word by word: each side's text reads whole, what the other lacks in <del>/<ins>)
    assert turn.count('class="text hl tdiff"') == 2
    texts = re.findall(r'<div class="text hl tdiff">(.*?)</div>', turn)
    assert [Page(t).all_text() for t in texts] == [STREAMED_TEXT, CHANGED_TEXT] and "<ins>cat</ins>" in texts[1]


# -- the pre-alignment step, on its own --------------------------------------------------------------------


def chunk(seq: int, kind: str, text: str, number: int | None, stream_id: str | None = "s-1") -> dict[str, Any]:
    info: dict[str, Any] = {"type": "streaminfo", "streamType": kind}
    if number is not None:
        info["streamSequence"] = number
    if stream_id is not None:
        info["streamId"] = stream_id
    body = {"type": "message" if kind == "final" else "typing", "text": text, "entities": [info]}
    return {"seq": seq, "route": "reply_to_activity", "text": text, "activity_id": f"srv-{seq}", "body": body}


def stream(texts: list[str], final: str, informative: str = "Looking...") -> list[dict[str, Any]]:
    acts = [chunk(1, "informative", informative, 1, None)]
    acts += [chunk(n + 2, "streaming", t, n + 2, "srv-1") for n, t in enumerate(texts)]
    acts.append(chunk(len(texts) + 2, "final", final, None, "srv-1"))
    return acts


def compare(recorded: list[dict[str, Any]], replayed: list[dict[str, Any]]) -> list[tuple[str, str]]:
    views = [diff.collapse_streams(acts, [diff.comparable(a) for a in acts]) for acts in (recorded, replayed)]
    return [(d.kind, d.path) for d in diff.diff_turn(*views)]


def test_chunk_counts_are_timing_not_a_difference():
    assert compare(stream(["A", "A b"], "A b c."), stream(["A b"], "A b c.")) == []
    assert compare(stream(["A", "A b"], "A b c."), stream(["A", "A b", "A b c"], "A b c.")) == []


def test_the_final_text_and_the_informative_texts_are_compared():
    assert compare(stream(["A"], "A b."), stream(["A"], "A c.")) == [("changed", "root['text']")]
    assert compare(stream(["A"], "A b."), stream(["A"], "A b.", "Searching...")) == [
        ("changed", "root['@stream']['informative'][0]")
    ]


def test_a_stream_that_lost_its_final_is_a_different_activity_and_the_reply_after_it_keeps_its_place():
    reply = {"seq": 9, "route": "reply_to_activity", "text": "bye", "activity_id": "srv-9",
             "body": {"type": "message", "text": "bye"}}
    unfinished = stream(["A", "A b"], "A b.")[:-1]  # chunks, no final: its view is the last chunk's (typing)
    assert compare([*stream(["A"], "A b."), reply], [*unfinished, reply]) == [("missing", "[0]"), ("extra", "[0]")]
