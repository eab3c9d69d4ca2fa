"""The botproxy command line: thin click commands over the library.

Each command parses its options, calls one library function, and turns botproxy's errors into one
line on stderr and an exit code: 0 done, 1 found a problem, 2 could not run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import BotproxyError, OutputError, UsageError
from .present.visible import visible
from .settings import DEFAULTS

log = logging.getLogger(__name__)

EXIT_PROBLEM = 1
EXIT_CANNOT_RUN = 2


class CannotRun(click.ClickException):
    """A one-line error with exit code 2."""

    exit_code = EXIT_CANNOT_RUN

    def show(self, file: Any = None) -> None:
        from .wire.redact import scrub

        # An error names what it could not use: a URL with a key in it, a file path with a password.
        click.echo(f"botproxy: error: {scrub(self.format_message())}", err=True)


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The one place a command's failure becomes one line on stderr and exit code 2, never a traceback:
    botproxy's errors (botproxy/errors.py) say what is wrong and what to do; an sqlite or OS failure the
    library did not turn into one is described here; anything else is a bug of ours, said in one line
    (BOTPROXY_DEBUG=1 shows its traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            # `botproxy ... | head`: the reader has all it wanted. Quiet, as a Unix tool is (Python's
            # advice: point stdout at devnull so the flush at exit does not fail again).
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        except BotproxyError as exc:
            raise CannotRun(str(exc)) from exc
        except sqlite3.Error as exc:
            from .store import describe_sqlite_error

            raise CannotRun(describe_sqlite_error(kwargs.get("db_path") or "the database", exc)) from exc
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise CannotRun(f"{where}{exc.strerror or exc}") from exc
        except Exception as exc:
            if os.environ.get("BOTPROXY_DEBUG"):
                raise
            log.debug("internal error", exc_info=True)
            raise CannotRun(
                f"internal error ({type(exc).__name__}: {_first_line(exc)}); this is a bug in botproxy, please"
                " report it with the traceback BOTPROXY_DEBUG=1 prints"
            ) from exc

    wrapper.friendly_errors = True  # type: ignore[attr-defined]  # a test checks every command has it
    return wrapper


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no message"


def writable_output(path: str | None, option: str, what: str, *, make_parents: bool = False) -> None:
    """Fail with one line before any work when an output file cannot be written: its folder is missing
    (unless the command makes it), is not a folder, or cannot be written, or the path is a folder."""
    if path is None or path == "-":
        return
    target = Path(path)
    said = f"cannot write {what} {path} ({option})"
    if target.is_dir():
        raise OutputError(f"{said}: it is a folder, give a file name")
    if target.exists():
        if not os.access(target, os.W_OK):
            raise OutputError(f"{said}: permission denied")
        return
    folder = target.parent
    while make_parents and not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.exists():
        raise OutputError(f"{said}: folder {folder} does not exist")
    if not folder.is_dir():
        raise OutputError(f"{said}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{said}: folder {folder} is not writable")


def example(*lines: str) -> str:
    """A help epilog: click prints it last, after the options, without re-wrapping (\\b)."""
    return "\b\nExample:\n" + "\n".join(f"  {line}" for line in lines)


def db_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--db",
        "db_path",
        envvar="BOTPROXY_DB",
        default=DEFAULTS.db,
        show_default=True,
        show_envvar=True,
        help="SQLite database file.",
    )(fn)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(fn)


def session_argument(fn: Callable[..., Any]) -> Callable[..., Any]:
    """SESSION: a name, an id, or `latest` (the default); `open_session` resolves it."""
    return click.argument("session", default="latest")(fn)


def open_session(db_path: str, session: str, *, write: bool = False) -> tuple[Any, dict[str, Any]]:
    """(the database, the session's row) for SESSION, the same way for every command."""
    from . import store

    db = store.open_db(db_path, write=write)
    return db, store.resolve_session(db, session)


def session_name_option(default: str) -> Callable[..., Any]:
    """--session NAME: the name of the session a command makes."""
    return click.option("--session", "session_name", metavar="NAME", help=f"Session name [default: {default}].")


def listen_option(flag: str, default: str, help: str) -> Callable[..., Any]:
    return click.option(flag, default=default, show_default=True, metavar="HOST:PORT", help=help)


def verbose_option(help: str) -> Callable[..., Any]:
    return click.option("-v", "--verbose", is_flag=True, help=help)


def echo_lines(lines: Iterable[str]) -> None:
    for line in lines:
        click.echo(line)


def setup_logging(verbose: bool) -> None:
    from .wire.redact import redacted_logging

    # Log lines and tracebacks carry URLs and exception messages: they are scrubbed like the recording.
    redacted_logging(logging.INFO if verbose else logging.WARNING)
    if not verbose:
        # mitmproxy reports every client disconnect and upstream failure; we record those ourselves.
        logging.getLogger("mitmproxy").setLevel(logging.ERROR)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=example("botproxy demo", "botproxy record --bot http://127.0.0.1:3978/api/messages"),
)
@click.version_option(__version__, prog_name="botproxy")
def cli() -> None:
    """Record, check and replay Microsoft Bot Framework traffic.

    botproxy sits between a bot and its channel (Bot Connector v3, Direct Line), records every HTTP
    exchange and every activity into SQLite, and shows what passed.
    """


# -- record ------------------------------------------------------------------------------------


@cli.command(
    epilog=example(
        f"# point the Emulator at http://{DEFAULTS.listen}/api/messages, then:",
        "botproxy record --bot http://127.0.0.1:3978/api/messages --session login-flow",
    )
)
@click.option("--bot", "bot_url", metavar="URL", help="The bot's messaging endpoint.")
@click.option(
    "--directline",
    is_flag=False,
    flag_value=DEFAULTS.directline,
    default=None,
    metavar="[URL]",
    help="Also record Direct Line clients: put a listener in front of this Direct Line "
    f"service [URL default: {DEFAULTS.directline}].",
)
@listen_option(
    "--directline-listen",
    DEFAULTS.directline_listen,
    "Where Direct Line clients connect instead of the service (directlinejs/Web Chat `domain`).",
)
@listen_option("--listen", DEFAULTS.listen, "Where channels post instead of the bot (reverse listener).")
@listen_option("--forward-listen", DEFAULTS.forward_listen, "Forward proxy for bots run with HTTPS_PROXY/HTTP_PROXY.")
@click.option("--no-forward", is_flag=True, help="Do not start the forward listener.")
@db_option
@session_name_option("rec-DATE-TIME")
@click.option(
    "--no-rewrite",
    is_flag=True,
    help="Never rewrite serviceUrl in inbound activities (capture replies via the forward listener).",
)
@click.option("--confdir", default=DEFAULTS.confdir, show_default=True, help="mitmproxy's folder (its CA lives here).")
@click.option(
    "--upstream-ca",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Also trust this CA for upstream TLS (a corporate proxy, a test connector).",
)
@verbose_option("Log what mitmproxy and botproxy do.")
@friendly_errors
def record(
    bot_url: str | None,
    directline: str | None,
    directline_listen: str,
    listen: str,
    forward_listen: str,
    no_forward: bool,
    db_path: str,
    session_name: str | None,
    no_rewrite: bool,
    confdir: str,
    upstream_ca: str | None,
    verbose: bool,
) -> None:
    """Record the traffic between a channel and a bot until Ctrl-C.

    Point the channel (Emulator, a test script, a tunnel) at the listen address instead of the bot.
    Each activity is printed as it passes; stop with Ctrl-C (or SIGTERM) to get a summary.
    """
    from .checks import load_config
    from .present.console import Console, recorder_observers
    from .record.mitm.proxy import ProxyConfig, RecordingProxy
    from .record.worker import WorkerSession

    setup_logging(verbose)
    config = ProxyConfig(
        bot_url=bot_url,
        directline=directline,
        directline_listen=directline_listen,
        listen=listen,
        forward_listen=None if no_forward else forward_listen,
        rewrite=not no_rewrite,
        confdir=confdir,
        upstream_ca=upstream_ca,
    )
    console = Console(color=sys.stdout.isatty())
    # The recorder runs in a child process, so mitmproxy keeps its CPU (see botproxy/record/worker.py).
    live = WorkerSession(
        db_path,
        name=session_name,
        observers=functools.partial(recorder_observers, load_config("."), True, console.color),
        verbose=verbose,
        bot_url=bot_url,
        capture_mode=("forward" if no_rewrite else "rewrite+forward" if not no_forward else "rewrite"),
    )
    proxy = RecordingProxy(config, live)
    summary = asyncio.run(_record_until_signal(proxy, console))
    console.summary(summary)


def _stop_on_signal() -> asyncio.Event:
    """An event set by Ctrl-C or SIGTERM, for a command that runs until either."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _record_until_signal(proxy: Any, console: Any) -> dict[str, Any]:
    from .present.record_text import forward_proxy_lines, recording_lines

    stop = _stop_on_signal()
    # Said once: authenticated traffic is forwarded untouched, so replies must use the forward proxy.
    proxy.capture.on_auth_seen = lambda: echo_lines(forward_proxy_lines(proxy.proxy_env()))
    await proxy.start()
    warning = proxy.config.exposure_warning()
    if warning:
        click.echo(warning, err=True)
    echo_lines(recording_lines(proxy))
    sys.stdout.flush()
    await stop.wait()
    return await proxy.stop()


# -- reading sessions --------------------------------------------------------------------------


@cli.command(epilog=example("botproxy sessions --db botproxy.db", "botproxy sessions --source replay"))
@db_option
@json_option
@click.option(
    "--source",
    type=click.Choice(["record", "import", "replay"]),
    help="Only sessions made this way: recorded, imported, or a replay's own traffic.",
)
@friendly_errors
def sessions(db_path: str, as_json: bool, source: str | None) -> None:
    """List the sessions: recorded, imported, and the replays' own (the `source` column says which)."""
    from . import store
    from .present.sessions_text import sessions_lines

    rows = store.list_sessions(store.open_db(db_path), source)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        echo_lines(sessions_lines(rows, db_path, source))


@cli.command(
    epilog=example(
        "botproxy show latest",
        "botproxy show login-flow --json | jq '.activities[] | select(.direction == \"from_bot\") | .text'",
    )
)
@session_argument
@db_option
@json_option
@friendly_errors
def show(session: str, db_path: str, as_json: bool) -> None:
    """Print a session's activities, grouped by conversation and turn.

    SESSION is a name, an id, or `latest` (the default).
    """
    from .present import show as show_mod

    db, row = open_session(db_path, session)
    if as_json:
        show_mod.write_json(db, row, sys.stdout)
    else:
        for line in show_mod.text_lines(db, row):
            click.echo(visible(line))


# -- channel ------------------------------------------------------------------------------------


@cli.command(
    epilog=example(
        "botproxy channel --bot http://127.0.0.1:3978/api/messages",
        "# recorded, both sides: the recorder in front of the bot and of this channel",
        f"botproxy record --bot http://127.0.0.1:3978/api/messages --directline http://{DEFAULTS.channel_listen}",
        f"botproxy channel --bot http://{DEFAULTS.listen}/api/messages   # clients: http://{DEFAULTS.directline_listen}",
    )
)
@click.option(
    "--bot",
    "bot_url",
    required=True,
    metavar="URL",
    help="The bot's messaging endpoint (or a recorder's listen address in front of it).",
)
@listen_option(
    "--listen",
    DEFAULTS.channel_listen,
    "Where the channel serves Direct Line, the Bot Connector API and the chat page.",
)
@click.option(
    "--secret",
    envvar="BOTPROXY_DIRECTLINE_SECRET",
    show_envvar=True,
    metavar="SECRET",
    help="The Direct Line secret clients authenticate with [default: a random one, printed].",
)
@verbose_option("Log what the channel does.")
@friendly_errors
def channel(bot_url: str, listen: str, secret: str | None, verbose: bool) -> None:
    """Serve a local Direct Line channel in front of a bot, with a chat page, until Ctrl-C.

    Direct Line 3.0 clients (botframework-directlinejs, Web Chat, the chat page at /) talk to the bot
    through it with no Azure account: tokens, conversations, posts, GET with watermarks, uploads and
    the WebSocket stream. The bot replies to the Bot Connector API on the same port.
    """
    from .errors import ListenError
    from .record.mitm.proxy import check_free, parse_bot_url, parse_hostport
    from .standins.directline import DirectLineChannel

    setup_logging(verbose)
    parse_bot_url(bot_url)
    host, port = parse_hostport(listen, "--listen")
    check_free(host, port, "listen address")
    dl = DirectLineChannel(bot_url, host, port, secret=secret)
    try:
        asyncio.run(_serve_channel(dl))
    except OSError as exc:
        raise ListenError(f"could not serve the channel on {listen}: {exc.strerror or exc}") from exc


async def _serve_channel(dl: Any) -> None:
    from .present.record_text import channel_lines, channel_stopped_line

    stop = _stop_on_signal()
    await dl.start()
    try:
        echo_lines(channel_lines(dl))
        sys.stdout.flush()
        await stop.wait()
    finally:
        await dl.stop()
    click.echo(channel_stopped_line(dl))


# -- demo ---------------------------------------------------------------------------------------


@cli.command(epilog=example("botproxy demo --db demo.db"))
@db_option
@session_name_option("demo-DATE-TIME")
@verbose_option("Log what mitmproxy and botproxy do.")
@friendly_errors
def demo(db_path: str, session_name: str | None, verbose: bool) -> None:
    """Run botproxy's whole loop on a bundled sample bot, with nothing to set up.

    Records a scripted conversation with build 1 of the sample bot (a Bot Framework SDK bot) through a
    local Bot Connector stand-in, shows and checks it, replays it against build 2 (which changes a few
    answers on purpose) with build 1 as the baseline, and writes HTML reports to reports/.
    """
    from .demo import default_demo_session, run_demo
    from .present import show as show_mod
    from .present.console import Console

    setup_logging(verbose)
    console = Console(color=sys.stdout.isatty())
    name = session_name or default_demo_session()

    def after_recording(summary: dict[str, Any]) -> None:
        console.summary(summary)
        click.echo("")
        for line in show_mod.text_lines(*open_session(db_path, name)):
            click.echo(visible(line))

    asyncio.run(run_demo(db_path, name, observers=[console], say=click.echo, recorded=after_recording))


# -- replay -------------------------------------------------------------------------------------


@cli.command(
    epilog=example(
        "botproxy replay login-flow --bot http://127.0.0.1:3979/api/messages",
        "botproxy replay latest --bot http://127.0.0.1:3979/api/messages "
        "--baseline http://127.0.0.1:3978/api/messages --junit results.xml",
        "botproxy replay --all --bot http://127.0.0.1:3979/api/messages --label build-2 "
        "--start 'python -m botproxy.sample_bot --port 3979 --build 2' --junit results.xml",
    )
)
@click.argument("sessions", nargs=-1, metavar="[SESSION]...")
@click.option("--all", "every", is_flag=True, help="Replay every recorded and imported session (a corpus).")
@click.option(
    "--source",
    type=click.Choice(["record", "import"]),
    help="Replay every session made this way (recorded, imported); with names, add them.",
)
@click.option("--bot", "bot_url", required=True, metavar="URL", help="The messaging endpoint of the build to test.")
@click.option(
    "--baseline",
    "baseline_url",
    metavar="URL",
    help="A build that behaves like the recording: what differs between it and the recording is noise.",
)
@click.option("--label", metavar="NAME", help="The name of the build to test, in the output, JSON, JUnit and reports.")
@click.option("--baseline-label", metavar="NAME", help="The name of the baseline build.")
@click.option(
    "--start",
    "start_command",
    metavar="CMD",
    help="A shell command that starts the build to test: botproxy waits until --bot answers, and stops it at the end.",
)
@click.option("--start-baseline", "start_baseline", metavar="CMD", help="The same for the --baseline build.")
@click.option(
    "--start-timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    default=DEFAULTS.start_timeout_s,
    show_default=True,
    help="Seconds a started build has to answer.",
)
@click.option(
    "--shard",
    metavar="I/N",
    help="Replay share I of N of the conversations (a stable hash of session and conversation): one CI job each.",
)
@db_option
@click.option("--report", "report_path", type=click.Path(dir_okay=False), metavar="PATH", help="Write an HTML report.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False), metavar="PATH", help="Write JUnit XML.")
@json_option
@click.option(
    "--ignore",
    multiple=True,
    metavar="PATH",
    help="A deepdiff path (root['channelData']) or regex of fields not to compare; repeatable.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=DEFAULTS.concurrency,
    show_default=True,
    help="Conversations replayed at once.",
)
@click.option(
    "--quiet-ms",
    type=click.FloatRange(min=0),
    default=DEFAULTS.quiet_ms,
    show_default=True,
    help="A turn ends when its conversation has had no connector call for this long after the answer "
    "(waited where the recording shows the bot talking after its answer, and at the end).",
)
@click.option(
    "--cap-ms",
    type=click.FloatRange(min=0),
    default=DEFAULTS.cap_ms,
    show_default=True,
    help="The longest a turn waits for that quiet, after the answer.",
)
@click.option("--quiet-every-turn", is_flag=True, help="Wait for the quiet window after every turn.")
@click.option(
    "--connector-ok",
    is_flag=True,
    help="A connector stand-in that answers every call with success, instead of as the recording's "
    "connector answered it (its failures, e.g. a DELETE answered 501, are replayed by default).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULTS.timeout_s,
    show_default=True,
    help="Seconds the bot has to answer an inbound activity.",
)
@click.option("--no-checks", is_flag=True, help="Do not run the checks over the replayed traffic.")
@verbose_option("Log what botproxy does.")
@friendly_errors
def replay(
    sessions: tuple[str, ...],
    every: bool,
    source: str | None,
    bot_url: str,
    baseline_url: str | None,
    label: str | None,
    baseline_label: str | None,
    start_command: str | None,
    start_baseline: str | None,
    start_timeout: float,
    shard: str | None,
    db_path: str,
    report_path: str | None,
    junit_path: str | None,
    as_json: bool,
    ignore: tuple[str, ...],
    concurrency: int,
    quiet_ms: float,
    cap_ms: float,
    timeout_s: float,
    quiet_every_turn: bool,
    connector_ok: bool,
    no_checks: bool,
    verbose: bool,
) -> None:
    """Replay recorded sessions against a build of the bot and report what changed, turn by turn.

    SESSION is a name, an id, or `latest`; several (or --all, --source) replay a corpus in one run, with
    one verdict. Each recorded inbound activity is sent again, in order per conversation, with a local Bot
    Connector stand-in as its serviceUrl; the bot's replies are compared with the recording's. Exit code
    0 when no turn regressed, 1 when some did, 2 when the replay could not run.
    """
    from .replay.corpus import parse_shard, replay_corpus
    from .replay.driver import replay_session
    from .replay.launch import started
    from .replay.plan import Build, ReplayOptions
    from .settings import load_replay_config

    setup_logging(verbose)
    if not sessions and not every and not source:
        raise UsageError("name the SESSION to replay (a name, an id, or latest), several, or --all")
    if start_baseline and not baseline_url:
        raise UsageError("--start-baseline starts the --baseline build: pass --baseline URL too")
    shares = parse_shard(shard) if shard else None
    writable_output(junit_path, "--junit", "JUnit XML")
    writable_output(report_path, "--report", "report", make_parents=True)
    config = load_replay_config()
    check_config = None
    if not no_checks:
        from .checks import load_config

        check_config = load_config()
    options = ReplayOptions(
        ignore=(*config.ignore, *ignore), concurrency=concurrency, quiet_ms=quiet_ms, cap_ms=cap_ms,
        timeout_s=timeout_s, quiet_every_turn=quiet_every_turn, connector_ok=connector_ok, checks=not no_checks,
        check_config=check_config,
    )
    builds = [(cmd, url, flag) for cmd, url, flag in ((start_baseline, baseline_url, "--start-baseline"),
                                                       (start_command, bot_url, "--start")) if cmd and url]
    corpus = len(sessions) != 1 or every or bool(source) or shares is not None
    bar = _ProgressBar() if sys.stderr.isatty() else None
    try:
        with started(builds, start_timeout):
            if corpus:
                result: Any = asyncio.run(replay_corpus(
                    db_path, sessions, Build(bot_url, label),
                    baseline=Build(baseline_url, baseline_label) if baseline_url else None, every=every,
                    source=source, shard=shares, progress=bar.update if bar else None, options=options))
            else:
                result = asyncio.run(replay_session(
                    db_path, sessions[0], bot_url, baseline_url=baseline_url, label=label,
                    baseline_label=baseline_label, progress=bar.update if bar else None, options=options))
    finally:
        if bar:
            bar.close()
    data = result.to_json()
    if junit_path:
        from .present.junit import write_junit

        write_junit(data, junit_path)
    if report_path:
        _replay_report(db_path, result.run_id, report_path)
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        from .present.replay_text import corpus_lines, replay_lines

        echo_lines(corpus_lines(data) if corpus else replay_lines(data))
    if result.regressed:
        sys.exit(EXIT_PROBLEM)


class _ProgressBar:
    """A click progress bar on stderr, made when the total is known (the first turn done)."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.done = 0

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = click.progressbar(length=total, label="replaying", file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _replay_report(db_path: str, run_id: int, path: str) -> None:
    written = render_run(db_path, run_id, path)
    click.echo(f"report: {written}", err=True)


def _run_number(db_path: str, given: str) -> int:
    """--run N or latest (the newest run that is not part of a corpus run)."""
    if given.isdigit() and int(given) >= 1:
        return int(given)
    if given != "latest":
        raise UsageError(f"--run takes a run number or latest, not {given!r}")
    from . import store

    db = store.open_db(db_path)
    try:
        run_id = store.latest_run_id(db)
    finally:
        db.conn.close()
    if run_id is None:
        raise UsageError(f"{db_path} holds no replay run yet: run botproxy replay first")
    return run_id


def render_run(db_path: str, run_id: int, path: str) -> Path:
    """The HTML report of a stored run: one session's (report.render_replay) or a corpus run's."""
    from . import store
    from .present.report import render_replay
    from .replay.corpus import is_corpus_run

    db = store.open_db(db_path)
    if is_corpus_run(db, run_id):
        from .present.corpus_report import render_corpus

        return render_corpus(db, run_id, path)
    return render_replay(db, run_id, path)


# -- report -------------------------------------------------------------------------------------


@cli.command(
    epilog=example("botproxy report login-flow", "botproxy report latest --out reports/today.html",
                   "botproxy report --run 7 --out reports/replay-7.html")
)
@click.argument("session", required=False)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False),
    metavar="PATH",
    help="Where to write the HTML file [default: reports/<session name>.html, reports/replay-<N>.html].",
)
@click.option(
    "--run",
    "run_id",
    metavar="N|latest",
    help="Render stored replay run N again (the report `replay --report` writes), without replaying; latest: "
    "the newest run (after `botproxy merge`, the merged one).",
)
@db_option
@friendly_errors
def report(session: str | None, out_path: str | None, run_id: str | None, db_path: str) -> None:
    """Write a session's HTML report: its transcript, turn by turn, with the findings of the checks.

    SESSION is a name, an id, or `latest` (the default). With --run N, the report of replay run N instead.
    The report is one self-contained file (nothing is fetched from the network) that any browser opens;
    prints the path of the file it wrote.
    """
    from .checks import load_config
    from .present.report import default_report_path, render_session

    writable_output(out_path, "--out", "report", make_parents=True)
    if run_id is not None:
        if session is not None:
            raise UsageError("give a SESSION or --run N, not both")
        number = _run_number(db_path, run_id)
        click.echo(str(render_run(db_path, number, out_path or str(default_report_path(f"replay-{number}")))))
        return
    db, row = open_session(db_path, session or "latest")
    written = render_session(db, row, out_path or default_report_path(row["name"]), check_config=load_config("."))
    click.echo(str(written))


@cli.command(
    epilog=example("botproxy merge merged.db shard-1.db shard-2.db", "botproxy report --run latest --db merged.db")
)
@click.argument("out", metavar="OUT.db")
@click.argument("inputs", nargs=-1, required=True, metavar="DB...")
@friendly_errors
def merge(out: str, inputs: tuple[str, ...]) -> None:
    """Put several databases together in OUT.db (created if missing): the shard jobs of one replay run.

    Recorded and imported sessions with the same name and source are one session; a run copied into
    several databases is one run; the shares of one `replay --shard I/N` run become one run (its verdict
    over all of them), which `botproxy report --run N` renders.
    """
    from .present.replay_text import merge_lines
    from .replay.merge import merge as merge_databases
    from .store import command_hint

    done = merge_databases(out, list(inputs))
    hint = command_hint(out, "report", "--run", str(done.combined[-1]["id"])) if done.combined else None
    echo_lines(merge_lines(done.inputs, done.combined, hint))
    if any(run["missing"] for run in done.combined):
        click.echo("botproxy: note: some shards of a run are missing, so its verdict covers only the others", err=True)


# -- checks -------------------------------------------------------------------------------------


@cli.command(
    epilog=example(
        "botproxy check latest --fail-on warning",
        "botproxy check login-flow --json --disable BP-A17 | jq '.findings[] | .rule'",
    )
)
@session_argument
@db_option
@json_option
@click.option(
    "--fail-on",
    type=click.Choice(["error", "warning", "info"]),
    default="error",
    show_default=True,
    help="Exit 1 when a finding at or above this severity exists.",
)
@click.option("--disable", "disabled", multiple=True, metavar="CODE", help="Turn a rule off (repeatable).")
@friendly_errors
def check(session: str, db_path: str, as_json: bool, fail_on: str, disabled: tuple[str, ...]) -> None:
    """Check a stored session for addressing mistakes and out-of-order sends.

    Re-runs the rule engine over SESSION (a name, an id, or `latest`), stores its findings, and prints
    them grouped by conversation and turn with the activity that broke each rule. Rules are configured in
    `[tool.botproxy.checks]` of pyproject.toml or `[checks]` of botproxy.toml. Exit code 1 when a finding
    at or above --fail-on exists, 0 otherwise, 2 when the check could not run.
    """
    from . import store
    from .checks import load_config
    from .present import check_text as rt
    from .store import session_summary

    config = load_config(".")
    config = dataclasses.replace(config, disabled=config.disabled | set(disabled))
    config.validate()
    db, row = open_session(db_path, session, write=True)  # findings are stored
    findings = rt.run_checks(db, row, config)
    activities = store.activities_by_seq(db, row["id"], {f.seq for f in findings if f.seq is not None})
    if as_json:
        payload = {
            "session": session_summary(row),
            "fail_on": fail_on,
            "findings": [rt.finding_json(f, activities.get(f.seq or -1)) for f in findings],
        }
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        for line in rt.text_lines(row, findings, activities, store.turn_numbers(db, row["id"])):
            click.echo(visible(line))
    if rt.at_or_above(findings, fail_on):
        sys.exit(EXIT_PROBLEM)


@cli.command(
    epilog=example("botproxy rules", "botproxy rules --json | jq '.[] | select(.severity == \"error\") | .code'")
)
@json_option
@friendly_errors
def rules(as_json: bool) -> None:
    """List every rule the checks apply, with why it matters and how to fix it.

    Severities shown are the project's (after `[tool.botproxy.checks]` / botproxy.toml).
    """
    from .checks import NOT_CHECKED, load_config
    from .present.rules_text import rule_entries, rules_lines

    listed = rule_entries(load_config("."))
    if as_json:
        click.echo(json.dumps(listed, indent=2, ensure_ascii=False))
    else:
        echo_lines(rules_lines(listed, NOT_CHECKED))


# -- import / export ----------------------------------------------------------------------------


@cli.command(
    "import",
    epilog=example(
        "botproxy import chat.transcript --session from-emulator",
        "botproxy import logs/*.transcript --db botproxy.db",
        "botproxy import capture.har --session from-har",
        "botproxy import traffic.flows --session from-mitmdump",
        "botproxy import devTools/events_recording_*.log --session from-playground",
    ),
)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@session_name_option("import-FILE-DATE")
@db_option
@json_option
@friendly_errors
def import_(files: tuple[str, ...], session_name: str | None, db_path: str, as_json: bool) -> None:
    """Import .transcript, HAR, mitmproxy flow or Agents Playground recording files as a new session.

    Several files go into one session (transcripts and captures not mixed). The session is checked
    like a recording and can be shown, reported and replayed.
    """
    from .interop import import_files

    summary = import_files(db_path, files, session_name)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        from .present.sessions_text import imported_line

        click.echo(imported_line(summary, db_path))


@cli.command(
    epilog=example(
        "botproxy export login-flow --format transcript --out login-flow.transcript",
        "botproxy export latest --out transcripts/",
        "botproxy export login-flow --format har --out login-flow.har",
    )
)
@session_argument
@click.option(
    "--format", "fmt", type=click.Choice(["transcript", "har"]), default="transcript", show_default=True,
    help="What to write.",
)
@click.option(
    "--out", "out", metavar="PATH",
    help="A file, or (transcript) a folder for one .transcript per conversation [default: standard output].",
)
@db_option
@friendly_errors
def export(session: str, fmt: str, out: str | None, db_path: str) -> None:
    """Write a session as .transcript files the Emulator opens (one conversation per file), or as HAR."""
    from .interop import export_session

    if out is not None and (fmt == "har" or not Path(out).is_dir()):  # transcripts may go into a folder
        writable_output(out, "--out", "export", make_parents=True)
    for path in export_session(db_path, session, fmt, out):
        if path != "-":
            click.echo(f"wrote {path}", err=True)


def main() -> None:
    cli(prog_name="botproxy")
