"""The pytest plugin (botproxy/pytest_plugin.py), run by pytest itself through pytester.

The corpus is three conversations recorded with the real recorder (embedded mitmproxy) in front of
the bundled sample bot run as its own process (`python -m botproxy.sample_bot --port P --build 1`);
the inner pytest runs (in subprocesses, so the plugin is found by its `pytest11` entry point as users
get it) replay them against build 1 (the same: every item passes) and build 2 (which changes the
weather echo and the card: those items fail with their differences as the message).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import pick_free_port

from botproxy import store
from botproxy.record.mitm.proxy import ProxyConfig, RecordingProxy
from botproxy.record.session import LiveSession
from botproxy.standins.connector import ConnectorChannel

pytest_plugins = ["pytester"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # several pytest processes per test

CONVERSATIONS = {  # conversation id -> what the user says in it
    "hello-conv": ["hello", "good morning"],
    "weather-conv": ["what is the weather?"],  # build 2: "You said: what is the weather?!"
    "card-conv": ["card"],  # build 2: the card's title is "Sample card (build 2)"
}
WEATHER_DIFF = "changed root['text']: 'You said: what is the weather?' → 'You said: what is the weather?!'"


class SampleBotProcess:
    """`python -m botproxy.sample_bot` on a free port, ready once it logs that it listens."""

    def __init__(self, build: int) -> None:
        self.port = pick_free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/messages"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "botproxy.sample_bot", "--port", str(self.port), "--build", str(build)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        assert self.proc.stderr is not None
        seen = []
        for line in self.proc.stderr:  # blocks until a line or the end: no polling
            seen.append(line)
            if "Running on" in line:
                break
        else:
            raise RuntimeError(f"the sample bot (build {build}) did not start: {''.join(seen)[-2000:]}")
        # Keep reading its log, so a full pipe never blocks it.
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


@pytest.fixture(scope="module")
def bot1() -> Iterator[SampleBotProcess]:
    bot = SampleBotProcess(1)
    yield bot
    bot.stop()


@pytest.fixture(scope="module")
def bot2() -> Iterator[SampleBotProcess]:
    bot = SampleBotProcess(2)
    yield bot
    bot.stop()


async def _record(db_path: Path, bot_url: str, confdir: Path) -> dict:
    channel = ConnectorChannel()
    await channel.start()
    live = LiveSession(str(db_path), name="corpus", bot_url=bot_url, capture_mode="rewrite", source="record")
    proxy = RecordingProxy(ProxyConfig(bot_url=bot_url, listen="127.0.0.1:0", forward_listen=None,
                                       confdir=str(confdir)), live)
    await proxy.start()
    try:
        for conversation, texts in CONVERSATIONS.items():
            for text in texts:
                status, _ = await channel.send(proxy.endpoint, channel.activity(text=text,
                                                                                conversation_id=conversation))
                assert status < 300
    finally:
        summary = await proxy.stop()
        await channel.stop()
    return summary


@pytest.fixture(scope="module")
def corpus(bot1, tmp_path_factory) -> Path:
    """corpus.db: session `corpus`, the three conversations recorded through the recorder (build 1)."""
    folder = tmp_path_factory.mktemp("corpus")
    db_path = folder / "corpus.db"
    summary = asyncio.run(_record(db_path, bot1.url, folder / "mitmproxy"))
    assert summary["errors"] == 0
    db = store.open_db(db_path)
    session = store.resolve_session(db, "corpus")
    inbound = [a for a in store.iter_activities(db, session["id"]) if a["direction"] == "to_bot"]
    assert len(inbound) == 4  # not an empty corpus
    return db_path


@pytest.fixture
def project(pytester: pytest.Pytester, corpus: Path) -> pytest.Pytester:
    """A pytest project holding a copy of the corpus and one ordinary test of its own."""
    (pytester.path / "corpus.db").write_bytes(corpus.read_bytes())
    pytester.makepyfile(test_unit="def test_unit():\n    assert True\n")
    return pytester


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider", timeout=300)


def test_without_its_options_the_plugin_collects_nothing_and_imports_nothing_heavy(pytester):
    # Another botproxy table is no reason to collect anything.
    pytester.makefile(".toml", pyproject="[tool.botproxy.replay]\nignore = []\n")
    pytester.makepyfile(test_light="""
        import sys

        def test_light(request):
            assert request.config.pluginmanager.has_plugin("botproxy")  # the pytest11 entry point
            heavy = [m for m in ("mitmproxy", "botproxy.replay.driver", "botproxy.store", "sqlite_utils", "aiohttp")
                     if m in sys.modules]
            assert heavy == []
    """)
    result = _run(pytester, "-v")
    result.assert_outcomes(passed=1)
    assert "::corpus" not in result.stdout.str()


def test_build_1_passes_every_conversation(project, bot1):
    result = _run(project, "--botproxy-db", "corpus.db", "--botproxy-bot", bot1.url, "-v")
    result.assert_outcomes(passed=4)  # three conversations and test_unit
    result.stdout.fnmatch_lines(["corpus.db::corpus::hello-conv PASSED*", "corpus.db::corpus::weather-conv PASSED*",
                                 "corpus.db::corpus::card-conv PASSED*"])


def test_build_2_fails_with_the_differences_as_the_message_and_junit_has_the_items(project, bot2):
    result = _run(project, "--botproxy-db", "corpus.db", "--botproxy-bot", bot2.url, "--junitxml", "out.xml")
    result.assert_outcomes(passed=2, failed=2)
    out = result.stdout.str()
    assert "Traceback" not in out and "replay.py" not in out  # the failure explains itself, no stack
    assert "conversation 'weather-conv' of session 'corpus': 1 of 1 turn regressed against" in out
    assert WEATHER_DIFF in out
    assert "changed root['attachments'][0]['content']['title']: 'Sample card' → 'Sample card (build 2)'" in out
    result.stdout.fnmatch_lines(["FAILED corpus.db::corpus::weather-conv*", "FAILED corpus.db::corpus::card-conv*"])
    cases = {c.get("name"): c for c in ET.parse(project.path / "out.xml").getroot().iter("testcase")}
    assert set(cases) == {"hello-conv", "weather-conv", "card-conv", "test_unit"}
    assert cases["hello-conv"].get("classname") == "corpus.db.corpus"
    assert cases["hello-conv"].find("failure") is None
    failure = cases["weather-conv"].find("failure")
    assert failure is not None and WEATHER_DIFF in failure.get("message", "")


def test_k_selects_and_x_stops(project, bot2, corpus):
    only = _run(project, "--botproxy-db", "corpus.db", "--botproxy-bot", bot2.url, "-k", "weather")
    only.assert_outcomes(failed=1, deselected=3)
    # A corpus outside the paths pytest collects is added, and -k applies to it too.
    elsewhere = _run(project, "--botproxy-db", str(corpus), "--botproxy-bot", bot2.url, "-k", "weather")
    elsewhere.assert_outcomes(failed=1, deselected=3)
    elsewhere.stdout.fnmatch_lines(["FAILED *corpus0/corpus.db::corpus::weather-conv*"])
    stopped = _run(project, "--botproxy-db", "corpus.db", "--botproxy-bot", bot2.url, "-x", "-m", "botproxy")
    stopped.assert_outcomes(passed=1, failed=1, deselected=1)  # hello passes, weather fails, card never runs
    assert "card-conv" not in stopped.stdout.str()
    rerun = _run(project, "--botproxy-bot", bot2.url, "--botproxy-db", "corpus.db", "corpus.db::corpus::card-conv")
    rerun.assert_outcomes(failed=1)  # a failed item's node id runs it again


def test_the_project_config_table_and_a_baseline(project, bot1, bot2):
    project.makefile(".toml", pyproject=f"""
        [tool.botproxy.pytest]
        db = "data/corpus.db"
        bot = "{bot2.url}"
        sessions = ["corpus"]
    """)
    (project.path / "data").mkdir()
    (project.path / "corpus.db").rename(project.path / "data" / "corpus.db")
    plain = _run(project)
    plain.assert_outcomes(passed=2, failed=2)  # no option: the table's db and bot
    narrowed = _run(project, "test_unit.py")
    narrowed.assert_outcomes(passed=1)  # a path named that does not hold the corpus: that path only
    # Build 2 as its own baseline: what it differs in from the recording is noise, so nothing regresses.
    noise = _run(project, "--botproxy-baseline", bot2.url, "-k", "weather")
    noise.assert_outcomes(passed=1, deselected=3)


def test_bad_input_is_one_line(project, bot1, free_port):
    missing = _run(project, "--botproxy-db", "nothere.db", "--botproxy-bot", bot1.url)
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["ERROR: botproxy: --botproxy-db */nothere.db: no such file*"])
    unknown = _run(project, "--botproxy-db", "corpus.db", "--botproxy-bot", bot1.url, "--botproxy-session", "nope")
    assert unknown.ret == pytest.ExitCode.USAGE_ERROR
    unknown.stderr.fnmatch_lines(["ERROR: botproxy: no session 'nope' in *corpus.db; recent sessions: corpus*"])
    (project.path / "junk.db").write_bytes(b"not a database" * 100)
    junk = _run(project, "--botproxy-db", "junk.db", "--botproxy-bot", bot1.url)
    assert junk.ret == pytest.ExitCode.USAGE_ERROR  # the option to change is pytest's, not the CLI's --db
    junk.stderr.fnmatch_lines(["ERROR: botproxy: *junk.db is damaged or not a botproxy database*pass --botproxy-db *"])
    no_bot = _run(project, "--botproxy-db", "corpus.db")
    assert no_bot.ret == pytest.ExitCode.USAGE_ERROR
    no_bot.stderr.fnmatch_lines(["ERROR: botproxy: --botproxy-db needs --botproxy-bot URL*"])
    down = f"http://127.0.0.1:{free_port()}/api/messages"
    result = _run(project, "--botproxy-db", "corpus.db", "--botproxy-bot", down, "-k", "hello")
    result.assert_outcomes(failed=1, deselected=3)
    out = result.stdout.str()
    assert "Traceback" not in out and "replay.py" not in out
    result.stdout.fnmatch_lines([f"botproxy: cannot reach the bot at {down} (connection refused); is it running?"])
    for outcome in (missing, unknown, no_bot):
        assert "Traceback" not in outcome.stderr.str() + outcome.stdout.str()


def test_the_recorder_fixture_records_a_conversation_that_then_replays(pytester, bot1, bot2):
    pytester.makepyfile(test_own=f"""
        import pytest
        from botproxy.standins.connector import ConnectorChannel

        @pytest.mark.asyncio
        async def test_weather(botproxy_recorder):
            recording = botproxy_recorder.start(name="own", db="own.db")  # the bot: --botproxy-bot
            channel = ConnectorChannel()
            await channel.start()
            try:
                status, _ = await channel.send(recording.url, channel.activity(text="what is the weather?",
                                                                               conversation_id="own-conv"))
            finally:
                summary = await recording.astop()
                await channel.stop()
            assert status < 300
            assert summary["errors"] == 0
            assert [c.body["text"] for c in channel.calls] == ["You said: what is the weather?"]
            texts = [a["text"] for a in recording.activities()]
            assert texts == ["what is the weather?", "You said: what is the weather?"]
            assert recording.session["name"] == "own"

        def test_left_running_is_stopped_at_teardown(botproxy_recorder):
            botproxy_recorder.start("{bot1.url}")
    """)
    recorded = _run(pytester, "--botproxy-bot", bot1.url)
    recorded.assert_outcomes(passed=2)
    assert "botproxy_recorder" not in recorded.stdout.str()  # no warning: everything stored, stopped cleanly
    db = store.open_db(pytester.path / "own.db")
    assert [s["name"] for s in store.list_sessions(db)] == ["own"]
    (pytester.path / "test_own.py").unlink()
    replayed = _run(pytester, "--botproxy-db", "own.db", "--botproxy-bot", bot2.url)
    replayed.assert_outcomes(failed=1)
    assert WEATHER_DIFF in replayed.stdout.str()
    same = _run(pytester, "--botproxy-db", "own.db", "--botproxy-bot", bot1.url)
    same.assert_outcomes(passed=1)


def test_replay_of_chosen_conversations_only(corpus, bot1, tmp_path):
    from botproxy.errors import UsageError
    from botproxy.replay.driver import replay_session

    db = tmp_path / "copy.db"
    db.write_bytes(corpus.read_bytes())
    result = asyncio.run(replay_session(str(db), "corpus", bot1.url, conversations=["hello-conv"]))
    assert [(t.turn.conversation_id, t.status) for t in result.turns] == [("hello-conv", "same")] * 2
    with pytest.raises(UsageError, match="session 'corpus' has no conversation 'nope'"):
        asyncio.run(replay_session(str(db), "corpus", bot1.url, conversations=["nope"]))


@pytest.mark.parametrize("word", ["--botproxy-db", "--botproxy-bot", "--botproxy-baseline", "--botproxy-session",
                                  "[tool.botproxy.pytest]", "botproxy_recorder"])
def test_the_readme_documents_the_plugin(word):
    from botproxy import pytest_plugin

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("## Replaying in pytest"):]
    assert word in section
    for key in pytest_plugin.CONFIG_KEYS:
        assert f"| `{key}` |" in section or f"`{key}` (a list)" in section


def test_a_conversation_the_recording_never_got_through_is_skipped(pytester, bot1, free_port, tmp_path):
    async def record_with_the_bot_down() -> None:
        down = f"http://127.0.0.1:{free_port()}/api/messages"
        channel = ConnectorChannel()
        await channel.start()
        live = LiveSession(str(pytester.path / "down.db"), name="down", bot_url=down, capture_mode="rewrite")
        proxy = RecordingProxy(ProxyConfig(bot_url=down, listen="127.0.0.1:0", forward_listen=None,
                                           confdir=str(tmp_path / "mitmproxy")), live)
        await proxy.start()
        try:
            status, _ = await channel.send(proxy.endpoint, channel.activity(text="hello", conversation_id="lost"))
            assert status == 502  # the recorder answered for the bot it could not reach
        finally:
            await proxy.stop()
            await channel.stop()

    asyncio.run(record_with_the_bot_down())
    result = _run(pytester, "--botproxy-db", "down.db", "--botproxy-bot", bot1.url, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED *nothing to compare: incomplete recording: the bot was not reached*"])
