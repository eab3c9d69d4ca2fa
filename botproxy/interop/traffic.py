"""Captured HTTP traffic (HAR entries, mitmproxy flows) as the events a live recording would have seen.

Each captured exchange becomes a `Captured` record; `events()` orders the request, response and
WebSocket events of all records by when they happened (a request at its start, a response at its
end), so `SessionRecorder` sees them in the order the proxy would have. `listener_for()` decides which
leg a foreign capture's exchange was on, from its path and body.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from ..record.recorder import RequestSeen, ResponseSeen, WebSocketSeen
from ..wire import protocol as p
from ..wire.service_url import SVC_PREFIX, restore, split_svc_path, unsigned_original

Event = RequestSeen | ResponseSeen | WebSocketSeen

_DIRECTLINE = re.compile(r"/(v3/directline|api/(tokens|conversations))(/|$)")


@dataclass
class Captured:
    """One captured exchange; `ended` None: no response was captured (it stays unfinished)."""

    flow_id: str
    started: float
    method: str
    url: str
    request_headers: Sequence[tuple[str, str]]
    request_content: bytes | None
    ended: float | None = None
    status: int | None = None
    response_headers: Sequence[tuple[str, str]] = ()
    response_content: bytes | None = None
    error: str | None = None
    listener: str | None = None  # None: infer it
    rewritten: bool = False
    service_url: str | None = None
    # WebSocket messages: (at, from_client, content or None for the close, botproxy's event number or None)
    messages: list[tuple[float, bool, bytes | None, int | None]] = field(default_factory=list)
    order: tuple[int | None, int | None] = (None, None)  # botproxy's own event numbers (opened, closed)


def resolve(record: Captured) -> Captured:
    """Fill in the listener of a foreign capture's exchange, and undo botproxy's serviceUrl rewrite
    when the capture was taken of traffic botproxy was rewriting (the recording keeps the originals)."""
    if record.listener is not None:
        return record
    parts = urlsplit(record.url)
    if parts.path.startswith(SVC_PREFIX):
        key, rest = split_svc_path(parts.path)
        original = unsigned_original(key)
        if original is not None:
            target = urlsplit(original.rstrip("/") + "/" + rest)
            record.url = urlunsplit((target.scheme, target.netloc, target.path, parts.query, ""))
            record.listener, record.service_url = "svc", original
            record.request_content = _unrewrite(record.request_content)
            return record
    if _DIRECTLINE.search(parts.path) and p.classify_directline(record.method, parts.path).is_directline:
        record.listener = "directline"
        return record
    connector = p.classify_connector(record.method, parts.path).name != p.OTHER
    if record.method == "POST" and not connector and _is_activity(record.request_content):
        record.listener = "reverse"
        restored = _unrewrite(record.request_content)
        record.rewritten = restored != record.request_content
        record.request_content = restored
        record.response_content = _unrewrite(record.response_content)
        return record
    record.listener = "forward"
    return record


def _is_activity(content: bytes | None) -> bool:
    try:
        body = p.parse_json(content)
    except p.BodyError:
        return False
    return isinstance(body, dict) and isinstance(body.get("type"), str) and bool(body.get("serviceUrl"))


def _unrewrite(content: bytes | None) -> bytes | None:
    """Bodies with botproxy's rewritten serviceUrl given back the original one (keys of any botproxy,
    signed or not: a capture does not come with the secret that signed them)."""
    return restore(content, unsigned_original) if content else content


def events(records: Iterable[Captured]) -> list[Event]:
    """The records' events in the order they happened.

    When every record carries botproxy's own event numbers (a HAR botproxy wrote), those give the order
    exactly; otherwise the timestamps do (a request at its start, a response at its end, frames at theirs)."""
    items = [resolve(r) for r in records]
    exact = bool(items) and all(r.order[0] is not None for r in items)
    keyed: list[tuple[tuple[float, int, int], Event]] = []
    n = 0
    for record in items:
        assert record.listener is not None
        n += 1
        opened, closed = record.order
        request = RequestSeen(
            record.flow_id,
            record.started,
            record.listener,
            record.method,
            record.url,
            list(record.request_headers),
            record.request_content,
            record.rewritten,
            record.service_url,
        )
        keyed.append((((opened or 0) if exact else record.started, 0, n), request))
        if record.ended is None:
            continue
        ended = max(record.ended, record.started)
        response = ResponseSeen(
            record.flow_id,
            ended,
            record.status,
            list(record.response_headers),
            record.response_content,
            record.error,
        )
        response_key = float(closed) if exact and closed is not None else ended
        keyed.append(((response_key, 1, n), response))
        for i, (at, from_client, content, event) in enumerate(record.messages):
            at = max(at, ended)
            if exact:
                key = (float(event) if event is not None else response_key + (i + 1) / (len(record.messages) + 1), 2, n)
            else:
                key = (at, 2, n)
            keyed.append((key, WebSocketSeen(record.flow_id, at, from_client, content)))
    keyed.sort(key=lambda item: item[0])
    return [event for _, event in keyed]
