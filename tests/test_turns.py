from botproxy.turns import Link, TurnGroups, TurnLinker


def test_reply_to_id_then_open_exchange_then_proactive():
    t = TurnLinker()
    t.inbound_opened("c1", 1, "in-1")
    assert t.turn_for("c1", "in-1") == 1
    assert t.turn_for("c1", None) == 1  # sent while the inbound exchange is open
    t.inbound_closed("c1", 1)
    assert t.turn_for("c1", None) is None  # proactive
    assert t.turn_for("c1", "in-1") == 1  # a late reply still names its turn


def test_overlapping_turns_without_reply_to_id_follow_the_wire_order_and_say_they_guessed():
    # Reproduces issue 11 (4): botbuilder-python on Direct Line omits replyToId; two turns are open.
    t = TurnLinker()
    t.inbound_opened("c1", 1, "a")
    t.inbound_opened("c2", 2, "b")
    t.inbound_opened("c1", 3, "c")
    assert t.link("c2", None) == Link(2)  # alone in its conversation: certain
    assert t.link("c1", None) == Link(1, ambiguous=True)  # the first unanswered open turn, not the newest
    assert t.link("c1", None) == Link(3, ambiguous=True)  # then the next one
    assert t.link("c1", None) == Link(3, ambiguous=True)  # every open turn answered: the newest
    t.inbound_closed("c1", 1)
    assert t.link("c1", None) == Link(3)


def test_a_reply_to_id_that_names_no_inbound_activity_is_proactive_whatever_is_open():
    # Reproduces issue 11 (3): a notify endpoint's send carries the SDK's synthetic continuation id.
    t = TurnLinker()
    t.inbound_opened("c1", 1, "in-1")
    assert t.link("c1", "5f1c0d2e-8a3b-11ef-b864-0242ac120002") == Link(None)
    assert t.link("c1", None) == Link(1)


def test_a_reply_to_the_bots_own_message_belongs_to_that_messages_turn():
    t = TurnLinker()
    t.inbound_opened("c1", 1, "in-1")
    assert t.link("c1", "in-1", seq=2) == Link(1)
    t.sent("c1", "srv-2", 2)
    t.inbound_closed("c1", 1)
    assert t.link("c1", "srv-2", seq=3) == Link(1)


def test_a_conversation_created_in_a_turn_belongs_to_it_while_it_is_open():
    # Reproduces issue 11 (2): a Teams bot starts a channel thread with CreateConversation.
    t = TurnLinker()
    t.inbound_opened("c1", 1, "in-1", hints=["user-1", "19:general"])
    t.inbound_opened("c2", 2, "in-2", hints=["user-2", "19:other"])
    creation = t.link_creation(["19:general"], seq=3)
    assert creation == Link(1)
    t.created("thread-1", 1)
    t.sent("thread-1", "first-3", 3)
    assert t.link("thread-1", None) == Link(1)  # a later send to the thread during the turn
    t.inbound_closed("c1", 1)
    assert t.link("thread-1", "first-3") == Link(1)  # a continuation addressed to its first message
    assert t.link("thread-1", None) == Link(None)  # after the turn, unaddressed: proactive
    assert t.link_creation([], seq=9) == Link(2)
    t.inbound_closed("c2", 2)
    assert t.link_creation(["x"]) == Link(None)


def test_a_reply_sent_to_the_wrong_conversation_belongs_to_the_turn_it_names():
    t = TurnLinker()
    t.inbound_opened("c1", 1, "in-1")
    t.inbound_opened("c2", 2, "in-1")  # ids may repeat across conversations: the same conversation wins
    assert t.turn_for("c1", "in-1") == 1
    assert t.turn_for("elsewhere", "in-1") == 2


def test_connector_ids_tie_updates_to_their_send():
    t = TurnLinker()
    t.sent("c1", "srv-9", 4)
    assert t.target_of("c1", "srv-9") == 4
    assert t.target_of("c2", "srv-9") is None and t.target_of("c1", None) is None


def test_turn_groups_show_what_a_turn_sent_elsewhere_under_that_turn():
    def act(seq, direction, conversation, turn=None):
        return {"seq": seq, "direction": direction, "conversation_id": conversation, "turn_seq": turn}

    rows = [act(1, "to_bot", "c1"), act(2, "from_bot", "c1", 1), act(3, "from_bot", "thread", 1),
            act(4, "from_bot", "thread"), act(5, "from_client", "c1"), act(6, "to_bot", "c1"),
            act(7, "from_bot", "c2", 99)]
    groups = TurnGroups(rows)
    assert {c: [a["seq"] for a in acts] for c, acts in groups.conversations.items()} == {
        "c1": [1, 2, 3, 5, 6], "thread": [4], "c2": [7]}  # 3 with its turn; 7 names no recorded turn
    assert {t: [a["seq"] for a in acts] for t, acts in groups.replies.items()} == {1: [2, 3]}
    assert groups.numbers == {1: 1, 6: 2}
    assert [groups.turn_of(a) for a in rows] == [1, 1, 1, None, None, 6, None]


def test_show_links_a_client_view_only_to_its_own_conversations_bot_side(monkeypatch):
    """A turn's send to a conversation it created is listed under the turn; an activity id it shares with
    the client's view of this conversation is not that view's bot side."""
    from botproxy import store
    from botproxy.present import show

    def act(seq, direction, conversation, turn=None, aid=None):
        return {"seq": seq, "direction": direction, "conversation_id": conversation, "turn_seq": turn,
                "activity_id": aid, "type": "message", "route": "send_to_conversation", "status": 200,
                "text": f"t{seq}", "body": None}

    rows = [act(1, "to_bot", "c1", aid="in1"), act(2, "from_bot", "thread", 1, aid="x9"),
            act(3, "to_client", "c1", aid="x9"), act(4, "from_bot", "c1", 1, aid="r1"),
            act(5, "to_client", "c1", aid="r1")]
    monkeypatch.setattr(store, "iter_activities", lambda db, sid: iter(rows))
    lines = list(show.text_lines(None, {"name": "s", "id": 1, "started_at": "t"}))
    [view_x9] = [line for line in lines if '"t3"' in line]
    [view_r1] = [line for line in lines if '"t5"' in line]
    assert "bot side" not in view_x9 and view_r1.endswith("(bot side #4)")
