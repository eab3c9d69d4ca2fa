"""The turn model: which inbound activity an outbound activity answers.

A turn is one inbound activity and everything the bot did because of it. An outbound activity joins
a turn, in this order of evidence:
  1. its `replyToId` names an inbound activity of the same conversation;
  2. its `replyToId` names an inbound activity of another conversation (a reply sent to the wrong
     conversation is still what the bot did because of that activity: the checks flag it);
  3. it was sent while an inbound exchange of the same conversation was still open (the most recent);
  4. it came back in the inbound HTTP response body (the caller links those directly).
Otherwise it is proactive (no turn). Connector-assigned ids from ResourceResponses are remembered so an
update or delete can be tied to the send that created the id.

Fed events in the order they happened; knows nothing of HTTP libraries or storage. State holds ids and
sequence numbers only, never bodies.
"""

from __future__ import annotations


class TurnLinker:
    def __init__(self) -> None:
        self._open: dict[str | None, list[int]] = {}  # conversation -> inbound seqs with an open exchange
        self._inbound: dict[tuple[str | None, str], int] = {}  # (conversation, inbound id) -> seq
        self._inbound_any: dict[str, int] = {}  # inbound id -> seq of the latest inbound with that id
        self._sent: dict[tuple[str | None, str], int] = {}  # (conversation, connector-assigned id) -> seq

    def inbound_opened(self, conversation: str | None, seq: int, activity_id: str | None) -> None:
        self._open.setdefault(conversation, []).append(seq)
        if activity_id:
            self._inbound[(conversation, activity_id)] = seq
            self._inbound_any[activity_id] = seq

    def inbound_closed(self, conversation: str | None, seq: int) -> None:
        seqs = self._open.get(conversation)
        if seqs and seq in seqs:
            seqs.remove(seq)
            if not seqs:
                del self._open[conversation]

    def turn_for(self, conversation: str | None, reply_to_id: str | None) -> int | None:
        """The seq of the inbound activity an outbound activity answers, or None when proactive."""
        if reply_to_id:
            seq = self._inbound.get((conversation, reply_to_id), self._inbound_any.get(reply_to_id))
            if seq is not None:
                return seq
        seqs = self._open.get(conversation)
        return seqs[-1] if seqs else None

    def sent(self, conversation: str | None, assigned_id: str, seq: int) -> None:
        """The connector returned `assigned_id` for the activity `seq` sent to `conversation`."""
        self._sent[(conversation, assigned_id)] = seq

    def target_of(self, conversation: str | None, activity_id: str | None) -> int | None:
        """The seq of the send that created `activity_id`, for updates and deletes."""
        if not activity_id:
            return None
        return self._sent.get((conversation, activity_id))
