"""Agents-era rules (issue 12): what the Microsoft 365 Agents SDKs and Teams' AI features added to the
wire besides streaming: the AI-generated-content entity and citations, the feedback loop, Microsoft 365
Copilot as a sub-channel of Teams (`ProductInfo`), agentic identities, and Teams' 15-second retry.
"""

from __future__ import annotations

import re
from typing import Any

from ..model import Direction
from ..wire import streams as s
from .base import CheckContext
from .rules import ERROR, WARNING, Rule, rule_maker
from .state import Conversation
from .streaming import AGENTIC_ROLES

MAX_CITATIONS = 20
NAME_MAX, ABSTRACT_MAX, KEYWORDS_MAX, KEYWORD_MAX = 80, 160, 3, 28
TEAMS_RETRY_AFTER = 15.0  # seconds; Teams sends the activity again when the bot has not answered by then
FEEDBACK_TYPES = frozenset({"default", "custom"})

_AI_DOC = "TEAMS-DOCS bot-messages-ai-generated-content"
_CITATION_REF = re.compile(r"\[(\d+)\]")

_rule = rule_maker(__name__)


RULES: tuple[Rule, ...] = (
    _rule(
        "BP-M01",
        "ai-entity-malformed",
        ERROR,
        "an AI-generated-content entity Teams rejects: two root `https://schema.org/Message` entities, "
        "more than 20 citations, an empty `appearance` (errors); a `[n]` without citation n, a name over "
        "80 or an abstract over 160 characters, too many or too long keywords (warnings)",
        "Teams' AI label, citations and sensitivity label live in one root entity of type "
        "https://schema.org/Message. Teams answers 400 to a second root entity, to more than 20 "
        "citations and to a citation without appearance; a `[n]` in the text shows as a citation only "
        "when a citation has position n, and names (80), abstracts (160) and keywords (3 of 28 "
        "characters) have documented limits. The Agents SDKs cut abstracts "
        "at 480 (Python, .NET) or 477 (JavaScript) characters, above the documented 160. Source: "
        "TEAMS-DOCS bot-messages-ai-generated-content; AGENTS-PY ai_entity.py.",
        f"{_AI_DOC}; AGENTS-PY ai_entity.py",
        "Send one schema.org/Message entity with at most 20 citations, one for each [n] in the text.",
        alt_severity=WARNING,
        alt_when="a length, a keyword or a `[n]` reference",
    ),
    _rule(
        "BP-M02",
        "feedback-loop-misplaced",
        WARNING,
        "a feedback loop Teams does not read: `channelData.feedbackLoop` without type `default`/`custom`, "
        "or the feedback settings only in the streaminfo entity",
        "Teams shows its thumbs-up/down buttons for `channelData.feedbackLoop: {type: default|custom}` "
        "(or the older `channelData.feedbackLoopEnabled: true`). Another type is ignored. Some Agents "
        "SDK for Python releases put `feedbackLoop`/`feedbackLoopEnabled` inside the final's streaminfo "
        "entity instead, where Teams does not document it: check the buttons show. Source: TEAMS-DOCS "
        "bot-messages-ai-generated-content (feedback buttons); AGENTS-PY streaming_response.py.",
        f"{_AI_DOC}; AGENTS-PY streaming_response.py",
        'Set `channelData.feedbackLoop = {type: "default"}` (or `custom`) on the final message.',
    ),
    _rule(
        "BP-M03",
        "channel-productinfo-conflict",
        WARNING,
        "a `ProductInfo` entity that contradicts the `channelId` (not msteams, another sub-channel), or more than one",
        "Microsoft 365 Copilot is channel `msteams` with a ProductInfo entity `COPILOT` (the SDKs write "
        "`msteams:COPILOT`). The Agents SDK for Python raises ChannelIdProductInfoConflict on an activity "
        "whose channelId and ProductInfo disagree, and the JavaScript SDK keeps only one ProductInfo, so "
        "the bot and the channel disagree about where the conversation is. botproxy checks msteams with "
        "ProductInfo COPILOT as its own channel profile. Source: AGENTS-PY activity.py "
        "(ChannelIdProductInfoConflict); AGENTS-JS productInfo.ts; AGENTS-NET Channels.cs.",
        "AGENTS-PY activity.py; AGENTS-JS productInfo.ts; AGENTS-NET Channels.cs",
        "Send one ProductInfo entity, matching the channelId's sub-channel (msteams + COPILOT).",
    ),
    _rule(
        "BP-M04",
        "teams-turn-too-slow",
        WARNING,
        "the bot answered a Teams inbound activity after more than 15 seconds",
        "Teams waits 15 seconds for the bot's HTTP answer and then sends the activity again: the bot "
        "sees the same message twice and answers twice (duplicate turns). Long work belongs after the "
        "answer (proactively) or in a stream. Source: MicrosoftDocs/msteams-docs#6084; "
        "microsoft/botbuilder-dotnet#5005.",
        "MicrosoftDocs/msteams-docs#6084; microsoft/botbuilder-dotnet#5005",
        "Answer Teams within 15 s: acknowledge, then continue proactively or stream the answer.",
    ),
    _rule(
        "BP-M05",
        "agentic-account-incomplete",
        WARNING,
        "an agentic account (role agenticAppInstance, agenticInstance or agenticUser) without its "
        "`agenticAppId` (or, for agenticUser, `agenticUserId`)",
        "Agentic identities name the agent instance (`agenticAppId`) and, for an agentic user, the user "
        "(`agenticUserId`); without them the SDKs cannot get the agent's token and the request fails. "
        "The SDKs spell the instance role agenticAppInstance, the Activity spec agenticInstance: both "
        "are accepted. Source: ACT Channel account (agentic roles); AGENTS-PY role_types.py; "
        "AGENTS-JS roleTypes.ts.",
        "ACT Channel account; AGENTS-PY role_types.py; AGENTS-JS roleTypes.ts",
        "Fill agenticAppId (and agenticUserId for agenticUser) on agentic accounts.",
    ),
)


# -- outbound -----------------------------------------------------------------------------------------


def on_outbound(ctx: CheckContext, a: dict[str, Any], body: dict[str, Any], conv: Conversation | None) -> None:
    """M01, M02, M03, M05 for what the bot sends (send, update, buffered reply)."""
    cid = conv.id if conv is not None else a["conversation_id"]
    if body.get("entities"):
        _check_ai(ctx, a, body, cid)
        check_product_info(ctx, a, body, cid)
    channel_data = body.get("channelData")
    if isinstance(channel_data, dict) or body.get("entities"):
        _check_feedback(ctx, a, body, cid)
    check_accounts(ctx, a, body, cid)


def _check_ai(ctx: CheckContext, a: dict[str, Any], body: dict[str, Any], cid: str | None) -> None:
    roots = s.ai_roots(body)
    if not roots:
        return
    if len(roots) > 1:
        ctx.emit("BP-M01", a, cid, f"{len(roots)} root https://schema.org/Message entities", {"roots": len(roots)})
    citations = [c for root in roots for c in (root.get("citation") or []) if isinstance(c, dict)]
    if len(citations) > MAX_CITATIONS:
        ctx.emit("BP-M01", a, cid, f"{len(citations)} citations (Teams allows 20)", {"citations": len(citations)})
    positions = set()
    problems = []
    for citation in citations:
        positions.add(citation.get("position"))
        appearance = citation.get("appearance")
        if not isinstance(appearance, dict) or not appearance:
            ctx.emit(
                "BP-M01",
                a,
                cid,
                f"citation {citation.get('position')!r} has no appearance",
                {"position": citation.get("position")},
            )
            continue
        for key, limit in (("name", NAME_MAX), ("abstract", ABSTRACT_MAX)):
            value = appearance.get(key)
            if isinstance(value, str) and len(value) > limit:
                problems.append(f"citation {citation.get('position')} {key} of {len(value)} characters (max {limit})")
        keywords = appearance.get("keywords")
        if isinstance(keywords, list) and (
            len(keywords) > KEYWORDS_MAX or any(isinstance(k, str) and len(k) > KEYWORD_MAX for k in keywords)
        ):
            problems.append(f"citation {citation.get('position')} keywords over 3 x 28 characters")
    text = a["text"] or ""
    missing = sorted({int(n) for n in _CITATION_REF.findall(text)} - {p for p in positions if isinstance(p, int)})
    if missing:
        problems.append("no citation at position " + ", ".join(map(str, missing)) + " for [n] in the text")
    if problems:
        ctx.emit("BP-M01", a, cid, "; ".join(problems), {"problems": problems}, alt=True)


def _check_feedback(ctx: CheckContext, a: dict[str, Any], body: dict[str, Any], cid: str | None) -> None:
    channel_data = body.get("channelData")
    loop = channel_data.get("feedbackLoop") if isinstance(channel_data, dict) else None
    if loop is not None:
        kind = loop.get("type") if isinstance(loop, dict) else None
        if kind not in FEEDBACK_TYPES:
            ctx.emit(
                "BP-M02",
                a,
                cid,
                f"channelData.feedbackLoop type {kind!r} (Teams reads default or custom)",
                {"type": kind},
            )
    places = s.feedback_places(body)
    if places == ["streaminfo entity"] and s.stream_part(body) is not None:
        ctx.emit(
            "BP-M02",
            a,
            cid,
            "feedback loop only in the streaminfo entity, not in channelData (some Agents SDK for Python "
            "releases put it there)",
            {"places": places},
        )


def check_product_info(ctx: CheckContext, a: dict[str, Any], body: dict[str, Any], cid: str | None) -> None:
    products = s.product_info(body)
    if not products:
        return
    channel = a["channel_id"] or ""
    base, _, sub = channel.partition(":")
    problem = None
    if len(products) > 1:
        problem = f"{len(products)} ProductInfo entities ({', '.join(products)})"
    elif base.lower() != "msteams":
        problem = f"ProductInfo {products[0]!r} on channel {channel!r} (it is a sub-channel of msteams)"
    elif sub and sub.upper() != products[0].upper():
        problem = f"channelId {channel!r} but ProductInfo {products[0]!r}"
    if problem:
        ctx.emit("BP-M03", a, cid, problem, {"channel_id": channel, "product_info": products})


def check_accounts(ctx: CheckContext, a: dict[str, Any], body: dict[str, Any], cid: str | None) -> None:
    for name in ("from", "recipient"):
        account = body.get(name)
        if not isinstance(account, dict) or account.get("role") not in AGENTIC_ROLES:
            continue
        role = account["role"]
        needed = ["agenticAppId"] + (["agenticUserId"] if role == "agenticUser" else [])
        missing = [key for key in needed if not account.get(key)]
        if missing:
            ctx.emit(
                "BP-M05",
                a,
                cid,
                f"{name} has role {role!r} but no {' or '.join(missing)}",
                {"account": name, "role": role, "missing": missing},
            )


# -- inbound ------------------------------------------------------------------------------------------


def on_inbound(ctx: CheckContext, a: dict[str, Any], body: dict[str, Any], conv: Conversation) -> None:
    """M03 and M05 on what the channel sends."""
    if body.get("entities"):
        check_product_info(ctx, a, body, conv.id)
    check_accounts(ctx, a, body, conv.id)


def on_inbound_done(ctx: CheckContext, exchange: dict[str, Any], activities: list[dict[str, Any]]) -> None:
    """M04: a Teams inbound answered after Teams' 15 s retry deadline."""
    if not activities or activities[0]["direction"] != Direction.TO_BOT:
        return
    inbound = activities[0]
    started, ended = exchange.get("started_at"), exchange.get("ended_at")
    if started is None or ended is None or not (inbound["channel_id"] or "").lower().startswith("msteams"):
        return
    if ended - started > TEAMS_RETRY_AFTER:
        ctx.emit(
            "BP-M04",
            inbound,
            inbound["conversation_id"],
            f"answered after {ended - started:.1f}s; Teams retries after 15 s (a duplicate turn)",
            {"duration_s": round(ended - started, 3)},
        )
