"""mitmproxy flow files (`mitmdump -w`, mitmweb's save) as captured exchanges."""

from __future__ import annotations

from pathlib import Path

from .traffic import Captured


class NotFlows(ValueError):
    """The file is not a mitmproxy flow file (or holds no HTTP flow)."""


def read(path: Path, prefix: str) -> list[Captured]:
    """The HTTP flows of a flow file in file order; NotFlows when mitmproxy cannot read it."""
    from mitmproxy import http, io

    try:
        with path.open("rb") as handle:
            flows = list(io.FlowReader(handle).stream())
    except Exception as exc:  # FlowReadException, or whatever part of the reader a damaged file trips (an assert)
        raise NotFlows(f"mitmproxy cannot read it ({exc})") from None
    records = [_record(f, f"{prefix}{n}") for n, f in enumerate(flows, 1) if isinstance(f, http.HTTPFlow)]
    if not records:
        raise NotFlows("no HTTP flows in it")
    return records


def _record(flow: object, flow_id: str) -> Captured:
    from mitmproxy import http

    assert isinstance(flow, http.HTTPFlow)
    req, resp = flow.request, flow.response
    record = Captured(
        flow_id=flow_id,
        started=req.timestamp_start,
        method=req.method,
        url=req.pretty_url,  # the Host header: with keep_host_header, what the client addressed
        request_headers=_pairs(req.headers.fields),
        request_content=_content(req),
    )
    if resp is not None:
        record.ended = resp.timestamp_end or resp.timestamp_start or req.timestamp_end or req.timestamp_start
        record.status = resp.status_code
        record.response_headers = _pairs(resp.headers.fields)
        record.response_content = _content(resp)
    if flow.error is not None:
        record.error = flow.error.msg
        record.ended = record.ended or flow.error.timestamp
    if flow.websocket is not None:
        for message in flow.websocket.messages:
            record.messages.append((message.timestamp, message.from_client, message.content, None))
        if flow.websocket.timestamp_end:
            record.messages.append((flow.websocket.timestamp_end, False, None, None))
    return record


def _pairs(fields: tuple[tuple[bytes, bytes], ...]) -> list[tuple[str, str]]:
    return [(k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape")) for k, v in fields]


def _content(message: object) -> bytes | None:
    """The body as the live capture hands it over: raw bytes, decoded when it was content-encoded."""
    from mitmproxy import http

    assert isinstance(message, http.Message)
    if "content-encoding" not in message.headers:
        return message.raw_content
    try:
        return message.content
    except ValueError:
        return message.raw_content
