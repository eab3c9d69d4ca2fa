"""Replay verdicts on a corpus of real-SDK bots (tests/bots/corpus.py; issue 11).

Each bot's conversation is recorded through the real embedded recorder (mitmproxy) against a
Connector stand-in, then replayed: against a second identical instance (every turn `same`), against
a copy with one edit (exactly that turn `changed`), and both again with the recorded instance as the
`--baseline`. Then the recording goes through `export --format transcript` → `import` → `replay`
against the same build, which must be all `same` too.

The inbound activities carry no account roles, as real channels send them (Teams, Direct Line): the
transcript export adds them, which is what the round trip must survive.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from bots import corpus
from click.testing import CliRunner

from botproxy import store
from botproxy.cli import cli
from botproxy.interop import export_session, import_files
from botproxy.replay.driver import replay_session
from botproxy.replay.plan import ReplayOptions

QUIET = 50  # ms


@dataclass
class Conversation:
    """Drives one bot's recording: activities as a real channel sends them, through the recorder."""

    connector: Any
    endpoint: str
    bot: corpus.RunningBot
    channel_id: str = "test"
    channel_data: dict[str, Any] | None = None

    def activity(self, conv: str, text: str, **fields: Any) -> dict[str, Any]:
        activity = self.connector.activity(text=text, conversation_id=conv, channelId=self.channel_id, **fields)
        for account in ("from", "recipient"):
            activity[account].pop("role", None)  # Teams and Direct Line send none
        if self.channel_data is not None:
            activity["channelData"] = self.channel_data
        return activity

    async def say(self, conv: str, text: str, **fields: Any) -> None:
        status, body = await self.connector.send(self.endpoint, self.activity(conv, text, **fields))
        assert status < 300, body


async def uploads(c: Conversation) -> None:
    await c.say("u1", "hello")
    url = c.connector.service_url + "v3/attachments/att-1/views/original"
    await c.say("u1", "here is a file", attachments=[{"contentType": "image/png", "contentUrl": url,
                                                       "name": "cat.png"}])


async def thread(c: Conversation) -> None:
    await c.say("19:general@thread.tacv2;messageid=1", "hello")
    await c.say("19:general@thread.tacv2;messageid=1", "start a thread")
    await c.say("19:general@thread.tacv2;messageid=1", "thanks")


async def notify(c: Conversation) -> None:
    await c.say("n1", "hello")
    slow = asyncio.create_task(c.say("n1", "slow"))
    await asyncio.wait_for(c.bot.events["slow_open"].wait(), 10)
    async with aiohttp.ClientSession() as http:  # the notify endpoint, while the "slow" turn is open
        async with http.post(c.bot.base + "/api/notify") as resp:
            assert resp.status == 200
    await slow
    await c.say("n1", "card")


async def overlap(c: Conversation) -> None:
    await c.say("o1", "hello")
    first = asyncio.create_task(c.say("o1", "first"))
    await asyncio.wait_for(c.bot.events["first_open"].wait(), 10)
    await asyncio.gather(first, c.say("o1", "second"))
    await c.say("o1", "bye")


async def stream(c: Conversation) -> None:
    await c.say("s1", "hello")
    await c.say("s1", "stream")


async def tidy(c: Conversation) -> None:
    await c.say("d1", "hello")
    c.connector.fail_next(501, code="NotImplemented", message="Delete is not supported here", route="delete_activity")
    await c.say("d1", "tidy")


async def greet(c: Conversation) -> None:
    await c.say("g1", "hi")
    await c.say("g1", "what's new")


async def later(c: Conversation) -> None:
    await c.say("l1", "remind me")
    await asyncio.wait_for(c.bot.events["reminded"].wait(), 10)  # the reminder follows its turn
    await c.say("l1", "thanks")


@dataclass
class Case:
    script: Callable[[Conversation], Awaitable[None]]
    edited_turn: str  # the inbound text of the turn the edited build changes
    channel_id: str = "test"
    channel_data: dict[str, Any] | None = None
    random: bool = False  # the same build differs from its recording without a baseline
    # A transcript holds no HTTP statuses: a call the connector failed cannot come back from one.
    round_trip: bool = True


TEAMS_DATA = {"channel": {"id": corpus.TEAMS_CHANNEL}, "team": {"id": "19:team@thread.tacv2"},
              "tenant": {"id": "tenant-1"}}
CASES = {
    "uploads": Case(uploads, "here is a file"),
    "thread": Case(thread, "start a thread", "msteams", TEAMS_DATA),
    "notify": Case(notify, "card"),
    "overlap": Case(overlap, "second", "directline"),
    "stream": Case(stream, "stream", "msteams", {"tenant": {"id": "tenant-1"}}),
    "tidy": Case(tidy, "tidy", round_trip=False),
    "greet": Case(greet, "hi", random=True),
    "later": Case(later, "remind me"),
}


def statuses(result) -> dict[str, str]:
    return {t.turn.text: t.status for t in result.turns}


def explain(result) -> list[Any]:
    return [(t.turn.text, t.status, t.error, [d.to_dict() for d in t.differences if not d.noise],
             [f["rule"] for f in t.new_findings if not f["noise"]]) for t in result.turns if t.status != "same"]


@pytest.mark.parametrize("kind", sorted(CASES))
async def test_identical_builds_replay_same_and_one_edit_changes_exactly_its_turn(kind, recorders, connector):
    case = CASES[kind]
    recorded, identical, edited = [await corpus.start(kind, edited=e) for e in (False, False, True)]
    try:
        proxy = await recorders.start(recorded.url, name=kind)
        await case.script(Conversation(connector, proxy.endpoint, recorded, case.channel_id, case.channel_data))
        await recorders.stop(proxy)
        corpus.reset(recorded)
        db = recorders.db_path
        turns = [a["text"] for a in recorders.activities(kind) if a["direction"] == "to_bot"]

        same = await replay_session(db, kind, identical.url, options=ReplayOptions(quiet_ms=QUIET))
        if case.random:
            assert {t for t, s in statuses(same).items() if s != "same"} == {case.edited_turn}, explain(same)
        else:
            assert set(statuses(same).values()) == {"same"}, explain(same)
        assert same.summary["proactive_unattached"] == 0
        ambiguous = [t.turn.text for t in same.turns if t.to_json()["ambiguous"]]
        assert ambiguous == (["first"] if kind == "overlap" else [])  # linked by wire order, and said so

        changed = await replay_session(db, kind, edited.url, options=ReplayOptions(quiet_ms=QUIET))
        assert {t for t, s in statuses(changed).items() if s != "same"} == {case.edited_turn}, explain(changed)
        assert changed.regressed

        with_baseline = await replay_session(db, kind, identical.url, baseline_url=recorded.url,
                                             options=ReplayOptions(quiet_ms=QUIET))
        assert set(statuses(with_baseline).values()) == {"same"}, explain(with_baseline)
        assert not with_baseline.regressed

        edited_with_baseline = await replay_session(db, kind, edited.url, baseline_url=recorded.url,
                                                    options=ReplayOptions(quiet_ms=QUIET))
        verdicts = statuses(edited_with_baseline)
        assert {t for t, s in verdicts.items() if s != "same"} == {case.edited_turn}, explain(edited_with_baseline)
        assert len(verdicts) == len(turns)

        # Record → export → import → replay against the same build: all `same` (or, for a random
        # greeting, all `same` against the baseline).
        if not case.round_trip:
            return
        written = export_session(db, kind, "transcript", str(recorders.tmp_path / f"{kind}-export") + "/")
        import_files(db, written, f"{kind}-imported")
        back = await replay_session(db, f"{kind}-imported", identical.url,
                                    baseline_url=recorded.url if case.random else None,
                                    options=ReplayOptions(quiet_ms=QUIET))
        assert set(statuses(back).values()) == {"same"}, explain(back)
        assert len(back.turns) == len(turns)
    finally:
        for bot in (recorded, identical, edited):
            await bot.stop()


async def test_a_send_from_a_notify_endpoint_during_an_open_turn_is_proactive(recorders, connector):
    # Issue 11 (3): show, the report and replay agree it is proactive.
    from botproxy.present.report import session_view

    bot = await corpus.start("notify")
    try:
        proxy = await recorders.start(bot.url, name="notify")
        await notify(Conversation(connector, proxy.endpoint, bot))
        await recorders.stop(proxy)
    finally:
        await bot.stop()
    [hello] = [a for a in recorders.activities("notify") if a["text"] == "proactive hello"]
    assert hello["turn_seq"] is None
    db = recorders.db()
    session = store.resolve_session(db, "notify")
    shown = (await asyncio.to_thread(CliRunner().invoke, cli, ["show", "notify", "--db", recorders.db_path])).output
    assert "  proactive\n      #" in shown and "proactive hello" in shown.split("  proactive\n")[1]
    view = session_view(db, session)
    assert view["summary"]["proactive"] == 1
    assert any(t["proactive"] and t["replies"][0]["text"] == "proactive hello"
               for c in view["conversations"] for t in c["turns"])


async def test_overlapping_direct_line_turns_link_by_wire_order_and_say_so(recorders, connector):
    # Issue 11 (4): no replyToId, two turns open; each reply in its own turn, marked ambiguous.
    bot = await corpus.start("overlap")
    try:
        proxy = await recorders.start(bot.url, name="overlap")
        await overlap(Conversation(connector, proxy.endpoint, bot, "directline"))
        await recorders.stop(proxy)
    finally:
        await bot.stop()
    acts = recorders.activities("overlap")
    inbound = {a["text"]: a["seq"] for a in acts if a["direction"] == "to_bot"}
    replies = {a["text"]: a for a in acts if a["direction"] == "from_bot"}
    assert replies["answer to first"]["turn_seq"] == inbound["first"]
    assert replies["answer to second"]["turn_seq"] == inbound["second"]
    assert replies["answer to first"]["turn_ambiguous"] == 1 and replies["You said: bye"]["turn_ambiguous"] == 0
    shown = (await asyncio.to_thread(CliRunner().invoke, cli, ["show", "overlap", "--db", recorders.db_path])).output
    assert shown.count("turn? (several turns were open; no replyToId)") == 1  # the second was alone by then


async def test_a_thread_started_in_a_turn_is_compared_in_that_turn(recorders, connector):
    # Issue 11 (2): the thread's messages were `not_replayed` / `unattached` and an edit passed.
    bot = await corpus.start("thread")
    try:
        proxy = await recorders.start(bot.url, name="thread")
        await thread(Conversation(connector, proxy.endpoint, bot, "msteams", TEAMS_DATA))
        await recorders.stop(proxy)
    finally:
        await bot.stop()
    acts = recorders.activities("thread")
    [start] = [a["seq"] for a in acts if a["text"] == "start a thread"]
    in_thread = [a for a in acts if a["conversation_id"] not in (None, "19:general@thread.tacv2;messageid=1")]
    assert [a["text"] for a in in_thread] == ["Thread: release notes", "First reply in the thread"]
    assert {a["turn_seq"] for a in in_thread} == {start}
    shown = (await asyncio.to_thread(CliRunner().invoke, cli, ["show", "thread", "--db", recorders.db_path])).output
    assert shown.count("→ conversation ") == 2
    # The session report puts them in that turn too, and counts no conversation of its own for them.
    from botproxy.present.report import session_view

    view = session_view(recorders.db(), store.resolve_session(recorders.db(), "thread"))
    [conversation] = view["conversations"]
    [turn] = [t for t in conversation["turns"] if t["seq"] == start]
    assert [v["text"] for v in turn["replies"]][:2] == ["Thread: release notes", "First reply in the thread"]
    assert "in created conversation" in turn["title"]
    assert turn["title"].startswith(f"turn 2 (#{start})")
    assert conversation["turn_count"] == view["summary"]["turns"] == 3


async def test_a_failed_connector_call_is_replayed_and_connector_ok_always_succeeds(recorders, connector):
    # Issue 11 (6): the recording's connector answered DELETE 501 and the bot apologised.
    recorded, identical = await corpus.start("tidy"), await corpus.start("tidy")
    try:
        proxy = await recorders.start(recorded.url, name="tidy")
        await tidy(Conversation(connector, proxy.endpoint, recorded))
        await recorders.stop(proxy)
        replayed = await replay_session(recorders.db_path, "tidy", identical.url, options=ReplayOptions(quiet_ms=QUIET))
        assert set(statuses(replayed).values()) == {"same"}, explain(replayed)
        [turn] = [t for t in replayed.turns if t.turn.text == "tidy"]
        assert [a["status"] for a in turn.replayed if a["route"] == "delete_activity"] == [501]
        ok = await replay_session(recorders.db_path, "tidy", identical.url,
                                  options=ReplayOptions(quiet_ms=QUIET, connector_ok=True))
        assert statuses(ok) == {"hello": "same", "tidy": "changed"}
        assert ok.run["options"]["connector_ok"] is True
    finally:
        await recorded.stop()
        await identical.stop()


async def test_every_turn_404_or_401_is_one_line_that_says_what_is_wrong(recorders, connector):
    # Issue 11 (12): the path forgotten, or a bot that requires authentication.
    recorded, locked = await corpus.start("greet"), await corpus.start("locked")
    try:
        proxy = await recorders.start(recorded.url, name="greet")
        await greet(Conversation(connector, proxy.endpoint, recorded))
        await recorders.stop(proxy)
        runner = CliRunner()
        wrong_path = recorded.base + "/api/mesages"
        forgot = await asyncio.to_thread(runner.invoke, cli, ["replay", "greet", "--db", recorders.db_path,
                                                              "--bot", wrong_path])
        assert forgot.exit_code == 2 and forgot.output.count("\n") == 1, forgot.output
        assert forgot.output == (f"botproxy: error: every turn (2) was answered HTTP 404 by {wrong_path}: "
                                 "is the messaging endpoint's path right (usually /api/messages)?\n")
        refused = await asyncio.to_thread(runner.invoke, cli, ["replay", "greet", "--db", recorders.db_path,
                                                               "--bot", locked.url])
        assert refused.exit_code == 2 and refused.output.count("\n") == 1, refused.output
        assert "answered HTTP 401" in refused.output and "requires authentication" in refused.output
        runs = [dict(r) for r in recorders.db()["replay_runs"].rows]
        assert [r["status"] for r in runs] == ["failed", "failed"]
        assert json.loads(runs[0]["options"])["connector_ok"] is False
    finally:
        await recorded.stop()
        await locked.stop()
