"""Microsoft 365 Agents Playground event recordings as captured traffic.

`agentsplayground --enable-events-recording` writes `./devTools/events_recording_<ISO time>.log` (or
`M365_AGENTS_PLAYGROUND_RECORDING_FILE`): one JSON object per exchange, pretty-printed and followed by
a `---` line (npm @microsoft/m365agentsplayground 0.2.28, `dist/index.js` `recordingEvents`; JSON
lines are read too):

    {"logId", "timestamp", "conversationId", "direction": "<from> -> <to>", "activityName", "messageId",
     "request": {"headers", "body", "url", "method"}, "response": {"statusCode", "body"}, "displayText"}

Two directions exist. `Microsoft 365 Agents Playground -> User Application` is the Playground posting
an activity to the bot (axios: `url` is the bot's endpoint, `timestamp` when the request started,
`response` the bot's answer). `User Application -> Microsoft 365 Agents Playground` is the bot calling
the Playground's mocked Connector (express: `url` is the path, the host is in the `host` header,
`timestamp` when the answer was sent). Each object is written when its exchange completes, so the
file's order is the order the exchanges ended: an inbound activity ends no earlier than anything
before it in the file, which is what ties the bot's calls to the turn they were made in. A bot's
answer that was an HTTP error is not in the file (the Playground records successful answers only).
"""

from __future__ import annotations

import json
import re
from typing import Any

from .encoding import json_bytes, wire_bytes
from .traffic import Captured

PLAYGROUND_TO_BOT = "Microsoft 365 Agents Playground -> User Application"
PLAYGROUND_FROM_BOT = "User Application -> Microsoft 365 Agents Playground"
_FIELDS = ("logId", "direction", "request", "response")
_SEPARATOR = re.compile(r"\s*(---\s*)*")


class NotARecording(ValueError):
    """The text is not a Playground events recording (`events_read`: how many events came before the
    part that is not)."""

    def __init__(self, message: str, events_read: int = 0) -> None:
        super().__init__(message)
        self.events_read = events_read


def is_event(value: Any) -> bool:
    return isinstance(value, dict) and all(k in value for k in _FIELDS) and isinstance(value["request"], dict)


def parse(text: str) -> list[dict[str, Any]]:
    """The events of a recording, in file order; NotARecording when the text is something else."""
    decoder = json.JSONDecoder()
    events: list[dict[str, Any]] = []
    text = text.removeprefix("\ufeff")
    at = _skip(text, 0)
    while at < len(text):
        try:
            value, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError as exc:
            if not events:
                raise NotARecording(f"not JSON: {exc}") from None
            raise NotARecording(f"event {len(events) + 1} is not JSON ({exc})", len(events)) from None
        if not is_event(value):
            raise NotARecording(
                f"event {len(events) + 1} is not a Playground event (no {', '.join(_FIELDS)})", len(events)
            )
        events.append(value)
        at = _skip(text, end)
    if not events:
        raise NotARecording("no events")
    return events


def _skip(text: str, at: int) -> int:
    """Past the white space and `---` lines between two events."""
    match = _SEPARATOR.match(text, at)
    return match.end() if match else at


def read(events: list[dict[str, Any]], prefix: str) -> list[Captured]:
    """The events as captured exchanges; NotARecording for an event of an unknown direction."""
    records: list[Captured] = []
    ended_so_far = 0.0
    for n, event in enumerate(events, 1):
        direction = " ".join(str(event.get("direction", "")).split())
        if direction not in (PLAYGROUND_TO_BOT, PLAYGROUND_FROM_BOT):
            raise NotARecording(f"event {n} has an unknown direction {event.get('direction')!r}")
        request, response = event["request"], event.get("response") or {}
        method = str(request.get("method") or "POST").upper()
        headers = [(str(k), str(v)) for k, v in (request.get("headers") or {}).items()]
        at = _seconds(event.get("timestamp"), ended_so_far)
        if direction == PLAYGROUND_TO_BOT:
            url, listener, started, ended = str(request.get("url") or ""), "reverse", at, max(at, ended_so_far)
        else:
            host = next((v for k, v in headers if k.lower() == "host"), "localhost")
            url, listener, started, ended = f"http://{host}{request.get('url') or '/'}", "forward", at, at
        ended_so_far = max(ended_so_far, ended)
        status = response.get("statusCode")
        body = response.get("body")
        records.append(
            Captured(
                flow_id=f"{prefix}{event.get('logId') or n}",
                started=started,
                method=method,
                url=url,
                request_headers=headers,
                request_content=_content(request.get("body"), method),
                ended=ended,
                status=status if isinstance(status, int) else None,
                response_headers=[("Content-Type", "application/json")] if isinstance(body, (dict, list)) else [],
                response_content=_content(body, method),
                listener=listener,
            )
        )
    return records


def _seconds(timestamp: Any, fallback: float) -> float:
    """The Playground's `timestamp` (epoch milliseconds) in seconds."""
    return timestamp / 1000 if isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool) else fallback


def _content(body: Any, method: str) -> bytes | None:
    """A recorded body as the bytes it stood for. Express gives an empty object for a request that had
    no body (a GET, a DELETE), and axios an empty string for an empty answer."""
    if body is None or body == "" or (body == {} and method in ("GET", "DELETE")):
        return None
    if isinstance(body, str):
        return wire_bytes(body)
    return json_bytes(body, separators=(",", ":"))
