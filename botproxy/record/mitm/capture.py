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

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from mitmproxy import ctx, http

from ...wire.protocol import CREATE_CONVERSATION, classify_connector, strip_query
from ...wire.service_url import (
    SVC_PREFIX,
    ServiceUrlKeys,
    has_rewritten,
    is_json_type,
    replace_top_level_string,
    restore,
    rewrite_inbound,
    split_svc_path,
    svc_url,
)
from ..recorder import FailureSeen, RequestSeen, ResponseSeen, WebSocketSeen

log = logging.getLogger(__name__)

REFUSED_CODE = "BotproxyUnknownServiceUrlKey"
REFUSED_MESSAGE = (
    "botproxy relays /_botproxy/svc/ calls only with keys it minted itself (signed with its confdir's "
    "secret); this key is forged, altered, unsigned or from another confdir, so nothing was forwarded"
)
CLIMBING_CODE = "BotproxyPathOutsideServiceUrl"
CLIMBING_MESSAGE = (
    "botproxy relays /_botproxy/svc/<key>/ calls only to paths under the serviceUrl the key stands for; "
    "this path has a '.' or '..' segment, which would reach past it, so nothing was forwarded"
)


class Capture:
    """Records both legs of Bot Framework traffic passing through mitmproxy."""

    def __init__(
        self,
        submit: Callable[[Any], None] | None = None,
        *,
        rewrite: bool = True,
        directline_targets: frozenset[tuple[str, int]] = frozenset(),
        keys: ServiceUrlKeys | None = None,
    ) -> None:
        # `submit` receives RequestSeen/ResponseSeen/WebSocketSeen/FailureSeen in event order. The embedded
        # recorder passes one; under plain `mitmdump -s` it is set up when the proxy is running.
        self.submit = submit
        self.rewrite = rewrite
        # Reverse listeners whose upstream (host, port) is a Direct Line service carry the client leg.
        self.directline_targets = directline_targets
        # Signs the keys of rewritten serviceUrls; without a confdir's secret they last this process only.
        self.keys = keys or ServiceUrlKeys.ephemeral()
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
        seen = None
        try:
            seen = self._snapshot(flow)
            self._rewrite_inbound(flow, seen)
        except Exception as exc:  # fail open: the request goes on as it is, and is still recorded
            self._failed(flow, "request", exc, seen or _bare_request(flow))
        else:
            self._submit(seen)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        try:
            assert flow.response is not None
            if _is_event_stream(flow.response) and self._listener(flow) == "reverse":
                # A deliveryMode stream answer: pass each frame on as it comes (a buffered stream would
                # reach the channel all at once) and keep the chunks with their times for the recording.
                flow.response.stream = _StreamTap(self.keys.verify)
        except Exception as exc:
            self._failed(flow, "response", exc)

    def response(self, flow: http.HTTPFlow) -> None:
        seen = None
        try:
            assert flow.response is not None
            resp = flow.response
            tap = resp.stream if isinstance(resp.stream, _StreamTap) else None
            if flow.metadata.get("botproxy_listener") == "reverse" and tap is None:
                self._restore_in(resp)  # ExpectedReplies, invoke responses: the channel gets the originals
            seen = ResponseSeen(
                flow.id,
                time.time(),
                resp.status_code,
                resp.headers.fields,
                b"".join(c for _, c in tap.chunks) if tap else _body(resp),
                chunks=tap.chunks if tap else None,
                error=flow.metadata.get("botproxy_refused"),
            )
            # The recording keeps what the service sent, before the streamUrl is pointed at us.
            if self._listener(flow) == "directline" and b"streamUrl" in (resp.content or b""):
                self._rewrite_stream_url(flow)
            elif flow.metadata.get("botproxy_listener") == "svc" and self.rewrite:
                self._rewrite_created_service_url(flow)
        except Exception as exc:
            self._failed(flow, "response", exc, seen or _bare_response(flow))
        else:
            self._submit(seen)

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
            self._failed(flow, "error", exc, ResponseSeen(flow.id, time.time(), None, (), None, error=repr(exc)))

    # -- the work ---------------------------------------------------------------------------

    def _snapshot(self, flow: http.HTTPFlow) -> RequestSeen:
        """What the recording keeps of a request: after any re-routing, before the serviceUrl rewrite (the
        recording keeps what the channel sent)."""
        req = flow.request
        listener = self._listener(flow)
        service_url = None
        url = req.url
        if listener == "reverse" and req.path.startswith(SVC_PREFIX):
            listener, service_url = "svc", self._reroute(flow)
            # A refused call went nowhere: record it at the address it was sent to.
            url = req.url if service_url else f"http://{_authority(*flow.client_conn.sockname[:2])}{req.path}"
        flow.metadata["botproxy_listener"] = listener
        return RequestSeen(
            flow.id,
            time.time(),
            listener,
            req.method,
            url,
            req.headers.fields,
            _body(req),
            False,
            service_url,
        )

    def _rewrite_inbound(self, flow: http.HTTPFlow, seen: RequestSeen) -> None:
        if seen.listener == "reverse" and flow.request.method == "POST":
            if "authorization" in flow.request.headers:
                self._note_auth()
            elif self.rewrite:
                seen.rewritten = self._rewrite_service_url(flow)

    def _reroute(self, flow: http.HTTPFlow) -> str | None:
        """Send a call the bot made to a rewritten serviceUrl on to the original connector, or refuse it
        (answered here, nothing forwarded) when its key was not minted with our secret, or its path would
        climb out of the serviceUrl the key stands for: no open relay."""
        req = flow.request
        key, rest = split_svc_path(req.path)
        original = self.keys.verify(key)
        if original is None:
            _refuse(flow, REFUSED_CODE, REFUSED_MESSAGE)
            return None
        if _climbs(rest):
            _refuse(flow, CLIMBING_CODE, CLIMBING_MESSAGE)
            return None
        req.url = original.rstrip("/") + "/" + rest  # as msrest joins a base and a path
        # ... and the path again as text: mitmproxy's url setter (urllib's urlparse) drops an empty `;`
        # parameter, so `/members/;` would reach the connector as `/members/`.
        req.path = urlsplit(original).path.rstrip("/") + "/" + rest
        self._restore_in(req)  # the bot copies serviceUrl into what it sends: the connector gets the original
        return original

    def _restore_in(self, message: http.Message) -> None:
        """Give every rewritten serviceUrl in a body the bot sends back its original text."""
        if _is_plain(message) and not has_rewritten(message.raw_content or b""):
            return  # the common case, decided without copying the body
        content = _decoded(message)
        if content:
            restored = restore(content, self.keys.verify)
            if restored != content:
                message.content = restored  # re-encoded with the body's own content-encoding

    def _rewrite_service_url(self, flow: http.HTTPFlow) -> bool:
        """Point the inbound activity's serviceUrl at us, so the bot's replies come through the proxy.

        Only without an Authorization header: the SDK compares the token's serviceurl claim with the
        activity's serviceUrl byte for byte and would reject the request (protocol.md S-3). Only a JSON
        activity, and only that one value: the bot gets the channel's bytes but for it.
        """
        return self._point_service_url_at_us(flow, flow.request)

    def _rewrite_created_service_url(self, flow: http.HTTPFlow) -> None:
        """Point the serviceUrl of a CreateConversation answer at us, as an inbound activity's is.

        botbuilder-js's and .NET's BotFrameworkAdapter go on in the new conversation at the serviceUrl the
        answer names (`request.serviceUrl = response.serviceUrl`): left as it is, every call the bot makes
        there would go straight to the connector, past the recorder. Only that value changes."""
        req, resp = flow.request, flow.response
        assert resp is not None
        if req.method != "POST" or not 200 <= resp.status_code < 300:
            return
        if classify_connector(req.method, strip_query(req.path)).name == CREATE_CONVERSATION:
            self._point_service_url_at_us(flow, resp)

    def _point_service_url_at_us(self, flow: http.HTTPFlow, message: http.Message) -> bool:
        """Replace the top-level serviceUrl of a JSON `message` of `flow` with ours for it (the listener the
        bot reached us on); every other byte stays. False when there is no such value to replace."""
        if not is_json_type(message.headers.get("content-type", "")):
            return False
        content = _decoded(message)
        authority = _authority(*flow.client_conn.sockname[:2])
        edited = content and rewrite_inbound(content, lambda original: svc_url(authority, self.keys.mint(original)))
        if not edited:
            return False
        message.content = edited
        return True

    def _rewrite_stream_url(self, flow: http.HTTPFlow) -> None:
        """Point a Direct Line streamUrl (start/reconnect responses) at our listener, so the client's
        WebSocket comes through the recorder too; mitmproxy carries the upgrade on to the service. Only
        that value changes: the client gets the service's bytes but for it."""
        assert flow.response is not None
        authority = _authority(*flow.client_conn.sockname[:2])

        def ours(stream_url: object) -> str | None:
            if not isinstance(stream_url, str):
                return None
            parts = urlsplit(stream_url)
            return urlunsplit(("ws", authority, parts.path, parts.query, ""))

        content = _decoded(flow.response)
        edited = content and replace_top_level_string(content, "streamUrl", ours)
        if edited:
            flow.response.content = edited

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

    def _failed(self, flow: http.HTTPFlow, stage: str, exc: Exception, seen: Any = None) -> None:
        """Our code failed on a flow whose traffic goes on unchanged: one line (the traceback with -v), the
        failure counted, and the exchange still recorded from what could be snapshotted, its error noted."""
        self.failures += 1
        log.error(
            "botproxy: error #%d in %s hook for %s %s (traffic passed unchanged, exchange recorded): %r%s",
            self.failures,
            stage,
            flow.request.method,
            flow.request.pretty_url,
            exc,
            "" if log.isEnabledFor(logging.INFO) else " (-v for the traceback)",
        )
        log.info("the traceback of error #%d", self.failures, exc_info=True)
        failure = FailureSeen(time.time(), stage, repr(exc), flow.id)
        # The recorder notes a failure on the exchange that is open for its flow: after its request, before
        # its response.
        for event in (seen, failure) if isinstance(seen, RequestSeen) else (failure, seen):
            if event is not None:
                try:
                    self._submit(event)
                except Exception:  # the recorder itself is gone; the log line above is all we can do
                    pass


def _refuse(flow: http.HTTPFlow, code: str, message: str) -> None:
    """Answer a relay call here, in the Connector's ErrorResponse shape, and forward nothing."""
    body = {"error": {"code": code, "message": message}}
    flow.response = http.Response.make(403, json.dumps(body), {"content-type": "application/json; charset=utf-8"})
    flow.metadata["botproxy_refused"] = message


def _climbs(path: str) -> bool:
    """Whether a path has a dot segment (percent-encoded too, and between backslashes, which some servers
    take for slashes): a server that resolves it would serve a path outside the serviceUrl a key was
    signed for. No Connector route has one."""
    return any(segment in (".", "..") for segment in re.split(r"[/\\]", unquote(strip_query(path))))


def _bare_request(flow: http.HTTPFlow) -> RequestSeen | None:
    """A request as it stands, for the recording, when our own code failed on it."""
    try:
        req = flow.request
        return RequestSeen(flow.id, time.time(), "other", req.method, req.url, req.headers.fields, req.raw_content)
    except Exception:
        return None


def _bare_response(flow: http.HTTPFlow) -> ResponseSeen | None:
    try:
        resp = flow.response
        if resp is None:
            return None
        return ResponseSeen(flow.id, time.time(), resp.status_code, resp.headers.fields, resp.raw_content)
    except Exception:
        return None


class _StreamTap:
    """mitmproxy's `response.stream` callable for a `text/event-stream` answer: each chunk goes on to
    the channel at once, with botproxy's rewritten serviceUrls given back their original (as in a
    buffered answer), and is kept with its time.

    A rewritten URL never spans lines (an event's data lines carry JSON, whose strings hold no raw
    newline), so an unfinished line waits for its end: a URL split between two reads is restored too,
    and SSE clients act on whole events only anyway."""

    def __init__(self, original_of: Callable[[str], str | None]) -> None:
        self.chunks: list[tuple[float, bytes]] = []
        self._original_of = original_of
        self._unfinished = b""

    def __call__(self, chunk: bytes) -> bytes:
        data = self._unfinished + chunk
        cut = data.rfind(b"\n") + 1 if chunk else len(data)  # b"": the body ended, send everything
        data, self._unfinished = restore(data[:cut], self._original_of), data[cut:]
        if data:
            self.chunks.append((time.time(), data))
        return data


def _is_event_stream(message: http.Message) -> bool:
    return message.headers.get("content-type", "").split(";")[0].strip().lower() == "text/event-stream"


def _authority(host: str, port: int) -> str:
    """host:port of one of our listeners, as a client on this machine reaches it."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


def _is_plain(message: http.Message) -> bool:
    """True when the body has no content-encoding, so raw bytes are the body (no decode cost)."""
    return "content-encoding" not in message.headers


def _decoded(message: http.Message) -> bytes | None:
    """The body with its content-encoding undone; None when it cannot be (then we leave it alone)."""
    try:
        return message.content
    except ValueError:
        return None


def _body(message: http.Message) -> bytes | None:
    """What the recording keeps: the decoded body, or the raw bytes when they cannot be decoded."""
    return message.raw_content if _is_plain(message) else message.get_content(strict=False)
