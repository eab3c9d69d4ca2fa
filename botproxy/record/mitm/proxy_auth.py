"""Proxy authentication for the forward listener: mitmproxy's own `proxyauth`, on that listener only.

mitmproxy's `proxyauth` option guards every listener of a process, and on a reverse listener it asks
for `Authorization: Basic`, which would turn away every channel (they send the bot's own bearer
token). So botproxy runs mitmproxy's addon with the option left unset and this subclass, which checks
the forward (regular-mode) listener only: a CONNECT or plain proxy request without the credential
gets mitmproxy's 407, and the `Proxy-Authorization` header of an accepted one is removed before
anything is forwarded or recorded.
"""

from __future__ import annotations

from typing import Any

from mitmproxy import http
from mitmproxy.addons.proxyauth import ProxyAuth, SingleUser, is_http_proxy


class ForwardProxyAuth(ProxyAuth):
    def __init__(self, credential: str) -> None:
        """`credential` is `user:password` (see `ServiceUrlKeys.proxy_credential`)."""
        super().__init__()
        self.validator = SingleUser(credential)

    def load(self, loader: Any) -> None:
        pass  # the `proxyauth` option belongs to mitmproxy's own instance of the addon

    def configure(self, updated: Any) -> None:
        pass  # our validator is fixed; mitmproxy's option does not change it

    def requestheaders(self, f: http.HTTPFlow) -> None:
        if is_http_proxy(f):  # the forward listener; reverse listeners answer channels without a password
            super().requestheaders(f)
