"""HAR 1.2 (HTTP Archive) in and out.

Out: every HTTP exchange of a session, bodies and headers as stored (so redacted), with a custom
`_botproxy` field (listener, leg, route, event numbers) that lets botproxy's own HAR re-import exactly.
Direct Line stream frames go into `_webSocketMessages`, the field Chrome and mitmproxy use.

In: HAR from botproxy or from other tools (mitmproxy's `hardump`, browsers) as `Captured` records.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .. import __version__
from .encoding import wire_bytes
from .traffic import Captured


class NotAHar(ValueError):
    """The JSON is not a HAR document, or an entry of it is unusable."""


# -- out ------------------------------------------------------------------------------------------


def to_har(exchanges: list[dict[str, Any]], activities: list[dict[str, Any]]) -> dict[str, Any]:
    """A HAR 1.2 document of a session's stored exchanges (in seq order) and its stream frames."""
    frames: dict[int, dict[int, list[dict[str, Any]]]] = {}  # exchange seq -> event -> activities
    service_urls: dict[int, str] = {}
    for a in activities:
        if a["source"] == "stream":
            frames.setdefault(a["exchange_seq"], {}).setdefault(a["event"], []).append(a)
        elif a["direction"] == "from_bot" and a["source"] == "request" and a["service_url"]:
            service_urls.setdefault(a["exchange_seq"], a["service_url"])
    entries = [_entry(x, frames.get(x["seq"], {}), service_urls.get(x["seq"])) for x in exchanges]
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "botproxy", "version": __version__},
            "pages": [],
            "entries": entries,
        }
    }


def _entry(x: dict[str, Any], frames: dict[int, list[dict[str, Any]]], service_url: str | None) -> dict[str, Any]:
    request_headers = _headers(x["request_headers"])
    request: dict[str, Any] = {
        "method": x["method"],
        "url": x["url"],
        "httpVersion": "HTTP/1.1",
        "cookies": [],
        "headers": request_headers,
        "queryString": [{"name": k, "value": v} for k, v in parse_qsl(urlsplit(x["url"]).query, True)],
        "headersSize": -1,
        "bodySize": 0,
    }
    body = _body(x["request_body"], x["request_body_raw"])
    if body is not None:
        request["postData"] = {"mimeType": _content_type(request_headers), **body[0]}
        request["bodySize"] = body[1]
    if x["closed"] is None:  # no response before the recording stopped
        response: dict[str, Any] = {
            "status": 0,
            "statusText": "",
            "httpVersion": "",
            "cookies": [],
            "headers": [],
            "content": {"size": 0, "mimeType": ""},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
            "_error": x["error"],
        }
    else:
        response_headers = _headers(x["response_headers"])
        content: dict[str, Any] = {"size": 0, "mimeType": _content_type(response_headers)}
        body = _body(x["response_body"], x["response_body_raw"])
        if body is not None:
            content.update(body[0], size=body[1])
        response = {
            "status": x["status"],
            "statusText": _reason(x["status"]),
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": response_headers,
            "content": content,
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": content["size"],
        }
        if x["error"]:
            response["_error"] = x["error"]
    wait = x["duration_ms"] or 0.0
    entry: dict[str, Any] = {
        "startedDateTime": _iso(x["started_at"]),
        "time": wait,
        "request": request,
        "response": response,
        "cache": {},
        "timings": {"send": 0, "wait": wait, "receive": 0},
        "_botproxy": {
            "listener": x["listener"],
            "leg": x["leg"],
            "route": x["route"],
            "rewritten": bool(x["rewritten"]),
            "service_url": service_url if x["listener"] == "svc" else None,
            "opened": x["opened"],
            "closed": x["closed"],
        },
    }
    if frames:
        entry["_resourceType"] = "websocket"
        entry["_webSocketMessages"] = [
            {
                "type": "receive",
                "time": acts[0]["observed_at"],
                "opcode": 1,
                "data": json.dumps(
                    {"activities": [a["body"] or {} for a in acts], "watermark": acts[0]["watermark"]},
                    ensure_ascii=False,
                ),
                "_event": event,
            }
            for event, acts in sorted(frames.items())
        ]
    return entry


def _headers(stored: str | None) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in json.loads(stored or "[]")]


def _content_type(headers: list[dict[str, str]]) -> str:
    return next((h["value"] for h in headers if h["name"].lower() == "content-type"), "")


def _body(text: str | None, raw: bytes | None) -> tuple[dict[str, Any], int] | None:
    if raw is not None:
        return {"text": base64.b64encode(raw).decode("ascii"), "encoding": "base64"}, len(raw)
    if text is not None:
        return {"text": text}, len(text.encode("utf-8"))
    return None


def _reason(status: int | None) -> str:
    try:
        return HTTPStatus(status or 0).phrase
    except ValueError:
        return ""


def _iso(at: float | None) -> str:
    return dt.datetime.fromtimestamp(at or 0.0, dt.UTC).isoformat()


# -- in -------------------------------------------------------------------------------------------


def is_har(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("log"), dict) and isinstance(data["log"].get("entries"), list)


def read(data: Any, prefix: str) -> list[Captured]:
    """The entries of a parsed HAR document as captured exchanges; NotAHar for an unusable entry."""
    if not is_har(data):
        raise NotAHar("no `log.entries` array")
    creator = data["log"].get("creator")
    from_mitmproxy = isinstance(creator, dict) and creator.get("name") == "mitmproxy"
    records = []
    for n, entry in enumerate(data["log"]["entries"], 1):
        try:
            records.append(_record(entry, f"{prefix}{n}", from_mitmproxy))
        # A part of another shape than HAR's (a list where an object belongs) is an unusable entry too.
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
            raise NotAHar(f"entry {n} is not a usable HAR entry ({type(exc).__name__}: {exc})") from None
    return records


def _record(entry: dict[str, Any], flow_id: str, from_mitmproxy: bool = False) -> Captured:
    request, response = entry["request"], entry.get("response") or {}
    started = dt.datetime.fromisoformat(str(entry["startedDateTime"]).replace("Z", "+00:00")).timestamp()
    ours = entry.get("_botproxy") if isinstance(entry.get("_botproxy"), dict) else None
    status = int(response.get("status") or 0)
    error = response.get("_error") or None
    answered = status > 0 or error is not None
    post = request.get("postData") or {}
    record = Captured(
        flow_id=flow_id,
        started=started,
        method=str(request["method"]).upper(),
        url=str(request["url"]),
        request_headers=_pairs(request.get("headers")),
        request_content=_content(post) if "text" in post else None,
        ended=started + _elapsed_ms(entry, from_mitmproxy) / 1000 if answered else None,
        status=status or None,
        response_headers=_pairs(response.get("headers")),
        response_content=_content(response.get("content") or {}),
        error=str(error) if error is not None else None,
    )
    if ours is not None:
        record.listener = str(ours["listener"])
        record.rewritten = bool(ours.get("rewritten"))
        record.service_url = ours.get("service_url") or None
        closed = ours.get("closed")
        record.order = (int(ours["opened"]), int(closed) if closed is not None else None)
        if closed is None:
            record.ended = None
    for message in entry.get("_webSocketMessages") or []:
        data = message.get("data")
        content = base64.b64decode(data) if message.get("opcode") == 2 else wire_bytes(str(data or ""))
        event = message.get("_event") if ours is not None else None
        record.messages.append(
            (float(message["time"]), message.get("type") == "send", content, int(event) if event is not None else None)
        )
    return record


def _elapsed_ms(entry: dict[str, Any], from_mitmproxy: bool) -> float:
    """From the request's start to the response's end.

    HAR's `time` is the sum of the timings, which a browser measures one after another. mitmproxy opens
    the server connection while it already holds the request, so its `connect` and `ssl` lie inside
    `send`/`wait`, and its `time` counts them twice: an exchange would end that much later than it did,
    and a call the bot made after it returned would seem to start before (a false BP-O07). For its HARs
    `send + wait + receive` is exactly response end minus request start."""
    timings = entry.get("timings")
    if from_mitmproxy and isinstance(timings, dict):
        return sum(max(float(timings.get(part) or 0.0), 0.0) for part in ("send", "wait", "receive"))
    return float(entry.get("time") or 0.0)


def _pairs(headers: Any) -> list[tuple[str, str]]:
    return [(str(h["name"]), str(h["value"])) for h in headers or []]


def _content(part: dict[str, Any]) -> bytes | None:
    text = part.get("text")
    if text is None:
        return None
    if part.get("encoding") == "base64":
        return base64.b64decode(text, validate=True)
    return wire_bytes(str(text))
