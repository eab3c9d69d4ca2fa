"""The turn model: which inbound activity an outbound activity answers.

A turn is one inbound activity and everything the bot did because of it. An outbound activity joins
a turn, in this order of evidence:
  1. its `replyToId` names an inbound activity of the same conversation;
  2. its `replyToId` names an inbound activity of another conversation (a reply sent to the wrong
     conversation is still what the bot did because of that activity: the checks flag it);
  3. its `replyToId` names an activity the bot sent (the connector returned that id): the turn of that
     send (a reply to the bot's own message, or a send in a continuation of a conversation the bot
     created, which botbuilder addresses to the created conversation's first activity);
  4. its `replyToId` names anything else (the SDK's synthetic continuation id, a uuid nobody issued):
     it is proactive, whatever turn happens to be open;
  5. without `replyToId`, it was sent while an inbound exchange of the same conversation (or of the
     conversation whose turn created this one) was still open. With several open (botbuilder-python
     never sets `replyToId` on Direct Line, and two turns of one conversation can overlap), the wire
     order decides: the first open turn the bot has not answered yet, else the newest; such a link is
     marked *ambiguous*, because nothing on the wire says which it was;
  6. it came back in the inbound HTTP response body (the caller links those directly).
Otherwise it is proactive (no turn). Connector-assigned ids from ResourceResponses are remembered so an
update or delete can be tied to the send that created the id.

A conversation the bot creates (CreateConversation) during a turn belongs to that turn: the create
call (which names no conversation) is linked to the one open turn, or, with several open, to the one
whose inbound activity shares an account or channel id with the call (`hints`).

Fed events in the order they happened; knows nothing of HTTP libraries or storage. State holds ids and
sequence numbers only, never bodies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

R = TypeVar("R", bound=Mapping[str, Any])


@dataclass(frozen=True, slots=True)
class Link:
    turn: int | None  # the inbound activity's seq, or None when proactive
    ambiguous: bool = False  # several turns were open and nothing on the wire said which


PROACTIVE = Link(None)


class TurnLinker:
    def __init__(self) -> None:
        self._open: dict[str | None, list[int]] = {}  # conversation -> inbound seqs with an open exchange
        self._inbound: dict[tuple[str | None, str], int] = {}  # (conversation, inbound id) -> seq
        self._inbound_any: dict[str, int] = {}  # inbound id -> seq of the latest inbound with that id
        self._sent: dict[tuple[str | None, str], int] = {}  # (conversation, connector-assigned id) -> seq
        self._sent_any: dict[str, int] = {}  # connector-assigned id -> turn seq of the send that got it
        self._turn_of: dict[int, int] = {}  # outbound activity seq -> its turn seq
        self._answered: set[int] = set()  # open turns the bot has sent something for
        self._created: dict[str, int] = {}  # conversation the bot created -> the turn it was created in
        self._hints: dict[int, frozenset[str]] = {}  # open inbound seq -> account and channel ids

    def inbound_opened(self, conversation: str | None, seq: int, activity_id: str | None,
                       hints: Iterable[str] = ()) -> None:
        self._open.setdefault(conversation, []).append(seq)
        self._hints[seq] = frozenset(h for h in hints if h)
        if activity_id:
            self._inbound[(conversation, activity_id)] = seq
            self._inbound_any[activity_id] = seq

    def inbound_closed(self, conversation: str | None, seq: int) -> None:
        seqs = self._open.get(conversation)
        if seqs and seq in seqs:
            seqs.remove(seq)
            if not seqs:
                del self._open[conversation]
        self._answered.discard(seq)
        self._hints.pop(seq, None)

    def link(self, conversation: str | None, reply_to_id: str | None, seq: int | None = None) -> Link:
        """The turn of an outbound activity (`seq`, remembered for later evidence) sent to `conversation`."""
        found = self._evidence(conversation, reply_to_id)
        if found.turn is not None:
            self._answered.add(found.turn)
            if seq is not None:
                self._turn_of[seq] = found.turn
        return found

    def turn_for(self, conversation: str | None, reply_to_id: str | None) -> int | None:
        """The seq of the inbound activity an outbound activity answers, or None when proactive."""
        return self.link(conversation, reply_to_id).turn

    def _evidence(self, conversation: str | None, reply_to_id: str | None) -> Link:
        if reply_to_id:
            seq = self._inbound.get((conversation, reply_to_id), self._inbound_any.get(reply_to_id))
            if seq is not None:
                return Link(seq)
            turn = self._sent_any.get(reply_to_id)
            return Link(turn) if turn is not None else PROACTIVE
        seqs = self._open.get(conversation)
        if not seqs and conversation in self._created:
            origin = self._created[conversation]
            seqs = [origin] if any(origin in s for s in self._open.values()) else []
        if not seqs:
            return PROACTIVE
        if len(seqs) == 1:
            return Link(seqs[0])
        waiting = [s for s in seqs if s not in self._answered]
        return Link(waiting[0] if waiting else seqs[-1], ambiguous=True)

    def link_creation(self, hints: Iterable[str], seq: int | None = None) -> Link:
        """The turn a CreateConversation call (which names no conversation) was made in."""
        open_turns = sorted(s for seqs in self._open.values() for s in seqs)
        if not open_turns:
            return PROACTIVE
        if len(open_turns) > 1:
            wanted = frozenset(h for h in hints if h)
            matching = [s for s in open_turns if self._hints.get(s, frozenset()) & wanted]
            open_turns = matching or open_turns
        found = Link(open_turns[-1], ambiguous=len(open_turns) > 1)
        if seq is not None:
            self._turn_of[seq] = open_turns[-1]
        return found

    def created(self, conversation: str, turn: int) -> None:
        """The bot created `conversation` during `turn` (a CreateConversation call)."""
        self._created[conversation] = turn

    def sent(self, conversation: str | None, assigned_id: str, seq: int) -> None:
        """The connector returned `assigned_id` for the activity `seq` sent to `conversation`."""
        self._sent[(conversation, assigned_id)] = seq
        turn = self._turn_of.get(seq)
        if turn is not None:
            self._sent_any[assigned_id] = turn

    def target_of(self, conversation: str | None, activity_id: str | None) -> int | None:
        """The seq of the send that created `activity_id`, for updates and deletes."""
        if not activity_id:
            return None
        return self._sent.get((conversation, activity_id))


# -- numbering ---------------------------------------------------------------------------------------


def turn_numbers(activities: Iterable[Mapping[str, Any]]) -> dict[int, int]:
    """Inbound seq -> the turn's number: its 1-based position among its conversation's inbound
    activities (records with `seq`, `direction`, `conversation_id`, in seq order). The one numbering of
    turns that `show`, `check`, the reports, replay and JUnit use, with the inbound seq beside it."""
    counts: dict[Any, int] = {}
    numbers: dict[int, int] = {}
    for activity in activities:
        if activity["direction"] == "to_bot":
            conversation = activity["conversation_id"]
            counts[conversation] = counts.get(conversation, 0) + 1
            numbers[activity["seq"]] = counts[conversation]
    return numbers


class TurnGroups(Generic[R]):
    """A session's stored activities (records in seq order) grouped by turn, as `show` and the session
    report draw them: an outbound activity goes with the turn it belongs to (its `turn_seq` names an
    inbound activity), and every activity with the conversation it is shown in, its turn's (what a turn
    sent to a conversation it created is shown in that turn, where it was caused), else its own;
    conversations in order of first appearance."""

    def __init__(self, activities: Iterable[R]) -> None:
        activities = list(activities)
        self.inbound: dict[int, Any] = {  # inbound seq -> its conversation
            a["seq"]: a["conversation_id"] for a in activities if a["direction"] == "to_bot"}
        self.numbers = turn_numbers(activities)
        self.replies: dict[int, list[R]] = {}  # inbound seq -> the other activities of its turn
        self.conversations: dict[Any, list[R]] = {}  # conversation -> the activities shown in it
        for activity in activities:
            turn = self.turn_of(activity)
            if turn is not None and activity["direction"] != "to_bot":
                self.replies.setdefault(turn, []).append(activity)
            self.conversations.setdefault(self.home(activity), []).append(activity)

    def turn_of(self, activity: R) -> int | None:
        """The inbound seq of the turn `activity` is part of (an inbound activity's own); None: proactive,
        or the Direct Line client's leg."""
        if activity["direction"] == "to_bot":
            return int(activity["seq"])
        turn = activity["turn_seq"]
        return turn if turn in self.inbound else None

    def home(self, activity: R) -> Any:
        """The conversation `activity` is shown in."""
        turn = self.turn_of(activity)
        return self.inbound[turn] if turn is not None else activity["conversation_id"]


def turn_label(number: int | None, inbound_seq: int | None) -> str:
    """``turn 3 (#24)``: the turn's number in its conversation, its inbound activity's seq beside."""
    if number is None:
        return f"turn #{inbound_seq}"
    return f"turn {number}" + (f" (#{inbound_seq})" if inbound_seq is not None else "")
