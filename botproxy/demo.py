"""botproxy's main job on embedded defaults: record, check, replay against a new build, report.

Everything runs here, on loopback, on free ports: build 1 of the bundled sample bot (a real Bot
Framework SDK bot), a local Bot Connector stand-in taking its replies, and the recorder between them.
The script covers what bots do: a welcome, replies, typing, a card, an update, a delete, a proactive
message, an invoke with a response body and an `expectReplies` turn. The session is then checked,
replayed against build 2 (which changes a few answers on purpose) with build 1 as the baseline, and
rendered as HTML reports.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checks import Engine
from .errors import UpstreamError
from .present.words import counted
from .record.mitm.proxy import ProxyConfig, RecordingProxy
from .record.recorder import Observer
from .record.session import LiveSession
from .sample_bot import start_bot
from .settings import DEFAULTS
from .standins.connector import ConnectorChannel

CONVERSATION = "demo-conversation"
SCRIPT = ["hello", "card", "typing", "update", "delete", "two", "proactive"]


@dataclass
class DemoResult:
    summary: dict[str, Any]
    bot_url: str
    findings: list[Any] = field(default_factory=list)
    replay: Any = None
    reports: list[Path] = field(default_factory=list)


def default_demo_session() -> str:
    return dt.datetime.now().strftime("demo-%Y%m%d-%H%M%S")


async def run_demo(
    db_path: str,
    session_name: str,
    *,
    observers: Sequence[Observer] | None = None,
    say: Callable[[str], None] = lambda _: None,
    recorded: Callable[[dict[str, Any]], None] = lambda _: None,
    reports_dir: str = "reports",
    confdir: str = DEFAULTS.confdir,
) -> DemoResult:
    """The whole loop: record build 1, check it, replay it against build 2 with build 1 as baseline, report."""
    from . import store
    from .checks import CheckConfig
    from .present.check_text import run_checks
    from .present.report import default_report_path, render_replay, render_session
    from .replay.driver import replay_session

    result = await record_demo(db_path, session_name, observers=observers, say=say, confdir=confdir)
    recorded(result.summary)
    db = store.open_db(db_path)
    session = store.resolve_session(db, session_name)
    result.findings = run_checks(db, session, CheckConfig())
    say("")
    say(f"checked: {_count(result.findings)}")
    baseline, candidate = await start_bot(build=1), await start_bot(build=2)
    try:
        say(f"replaying against build 2 ({candidate.url}) with build 1 as baseline ({baseline.url})")
        result.replay = await replay_session(db_path, session_name, candidate.url, baseline_url=baseline.url)
    finally:
        await candidate.stop()
        await baseline.stop()
    summary = result.replay.summary
    say(
        f"replayed {counted(summary['turns'], 'turn')}: {summary['same']} same, {summary['changed']} changed, "
        f"{counted(summary['error'], 'error')} ({summary['regressed']} regressed; "
        "build 2 changes a few answers on purpose)"
    )
    result.reports = [
        render_session(db, session, default_report_path(session_name, reports_dir)),
        render_replay(db, result.replay.run_id, default_report_path(f"{session_name}-replay", reports_dir)),
    ]
    for path in result.reports:
        say(f"report: {path}")
    return result


def _count(findings: list[Any]) -> str:
    by_severity = {sev: sum(1 for f in findings if f.severity == sev) for sev in ("error", "warning", "info")}
    parts = [f"{n} {sev}" for sev, n in by_severity.items() if n]
    return ", ".join(parts) + " findings" if parts else "no findings"


async def record_demo(
    db_path: str,
    session_name: str,
    *,
    observers: Sequence[Observer] | None = None,
    build: int = 1,
    say: Callable[[str], None] = lambda _: None,
    confdir: str = DEFAULTS.confdir,
) -> DemoResult:
    bot = await start_bot(build=build)
    channel = ConnectorChannel(channel_id="emulator")
    await channel.start()
    live = LiveSession(
        db_path,
        name=session_name,
        observers=observers,
        engine=Engine(),
        bot_url=bot.url,
        capture_mode="rewrite",
        source="record",
    )
    proxy = RecordingProxy(
        ProxyConfig(bot_url=bot.url, listen="127.0.0.1:0", forward_listen=None, confdir=confdir), live
    )
    try:
        await proxy.start()
        say(f"recording session {session_name!r}: channel stand-in → {proxy.endpoint} → sample bot {bot.url}")
        await _converse(channel, proxy.endpoint, bot.proactive_done)
        summary = await proxy.stop()
    finally:
        await channel.stop()
        await bot.stop()
    return DemoResult(summary, bot.url)


async def _converse(channel: ConnectorChannel, endpoint: str, proactive_done: asyncio.Event) -> None:
    async def send(activity: dict[str, Any]) -> None:
        status, body = await channel.send(endpoint, activity)
        if status >= 500:
            raise UpstreamError(f"the sample bot answered {status}: {body[:200]!r}")

    user = {"id": "user1", "name": "Ada"}
    await send(channel.activity("conversationUpdate", conversation_id=CONVERSATION, membersAdded=[user, channel.bot]))
    for text in SCRIPT:
        await send(channel.activity(text=text, conversation_id=CONVERSATION, user_name="Ada"))
    try:
        await asyncio.wait_for(proactive_done.wait(), 10)
    except TimeoutError:
        raise UpstreamError("the sample bot's proactive message did not arrive within 10 s") from None
    await send(channel.activity("invoke", conversation_id=CONVERSATION, name="test/echo", value={"n": 1}))
    await send(
        channel.activity(text="what is the weather?", conversation_id=CONVERSATION, deliveryMode="expectReplies")
    )
