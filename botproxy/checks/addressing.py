"""Addressing rules (protocol.md 3.1): is what the bot sends aimed at the right conversation, activity,
party and endpoint?

Presence of fields the spec says bots should not send but every SDK sends (`recipient`, `serviceUrl`,
`channelId`, `locale`: ACT A2071/A2302, protocol.md S-8) is never a finding here; a *mismatch* is.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..wire import protocol as p
from .base import CheckContext
from .rules import ERROR, INFO, WARNING, Rule, rule_maker
from .state import DELETED, INBOUND, REFERENCED, SENT, Conversation, channel_data_tenant, norm_url, request_base

_rule = rule_maker(__name__)


RULES: tuple[Rule, ...] = (
    _rule(
        "BP-A01",
        "path-conversation-mismatch",
        ERROR,
        "URL conversation id differs from the body's `conversation.id` (send, reply, update)",
        "The Connector addresses a send by the `{conversationId}` in the URL, and the docs say to fill it "
        "with the activity's own `conversation.id`. When the two differ, the channel files the activity "
        "under "
        "the URL's conversation while the body claims another, which is how replies end up in the wrong chat "
        'or fail with ConversationNotFound. Source: DOCS-REST send-and-receive ("replace {conversationId} '
        "with the reply activity's conversation.id\"); ACT A2080.",
        "DOCS-REST send-and-receive; ACT A2080",
        "Build the URL from the same conversation reference as the body (the SDK's `send_activity` does).",
    ),
    _rule(
        "BP-A02",
        "reply-path-replyToId-mismatch",
        ERROR,
        "ReplyToActivity URL `{activityId}` differs from the body's `replyToId`, or the body has none",
        "`POST /v3/conversations/{conversationId}/activities/{activityId}` is ReplyToActivity, and the docs "
        "say `{activityId}` is the activity's `replyToId`. A different or missing `replyToId` means the URL "
        "threads the reply under one message while the activity says another (or none). Source: DOCS-REST "
        'send-and-receive ("replace {activityId} with replyToId"); CONN-SW Conversations_ReplyToActivity.',
        "DOCS-REST send-and-receive; CONN-SW ReplyToActivity",
        "Set `replyToId` and the URL from the same inbound activity id, or use SendToConversation.",
    ),
    _rule(
        "BP-A03",
        "reply-via-send-to-conversation",
        INFO,
        "SendToConversation (no activity id in the URL) carrying a `replyToId`",
        "The Connector has a separate operation for replies: ReplyToActivity. An activity with `replyToId` "
        "sent through SendToConversation works on most channels but is not threaded where threading depends "
        "on the operation; the SDKs route by `replyToId` and never do this. Source: CONN-SW "
        "Conversations_SendToConversation / ReplyToActivity descriptions; PY cloud_adapter_base.py L89-101.",
        "CONN-SW C3/C5; PY cloud_adapter_base.py",
        "Post replies to `.../activities/{replyToId}` (the SDK does when `reply_to_id` is set).",
    ),
    _rule(
        "BP-A04",
        "dangling-replyToId",
        WARNING,
        "`replyToId` names no activity of this conversation (neither one the channel sent nor an id "
        "returned to the bot)",
        "`replyToId` is only valid for an activity of the same conversation, and a channel may reject an "
        "activity whose `replyToId` names none (Web Chat holds such a reply for seconds waiting for its "
        "parent). The Python SDK itself sends one on every proactive send: `continue_conversation` turns "
        "on a synthetic event whose id is `uuid1()` (or `uuid4()` after create_conversation), and replies "
        "carry it. botproxy keeps that a finding but reports it as info when the id has exactly that shape "
        "(a version 1 or 4 UUID) on a channel other than Direct Line / Web Chat (where botbuilder-python never "
        "sets `replyToId`), and on those two for a version 4 UUID (the Microsoft 365 Agents SDKs' "
        "continuation id, which they send there too), so a correct SDK bot gets no warning; any other "
        "unknown id is a warning. Ids "
        "from before the recording started are unknown to botproxy, except those an inbound activity's "
        "`replyToId` vouches for. Source: ACT A2090, A2091; BotFramework-WebChat#3431; PY "
        "conversation_reference_extension.py L12-23; AGENTS-PY conversation_reference.py get_continuation_activity.",
        "ACT A2091, A2090; BotFramework-WebChat#3431",
        "Reply to the id of the inbound activity you answer; send proactive messages without `replyToId`.",
        alt_severity=INFO,
        alt_when="the id is the SDK's synthetic continuation UUID",
    ),
    _rule(
        "BP-A05",
        "cross-conversation-replyToId",
        ERROR,
        "`replyToId` is an id the connector returned for an activity of another conversation",
        "A `replyToId` is valid only within its own conversation; references across conversations use "
        "`relatesTo`. Pointing at one of the bot's activities in another conversation usually means a "
        'stored reference or id was mixed up between conversations. Source: ACT "Reply to ID" (valid only '
        "within the current conversation), A2091; botframework-sdk#4689.",
        "ACT Reply to ID, A2091; botframework-sdk#4689",
        "Take `replyToId` and `conversation` from the same conversation reference.",
    ),
    _rule(
        "BP-A06",
        "reply-in-wrong-conversation",
        ERROR,
        "a reply whose `replyToId` is a message the channel sent in another conversation",
        "The activity answers an inbound activity of conversation X but is sent into conversation Y: the "
        'user who wrote gets no answer and someone else gets it. This is the shape of the "two clients got '
        "each other's answers\" bugs (state or conversation references shared between turns). Source: ACT "
        "A2080; DOCS-REST reply table (conversation = incoming conversation); BotFramework-WebChat#1175; "
        "botbuilder-js PR#4145.",
        "ACT A2080; BotFramework-WebChat#1175",
        "Send the reply to the conversation of the activity it answers; keep per-turn state per turn.",
    ),
    _rule(
        "BP-A07",
        "from-not-bot",
        ERROR,
        "`from.id` of an outbound activity is not the bot of this conversation (inbound `recipient.id`)",
        "A reply's `from` is the incoming activity's `recipient`: the bot's own account on that channel. "
        "Any other id makes the channel attribute the message to someone else or reject it; the typical "
        "cause is copying `from` instead of swapping `from`/`recipient`. A missing `from.id` is a warning "
        "(bots should include it and a channel may reject the activity); update bodies may leave it out. "
        "Source: DOCS-REST reply table "
        "(from = incoming recipient); ACT A2061, A7510.",
        "DOCS-REST reply table; ACT A2061, A7510",
        "Set `from` to the inbound activity's `recipient` (the SDK's conversation reference does).",
        alt_severity=WARNING,
        alt_when="`from.id` is missing",
    ),
    _rule(
        "BP-A08",
        "recipient-mismatch",
        WARNING,
        "`recipient.id` present but not a user of this conversation (e.g. the bot: copied, not swapped)",
        "Bots need not send `recipient` (ACT A2071), but every SDK does, copying the inbound `from`. A "
        "recipient that is the bot itself means `from`/`recipient` were copied instead of swapped; one that "
        "never took part in the conversation means the activity was built from another conversation's "
        "reference. Presence alone is not reported. Source: DOCS-REST reply table (recipient = incoming "
        "from); ACT A2071.",
        "DOCS-REST reply table; ACT A2071",
        "Set `recipient` to the inbound activity's `from`, or leave it out.",
    ),
    _rule(
        "BP-A09",
        "suggestion-without-recipient",
        ERROR,
        "a `suggestion` activity without `recipient.id`",
        "A suggestion is shown only to its recipient, and channels must drop one they cannot target, so a "
        "suggestion without `recipient` is lost (or, on a careless channel, shown to everyone). Source: ACT "
        "A2071 (suggestion exception), A6103.",
        "ACT A2071, A6103",
        "Set `recipient` to the user the suggestion is for.",
    ),
    _rule(
        "BP-A10",
        "missing-conversation",
        WARNING,
        "an outbound activity body (send, reply, buffered reply) without `conversation.id`",
        "Channels, bots and clients must include `conversation.id` in every activity. Over the Connector the "
        "URL still names the conversation, so channels usually cope, but the activity is incomplete for "
        "transcripts, middleware and any transport without a URL. Source: ACT A2080 (§Overall organization "
        "allows inference from the URL).",
        "ACT A2080",
        "Fill `conversation` from the conversation reference.",
    ),
    _rule(
        "BP-A11",
        "wrong-serviceUrl-host",
        ERROR,
        "a connector call sent to another base URL than the conversation's latest inbound `serviceUrl`",
        "Every Connector call is relative to the `serviceUrl` of the inbound activity, and that URL is "
        "regional and may change (Teams `/amer/` vs `/emea/`, GCC hosts, tenants moving geo). Calls through "
        'a stale or foreign serviceUrl fail with 403 "User is from different region", "redirected to the '
        "wrong geo\" or InvalidBotApiHost. A call made within a turn may also use that turn's own "
        'serviceUrl. Source: DOCS-REST api-reference "Base URI"; ACT A2304; botframework-sdk#6184; '
        "BotFramework-Services#339; botbuilder-js#3280.",
        "DOCS-REST Base URI; ACT A2304; botframework-sdk#6184; BotFramework-Services#339",
        "Store the latest inbound `serviceUrl` per conversation/user and send through it.",
    ),
    _rule(
        "BP-A12",
        "body-serviceUrl-drift",
        INFO,
        "body `serviceUrl` differs from the conversation's inbound `serviceUrl`",
        "Bots should not send `serviceUrl` at all and channels ignore it (the SDKs send it anyway, which is "
        "not reported). When it differs from the inbound one it shows the bot works from a stale or foreign "
        "conversation reference, which will matter for its next proactive send. botproxy's own rewritten "
        "serviceUrl counts as the original. Source: ACT A2302 (both).",
        "ACT A2302",
        "Refresh stored conversation references from each inbound activity.",
    ),
    _rule(
        "BP-A13",
        "channelId-mismatch",
        WARNING,
        "body `channelId` differs from the conversation's inbound `channelId`",
        "`channelId` is required and a channel may ignore or reject an activity with an unexpected one. A "
        "different value means the activity was built from another channel's conversation reference. "
        "Source: ACT A2020, A2022.",
        "ACT A2020, A2022",
        "Take `channelId` from the inbound activity of the same conversation.",
    ),
    _rule(
        "BP-A14",
        "bot-sets-id",
        INFO,
        "a send (or buffered reply) carrying its own `id`",
        "Bots should not include `id` in activities they generate; the channel assigns it and returns it "
        "in the ResourceResponse. The SDK clears it. Reported once per conversation. Source: ACT A2031; PY "
        "turn_context.py L192.",
        "ACT A2031",
        "Leave `id` unset on new activities; use the id the connector returns.",
        once_per_conversation=True,
    ),
    _rule(
        "BP-A15",
        "bot-sets-timestamp",
        INFO,
        "an outbound activity carrying `timestamp`",
        "Bots should not set `timestamp`; the channel stamps activities. The Python SDK's "
        "`Activity.create_reply` sets it anyway, so this is informational and reported once per "
        "conversation. Source: ACT A2041; PY _models_py3.py `create_reply`.",
        "ACT A2041",
        "Use `localTimestamp` for the bot's clock, or leave both unset.",
        once_per_conversation=True,
    ),
    _rule(
        "BP-A16",
        "bad-time-format",
        INFO,
        "`timestamp` not in UTC with `Z`, or `localTimestamp` without a UTC offset",
        "Timestamps must be ISO-8601 in UTC with an explicit `Z`, and `localTimestamp` should carry the "
        "sender's UTC offset; anything else is ambiguous to receivers. Reported once per conversation. "
        "Source: ACT A2043, A2050.",
        "ACT A2043, A2050",
        "Serialise `timestamp` as UTC `...Z` and `localTimestamp` with its `+hh:mm` offset.",
        once_per_conversation=True,
    ),
    _rule(
        "BP-A17",
        "locale-drift",
        INFO,
        "outbound `locale` differs from the inbound one (of its turn, else the latest), or is not BCP-47",
        "A reply's `locale` is the incoming activity's locale, and it describes the language of `text`. A "
        "different locale is either deliberate (fine, but worth seeing: the .NET and JS SDKs once overwrote "
        "it with the inbound one, the Python SDK still does) or copied from another conversation. Source: "
        "DOCS-REST reply table (locale = incoming locale); ACT A3020/A3021; botbuilder-dotnet#5820.",
        "DOCS-REST reply table; botbuilder-dotnet#5820",
        "Set `locale` to the language you actually answered in, as a BCP-47 tag.",
    ),
    _rule(
        "BP-A18",
        "missing-or-unknown-type",
        ERROR,
        "an outbound activity without `type` (error) or with a type the spec does not define (warning)",
        "`type` is required; a channel should reject types it does not understand, and clients ignore "
        "unknown ones, so such an activity is lost. (`delay` and `invokeResponse` are SDK-internal and must "
        "never reach the wire.) Source: ACT A2010, A2012-A2014.",
        "ACT A2010, A2012-A2014",
        "Set `type` to one of the activity types the channel understands (usually `message`).",
        alt_severity=WARNING,
        alt_when="the type is present but not defined by the spec",
    ),
    _rule(
        "BP-A19",
        "bot-sets-role/isGroup",
        INFO,
        "bot sends `role` in `from`/`recipient`/`conversation`, or `conversation.isGroup`/`conversationType`",
        "Senders should not send `role` on accounts, and bots should not send `conversation.isGroup` or "
        "`conversationType`; receivers ignore them. The SDKs copy them from the inbound activity, so this is "
        "informational and reported once per conversation. Source: ACT A7511, A7512, A2083.",
        "ACT A7511, A7512, A2083",
        "Send only `id` (and a meaningful `name`) in `from`, `recipient` and `conversation`.",
        once_per_conversation=True,
    ),
    _rule(
        "BP-A20",
        "empty-strings/empty-arrays",
        INFO,
        "empty string fields or empty `entities`/`attachments` arrays in an outbound activity",
        "Senders should not send empty strings and should omit empty `entities`; `Activity.create_reply` in "
        "the Python SDK adds empty arrays, so this is informational and reported once per conversation. "
        "Source: ACT A2004, A2100, A3050.",
        "ACT A2004, A2100, A3050",
        "Omit fields that have no value.",
        once_per_conversation=True,
    ),
    _rule(
        "BP-A21",
        "update-delete-foreign-activity",
        ERROR,
        "update/delete of an id the connector never returned to the bot for this conversation",
        "Bots may only update or delete their own activities, by the id the connector returned in the "
        "ResourceResponse of the send (or that an inbound activity's `replyToId` names). The user's inbound "
        "id, an id of another conversation or an invented one fails with 400 BadRequest, 404 "
        'ActivityNotFoundInConversation or "Invalid activity ID". Ids returned before the recording '
        "started are unknown to botproxy. Source: botbuilder-dotnet#4838; msteams-docs#6139; "
        "botbuilder-js#4396; botbuilder-python#127.",
        "botbuilder-dotnet#4838; msteams-docs#6139; botbuilder-js#4396",
        "Keep the id from the send's ResourceResponse and update/delete with it, in the same conversation.",
    ),
    _rule(
        "BP-A22",
        "update-id-mismatch",
        WARNING,
        "UpdateActivity whose body `id` differs from the URL's `{activityId}`",
        "UpdateActivity identifies the activity to replace by the URL, and the revised activity names it by "
        "`id` + `conversation`. A different body `id` means the bot is confused about which message it is "
        "editing. Source: CONN-SW Conversations_UpdateActivity; ACT §Message update.",
        "CONN-SW UpdateActivity; ACT Message update",
        "Set the revised activity's `id` to the id being updated.",
    ),
    _rule(
        "BP-A23",
        "update-after-delete",
        ERROR,
        "update/delete of an activity the bot already deleted",
        'Once a bot has deleted an activity, updating it fails (Teams answers 403 ServiceError "Unknown"), '
        "and deleting it again fails too. Usually two code paths own the same message. Source: "
        "BotFramework-Services#269.",
        "BotFramework-Services#269",
        "Forget an activity's id once you delete it.",
    ),
    _rule(
        "BP-A24",
        "teams-createconv-no-tenant",
        ERROR,
        "Teams CreateConversation (1:1 or group) without `tenantId` and without `channelData.tenant.id`",
        "Teams needs the tenant to create a conversation with a user: without it the call fails with 400 "
        '"Malformed tenant id" / "Could not parse tenant id". Posting into a Teams channel '
        "(`channelData.channel.id`), as `TeamsInfo.send_message_to_teams_channel` does, is exempt. Source: "
        'TEAMS-DOCS send-proactive-messages ("You must supply the user ID and the tenant ID"); '
        "botframework-sdk#2944; botbuilder-dotnet#2309; OfficeDev/BotBuilder-MicrosoftTeams-dotnet#5.",
        "TEAMS-DOCS send-proactive-messages; botframework-sdk#2944; botbuilder-dotnet#2309",
        "Pass `tenant_id` (and `channel_data.tenant.id`) from the inbound activity's conversation.",
    ),
    _rule(
        "BP-A25",
        "teams-createconv-wrong-tenant",
        ERROR,
        "Teams CreateConversation tenant differs from the tenant learnt for its members",
        "User ids and conversations belong to one tenant; creating a conversation for a user under another "
        'tenant fails ("Unexpected tenant id"). Source: TEAMS-DOCS request-headers-of-the-bot; '
        "OfficeDev/microsoft-teams-apps-faqplus#16; botbuilder-dotnet#2480.",
        "TEAMS-DOCS; OfficeDev/microsoft-teams-apps-faqplus#16; botbuilder-dotnet#2480",
        "Use the tenant of the inbound activity that introduced the user.",
    ),
    _rule(
        "BP-A26",
        "createconv-bad-parties",
        WARNING,
        "CreateConversation with another `bot.id` than the bot's, or no members (warning); members never "
        "seen in this session (info)",
        "A conversation is created between the bot and members it knows: `bot` must be the bot's own "
        "account and Teams user ids are per bot, so ids from another bot or invented ones fail. A member "
        "never seen in this session may simply come from a stored reference, so that is informational. "
        'Source: CONN-SW ConversationParameters; TEAMS-DOCS send-proactive-messages ("userId is unique to '
        'your bot ID"); MicrosoftDocs/bot-docs#1527.',
        "CONN-SW ConversationParameters; TEAMS-DOCS send-proactive-messages",
        "Create conversations with the bot's own account and member ids taken from inbound activities.",
        alt_severity=INFO,
        alt_when="a member was never seen in this session",
    ),
    _rule(
        "BP-A27",
        "teams-mention-mismatch",
        WARNING,
        "Teams: a mention entity whose `text` is not in the message text, or `<at>...</at>` without entity",
        "Teams renders a mention only when `text` contains the entity's `text` verbatim (`<at>Name</at>`) "
        'and rejects mismatches ("Mention entity does not match text", "Mention entity text is not '
        'valid"), e.g. after HTML-escaping a name with `&`. Source: TEAMS-DOCS includes/bots/user-mention; '
        "botbuilder-js#2111; OfficeDev/BotBuilder-MicrosoftTeams#199; BotFramework-Services#204.",
        "TEAMS-DOCS user-mention; botbuilder-js#2111",
        "Build the mention entity and the text from the same `<at>Name</at>` string.",
    ),
    _rule(
        "BP-A28",
        "expectReplies-misuse",
        WARNING,
        "bot sends `deliveryMode: expectReplies` to a channel (warning), on an invoke (error)",
        "Bots should not send expectReplies to channels, and invoke activities must not carry it unless the "
        "profile allows; channels that do not support it reject the activity. Source: ACT A3116, A3114.",
        "ACT A3116, A3114",
        "Leave `deliveryMode` unset (normal) on activities the bot sends.",
        alt_severity=ERROR,
        alt_when="the activity is an invoke",
    ),
    _rule(
        "BP-A29",
        "unsupported-route-for-channel",
        INFO,
        "GetConversations on a channel other than Direct Line / Web Chat; any 405 answer",
        "Only Direct Line and Web Chat support GetConversations, and a 405 means the channel does not "
        "support the operation at all; such calls fail on every channel like it. Source: DOCS-REST "
        "api-reference (GetConversations support; status 405).",
        "DOCS-REST api-reference",
        "Do not depend on this operation on this channel; keep your own record of conversations.",
    ),
    _rule(
        "BP-A30",
        "unknown-route",
        WARNING,
        "a request to a connector path that matches no Connector v3 / Teams operation",
        "The Connector API has a fixed set of routes (C1-C15 and the Teams ones); anything else under "
        "`/v3/conversations`, `/v3/attachments`, `/v3/teams` or `/v1/meetings` is a malformed URL (a typo, a "
        "missing or doubled id, a wrong method) and fails with 404/405. Source: CONN-SW (botframework-"
        "channel.json paths).",
        "CONN-SW paths",
        "Call the Connector through the SDK's ConnectorClient, or fix the URL and method.",
    ),
    _rule(
        "BP-A31",
        "send-to-unknown-conversation",
        INFO,
        "a call to a conversation never seen inbound nor created in this session (once per conversation)",
        "A conversation id the channel never sent and the bot never created is either a conversation "
        "reference stored before the recording started (fine) or an id from elsewhere: another bot, another "
        "channel, a typo, a Teams id missing its `;messageid=` part; those fail with 404 "
        "ConversationNotFound "
        "or 403 BotNotInConversationRoster. Informational because a correct bot sends proactively to stored "
        "references; the other checks cannot vouch for such a conversation. Source: ACT A7550; "
        "msteams-docs#9425; BotFramework-Services#190; MicrosoftDocs/bot-docs#1527 (botproxy addition, not "
        "in the protocol.md catalog).",
        "ACT A7550; msteams-docs#9425; BotFramework-Services#190",
        "Send only to conversation references saved from inbound activities or from CreateConversation.",
        once_per_conversation=True,
    ),
)

_SDK_CONTINUATION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[14][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_NO_REPLY_TO_CHANNELS = frozenset({"directline", "webchat"})
_BCP47 = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*")
_AT_TAG = re.compile(r"<at>.*?</at>", re.DOTALL)
_UTC_OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")
_ACCOUNTS = ("from", "recipient", "conversation")
_GROUP_FIELDS = ("isGroup", "conversationType")
EXPECTED_REPLIES = "expected_replies"
# Connector calls about a conversation that carry no activity: their base URL is still checked (BP-A11).
CONVERSATION_ROUTES = frozenset(
    {
        p.GET_MEMBERS,
        p.GET_MEMBER,
        p.DELETE_MEMBER,
        p.GET_PAGED_MEMBERS,
        p.GET_ACTIVITY_MEMBERS,
        p.UPLOAD_ATTACHMENT,
    }
)
_GET_CONVERSATIONS_CHANNELS = frozenset({"directline", "webchat"})


def is_sdk_continuation_id(reply_to_id: str, channel_id: str | None) -> bool:
    """An SDK's synthetic proactive id: botbuilder-python's uuid1/uuid4 where it sets replyToId, or the
    Agents SDKs' uuid4, which they set on Direct Line and Web Chat too."""
    if _SDK_CONTINUATION_ID.fullmatch(reply_to_id) is None:
        return False
    return channel_id not in _NO_REPLY_TO_CHANNELS or reply_to_id[14] == "4"


# -- activity checks --------------------------------------------------------------------------------


def check_path(ctx: CheckContext, a: dict[str, Any], body: dict[str, Any], conv: Conversation) -> None:
    """A01, A02, A03, A11: the URL (and base URL) of a send, reply, update or delete."""
    route = a["route"]
    if route != p.DELETE_ACTIVITY:
        body_conversation = p.conversation_id(body)
        if body_conversation is not None and body_conversation != a["url_conversation_id"]:
            ctx.emit(
                "BP-A01",
                a,
                conv.id,
                f"sent to conversation {a['url_conversation_id']!r} (URL) but the body says "
                f"conversation.id {body_conversation!r}",
                {"url_conversation_id": a["url_conversation_id"], "body_conversation_id": body_conversation},
            )
    if route == p.REPLY_TO_ACTIVITY and a["reply_to_id"] != a["url_activity_id"]:
        ctx.emit(
            "BP-A02",
            a,
            conv.id,
            f"ReplyToActivity URL names activity {a['url_activity_id']!r} but the body's replyToId is "
            f"{a['reply_to_id']!r}",
            {"url_activity_id": a["url_activity_id"], "reply_to_id": a["reply_to_id"]},
        )
    elif route == p.SEND_TO_CONVERSATION and a["reply_to_id"]:
        ctx.emit(
            "BP-A03",
            a,
            conv.id,
            f"replyToId {a['reply_to_id']!r} sent through SendToConversation instead of ReplyToActivity",
            {"reply_to_id": a["reply_to_id"]},
        )
    base = norm_url(a["service_url"])
    expected = conv.service_url
    if base and expected and base != expected:
        turn = conv.open_turns.get(a["turn_seq"]) if a["turn_seq"] is not None else None
        if turn is None or turn[0] != base:
            ctx.emit(
                "BP-A11",
                a,
                conv.id,
                f"sent through {base} but the conversation's latest inbound serviceUrl is {expected}",
                {"sent_to": base, "service_url": expected},
            )


def check_fields(
    ctx: CheckContext, a: dict[str, Any], body: dict[str, Any], conv: Conversation | None, channel_id: str | None
) -> None:
    """The body of an outbound activity: type, parties, channel, locale and style."""
    route = a["route"]
    cid = conv.id if conv is not None else a["conversation_id"]
    kind = a["type"]
    if kind is None:
        ctx.emit("BP-A18", a, cid, "the activity has no type", {})
    elif kind not in p.ACTIVITY_TYPES:
        ctx.emit(
            "BP-A18",
            a,
            cid,
            f"type {kind!r} is not an activity type the spec defines",
            {"type": kind},
            alt=True,
        )
    if kind == "suggestion" and not a["recipient_id"]:
        ctx.emit("BP-A09", a, cid, "a suggestion without recipient.id cannot be shown to anyone", {})
    # Update bodies are revisions; Teams documents them without conversation or from, so only the
    # activities a bot creates need them.
    creates = route != p.UPDATE_ACTIVITY
    if creates and route != p.CREATE_CONVERSATION and p.conversation_id(body) is None:
        ctx.emit("BP-A10", a, cid, "the body has no conversation.id", {})
    if conv is not None and conv.known:
        _check_parties(ctx, a, body, conv, creates)
    if a["delivery_mode"] == "expectReplies":
        if kind == "invoke":
            ctx.emit("BP-A28", a, cid, "an invoke sent with deliveryMode expectReplies", {}, alt=True)
        else:
            ctx.emit("BP-A28", a, cid, "the bot sent deliveryMode expectReplies to the channel", {})
    _check_style(ctx, a, body, conv, cid)
    if (channel_id or a["channel_id"]) == "msteams":
        _check_mentions(ctx, a, body, cid)


def _check_parties(
    ctx: CheckContext, a: dict[str, Any], body: dict[str, Any], conv: Conversation, creates: bool
) -> None:
    """A07, A08, A12, A13, A17 against what the inbound activities taught us."""
    cid = conv.id
    bot = conv.bot_id
    sender = a["from_id"]
    if bot is not None:
        if sender is None:
            if creates:
                ctx.emit("BP-A07", a, cid, f"from.id is missing (the bot is {bot!r})", {"bot_id": bot}, alt=True)
        elif sender != bot:
            ctx.emit(
                "BP-A07",
                a,
                cid,
                f"from.id {sender!r} is not the bot of this conversation ({bot!r})",
                {"from_id": sender, "bot_id": bot},
            )
    recipient = a["recipient_id"]
    if recipient is not None:
        if recipient == bot:
            ctx.emit(
                "BP-A08",
                a,
                cid,
                f"recipient.id {recipient!r} is the bot itself: from/recipient copied instead of swapped",
                {"recipient_id": recipient},
            )
        elif conv.users and recipient not in conv.users:
            ctx.emit(
                "BP-A08",
                a,
                cid,
                f"recipient.id {recipient!r} is not a user of this conversation",
                {"recipient_id": recipient, "users": sorted(conv.users)[:10]},
            )
    channel = a["channel_id"]
    if channel is not None and conv.channel_id is not None and channel != conv.channel_id:
        ctx.emit(
            "BP-A13",
            a,
            cid,
            f"channelId {channel!r} but the conversation is on {conv.channel_id!r}",
            {"channel_id": channel, "expected": conv.channel_id},
        )
    turn = conv.open_turns.get(a["turn_seq"]) if a["turn_seq"] is not None else None
    body_url = body.get("serviceUrl")
    if isinstance(body_url, str) and body_url and conv.service_url is not None:
        normal = norm_url(body_url)
        if normal != conv.service_url and (turn is None or normal != turn[0]):
            ctx.emit(
                "BP-A12",
                a,
                cid,
                f"body serviceUrl {normal} differs from the inbound {conv.service_url}",
                {"body_service_url": normal, "service_url": conv.service_url},
            )
    locale = a["locale"]
    if locale is not None:
        expected = turn[1] if turn is not None and turn[1] is not None else conv.locale
        if not _BCP47.fullmatch(locale):
            ctx.emit("BP-A17", a, cid, f"locale {locale!r} is not a BCP-47 language tag", {"locale": locale})
        elif expected is not None and locale.lower() != expected.lower():
            ctx.emit(
                "BP-A17",
                a,
                cid,
                f"locale {locale!r} differs from the inbound {expected!r}",
                {"locale": locale, "expected": expected},
            )


def _check_style(
    ctx: CheckContext, a: dict[str, Any], body: dict[str, Any], conv: Conversation | None, cid: str | None
) -> None:
    """A14, A15, A16, A19, A20: SHOULD-NOTs the SDKs themselves break; once per conversation."""
    route = a["route"]
    if body.get("id") and (route in p.SEND_ROUTES or route == EXPECTED_REPLIES):
        ctx.emit("BP-A14", a, cid, f"the bot set id {body['id']!r} itself", {"id": body["id"]}, conv=conv)
    timestamp = body.get("timestamp")
    if timestamp is not None:
        ctx.emit("BP-A15", a, cid, "the bot set timestamp", {"timestamp": timestamp}, conv=conv)
        if isinstance(timestamp, str) and not (timestamp.endswith(("Z", "z")) or timestamp.endswith("+00:00")):
            ctx.emit(
                "BP-A16",
                a,
                cid,
                f"timestamp {timestamp!r} is not UTC with Z",
                {"timestamp": timestamp},
                conv=conv,
            )
    local = body.get("localTimestamp")
    if isinstance(local, str) and not _UTC_OFFSET.search(local):
        ctx.emit(
            "BP-A16",
            a,
            cid,
            f"localTimestamp {local!r} has no UTC offset",
            {"localTimestamp": local},
            conv=conv,
        )
    extras = []
    empties = []
    for name in _ACCOUNTS:
        account = body.get(name)
        if isinstance(account, dict):
            if "role" in account:
                extras.append(f"{name}.role")
            empties += [f"{name}.{k}" for k, v in account.items() if v == ""]
    conversation = body.get("conversation")
    if isinstance(conversation, dict):
        extras += [f"conversation.{k}" for k in _GROUP_FIELDS if k in conversation]
    if extras:
        ctx.emit("BP-A19", a, cid, "the bot sent " + ", ".join(extras), {"fields": extras}, conv=conv)
    empties += [k for k, v in body.items() if v == "" or (v == [] and k in ("entities", "attachments"))]
    if empties:
        ctx.emit("BP-A20", a, cid, "empty " + ", ".join(empties), {"fields": empties}, conv=conv)


def _check_mentions(ctx: CheckContext, a: dict[str, Any], body: dict[str, Any], cid: str | None) -> None:
    """A27: Teams mention entities must match `<at>...</at>` in the text, both ways."""
    text = a["text"] or ""
    entities = body.get("entities")
    mentions = (
        [e for e in entities if isinstance(e, dict) and e.get("type") == "mention"]
        if isinstance(entities, list)
        else []
    )
    entity_texts = set()
    for mention in mentions:
        mention_text = mention.get("text")
        entity_texts.add(mention_text)
        if not isinstance(mention_text, str) or not mention_text or mention_text not in text:
            ctx.emit(
                "BP-A27",
                a,
                cid,
                f"mention entity text {mention_text!r} does not occur in the message text",
                {"mention_text": mention_text},
            )
    for tag in _AT_TAG.findall(text):
        if tag not in entity_texts:
            ctx.emit("BP-A27", a, cid, f"{tag!r} in the text has no mention entity", {"mention_text": tag})


# -- replyToId --------------------------------------------------------------------------------------


def check_reply_to(ctx: CheckContext, a: dict[str, Any], conv: Conversation, channel_id: str | None) -> bool:
    """A04, A05, A06 for the replyToId of a send or buffered reply; True when it names nothing known."""
    reply_to = a["reply_to_id"]
    state = ctx.state
    elsewhere = state.ids.elsewhere(conv, reply_to)
    if elsewhere is not None:
        other = state.by_index[elsewhere[0]]
        if other.id == a["conversation_id"]:  # body and replyToId agree, the URL does not: BP-A01 says so
            return False
        if elsewhere[1] & INBOUND:
            ctx.emit(
                "BP-A06",
                a,
                conv.id,
                f"replies to {reply_to!r}, a message of conversation {other.id!r}, but is sent to {conv.id!r}",
                {"reply_to_id": reply_to, "reply_to_conversation_id": other.id},
            )
        else:
            ctx.emit(
                "BP-A05",
                a,
                conv.id,
                f"replyToId {reply_to!r} is an activity of conversation {other.id!r}, not of {conv.id!r}",
                {"reply_to_id": reply_to, "reply_to_conversation_id": other.id},
            )
        return False
    if not conv.known:  # nothing to compare with: BP-A31 already said so
        return False
    if is_sdk_continuation_id(reply_to, channel_id):
        ctx.emit(
            "BP-A04",
            a,
            conv.id,
            f"replyToId {reply_to!r} is the SDK's synthetic continuation id (proactive send); the channel "
            f"never issued it",
            {"reply_to_id": reply_to, "sdk_continuation_id": True},
            alt=True,
        )
        return False
    ctx.emit(
        "BP-A04",
        a,
        conv.id,
        f"replyToId {reply_to!r} names no activity of this conversation",
        {"reply_to_id": reply_to},
    )
    return True


# -- update / delete ----------------------------------------------------------------------------------


def check_edit(ctx: CheckContext, a: dict[str, Any], body: dict[str, Any], conv: Conversation) -> str | None:
    """A21, A22, A23 for an update or delete. Returns the target id when nobody has returned it *yet*:
    a send in flight may still return it (BP-O07), else it is foreign (BP-A21, see `foreign_edit`)."""
    target = a["url_activity_id"]
    if a["route"] == p.UPDATE_ACTIVITY:
        body_id = body.get("id")
        if body_id is not None and body_id != target:
            ctx.emit(
                "BP-A22",
                a,
                conv.id,
                f"updates {target!r} (URL) but the body's id is {body_id!r}",
                {"url_activity_id": target, "body_id": body_id},
            )
    if not target:
        return None
    verb = "updates" if a["route"] == p.UPDATE_ACTIVITY else "deletes"
    flags = ctx.state.ids.flags(conv, target)
    if flags & DELETED:
        ctx.emit("BP-A23", a, conv.id, f"{verb} {target!r}, which the bot already deleted", {"activity_id": target})
    elif flags & (SENT | REFERENCED):
        return None
    elif flags & INBOUND:
        ctx.emit(
            "BP-A21",
            a,
            conv.id,
            f"{verb} {target!r}, an activity the channel sent to the bot, not one of the bot's own",
            {"activity_id": target, "owner": "inbound"},
        )
    else:
        elsewhere = ctx.state.ids.elsewhere(conv, target)
        if elsewhere is not None:
            other = ctx.state.by_index[elsewhere[0]]
            ctx.emit(
                "BP-A21",
                a,
                conv.id,
                f"{verb} {target!r}, an activity of conversation {other.id!r}",
                {"activity_id": target, "owner": other.id},
            )
        else:
            return target
    return None


def foreign_edit(ctx: CheckContext, seq: int, conv: Conversation, target: str, route: str) -> None:
    verb = "updates" if route == p.UPDATE_ACTIVITY else "deletes"
    ctx.emit(
        "BP-A21",
        seq,
        conv.id,
        f"{verb} {target!r}, an id the connector never returned to the bot",
        {"activity_id": target},
    )


# -- create conversation ------------------------------------------------------------------------------


def _json_object(text: Any) -> dict[str, Any]:
    if not isinstance(text, str) or not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _account_id(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("id"), str) and value["id"]:
        return str(value["id"])
    return None


def check_create(ctx: CheckContext, exchange: dict[str, Any], activities: list[dict[str, Any]]) -> None:
    """A11, A24, A25, A26 for a CreateConversation, and learn the conversation it created.

    Decided when the exchange completes, because the ConversationParameters (tenant, bot, members) are
    only in the exchange's request body, and the new conversation id only in its response."""
    state = ctx.state
    params = _json_object(exchange["request_body"])
    seq = activities[0]["seq"] if activities else None
    base = request_base(exchange["url"])
    nested = params["activity"] if isinstance(params.get("activity"), dict) else {}
    channel = p.str_field(nested, "channelId") or (state.service_channels.get(base) if base else None)
    channel_data = params.get("channelData")
    tenant = p.str_field(params, "tenantId") or channel_data_tenant(channel_data)
    channel_post = isinstance(channel_data, dict) and _account_id(channel_data.get("channel")) is not None
    members = (
        [m for m in (_account_id(m) for m in params.get("members") or []) if m is not None]
        if isinstance(params.get("members"), list)
        else []
    )
    bot = _account_id(params.get("bot"))
    status = exchange["status"] or 0
    response = _json_object(exchange["response_body"]) if status < 300 else {}
    new_id = p.str_field(response, "id")
    where = {"exchange_seq": exchange["seq"]}
    if channel == "msteams":
        if not tenant and not channel_post:
            ctx.emit(
                "BP-A24",
                seq,
                new_id,
                "Teams CreateConversation without tenantId or channelData.tenant.id",
                {**where, "members": members},
            )
        for member in members if tenant else ():
            known = state.users.get(member)
            if known is not None and known[1] is not None and known[1] != tenant:
                ctx.emit(
                    "BP-A25",
                    seq,
                    new_id,
                    f"tenant {tenant!r} but member {member!r} belongs to tenant {known[1]!r}",
                    {**where, "member": member, "tenant": tenant, "expected": known[1]},
                )
    if bot is not None and state.bots and bot not in state.bots:
        ctx.emit(
            "BP-A26",
            seq,
            new_id,
            f"bot.id {bot!r} is not the bot ({', '.join(sorted(state.bots))})",
            {**where, "bot_id": bot, "bots": sorted(state.bots)},
        )
    if not members and not channel_post:
        ctx.emit("BP-A26", seq, new_id, "CreateConversation without members", where)
    unseen = [m for m in members if m not in state.users]
    if unseen:
        ctx.emit(
            "BP-A26",
            seq,
            new_id,
            f"member(s) {', '.join(map(repr, unseen))} never seen in this session",
            {**where, "members": unseen},
            alt=True,
        )
    for member in members:
        known = state.users.get(member)
        if base and known is not None and known[0] is not None and known[0] != base:
            ctx.emit(
                "BP-A11",
                seq,
                new_id,
                f"creates a conversation with {member!r} through {base}, but that "
                f"user's latest inbound serviceUrl is {known[0]}",
                {**where, "sent_to": base, "service_url": known[0], "member": member},
            )
            break
    if new_id is not None:
        conv = state.conversation(new_id)
        conv.known = True
        # The SDK sends into the new conversation through the serviceUrl it created it with.
        conv.service_url = base or norm_url(p.str_field(response, "serviceUrl"))
        conv.bot_id = bot or conv.bot_id or (next(iter(state.bots)) if len(state.bots) == 1 else None)
        conv.users.update(members)
        conv.channel_id = channel or conv.channel_id
        conv.tenant = tenant or conv.tenant
        created_activity = p.str_field(response, "activityId")
        if created_activity:
            state.ids.add(conv, created_activity, SENT)


# -- calls to the Connector -----------------------------------------------------------------------


def check_known(ctx: CheckContext, a: dict[str, Any], conv: Conversation) -> None:
    """BP-A31: an outbound call to a conversation never seen inbound nor created."""
    if not conv.known:
        ctx.emit(
            "BP-A31",
            a,
            conv.id,
            f"conversation {conv.id!r} was never seen inbound nor created in this session",
            {},
            conv=conv,
        )


def unknown_operation(ctx: CheckContext, exchange: dict[str, Any], cid: str | None) -> None:
    """BP-A30: a call to the Connector's host that is no Connector operation."""
    ctx.emit(
        "BP-A30",
        None,
        cid,
        f"{exchange['method']} {_path(exchange['url'])} is no Connector operation",
        {"exchange_seq": exchange["seq"], "method": exchange["method"], "status": exchange["status"]},
    )


def check_base(ctx: CheckContext, exchange: dict[str, Any], conv: Conversation) -> None:
    """BP-A11 for a call about a conversation that carries no activity (members, attachments)."""
    base = request_base(exchange["url"])
    if (
        base
        and conv.service_url
        and base != conv.service_url
        and all(url != base for url, _ in conv.open_turns.values())
    ):
        ctx.emit(
            "BP-A11",
            None,
            conv.id,
            f"{exchange['route']} sent through {base} but the conversation's "
            f"latest inbound serviceUrl is {conv.service_url}",
            {"exchange_seq": exchange["seq"], "sent_to": base, "service_url": conv.service_url},
        )


def check_supported(
    ctx: CheckContext, exchange: dict[str, Any], activities: list[dict[str, Any]], cid: str | None
) -> None:
    """BP-A29: an operation the channel does not support (GetConversations off Direct Line, a 405)."""
    route = exchange["route"]
    if route == p.GET_CONVERSATIONS:
        channel = ctx.state.service_channels.get(request_base(exchange["url"]) or "")
        if channel is not None and channel not in _GET_CONVERSATIONS_CHANNELS:
            ctx.emit(
                "BP-A29",
                None,
                None,
                f"GetConversations on channel {channel!r}; only Direct Line and Web Chat support it",
                {"exchange_seq": exchange["seq"], "channel_id": channel},
            )
    if exchange["status"] == 405:
        ctx.emit(
            "BP-A29",
            activities[0] if activities else None,
            cid,
            f"the channel answered 405: it does not support {route}",
            {"exchange_seq": exchange["seq"], "route": route},
        )


def _path(url: str) -> str:
    rest = url.split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1] if "/" in rest else "/"
