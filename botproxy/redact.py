"""Secret filtering: everything stored or printed passes through a Redactor first.

Bot traffic is full of credentials: the channel's JWT on the inbound leg, the bot's AAD token on the
outbound leg, Direct Line secrets and tokens in headers, in `token` fields of token and conversation
responses, and in the `t=` query parameter of stream URLs. A Redactor removes them by position (header
names, JSON keys, query parameters, form fields) and by shape (anything that looks like a JWT), and it
learns every value it removed so that a copy of it anywhere else (echoed in a text, a URL inside a body)
is removed too. It never touches the traffic itself, only what we keep of it.
"""

from __future__ import annotations

import re
import threading
from typing import Any
from urllib.parse import parse_qsl, urlencode

REDACTED = "[REDACTED]"

SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-ms-token",
        "ocp-apim-subscription-key",
    }
)
SECRET_KEYS = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "secret",
        "client_secret",
        "password",
        "client_assertion",
        "assertion",
        "apikey",
        "api_key",
        "directlinesecret",
    }
)
SECRET_PARAMS = frozenset(
    {"t", "token", "access_token", "secret", "code", "sig", "client_secret", "assertion"}
)

# A JWT (three base64url parts, the first starting with `{"`) is a credential wherever it appears.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
# `?t=...`, `&token=...` inside any string (stream URLs in bodies, URLs in texts).
_QUERY_SECRET = re.compile(r"([?&](?:" + "|".join(sorted(SECRET_PARAMS)) + r")=)[^&#\s\"'<>]+", re.IGNORECASE)
# Learned secrets shorter than this are not scrubbed by value: too likely to hit innocent text.
_MIN_LEARNED = 8


class Redactor:
    """Removes secrets from headers, URLs and bodies; thread-safe; remembers what it removed."""

    def __init__(self) -> None:
        self._learned: set[str] = set()
        self._learned_rx: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    # -- learning ---------------------------------------------------------------------------

    def learn(self, value: str) -> None:
        """Remember a secret value so later copies of it are removed wherever they appear."""
        value = value.strip()
        if value.lower().startswith(("bearer ", "botconnector ", "basic ")):
            value = value.split(None, 1)[1].strip() if " " in value else ""
        if len(value) < _MIN_LEARNED or value in self._learned:
            return
        with self._lock:
            self._learned.add(value)
            alternatives = sorted(self._learned, key=len, reverse=True)
            self._learned_rx = re.compile("|".join(re.escape(v) for v in alternatives))

    # -- strings ----------------------------------------------------------------------------

    def text(self, value: str) -> str:
        """Scrub a free-form string: learned values, JWTs and secret query parameters."""
        if self._learned_rx is not None:
            value = self._learned_rx.sub(REDACTED, value)
        if "eyJ" in value:
            value = _JWT.sub(REDACTED, value)
        if "=" in value:
            value = _QUERY_SECRET.sub(lambda m: m.group(1) + REDACTED, value)
        return value

    def url(self, url: str) -> str:
        return self.text(self._learn_query(url))

    def _learn_query(self, url: str) -> str:
        if "?" in url:
            for key, value in parse_qsl(url.split("?", 1)[1], keep_blank_values=True):
                if key.lower() in SECRET_PARAMS and value:
                    self.learn(value)
        return url

    # -- headers ----------------------------------------------------------------------------

    def headers(self, items: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Redact header values by name; the auth scheme word is kept because it is useful."""
        out = []
        for name, value in items:
            if name.lower() in SECRET_HEADERS:
                self.learn(value)
                scheme = value.split(None, 1)[0] if " " in value.strip() else ""
                out.append((name, f"{scheme} {REDACTED}".strip()))
            else:
                out.append((name, self.text(value)))
        return out

    # -- bodies -----------------------------------------------------------------------------

    def learn_json(self, value: Any) -> None:
        """Learn secrets held by secret-named keys (before redacting, so copies elsewhere go too)."""
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, str) and key.lower() in SECRET_KEYS:
                    self.learn(item)
                else:
                    self.learn_json(item)
        elif isinstance(value, list):
            for item in value:
                self.learn_json(item)
        elif isinstance(value, str) and "?" in value and "=" in value:
            self._learn_query(value)

    def json(self, value: Any) -> Any:
        """A redacted copy of a parsed JSON value."""
        self.learn_json(value)
        return self._json(value)

    def _json(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                key: (REDACTED if key.lower() in SECRET_KEYS and isinstance(item, str) else self._json(item))
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [self._json(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def form(self, body: str) -> str:
        """Redact an application/x-www-form-urlencoded body (AAD token requests carry client_secret)."""
        pairs = parse_qsl(body, keep_blank_values=True)
        for key, value in pairs:
            if key.lower() in SECRET_KEYS | SECRET_PARAMS and value:
                self.learn(value)
        return urlencode(
            [(k, REDACTED if k.lower() in SECRET_KEYS | SECRET_PARAMS else v) for k, v in pairs], safe="[]"
        )

    def raw(self, content: bytes) -> bytes:
        """Scrub a body that is not JSON; binary stays binary except for learned/JWT byte runs."""
        try:
            return self.text(content.decode("utf-8")).encode("utf-8")
        except UnicodeDecodeError:
            return content if self._learned_rx is None else self._raw_bytes(content)

    def _raw_bytes(self, content: bytes) -> bytes:
        for secret in list(self._learned):
            content = content.replace(secret.encode(), REDACTED.encode())
        return content
