"""Embedding mitmproxy: a reverse listener in front of the bot and a forward listener for its outbound calls.

Facts this relies on (docs/mitmproxy.md): a Master must be built inside a running loop
and is process-global; a plain Master with the default addons only logs a failed bind, so we check the
listeners ourselves; addon-declared options are set with `options.update()` after the addons exist.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mitmproxy import addons, options
from mitmproxy.master import Master

from ... import store
from ...errors import ListenError, UsageError
from ...settings import DEFAULTS
from ...wire.service_url import ServiceUrlKeys
from ..session import RecordingSession
from .capture import Capture
from .proxy_auth import ForwardProxyAuth

log = logging.getLogger(__name__)


def parse_hostport(value: str, what: str) -> tuple[str, int]:
    """`HOST:PORT`, `[::1]:PORT` or `:PORT` (127.0.0.1) into a pair."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"{what} must be HOST:PORT (e.g. 127.0.0.1:5055), not {value!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def parse_bot_url(url: str) -> tuple[str, str]:
    """(origin, path) of the bot's messaging endpoint; only http(s) URLs with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"--bot must be the bot's http(s) messaging endpoint, e.g. http://127.0.0.1:3978/api/messages, not {url!r}"
        )
    return _origin(parts), parts.path or "/api/messages"


def parse_directline_url(url: str) -> tuple[str, tuple[str, int]]:
    """(origin, (host, port)) of a Direct Line service."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"--directline must be an http(s) Direct Line service URL, e.g. {DEFAULTS.directline}, not {url!r}"
        )
    origin = _origin(parts)
    return origin, (parts.hostname, int(origin.rsplit(":", 1)[1]))


def _origin(parts: Any) -> str:
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"


def check_free(host: str, port: int, what: str) -> None:
    """Fail early with one line when a listen address cannot be bound (mitmproxy would only log it).

    The trial bind sets SO_REUSEADDR as the real listener will (asyncio's create_server, which mitmproxy and
    aiohttp use, does on POSIX), so the connections of a listener just stopped, lingering in TIME_WAIT, do not
    make a free port look taken; a port something listens on is still refused."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        if sys.platform != "win32":  # as asyncio: on Windows the option would let two listeners share a port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
            raise ListenError(f"{what} {host}:{port} {reason}; pick another with {_flag(what)} HOST:PORT") from exc


def _flag(what: str) -> str:
    if "Direct Line" in what:
        return "--directline-listen"
    return "--forward-listen" if "forward" in what else "--listen"


@dataclass
class ProxyConfig:
    bot_url: str | None
    listen: str = DEFAULTS.listen
    forward_listen: str | None = DEFAULTS.forward_listen
    rewrite: bool = True
    confdir: str = DEFAULTS.confdir
    upstream_ca: str | None = None  # trust this CA for upstream TLS (a test connector, a corporate proxy)
    directline: str | None = None  # a Direct Line service to put a listener in front of
    directline_listen: str = DEFAULTS.directline_listen

    def validate(self) -> None:
        if not self.bot_url and not self.directline:
            raise UsageError("nothing to record: give --bot URL, --directline [URL], or both")
        if self.bot_url:
            parse_bot_url(self.bot_url)
        if self.directline:
            parse_directline_url(self.directline)
            parse_hostport(self.directline_listen, "--directline-listen")
        parse_hostport(self.listen, "--listen")
        if self.forward_listen:
            parse_hostport(self.forward_listen, "--forward-listen")
        if self.upstream_ca and not Path(self.upstream_ca).is_file():
            raise UsageError(f"--upstream-ca {self.upstream_ca}: no such file")
        check_confdir(Path(os.path.expanduser(self.confdir)))

    def exposure_warning(self) -> str | None:
        """One line naming what other machines can use, when a listener binds beyond loopback."""
        exposed = []
        if self.bot_url:
            exposed += _exposed(
                self.listen, f"channels reach the bot {self.bot_url}, and the bot's replies go through the serviceUrls "
                "botproxy signed"
            )
        if self.forward_listen:
            exposed += _exposed(self.forward_listen, "the forward proxy reaches any host, for whoever has its password")
        if self.directline:
            exposed += _exposed(self.directline_listen, f"Direct Line clients reach {self.directline}")
        if not exposed:
            return None
        return "warning: listening beyond this machine: " + "; ".join(exposed) + " (anyone who can reach it can use it)"


def check_confdir(confdir: Path) -> None:
    """mitmproxy writes its CA into the confdir on first start; one line now rather than its traceback."""
    ca = confdir / "mitmproxy-ca.pem"
    if ca.is_file():
        if not os.access(ca, os.R_OK):
            raise UsageError(f"--confdir {confdir}: cannot read mitmproxy's CA {ca} (permission denied)")
        return
    if confdir.exists() and not confdir.is_dir():
        raise UsageError(f"--confdir {confdir} is not a folder")
    folder = confdir
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(
            f"--confdir {confdir}: cannot write mitmproxy's CA there ({folder} is not writable); give a folder"
            " you can write, or one holding mitmproxy-ca.pem"
        )

def _exposed(listen: str, what: str) -> list[str]:
    host, port = parse_hostport(listen, "listen address")
    shown = f"[{host}]" if ":" in host else host
    return [] if is_loopback(host) else [f"{shown}:{port}: {what}"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, or "" (every interface): it may be reachable
        return False


def _not_a_shutdown_cancellation(record: logging.LogRecord) -> bool:
    """Python 3.11's StreamReaderProtocol logs a CancelledError when mitmproxy closes keep-alive
    connections on shutdown (fixed in 3.12). It is noise, not a problem: drop exactly that record."""
    exc = record.exc_info[1] if record.exc_info else None
    return not (isinstance(exc, asyncio.CancelledError) and "connection_made" in record.getMessage())


def quiet_shutdown_noise() -> None:
    """Install that filter (idempotent): when a proxy starts, not when this module is imported."""
    logging.getLogger("asyncio").addFilter(_not_a_shutdown_cancellation)


class _Ready:
    """Tells us when mitmproxy's listeners are up."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def running(self) -> None:
        self.event.set()


class RecordingProxy:
    """mitmproxy, embedded, recording into a session (in-process or a worker process). Use inside a running
    event loop."""

    def __init__(self, config: ProxyConfig, session: RecordingSession) -> None:
        config.validate()
        self.config = config
        self.session = session
        targets = frozenset({parse_directline_url(config.directline)[1]}) if config.directline else frozenset()
        # The secret lives in the confdir, so keys given to the bot stay valid across restarts.
        self.keys = ServiceUrlKeys.in_confdir(self.confdir)
        self.proxy_credential = self.keys.proxy_credential()
        self.capture = Capture(session.submit, rewrite=config.rewrite, directline_targets=targets, keys=self.keys)
        self.master: Master | None = None
        self._task: asyncio.Task[None] | None = None
        self.listen: tuple[str, int] | None = None
        self.forward_listen: tuple[str, int] | None = None
        self.directline_listen: tuple[str, int] | None = None

    @property
    def confdir(self) -> Path:
        return Path(os.path.expanduser(self.config.confdir))

    @property
    def ca_cert(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    def _modes(self) -> list[str]:
        modes = []
        if self.config.bot_url:
            origin, _ = parse_bot_url(self.config.bot_url)
            host, port = parse_hostport(self.config.listen, "--listen")
            check_free(host, port, "listen address")
            modes.append(f"reverse:{origin}@{host}:{port}")
        if self.config.directline:
            origin, _ = parse_directline_url(self.config.directline)
            dhost, dport = parse_hostport(self.config.directline_listen, "--directline-listen")
            check_free(dhost, dport, "Direct Line listen address")
            modes.append(f"reverse:{origin}@{dhost}:{dport}")
        if self.config.forward_listen:
            fhost, fport = parse_hostport(self.config.forward_listen, "--forward-listen")
            check_free(fhost, fport, "forward listen address")
            modes.append(f"regular@{fhost}:{fport}")
        return modes

    async def start(self) -> None:
        quiet_shutdown_noise()
        modes = self._modes()
        session_id = self.session.start()
        try:
            await self._start_master(modes)
        except BaseException:
            self.session.close()
            raise
        # Known only now (a port 0 is chosen by the system): the session row says where it listened.
        store.update_session(
            self.session.db_path,
            session_id,
            {"listen": _address(self.listen), "forward_listen": _address(self.forward_listen)},
        )

    async def _start_master(self, modes: list[str]) -> None:
        opts = options.Options(mode=modes, confdir=self.config.confdir)
        master = Master(opts)
        ready = _Ready()
        master.addons.add(*addons.default_addons(), ForwardProxyAuth(self.proxy_credential), self.capture, ready)
        # Lazy: connect upstream only for a request, so a bot that is down fails that request (502,
        # recorded) rather than the channel's connection, and re-routed replies pick their own server.
        updates: dict[str, Any] = {"connection_strategy": "lazy"}
        if self.config.upstream_ca:
            updates["ssl_verify_upstream_trusted_ca"] = self.config.upstream_ca
        master.options.update(**updates)
        self.master = master
        self._task = asyncio.create_task(master.run())
        waiter = asyncio.create_task(ready.event.wait())
        await asyncio.wait([waiter, self._task], return_when=asyncio.FIRST_COMPLETED, timeout=30)
        if not ready.event.is_set():
            waiter.cancel()
            await self._halt()
            raise ListenError("mitmproxy did not start its listeners; run with --verbose to see why")
        self._read_addresses()

    def _read_addresses(self) -> None:
        assert self.master is not None
        for server in self.master.addons.get("proxyserver").servers:
            if not server.is_running:
                spec = server.mode.full_spec
                raise ListenError(f"could not listen for {spec}: {server.last_exception}")
            addr = server.listen_addrs[0][:2]
            if server.mode.type_name != "reverse":
                self.forward_listen = addr
            elif tuple(server.mode.address) in self.capture.directline_targets:
                self.directline_listen = addr
            else:
                self.listen = addr

    @property
    def endpoint(self) -> str:
        """Where a channel should post instead of the bot."""
        assert self.listen is not None and self.config.bot_url
        _, path = parse_bot_url(self.config.bot_url)
        return f"http://{_host(self.listen[0])}:{self.listen[1]}{path}"

    @property
    def directline_endpoint(self) -> str:
        """The Direct Line base a client should use instead of the service (directlinejs `domain`)."""
        assert self.directline_listen is not None
        return f"http://{_host(self.directline_listen[0])}:{self.directline_listen[1]}/v3/directline"

    @property
    def forward_url(self) -> str:
        """The forward listener as a proxy URL with its credential (user:password@host:port)."""
        assert self.forward_listen is not None
        return f"http://{self.proxy_credential}@{_host(self.forward_listen[0])}:{self.forward_listen[1]}"

    def proxy_env(self) -> dict[str, str]:
        """Environment lines for a bot whose outbound calls should go through the forward listener."""
        if self.forward_listen is None:
            return {}
        url = self.forward_url
        return {
            "HTTPS_PROXY": url,
            "HTTP_PROXY": url,
            "REQUESTS_CA_BUNDLE": str(self.ca_cert),
            "SSL_CERT_FILE": str(self.ca_cert),
        }

    async def stop(self) -> dict[str, Any]:
        """Stop listening, flush everything to disk, and return the session summary."""
        await self._halt()
        return self.session.close()

    async def _halt(self) -> None:
        if self.master is not None and self._task is not None:
            self.master.shutdown()
            try:
                await asyncio.wait_for(self._task, 10)
            except (TimeoutError, asyncio.CancelledError):
                log.warning("mitmproxy did not stop in time")
            self._task = None


def _address(addr: tuple[str, int] | None) -> str | None:
    """HOST:PORT where a listener is bound, as given to --listen."""
    if addr is None:
        return None
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
