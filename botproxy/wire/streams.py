"""What a streamed reply looks like on the wire, for the stream rules, reports and replay alike.

A stream (Teams streaming, Web Chat livestreaming, the Agents SDKs' `StreamingResponse`) is a series of
`typing` activities carrying a `streaminfo` entity (`streamType` `informative` or `streaming`, a
`streamSequence`, and from the second on the `streamId`, which is the id the channel returned for the
first one) and a final `message` with `streamType: final`. Older senders (Teams AI v1, Web Chat's own
livestreaming doc) put the same fields in `channelData`; they count too.

Pure functions over an activity body: no engine, no database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

STREAM_INFO = "streaminfo"
INFORMATIVE, STREAMING, FINAL = "informative", "streaming", "final"
AI_MESSAGE = "https://schema.org/Message"  # the root entity of the AI label, citations and sensitivity


@dataclass(frozen=True, slots=True)
class StreamPart:
    """The streaming facts of one activity."""

    stream_type: str  # informative, streaming, final (anything else is kept as sent)
    stream_id: str | None
    sequence: Any  # as sent: an int normally, anything when the sender got it wrong
    infos: int  # how many streaminfo entities the activity carried
    entity: dict[str, Any]  # the streaminfo entity (or channelData) the facts came from

    @property
    def final(self) -> bool:
        return self.stream_type == FINAL


def entities(body: dict[str, Any]) -> list[dict[str, Any]]:
    value = body.get("entities")
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


def stream_part(body: dict[str, Any]) -> StreamPart | None:
    """The stream facts of an activity body, or None when it is no part of a stream."""
    infos = [e for e in entities(body) if str(e.get("type", "")).lower() == STREAM_INFO]
    source: dict[str, Any] | None = infos[0] if infos else None
    if source is None:
        channel_data = body.get("channelData")
        if isinstance(channel_data, dict) and isinstance(channel_data.get("streamType"), str):
            source = channel_data
    if source is None:
        return None
    stream_type = source.get("streamType")
    stream_id = source.get("streamId")
    return StreamPart(
        stream_type if isinstance(stream_type, str) and stream_type else STREAMING,  # the spec's default
        stream_id if isinstance(stream_id, str) and stream_id else None,
        source.get("streamSequence"),
        len(infos),
        source,
    )


def ai_roots(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The activity's `https://schema.org/Message` entities (Teams allows one)."""
    return [e for e in entities(body) if e.get("type") == AI_MESSAGE]


def has_ai_label(body: dict[str, Any]) -> bool:
    for root in ai_roots(body):
        kinds = root.get("additionalType")
        if isinstance(kinds, list) and "AIGeneratedContent" in kinds:
            return True
    return False


def has_sensitivity(body: dict[str, Any]) -> bool:
    return any(isinstance(root.get("usageInfo"), dict) for root in ai_roots(body))


def feedback_places(body: dict[str, Any]) -> list[str]:
    """Where the activity asks for Teams' feedback buttons: `channelData.feedbackLoop`,
    `channelData.feedbackLoopEnabled`, or (the Agents SDK for Python) the streaminfo entity."""
    places = []
    channel_data = body.get("channelData")
    if isinstance(channel_data, dict):
        if channel_data.get("feedbackLoop"):
            places.append("channelData.feedbackLoop")
        if channel_data.get("feedbackLoopEnabled"):
            places.append("channelData.feedbackLoopEnabled")
    for entity in entities(body):
        if str(entity.get("type", "")).lower() == STREAM_INFO and (
            entity.get("feedbackLoop") or entity.get("feedbackLoopEnabled")
        ):
            places.append("streaminfo entity")
    return places


def product_info(body: dict[str, Any]) -> list[str]:
    """Ids of the activity's ProductInfo entities (the sub-channel, e.g. COPILOT)."""
    return [str(e.get("id")) for e in entities(body) if e.get("type") == "ProductInfo"]


def channel_profile(channel_id: str | None, body: dict[str, Any]) -> str | None:
    """The channel an activity is on, with Microsoft 365 Copilot as its own: `msteams` with a ProductInfo
    entity `COPILOT` (or the SDKs' joined spelling `msteams:COPILOT`) is `msteams:COPILOT`."""
    if not channel_id:
        return None
    base, _, sub = channel_id.partition(":")
    if base.lower() == "msteams" and (sub.upper() == "COPILOT" or "COPILOT" in {p.upper() for p in product_info(body)}):
        return "msteams:COPILOT"
    return channel_id


def groups(parts: Sequence[tuple[StreamPart | None, str | None]]) -> list[list[int]]:
    """Positions of a turn's activities grouped so that each stream is one group, placed where it began;
    every other activity is a group of its own. `parts` holds, per activity, its stream facts and the id
    the channel gave it (a Teams stream's first chunk names no streamId: its returned id is the stream's).
    """
    out: list[list[int]] = []
    open_streams: dict[str, list[int]] = {}  # stream id -> its group, until its final
    unnamed: list[int] | None = None  # the latest stream whose id is not known
    for index, (part, activity_id) in enumerate(parts):
        if part is None:
            out.append([index])
            continue
        key = part.stream_id
        group = open_streams.get(key) if key is not None else None
        if group is None and unnamed is not None and (part.final or part.sequence != 1):
            group = unnamed  # a chunk of the stream whose first activity had no name to give it
        if key is not None and unnamed is group:
            unnamed = None
        if group is None:
            group = []
            out.append(group)
            unnamed = group if key is None else unnamed
        group.append(index)
        for name in (key, activity_id if key is None and len(group) == 1 else None):
            if name is not None:
                open_streams[name] = group
                unnamed = None if unnamed is group else unnamed
        if part.final:
            open_streams = {k: g for k, g in open_streams.items() if g is not group}
            unnamed = None if unnamed is group else unnamed
    return out
