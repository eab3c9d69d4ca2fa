"""Addressing rules, one by one: each fires on a case that breaks it (at the activity the bot got wrong)
and stays quiet on a close case that does not."""

from __future__ import annotations

from collections.abc import Callable

from checkkit import TEAMS, Scenarios, Wire, sent_id

from botproxy.checks import addressing

_scenarios: Scenarios[Wire] = Scenarios()
FIRES, HOLDS = _scenarios.firing, _scenarios.holding
fires, holds = _scenarios.fires, _scenarios.holds
EMEA = "https://smba.trafficmanager.net/emea/"


def faulty_reply(text: str | None = "ok", **fields) -> Wire:
    """One turn whose single reply has `fields` overridden; the reply is the culprit."""
    w = Wire()
    inbound = w.inbound("hi")
    reply = w.reply(inbound, text, **fields)
    w.culprit = reply.seq
    w.done(reply)
    w.done(inbound)
    return w


def sdk_turn() -> Wire:
    w = Wire()
    w.turn("hi")
    return w


for _code in (
    "BP-A01",
    "BP-A02",
    "BP-A07",
    "BP-A08",
    "BP-A10",
    "BP-A13",
    "BP-A14",
    "BP-A15",
    "BP-A18",
    "BP-A19",
    "BP-A20",
    "BP-A28",
):
    holds(_code)(sdk_turn)


@fires("BP-A01")
def url_names_another_conversation() -> Wire:
    w = Wire()
    w.turn("other", conv="c2")
    return faulty_reply_in(w, url_conv="c2")


def faulty_reply_in(w: Wire, **kw) -> Wire:
    inbound = w.inbound("hi")
    reply = w.reply(inbound, "ok", **kw)
    w.culprit = reply.seq
    w.done(reply)
    w.done(inbound)
    return w


@fires("BP-A02")
def reply_url_names_another_activity() -> Wire:
    w = Wire()
    first, _ = w.turn("first")
    return faulty_reply_in(w, url_id=first.activity["id"])


@fires("BP-A03")
def reply_sent_through_send_to_conversation() -> Wire:
    w = Wire()
    inbound = w.inbound("hi")
    send = w.send("c1", w.reply_body(inbound.activity))
    w.culprit = send.seq
    w.done(send)
    w.done(inbound)
    return w


@holds("BP-A03")
def welcome_through_send_to_conversation() -> Wire:
    w = Wire()
    update = w.inbound(None, type="conversationUpdate", membersAdded=[{"id": "u1"}, {"id": "b1"}])
    w.done(w.send("c1", w.reply_body(update.activity, "Welcome!", replyToId=None)))
    w.done(update)
    return w


@fires("BP-A04")
def reply_to_an_id_nobody_issued() -> Wire:
    return faulty_reply(replyToId="made-up-1")


@holds("BP-A04")
def reply_to_the_bots_own_earlier_message() -> Wire:
    w = Wire()
    _, [sent] = w.turn("hi")
    return faulty_reply_in(w, replyToId=sent_id(sent))


@fires("BP-A05")
def reply_to_a_bot_message_of_another_conversation() -> Wire:
    w = Wire()
    _, [sent] = w.turn("hi", conv="c2")
    return faulty_reply_in(w, replyToId=sent_id(sent))


@holds("BP-A05")
def ids_shared_by_two_conversations_stay_apart() -> Wire:
    # Channels may number activities per conversation: the same id in two conversations is not a mix-up.
    w = Wire()
    w.turn("hi", conv="c2", id="0001")
    inbound = w.inbound("hi", id="0001")
    w.done(w.reply(inbound))
    w.done(inbound)
    return w


@fires("BP-A06")
def answer_sent_into_another_conversation() -> Wire:
    w = Wire()
    asked = w.inbound("question", conv="c2")
    other = w.inbound("hello")
    reply = w.reply(other, "answer", replyToId=asked.activity["id"])
    w.culprit = reply.seq
    w.done(reply)
    w.done(other)
    w.done(asked)
    return w


@holds("BP-A06")
def two_conversations_answered_each_in_its_own() -> Wire:
    w = Wire()
    asked = w.inbound("question", conv="c2")
    other = w.inbound("hello")
    w.done(w.reply(other, "answer"))
    w.done(w.reply(asked, "answer"))
    w.done(other)
    w.done(asked)
    return w


@fires("BP-A07")
def from_copied_instead_of_swapped() -> Wire:
    return faulty_reply(**{"from": {"id": "u1", "name": "User"}})


@fires("BP-A08")
def recipient_is_the_bot() -> Wire:
    return faulty_reply(recipient={"id": "b1", "name": "Bot"})


@fires("BP-A09")
def suggestion_without_recipient() -> Wire:
    return faulty_reply(type="suggestion", recipient=None)


@holds("BP-A09")
def suggestion_to_a_user() -> Wire:
    return faulty_reply(type="suggestion")


@fires("BP-A10")
def body_without_conversation() -> Wire:
    return faulty_reply(conversation=None)


@fires("BP-A11")
def reply_through_another_region() -> Wire:
    return faulty_reply(service_url=EMEA)


@holds("BP-A11")
def same_service_url_spelled_differently() -> Wire:
    return faulty_reply(service_url="HTTPS://smba.trafficmanager.net:443/amer")


@fires("BP-A12")
def body_service_url_from_a_stale_reference() -> Wire:
    return faulty_reply(serviceUrl=EMEA)


@holds("BP-A12")
def body_service_url_rewritten_by_botproxy_counts_as_original() -> Wire:
    rewritten = "http://127.0.0.1:5055/_botproxy/svc/aHR0cHM6Ly9zbWJhLnRyYWZmaWNtYW5hZ2VyLm5ldC9hbWVyLw/"
    return faulty_reply(serviceUrl=rewritten)


@fires("BP-A13")
def channel_id_of_another_channel() -> Wire:
    return faulty_reply(channelId="slack")


@fires("BP-A14")
def bot_sets_its_own_id() -> Wire:
    return faulty_reply(id="my-own-id")


@fires("BP-A15")
def bot_sets_timestamp() -> Wire:
    return faulty_reply(timestamp="2024-05-01T10:00:01.000Z")


@fires("BP-A16")
def timestamp_without_zone() -> Wire:
    return faulty_reply(timestamp="2024-05-01T10:00:01")


@holds("BP-A16")
def times_with_zones() -> Wire:
    return faulty_reply(timestamp="2024-05-01T10:00:01.000Z", localTimestamp="2024-05-01T12:00:01+02:00")


@fires("BP-A17")
def locale_differs_from_inbound() -> Wire:
    return faulty_reply(locale="fr-FR")


@holds("BP-A17")
def locale_differs_only_in_case() -> Wire:
    return faulty_reply(locale="en-us")


@fires("BP-A18")
def reply_without_type() -> Wire:
    return faulty_reply(type=None)


@fires("BP-A19")
def role_copied_into_accounts() -> Wire:
    return faulty_reply(**{"from": {"id": "b1", "role": "bot"}})


@fires("BP-A20")
def empty_arrays_from_create_reply() -> Wire:
    return faulty_reply(attachments=[], entities=[])


def sent_then(edit: Callable[[Wire, str], None]) -> Wire:
    w = Wire()
    inbound = w.inbound("hi")
    sent = sent_id(w.done(w.reply(inbound, "original")))
    edit(w, sent)
    w.done(inbound)
    return w


def culprit(w: Wire, flow) -> None:
    w.culprit = flow.seq
    w.done(flow)


@fires("BP-A21")
def update_of_the_users_message() -> Wire:
    w = Wire()
    inbound = w.inbound("hi")
    culprit(w, w.update("c1", inbound.activity["id"]))
    w.done(inbound)
    return w


@holds("BP-A21")
def update_of_the_bots_message() -> Wire:
    return sent_then(lambda w, sent: culprit(w, w.update("c1", sent)))


@fires("BP-A22")
def update_body_names_another_id() -> Wire:
    return sent_then(
        lambda w, sent: culprit(
            w, w.update("c1", sent, {"type": "message", "id": "x-9", "conversation": {"id": "c1"}})
        )
    )


@holds("BP-A22")
def update_body_without_id() -> Wire:
    return sent_then(
        lambda w, sent: culprit(
            w, w.update("c1", sent, {"type": "message", "text": "edited", "conversation": {"id": "c1"}})
        )
    )


@fires("BP-A23")
def update_after_delete() -> Wire:
    def edit(w: Wire, sent: str) -> None:
        w.done(w.delete("c1", sent))
        culprit(w, w.update("c1", sent))

    return sent_then(edit)


@holds("BP-A23")
def update_then_delete() -> Wire:
    def edit(w: Wire, sent: str) -> None:
        w.done(w.update("c1", sent))
        culprit(w, w.delete("c1", sent))

    return sent_then(edit)


TENANT = {"tenantId": "t1"}


def teams_create(params: dict) -> Wire:
    w = Wire()
    w.turn("hi", conversation={"id": "c1", "tenantId": "t1"})
    create = w.create(
        {
            "bot": {"id": "b1"},
            "members": [{"id": "u1"}],
            "isGroup": False,
            "activity": {"type": "message", "text": "hello"},
            **params,
        }
    )
    culprit(w, create)
    return w


@fires("BP-A24")
def teams_create_without_tenant() -> Wire:
    return teams_create({})


@holds("BP-A24")
def teams_channel_post_without_tenant() -> Wire:
    # TeamsInfo.send_message_to_teams_channel: channelData.channel.id, no tenant, no members, no bot.
    return teams_create(
        {"bot": None, "members": None, "isGroup": True, "channelData": {"channel": {"id": "19:x"}}}
    )


@fires("BP-A25")
def teams_create_for_another_tenant() -> Wire:
    return teams_create({"tenantId": "t2"})


@holds("BP-A25")
def teams_create_in_the_users_tenant() -> Wire:
    return teams_create({"channelData": {"tenant": {"tenantId": "t1"}}, **TENANT})


@fires("BP-A26")
def create_as_another_bot() -> Wire:
    return teams_create({"bot": {"id": "b2"}, **TENANT})


@holds("BP-A26")
def create_with_the_bot_and_a_known_user() -> Wire:
    return teams_create(TENANT)


MENTION = {"type": "mention", "text": "<at>Ada</at>", "mentioned": {"id": "u1", "name": "Ada"}}


@fires("BP-A27")
def mention_text_not_in_message() -> Wire:
    return faulty_reply(text="hi <at>Ada &amp; Bob</at>", entities=[MENTION])


@holds("BP-A27")
def mention_matches_text() -> Wire:
    return faulty_reply(text="hi <at>Ada</at>", entities=[MENTION])


@fires("BP-A28")
def bot_asks_the_channel_for_expect_replies() -> Wire:
    return faulty_reply(deliveryMode="expectReplies")


def get_conversations(channel: str) -> Wire:
    w = Wire(channel=channel)
    w.turn("hi")
    w.done(w.call("GET", TEAMS + "v3/conversations"))
    return w


@fires("BP-A29")
def get_conversations_on_teams() -> Wire:
    return get_conversations("msteams")


@holds("BP-A29")
def get_conversations_on_direct_line() -> Wire:
    return get_conversations("directline")


@fires("BP-A30")
def connector_path_that_is_no_operation() -> Wire:
    w = Wire()
    w.turn("hi")
    w.done(w.call("POST", TEAMS + "v3/conversations/c1/activitiez", {"type": "message"}), status=404)
    return w


@holds("BP-A30")
def get_members_is_an_operation() -> Wire:
    w = Wire()
    w.turn("hi")
    w.done(w.call("GET", TEAMS + "v3/conversations/c1/members"), body=[{"id": "u1"}])
    return w


@fires("BP-A31")
def send_to_a_conversation_never_seen() -> Wire:
    w = Wire()
    inbound = w.inbound("hi")
    send = w.send(
        "c-unknown", w.reply_body(inbound.activity, replyToId=None, conversation={"id": "c-unknown"})
    )
    culprit(w, send)
    w.done(inbound)
    return w


@holds("BP-A31")
def send_to_a_created_conversation() -> Wire:
    w = Wire()
    w.turn("hi", conversation={"id": "c1", "tenantId": "t1"})
    created = w.done(w.create({"bot": {"id": "b1"}, "members": [{"id": "u1"}], **TENANT}))
    assert created.response is not None
    new_id = created.response["id"]
    send = w.send(
        new_id,
        {
            "type": "message",
            "text": "hello",
            "conversation": {"id": new_id},
            "from": {"id": "b1"},
            "recipient": {"id": "u1"},
        },
    )
    culprit(w, send)
    return w


# -- the tables above are complete and each case is what it claims ---------------------------------------


def addressing_rule(code):
    return next(r for r in addressing.RULES if r.code == code)


def test_the_agents_sdks_uuid4_continuation_id_is_info_on_web_chat_a_uuid1_still_a_warning():
    # The Agents SDKs set replyToId = uuid4() on proactive sends on Web Chat too; botbuilder-python never does.
    uuid4, uuid1 = "84c7dfda-c1e6-480c-8043-cc1354657015", "5e358b10-e570-11f1-91f1-02fc00000001"
    for reply_to, severity in ((uuid4, "info"), (uuid1, "warning")):
        w = Wire(channel="webchat", service_url="https://webchat.botframework.com/")
        inbound = w.done(w.inbound("hi"))
        w.done(w.send("c1", w.reply_body(inbound.activity or {}, "later", replyToId=reply_to, locale=None)))
        assert [f.severity for f in w.of("BP-A04")] == [severity], reply_to
