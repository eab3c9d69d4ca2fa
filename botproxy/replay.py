"""Replay a recorded session into a bot (a new build) and report, turn by turn, what it does differently.

1. **Plan.** The recorded session's inbound activities (channel → bot), by conversation, each with the
   activities of its turn (the recorder's turn model: `turn_seq`) and the proactive activities that
   followed it. An inbound activity whose body is missing, or whose exchange failed (the bot was never
   reached, or answered 5xx), is *incomplete*: reported with a reason, never guessed at.
2. **Drive.** For each build (the baseline first, when there is one, then the candidate), a fresh
   `ConnectorChannel` plays the Bot Connector: every inbound activity is sent as recorded (ids, from,
   recipient, conversation, text, value, ...) except `serviceUrl`, which names the channel, and a
   `replyToId` naming an id the recording's connector assigned, which is mapped to the id this replay's
   channel assigned to the same reply. Conversations run in parallel up to `concurrency`; the turns of
   one conversation strictly in order. A turn is over when the bot has answered the inbound POST and
   its conversation has had no connector call for `quiet_ms` (counted from the answer or the latest
   call; at most `cap_ms`). That quiet window is waited for where the recording shows the bot talking
   after its answer (a reply that came late, proactive sends after the turn), and once for the whole
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
   regressions too, unless the baseline has them as well.
5. **Store.** `replay_runs` and `replay_turns` rows; `ReplayResult.to_json()` is `botproxy replay --json`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import sqlite_utils
from aiohttp import web

from . import __version__, diff, store
from .channel import ConnectorCall, ConnectorChannel
from .errors import UpstreamError, UsageError
from .recording import Observer, RequestSeen, ResponseSeen
from .session import LiveSession

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 4
DEFAULT_QUIET_MS = 200.0
DEFAULT_CAP_MS = 2000.0
DEFAULT_TIMEOUT_S = 30.0
TURN_HEADER = "X-Botproxy-Replay"  # names the planned turn an inbound POST replays
SAME, CHANGED, ERROR = "same", "changed", "error"
CANDIDATE, BASELINE = "candidate", "baseline"
_SEND_ROUTES = frozenset({"send_to_conversation", "reply_to_activity"})
_MEMBER_ROUTES = frozenset({"get_members", "get_paged_members", "get_member"})
_JSON = "application/json; charset=utf-8"

Progress = Callable[[int, int], None]


# -- the plan: what was recorded ---------------------------------------------------------------------


@dataclass
class PlannedTurn:
    key: str  # "<conversation number>.<index>": the TURN_HEADER value
    conversation_id: str
    index: int  # 1-based within its conversation
    inbound: dict[str, Any]  # the recorded inbound activity (store.activity_record shape)
    replies: list[dict[str, Any]] = field(default_factory=list)  # its turn's activities, in seq order
    proactive: list[dict[str, Any]] = field(default_factory=list)  # proactive activities that followed it
    incomplete: str | None = None  # why the recording cannot be compared, if it cannot
    send: bool = True  # False: the bot never saw it in the recording either
    late: bool = False  # the recording shows the bot talking after its answer: wait for quiet after it

    @property
    def text(self) -> str:
        return self.inbound.get("text") or self.inbound.get("name") or self.inbound.get("type") or ""


@dataclass
class Plan:
    session: dict[str, Any]
    conversations: dict[str, list[PlannedTurn]]
    proactive_before: dict[str, list[dict[str, Any]]]  # proactive activities before a conversation's first turn
    members: dict[str, list[dict[str, Any]]]  # rosters the recording's connector returned
    bot: dict[str, Any] | None
    service_urls: set[str]
    inbound_ids: dict[str, set[str]]
    assigned_ids: dict[str, set[str]]  # ids the recording's connector assigned, per conversation
    seq_turn: dict[int, PlannedTurn]  # recorded activity seq -> the turn it belongs to

    @property
    def turns(self) -> list[PlannedTurn]:
        return [t for turns in self.conversations.values() for t in turns]


def load_plan(db: sqlite_utils.Database, session: dict[str, Any]) -> Plan:
    """The replay plan of a stored session (see the module docstring)."""
    sid = session["id"]
    inbound_exchanges = {
        row["seq"]: row
        for row in db.query("select seq, error, closed from exchanges where session_id = ? and leg = 'inbound'", [sid])
    }
    plan = Plan(session, {}, {}, _recorded_members(db, sid), None, set(), {}, {}, {})
    last_turn: dict[str, PlannedTurn] = {}
    by_inbound: dict[int, PlannedTurn] = {}
    answered_at: dict[int, int | None] = {}  # inbound seq -> event number of the bot's answer
    for activity in store.iter_activities(db, sid):
        conversation = activity["conversation_id"]
        if activity["service_url"]:
            plan.service_urls.add(activity["service_url"])
        if activity["direction"] == "to_bot" and activity["route"] == "bot_messages":
            exchange = inbound_exchanges.get(activity["exchange_seq"]) or {}
            turn = _planned_turn(plan, activity, exchange.get("error"))
            answered_at[activity["seq"]] = exchange.get("closed")
            by_inbound[activity["seq"]] = turn
            last_turn[turn.conversation_id] = turn
            plan.seq_turn[activity["seq"]] = turn
            if activity["activity_id"]:
                plan.inbound_ids.setdefault(turn.conversation_id, set()).add(activity["activity_id"])
            if plan.bot is None and isinstance((activity["body"] or {}).get("recipient"), dict):
                plan.bot = dict(activity["body"]["recipient"])
            continue
        if activity["direction"] != "from_bot":
            continue  # the Direct Line client leg is not replayed
        if activity["activity_id"] and activity["route"] in _SEND_ROUTES and conversation:
            plan.assigned_ids.setdefault(conversation, set()).add(activity["activity_id"])
        owner = by_inbound.get(activity["turn_seq"]) if activity["turn_seq"] is not None else None
        if owner is not None:
            owner.replies.append(activity)
            plan.seq_turn[activity["seq"]] = owner
            answered = answered_at.get(owner.inbound["seq"])
            if answered is not None and activity["source"] == "request" and (activity["event"] or 0) > answered:
                owner.late = True
        elif activity["turn_seq"] is None and conversation in last_turn:
            last_turn[conversation].proactive.append(activity)
            last_turn[conversation].late = True
            plan.seq_turn[activity["seq"]] = last_turn[conversation]
        elif activity["turn_seq"] is None:
            plan.proactive_before.setdefault(conversation or "", []).append(activity)
    return plan


def _planned_turn(plan: Plan, activity: dict[str, Any], failure: str | None) -> PlannedTurn:
    conversation = activity["conversation_id"] or ""
    turns = plan.conversations.setdefault(conversation, [])
    number = list(plan.conversations).index(conversation) + 1
    turn = PlannedTurn(f"{number}.{len(turns) + 1}", conversation, len(turns) + 1, activity)
    turns.append(turn)
    body = activity["body"]
    status = activity["status"]
    if not isinstance(body, dict) or not body.get("type"):
        turn.incomplete, turn.send = "incomplete recording: the inbound body is missing or not an activity", False
    elif not conversation:
        turn.incomplete, turn.send = "incomplete recording: the inbound activity names no conversation", False
    elif failure:
        turn.incomplete = f"incomplete recording: the bot was not reached ({failure})"
        turn.send = False
    elif status is not None and status >= 500:
        # The bot saw it (so it is sent again, to keep the conversation's state), but failed on it.
        turn.incomplete = f"incomplete recording: the bot answered HTTP {status}, so there is nothing to compare"
    return turn


def _recorded_members(db: sqlite_utils.Database, sid: int) -> dict[str, list[dict[str, Any]]]:
    """The rosters the recording's connector returned to the bot (members routes), per conversation."""
    members: dict[str, list[dict[str, Any]]] = {}
    sql = (
        "select conversation_id, route, response_body from exchanges where session_id = ? and status < 300"
        f" and route in ({', '.join('?' * len(_MEMBER_ROUTES))}) order by seq"
    )
    for row in db.query(sql, [sid, *sorted(_MEMBER_ROUTES)]):
        try:
            body = json.loads(row["response_body"] or "null")
        except ValueError:
            continue
        found = body.get("members") if isinstance(body, dict) and "members" in body else body
        found = [found] if isinstance(found, dict) else found
        if row["conversation_id"] and isinstance(found, list):
            members.setdefault(row["conversation_id"], []).extend(m for m in found if isinstance(m, dict))
    return members


# -- driving one build -------------------------------------------------------------------------------


@dataclass
class TurnOutcome:
    status: int | None = None  # the bot's HTTP status for the inbound POST
    error: str | None = None
    duration_ms: float | None = None


@dataclass
class ReplayedTurn:
    inbound: dict[str, Any]
    replies: list[dict[str, Any]] = field(default_factory=list)
    proactive: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PhaseResult:
    role: str
    bot_url: str
    session_id: int
    session_name: str
    service_url: str
    outcomes: dict[str, TurnOutcome]
    id_maps: dict[str, dict[str, str]]  # conversation -> recorded connector id -> this replay's
    assigned: set[str]  # ids this replay's channel assigned
    turns: dict[str, ReplayedTurn] = field(default_factory=dict)  # turn key -> what the bot did
    seq_key: dict[int, str] = field(default_factory=dict)  # replay session seq -> turn key
    unattached: list[dict[str, Any]] = field(default_factory=list)  # activities outside every planned turn
    checks: Any = None


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


@dataclass
class _Options:
    concurrency: int
    quiet: float
    cap: float
    timeout: float
    quiet_every_turn: bool = False


class _Driver:
    def __init__(self, plan: Plan, role: str, bot_url: str, options: _Options, progress: Callable[[], None]) -> None:
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

    async def run(self, live: LiveSession) -> None:
        for conversation, members in self.plan.members.items():
            self.channel.add_members(conversation, members)
        await self.channel.start()
        self.service_url = self.channel.service_url
        self.feed = _Feed(live, self.channel)
        self.channel.observers.append(self.feed.connector_call)
        limit = asyncio.Semaphore(self.options.concurrency)
        connector = aiohttp.TCPConnector(limit=self.options.concurrency * 2)
        try:
            async with aiohttp.ClientSession(connector=connector) as self.http:
                await asyncio.gather(*(self._conversation(turns, limit) for turns in self.plan.conversations.values()))
            # What the bot still sends after its last answers (late replies, proactive sends) belongs too.
            await self.channel.wait_quiet(None, self.options.quiet, self.options.cap)
        finally:
            await self.channel.stop()

    async def _conversation(self, turns: list[PlannedTurn], limit: asyncio.Semaphore) -> None:
        async with limit:
            for turn in turns:
                await self._turn(turn)
                self.progress()

    async def _turn(self, turn: PlannedTurn) -> None:
        outcome = self.outcomes[turn.key] = TurnOutcome()
        if not turn.send:
            return
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
            async with asyncio.timeout(self.options.timeout):
                async with self.http.post(self.bot_url, data=content, headers=headers) as resp:
                    body = await resp.read()
            self.feed.live.submit(ResponseSeen(flow, time.time(), resp.status, list(resp.headers.items()), body))
            outcome.status = resp.status
            if resp.status >= 500:
                outcome.error = f"the bot answered HTTP {resp.status}{_excerpt(body)}"
        except TimeoutError:
            outcome.error = f"timeout: the bot did not answer within {self.options.timeout:g} s"
        except aiohttp.ClientConnectorError as exc:
            reason = "connection refused" if isinstance(exc.os_error, ConnectionRefusedError) else str(exc)
            outcome.error = f"cannot reach the bot at {self.bot_url}: {reason}"
        except aiohttp.ClientError as exc:
            outcome.error = f"the bot's answer broke off: {exc or type(exc).__name__}"
        outcome.duration_ms = round((time.time() - started) * 1000, 3)
        if outcome.status is None:
            self.feed.live.submit(ResponseSeen(flow, time.time(), None, [], None, error=outcome.error))
            return
        if turn.late or self.options.quiet_every_turn:
            await self.channel.wait_quiet(turn.conversation_id, self.options.quiet, self.options.cap)
        self._learn_ids(turn, mark, ids)

    def _learn_ids(self, turn: PlannedTurn, mark: int, ids: dict[str, str]) -> None:
        """Pair the ids the recording's connector assigned in this turn with the ones our channel did."""
        sent = [
            c for c in itertools.islice(self.channel.calls, mark, None)
            if c.conversation_id == turn.conversation_id and c.route in _SEND_ROUTES and c.status < 300
            and isinstance(c.response, dict) and isinstance(c.body, dict)
        ]
        recorded = [
            a for a in turn.replies + turn.proactive
            if a["route"] in _SEND_ROUTES and a["activity_id"] and a["source"] == "request"
        ]
        if not sent or not recorded:
            return
        rec_sigs = [diff.signature({**(a["body"] or {}), "@route": a["route"]}) for a in recorded]
        rep_sigs = [diff.signature({**c.body, "@route": c.route}) for c in sent]
        if rec_sigs == rep_sigs:  # the common case: the same sends in the same order
            pairs = list(zip(range(len(recorded)), range(len(sent)), strict=True))
        else:
            rec_views = [diff.comparable(a) for a in recorded]
            rep_views = [diff.comparable({"route": c.route, "body": c.body}) for c in sent]
            pairs = [(i, j) for _, i, j in diff.align(rec_views, rep_views) if i is not None and j is not None]
        for i, j in pairs:
            ids[recorded[i]["activity_id"]] = sent[j].response["id"]

    def assigned(self) -> set[str]:
        return {
            c.response["id"] for c in self.channel.calls
            if c.route in _SEND_ROUTES and isinstance(c.response, dict) and isinstance(c.response.get("id"), str)
        }


def _excerpt(body: bytes, limit: int = 120) -> str:
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return ""
    return ": " + (text if len(text) <= limit else text[: limit - 3] + "...")


async def _run_phase(
    db_path: str, plan: Plan, role: str, bot_url: str, run_id: int, options: _Options, engine: Any,
    progress: Callable[[], None],
) -> PhaseResult:
    checks = _live_checks(engine)
    observers: list[Observer] = [checks] if checks is not None else []
    name = f"{plan.session['name']}-replay-{run_id}-{role}"
    live = LiveSession(db_path, name=name, observers=observers, bot_url=bot_url, capture_mode="replay",
                       source="replay", notes=f"replay run {run_id} of session {plan.session['name']!r} ({role})")
    session_id = await asyncio.to_thread(live.start)
    if checks is not None:
        checks.session_id = session_id  # known only now; no traffic has been fed yet
    driver = _Driver(plan, role, bot_url, options, progress)
    try:
        await driver.run(live)
    finally:
        await asyncio.to_thread(live.close)
    return PhaseResult(role, bot_url, session_id, name, driver.service_url, driver.outcomes, driver.id_maps,
                       driver.assigned(), checks=checks)


def _live_checks(engine: Any) -> Any:
    if engine is None:
        return None
    from .checks import LiveChecks

    return LiveChecks(engine, 0)


def read_back(db: sqlite_utils.Database, phase: PhaseResult, plan: Plan) -> None:
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


# -- comparing ---------------------------------------------------------------------------------------


@dataclass
class TurnResult:
    turn: PlannedTurn
    status: str
    regressed: bool
    error: str | None
    outcome: TurnOutcome
    recorded: list[dict[str, Any]]
    replayed: list[dict[str, Any]]
    differences: list[diff.Difference]  # all, noise included (`noise=True`)
    noise_paths: set[str]
    new_findings: list[dict[str, Any]]
    candidate_seq: int | None
    baseline_seq: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "conversation_id": self.turn.conversation_id,
            "index": self.turn.index,
            "inbound_seq": self.turn.inbound["seq"],
            "inbound_type": self.turn.inbound["type"],
            "inbound_text": self.turn.inbound["text"],
            "inbound_name": self.turn.inbound["name"],
            "status": self.status,
            "regressed": self.regressed,
            "error": self.error,
            "http_status": self.outcome.status,
            "duration_ms": self.outcome.duration_ms,
            "candidate_seq": self.candidate_seq,
            "baseline_seq": self.baseline_seq,
            "differences": [d.to_dict() for d in self.differences if not d.noise],
            "noise": [d.to_dict() for d in self.differences if d.noise],
            "noise_paths": sorted(self.noise_paths),
            "new_findings": self.new_findings,
            "recorded": self.recorded,
            "replayed": self.replayed,
        }


class _Comparer:
    def __init__(self, plan: Plan, ignore: diff.Ignore) -> None:
        self.plan = plan
        self.ignore = ignore

    def recorded_views(self, turn: PlannedTurn, with_proactive: bool) -> tuple[list[dict[str, Any]], list[Any]]:
        known = self.plan.inbound_ids.get(turn.conversation_id, set()) | self.plan.assigned_ids.get(
            turn.conversation_id, set()
        )

        def canon(value: str) -> str:
            return value if value in known else diff.GENERATED

        acts = turn.replies + (turn.proactive if with_proactive else [])
        return acts, [diff.comparable(a, canon_id=canon, service_urls=self.plan.service_urls) for a in acts]

    def replayed_views(
        self, turn: PlannedTurn, phase: PhaseResult
    ) -> tuple[list[dict[str, Any]], list[Any]]:
        replayed = phase.turns.get(turn.key)
        acts = (replayed.replies + replayed.proactive) if replayed else []
        back = {v: k for k, v in phase.id_maps.get(turn.conversation_id, {}).items()}
        inbound = self.plan.inbound_ids.get(turn.conversation_id, set())

        def canon(value: str) -> str:
            if value in back:
                return back[value]
            if value in phase.assigned:
                return f"<unmatched {value}>"
            return value if value in inbound else diff.GENERATED

        return acts, [diff.comparable(a, canon_id=canon, service_urls=[phase.service_url]) for a in acts]

    def compare(self, turn: PlannedTurn, phase: PhaseResult, noise: set[str]) -> tuple[list[Any], list[Any],
                                                                                       list[diff.Difference]]:
        replayed = phase.turns.get(turn.key)
        rep_acts, rep_views = self.replayed_views(turn, phase)
        rec_acts, rec_views = self.recorded_views(turn, bool(replayed and replayed.proactive))
        differences = diff.diff_turn(rec_views, rep_views, ignore=self.ignore, noise=noise)
        recorded_status, replayed_status = turn.inbound["status"], phase.outcomes[turn.key].status
        if recorded_status is not None and replayed_status is not None and recorded_status != replayed_status:
            status_diff = diff.Difference(diff.CHANGED, "http_status", recorded_status, replayed_status)
            differences = diff.mark_noise([status_diff], noise) + differences
        return rec_acts, rep_acts, differences


def _compact(activity: dict[str, Any], proactive: bool) -> dict[str, Any]:
    return {
        "seq": activity["seq"],
        "route": activity["route"],
        "type": activity["type"],
        "text": activity["text"],
        "activity_id": activity["activity_id"],
        "reply_to_id": activity["reply_to_id"],
        "status": activity["status"],
        "proactive": proactive,
        "body": activity["body"],
    }


def _compacts(turn_acts: list[dict[str, Any]], proactive: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    late = {a["seq"] for a in proactive}
    return [_compact(a, a["seq"] in late) for a in turn_acts]


# -- findings ----------------------------------------------------------------------------------------


def _findings_by_turn(findings: Iterable[Any], seq_key: Callable[[int | None], str | None]) -> dict[str, list[Any]]:
    turns: dict[str, list[Any]] = {}
    for finding in findings:
        key = seq_key(finding.seq)
        if key is not None:
            turns.setdefault(key, []).append(finding)
    return turns


def _new_findings(candidate: list[Any], recorded: list[Any], baseline: list[Any] | None) -> list[dict[str, Any]]:
    """Candidate findings of rules the recording did not break (as often) in this turn; `noise` when the
    baseline broke them too."""
    seen = Counter(f.rule for f in recorded)
    noisy = Counter(f.rule for f in baseline or []) - seen
    new: list[dict[str, Any]] = []
    for finding in candidate:
        if seen[finding.rule] > 0:
            seen[finding.rule] -= 1
            continue
        entry = finding.to_dict()
        entry["noise"] = noisy[finding.rule] > 0
        if entry["noise"]:
            noisy[finding.rule] -= 1
        new.append(entry)
    return new


# -- the run -----------------------------------------------------------------------------------------


@dataclass
class ReplayResult:
    run: dict[str, Any]
    session: dict[str, Any]
    summary: dict[str, Any]
    turns: list[TurnResult]
    proactive: list[dict[str, Any]]

    @property
    def run_id(self) -> int:
        return int(self.run["id"])

    @property
    def regressed(self) -> bool:
        return bool(self.summary["regressed"])

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "session": self.session,
            "summary": self.summary,
            "turns": [t.to_json() for t in self.turns],
            "proactive": self.proactive,
        }


async def replay_session(
    db_path: str,
    session_ref: str,
    candidate_url: str,
    *,
    baseline_url: str | None = None,
    ignore: Iterable[str] = (),
    concurrency: int = DEFAULT_CONCURRENCY,
    quiet_ms: float = DEFAULT_QUIET_MS,
    cap_ms: float = DEFAULT_CAP_MS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    quiet_every_turn: bool = False,
    checks: bool = True,
    check_config: Any = None,
    progress: Progress | None = None,
) -> ReplayResult:
    """Replay a recorded session into `candidate_url` (and `baseline_url`), compare, store, return.

    Raises UsageError for bad options, SessionNotFound / StoreError for the database, UpstreamError
    when a bot cannot be reached at all before the run starts.
    """
    rules = diff.parse_ignore(ignore)
    options = _validate(candidate_url, baseline_url, concurrency, quiet_ms, cap_ms, timeout_s)
    options.quiet_every_turn = quiet_every_turn
    db = store.open_db(db_path)
    session = store.resolve_session(db, session_ref)
    plan = load_plan(db, session)
    if not plan.conversations:
        raise UsageError(f"session {session['name']!r} has no inbound activities to replay")
    for url in filter(None, (baseline_url, candidate_url)):
        await _reachable(url)
    engine_factory = _engine_factory(checks, check_config)
    run_id = _start_run(db, session, candidate_url, baseline_url, options, rules)
    roles = [(BASELINE, baseline_url)] if baseline_url else []
    roles.append((CANDIDATE, candidate_url))
    total = len(plan.turns) * len(roles)
    done = itertools.count(1)

    def tick() -> None:
        if progress is not None:
            progress(next(done), total)

    try:
        phases: dict[str, PhaseResult] = {}
        for role, url in roles:
            assert url is not None
            engine = engine_factory() if engine_factory else None
            phases[role] = await _run_phase(db_path, plan, role, url, run_id, options, engine, tick)
            read_back(db, phases[role], plan)
        result = _compare(db, plan, phases, rules, engine_factory, run_id)
    except BaseException as exc:
        _fail_run(db, run_id, exc)
        raise
    _store_run(db, result)
    return result


def _validate(candidate: str, baseline: str | None, concurrency: int, quiet_ms: float, cap_ms: float,
              timeout_s: float) -> _Options:
    for flag, url in (("--bot", candidate), ("--baseline", baseline)):
        if url is None:
            continue
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"{flag} must be a bot's http(s) messaging endpoint, e.g. "
                             f"http://127.0.0.1:3978/api/messages, not {url!r}")
    if concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, not {concurrency}")
    if quiet_ms < 0 or cap_ms < 0 or timeout_s <= 0:
        raise UsageError("--quiet-ms and --cap-ms must be 0 or more, and --timeout more than 0")
    return _Options(concurrency, quiet_ms / 1000, cap_ms / 1000, timeout_s)


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


def _engine_factory(enabled: bool, config: Any) -> Callable[[], Any] | None:
    """A maker of check engines, or None when checks are off or not installed."""
    if not enabled:
        return None
    try:
        from .checks import Engine
    except ImportError:  # the rule engine is optional: without it, replays compare activities only
        log.info("botproxy.checks is not available; replaying without checks")
        return None
    return lambda: Engine(config)


def _compare(
    db: sqlite_utils.Database,
    plan: Plan,
    phases: dict[str, PhaseResult],
    ignore: diff.Ignore,
    engine_factory: Callable[[], Any] | None,
    run_id: int,
) -> ReplayResult:
    candidate, baseline = phases[CANDIDATE], phases.get(BASELINE)
    comparer = _Comparer(plan, ignore)
    recorded_findings, candidate_findings, baseline_findings = _all_findings(db, plan, phases, engine_factory)
    results: list[TurnResult] = []
    all_noise: set[str] = set()
    for turn in plan.turns:
        noise: set[str] = set()
        if baseline is not None and turn.incomplete is None and baseline.outcomes[turn.key].error is None:
            _, base_acts, base_diffs = comparer.compare(turn, baseline, set())
            noise = {d.noise_key for d in base_diffs}
            all_noise |= noise
        rec_acts, rep_acts, differences = comparer.compare(turn, candidate, noise)
        outcome = candidate.outcomes[turn.key]
        new = _new_findings(candidate_findings.get(turn.key, []), recorded_findings.get(turn.key, []),
                            baseline_findings.get(turn.key) if baseline is not None else None)
        if turn.incomplete is not None:
            status, regressed, error = ERROR, False, turn.incomplete
            differences, new = [], []
        elif outcome.error is not None:
            status, regressed, error = ERROR, True, outcome.error
            differences, new = [], []
        elif any(not d.noise for d in differences) or any(not f["noise"] for f in new):
            status, regressed, error = CHANGED, True, None
        else:
            status, regressed, error = SAME, False, None
        replayed = candidate.turns.get(turn.key)
        results.append(
            TurnResult(
                turn, status, regressed, error, outcome,
                _compacts(rec_acts, turn.proactive),
                _compacts(rep_acts, replayed.proactive if replayed else []),
                differences, noise, new,
                replayed.inbound["seq"] if replayed else None,
                _seq(baseline, turn.key) if baseline else None,
            )
        )
    proactive = _proactive_report(plan, candidate)
    summary = _summary(results, proactive, candidate, engine_factory is not None)
    run = _run_json(db, run_id, plan, phases, ignore, all_noise, summary)
    return ReplayResult(run, _session_json(plan.session), summary, results, proactive)


def _seq(phase: PhaseResult, key: str) -> int | None:
    turn = phase.turns.get(key)
    return turn.inbound["seq"] if turn else None


def _all_findings(
    db: sqlite_utils.Database, plan: Plan, phases: dict[str, PhaseResult], engine_factory: Callable[[], Any] | None
) -> tuple[dict[str, list[Any]], dict[str, list[Any]], dict[str, list[Any]]]:
    if engine_factory is None:
        return {}, {}, {}
    from .checks import check_session, stored_findings

    def planned(seq: int | None) -> str | None:
        turn = plan.seq_turn.get(seq) if seq is not None else None
        return turn.key if turn else None

    recorded = _findings_by_turn(check_session(db, plan.session["id"], engine=engine_factory()), planned)
    by_phase = {role: _findings_by_turn(stored_findings(db, phase.session_id), _lookup(phase.seq_key))
                for role, phase in phases.items()}
    return recorded, by_phase.get(CANDIDATE, {}), by_phase.get(BASELINE, {})


def _lookup(seq_key: dict[int, str]) -> Callable[[int | None], str | None]:
    return lambda seq: seq_key.get(seq) if seq is not None else None


def _proactive_report(plan: Plan, candidate: PhaseResult) -> list[dict[str, Any]]:
    """Recorded proactive activities the replay did not bring about (the bot's own initiative, which
    replaying inbound activities need not trigger), and replayed ones outside every planned turn."""
    report = []
    for conversation, acts in plan.proactive_before.items():
        report.append({"conversation_id": conversation, "after_index": 0, "status": "not_replayed",
                       "recorded": [_compact(a, True) for a in acts], "replayed": []})
    for turn in plan.turns:
        replayed = candidate.turns.get(turn.key)
        if turn.proactive and not (replayed and replayed.proactive):
            report.append({"conversation_id": turn.conversation_id, "after_index": turn.index,
                           "status": "not_replayed", "recorded": [_compact(a, True) for a in turn.proactive],
                           "replayed": []})
    if candidate.unattached:
        for conversation, group in itertools.groupby(candidate.unattached, key=lambda a: a["conversation_id"]):
            report.append({"conversation_id": conversation, "after_index": None, "status": "unattached",
                           "recorded": [], "replayed": [_compact(a, True) for a in group]})
    return report


def _summary(results: list[TurnResult], proactive: list[dict[str, Any]], candidate: PhaseResult,
             checks: bool) -> dict[str, Any]:
    statuses = Counter(r.status for r in results)
    return {
        "turns": len(results),
        "conversations": len({r.turn.conversation_id for r in results}),
        SAME: statuses[SAME],
        CHANGED: statuses[CHANGED],
        ERROR: statuses[ERROR],
        "incomplete": sum(1 for r in results if r.turn.incomplete),
        "regressed": sum(1 for r in results if r.regressed),
        "differences": sum(1 for r in results for d in r.differences if not d.noise),
        "noise": sum(1 for r in results for d in r.differences if d.noise),
        "new_findings": sum(1 for r in results for f in r.new_findings if not f["noise"]),
        "proactive_not_replayed": sum(len(p["recorded"]) for p in proactive if p["status"] == "not_replayed"),
        "proactive_unattached": sum(len(p["replayed"]) for p in proactive if p["status"] == "unattached"),
        "checks": checks,
    }


def _session_json(session: dict[str, Any]) -> dict[str, Any]:
    from .show import session_summary

    return session_summary(session)


# -- storage -----------------------------------------------------------------------------------------


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))


def _start_run(db: sqlite_utils.Database, session: dict[str, Any], candidate_url: str, baseline_url: str | None,
               options: _Options, ignore: diff.Ignore) -> int:
    row = {
        "session_id": session["id"],
        "started_at": _now(),
        "candidate_url": candidate_url,
        "baseline_url": baseline_url,
        "concurrency": options.concurrency,
        "options": _dumps(_options_json(options)),
        "ignore_paths": _dumps(list(ignore.user)),
        "status": "running",
    }
    with db.conn:
        return int(db.table("replay_runs").insert(row).last_pk or 0)


def _options_json(options: _Options) -> dict[str, Any]:
    return {"quiet_ms": options.quiet * 1000, "cap_ms": options.cap * 1000, "timeout_s": options.timeout,
            "quiet_every_turn": options.quiet_every_turn}


def _fail_run(db: sqlite_utils.Database, run_id: int, exc: BaseException) -> None:
    try:
        with db.conn:
            db.table("replay_runs").update(run_id, {"status": "failed", "ended_at": _now(),
                                                    "error": str(exc) or type(exc).__name__})
    except Exception:  # the original failure is the one to report
        log.exception("could not mark replay run %s as failed", run_id)


def _run_json(db: sqlite_utils.Database, run_id: int, plan: Plan, phases: dict[str, PhaseResult],
              ignore: diff.Ignore, noise: set[str], summary: dict[str, Any]) -> dict[str, Any]:
    row = dict(db.table("replay_runs").get(run_id))
    candidate, baseline = phases[CANDIDATE], phases.get(BASELINE)
    return {
        "id": run_id,
        "started_at": row["started_at"],
        "ended_at": _now(),
        "status": "regressed" if summary["regressed"] else "passed",
        "candidate_url": candidate.bot_url,
        "baseline_url": baseline.bot_url if baseline else None,
        "candidate_session": {"id": candidate.session_id, "name": candidate.session_name},
        "baseline_session": {"id": baseline.session_id, "name": baseline.session_name} if baseline else None,
        "concurrency": row["concurrency"],
        "options": json.loads(row["options"]),
        "ignore": list(ignore.user),
        "volatile": list(diff.VOLATILE),
        "noise_paths": sorted(noise),
    }


def _store_run(db: sqlite_utils.Database, result: ReplayResult) -> None:
    run = result.run
    rows = [_turn_row(run["id"], t) for t in result.turns]
    with db.conn:
        db.table("replay_turns").insert_all(rows, batch_size=500)
        db.table("replay_runs").update(
            run["id"],
            {
                "ended_at": run["ended_at"],
                "status": run["status"],
                "candidate_session_id": run["candidate_session"]["id"],
                "baseline_session_id": run["baseline_session"]["id"] if run["baseline_session"] else None,
                "noise_paths": _dumps(run["noise_paths"]),
                "summary": _dumps({**result.summary, "proactive": result.proactive}),
            },
        )


def _turn_row(run_id: int, result: TurnResult) -> dict[str, Any]:
    data = result.to_json()
    return {
        "run_id": run_id,
        "conversation_id": data["conversation_id"],
        "idx": data["index"],
        "inbound_seq": data["inbound_seq"],
        "candidate_seq": data["candidate_seq"],
        "baseline_seq": data["baseline_seq"],
        "inbound_text": data["inbound_text"],
        "status": data["status"],
        "regressed": int(data["regressed"]),
        "duration_ms": data["duration_ms"],
        "recorded": _dumps(data["recorded"]),
        "replayed": _dumps(data["replayed"]),
        "differences": _dumps(data["differences"]),
        "noise": _dumps(data["noise"]),
        "noise_paths": _dumps(data["noise_paths"]),
        "new_findings": _dumps(data["new_findings"]),
        "error": data["error"],
    }


def iter_turn_rows(db: sqlite_utils.Database, run_id: int) -> Iterator[dict[str, Any]]:
    """A stored run's turns, JSON columns parsed, in conversation and turn order."""
    sql = "select * from replay_turns where run_id = ? order by rowid"
    for row in db.query(sql, [run_id]):
        out = dict(row)
        for name in ("recorded", "replayed", "differences", "noise", "noise_paths", "new_findings"):
            out[name] = json.loads(out[name]) if out.get(name) else []
        yield out
