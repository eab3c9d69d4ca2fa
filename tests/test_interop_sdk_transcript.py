"""A transcript written by the SDK's own TranscriptLoggerMiddleware imports and replays.

The sample bot (a Bot Framework SDK bot) runs with `TranscriptLoggerMiddleware` and a small file store
of our own; the script of `botproxy demo` talks to it through the local Bot Connector stand-in; the
files it wrote are imported and replayed against the same build (every turn `same`) and build 2 (the
turns build 2 changes on purpose come back `changed`).
"""

import json
from pathlib import Path

from botbuilder.core import TranscriptLogger, TranscriptLoggerMiddleware
from botbuilder.schema import Activity

from botproxy import store
from botproxy.demo import _converse
from botproxy.interop import import_files
from botproxy.replay.driver import replay_session
from botproxy.replay.plan import ReplayOptions
from botproxy.sample_bot import start_bot
from botproxy.standins.connector import ConnectorChannel

QUIET = 150


class FileTranscriptStore(TranscriptLogger):
    """One `<conversation>.transcript` per conversation, a bare JSON array appended as activities come."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def log_activity(self, activity: Activity) -> None:
        path = self.folder / f"{activity.conversation.id}.transcript"
        activities = json.loads(path.read_text("utf-8")) if path.exists() else []
        activities.append(activity.serialize())
        path.write_text(json.dumps(activities, indent=2), "utf-8")


async def test_an_sdk_transcript_imports_and_replays_same_against_its_build_and_changed_against_another(tmp_path):
    folder = tmp_path / "transcripts"
    folder.mkdir()
    bot = await start_bot(build=1, middleware=[TranscriptLoggerMiddleware(FileTranscriptStore(folder))])
    channel = ConnectorChannel(channel_id="emulator")
    await channel.start()
    try:
        await _converse(channel, bot.url, bot.proactive_done)
    finally:
        await channel.stop()
        await bot.stop()
    files = sorted(folder.glob("*.transcript"))
    assert len(files) == 1
    logged = json.loads(files[0].read_text())
    assert {a["type"] for a in logged} >= {"message", "messageUpdate", "messageDelete", "invokeResponse"}

    db_path = str(tmp_path / "sdk.db")
    summary = import_files(db_path, files, "sdk")
    db = store.open_db(db_path)
    activities = list(store.iter_activities(db, summary["id"]))
    routes = [a["route"] for a in activities if a["direction"] == "from_bot"]
    assert {"update_activity", "delete_activity", "invoke_response", "expected_replies"} <= set(routes)
    assert all(a["turn_seq"] is not None for a in activities if a["text"] == "You said: hello")

    build1 = await start_bot(build=1)
    try:
        same = await replay_session(db_path, "sdk", build1.url, options=ReplayOptions(quiet_ms=QUIET))
    finally:
        await build1.stop()
    assert len(same.turns) == 10
    assert [(t.turn.text, t.status) for t in same.turns if t.status != "same"] == []

    build2 = await start_bot(build=2)
    try:
        changed = await replay_session(db_path, "sdk", build2.url, options=ReplayOptions(quiet_ms=QUIET))
    finally:
        await build2.stop()
    turns = {t.turn.text: t.status for t in changed.turns}
    assert {text for text, status in turns.items() if status == "changed"} == {
        "conversationUpdate",
        "card",
        "typing",
        "two",
        "what is the weather?",
    }
    assert changed.regressed

