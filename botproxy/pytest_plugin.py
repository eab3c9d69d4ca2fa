"""botproxy's pytest plugin (entry point `pytest11`): one test item per recorded conversation.

    pytest --botproxy-db corpus.db --botproxy-bot http://127.0.0.1:3979/api/messages

or the same keys in `[tool.botproxy.pytest]` of pyproject.toml / `[pytest]` of botproxy.toml (found as
every botproxy table is, `botproxy.settings.find_table`, from the directory pytest runs in):

    [tool.botproxy.pytest]
    db = "tests/corpus.db"          # relative to the file that says it
    bot = "http://127.0.0.1:3979/api/messages"
    baseline = "http://127.0.0.1:3978/api/messages"   # optional: what it differs in is noise
    sessions = ["login-flow"]       # optional: default every recorded or imported session

The database is a collector, `<db>::<session>::<conversation>`, so `-k`, `-x`, `--junitxml`, `--lf` and
node ids work as for any test. It is collected when pytest walks it (it lies under the paths pytest
collects, or is named on the command line); with `--botproxy-db` given on the command line, or when
pytest runs its default paths, it is added even when it lies elsewhere. Running an item replays that
conversation (`replay.replay_session(conversations=...)`: the noise rules, ignore paths and checks of
`botproxy replay`), and fails with the regressed turns' differences as `botproxy replay` prints them.
The replays' own sessions and runs are written to a copy of the database in pytest's temporary
directory (named in the failure), not to the corpus.

Installed wherever botproxy is, so without `--botproxy-db` or a `db` key it does nothing: no
collection, and nothing heavier than botproxy.settings is imported (replay and mitmproxy load only when
an item runs or a test uses the `botproxy_recorder` fixture, botproxy/pytest_recorder.py).
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .errors import BotproxyError
from .settings import DEFAULTS, find_table

CONFIG_KEYS = ("db", "bot", "baseline", "sessions")
MARKER = "botproxy"


@dataclass
class Settings:
    db: Path | None = None
    bot: str | None = None
    baseline: str | None = None
    sessions: tuple[str, ...] = ()
    explicit: bool = False  # --botproxy-db on the command line: collect it wherever it lies
    start_dir: Path = field(default_factory=Path.cwd)  # where botproxy's project config is looked up


@dataclass
class _State:
    settings: Settings
    ignore: tuple[str, ...]
    collected: bool = False
    scratch: Path | None = None  # the copy of the database the replays write to
    check_config: Any = None
    checks_loaded: bool = False


_STATE = pytest.StashKey[_State]()
_SETTINGS = pytest.StashKey[Settings]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("botproxy", "botproxy: replay recorded conversations against a bot")
    group.addoption("--botproxy-db", metavar="PATH", help="A botproxy database: one test per recorded conversation.")
    group.addoption("--botproxy-bot", metavar="URL", help="The messaging endpoint of the build to test.")
    group.addoption("--botproxy-baseline", metavar="URL",
                    help="A build that behaves like the recording: what it differs in too is noise.")
    group.addoption("--botproxy-session", metavar="NAME", action="append", default=[],
                    help="Replay only this session (name or id; repeatable) [default: every recorded or imported].")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: a conversation replayed by botproxy (select with -m {MARKER})")
    settings = _settings(config)
    config.stash[_SETTINGS] = settings
    if settings.db is None:
        return
    if not settings.bot:
        raise pytest.UsageError("botproxy: --botproxy-db needs --botproxy-bot URL (the build to test), or bot = "
                                "\"URL\" in [tool.botproxy.pytest]")
    _check_sessions(settings)
    config.stash[_STATE] = _State(settings, _replay_ignore(settings.start_dir))


def _settings(config: pytest.Config) -> Settings:
    """The command line's options over the project's `[tool.botproxy.pytest]` table."""
    start = Path(config.invocation_params.dir)
    try:
        table, source = find_table("pytest", start)
    except BotproxyError as exc:
        raise pytest.UsageError("botproxy: " + str(exc).replace("pass --db", "pass --botproxy-db")) from None
    table = table or {}
    unknown = sorted(set(table) - set(CONFIG_KEYS))
    if unknown:
        raise pytest.UsageError(f"botproxy: {source}: unknown key(s) {', '.join(unknown)} "
                                f"(expected {', '.join(CONFIG_KEYS)})")
    for key in ("db", "bot", "baseline"):
        if key in table and not isinstance(table[key], str):
            raise pytest.UsageError(f"botproxy: {source}: {key} must be a string, not {table[key]!r:.40}")
    sessions = table.get("sessions", [])
    if not isinstance(sessions, list) or not all(isinstance(s, str) for s in sessions):
        raise pytest.UsageError(f"botproxy: {source}: sessions must be a list of names, e.g. [\"login-flow\"]")
    option = config.getoption
    db_option = option("botproxy_db")
    db: Path | None = None
    if db_option:
        db = start / db_option
    elif table.get("db"):
        db = _config_dir(source, start) / table["db"]
    return Settings(
        db=db.resolve() if db else None,
        bot=option("botproxy_bot") or table.get("bot"),
        baseline=option("botproxy_baseline") or table.get("baseline"),
        sessions=tuple(option("botproxy_session") or sessions),
        explicit=bool(db_option),
        start_dir=start,
    )


def _config_dir(source: str, fallback: Path) -> Path:
    """The folder of the file a table came from (`find_table` says "<file> [<table>]")."""
    path, sep, _ = source.rpartition(" [")
    return Path(path).parent if sep else fallback


def _replay_ignore(start: Path) -> tuple[str, ...]:
    from .settings import load_replay_config

    try:
        return load_replay_config(start).ignore
    except BotproxyError as exc:
        raise pytest.UsageError("botproxy: " + str(exc).replace("pass --db", "pass --botproxy-db")) from None


def _check_sessions(settings: Settings) -> None:
    """Refuse a missing or foreign database and an unknown session now, as a usage error."""
    assert settings.db is not None
    if not settings.db.exists():
        raise pytest.UsageError(f"botproxy: --botproxy-db {settings.db}: no such file (record a corpus with "
                                "botproxy record, or import one with botproxy import)")
    try:
        sessions = _sessions(settings)
    except BotproxyError as exc:
        raise pytest.UsageError("botproxy: " + str(exc).replace("pass --db", "pass --botproxy-db")) from None
    if not sessions:
        raise pytest.UsageError(f"botproxy: {settings.db} holds no recorded or imported session to replay")


def _sessions(settings: Settings) -> list[dict[str, Any]]:
    """The sessions to replay: those named, else every recorded or imported one, oldest first."""
    from . import store

    assert settings.db is not None
    db = store.open_db(settings.db)
    try:
        if settings.sessions:
            return [store.resolve_session(db, ref) for ref in dict.fromkeys(settings.sessions)]
        return [s for s in store.list_sessions(db) if (s.get("source") or "record") != "replay"]
    finally:
        db.close()


def _conversations(settings: Settings, session_id: int) -> list[dict[str, Any]]:
    """A session's conversations as the replay plans them (`replay.load_plan`): each with an inbound
    activity, in order of the first one, without reading a body."""
    from . import store

    assert settings.db is not None
    db = store.open_db(settings.db)
    try:
        return store.inbound_conversations(db, session_id)
    finally:
        db.close()


# -- collection --------------------------------------------------------------------------------------


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    state = parent.config.stash.get(_STATE, None)
    if state is None or file_path.resolve() != state.settings.db:
        return None
    state.collected = True
    return CorpusFile.from_parent(parent, path=file_path)


@pytest.hookimpl(tryfirst=True)  # before -k / -m deselect, so they apply to these items too
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash.get(_STATE, None)
    if state is None or state.collected:
        return
    if not state.settings.explicit and config.args_source == pytest.Config.ArgsSource.ARGS:
        return  # paths named on the command line that do not hold the corpus: the user wants those only
    assert state.settings.db is not None
    state.collected = True
    corpus = CorpusFile.from_parent(session, path=state.settings.db, nodeid=_nodeid(config, state.settings.db))
    items.extend(session.genitems(corpus))


def _nodeid(config: pytest.Config, path: Path) -> str:
    try:
        return path.relative_to(config.rootpath).as_posix()
    except ValueError:
        return path.name


class CorpusFile(pytest.File):
    """A botproxy database: a collector per session to replay."""

    def collect(self) -> Iterator[pytest.Collector]:
        settings = self.config.stash[_STATE].settings
        for row in _sessions(settings):
            yield SessionNode.from_parent(self, name=row["name"], recorded=row)


class SessionNode(pytest.Collector):
    """A recorded session: an item per conversation."""

    def __init__(self, *, recorded: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.session_row = recorded

    def collect(self) -> Iterator[pytest.Item]:
        settings = self.config.stash[_STATE].settings
        for conversation in _conversations(settings, self.session_row["id"]):
            item = ConversationItem.from_parent(self, name=_item_name(conversation["conversation_id"]),
                                                conversation=conversation)
            item.add_marker(MARKER)
            yield item


def _item_name(conversation_id: str) -> str:
    """A node id part: no whitespace (a -k word) and no "::" (the node id separator)."""
    return re.sub(r"\s+", "_", conversation_id.strip()).replace("::", ":") or "no-conversation"


class ConversationChanged(Exception):
    """A conversation's replay regressed; the message is its turns' differences."""


class ConversationItem(pytest.Item):
    """One recorded conversation, replayed against the bot under test."""

    def __init__(self, *, conversation: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conversation_id: str = conversation["conversation_id"]
        self.planned_turns: int = conversation["turns"]

    @property
    def session_row(self) -> dict[str, Any]:
        assert isinstance(self.parent, SessionNode)
        return self.parent.session_row

    def runtest(self) -> None:
        state = self.config.stash[_STATE]
        result = asyncio.run(_replay(state, self.config, self.session_row, self.conversation_id))
        data = result.to_json()
        turns = data["turns"]
        if turns and all(t["status"] == "error" and not t["regressed"] for t in turns):
            pytest.skip(f"nothing to compare: {turns[0]['error']}")
        if any(t["regressed"] for t in turns):
            raise ConversationChanged("\n".join(failure_lines(data, state.scratch)))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, ConversationChanged):
            return str(excinfo.value)
        if isinstance(excinfo.value, BotproxyError):
            return f"botproxy: {excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.session_row['name']}::{self.name}"


async def _replay(state: _State, config: pytest.Config, session: dict[str, Any], conversation: str) -> Any:
    from .replay.driver import replay_session
    from .replay.plan import ReplayOptions

    settings = state.settings
    assert settings.bot is not None
    if not state.checks_loaded:
        state.check_config = _check_config(settings.start_dir)
        state.checks_loaded = True
    return await replay_session(
        str(_scratch(state, config)), str(session["id"]), settings.bot, baseline_url=settings.baseline,
        options=ReplayOptions(ignore=state.ignore, check_config=state.check_config), conversations=[conversation],
    )


def _check_config(start: Path) -> Any:
    try:
        from .checks import load_config
    except ImportError:  # the rule engine is optional: the replay compares activities only
        return None
    return load_config(start)


def _scratch(state: _State, config: pytest.Config) -> Path:
    """A copy of the corpus for the replays to write their sessions and runs to (made once a run)."""
    if state.scratch is None:
        from . import store

        assert state.settings.db is not None
        factory = getattr(config, "_tmp_path_factory", None)  # pytest's tmp_path_factory, before any fixture
        folder = factory.mktemp("botproxy") if factory is not None else Path(tempfile.mkdtemp(prefix="botproxy-"))
        scratch = folder / state.settings.db.name
        source, target = store.open_db(state.settings.db), store.open_db(scratch, create=True)
        try:
            source.conn.backup(target.conn)
        finally:
            source.close()
            target.close()
        state.scratch = scratch
    return state.scratch


def failure_lines(data: dict[str, Any], scratch: Path | None) -> list[str]:
    """A regressed conversation's failure message: what `botproxy replay` prints for its turns."""
    from .present.replay_text import turn_lines
    from .present.words import counted
    from .replay.diff import noise_label

    run, summary = data["run"], data["summary"]
    against = run["candidate_url"] + (f" (baseline {run['baseline_url']})" if run["baseline_url"] else "")
    conversation = data["turns"][0]["conversation_id"] if data["turns"] else ""
    lines = [f"conversation {conversation!r} of session {data['session']['name']!r}: {summary['regressed']} of "
             f"{counted(summary['turns'], 'turn')} regressed against {against}"]
    for turn in data["turns"]:
        if turn["status"] != "same":
            lines += turn_lines(turn)
    if run["noise_paths"]:
        lines.append("  noise (the baseline differs there too, not counted): "
                     + ", ".join(noise_label(key) for key in run["noise_paths"]))
    where = f" --db {scratch}" if scratch else ""
    lines.append(f"details: botproxy show {run['candidate_session']['name']}{where}")
    return lines


# -- the recording fixture ---------------------------------------------------------------------------


@pytest.fixture
def botproxy_recorder(request: pytest.FixtureRequest, tmp_path: Path,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Record a test's own conversation through botproxy: ``recording = botproxy_recorder.start(bot_url)``,
    post to ``recording.url``; ``recording.stop()`` returns the session (botproxy/pytest_recorder.py)."""
    from .pytest_recorder import Recorder

    settings = request.config.stash.get(_SETTINGS, None)
    recorder = Recorder(
        default_bot=settings.bot if settings else None,
        default_name=_item_name(request.node.name),
        db_path=tmp_path / DEFAULTS.db,
        confdir=tmp_path_factory.getbasetemp() / "botproxy-mitmproxy",  # its CA is made once a run
    )
    try:
        yield recorder
    finally:
        recorder.close()
