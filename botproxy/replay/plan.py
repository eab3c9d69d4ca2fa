"""The replay's shared types: the plan (what a recorded session replays), the builds it drives, how it
drives them (`ReplayOptions`), and what each build did, which the driver fills in and `results` compares.

**The plan.** The recorded session's inbound activities (channel → bot), by conversation, each with
the activities of its turn (the recorder's turn model: `turn_seq`), the proactive activities that
followed it, and how the recording's connector answered the bot's calls in it. An inbound activity
whose body is missing, or whose exchange failed (the bot was never reached, or answered 5xx), is
*incomplete*: reported with a reason, never guessed at.

The replay modules import one way (the contract in pyproject.toml): corpus > driver > results > plan,
diff; nothing here imports the driver, so the types need no `TYPE_CHECKING` cycle.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from .. import store
from ..errors import UsageError
from ..settings import DEFAULTS

CANDIDATE, BASELINE = "candidate", "baseline"  # the builds' roles (a baseline is driven first)
DEFAULT_CONCURRENCY = DEFAULTS.concurrency
DEFAULT_QUIET_MS = DEFAULTS.quiet_ms
DEFAULT_CAP_MS = DEFAULTS.cap_ms
DEFAULT_TIMEOUT_S = DEFAULTS.timeout_s
SEND_ROUTES = frozenset({"send_to_conversation", "reply_to_activity"})
CREATE = "create_conversation"
ISSUING_ROUTES = SEND_ROUTES | {CREATE}  # calls the connector answers with an id of its own
MEMBER_ROUTES = frozenset({"get_members", "get_paged_members", "get_member"})


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
    late_calls: int = 0  # how many connector calls the recording shows after the answer (replies, proactive)
    # How the recording's connector answered this turn's calls, per route in call order: (status, body).
    answers: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)

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
    numbers: dict[str, int] = field(default_factory=dict)  # conversation -> its number in the plan

    @property
    def all_assigned(self) -> set[str]:
        """Every id the recording's connector issued (sends, created conversations and their first activity)."""
        return {i for ids in self.assigned_ids.values() for i in ids}

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
    sql = "select seq, status, response_body from exchanges where session_id = ? and leg = 'outbound'"
    outbound_answers = {row["seq"]: (row["status"], row["response_body"]) for row in db.query(sql, [sid])}
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
        if activity["activity_id"] and activity["route"] in ISSUING_ROUTES and conversation:
            plan.assigned_ids.setdefault(conversation, set()).add(activity["activity_id"])
        if activity["route"] == CREATE and conversation:
            plan.assigned_ids.setdefault(conversation, set()).add(conversation)
        owner = by_inbound.get(activity["turn_seq"]) if activity["turn_seq"] is not None else None
        if owner is not None and activity["source"] == "request" and activity["exchange_seq"] in outbound_answers:
            status, body = outbound_answers[activity["exchange_seq"]]
            owner.answers.setdefault(activity["route"], []).append((status, _json_or_none(body)))
        if owner is not None:
            owner.replies.append(activity)
            plan.seq_turn[activity["seq"]] = owner
            answered = answered_at.get(owner.inbound["seq"])
            if answered is not None and activity["source"] == "request" and (activity["event"] or 0) > answered:
                owner.late = True
                owner.late_calls += conversation == owner.conversation_id
        elif activity["turn_seq"] is None and conversation in last_turn:
            last_turn[conversation].proactive.append(activity)
            last_turn[conversation].late = True
            last_turn[conversation].late_calls += activity["source"] == "request"
            plan.seq_turn[activity["seq"]] = last_turn[conversation]
        elif activity["turn_seq"] is None:
            plan.proactive_before.setdefault(conversation or "", []).append(activity)
    return plan


def keep_conversations(plan: Plan, wanted: Collection[str]) -> None:
    """Narrow `plan` to the conversations `wanted` (UsageError for one the recording does not have)."""
    unknown = sorted(set(wanted) - set(plan.conversations))
    if unknown:
        raise UsageError(f"session {plan.session['name']!r} has no conversation {unknown[0]!r} "
                         "(list them with botproxy show)")
    plan.conversations = {c: turns for c, turns in plan.conversations.items() if c in wanted}
    plan.proactive_before = {c: acts for c, acts in plan.proactive_before.items() if c in wanted}
    plan.seq_turn = {seq: turn for seq, turn in plan.seq_turn.items() if turn.conversation_id in wanted}


def _json_or_none(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _planned_turn(plan: Plan, activity: dict[str, Any], failure: str | None) -> PlannedTurn:
    conversation = activity["conversation_id"] or ""
    if conversation not in plan.conversations:
        plan.numbers[conversation] = len(plan.conversations) + 1
    turns = plan.conversations.setdefault(conversation, [])
    turn = PlannedTurn(f"{plan.numbers[conversation]}.{len(turns) + 1}", conversation, len(turns) + 1, activity)
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
        f" and route in ({', '.join('?' * len(MEMBER_ROUTES))}) order by seq"
    )
    for row in db.query(sql, [sid, *sorted(MEMBER_ROUTES)]):
        try:
            body = json.loads(row["response_body"] or "null")
        except ValueError:
            continue
        found = body.get("members") if isinstance(body, dict) and "members" in body else body
        found = [found] if isinstance(found, dict) else found
        if row["conversation_id"] and isinstance(found, list):
            members.setdefault(row["conversation_id"], []).extend(m for m in found if isinstance(m, dict))
    return members


# -- the builds, and what each did -------------------------------------------------------------------


@dataclass
class Build:
    """A build the replay drives: its messaging endpoint, and the name it goes by (`--label`)."""

    url: str
    label: str | None = None


@dataclass(frozen=True)
class ReplayOptions:
    """How a run replays, the same for one session (`replay_session`) or a corpus (`replay_corpus`): the
    `botproxy replay` options, which the CLI and the pytest plugin pass as one."""

    ignore: Sequence[str] = ()  # --ignore paths (the project's [tool.botproxy.replay] ones included)
    concurrency: int = DEFAULT_CONCURRENCY
    quiet_ms: float = DEFAULT_QUIET_MS
    cap_ms: float = DEFAULT_CAP_MS
    timeout_s: float = DEFAULT_TIMEOUT_S
    quiet_every_turn: bool = False
    connector_ok: bool = False  # answer every call with success, not as the recording's connector did
    checks: bool = True
    check_config: Any = None

    @property
    def quiet_s(self) -> float:
        return self.quiet_ms / 1000

    @property
    def cap_s(self) -> float:
        return self.cap_ms / 1000

    def to_json(self) -> dict[str, Any]:
        """The run's `options` column (and JSON): the waits in ms, as the seconds waited times 1000."""
        return {"quiet_ms": self.quiet_s * 1000, "cap_ms": self.cap_s * 1000, "timeout_s": self.timeout_s,
                "quiet_every_turn": self.quiet_every_turn, "connector_ok": self.connector_ok}


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
