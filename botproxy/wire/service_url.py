"""The serviceUrl rewrite: the keys that stand for an original serviceUrl, and the exact byte edits.

Inbound, only the top-level ``serviceUrl`` member of a JSON activity changes: its string value becomes
``http://<listen>/_botproxy/svc/<key>/``. Every other byte of the body stays as the channel sent it.

Outbound, every occurrence of a rewritten base in what the bot sends (the Connector calls it makes
through us, and the body it answers the channel with) is given back as the original text, so the
connector and the channel see what they would have seen without botproxy. A bot may use the URL it
was given as it is, trim its slash, or build longer URLs on it; each form maps to what the same bot
would have built from the original (``<ours>v3/...`` and ``<ours-without-slash>/v3/...`` both become
``<original-without-slash>/v3/...``).

Keys are ``<base64url(serviceUrl)>.<base64url(HMAC-SHA256(secret, serviceUrl)[:16])>``; the secret is
a file in the confdir (owner-only), so keys stay valid across restarts with the same confdir and
nobody else can mint one: the reverse listener relays only to where botproxy itself sent the bot.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

from ..errors import UsageError

log = logging.getLogger(__name__)

SVC_PREFIX = "/_botproxy/svc/"
SECRET_FILE = "botproxy-secret"
PROXY_USER = "botproxy"
# Inbound bodies larger than this are forwarded untouched (parsing them would hold up the event loop);
# channels limit activities to 256K characters, so no real activity comes near it.
MAX_REWRITE_BYTES = 4 * 1024 * 1024

# A key: the original's base64url, and its signature after a "." (older botproxies minted unsigned keys).
_KEY = r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)?"
_KEY_IN_URL = re.compile(re.escape(SVC_PREFIX) + "(" + _KEY + ")/?")

# A JSON string, or a bracket: enough to tell how deep a position is.
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _rewritten(slash: bytes) -> re.Pattern[bytes]:
    """A rewritten base as a bot writes it, with `slash` for "/": any host, our prefix, a key (signed or an
    older unsigned one), and its slash if it kept it."""
    prefix = SVC_PREFIX.encode().replace(b"/", slash)
    return re.compile(
        rb"https?:" + re.escape(slash * 2) + rb"[^\s\"'<>/\\]+" + re.escape(prefix)
        + rb"(" + _KEY.encode() + rb")((?:" + re.escape(slash) + rb")?)"
    )


_REWRITTEN = _rewritten(b"/")
# The same as JSON writers that escape "/" write it ("http:\/\/host\/_botproxy\/svc\/KEY\/", as PHP's
# json_encode does by default): restored in the same style.
_ESCAPED_PREFIX = SVC_PREFIX.replace("/", "\\/").encode()
_REWRITTEN_ESCAPED = _rewritten(b"\\/")
# Bytes that continue a URL path segment: after "<ours>/" they mean the bot built a longer URL on it.
_PATH_CHAR = re.compile(rb"[A-Za-z0-9_~%-]")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def decode_service_url(key: str) -> str:
    """The serviceUrl a key stands for, without checking its signature (for imports of captures, which
    may come from another machine or an older botproxy whose keys were unsigned). Raises ValueError."""
    try:
        return _unb64(key.partition(".")[0]).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"not a botproxy serviceUrl key: {key!r}") from exc


def unsigned_original(key: str) -> str | None:
    """The http(s) serviceUrl a key stands for, unverified (keys of any botproxy: a capture does not come
    with the secret that signed them); None when it stands for none."""
    try:
        original = decode_service_url(key)
    except ValueError:
        return None
    return original if original.startswith(("http://", "https://")) else None


def split_svc_path(path: str) -> tuple[str, str]:
    """(key, the rest after it) of a path under SVC_PREFIX."""
    key, _, rest = path[len(SVC_PREFIX) :].partition("/")
    return key, rest


def key_in(url: str) -> str | None:
    """The key of botproxy's rewritten serviceUrl anywhere in `url` (None: there is none)."""
    found = _KEY_IN_URL.search(url)
    return found.group(1) if found else None


class ServiceUrlKeys:
    """Mints and verifies the keys of `/_botproxy/svc/<key>/` with one secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        # A bot talks to few serviceUrls: remember their keys rather than compute an HMAC per request.
        self._minted = functools.lru_cache(maxsize=1024)(self._mint)
        self._verified = functools.lru_cache(maxsize=1024)(self._verify)

    @classmethod
    def ephemeral(cls) -> ServiceUrlKeys:
        """Keys valid for this process only (no confdir to keep a secret in)."""
        return cls(secrets.token_bytes(32))

    @classmethod
    def in_confdir(cls, confdir: str | Path) -> ServiceUrlKeys:
        """Keys with the secret kept in `confdir` (created on first use, readable by its owner only)."""
        return cls(_load_secret(Path(os.path.expanduser(str(confdir)))))

    def _mac(self, label: bytes, value: str) -> str:
        return _b64(hmac.new(self._secret, label + value.encode(), hashlib.sha256).digest()[:16])

    def mint(self, service_url: str) -> str:
        return self._minted(service_url)

    def verify(self, key: str) -> str | None:
        """The original serviceUrl of a key this secret minted, else None (forged, tampered, unsigned)."""
        return self._verified(key)

    def _mint(self, service_url: str) -> str:
        return f"{_b64(service_url.encode())}.{self._mac(b'svc:', service_url)}"

    def _verify(self, key: str) -> str | None:
        encoded, dot, mac = key.partition(".")
        if not dot:
            return None
        try:
            url = _unb64(encoded).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        return url if hmac.compare_digest(mac, self._mac(b"svc:", url)) else None

    def proxy_credential(self) -> str:
        """`user:password` for the forward listener: random per confdir, stable across restarts, so a bot
        started with the printed HTTPS_PROXY keeps working when the recorder restarts."""
        return f"{PROXY_USER}:{self._mac(b'proxyauth', '')}"


def _load_secret(confdir: Path) -> bytes:
    path = confdir / SECRET_FILE
    if confdir.exists() and not confdir.is_dir():
        raise UsageError(f"--confdir {confdir} is a file, not a folder: give a folder (mitmproxy's, e.g. ~/.mitmproxy)")
    try:
        confdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            _create_secret(path)
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)  # it signs relay keys: nobody else may read it
        secret = path.read_bytes()
    except OSError as exc:
        raise UsageError(
            f"--confdir {confdir}: cannot keep botproxy's key file there ({exc.strerror or exc}); "
            "give a folder you can write"
        ) from exc
    if len(secret) < 32:
        raise UsageError(f"{path} is not a botproxy key file (too short): delete it and botproxy makes a new one")
    return secret


def _create_secret(path: Path) -> None:
    """Write a new secret atomically: two recorders starting at once end up with the same one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another recorder made it first: use theirs
    finally:
        tmp.unlink(missing_ok=True)


def svc_url(authority: str, key: str) -> str:
    return f"http://{authority}{SVC_PREFIX}{key}/"


def is_json_type(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def rewrite_inbound(content: bytes, make_ours: Callable[[str], str]) -> bytes | None:
    """The body with only the activity's top-level serviceUrl value replaced by `make_ours(original)`,
    or None when it is not a JSON object with exactly one such http(s) member."""

    def ours(original: object) -> str | None:
        if isinstance(original, str) and original.startswith(("http://", "https://")):
            return make_ours(original)
        return None

    return replace_top_level_string(content, "serviceUrl", ours)


def replace_top_level_string(content: bytes, name: str, replace: Callable[[object], str | None]) -> bytes | None:
    """`content`, a JSON object, with the string value of its top-level member `name` replaced by
    `replace(value)`, every other byte kept; None when it is no such object, or `replace` says None."""
    if len(content) > MAX_REWRITE_BYTES or f'"{name}"'.encode() not in content:
        return None
    try:
        body = json.loads(content)
    except ValueError:  # not JSON (or not UTF-8): the receiver's to reject, not ours to edit
        return None
    if not isinstance(body, dict) or name not in body:
        return None
    new = replace(body[name])
    if new is None:
        return None
    found = list(_member(name).finditer(content))
    # One match is the top-level member unless keys are \u-escaped (a top-level "service\u0055rl" beside a
    # nested "serviceUrl"); only then is the depth worth computing.
    top = found if len(found) == 1 and b"\\u" not in content else [m for m in found if _depth(content, m.start()) == 1]
    if len(top) != 1 or json.loads(b'"' + top[0].group(1) + b'"') != body[name]:
        return None  # duplicate or escaped keys: leave such a body alone
    match = top[0]
    return content[: match.start(1)] + _json_str(new) + content[match.end(1) :]


@functools.lru_cache(maxsize=16)
def _member(name: str) -> re.Pattern[bytes]:
    """The member `name` of a JSON object, with its string value (escapes allowed)."""
    return re.compile(b'"' + re.escape(name.encode()) + rb'"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _depth(content: bytes, pos: int) -> int:
    """How many objects/arrays enclose `pos` in a JSON text (`pos` outside any string)."""
    depth = 0
    for token in _JSON_TOKEN.finditer(content, 0, pos):
        first = token.group()[:1]
        if first in (b"{", b"["):
            depth += 1
        elif first in (b"}", b"]"):
            depth -= 1
    return depth


def restore(content: bytes, original_of: Callable[[str], str | None]) -> bytes:
    """`content` with every rewritten base whose key `original_of` knows given back as the original."""
    if SVC_PREFIX.encode() in content:
        content = _REWRITTEN.sub(_restorer(content, original_of, escaped=False), content)
    if _ESCAPED_PREFIX in content:
        content = _REWRITTEN_ESCAPED.sub(_restorer(content, original_of, escaped=True), content)
    return content


def has_rewritten(content: bytes) -> bool:
    """Whether `content` may hold a rewritten base (in either slash style): the cheap test first."""
    return SVC_PREFIX.encode() in content or _ESCAPED_PREFIX in content


def _restorer(
    content: bytes, original_of: Callable[[str], str | None], escaped: bool
) -> Callable[[re.Match[bytes]], bytes]:
    def text(url: str) -> bytes:
        written = _json_str(url)
        return written.replace(b"/", b"\\/") if escaped else written

    def original(match: re.Match[bytes]) -> bytes:
        url = original_of(match.group(1).decode())
        if url is None:
            return match.group(0)
        trimmed = url.rstrip("/")
        if not match.group(2):  # the bot trimmed our slash: it trims the original's too
            return text(trimmed)
        if _PATH_CHAR.match(content, match.end()):  # a longer URL: "<base>/" + path, as msrest joins them
            return text(trimmed + "/")
        return text(url)  # the base as given: exactly the original text

    return original


def _json_str(value: str) -> bytes:
    """`value` as it sits inside a JSON string (for a URL: its own text)."""
    return json.dumps(value, ensure_ascii=False)[1:-1].encode()
