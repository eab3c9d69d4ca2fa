"""What the engine remembers while it reads a session: ids, counters and small sets, never bodies; the
families' own per-conversation state (`DirectLineState`, `Streams`) too, so nothing here imports a family.

Memory is what bounds a check of a long session (a million activities must fit in a few hundred MB), so
the biggest structure, the book of activity ids, packs the owning conversation and the id's flags into
one int per id.
"""

from __future__ import annotations

import functools
import re
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from ..wire.service_url import decode_service_url, key_in

# Flags of an activity id within its conversation.
INBOUND = 1  # the channel sent an activity with this id to the bot
CLOSED = 2  # ... and the bot's HTTP answer to it has completed (its turn is over)
SENT = 4  # the connector returned this id to the bot for an activity it sent
DELETED = 8  # the bot deleted it (DELETE succeeded)
REFERENCED = 16  # an inbound activity's replyToId named it: the channel vouches it exists (e.g. a card
#                  the user clicked, possibly sent before the recording started)
_FLAG_BITS = 5
_FLAG_MASK = (1 << _FLAG_BITS) - 1

# Unanswered "reply before parent" candidates kept per conversation (oldest dropped first).
MAX_DANGLING = 256
MAX_RECENT = 32  # recent non-user deliveries per path, for the id-sequence variant of BP-O03
MAX_MARKS = 8  # recent watermark deliveries per conversation, for BP-O10


class Conversation:
    """Everything the checks know about one conversation."""

    __slots__ = (
        "id",
        "index",
        "known",
        "bot_id",
        "users",
        "service_url",
        "channel_id",
        "locale",
        "tenant",
        "open_turns",
        "in_flight",
        "flight_turns",
        "pending_edits",
        "dangling",
        "ended_seq",
        "typing_at",
        "last_timestamp",
        "once",
        "dl",
        "streams",
    )

    def __init__(self, conversation_id: str, index: int) -> None:
        self.id = conversation_id
        self.index = index
        self.known = False  # seen inbound or created through POST /v3/conversations
        self.bot_id: str | None = None  # latest inbound recipient.id
        self.users: set[str] = set()  # inbound from.id, membersAdded, created members
        self.service_url: str | None = None  # latest inbound serviceUrl, normalised
        self.channel_id: str | None = None
        self.locale: str | None = None
        self.tenant: str | None = None
        # Inbound activities whose HTTP exchange is still open: seq -> (serviceUrl, locale) of that turn.
        self.open_turns: dict[int, tuple[str | None, str | None]] = {}
        # Sends (C3/C5) whose HTTP exchange is open: exchange seq -> (opened event, activity seq).
        self.in_flight: dict[int, tuple[int, int]] = {}
        self.flight_turns: dict[int, int | None] = {}  # exchange seq of a send in flight -> its turn's seq
        # Updates/deletes of an id nobody returned yet, while a send that may return it is in flight:
        # target id -> (activity seq, event, route).
        self.pending_edits: dict[str, tuple[int, int, str]] = {}
        # replyToIds that named nothing yet: id -> seq of the outbound activity (for reply-before-parent).
        self.dangling: dict[str, int] = {}
        self.ended_seq: int | None = None  # the endOfConversation that closed the conversation
        self.typing_at: float | None = None  # when the bot last sent typing
        self.last_timestamp: float | None = None  # latest inbound channel timestamp (epoch)
        self.once: set[str] | None = None  # codes already reported once for this conversation
        self.dl: DirectLineState | None = None  # the Direct Line client leg, when there is one
        self.streams: Streams | None = None  # streamed replies, once the conversation has one


class DeliveryPath:
    """One delivery path: a WebSocket connection, or a chain of GETs each continuing from the last."""

    __slots__ = ("name", "watermark", "last_n", "recent")

    def __init__(self, name: str, watermark: str | None) -> None:
        self.name = name  # "stream #<exchange seq>" or "GET sequence", for messages
        self.watermark = watermark  # the newest non-null watermark on this path
        self.last_n: int | None = None  # `|n` of the latest activity delivered on it
        self.recent: deque[tuple[int, int]] = deque(maxlen=MAX_RECENT)  # (n, seq) of non-user deliveries


class DirectLineState:
    """What the Direct Line rules know about one conversation's client leg."""

    __slots__ = ("user", "token_user", "users", "posted_n", "post_floor", "marks", "streams", "poll", "dangling")

    def __init__(self) -> None:
        self.user: str | None = None  # from.id of the client's first post
        self.token_user: str | None = None  # the user a token or start was issued for
        self.users: set[str] = set()  # every from.id clients posted with (tells user messages from bot ones)
        self.posted_n: int | None = None  # `|n` of the id Direct Line returned to the latest completed post
        self.post_floor: dict[int, int | None] = {}  # post exchange seq -> `posted_n` when it was sent
        self.marks: deque[tuple[int, str | None]] = deque(maxlen=MAX_MARKS)  # (event, watermark) delivered
        self.streams: dict[int, DeliveryPath] = {}  # stream exchange seq -> its path
        self.poll: DeliveryPath | None = None
        self.dangling: dict[str, tuple[int, DeliveryPath]] = {}  # replyToId delivered before it -> (seq, path)


class Stream:
    """One stream of one conversation, while it is being checked."""

    __slots__ = (
        "id",
        "first_seq",
        "started_at",
        "last_at",
        "number",
        "text",
        "parts",
        "in_flight",
        "rejected",
        "reported",
        "scope",
    )

    def __init__(self, stream_id: str | None, first_seq: int, at: float | None) -> None:
        self.id = stream_id
        self.first_seq = first_seq
        self.started_at = at
        self.last_at: float | None = None  # start of the latest non-final request
        self.number: int | None = None  # latest streamSequence
        self.text: str | None = None  # latest streamed (not informative) text
        self.parts = 0
        self.in_flight = 0  # requests of the stream without an HTTP answer yet
        self.rejected: str | None = None  # how the channel ended it
        self.reported: set[str] = set()  # codes reported once per stream
        # BP-S13 (message, details) for a stream outside Teams' streaming scope, until the channel's answer
        # to its first request tells a refused stream (the SDKs' try-then-fall-back) from an accepted one.
        self.scope: tuple[str, dict[str, Any]] | None = None


class Streams:
    """A conversation's streams, and what decides where streaming is allowed."""

    __slots__ = ("open", "ended", "by_exchange", "conversation_type", "agentic", "copilot")

    def __init__(self) -> None:
        self.open: list[Stream] = []  # started, not ended (normally at most one)
        self.ended: dict[str, int] = {}  # stream id -> seq of its final (the latest ENDED_KEPT)
        self.by_exchange: dict[int, Stream] = {}  # open stream requests: exchange seq -> stream
        self.conversation_type: str | None = None  # latest inbound conversation.conversationType
        self.agentic = False  # the latest inbound recipient was an agentic identity
        self.copilot = False  # the latest inbound activity was Microsoft 365 Copilot's


class IdBook:
    """Activity ids -> (conversation, flags). One int per id; a dict only for ids two conversations share."""

    def __init__(self) -> None:
        self._ids: dict[str, int | dict[int, int]] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def flags(self, conv: Conversation, activity_id: str) -> int:
        entry = self._ids.get(activity_id)
        if entry is None:
            return 0
        if isinstance(entry, int):
            return entry & _FLAG_MASK if entry >> _FLAG_BITS == conv.index else 0
        return entry.get(conv.index, 0)

    def add(self, conv: Conversation, activity_id: str, flag: int) -> None:
        entry = self._ids.get(activity_id)
        if entry is None:
            self._ids[activity_id] = conv.index << _FLAG_BITS | flag
        elif isinstance(entry, int):
            owner = entry >> _FLAG_BITS
            if owner == conv.index:
                self._ids[activity_id] = entry | flag
            else:  # the same id in two conversations (channels may number per conversation)
                self._ids[activity_id] = {owner: entry & _FLAG_MASK, conv.index: flag}
        else:
            entry[conv.index] = entry.get(conv.index, 0) | flag

    def elsewhere(self, conv: Conversation, activity_id: str) -> tuple[int, int] | None:
        """(conversation index, flags) of the id in another conversation, or None."""
        entry = self._ids.get(activity_id)
        if entry is None:
            return None
        if isinstance(entry, int):
            owner = entry >> _FLAG_BITS
            return None if owner == conv.index else (owner, entry & _FLAG_MASK)
        for owner, flags in entry.items():
            if owner != conv.index:
                return owner, flags
        return None


class SessionState:
    """Per-conversation state plus the few things that span conversations."""

    def __init__(self) -> None:
        self.conversations: dict[str, Conversation] = {}
        self.by_index: list[Conversation] = []
        self.ids = IdBook()
        self.dl_ids = IdBook()  # ids delivered to Direct Line clients (flags of `directline`)
        self.bots: set[str] = set()  # every inbound recipient.id
        self.users: dict[str, tuple[str | None, str | None]] = {}  # user id -> (latest serviceUrl, tenant)
        self.service_channels: dict[str, str] = {}  # normalised serviceUrl -> channelId seen there
        self.expect_replies: set[int] = set()  # seqs of inbound activities with deliveryMode expectReplies
        # Transcript uploads (C4) under way: exchange seq -> (ids seen, latest timestamp).
        self.history: dict[int, tuple[set[str], list[float]]] = {}

    def conversation(self, conversation_id: str) -> Conversation:
        conv = self.conversations.get(conversation_id)
        if conv is None:
            conv = Conversation(conversation_id, len(self.by_index))
            self.conversations[conversation_id] = conv
            self.by_index.append(conv)
        return conv


# -- small helpers shared by the rule families ------------------------------------------------------

# botproxy's own serviceUrl rewrite (service_url.py): http://<listen>/_botproxy/svc/<key>/. Bots copy that URL
# into what they send; it stands for the original, so compare the original.
_DEFAULT_PORTS = {"http": 80, "https": 443}


@functools.lru_cache(maxsize=4096)
def norm_url(url: str | None) -> str | None:
    """A serviceUrl or request base, comparable: scheme and host lower-cased, default port and trailing
    slashes dropped, botproxy's rewritten serviceUrl replaced by the original it stands for."""
    if not url:
        return None
    key = key_in(url)
    if key:
        try:
            url = decode_service_url(key)
        except ValueError:
            pass
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url.strip().rstrip("/")
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


_CONNECTOR_PATH = re.compile(r"/v[13]/(conversations|attachments|teams|meetings)(/|$|\?)")


def request_base(url: str | None) -> str | None:
    """The serviceUrl a connector request was made against (everything before `/v3/...`), normalised."""
    if not url:
        return None
    match = _CONNECTOR_PATH.search(url)
    return norm_url(url[: match.start()] if match else url)


def tenant_of(body: dict[str, Any]) -> str | None:
    """The Teams tenant an activity names: conversation.tenantId or channelData.tenant.id."""
    conversation = body.get("conversation")
    if isinstance(conversation, dict) and isinstance(conversation.get("tenantId"), str):
        return conversation["tenantId"] or None
    return channel_data_tenant(body.get("channelData"))


def channel_data_tenant(channel_data: Any) -> str | None:
    if isinstance(channel_data, dict):
        tenant = channel_data.get("tenant")
        if isinstance(tenant, dict):
            value = tenant.get("id") or tenant.get("tenantId")  # the Python SDK writes `tenantId`
            return value if isinstance(value, str) and value else None
    return None
