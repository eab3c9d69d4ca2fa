"""The `botproxy_recorder` fixture's recorder: `botproxy record`, embedded, for one test's conversation.

    def test_welcome(botproxy_recorder):
        recording = botproxy_recorder.start("http://127.0.0.1:3978/api/messages")
        post_activities_to(recording.url)       # instead of the bot's endpoint
        session = recording.stop()              # everything stored; the session's summary
        assert recording.activities()

The recorder (mitmproxy, the same `RecordingProxy` and `LiveSession` as `botproxy record`, with live
checks) runs on an event loop of its own, in a thread, on free loopback ports: a synchronous test and
an async one (whose own loop may serve the bot or the channel) both just post to `url`. mitmproxy
allows one master per process, so one recording runs at a time. It fails open as the recorder does:
the traffic goes through whatever happens to its storage, and what could not be stored is in the
summary (and a pytest warning), not a failed test. Whatever is still running at teardown is stopped.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest

from .errors import BotproxyError

T = TypeVar("T")
START_TIMEOUT = 60.0  # seconds; mitmproxy makes its CA on first start, slow on a loaded machine
STOP_TIMEOUT = 60.0

_one_at_a_time = threading.Lock()  # mitmproxy: one live master per process


class Recording:
    """One running (then stopped) recording: post to `url`; `stop()` stores everything."""

    def __init__(self, bot_url: str, name: str, db_path: Path, confdir: Path) -> None:
        self.bot_url = bot_url
        self.name = name
        self.db_path = db_path
        self.confdir = confdir
        self.url = ""  # the recorder's endpoint: where the test posts instead of the bot
        self.summary: dict[str, Any] | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"botproxy-recorder-{name}", daemon=True)
        self._proxy: Any = None
        self._holds_lock = True  # Recorder.start took `_one_at_a_time` for it

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def _start(self) -> None:
        from .checks import Engine
        from .record.mitm.proxy import ProxyConfig, RecordingProxy
        from .record.session import LiveSession

        try:
            config = ProxyConfig(bot_url=self.bot_url, listen="127.0.0.1:0", forward_listen=None,
                                 confdir=str(self.confdir))
            live = LiveSession(str(self.db_path), name=self.name, engine=Engine(), bot_url=self.bot_url,
                               capture_mode="rewrite", source="record",
                               notes="recorded by the botproxy_recorder fixture")
            proxy = RecordingProxy(config, live)  # validates the URL and the confdir first
            self._thread.start()
            self._call(proxy.start(), START_TIMEOUT)
        except BaseException:
            self._end_loop()
            raise
        self._proxy = proxy
        self.url = proxy.endpoint

    def stop(self) -> dict[str, Any]:
        """Stop listening, store everything, and return the session's summary (`botproxy record`'s)."""
        if self.summary is not None:
            return self.summary
        try:
            self.summary = self._call(self._proxy.stop(), STOP_TIMEOUT)
        finally:
            self._end_loop()
        if self.summary.get("problems"):
            warnings.warn(pytest.PytestWarning(f"botproxy_recorder {self.name!r}: "
                                               + "; ".join(self.summary["problems"])), stacklevel=2)
        return self.summary

    async def astop(self) -> dict[str, Any]:
        """`stop()` for an async test, without blocking its event loop (which may serve the bot)."""
        return await asyncio.to_thread(self.stop)

    def _end_loop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(STOP_TIMEOUT)
        if not self._thread.is_alive():
            self._loop.close()
        if self._holds_lock:
            self._holds_lock = False
            _one_at_a_time.release()

    @property
    def session(self) -> dict[str, Any]:
        """The stored session row (after `stop()`)."""
        from . import store

        db = store.open_db(self.db_path)
        try:
            return store.session_summary(store.resolve_session(db, self.name))
        finally:
            db.close()

    def activities(self) -> list[dict[str, Any]]:
        """The session's stored activities, in order (`botproxy show --json`'s)."""
        from . import store

        db = store.open_db(self.db_path)
        try:
            return list(store.iter_activities(db, store.resolve_session(db, self.name)["id"]))
        finally:
            db.close()


class Recorder:
    """What the fixture gives a test: `start()` a recording; teardown stops what still runs."""

    def __init__(self, *, default_bot: str | None, default_name: str, db_path: Path, confdir: Path) -> None:
        self.default_bot = default_bot
        self.default_name = default_name
        self.db_path = db_path
        self.confdir = confdir
        self.recordings: list[Recording] = []

    def start(self, bot_url: str | None = None, *, name: str | None = None,
              db: str | Path | None = None) -> Recording:
        """Record traffic to `bot_url` (default: --botproxy-bot or `bot` of [tool.botproxy.pytest]) as
        session `name` (default: the test's name) in `db` (default: a botproxy.db in the test's tmp_path)."""
        url = bot_url or self.default_bot
        if not url:
            pytest.fail("botproxy_recorder.start(): which bot? pass its URL, or give --botproxy-bot URL "
                        "(or bot = \"URL\" in [tool.botproxy.pytest])", pytrace=False)
        if not _one_at_a_time.acquire(blocking=False):
            pytest.fail("botproxy_recorder: a recording is already running (one at a time: stop it first)",
                        pytrace=False)
        count = len(self.recordings)
        recording = Recording(url, name or (self.default_name + (f"-{count + 1}" if count else "")),
                              Path(db) if db else self.db_path, self.confdir)
        try:
            recording._start()
        except BotproxyError as exc:  # _start has let the lock go
            pytest.fail(f"botproxy_recorder: {exc}", pytrace=False)
        self.recordings.append(recording)
        return recording

    def close(self) -> None:
        """Teardown: stop every recording still running; a failure to is a warning, never the test's."""
        for recording in self.recordings:
            if recording.summary is None:
                try:
                    recording.stop()
                except Exception as exc:  # fail open: the test's own outcome stands
                    warnings.warn(pytest.PytestWarning(f"botproxy_recorder {recording.name!r} did not stop "
                                                       f"cleanly: {exc}"), stacklevel=1)
