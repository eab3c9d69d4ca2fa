"""Turns observed HTTP traffic into session records: exchanges, activities, turn links.

`SessionRecorder` is a state machine fed `RequestSeen` / `ResponseSeen` events in the order they
happened. It numbers exchanges and activities, parses and redacts bodies, classifies routes, links
activities to turns, and returns the rows to store. Observers (the console, the live checks) hear
about each activity and each completed exchange in the same order.

It knows nothing of mitmproxy or SQLite: the capture addon feeds it live, on the writer thread, and
importers (HAR, flow files) can feed it the same events from a file.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..model import Direction, Leg, Row
from ..turns import TurnLinker
from ..wire import protocol as p
from ..wire.redact import Redactor

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RequestSeen:
    flow_id: str
    at: float
    listener: str  # reverse (channel -> bot), forward (HTTP(S)_PROXY), svc (rewritten serviceUrl), directline
    method: str
    url: str  # where the request went, after any re-routing
    headers: Sequence[tuple[str | bytes, str | bytes]]  # mitmproxy's raw fields, or text pairs
    content: bytes | None
    rewritten: bool = False  # inbound serviceUrl was rewritten to come back through us
    service_url: str | None = None  # svc: the original serviceUrl the call was forwarded to


@dataclass(slots=True)
class ResponseSeen:
    flow_id: str
    at: float
    status: int | None
    headers: Sequence[tuple[str | bytes, str | bytes]]
    content: bytes | None
    error: str | None = None
    # A body the proxy streamed through as it came (`text/event-stream`): its chunks with their times.
    chunks: Sequence[tuple[float, bytes]] | None = None


@dataclass(slots=True)
class WebSocketSeen:
    """One WebSocket message on a flow whose handshake was recorded (`content` None: the socket closed)."""

    flow_id: str
    at: float
    from_client: bool
    content: bytes | None


@dataclass(slots=True)
class FailureSeen:
    """botproxy's own code raised while handling a flow (the traffic went on unchanged)."""

    at: float
    stage: str
    message: str
    flow_id: str | None = None


class Observer(Protocol):
    def activity_seen(self, activity: dict[str, Any]) -> list[Row]: ...

    def exchange_done(self, exchange: dict[str, Any], activities: list[dict[str, Any]]) -> list[Row]: ...


@dataclass(slots=True)
class _Pending:
    exchange: dict[str, Any]
    activities: list[dict[str, Any]]
    conversation: str | None
    request_body: Any


@dataclass
class SessionRecorder:
    session_id: int
    redactor: Redactor = field(default_factory=Redactor)
    observers: list[Observer] = field(default_factory=list)
    linker: TurnLinker = field(default_factory=TurnLinker)
    exchange_seq: int = 0
    activity_seq: int = 0
    event: int = 0
    errors: int = 0
    unfinished: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    conversations: set[str] = field(default_factory=set)
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _streams: dict[str, dict[str, Any]] = field(default_factory=dict)  # flow id -> its handshake exchange
    _closing: dict[str, _Pending] = field(default_factory=dict)  # the exchange _response is closing

    # -- entry point ------------------------------------------------------------------------

    def handle(self, item: RequestSeen | ResponseSeen | WebSocketSeen | FailureSeen) -> list[Row]:
        """Process one event; never raises. When our code fails on it, the failure is counted and recorded,
        and the exchange is still stored with what could be kept of it, its `error` saying what happened."""
        marks = (self.exchange_seq, self.activity_seq, self.event)
        try:
            if isinstance(item, RequestSeen):
                return self._request(item)
            if isinstance(item, ResponseSeen):
                return self._response(item)
            if isinstance(item, WebSocketSeen):
                return self._websocket(item)
            return [self._failure(item)]
        except Exception as exc:  # fail open: count it, keep it, carry on with the next event
            message = self.redactor.text(f"botproxy could not record this {type(item).__name__}: {exc!r}")
            log.error("botproxy: recorder error #%d: %s", self.errors + 1, message)
            log.info("the traceback of recorder error #%d", self.errors + 1, exc_info=True)
            rows = [self._failure(FailureSeen(getattr(item, "at", 0.0), "record", repr(exc), item.flow_id))]
            try:
                rows += self._salvage(item, message, marks)
            except Exception:  # what could be kept could not: the error row above stands for it
                log.debug("salvaging failed", exc_info=True)
            return rows

    def _salvage(self, item: Any, message: str, marks: tuple[int, int, int]) -> list[Row]:
        """The exchange an event belongs to, kept with an error when recording it failed half-way."""
        if isinstance(item, RequestSeen) and item.flow_id not in self._pending:
            self.exchange_seq, self.activity_seq, self.event = marks  # undo the half-made numbers
            self.event += 1
            self.exchange_seq += 1
            bare: dict[str, Any] = {
                "session_id": self.session_id,
                "seq": self.exchange_seq,
                "opened": self.event,
                "started_at": item.at,
                "leg": Leg.OTHER,
                "listener": item.listener,
                "method": item.method,
                "url": self.redactor.url(item.url),
                "route": p.OTHER,
                "conversation_id": None,
                "url_activity_id": None,
                "request_headers": None,
                "rewritten": int(item.rewritten),
                "error": message,
                "_learned": self.redactor.generation,
            }
            with contextlib.suppress(Exception):  # the headers too, if they can be kept
                headers = self.redactor.headers(text_headers(item.headers))
                bare["request_headers"] = json.dumps(headers, ensure_ascii=False)
            self._pending[item.flow_id] = _Pending(bare, [], None, None)
            return []
        if isinstance(item, ResponseSeen):
            pending = self._pending.pop(item.flow_id, None) or self._closing.pop(item.flow_id, None)
            if pending is not None:
                exchange = pending.exchange
                exchange.setdefault("closed", self.event)
                exchange.setdefault("ended_at", item.at)
                exchange.setdefault("status", item.status)
                exchange["error"] = _join(exchange.get("error"), message)
                return [("exchanges", _exchange_row(exchange))]
        return []

    def _failure(self, item: FailureSeen) -> Row:
        """A failure of our own code, counted; the exchange it happened in says so in its `error`."""
        self.errors += 1
        pending = self._pending.get(item.flow_id) if item.flow_id else None
        message = self.redactor.text(item.message)
        if pending is not None and item.stage != "record":
            note = f"botproxy failed in its {item.stage} hook (the traffic passed unchanged): {message}"
            pending.exchange["error"] = _join(pending.exchange.get("error"), note)
        return (
            "errors",
            {
                "session_id": self.session_id,
                "at": item.at,
                "stage": item.stage,
                "message": message,
                "exchange_seq": pending.exchange["seq"] if pending is not None else None,
            },
        )

    # -- requests ---------------------------------------------------------------------------

    def _request(self, req: RequestSeen) -> list[Row]:
        self.event += 1
        self.exchange_seq += 1
        parts = urlsplit(req.url)
        if req.listener == "reverse":
            leg = Leg.INBOUND
            route = p.Route(p.BOT_MESSAGES if req.method == "POST" else p.OTHER)
        elif req.listener == "directline":
            route = p.classify_directline(req.method, parts.path)
            leg = Leg.CLIENT if route.is_directline else Leg.OTHER
        else:
            route = p.classify_outbound(req.method, parts.hostname or "", parts.path)
            leg = Leg.OUTBOUND if route.is_connector else Leg.OTHER
        req_headers = text_headers(req.headers)
        expects_json = route.name in p.ACTIVITY_BODY_ROUTES or (route.name == p.BOT_MESSAGES and req.method == "POST")
        # Every secret of the request is learned before any part of it is scrubbed, so a header value
        # repeated in the body (or a body secret in the URL) goes wherever it is.
        parsed = _parse(req.content)
        self.redactor.learn_message(req.url, req_headers, req.content, None if parsed is _NOT_JSON else parsed)
        body, raw, malformed = self._body(req.content, parsed, req_headers, expects_json)
        exchange = {
            "session_id": self.session_id,
            "seq": self.exchange_seq,
            "opened": self.event,
            "started_at": req.at,
            "leg": leg,
            "listener": req.listener,
            "method": req.method,
            "url": self.redactor.url(req.url),
            "route": route.name,
            "conversation_id": route.conversation_id,
            "url_activity_id": route.activity_id,
            "request_headers": json.dumps(self.redactor.headers(req_headers), ensure_ascii=False),
            "request_body": raw if isinstance(raw, str) else None,
            "request_body_raw": raw if isinstance(raw, bytes) else None,
            "request_malformed": int(malformed),
            "rewritten": int(req.rewritten),
            "_learned": self.redactor.generation,
        }
        base = req.service_url or _service_base(req.url, route)
        if leg == Leg.CLIENT:
            activities = [
                self._new_activity(exchange, route, a, "request", None, Direction.FROM_CLIENT)
                for a in p.dl_request_activities(route, body)
            ]
        else:
            direction = Direction.TO_BOT if leg == Leg.INBOUND else Direction.FROM_BOT
            activities = [
                self._new_activity(exchange, route, a, "request", base, direction)
                for a in p.request_activities(route, body)
            ]
        if route.name == p.DELETE_ACTIVITY:
            activities.append(self._new_activity(exchange, route, None, "request", base, Direction.FROM_BOT))
        conversation = route.conversation_id or (activities[0]["conversation_id"] if activities else None)
        if route.name == p.CREATE_CONVERSATION:
            # The call names no conversation: it belongs to the turn it was made in (turns.py).
            first = activities[0]["seq"] if activities else None
            exchange["_creation"] = self.linker.link_creation(creation_hints(body), first)
        for activity in activities:
            self._link_request_activity(leg, route, activity, exchange)
        self._pending[req.flow_id] = _Pending(exchange, activities, conversation, body)
        return self._notify_seen(activities)

    def _body(
        self, content: bytes | None, parsed: Any, headers: list[tuple[str, str]], expects_json: bool
    ) -> tuple[Any, str | bytes | None, bool]:
        """(parsed redacted JSON or None, what to store, malformed flag) for a body whose secrets were
        learned. A body that is not JSON is malformed when its route or its content type says it should be."""
        if not content:
            return None, None, False
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "").lower()
        if parsed is _NOT_JSON:
            expects_json = expects_json or "json" in content_type
            if "x-www-form-urlencoded" in content_type:
                return None, self.redactor.form(content.decode("utf-8", "replace")), False
            raw = self.redactor.raw(content)
            try:
                return None, raw.decode("utf-8"), expects_json
            except UnicodeDecodeError:
                return None, raw, expects_json
        redacted = self.redactor.scrub_json(parsed)
        return redacted, json.dumps(redacted, ensure_ascii=False, separators=(",", ":")), False

    def _new_activity(
        self,
        exchange: dict[str, Any],
        route: p.Route,
        body: dict[str, Any] | None,
        source: str,
        base: str | None,
        direction: str,
    ) -> dict[str, Any]:
        self.activity_seq += 1
        body = body if isinstance(body, dict) else None
        a = body or {}
        inbound = direction != Direction.FROM_BOT  # the id and serviceUrl in the body are the channel's own
        return {
            "session_id": self.session_id,
            "seq": self.activity_seq,
            "event": self.event,
            "exchange_seq": exchange["seq"],
            "direction": direction,
            "source": source,
            "method": exchange["method"],
            "route": route.name if source == "request" or direction == Direction.TO_CLIENT else _response_route(a),
            "status": None,
            "type": p.str_field(a, "type"),
            "name": p.str_field(a, "name"),
            "text": p.str_field(a, "text"),
            "conversation_id": p.conversation_id(a) or route.conversation_id,
            "activity_id": p.str_field(a, "id") if inbound else None,
            "url_conversation_id": route.conversation_id,
            "url_activity_id": route.activity_id,
            "reply_to_id": p.str_field(a, "replyToId"),
            "from_id": p.account_id(a, "from"),
            "recipient_id": p.account_id(a, "recipient"),
            "channel_id": p.str_field(a, "channelId"),
            "service_url": p.str_field(a, "serviceUrl") if inbound else base,
            "locale": p.str_field(a, "locale"),
            "delivery_mode": p.str_field(a, "deliveryMode"),
            "turn_seq": None,
            "turn_ambiguous": 0,
            "target_seq": None,
            "observed_at": exchange["started_at"] if source == "request" else exchange.get("ended_at"),
            "watermark": None,
            "body": body,
        }

    def _link_request_activity(self, leg: str, route: p.Route, activity: dict[str, Any],
                               exchange: dict[str, Any]) -> None:
        conversation = route.conversation_id or activity["conversation_id"]
        if leg == Leg.CLIENT:
            return
        if leg == Leg.INBOUND:
            self.linker.inbound_opened(conversation, activity["seq"], activity["activity_id"],
                                       creation_hints(activity["body"]))
            return
        if route.name in (p.UPDATE_ACTIVITY, p.DELETE_ACTIVITY):
            activity["activity_id"] = route.activity_id
            activity["target_seq"] = self.linker.target_of(conversation, route.activity_id)
        if route.name == p.CREATE_CONVERSATION:
            link = exchange["_creation"]
        elif route.name != p.SEND_HISTORY:
            link = self.linker.link(conversation, activity["reply_to_id"], activity["seq"])
        else:
            return
        activity["turn_seq"] = link.turn
        activity["turn_ambiguous"] = int(link.ambiguous)

    # -- responses --------------------------------------------------------------------------

    def _response(self, resp: ResponseSeen) -> list[Row]:
        pending = self._pending.pop(resp.flow_id, None)
        if pending is None:  # its request was never seen (our request hook failed): keep what we can
            return [
                self._failure(FailureSeen(resp.at, "response", "response without a recorded request", resp.flow_id))
            ]
        self._closing = {resp.flow_id: pending}  # for _salvage, should the rest of this fail
        self.event += 1
        exchange = pending.exchange
        status = resp.status if resp.status is not None else 502
        resp_headers = text_headers(resp.headers)
        parsed = _parse(resp.content)
        self.redactor.learn_message(None, resp_headers, resp.content, None if parsed is _NOT_JSON else parsed)
        frames: list[tuple[float, Any]] | None = None
        if exchange["leg"] == Leg.INBOUND and p.is_event_stream(resp_headers):
            chunks = resp.chunks if resp.chunks is not None else [(resp.at, resp.content or b"")]
            frames = p.stream_activities(chunks)
            for _, frame in frames:  # every frame's secrets, before any frame or the body is scrubbed
                self.redactor.learn_json(frame)
        if self.redactor.generation != exchange["_learned"]:
            self._scrub_again(pending)  # the response taught a secret its request may hold too
        headers = self.redactor.headers(resp_headers)
        route = p.Route(exchange["route"], exchange["conversation_id"], exchange["url_activity_id"])
        streamed = None if frames is None else [(at, self.redactor.scrub_json(a)) for at, a in frames]
        # A send's answer is a ResourceResponse, a connector's error answer may be anything; the bot's
        # answer to an activity is JSON, a stream or nothing, whatever its status (an HTML error page is
        # malformed).
        body, raw, malformed = self._body(
            resp.content,
            parsed,
            resp_headers,
            (status < 400 and route.name in p.ACTIVITY_BODY_ROUTES)
            or (route.name == p.BOT_MESSAGES and exchange["method"] == "POST" and streamed is None),
        )
        exchange.update(
            closed=self.event,
            ended_at=resp.at,
            duration_ms=round((resp.at - exchange["started_at"]) * 1000, 3),
            status=status,
            response_headers=json.dumps(headers, ensure_ascii=False),
            response_body=raw if isinstance(raw, str) else None,
            response_body_raw=raw if isinstance(raw, bytes) else None,
            response_malformed=int(malformed),
            error=_join(exchange.get("error"), self.redactor.text(resp.error) if resp.error else None),
            error_code=p.error_code(body),
        )
        activities = pending.activities
        for activity in activities:
            activity["status"] = status
        rows: list[Row] = []
        if exchange["leg"] == Leg.INBOUND and activities:
            inbound = activities[0]
            if streamed is not None:  # deliveryMode stream: each frame is a reply, at its own time
                answered = streamed
            else:
                answered = [(resp.at, a) for a in p.inbound_response_activities(inbound["body"] or {}, status, body)]
            replies = []
            for at, answer in answered:
                reply = self._new_activity(exchange, route, answer, "response", None, Direction.FROM_BOT)
                reply.update(
                    status=status,
                    turn_seq=inbound["seq"],
                    conversation_id=reply["conversation_id"] or inbound["conversation_id"],
                    observed_at=at,
                )
                if streamed is not None and reply["route"] != p.INVOKE_RESPONSE:
                    reply["route"] = p.EVENT_STREAM
                replies.append(reply)
            rows += self._notify_seen(replies)
            activities = activities + replies
            self.linker.inbound_closed(pending.conversation, inbound["seq"])
        elif exchange["leg"] == Leg.CLIENT:
            activities = activities + self._client_response(resp.flow_id, exchange, route, status, body, activities)
            rows += self._notify_seen(activities[len(pending.activities) :])
        elif status < 300:
            self._learn_assigned_ids(exchange, activities, body)
        self.counts[exchange["leg"]] += 1
        self.counts["activities"] += len(activities)
        self.conversations.update(a["conversation_id"] for a in activities if a["conversation_id"])
        for observer in self.observers:
            rows += self._observe(observer.exchange_done, exchange, activities)
        rows.append(("exchanges", _exchange_row(exchange)))
        rows += [("activities", _activity_row(a)) for a in activities]
        self._closing = {}
        return rows

    # -- Direct Line -------------------------------------------------------------------------

    def _client_response(
        self,
        flow_id: str,
        exchange: dict[str, Any],
        route: p.Route,
        status: int,
        body: Any,
        posted: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """Ids Direct Line assigned to what the client posted; activities it delivered by GET."""
        if route.name == p.DL_STREAM and status == 101:
            self._streams[flow_id] = exchange
        if status >= 300:
            return []
        if route.name in (p.DL_POST_ACTIVITY, p.DL1_POST_MESSAGE) and len(posted) == 1:
            posted[0]["activity_id"] = p.resource_id(body)
        if route.name in (p.DL_GET_ACTIVITIES, p.DL1_GET_MESSAGES):
            return self._delivered(exchange, route, body, "response")
        return []

    def _delivered(self, exchange: dict[str, Any], route: p.Route, body: Any, source: str) -> list[dict[str, Any]]:
        activities, watermark = p.dl_delivered(route.name, body)
        delivered = [self._new_activity(exchange, route, a, source, None, Direction.TO_CLIENT) for a in activities]
        for activity in delivered:
            activity.update(status=exchange["status"], watermark=watermark, observed_at=exchange["ended_at"])
        return delivered

    def _websocket(self, msg: WebSocketSeen) -> list[Row]:
        """Activities a Direct Line stream frame delivers; keep-alive and client frames carry none."""
        exchange = self._streams.get(msg.flow_id)
        if exchange is None:
            return []
        if msg.content is None:  # the socket closed
            del self._streams[msg.flow_id]
            return []
        if msg.from_client or not msg.content.strip():
            return []
        parsed = _parse(msg.content)
        if parsed is _NOT_JSON:
            self.counts["malformed_frames"] += 1
            return []
        body = self.redactor.json(parsed)
        self.event += 1
        frame = dict(exchange, ended_at=msg.at)
        delivered = self._delivered(frame, p.Route(p.DL_STREAM, exchange["conversation_id"]), body, "stream")
        self.counts["activities"] += len(delivered)
        rows = self._notify_seen(delivered)
        return rows + [("activities", _activity_row(a)) for a in delivered]

    def _learn_assigned_ids(self, exchange: dict[str, Any], activities: list[dict[str, Any]], body: Any) -> None:
        route = exchange["route"]
        assigned = p.resource_id(body)
        if route == p.CREATE_CONVERSATION and isinstance(body, dict):
            creation = exchange.get("_creation")
            if assigned and creation is not None and creation.turn is not None:
                self.linker.created(assigned, creation.turn)
            for activity in activities:
                activity["conversation_id"] = activity["conversation_id"] or assigned
                activity["activity_id"] = p.str_field(body, "activityId")
                if activity["activity_id"]:
                    self.linker.sent(assigned, activity["activity_id"], activity["seq"])
        elif route in p.SEND_ROUTES and assigned and activities:
            activity = activities[0]
            activity["activity_id"] = assigned
            self.linker.sent(exchange["conversation_id"], assigned, activity["seq"])

    def _scrub_again(self, pending: _Pending) -> None:
        """Scrub what was kept of a request with the secrets learned since (its response's)."""
        redactor, exchange = self.redactor, pending.exchange
        exchange["url"] = redactor.text(exchange["url"])
        exchange["request_headers"] = json.dumps(redactor.headers(json.loads(exchange["request_headers"])))
        if pending.request_body is not None:
            pending.request_body = redactor.scrub_json(pending.request_body)
            exchange["request_body"] = json.dumps(pending.request_body, ensure_ascii=False, separators=(",", ":"))
        elif exchange["request_body"] is not None:
            exchange["request_body"] = redactor.text(exchange["request_body"])
        elif exchange["request_body_raw"] is not None:
            exchange["request_body_raw"] = redactor.raw(exchange["request_body_raw"])
        for activity in pending.activities:
            for key, value in activity.items():
                if isinstance(value, str):
                    activity[key] = redactor.text(value)
            if activity["body"] is not None:
                activity["body"] = redactor.scrub_json(activity["body"])

    def _notify_seen(self, activities: list[dict[str, Any]]) -> list[Row]:
        rows: list[Row] = []
        for activity in activities:
            for observer in self.observers:
                rows += self._observe(observer.activity_seen, activity)
        return rows

    def _observe(self, hook: Any, *args: Any) -> list[Row]:
        """One observer's hook; if it fails (the console, a check), the recording of the exchange goes on."""
        try:
            return list(hook(*args))
        except Exception as exc:
            self.errors += 1
            log.error("botproxy: recorder error #%d in %s: %r", self.errors, getattr(hook, "__qualname__", hook), exc)
            log.info("the traceback of recorder error #%d", self.errors, exc_info=True)
            return []

    def finish(self) -> list[Row]:
        """Rows for exchanges still open when recording stops (a bot that never answered): kept, not
        lost, with no `closed` event so the checks know they never completed."""
        rows: list[Row] = []
        for pending in self._pending.values():
            pending.exchange["error"] = "no response before the recorder stopped"
            rows.append(("exchanges", _exchange_row(pending.exchange)))
            rows += [("activities", _activity_row(a)) for a in pending.activities]
            self.unfinished += 1
        self._pending.clear()
        return rows


_NOT_JSON = object()


def _parse(content: bytes | None) -> Any:
    """A body parsed as JSON (None when empty), or _NOT_JSON."""
    try:
        return p.parse_json(content)
    except p.BodyError:
        return _NOT_JSON


def text_headers(headers: Sequence[tuple[str | bytes, str | bytes]]) -> list[tuple[str, str]]:
    """Header pairs as text. The capture hands mitmproxy's raw byte fields over as they are, so the
    decoding happens here, off the proxy's event loop."""
    return [(_text(k), _text(v)) for k, v in headers]


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _join(*errors: str | None) -> str | None:
    """Errors of one exchange (ours, the proxy's), in the order they happened."""
    return "; ".join(e for e in errors if e) or None


def _exchange_row(exchange: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in exchange.items() if not k.startswith("_")}  # `_findings` is for the console


def _activity_row(activity: dict[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in activity.items() if not k.startswith("_")}  # `_findings` etc. are transient
    row["body"] = json.dumps(activity["body"], ensure_ascii=False, separators=(",", ":")) if activity["body"] else None
    return row


def creation_hints(body: Any) -> list[str]:
    """Account and channel ids an inbound activity or a CreateConversation call names, to tell which of
    several open turns created a conversation (turns.py)."""
    if not isinstance(body, dict):
        return []
    found = [p.account_id(body, "from") or ""]
    found += [str(m.get("id") or "") for m in body.get("members") or [] if isinstance(m, dict)]
    data = body.get("channelData")
    if isinstance(data, dict):
        found += [str((data.get(key) or {}).get("id") or "") for key in ("channel", "team")
                  if isinstance(data.get(key), dict)]
    return [h for h in found if h]


def _response_route(activity: dict[str, Any]) -> str:
    return p.INVOKE_RESPONSE if activity.get("type") == "invokeResponse" else p.EXPECTED_REPLIES


def _service_base(url: str, route: p.Route) -> str | None:
    """The serviceUrl a connector call was made against: scheme, host and path prefix."""
    if not route.is_connector:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{route.prefix}/"
