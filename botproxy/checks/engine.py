"""The rule engine: fed activities and completed exchanges in session order, it keeps per-conversation
state and returns findings.

It implements the two halves of `record.recorder.Observer` (returning findings rather than rows; `LiveChecks`
adapts it), so the same engine runs inside the recorder and over a stored session (`offline`), and
both see the same events in the same order:

- `activity_seen(activity)`: request activities when the request is seen, response-body activities
  (ExpectedReplies, invoke responses) when the response is seen, just before that exchange completes.
  The HTTP status and a send's connector-assigned id are not known yet, so they are never read here.
- `exchange_done(exchange, activities)`: when the HTTP exchange completes, in completion order.

What is learnt (per conversation: the bot, the users, the latest inbound serviceUrl, channelId, locale
and tenant, inbound ids, ids the connector returned, deleted ids, sends in flight, open turns) and what
is checked are kept apart: the families `addressing`, `ordering`, `directline` (the Direct Line
client leg), `streaming` (streamed replies) and `agents` (Agents-era entities and roles) check, each
firing the rules it declares through the check context (`base.CheckContext`, which the engine is); this
module learns.
Decisions depend only on event order, never on when the engine happens to run. Every piece of state is
an id or a counter, so a long session checks in constant time per activity and bounded memory.
"""

from __future__ import annotations

import logging
from typing import Any

from ..model import Direction, Leg
from ..wire import protocol as p
from . import addressing, agents, directline, ordering, streaming
from .base import CheckContext
from .config import CheckConfig
from .registry import RULES
from .rules import Finding
from .state import (
    CLOSED,
    DELETED,
    INBOUND,
    REFERENCED,
    SENT,
    Conversation,
    norm_url,
    tenant_of,
)

log = logging.getLogger(__name__)

_CLIENT_LEG = frozenset({Direction.FROM_CLIENT, Direction.TO_CLIENT})


class Engine(CheckContext):
    """Per-session rule engine. Not thread-safe: feed it from one thread, in event order."""

    def __init__(self, config: CheckConfig | None = None, *, strict: bool = False) -> None:
        self.config = config if config is not None else CheckConfig()
        self.config.validate()
        super().__init__(RULES, frozenset(self.config.disabled), self.config.severity)
        # Live, a bug in a rule must not cost the recording: it is logged and counted. Tests set strict.
        self.strict = strict
        self.failures = 0

    # -- the Observer halves ------------------------------------------------------------------------

    def activity_seen(self, activity: dict[str, Any]) -> list[Finding]:
        out = self._out = []
        try:
            self._activity(activity)
        except Exception:
            self._failed("activity", activity.get("seq"))
        self._out = []
        return out

    def exchange_done(self, exchange: dict[str, Any], activities: list[dict[str, Any]]) -> list[Finding]:
        out = self._out = []
        try:
            if exchange["leg"] == Leg.INBOUND:
                self._inbound_done(activities)
                agents.on_inbound_done(self, exchange, activities)
            elif exchange["leg"] == Leg.OUTBOUND:
                self._outbound_done(exchange, activities)
            elif exchange["leg"] == Leg.CLIENT:
                directline.on_exchange_done(self, exchange, activities)
        except Exception:
            self._failed("exchange", exchange.get("seq"))
        self._out = []
        return out

    def _failed(self, what: str, seq: Any) -> None:
        if self.strict:
            raise
        self.failures += 1
        log.exception("botproxy checks failed on %s %s (skipped; the recording goes on)", what, seq)

    # -- activities -----------------------------------------------------------------------------------

    def _activity(self, a: dict[str, Any]) -> None:
        body = a["body"] if isinstance(a["body"], dict) else {}
        route = a["route"]
        direction = a["direction"]
        if direction == Direction.TO_BOT:
            if a["source"] == "request" and route == p.BOT_MESSAGES:
                self._inbound(a, body)
        elif direction != Direction.FROM_BOT:  # the Direct Line client leg
            if direction in _CLIENT_LEG:
                directline.on_activity(self, a, body)
            return
        elif a["source"] == "response":
            if route in (addressing.EXPECTED_REPLIES, p.EVENT_STREAM):
                self._buffered_reply(a, body)
        elif route in p.SEND_ROUTES:
            self._send(a, body)
        elif route in p.EDIT_ROUTES:
            self._edit(a, body)
        elif route == p.CREATE_CONVERSATION:
            channel = a["channel_id"] or self.state.service_channels.get(norm_url(a["service_url"]) or "")
            addressing.check_fields(self, a, body, None, channel)
        elif route == p.SEND_HISTORY:
            ordering.on_history_activity(self, a, body)

    def _inbound(self, a: dict[str, Any], body: dict[str, Any]) -> None:
        cid = a["conversation_id"]
        if not cid:
            return
        state = self.state
        conv = state.conversation(cid)
        conv.known = True
        ordering.on_inbound(self, a, body, conv)
        streaming.on_inbound(self, a, body, conv)
        agents.on_inbound(self, a, body, conv)
        bot = a["recipient_id"]
        if bot:
            conv.bot_id = bot
            state.bots.add(bot)
        url = norm_url(a["service_url"])
        if url:
            conv.service_url = url
        tenant = tenant_of(body)
        if tenant:
            conv.tenant = tenant
        user = a["from_id"]
        if user and user != bot:
            conv.users.add(user)
            state.users[user] = (url, tenant or conv.tenant)
        added = body.get("membersAdded")
        if isinstance(added, list):
            for member in added:
                member_id = member.get("id") if isinstance(member, dict) else None
                if isinstance(member_id, str) and member_id and member_id != bot:
                    conv.users.add(member_id)
                    state.users.setdefault(member_id, (url, tenant or conv.tenant))
        channel = a["channel_id"]
        if channel:
            conv.channel_id = channel
            if url:
                state.service_channels[url] = channel
        if a["locale"]:
            conv.locale = a["locale"]
        activity_id = a["activity_id"]
        if activity_id:
            state.ids.add(conv, activity_id, INBOUND)
        reply_to = a["reply_to_id"]
        if reply_to and reply_to != activity_id:
            state.ids.add(conv, reply_to, REFERENCED)
        conv.ended_seq = a["seq"] if a["type"] == "endOfConversation" else None
        if a["delivery_mode"] == "expectReplies":
            state.expect_replies.add(a["seq"])
        conv.open_turns[a["seq"]] = (url, a["locale"])

    def _target(self, a: dict[str, Any]) -> Conversation | None:
        """The conversation an outbound call goes to (the URL's), checked as known (BP-A31)."""
        cid = a["url_conversation_id"] or a["conversation_id"]
        if not cid:
            return None
        conv = self.state.conversation(cid)
        addressing.check_known(self, a, conv)
        return conv

    def _send(self, a: dict[str, Any], body: dict[str, Any]) -> None:
        conv = self._target(a)
        if conv is None:
            return
        addressing.check_path(self, a, body, conv)
        addressing.check_fields(self, a, body, conv, conv.channel_id)
        flags = self._check_reply_to(a, conv)
        ordering.on_send(self, a, conv, flags)
        streaming.on_send(self, a, body, conv)
        agents.on_outbound(self, a, body, conv)
        if a["type"] == "endOfConversation":
            conv.ended_seq = a["seq"]

    def _check_reply_to(self, a: dict[str, Any], conv: Conversation) -> int:
        reply_to = a["reply_to_id"]
        if not reply_to:
            return 0
        flags = self.state.ids.flags(conv, reply_to)
        if not flags and addressing.check_reply_to(self, a, conv, conv.channel_id or a["channel_id"]):
            ordering.remember_dangling(conv, reply_to, a["seq"])
        return flags

    def _edit(self, a: dict[str, Any], body: dict[str, Any]) -> None:
        conv = self._target(a)
        if conv is None:
            return
        addressing.check_path(self, a, body, conv)
        if a["route"] == p.UPDATE_ACTIVITY:
            addressing.check_fields(self, a, body, conv, conv.channel_id)
            agents.on_outbound(self, a, body, conv)
            streaming.on_update(self, a, conv)
        target = addressing.check_edit(self, a, body, conv)
        if target is not None:
            if conv.in_flight:  # a send under way may still return this id: decide when it completes
                conv.pending_edits[target] = (a["seq"], a["event"], a["route"])
            elif conv.known:
                addressing.foreign_edit(self, a["seq"], conv, target, a["route"])
        ordering.after_end(self, a, conv)

    def _buffered_reply(self, a: dict[str, Any], body: dict[str, Any]) -> None:
        """An activity returned in the HTTP response (ExpectedReplies, a deliveryMode stream answer's
        frames): checked like a send, minus transport."""
        cid = a["conversation_id"]
        conv = self.state.conversations.get(cid) if cid else None
        addressing.check_fields(self, a, body, conv, conv.channel_id if conv else a["channel_id"])
        agents.on_outbound(self, a, body, conv)
        if conv is None:
            return
        self._check_reply_to(a, conv)
        ordering.after_end(self, a, conv)
        if a["route"] == p.EVENT_STREAM:
            streaming.on_send(self, a, body, conv, answered=False)
        if a["type"] == "endOfConversation":
            conv.ended_seq = a["seq"]

    # -- completed exchanges --------------------------------------------------------------------------

    def _inbound_done(self, activities: list[dict[str, Any]]) -> None:
        for a in activities:
            if a["direction"] != Direction.TO_BOT or not a["conversation_id"]:
                continue
            conv = self.state.conversations.get(a["conversation_id"])
            if conv is not None:
                conv.open_turns.pop(a["seq"], None)
                if a["activity_id"]:
                    self.state.ids.add(conv, a["activity_id"], CLOSED)

    def _outbound_done(self, exchange: dict[str, Any], activities: list[dict[str, Any]]) -> None:
        route = exchange["route"]
        status = exchange["status"] if exchange["status"] is not None else 599
        cid = exchange["conversation_id"]
        conv = self.state.conversations.get(cid) if cid else None
        if route in p.SEND_ROUTES:
            if conv is None:
                return
            sent = activities[0] if activities and activities[0]["source"] == "request" else None
            if sent is not None:
                ordering.on_send_done(self, exchange, sent, conv)
                streaming.on_send_done(self, exchange, sent, conv)
            returned = sent["activity_id"] if sent is not None and status < 300 else None
            if returned:
                self.state.ids.add(conv, returned, SENT)
            ordering.resolve_edits(self, conv, returned)
        elif route == p.DELETE_ACTIVITY:
            if conv is not None and status < 300 and exchange["url_activity_id"]:
                self.state.ids.add(conv, exchange["url_activity_id"], DELETED)
        elif route == p.CREATE_CONVERSATION:
            addressing.check_create(self, exchange, activities)
        elif route == p.SEND_HISTORY:
            ordering.on_history_done(self, exchange)
        elif route == p.UNKNOWN_CONNECTOR:
            addressing.unknown_operation(self, exchange, cid)
        elif route in addressing.CONVERSATION_ROUTES and conv is not None:
            addressing.check_base(self, exchange, conv)
        addressing.check_supported(self, exchange, activities, cid)
