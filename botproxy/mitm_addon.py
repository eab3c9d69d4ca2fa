"""botproxy's recorder as a self-contained mitmproxy addon, for `mitmdump -s` / `mitmweb -s`.

The embedded recorder (`botproxy record`) builds its own session; here mitmproxy drives, so the
database and session name are mitmproxy options and the session opens when the proxy is running.
The secret that signs `/_botproxy/svc/` keys is kept in mitmproxy's own `confdir` (`~/.mitmproxy` unless
`--set confdir=...`), the same file `botproxy record --confdir` uses.
"""

from __future__ import annotations

import logging
from typing import Any

from mitmproxy import ctx
from mitmproxy.exceptions import OptionsError

from .capture import Capture
from .checks import Engine, load_config
from .console import Console
from .errors import BotproxyError
from .service_url import ServiceUrlKeys
from .session import LiveSession

log = logging.getLogger(__name__)


class MitmdumpRecorder(Capture):
    def __init__(self) -> None:
        super().__init__(None)
        self.live: LiveSession | None = None

    def load(self, loader: Any) -> None:
        super().load(loader)
        loader.add_option("botproxy_db", str, "botproxy.db", "botproxy: SQLite database to record into.")
        loader.add_option("botproxy_session", str, "", "botproxy: session name (default rec-DATE-TIME).")
        loader.add_option("botproxy_console", bool, True, "botproxy: log one line per activity.")

    def configure(self, updated: set[str]) -> None:
        super().configure(updated)
        if "botproxy_db" in updated and not ctx.options.botproxy_db:
            raise OptionsError("botproxy_db must name a database file")
        if "confdir" in updated:
            try:
                self.keys = ServiceUrlKeys.in_confdir(ctx.options.confdir)
            except BotproxyError as exc:  # the traffic still flows; keys then last until mitmproxy stops
                log.error("botproxy: %s; serviceUrl keys are valid only until mitmproxy stops", exc)

    def running(self) -> None:
        observers = [Console(echo=log.info)] if ctx.options.botproxy_console else []
        try:
            engine = Engine(load_config("."))
        except BotproxyError as exc:  # a bad [tool.botproxy.checks] table must not stop the recording
            log.error("botproxy: checks run with default settings: %s", exc)
            engine = Engine()
        live = LiveSession(
            ctx.options.botproxy_db,
            name=ctx.options.botproxy_session or None,
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
            return
        self.live = live
        self.submit = live.submit
        log.info("botproxy: recording session %r into %s", live.name, live.db_path)

    def done(self) -> None:
        if self.live is not None:
            summary = self.live.close()
            log.info(
                "botproxy: session %r: %d exchanges, %d activities, %d recorder errors",
                summary["name"],
                summary["exchanges"],
                summary["activities"],
                summary["errors"],
            )
            self.live = None
            self.submit = None
