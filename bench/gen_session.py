"""Generate a large, realistic botproxy session directly in SQLite, for benchmarking the checks.

    python bench/gen_session.py --db /tmp/big.db --activities 1000000

The traffic is what a correct Python SDK bot produces (protocol.md S-1, S-2): many conversations at
once, each with at most one turn under way; turns with one or two replies, typing, update, delete,
welcome messages through SendToConversation, invoke responses and ExpectedReplies in the HTTP
response, proactive sends with the SDK's synthetic uuid1 replyToId, member lookups. Rows have the
shape the recorder writes (activities with bodies, exchanges with request/response bodies, event
numbers for open/close), and are inserted with sqlite-utils in batches.

`--mistakes RATE` makes that fraction of replies wrong in one of a few ways (from copied, wrong
serviceUrl, recipient copied, foreign channelId, dangling replyToId), so checks have something to find.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from botproxy import store  # noqa: E402

BOT_URL = "http://127.0.0.1:3978/api/messages"
REGIONS = ("amer", "emea", "apac")
HEADERS = json.dumps([["content-type", "application/json; charset=utf-8"]])
MISTAKES = ("from", "service_url", "recipient", "channel", "reply_to")
WORDS = "hello help card update delete weather order status thanks please more again ok".split()


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass
class Conversation:
    id: str
    user: str
    service_url: str
    channel: str
    sent: list[str] = field(default_factory=list)  # ids the connector returned


@dataclass
class Pending:
    exchange: dict[str, Any]
    activities: list[dict[str, Any]]


class Generator:
    def __init__(self, session_id: int, seed: int, mistake_rate: float, columns: set[str]) -> None:
        self.session_id = session_id
        self.rng = random.Random(seed)
        self.mistake_rate = mistake_rate
        self.columns = columns
        self.event = self.activity_seq = self.exchange_seq = 0
        self.clock = 1_714_557_600.0
        self.ids = 0
        self.activities: list[dict[str, Any]] = []
        self.exchanges: list[dict[str, Any]] = []
        self.mistakes: dict[str, int] = {}

    # -- HTTP exchanges -----------------------------------------------------------------------------

    def _tick(self) -> float:
        self.clock += self.rng.uniform(0.001, 0.03)
        return self.clock

    def new_id(self, prefix: str) -> str:
        self.ids += 1
        return f"{prefix}{self.ids:09d}"

    def open(
        self,
        leg: str,
        method: str,
        url: str,
        route: str,
        conv: str | None,
        url_activity_id: str | None,
        body: dict[str, Any] | None,
        activities: list[dict[str, Any]],
    ) -> Pending:
        self.event += 1
        self.exchange_seq += 1
        at = self._tick()
        exchange = {
            "session_id": self.session_id,
            "seq": self.exchange_seq,
            "opened": self.event,
            "started_at": at,
            "leg": leg,
            "listener": "reverse" if leg == "inbound" else "svc",
            "method": method,
            "url": url,
            "route": route,
            "conversation_id": conv,
            "url_activity_id": url_activity_id,
            "request_headers": HEADERS,
            "request_body": dumps(body) if body is not None else None,
            "request_malformed": 0,
            "rewritten": int(leg == "inbound"),
        }
        rows = []
        for fields in activities:
            self.activity_seq += 1
            rows.append(
                {
                    **fields,
                    "session_id": self.session_id,
                    "seq": self.activity_seq,
                    "event": self.event,
                    "exchange_seq": self.exchange_seq,
                    "source": "request",
                    "method": method,
                    "status": None,
                    "observed_at": at,
                }
            )
        return Pending(exchange, rows)

    def close(
        self, pending: Pending, status: int, body: Any = None, replies: Sequence[dict[str, Any]] = ()
    ) -> None:
        self.event += 1
        at = self._tick()
        exchange = pending.exchange
        exchange.update(
            closed=self.event,
            ended_at=at,
            duration_ms=round((at - exchange["started_at"]) * 1000, 3),
            status=status,
            response_headers=HEADERS if body is not None else "[]",
            response_body=dumps(body) if body is not None else None,
            response_malformed=0,
        )
        for row in pending.activities:
            row["status"] = status
        for fields in replies:
            self.activity_seq += 1
            pending.activities.append(
                {
                    **fields,
                    "session_id": self.session_id,
                    "seq": self.activity_seq,
                    "event": self.event,
                    "exchange_seq": exchange["seq"],
                    "source": "response",
                    "method": exchange["method"],
                    "status": status,
                    "observed_at": at,
                }
            )
        self.exchanges.append(exchange)
        for row in pending.activities:
            self.activities.append(self._row(row))

    def _row(self, fields: dict[str, Any]) -> dict[str, Any]:
        row = {name: fields.get(name) for name in self.columns}
        row["body"] = dumps(fields["body"]) if fields.get("body") is not None else None
        return row

    # -- activities --------------------------------------------------------------------------------------

    def inbound_activity(
        self, conv: Conversation, kind: str = "message", text: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": kind,
            "id": self.new_id("in-"),
            "timestamp": _iso(self.clock),
            "channelId": conv.channel,
            "serviceUrl": conv.service_url,
            "from": {"id": conv.user, "name": "User"},
            "recipient": {"id": "28:bot", "name": "Bot"},
            "conversation": {"id": conv.id},
            "locale": "en-US",
        }
        if text is not None:
            body["text"] = text
        body.update(extra)
        return body

    def inbound(self, conv: Conversation, body: dict[str, Any]) -> Pending:
        fields = _fields(
            body,
            direction="to_bot",
            route="bot_messages",
            activity_id=body.get("id"),
            service_url=body.get("serviceUrl"),
        )
        return self.open("inbound", "POST", BOT_URL, "bot_messages", None, None, body, [fields])

    def reply_body(
        self,
        conv: Conversation,
        to: dict[str, Any] | None,
        text: str | None,
        kind: str = "message",
        reply_to: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": kind,
            "serviceUrl": conv.service_url,
            "channelId": conv.channel,
            "from": {"id": "28:bot", "name": "Bot"},
            "conversation": {"id": conv.id},
            "recipient": {"id": conv.user, "name": "User"},
            "inputHint": "acceptingInput",
        }
        if to is not None:
            body["locale"] = to.get("locale")
        if text is not None:
            body["text"] = text
        if reply_to:
            body["replyToId"] = reply_to
        return body

    def _break(self, body: dict[str, Any], conv: Conversation) -> str:
        """Make a send wrong in one way; returns the base URL to send it through."""
        mistake = self.rng.choice(MISTAKES)
        self.mistakes[mistake] = self.mistakes.get(mistake, 0) + 1
        if mistake == "from":
            body["from"] = {"id": conv.user}
        elif mistake == "service_url":
            return "https://smba.trafficmanager.net/elsewhere/"
        elif mistake == "recipient":
            body["recipient"] = {"id": "28:bot"}
        elif mistake == "channel":
            body["channelId"] = "slack"
        else:
            body["replyToId"] = self.new_id("nowhere-")
        return conv.service_url

    def send(self, conv: Conversation, body: dict[str, Any], turn_seq: int | None) -> Pending:
        base = conv.service_url
        if self.mistake_rate and self.rng.random() < self.mistake_rate:
            base = self._break(body, conv)
        reply_to = body.get("replyToId")
        route = "reply_to_activity" if reply_to else "send_to_conversation"
        url = f"{base}v3/conversations/{quote(conv.id, safe='')}/activities"
        url += f"/{quote(reply_to, safe='')}" if reply_to else ""
        fields = _fields(
            body,
            direction="from_bot",
            route=route,
            activity_id=None,
            service_url=base,
            url_conversation_id=conv.id,
            url_activity_id=reply_to,
            turn_seq=turn_seq,
        )
        return self.open("outbound", "POST", url, route, conv.id, reply_to, body, [fields])

    def send_done(self, conv: Conversation, pending: Pending) -> str:
        assigned = self.new_id("srv-")
        pending.activities[0]["activity_id"] = assigned
        self.close(pending, 200, {"id": assigned})
        conv.sent.append(assigned)
        if len(conv.sent) > 20:
            del conv.sent[0]
        return assigned

    def edit(
        self,
        conv: Conversation,
        method: str,
        target: str,
        body: dict[str, Any] | None,
        turn_seq: int | None,
        target_seq: int | None,
    ) -> Pending:
        route = "update_activity" if method == "PUT" else "delete_activity"
        path = f"v3/conversations/{quote(conv.id, safe='')}/activities/{quote(target, safe='')}"
        url = conv.service_url + path
        fields = _fields(
            body or {},
            direction="from_bot",
            route=route,
            activity_id=target,
            service_url=conv.service_url,
            url_conversation_id=conv.id,
            url_activity_id=target,
            turn_seq=turn_seq,
            target_seq=target_seq,
        )
        fields["conversation_id"] = conv.id
        if body is None:
            fields["body"] = None
        return self.open("outbound", method, url, route, conv.id, target, body, [fields])

    # -- turns (generators: each `yield` lets other conversations' traffic in) -------------------------------

    def turn(self, conv: Conversation) -> Iterator[None]:
        roll = self.rng.random()
        if roll < 0.03:
            yield from self._welcome(conv)
        elif roll < 0.08:
            yield from self._invoke(conv)
        elif roll < 0.11:
            yield from self._expect_replies(conv)
        elif roll < 0.16:
            yield from self._proactive(conv)
        elif roll < 0.17:
            yield from self._members(conv)
        else:
            yield from self._message(conv, roll)

    def _message(self, conv: Conversation, roll: float) -> Iterator[None]:
        body = self.inbound_activity(conv, text=" ".join(self.rng.choices(WORDS, k=self.rng.randint(1, 8))))
        inbound = self.inbound(conv, body)
        seq = inbound.activities[0]["seq"]
        yield
        plan = ["reply"]
        if roll < 0.27:
            plan = ["typing", "reply"]
        elif roll < 0.37:
            plan = ["reply", "reply"]
        elif roll < 0.42:
            plan = ["reply", "update"]
        elif roll < 0.45:
            plan = ["reply", "delete"]
        last: tuple[str, int] | None = None
        for step in plan:
            if step in ("update", "delete") and last is not None:
                target, target_seq = last
                if step == "update":
                    revised = self.reply_body(conv, body, "updated", reply_to=body["id"])
                    revised["id"] = target
                    pending = self.edit(conv, "PUT", target, revised, seq, target_seq)
                    yield
                    self.close(pending, 200, {"id": target})
                else:
                    pending = self.edit(conv, "DELETE", target, None, seq, target_seq)
                    yield
                    self.close(pending, 200)
                yield
                continue
            kind = "typing" if step == "typing" else "message"
            text = None if kind == "typing" else "You said: " + body.get("text", "")
            pending = self.send(conv, self.reply_body(conv, body, text, kind, reply_to=body["id"]), seq)
            yield
            last = (self.send_done(conv, pending), pending.activities[0]["seq"])
            yield
        self.close(inbound, 201)

    def _welcome(self, conv: Conversation) -> Iterator[None]:
        body = self.inbound_activity(
            conv, "conversationUpdate", membersAdded=[{"id": conv.user}, {"id": "28:bot"}]
        )
        inbound = self.inbound(conv, body)
        yield
        pending = self.send(conv, self.reply_body(conv, body, "Welcome!"), inbound.activities[0]["seq"])
        yield
        self.send_done(conv, pending)
        yield
        self.close(inbound, 201)

    def _invoke(self, conv: Conversation) -> Iterator[None]:
        body = self.inbound_activity(conv, "invoke", name="adaptiveCard/action", value={"action": "ok"})
        inbound = self.inbound(conv, body)
        yield
        answer = {"statusCode": 200, "type": "application/vnd.microsoft.activity.message", "value": "done"}
        response = {"type": "invokeResponse", "value": {"status": 200, "body": answer}}
        self.close(
            inbound,
            200,
            answer,
            [
                _fields(
                    response,
                    direction="from_bot",
                    route="invoke_response",
                    conversation_id=conv.id,
                    turn_seq=inbound.activities[0]["seq"],
                )
            ],
        )

    def _expect_replies(self, conv: Conversation) -> Iterator[None]:
        body = self.inbound_activity(conv, text="expect", deliveryMode="expectReplies")
        inbound = self.inbound(conv, body)
        yield
        reply = self.reply_body(conv, body, "You said: expect", reply_to=body["id"])
        self.close(
            inbound,
            200,
            {"activities": [reply]},
            [
                _fields(
                    reply,
                    direction="from_bot",
                    route="expected_replies",
                    turn_seq=inbound.activities[0]["seq"],
                )
            ],
        )

    def _proactive(self, conv: Conversation) -> Iterator[None]:
        body = self.reply_body(
            conv, None, "a proactive hello", reply_to=str(uuid.UUID(int=self.rng.getrandbits(128), version=1))
        )
        pending = self.send(conv, body, None)
        yield
        self.send_done(conv, pending)

    def _members(self, conv: Conversation) -> Iterator[None]:
        url = f"{conv.service_url}v3/conversations/{quote(conv.id, safe='')}/members"
        pending = self.open("outbound", "GET", url, "get_members", conv.id, None, None, [])
        yield
        self.close(pending, 200, [{"id": conv.user, "name": "User"}])


def _fields(body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An activity record from a body, as recording.SessionRecorder._new_activity builds it."""

    def account(name: str) -> str | None:
        value = body.get(name)
        return str(value["id"]) if isinstance(value, dict) and value.get("id") is not None else None

    fields = {
        "type": body.get("type"),
        "name": body.get("name"),
        "text": body.get("text"),
        "conversation_id": account("conversation"),
        "reply_to_id": body.get("replyToId"),
        "from_id": account("from"),
        "recipient_id": account("recipient"),
        "channel_id": body.get("channelId"),
        "locale": body.get("locale"),
        "delivery_mode": body.get("deliveryMode"),
        "turn_seq": None,
        "turn_ambiguous": 0,
        "target_seq": None,
        "url_conversation_id": None,
        "url_activity_id": None,
        "activity_id": None,
        "service_url": None,
        "body": body,
    }
    fields.update(extra)
    if fields["conversation_id"] is None:
        fields["conversation_id"] = fields["url_conversation_id"]
    return fields


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"


def generate(
    db_path: str | Path,
    activities: int,
    *,
    conversations: int = 5000,
    concurrency: int = 40,
    seed: int = 1,
    name: str | None = None,
    mistake_rate: float = 0.0,
    batch: int = 20_000,
) -> dict[str, Any]:
    """Write a session of about `activities` activities; returns its id, name and counts."""
    db = store.open_db(db_path, create=True)
    name = name or f"bench-{activities}-{seed}"
    session_id = (
        db.table("sessions")
        .insert({"name": name, "started_at": "2024-05-01T10:00:00Z", "source": "bench"})
        .last_pk
    )
    assert isinstance(session_id, int)
    columns = set(db.table("activities").columns_dict)
    gen = Generator(session_id, seed, mistake_rate, columns)
    rng = gen.rng
    convs = [
        Conversation(
            f"a:conv-{i:06d}",
            f"29:user-{i:06d}",
            f"https://smba.trafficmanager.net/{REGIONS[i % 3]}/",
            "msteams" if i % 4 else "emulator",
        )
        for i in range(conversations)
    ]
    active: list[tuple[Conversation, Iterator[None]]] = []
    busy: set[str] = set()
    started = time.perf_counter()

    def flush() -> None:
        with db.conn:
            db.table("exchanges").insert_all(gen.exchanges, batch_size=2000)
            db.table("activities").insert_all(gen.activities, batch_size=2000)
        gen.exchanges.clear()
        gen.activities.clear()

    written = 0
    while gen.activity_seq < activities or active:
        while gen.activity_seq < activities and len(active) < min(concurrency, len(convs)):
            conv = rng.choice(convs)
            if conv.id not in busy:
                busy.add(conv.id)
                active.append((conv, gen.turn(conv)))
        index = rng.randrange(len(active))
        conv, turn = active[index]
        if next(turn, StopIteration) is StopIteration:
            active[index] = active[-1]
            active.pop()
            busy.discard(conv.id)
        if len(gen.activities) >= batch:
            written += len(gen.activities)
            flush()
    written += len(gen.activities)
    flush()
    db.conn.close()
    return {
        "session_id": session_id,
        "name": name,
        "activities": written,
        "exchanges": gen.exchange_seq,
        "conversations": conversations,
        "mistakes": gen.mistakes,
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="SQLite file (created if missing)")
    parser.add_argument("--activities", type=int, default=200_000)
    parser.add_argument("--conversations", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=40, help="turns under way at once")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--name", help="session name (default bench-<activities>-<seed>)")
    parser.add_argument("--mistakes", type=float, default=0.0, help="fraction of replies made wrong")
    args = parser.parse_args(argv)
    result = generate(
        args.db,
        args.activities,
        conversations=args.conversations,
        concurrency=args.concurrency,
        seed=args.seed,
        name=args.name,
        mistake_rate=args.mistakes,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
