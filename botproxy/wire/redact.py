"""Secret filtering: everything stored or printed passes through a Redactor first.

Bot traffic is full of credentials: the channel's JWT on the inbound leg, the bot's AAD token on the
outbound leg, Direct Line secrets and tokens in headers, in `token` fields of token and conversation
responses, and in the `t=` query parameter of stream URLs; API keys and signatures in headers and query
strings; passwords in form bodies, whatever their content type.

It works in two steps, so that no representation of an exchange is scrubbed before all of its secrets
are known: `learn_message` collects every secret one HTTP message holds (its URL, its headers, its body
parsed as JSON, as a form, as text or as raw bytes), then the scrubbing methods (`url`, `headers`, `json`,
`form`, `text`, `raw`) remove them from each thing we keep or print. A secret is found by position (a
secret name in a header, a JSON key, a query or form parameter, `name=value` or `"name": "value"` in
text, the password of `user:password@` in a URL) and by shape (anything that looks like a JWT). Every
value found by position is remembered, so a copy of it anywhere else, in this exchange or a later one (an
echo in a message, a URL inside a body, a non-UTF-8 body, an error message), is removed too. Log lines
and tracebacks go through `RedactingFormatter`. It never touches the traffic itself, only what we keep.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import re
import sys
import threading
import traceback
from collections.abc import Iterable, Sequence
from typing import Any, TextIO
from urllib.parse import parse_qsl, quote, quote_plus, unquote_plus, urlencode

REDACTED = "[REDACTED]"

# A name (header, JSON key, query or form parameter) is secret when, compared in lower case without
# separators (so accessToken, access_token and Access-Token are one name), it ends with one of these
# words, or their plural: Authorization, Proxy-Authorization, Cookie, Set-Cookie, X-MS-Token,
# X-Api-Key, Ocp-Apim-Subscription-Key, X-Functions-Key, X-Amz-Security-Token, clientSecret,
# directLineSecret, refresh_token, client_assertion, X-Amz-Signature, ...
SECRET_WORDS = (
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "apikey",
    "subscriptionkey",
    "functionskey",
    "accesskey",
    "accountkey",
    "privatekey",
    "sessionkey",
    "signature",
    "assertion",
    "authorization",
    "cookie",
    "credential",
)
# Short parameter names that are credentials in a query string or a form body (and only there: as a JSON
# key `code` is an ErrorResponse's error code): Direct Line's stream `t`, OAuth and Azure Functions `code`,
# API `key`, Azure SAS `sig`.
SECRET_PARAMS = frozenset({"t", "code", "key", "sig"})

# Values from a secret place are remembered from this length on; shorter ones (`1`, `abc`) would match
# everywhere and protect nothing. The secret field itself is replaced whatever its length.
MIN_LEARNED = 4
# Remembered values shorter than this are scrubbed only as a whole word (not inside a longer run of
# letters and digits), so that a 4-letter password does not eat every word that contains it. Longer
# values are scrubbed wherever they appear, glued to anything.
MIN_ANYWHERE = 8
# Cookies carry preferences as well as sessions, so their values are remembered only when long enough to
# be a session id (a cookie named like a secret counts as a secret place).
MIN_COOKIE = 8
# Values that say "no secret here"; remembering them would scrub ordinary words.
_NOT_SECRETS = frozenset({"null", "none", "true", "false", "undefined", "bearer", "basic", "redacted"})

_SEPARATORS = re.compile(r"[-_.\s]")
# A JWT (three base64url parts, the first starting with `{"`) is a credential wherever it appears.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_NAME = r"[A-Za-z][A-Za-z0-9_.-]{0,63}"
# Authorization schemes: the word is kept (it says what kind of credential was there), the rest is secret.
_SCHEMES = "Bearer|Basic|BotConnector|Digest|Token|Negotiate|SharedAccessSignature|AWS4-HMAC-SHA256"
_SCHEME = re.compile(rf"^({_SCHEMES})\s+(\S.*)$", re.IGNORECASE | re.DOTALL)
# `name=value` after the start, a separator, `?` or `&`: query strings, form bodies (whatever their content
# type), `password=x` in a message or a log line.
_ASSIGNED = re.compile(rf"(^|[^A-Za-z0-9_.%-])({_NAME})=([^&#\s\"'<>;,]+)")
# `"name": "value"` and `'name': 'value'`: JSON that did not parse, dict reprs in error messages.
_QUOTED = re.compile(rf"([\"'])({_NAME})\1(\s*:\s*)([\"'])((?:(?!\4)[^\\]|\\.)*)\4")
# `Name: value` (a header line in a log, `password: x` in a message); the auth scheme word is kept.
_COLON = re.compile(rf"(^|[^A-Za-z0-9_.\"'-])({_NAME}):[ \t]+((?:{_SCHEMES})[ \t]+)?([^\s\"',;]+)", re.IGNORECASE)
# The password of `scheme://user:password@host`. The scheme's length is bounded (and it starts a word): an
# unbounded one is tried from every letter of a long word and makes the search quadratic.
_USERINFO = re.compile(r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]{0,31}://[^/\s:@?#]*:)([^/\s@?#]+)@")
# A quick test for a secret word, before the name patterns run on a string (most strings have none). Plain
# substring tests: a case-insensitive alternation tried at every position costs ~1 s per MB of text.
_ANY_WORDS = tuple(sorted({w[:5] for w in SECRET_WORDS} | {"key", "pwd", "auth", "cred", "sign", "sig"}))


def _has_secret_word(value: str) -> bool:
    lowered = value.lower()
    return any(word in lowered for word in _ANY_WORDS)


def normal_name(name: str) -> str:
    """A name as it is compared: lower case, without `-`, `_`, `.` or spaces."""
    return _SEPARATORS.sub("", name).lower()


@functools.lru_cache(maxsize=4096)  # the same few dozen names come by again and again
def is_secret_name(name: str, *, param: bool = False) -> bool:
    """True for a header, JSON key (or, with `param`, a query or form parameter) that holds a secret."""
    n = normal_name(name)
    if param and n in SECRET_PARAMS:
        return True
    return n.endswith(SECRET_WORDS) or (n.endswith("s") and n[:-1].endswith(SECRET_WORDS))


class Redactor:
    """Removes secrets from headers, URLs, bodies and text; thread-safe; remembers what it removed."""

    def __init__(self) -> None:
        self._learned = Remembered()
        self._lock = threading.Lock()
        self.generation = 0  # grows with each value remembered: a caller can tell whether to scrub again

    # -- learning ---------------------------------------------------------------------------

    def learn(self, value: str, minimum: int = MIN_LEARNED) -> None:
        """Remember a secret value (and its encoded forms) so copies of it are removed wherever they appear."""
        value = value.strip()
        scheme = _SCHEME.match(value)
        if scheme:
            value = scheme.group(2).strip()  # `Bearer x`, `Basic x`, `BotConnector x`: the credential is x
            if scheme.group(1).lower() == "basic":
                self._learn_basic(value)
        if len(value) < minimum or value.lower() in _NOT_SECRETS or REDACTED in value:
            return
        forms = {value, quote(value, safe=""), quote_plus(value, safe=""), json.dumps(value)[1:-1]}
        with self._lock:
            if self._learned.add(forms):
                self.generation += 1

    def _learn_basic(self, credential: str) -> None:
        try:
            decoded = base64.b64decode(credential, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return
        self.learn(decoded.partition(":")[2])  # the password of user:password

    def learn_header(self, name: str, value: str) -> None:
        if not is_secret_name(name):
            self._learn_text(value)
        elif normal_name(name) in ("cookie", "setcookie"):
            pairs = value.split(";")[:1] if normal_name(name) == "setcookie" else value.split(";")
            for pair in pairs:
                cookie, _, cookie_value = pair.strip().partition("=")
                self.learn(cookie_value, MIN_LEARNED if is_secret_name(cookie) else MIN_COOKIE)
        else:
            self.learn(value)

    def learn_message(
        self, url: str | None, headers: Iterable[tuple[str, str]], content: bytes | None, parsed: Any = None
    ) -> None:
        """Learn every secret of one HTTP message before any of it is scrubbed: its URL, its headers and its
        body (`parsed`: the body as JSON when it is JSON, else None and the bytes are read as a form, text
        and raw bytes)."""
        if url:
            self._learn_text(url)
        for name, value in headers:
            self.learn_header(name, value)
        if parsed is not None:
            self.learn_json(parsed)
        elif content:
            self._learn_text(_as_text(content))

    def learn_json(self, value: Any) -> None:
        """Learn secrets held by secret-named keys and the secret-shaped strings of a parsed JSON value."""
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and is_secret_name(key):
                    self._learn_secret_value(item)
                else:
                    self.learn_json(item)
        elif isinstance(value, list):
            for item in value:
                self.learn_json(item)
        elif isinstance(value, str):
            self._learn_text(value)

    def _learn_secret_value(self, value: Any) -> None:
        if isinstance(value, str):
            self.learn(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            self.learn(str(value))
        elif isinstance(value, list):
            for item in value:
                self._learn_secret_value(item)
        else:
            self.learn_json(value)

    def _learn_text(self, value: str) -> None:
        """Learn what the patterns of `text` would remove by position (the values, not the names)."""
        self._positional(value, learn=True)

    # -- strings ----------------------------------------------------------------------------

    def text(self, value: str) -> str:
        """Scrub a free-form string: remembered values, secrets by position, JWTs."""
        for pattern in self._patterns(latin=False):
            value = pattern.sub(REDACTED, value)
        value = self._positional(value, learn=False)
        if "eyJ" in value:
            value = _JWT.sub(REDACTED, value)
        return value

    def url(self, url: str) -> str:
        self._learn_text(url)
        return self.text(url)

    def _positional(self, value: str, *, learn: bool) -> str:
        """Secrets found by where they stand in a string: replaced (and learned, with `learn`)."""
        if "=" in value:
            value = _ASSIGNED.sub(lambda m: self._assigned(m, learn), value)
        if ":" in value:  # cheap tests first: most strings (ids, timestamps, URLs) have none of these
            if "@" in value and "://" in value:
                value = _USERINFO.sub(lambda m: m.group(1) + self._found(m.group(2), learn) + "@", value)
            quoted = '":' in value or "':" in value or '" :' in value
            colon = ": " in value or ":\t" in value
            if (quoted or colon) and _has_secret_word(value):
                if quoted:
                    value = _QUOTED.sub(lambda m: self._quoted(m, learn), value)
                if colon:
                    value = _COLON.sub(lambda m: self._colon(m, learn), value)
        return value

    def _found(self, value: str, learn: bool) -> str:
        if learn:
            self.learn(value)
            decoded = unquote_plus(value)
            if decoded != value:
                self.learn(decoded)
        return REDACTED

    def _assigned(self, m: re.Match[str], learn: bool) -> str:
        lead, name, value = m.groups()
        in_query = lead in ("", "?", "&")
        if value == REDACTED or not is_secret_name(name, param=in_query):
            return m.group(0)
        return f"{lead}{name}={self._found(value, learn)}"

    def _quoted(self, m: re.Match[str], learn: bool) -> str:
        quote_mark, name, colon, value_quote, value = m.groups()
        if not value or value == REDACTED or not is_secret_name(name):
            return m.group(0)
        scheme = _SCHEME.match(value)
        kept = scheme.group(1) + " " if scheme else ""
        self._found(value, learn)
        return f"{quote_mark}{name}{quote_mark}{colon}{value_quote}{kept}{REDACTED}{value_quote}"

    def _colon(self, m: re.Match[str], learn: bool) -> str:
        lead, name, scheme, value = m.groups()
        if value == REDACTED or not is_secret_name(name):
            return m.group(0)
        return f"{lead}{name}: {scheme or ''}{self._found(value, learn)}"

    # -- headers ----------------------------------------------------------------------------

    def headers(self, items: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """Redact header values by name (the auth scheme word is kept: it is useful); scrub the others."""
        out = []
        for name, value in items:
            if is_secret_name(name):
                self.learn_header(name, value)
                scheme = _SCHEME.match(value.strip())
                kept = scheme.group(1) if scheme else ""
                out.append((name, f"{kept} {REDACTED}".strip()))
            else:
                out.append((name, self.text(value)))
        return out

    # -- bodies -----------------------------------------------------------------------------

    def json(self, value: Any) -> Any:
        """A redacted copy of a parsed JSON value."""
        self.learn_json(value)
        return self.scrub_json(value)

    def scrub_json(self, value: Any) -> Any:
        """A copy of a parsed JSON value without the secrets it holds or that were learned before."""
        return self._json(value)

    def _json(self, value: Any, secret: bool = False) -> Any:
        if isinstance(value, dict):
            return {key: self._json(item, isinstance(key, str) and is_secret_name(key)) for key, item in value.items()}
        if isinstance(value, list):
            return [self._json(item, secret) for item in value]
        if secret and (isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool))):
            return REDACTED
        if isinstance(value, str):
            return self.text(value)
        return value

    def form(self, body: str) -> str:
        """Redact an application/x-www-form-urlencoded body (AAD token requests carry client_secret)."""
        pairs = parse_qsl(body, keep_blank_values=True)
        for key, value in pairs:
            if is_secret_name(key, param=True) and value:
                self.learn(value)
        return urlencode(
            [(k, REDACTED if is_secret_name(k, param=True) else self.text(v)) for k, v in pairs], safe="[]"
        )

    def raw(self, content: bytes) -> bytes:
        """Scrub a body that is not JSON. Text is scrubbed as text; bytes that are not UTF-8 are read as
        latin-1 (one character per byte, so every byte comes back as it was) and scrubbed the same way, for
        remembered values (as their UTF-8 bytes), secrets by position and JWTs."""
        try:
            return self.text(content.decode("utf-8")).encode("utf-8")
        except UnicodeDecodeError:
            pass
        latin = content.decode("latin-1")
        for pattern in self._patterns(latin=True):
            latin = pattern.sub(REDACTED, latin)
        latin = self._positional(latin, learn=False)
        return _JWT.sub(REDACTED, latin).encode("latin-1")

    def _patterns(self, *, latin: bool) -> tuple[re.Pattern[str], ...]:
        learned = self._learned
        if learned.fresh:  # compiled on first use, not per value learned: an exchange teaches several
            with self._lock:
                learned.flush()
        return learned.latin_patterns() if latin else learned.patterns


def _as_text(content: bytes) -> str:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return content.decode("latin-1")


class Remembered:
    """The remembered values as a few compiled patterns. New values go into a small pattern, and patterns
    merge as they grow (like a binary counter), so each value is compiled O(log n) times over a session and
    a scrub runs O(log n) patterns; each is a trie of its values, so its cost hardly grows with their number
    (an alternation of n literals is tried literal by literal at every position)."""

    def __init__(self) -> None:
        self.values: set[str] = set()
        self.fresh: set[str] = set()  # remembered, not compiled yet
        self.patterns: tuple[re.Pattern[str], ...] = ()
        self._levels: list[_Level | None] = []

    def add(self, forms: set[str]) -> bool:
        """Remember these values; False when all were known."""
        new = forms - self.values
        self.values |= new
        self.fresh |= new
        return bool(new)

    def flush(self) -> None:
        """Compile the fresh values into the smallest pattern, merging full levels upwards."""
        if not self.fresh:
            return
        chunk, self.fresh = self.fresh, set()
        for i, level in enumerate(self._levels):
            if level is None:
                self._levels[i] = _Level(chunk)
                break
            chunk |= level.values
            self._levels[i] = None
        else:
            self._levels.append(_Level(chunk))
        self.patterns = tuple(level.text for level in self._levels if level is not None)

    def latin_patterns(self) -> tuple[re.Pattern[str], ...]:
        return tuple(level.latin() for level in self._levels if level is not None)


class _Level:
    def __init__(self, values: set[str]) -> None:
        self.values = values
        self.text = _alternatives(values)
        self._latin: re.Pattern[str] | None = None

    def latin(self) -> re.Pattern[str]:
        """The same values as their UTF-8 bytes read as latin-1 (how `raw` reads a body that is not UTF-8)."""
        if self._latin is None:
            latin = {v.encode("utf-8").decode("latin-1") for v in self.values}
            self._latin = self.text if latin == self.values else _alternatives(latin)
        return self._latin


def _alternatives(values: Iterable[str]) -> re.Pattern[str]:
    """One pattern for values: long ones anywhere, short ones as whole words."""
    long = [v for v in values if len(v) >= MIN_ANYWHERE]
    short = [v for v in values if len(v) < MIN_ANYWHERE]
    parts = [_trie(long)] if long else []
    if short:
        parts.append(f"(?<![A-Za-z0-9]){_trie(short)}(?![A-Za-z0-9])")
    return re.compile("|".join(parts))


def _trie(values: Iterable[str]) -> str:
    """A regex matching any of the values, the longest first, built as a trie: `(?:ab(?:c|d)|x)`."""
    root: dict[str, Any] = {}
    for value in values:
        node = root
        for char in value:
            node = node.setdefault(char, {})
        node[""] = {}  # a value ends here
    return _trie_node(root)


def _trie_node(node: dict[str, Any]) -> str:
    branches = []
    for char, child in node.items():
        if char == "":
            continue
        run = char
        while len(child) == 1 and "" not in child:  # a chain of single children is one literal
            (char, child), = child.items()
            run += char
        branches.append(re.escape(run) + _trie_node(child))
    if not branches:
        return ""
    group = "(?:" + "|".join(branches) + ")"
    return group + "?" if "" in node else group  # greedy: the longer value is tried first


def scrub(value: str) -> str:
    """A string that did not come through a session's traffic (a URL the user typed, an error message),
    without the secrets its names and shapes show: `?code=` of an Azure Functions endpoint, a password in
    `user:password@`, a JWT."""
    return Redactor().text(value)


# -- logging -----------------------------------------------------------------------------------

LOG_FORMAT = "botproxy: %(levelname)s %(name)s: %(message)s"


class RedactingFormatter(logging.Formatter):
    """Formats a record, traceback included, and scrubs the whole text: an exception message or a URL in
    a log line carries the same secrets as the traffic."""

    def __init__(self, redactor: Redactor, fmt: str = LOG_FORMAT) -> None:
        super().__init__(fmt)
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.text(super().format(record))


_record_redactor: Redactor | None = None
_base_record_factory = logging.getLogRecordFactory()


def scrub_own_log_records(redactor: Redactor) -> None:
    """Scrub botproxy's own log records where they are made (message, arguments, traceback), so they are
    safe in whatever handlers the host process has (mitmdump's, an application's, pytest's). A later call
    switches to the later redactor (the latest session's, which knows its secrets)."""
    global _record_redactor
    _record_redactor = redactor
    if logging.getLogRecordFactory() is not _scrubbed_record:
        logging.setLogRecordFactory(_scrubbed_record)


def _scrubbed_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_record_factory(*args, **kwargs)
    redactor = _record_redactor
    if redactor is None or not record.name.startswith("botproxy"):
        return record
    try:
        record.msg, record.args = redactor.text(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redactor.text("".join(traceback.format_exception(*record.exc_info))).rstrip("\n")
        if record.stack_info:
            record.stack_info = redactor.text(record.stack_info)
    except Exception:  # logging must never raise; the handler's formatter is the second line of defence
        pass
    return record


def redacted_logging(level: int, redactor: Redactor | None = None, stream: TextIO | None = None) -> None:
    """The one place a botproxy process configures logging: one handler on stderr whose formatter
    scrubs every line and traceback (mitmproxy's too), botproxy's own records scrubbed where they are
    made, and the same for uncaught exceptions (in any thread)."""
    redactor = redactor or Redactor()
    scrub_own_log_records(redactor)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(RedactingFormatter(redactor))
    logging.basicConfig(level=level, handlers=[handler])

    def print_exception(exc_type: Any, exc: Any, tb: Any) -> None:
        (stream or sys.stderr).write(redactor.text("".join(traceback.format_exception(exc_type, exc, tb))))

    sys.excepthook = print_exception
    threading.excepthook = lambda args: print_exception(args.exc_type, args.exc_value, args.exc_traceback)
