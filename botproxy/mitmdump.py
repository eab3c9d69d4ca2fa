"""botproxy's recorder as a self-contained mitmproxy addon, for `mitmdump -s` / `mitmweb -s`.

The embedded recorder (`botproxy record`) builds its own session; here mitmproxy drives, so the
database and session name are mitmproxy options and the session opens when the proxy is running.
The secret that signs `/_botproxy/svc/` keys is kept in mitmproxy's own `confdir` (`~/.mitmproxy` unless
`--set confdir=...`), the same file `botproxy record --confdir` uses; the forward (regular-mode)
listeners ask for the credential derived from it, as `botproxy record`'s do.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from mitmproxy import ctx, http
from mitmproxy.exceptions import OptionsError
from mitmproxy.proxy.mode_specs import ProxyMode

from . import store
from .checks import Engine, load_config
from .errors import BotproxyError
from .present.console import Console
from .present.words import counted
from .record.mitm.capture import Capture
from .record.mitm.proxy import is_loopback, quiet_shutdown_noise
from .record.mitm.proxy_auth import ForwardProxyAuth
from .record.session import LiveSession
from .settings import DEFAULTS
from .wire.service_url import ServiceUrlKeys

log = logging.getLogger(__name__)


class MitmdumpRecorder(Capture):
    def __init__(self) -> None:
        # mitmproxy opens its listeners before it calls `running`, where the session opens: what passes
        # through in between waits here, and is recorded first (a fast first request was otherwise lost).
        self.early: list[Any] = []
        super().__init__(self.early.append)
        self.live: LiveSession | None = None
        self.forward_auth: ForwardProxyAuth | None = None

    def load(self, loader: Any) -> None:
        super().load(loader)
        quiet_shutdown_noise()
        loader.add_option("botproxy_db", str, DEFAULTS.db, "botproxy: SQLite database to record into.")
        loader.add_option("botproxy_session", str, "", "botproxy: session name (default rec-DATE-TIME).")
        loader.add_option("botproxy_console", bool, True, "botproxy: log one line per activity.")
        loader.add_option(
            "botproxy_forward_auth",
            bool,
            True,
            "botproxy: forward (regular-mode) listeners ask for botproxy's proxy credential (logged at start). "
            "mitmproxy's own proxyauth would ask channels on reverse listeners too.",
        )

    def configure(self, updated: set[str]) -> None:
        super().configure(updated)
        if "botproxy_db" in updated and not ctx.options.botproxy_db:
            raise OptionsError("botproxy_db must name a database file")
        if "confdir" in updated:
            try:
                self.keys = ServiceUrlKeys.in_confdir(ctx.options.confdir)
            except BotproxyError as exc:  # the traffic still flows; keys then last until mitmproxy stops
                log.error("botproxy: %s; serviceUrl keys are valid only until mitmproxy stops", exc)
        if updated & {"confdir", "botproxy_forward_auth"}:
            on = ctx.options.botproxy_forward_auth
            self.forward_auth = ForwardProxyAuth(self.keys.proxy_credential()) if on else None

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self.forward_auth is not None:
            self.forward_auth.requestheaders(flow)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if self.forward_auth is not None:
            self.forward_auth.http_connect(flow)

    def running(self) -> None:
        self._say_what_is_exposed()
        observers = [Console(echo=log.info)] if ctx.options.botproxy_console else []
        try:
            engine = Engine(load_config("."))
        except BotproxyError as exc:  # a bad [tool.botproxy.checks] table must not stop the recording
            log.error("botproxy: checks run with default settings: %s", exc)
            engine = Engine()
        name = ctx.options.botproxy_session or None
        if name is not None:
            # A reloaded script (or a second run) asks for the session the first one made: recording must
            # go on rather than stop at "already exists" while the traffic flows.
            free = _free_session_name(ctx.options.botproxy_db, name)
            if free != name:
                log.warning("botproxy: session %r exists in %s; recording into %r", name, ctx.options.botproxy_db, free)
                name = free
        live = LiveSession(
            ctx.options.botproxy_db,
            name=name,
            observers=observers,
            engine=engine,
            capture_mode="mitmdump",
            listen=", ".join(ctx.options.mode),
        )
        try:
            live.start()
        except BotproxyError as exc:
            # Recording is impossible, but the traffic must still flow: say so and carry on as a plain proxy.
            log.error("botproxy: not recording: %s", exc)
            self.submit = None
            self.early.clear()
            return
        for event in self.early:
            live.submit(event)
        self.early.clear()
        self.live = live
        self.submit = live.submit
        log.info("botproxy: recording session %r into %s", live.name, live.db_path)

    def _say_what_is_exposed(self) -> None:
        """The forward listeners' credential, and one warning line when a listener binds beyond loopback."""
        exposed = []
        for spec in ctx.options.mode:
            mode = ProxyMode.parse(spec)
            host = mode.listen_host(ctx.options.listen_host)  # "" is every interface, mitmproxy's default
            port = mode.listen_port(ctx.options.listen_port)
            if self.forward_auth is not None and mode.type_name == "regular":
                credential = self.keys.proxy_credential()
                log.info("botproxy: forward proxy: HTTPS_PROXY=http://%s@%s:%s", credential, host or "127.0.0.1", port)
            if not is_loopback(host):
                exposed.append(f"{host or '*'}:{port} ({mode.type_name})")
        if exposed:
            log.warning(
                "botproxy: warning: listening beyond this machine: %s (anyone who can reach it can use it; "
                "add @127.0.0.1:PORT to a --mode to keep it local)",
                ", ".join(exposed),
            )

    def done(self) -> None:
        if self.live is not None:
            summary = self.live.close()
            log.info(
                "botproxy: session %r: %s, %s, %s%s",
                summary["name"],
                counted(summary["exchanges"], "exchange"),
                counted(summary["activities"], "activity", "activities"),
                counted(summary["errors"], "recorder error"),
                f"; NOT STORED: {counted(summary['not_stored'], 'exchange')}" if summary["not_stored"] else "",
            )
            for problem in summary["problems"]:
                log.warning("botproxy: %s", problem)
            self.live = None
            self.submit = None


def _free_session_name(db_path: str, name: str) -> str:
    """`name`, or the next free `name-N` when the database already has it."""
    if not os.path.exists(db_path):
        return name
    try:
        db = store.open_db(db_path)
    except BotproxyError:
        return name  # LiveSession.start says what is wrong with the database
    try:
        return store.free_session_name(db, name)
    finally:
        db.conn.close()
