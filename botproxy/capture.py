"""The mitmproxy addon: snapshot every flow and hand it to the recorder, without blocking the loop.

Policy, on purpose the opposite of mitmproxy's own savers: **the traffic always flows.** If botproxy's
code raises while handling a flow, the request and response pass on unchanged, the error is logged
and counted, and the session records it. Bot developers run us beside a bot they are debugging; a
recorder that breaks the traffic is worse than a gap in the recording.

On the event loop the hooks only do what must touch the traffic (the serviceUrl rewrite that brings
the bot's replies back through us, and the re-routing of those replies to the real connector) and
take a snapshot of the flow. Parsing, redaction, turn linking, checks, console output and SQLite all
happen on the writer thread, in event order.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mitmproxy import ctx, http

from .recording import FailureSeen, RequestSeen, ResponseSeen, WebSocketSeen

log = logging.getLogger(__name__)

SVC_PREFIX = "/_botproxy/svc/"
# A rewritten serviceUrl inside a body the bot sends, with its key.
_SVC_URL = re.compile(rb'https?://[^"/]+' + re.escape(SVC_PREFIX.encode()) + rb"([A-Za-z0-9_-]+)/?")
# The serviceUrl member of an activity, with its JSON string value (escapes allowed).
_SERVICE_URL = re.compile(rb'"serviceUrl"\s*:\s*"((?:[^"\\]|\\.)*)"')


def encode_service_url(url: str) -> str:
    """A path-safe key that stands for an original serviceUrl. Stateless, so replies still find their
    way after a restart of the recorder (bots keep conversation references for proactive sends)."""
    return base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def decode_service_url(key: str) -> str:
    return base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)).decode()


class Capture:
    """Records both legs of Bot Framework traffic passing through mitmproxy."""

    def __init__(
        self,
        submit: Callable[[Any], None] | None = None,
        *,
        rewrite: bool = True,
        directline_targets: frozenset[tuple[str, int]] = frozenset(),
    ) -> None:
        # `submit` receives RequestSeen/ResponseSeen/WebSocketSeen/FailureSeen in event order. The embedded
        # recorder passes one; under plain `mitmdump -s` it is set up when the proxy is running.
        self.submit = submit
        self.rewrite = rewrite
        # Reverse listeners whose upstream (host, port) is a Direct Line service carry the client leg.
        self.directline_targets = directline_targets
        self.failures = 0
        self.auth_seen = False
        self.on_auth_seen: Callable[[], None] | None = None

    # -- options (for `mitmdump -s addons/botproxy.py`) -------------------------------------

    def load(self, loader: Any) -> None:
        loader.add_option(
            "botproxy_rewrite",
            bool,
            True,
            "Rewrite serviceUrl in unauthenticated inbound activities so the bot's replies "
            "come back through this proxy.",
        )

    def configure(self, updated: set[str]) -> None:
        if "botproxy_rewrite" in updated:
            self.rewrite = ctx.options.botproxy_rewrite

    # -- hooks ------------------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        try:
            self._request(flow)
        except Exception as exc:  # fail open: the request goes on as it is
            self._failed(flow, "request", exc)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        try:
            assert flow.response is not None
            if _is_event_stream(flow.response) and self._listener(flow) == "reverse":
                # A deliveryMode stream answer: pass each frame on as it comes (a buffered stream would
                # reach the channel all at once) and keep the chunks with their times for the recording.
                flow.response.stream = _StreamTap(flow.metadata.get("botproxy_svc"))
        except Exception as exc:
            self._failed(flow, "response", exc)

    def response(self, flow: http.HTTPFlow) -> None:
        try:
            assert flow.response is not None
            resp = flow.response
            tap = resp.stream if isinstance(resp.stream, _StreamTap) else None
            if "botproxy_svc" in flow.metadata and tap is None:
                self._restore_service_url(flow)
            seen = ResponseSeen(
                flow.id,
                time.time(),
                resp.status_code,
                resp.headers.fields,
                b"".join(c for _, c in tap.chunks) if tap else resp.raw_content if _is_plain(resp) else resp.content,
                chunks=tap.chunks if tap else None,
            )
            try:
                if self._listener(flow) == "directline" and b"streamUrl" in (resp.content or b""):
                    self._rewrite_stream_url(flow)
            finally:
                self._submit(seen)  # the recording keeps what the service sent
        except Exception as exc:
            self._failed(flow, "response", exc)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        try:
            assert flow.websocket is not None
            message = flow.websocket.messages[-1]
            self._submit(WebSocketSeen(flow.id, time.time(), message.from_client, message.content))
        except Exception as exc:
            self._failed(flow, "websocket", exc)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        try:
            self._submit(WebSocketSeen(flow.id, time.time(), False, None))
        except Exception as exc:
            self._failed(flow, "websocket", exc)

    def error(self, flow: http.HTTPFlow) -> None:
        try:
            message = flow.error.msg if flow.error else "unknown error"
            resp = flow.response
            self._submit(
                ResponseSeen(
                    flow.id,
                    time.time(),
                    resp.status_code if resp else None,
                    resp.headers.fields if resp else (),
                    resp.content if resp else None,
                    error=message,
                )
            )
        except Exception as exc:
            self._failed(flow, "error", exc)

    # -- the work ---------------------------------------------------------------------------

    def _request(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        listener = self._listener(flow)
        service_url = None
        if listener == "reverse" and req.path.startswith(SVC_PREFIX):
            listener, service_url = "svc", self._reroute(req)
        # Snapshot before the rewrite: the recording keeps what the channel sent.
        seen = RequestSeen(
            flow.id,
            time.time(),
            listener,
            req.method,
            req.url,
            req.headers.fields,
            req.raw_content if _is_plain(req) else req.content,
            False,
            service_url,
        )
        try:
            if listener == "reverse" and req.method == "POST":
                if "authorization" in req.headers:
                    self._note_auth()
                elif self.rewrite:
                    seen.rewritten = self._rewrite_service_url(flow)
        finally:
            self._submit(seen)

    def _reroute(self, req: http.Request) -> str:
        """Send a call the bot made to a rewritten serviceUrl on to the original connector."""
        key, _, rest = req.path[len(SVC_PREFIX) :].partition("/")
        try:
            original = decode_service_url(key)
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"bad serviceUrl key {key!r} in {req.path}") from exc
        req.url = original.rstrip("/") + "/" + rest
        if req.content and SVC_PREFIX.encode() in req.content:
            # The bot copies serviceUrl into what it sends; give the connector the original back.
            ours, original_json = key.encode(), _json_str(original)
            req.content = _SVC_URL.sub(lambda m: original_json if m.group(1) == ours else m.group(0), req.content)
        return original

    def _rewrite_service_url(self, flow: http.HTTPFlow) -> bool:
        """Point the inbound activity's serviceUrl at us, so the bot's replies come through the proxy.

        Only without an Authorization header: the SDK compares the token's serviceurl claim with the
        activity's serviceUrl byte for byte and would reject the request (protocol.md S-3).
        """
        content = flow.request.content or b""
        # Edit the one value in place rather than re-serialising the body: cheaper on the loop, and the
        # bot gets the channel's bytes but for that field.
        found = _SERVICE_URL.findall(content)
        if len(found) != 1:  # none, or an odd body: leave it alone (a body that is not JSON is the bot's to reject)
            return False
        try:
            original = json.loads(b'"' + found[0] + b'"')
        except ValueError:
            return False
        if not original.startswith(("http://", "https://")):
            return False
        host, port = flow.client_conn.sockname[:2]
        ours = _svc_url(host, port, encode_service_url(original))
        flow.request.content = _SERVICE_URL.sub(lambda m: b'"serviceUrl":"' + _json_str(ours) + b'"', content)
        flow.metadata["botproxy_svc"] = (ours, original)
        return True

    def _restore_service_url(self, flow: http.HTTPFlow) -> None:
        """Replies in the inbound response body (ExpectedReplies) carry the serviceUrl we gave the bot:
        the channel gets, and we record, the original instead."""
        assert flow.response is not None
        rewritten, original = flow.metadata["botproxy_svc"]
        needle = _json_str(rewritten)
        if flow.response.content and needle in flow.response.content:
            flow.response.content = flow.response.content.replace(needle, _json_str(original))

    def _rewrite_stream_url(self, flow: http.HTTPFlow) -> None:
        """Point a Direct Line streamUrl (start/reconnect responses) at our listener, so the client's
        WebSocket comes through the recorder too; mitmproxy carries the upgrade on to the service."""
        assert flow.response is not None
        body = json.loads(flow.response.content or b"null")
        stream_url = body.get("streamUrl") if isinstance(body, dict) else None
        if not isinstance(stream_url, str):
            return
        parts = urlsplit(stream_url)
        host, port = flow.client_conn.sockname[:2]
        body["streamUrl"] = urlunsplit(("ws", _authority(host, port), parts.path, parts.query, ""))
        flow.response.content = json.dumps(body).encode()

    def _listener(self, flow: http.HTTPFlow) -> str:
        mode = getattr(flow.client_conn, "proxy_mode", None)
        if getattr(mode, "type_name", "") != "reverse":
            return "forward"
        return "directline" if tuple(getattr(mode, "address", ())) in self.directline_targets else "reverse"

    def _note_auth(self) -> None:
        if not self.auth_seen:
            self.auth_seen = True
            if self.on_auth_seen is not None:
                self.on_auth_seen()

    def _submit(self, item: Any) -> None:
        if self.submit is not None:
            self.submit(item)

    def _failed(self, flow: http.HTTPFlow, stage: str, exc: Exception) -> None:
        self.failures += 1
        log.error(
            "botproxy: error #%d in %s hook for %s %s (traffic passed unchanged): %r",
            self.failures,
            stage,
            flow.request.method,
            flow.request.pretty_url,
            exc,
            exc_info=True,
        )
        try:
            self._submit(FailureSeen(time.time(), stage, repr(exc), flow.id))
        except Exception:  # the recorder itself is gone; the log line above is all we can do
            pass


class _StreamTap:
    """mitmproxy's `response.stream` callable for a `text/event-stream` answer: each chunk goes on to
    the channel at once, with botproxy's rewritten serviceUrl given back its original (as in a buffered
    answer), and is kept with its time."""

    def __init__(self, svc: tuple[str, str] | None) -> None:
        self.chunks: list[tuple[float, bytes]] = []
        self._swap = (_json_str(svc[0]), _json_str(svc[1])) if svc else None

    def __call__(self, chunk: bytes) -> bytes:
        if self._swap and self._swap[0] in chunk:
            chunk = chunk.replace(*self._swap)
        if chunk:
            self.chunks.append((time.time(), chunk))
        return chunk


def _is_event_stream(message: http.Message) -> bool:
    return message.headers.get("content-type", "").split(";")[0].strip().lower() == "text/event-stream"


def _authority(host: str, port: int) -> str:
    """host:port of one of our listeners, as a client on this machine reaches it."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


def _svc_url(host: str, port: int, key: str) -> str:
    return f"http://{_authority(host, port)}{SVC_PREFIX}{key}/"


def _json_str(value: str) -> bytes:
    return json.dumps(value)[1:-1].encode()


def _is_plain(message: http.Message) -> bool:
    """True when the body has no content-encoding, so raw bytes are the body (no decode cost)."""
    return "content-encoding" not in message.headers
