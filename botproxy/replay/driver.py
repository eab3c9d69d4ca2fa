"""Replay a recorded session into a bot (a new build) and report, turn by turn, what it does differently.

1. **Plan.** What the recorded session replays, turn by turn (`plan.load_plan`; incomplete turns are
   reported with a reason, never guessed at).
2. **Drive.** For each build (the baseline first, when there is one, then the candidate), a fresh
   `ConnectorChannel` plays the Bot Connector: every inbound activity is sent as recorded (ids, from,
   recipient, conversation, text, value, ...) except `serviceUrl`, which names the channel, and a
   `replyToId` naming an id the recording's connector assigned, which is mapped to the id this replay's
   channel assigned to the same reply. The channel answers each of the bot's calls as the recording's
   connector answered the matching call of the same turn (route and order; `connector_ok` turns that
   off), so a failure the bot reacted to happens again. A conversation the bot creates during a turn
   belongs to that turn (its calls, its ids). Conversations run in parallel up to `concurrency`; the turns of
   one conversation strictly in order. A turn is over when the bot has answered the inbound POST and
   its conversation has had no connector call for `quiet_ms` (counted from the answer or the latest
   call; at most `cap_ms`). That quiet window is waited for where the recording shows the bot talking
   after its answer (a reply that came late, proactive sends after the turn), once as many calls as the
   recording shows there have come (at most `cap_ms`), and once for the whole
   channel at the end; elsewhere the turn is over at the answer (an SDK bot's in-turn sends are done
   by then), unless `quiet_every_turn`. Anything the bot sends late anyway is still recorded, and the
   recorder ties it to its turn by `replyToId`. A bot that answers 5xx, breaks the connection, cannot
   be reached or does not answer within `timeout_s` makes that turn an error; the run goes on.
3. **Record.** Each build's traffic is recorded as a session of its own (`source` "replay", named
   ``<session>-replay-<run>-candidate``) by the same `LiveSession`/`SessionRecorder` as `botproxy record`,
   so it gets the same turn model, redaction and live checks, and `botproxy show` reads it. The events
   are fed to the recorder from here (the client's POST and the channel's calls) instead of from
   mitmproxy: both ends are ours, so the proxy would add two HTTP hops per turn and nothing to see.
4. **Compare.** Per turn, `diff.diff_turn` of the recorded and replayed activities; with a baseline,
   what differs between the recording and the baseline is noise for that turn (`diff.noise_paths`).
   Check findings (`botproxy.checks`) that the candidate has in a turn and the recording had not are
   regressions too, unless the baseline has them as well. (results.py)
5. **Store.** `replay_runs` and `replay_turns` rows; `ReplayResult.to_json()` is `botproxy replay --json`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import sqlite_utils
from aiohttp import web

from .. import __version__, store
from ..errors import UpstreamError, UsageError
from ..record.recorder import RequestSeen, ResponseSeen, creation_hints
from ..record.session import LiveSession
from ..standins.connector import ConnectorCall, ConnectorChannel
from ..wire.redact import scrub
from . import diff
from .plan import (
    BASELINE,
    CANDIDATE,
    CREATE,
    ISSUING_ROUTES,
    Build,
    PhaseResult,
    Plan,
    PlannedTurn,
    ReplayedTurn,
    ReplayOptions,
    TurnOutcome,
    keep_conversations,
    load_plan,
)
from .results import ReplayResult, compare, fail_run, start_run, store_run

log = logging.getLogger(__name__)

TURN_HEADER = "X-Botproxy-Replay"  # names the planned turn an inbound POST replays
_JSON = "application/json; charset=utf-8"

Progress = Callable[[int, int], None]


# -- driving one build -------------------------------------------------------------------------------


class _Feed:
    """Feeds the recorder the events a proxy would have seen: our POSTs to the bot, the bot's calls to
    the channel. Everything runs on one event loop, so submission order is event order."""

    def __init__(self, live: LiveSession, channel: ConnectorChannel) -> None:
        self.live = live
        self.channel = channel
        self._ids = itertools.count(1)

    def connector_call(self, call: ConnectorCall, response: web.Response) -> None:
        flow = f"svc-{next(self._ids)}"
        query = f"?{urlencode(call.query)}" if call.query else ""
        url = self.channel.service_url.rstrip("/") + "/" + call.path.lstrip("/") + query
        content = response.body if isinstance(response.body, bytes) else None
        self.live.submit(RequestSeen(flow, call.at, "svc", call.method, url, list(call.headers.items()), call.raw,
                                     False, self.channel.service_url))
        self.live.submit(ResponseSeen(flow, time.time(), response.status, list(response.headers.items()), content))


class _Driver:
    def __init__(self, plan: Plan, role: str, bot_url: str, options: ReplayOptions,
                 progress: Callable[[], None]) -> None:
        self.plan = plan
        self.role = role
        self.bot_url = bot_url
        self.options = options
        self.progress = progress
        self.channel = ConnectorChannel(bot=plan.bot, id_prefix=f"{role}-")
        self.outcomes: dict[str, TurnOutcome] = {}
        self.id_maps: dict[str, dict[str, str]] = {}
        self.http: aiohttp.ClientSession | None = None
        self.feed: _Feed | None = None
        self.service_url = ""
        self.current: dict[str, PlannedTurn] = {}  # conversation -> the turn driven last (its calls' turn)
        self.in_flight: set[str] = set()  # keys of the turns whose inbound POST is under way
        self.answered: dict[str, dict[str, int]] = {}  # turn key -> route -> recorded answers used
        if not options.connector_ok:
            self.channel.responder = self._recorded_answer

    async def run(self, live: LiveSession) -> None:
        for conversation, members in self.plan.members.items():
            self.channel.add_members(conversation, members)
        await self.channel.start()
        self.service_url = self.channel.service_url
        self.feed = _Feed(live, self.channel)
        self.channel.observers.append(self._on_call)
        self.channel.observers.append(self.feed.connector_call)
        limit = asyncio.Semaphore(self.options.concurrency)
        connector = aiohttp.TCPConnector(limit=self.options.concurrency * 2)
        try:
            async with aiohttp.ClientSession(connector=connector) as self.http:
                await asyncio.gather(*(self._conversation(turns, limit) for turns in self.plan.conversations.values()))
            # What the bot still sends after its last answers (late replies, proactive sends) belongs too.
            await self.channel.wait_quiet(None, self.options.quiet_s, self.options.cap_s)
        finally:
            await self.channel.stop()

    async def _conversation(self, turns: list[PlannedTurn], limit: asyncio.Semaphore) -> None:
        async with limit:
            for turn in turns:
                await self._turn(turn)
                self.progress()

    def _recorded_answer(self, call: ConnectorCall) -> tuple[int, Any] | None:
        """Answer a call as the recording's connector answered the matching call of the same turn (the
        k-th call of that route): a failure the same way (the bot's reaction to it is what is compared),
        a success with the recorded status (the stand-in fills in the body). None: no counterpart."""
        turn = self.current.get(call.conversation_id or "") if call.conversation_id else None
        if turn is None and call.route == CREATE:
            turn = self._creator(call)
        if turn is None:
            return None
        used = self.answered.setdefault(turn.key, {})
        answers = turn.answers.get(call.route, [])
        n = used.get(call.route, 0)
        used[call.route] = n + 1
        if n >= len(answers) or not answers[n][0]:
            return None
        status, body = answers[n]
        return status, body if status >= 400 else None

    def _creator(self, call: ConnectorCall) -> PlannedTurn | None:
        """The turn a CreateConversation call (which names no conversation) is made in: the one turn in
        flight, or the one whose inbound activity shares an account or channel id with the call."""
        turns = list({t.key: t for t in self.current.values() if t.key in self.in_flight}.values())
        if len(turns) > 1:
            wanted = set(_hints(call.body))
            turns = [t for t in turns if wanted & set(_hints(t.inbound["body"]))] or turns[-1:]
        return turns[0] if turns else None

    def _on_call(self, call: ConnectorCall, response: web.Response) -> None:
        """A conversation the bot creates continues the turn it was created in."""
        if call.route == CREATE and call.status < 300 and isinstance(call.response, dict):
            turn = self._creator(call)
            created = call.response.get("id")
            if turn is not None and isinstance(created, str):
                self.current[created] = turn

    async def _turn(self, turn: PlannedTurn) -> None:
        outcome = self.outcomes[turn.key] = TurnOutcome()
        self.current[turn.conversation_id] = turn
        if not turn.send:
            return
        self.in_flight.add(turn.key)
        try:
            await self._drive(turn, outcome)
        finally:
            self.in_flight.discard(turn.key)

    async def _drive(self, turn: PlannedTurn, outcome: TurnOutcome) -> None:
        assert self.http is not None and self.feed is not None
        activity = dict(turn.inbound["body"])
        activity["serviceUrl"] = self.channel.service_url
        ids = self.id_maps.setdefault(turn.conversation_id, {})
        if isinstance(activity.get("replyToId"), str) and activity["replyToId"] in ids:
            activity["replyToId"] = ids[activity["replyToId"]]
        content = json.dumps(activity, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": _JSON, TURN_HEADER: turn.key, "User-Agent": f"botproxy-replay/{__version__}"}
        self.channel.remember_inbound(activity)
        mark = len(self.channel.calls)
        flow = f"inbound-{turn.key}"
        started = time.time()
        self.feed.live.submit(RequestSeen(flow, started, "reverse", "POST", self.bot_url, list(headers.items()),
                                          content))
        try:
            async with asyncio.timeout(self.options.timeout_s):
                async with self.http.post(self.bot_url, data=content, headers=headers) as resp:
                    # Read as it comes, so a deliveryMode stream answer's frames keep their own times.
                    chunks = [(time.time(), chunk) async for chunk in resp.content.iter_any()]
            body = b"".join(chunk for _, chunk in chunks)
            self.feed.live.submit(
                ResponseSeen(flow, time.time(), resp.status, list(resp.headers.items()), body, chunks=chunks)
            )
            outcome.status = resp.status
            if resp.status >= 500:
                outcome.error = f"the bot answered HTTP {resp.status}{scrub(_excerpt(body))}"
        except TimeoutError:
            outcome.error = f"timeout: the bot did not answer within {self.options.timeout_s:g} s"
        except aiohttp.ClientConnectorError as exc:
            reason = "connection refused" if isinstance(exc.os_error, ConnectionRefusedError) else str(exc)
            outcome.error = f"cannot reach the bot at {scrub(self.bot_url)}: {scrub(reason)}"
        except aiohttp.ClientError as exc:
            outcome.error = f"the bot's answer broke off: {scrub(str(exc)) or type(exc).__name__}"
        outcome.duration_ms = round((time.time() - started) * 1000, 3)
        answered = len(self.channel.calls)
        if outcome.status is None:
            self.feed.live.submit(ResponseSeen(flow, time.time(), None, [], None, error=outcome.error))
            return
        if turn.late:
            await self._await_late_calls(turn, answered)
        if turn.late or self.options.quiet_every_turn:
            await self.channel.wait_quiet(turn.conversation_id, self.options.quiet_s, self.options.cap_s)
        self._learn_ids(turn, mark, ids)

    async def _await_late_calls(self, turn: PlannedTurn, since: int) -> None:
        """Wait (at most `cap`) for as many calls after the answer as the recording shows: a quiet window
        alone ends the turn before a proactive send that a loaded machine delays past it, and that send
        then lands in the next turn (an unchanged build reported changed)."""
        try:
            await self.channel.wait_for_calls(
                turn.late_calls, self.options.cap_s, lambda c: c.conversation_id == turn.conversation_id, since
            )
        except TimeoutError:
            pass  # the build sends fewer: the comparison says so

    def _learn_ids(self, turn: PlannedTurn, mark: int, ids: dict[str, str]) -> None:
        """Pair the ids the recording's connector assigned in this turn (sends, and conversations the bot
        created with their first activity) with the ones our channel did."""
        mine = {c for c, t in self.current.items() if t is turn}  # its conversation, and those it created
        sent = [
            c for c in itertools.islice(self.channel.calls, mark, None)
            if c.route in ISSUING_ROUTES and c.status < 300 and isinstance(c.response, dict)
            and isinstance(c.body, dict) and (c.conversation_id in mine if c.route != CREATE
                                              else c.response.get("id") in mine)
        ]
        recorded = [
            a for a in turn.replies + turn.proactive
            if a["route"] in ISSUING_ROUTES and a["activity_id"] and a["source"] == "request"
        ]
        if not sent or not recorded:
            return
        rec_views = [diff.comparable(a) for a in recorded]
        rep_views = [diff.comparable({"route": c.route, "body": _sent_activity(c)}) for c in sent]
        if [diff.signature(v) for v in rec_views] == [diff.signature(v) for v in rep_views]:
            pairs = list(zip(range(len(recorded)), range(len(sent)), strict=True))  # the same sends, in order
        else:
            pairs = [(i, j) for _, i, j in diff.align(rec_views, rep_views) if i is not None and j is not None]
        for i, j in pairs:
            call, activity = sent[j], recorded[i]
            if call.route == CREATE:
                ids[activity["conversation_id"]] = call.response["id"]
                if isinstance(call.response.get("activityId"), str):
                    ids[activity["activity_id"]] = call.response["activityId"]
            else:
                ids[activity["activity_id"]] = call.response["id"]

    def assigned(self) -> set[str]:
        """Every id this replay's channel issued: send ids, created conversations and their first activity."""
        found: set[str] = set()
        for c in self.channel.calls:
            if c.route in ISSUING_ROUTES and isinstance(c.response, dict):
                found |= {v for k in ("id", "activityId") if isinstance(v := c.response.get(k), str)}
        return found


def _sent_activity(call: ConnectorCall) -> dict[str, Any]:
    """The activity a call carried: a send's body, a CreateConversation's `activity`."""
    if call.route == CREATE:
        activity = call.body.get("activity")
        return activity if isinstance(activity, dict) else {}
    return dict(call.body)


def _hints(body: Any) -> list[str]:
    return creation_hints(body)


def _excerpt(body: bytes, limit: int = 120) -> str:
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return ""
    return ": " + (text if len(text) <= limit else text[: limit - 3] + "...")


async def _run_phase(
    db_path: str, plan: Plan, role: str, bot_url: str, run_id: int, options: ReplayOptions, engine: Any,
    progress: Callable[[], None],
) -> PhaseResult:
    name = f"{plan.session['name']}-replay-{run_id}-{role}"
    live = LiveSession(db_path, name=name, engine=engine, bot_url=bot_url, capture_mode="replay",
                       source="replay", notes=f"replay run {run_id} of session {plan.session['name']!r} ({role})")
    session_id = await asyncio.to_thread(live.start)
    driver = _Driver(plan, role, bot_url, options, progress)
    try:
        await driver.run(live)
    finally:
        await asyncio.to_thread(live.close)
    return PhaseResult(role, bot_url, session_id, name, driver.service_url, driver.outcomes, driver.id_maps,
                       driver.assigned())


def read_back(db: sqlite_utils.Database, phase: PhaseResult) -> None:
    """Fill `phase.turns` from its recorded session: inbound activities by TURN_HEADER, their turns'
    activities by `turn_seq`, proactive ones by the turn they followed."""
    keys: dict[int, str] = {}
    sql = "select seq, request_headers from exchanges where session_id = ? and leg = 'inbound'"
    for row in db.query(sql, [phase.session_id]):
        for name, value in json.loads(row["request_headers"] or "[]"):
            if name.lower() == TURN_HEADER.lower():
                keys[row["seq"]] = value
    by_inbound: dict[int, ReplayedTurn] = {}
    last: dict[str, tuple[str, ReplayedTurn]] = {}
    for activity in store.iter_activities(db, phase.session_id):
        if activity["direction"] == "to_bot":
            key = keys.get(activity["exchange_seq"])
            if key is None:
                continue
            turn = phase.turns[key] = ReplayedTurn(activity)
            by_inbound[activity["seq"]] = turn
            last[activity["conversation_id"] or ""] = (key, turn)
            phase.seq_key[activity["seq"]] = key
            continue
        if activity["direction"] != "from_bot":
            continue
        owner = by_inbound.get(activity["turn_seq"]) if activity["turn_seq"] is not None else None
        if owner is not None:
            owner.replies.append(activity)
            phase.seq_key[activity["seq"]] = keys[owner.inbound["exchange_seq"]]
        elif activity["turn_seq"] is None and (activity["conversation_id"] or "") in last:
            key, turn = last[activity["conversation_id"] or ""]
            turn.proactive.append(activity)
            phase.seq_key[activity["seq"]] = key
        else:
            phase.unattached.append(activity)


# -- the run -----------------------------------------------------------------------------------------


async def replay_session(
    db_path: str,
    session_ref: str,
    candidate_url: str,
    *,
    baseline_url: str | None = None,
    options: ReplayOptions | None = None,
    conversations: Collection[str] | None = None,
    progress: Progress | None = None,
    label: str | None = None,
    baseline_label: str | None = None,
) -> ReplayResult:
    """Replay a recorded session into `candidate_url` (and `baseline_url`), compare, store, return.

    Raises UsageError for bad options, SessionNotFound / StoreError for the database, UpstreamError
    when a bot cannot be reached at all before the run starts. `conversations`: replay only these
    (conversation ids of the recording), e.g. one per pytest item. `label`, `baseline_label`: the
    builds' names (`--label`). Several sessions in one run: `corpus.replay_corpus`.
    """
    options = options or ReplayOptions()
    candidate, baseline = Build(candidate_url, label), Build(baseline_url, baseline_label) if baseline_url else None
    rules = checked_options(candidate, baseline, options)
    db = store.open_db(db_path, write=True)  # the run is stored: a locked database is said before any work
    session = store.resolve_session(db, session_ref)
    plan = load_plan(db, session)
    if conversations is not None:
        keep_conversations(plan, conversations)
    if not plan.conversations:
        raise UsageError(f"session {session['name']!r} has no inbound activities to replay")
    await reachable(candidate, baseline)
    return await replay_plan(db_path, db, plan, candidate, baseline, rules, options, check_engines(options),
                             Ticker(progress))


class Ticker:
    """Counts the turns replayed and reports `(done, total)`. The total is each plan's turns as it starts,
    or `total` from the start (a corpus run knows all its plans first, and a progress bar its length)."""

    def __init__(self, progress: Progress | None, total: int | None = None) -> None:
        self.progress = progress
        self.done = 0
        self.total = total or 0
        self.fixed = total is not None

    def add(self, turns: int) -> None:
        if not self.fixed:
            self.total += turns

    def step(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


async def replay_plan(
    db_path: str, db: sqlite_utils.Database, plan: Plan, candidate: Build, baseline: Build | None,
    rules: diff.Ignore, options: ReplayOptions, engine_factory: Callable[[], Any] | None, ticker: Ticker,
    *, extra: dict[str, Any] | None = None,
) -> ReplayResult:
    """One session's run (its `replay_runs` row, `extra` columns added): drive each build, compare, store."""
    run_id = start_run(db, plan.session, candidate, baseline, options, rules, extra)
    roles = [(BASELINE, baseline.url)] if baseline else []
    roles.append((CANDIDATE, candidate.url))
    ticker.add(len(plan.turns) * len(roles))

    try:
        phases: dict[str, PhaseResult] = {}
        for role, url in roles:
            engine = engine_factory() if engine_factory else None
            phases[role] = await _run_phase(db_path, plan, role, url, run_id, options, engine, ticker.step)
            _obvious_mistake(plan, phases[role])
            read_back(db, phases[role])
        result = compare(db, plan, phases, rules, engine_factory, run_id)
    except BaseException as exc:
        fail_run(db, run_id, exc)
        raise
    store_run(db, result)
    return result


# Every turn answered with one of these says what is wrong with the setup, not with the build.
_SETUP_MISTAKES = {
    404: "is the messaging endpoint's path right (usually /api/messages)?",
    405: "is the messaging endpoint's path right (usually /api/messages)?",
    401: "the bot requires authentication; run it without an app id and password (MicrosoftAppId and "
         "MicrosoftAppPassword empty), as for the Emulator",
    403: "the bot refuses unauthenticated activities; run it without an app id and password (MicrosoftAppId "
         "and MicrosoftAppPassword empty), as for the Emulator",
}


def _obvious_mistake(plan: Plan, phase: PhaseResult) -> None:
    """One line (UpstreamError, exit 2) when every turn the bot was sent got the same setup error, which
    the recording did not: instead of a difference per turn, say what is wrong."""
    sent = [t for t in plan.turns if t.send]
    statuses = {phase.outcomes[t.key].status for t in sent}
    recorded = {t.inbound["status"] for t in sent}
    if len(statuses) != 1 or not sent:
        return
    status = next(iter(statuses))
    if status in _SETUP_MISTAKES and status not in recorded:
        raise UpstreamError(f"every turn ({len(sent)}) was answered HTTP {status} by {scrub(phase.bot_url)}: "
                            f"{_SETUP_MISTAKES[status]}")


def checked_options(candidate: Build, baseline: Build | None, options: ReplayOptions) -> diff.Ignore:
    """The run's ignore rules, once they, the builds' URLs and the options are known to be good (UsageError)."""
    rules = diff.parse_ignore(options.ignore)
    for flag, build in (("--bot", candidate), ("--baseline", baseline)):
        if build is None:
            continue
        parts = urlsplit(build.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"{flag} must be a bot's http(s) messaging endpoint, e.g. "
                             f"http://127.0.0.1:3978/api/messages, not {build.url!r}")
    if options.concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, not {options.concurrency}")
    if options.quiet_ms < 0 or options.cap_ms < 0 or options.timeout_s <= 0:
        raise UsageError("--quiet-ms and --cap-ms must be 0 or more, and --timeout more than 0")
    return rules


async def reachable(candidate: Build, baseline: Build | None) -> None:
    """Each build is listening (the baseline first), or UpstreamError."""
    for build in filter(None, (baseline, candidate)):
        await _reachable(build.url)


async def _reachable(url: str) -> None:
    """One clear line before anything starts when nothing listens at the bot's address."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        async with asyncio.timeout(5):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as exc:
        if isinstance(exc, TimeoutError):
            reason = "no answer within 5 s"
        elif isinstance(exc, ConnectionRefusedError):
            reason = "connection refused"
        else:
            reason = exc.strerror or str(exc)
        raise UpstreamError(f"cannot reach the bot at {url} ({reason}); is it running?") from None
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass


def check_engines(options: ReplayOptions) -> Callable[[], Any] | None:
    """A maker of check engines, or None when checks are off."""
    if not options.checks:
        return None
    from ..checks import Engine

    return lambda: Engine(options.check_config)
