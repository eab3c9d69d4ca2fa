from botproxy.turns import TurnLinker


def test_reply_to_id_then_open_exchange_then_proactive():
    t = TurnLinker()
    t.inbound_opened("c1", 1, "in-1")
    assert t.turn_for("c1", "in-1") == 1
    assert t.turn_for("c1", None) == 1  # sent while the inbound exchange is open
    t.inbound_closed("c1", 1)
    assert t.turn_for("c1", None) is None  # proactive
    assert t.turn_for("c1", "in-1") == 1  # a late reply still names its turn


def test_the_most_recent_open_inbound_of_the_same_conversation_wins():
    t = TurnLinker()
    t.inbound_opened("c1", 1, "a")
    t.inbound_opened("c2", 2, "b")
    t.inbound_opened("c1", 3, "c")
    assert t.turn_for("c1", None) == 3 and t.turn_for("c2", None) == 2
    t.inbound_closed("c1", 3)
    assert t.turn_for("c1", None) == 1


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
