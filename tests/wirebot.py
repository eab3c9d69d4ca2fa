"""A bot that speaks the Bot Connector wire format by hand (aiohttp, no SDK) and makes one mistake on
command: an inbound message `mistake:BP-A01` makes it break rule BP-A01 in its answer; anything else gets a
correct reply, built the way the docs' reply table says (and the SDK does).

It answers each inbound POST only after its outbound calls complete, like the SDK, except where the
mistake is about timing. Sends that must overlap really overlap (two POSTs under asyncio.gather); where
a race must go one way, the bot is handed the test's connector stand-in (`tests.checkkit.MiniConnector`)
and holds or releases its answers, so the order of events is decided by awaits, not by sleeps.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from checkkit import MiniConnector

from botproxy.standins.server import serve

log = logging.getLogger(__name__)

Activity = dict[str, Any]


def q(value: str) -> str:
    return quote(value, safe="")


class WireBot:
    """`url` is its messaging endpoint once started. `failures` lists what went wrong inside it."""

    def __init__(self, connector: MiniConnector | None = None) -> None:
        self.connector = connector
        self.last: dict[str, Activity] = {}  # conversation -> latest inbound activity
        self.previous: dict[str, Activity] = {}  # conversation -> the one before it
        self.sent: dict[str, list[str]] = {}  # conversation -> ids the connector returned
        self.failures: list[str] = []
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.mistakes: dict[str, Callable[[Activity], Awaitable[Any]]] = {
            name.replace("_", "-"): getattr(self, name) for name in dir(self) if name.startswith("BP_")
        }

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/api/messages", self._on_activity)
        self._runner, port = await serve(app)
        self.url = f"http://127.0.0.1:{port}/api/messages"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
        return self.url

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the turn -------------------------------------------------------------------------------------

    async def _on_activity(self, request: web.Request) -> web.Response:
        activity: Activity = await request.json()
        conv = activity["conversation"]["id"]
        if conv in self.last:
            self.previous[conv] = self.last[conv]
        self.last[conv] = activity
        text = activity.get("text") or ""
        try:
            if text.startswith("mistake:"):
                result = await self.mistakes[text.removeprefix("mistake:")](activity)
            elif activity.get("deliveryMode") == "expectReplies":
                result = {"activities": [self.reply_body(activity, f"You said: {text}")]}
            elif activity.get("type") == "message":
                await self.reply(activity, self.reply_body(activity, f"You said: {text}"))
                result = None
            else:
                result = None
        except Exception as exc:  # the test asserts there were none
            log.exception("wire bot failed")
            self.failures.append(f"{text}: {exc!r}")
            return web.Response(status=500)
        if isinstance(result, dict):
            return web.json_response(result)
        return web.Response(status=200)

    # -- the wire ---------------------------------------------------------------------------------------

    def reply_body(self, to: Activity, text: str | None, **fields: Any) -> Activity:
        """A reply as the docs' reply table has it: swap from/recipient, same conversation, replyToId."""
        body: Activity = {
            "type": "message",
            "serviceUrl": to["serviceUrl"],
            "channelId": to["channelId"],
            "from": to["recipient"],
            "recipient": to["from"],
            "conversation": to["conversation"],
            "replyToId": to["id"],
            "locale": to.get("locale"),
            "text": text,
        }
        body.update(fields)
        return {k: v for k, v in body.items() if v is not None}

    async def call(self, method: str, service_url: str, path: str, body: Any = None) -> Any:
        assert self._session is not None
        url = service_url.rstrip("/") + "/" + path
        async with self._session.request(method, url, json=body) as resp:
            data = await resp.read()
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path} -> {resp.status} {data[:200]!r}")
            return json.loads(data) if data else None

    async def reply(
        self,
        to: Activity,
        body: Activity,
        *,
        conv: str | None = None,
        activity_id: str | None = None,
        service_url: str | None = None,
    ) -> str:
        """POST a reply (or, without replyToId, a send) and remember the id the connector returned."""
        conv = conv or body.get("conversation", {}).get("id") or to["conversation"]["id"]
        target = activity_id or body.get("replyToId")
        path = f"v3/conversations/{q(conv)}/activities" + (f"/{q(target)}" if target else "")
        answer = await self.call("POST", service_url or to["serviceUrl"], path, body)
        self.sent.setdefault(conv, []).append(answer["id"])
        return str(answer["id"])

    def other(self, activity: Activity) -> Activity:
        """The latest inbound activity of another conversation (on the same channel service)."""
        mine = activity["conversation"]["id"]
        return next(
            a for c, a in self.last.items() if c != mine and a["serviceUrl"] == activity["serviceUrl"]
        )

    # -- mistakes, one per rule ---------------------------------------------------------------------------

    async def BP_A01(self, a: Activity) -> None:  # noqa: N802
        await self.reply(
            a, self.reply_body(a, "to the URL's conversation"), conv=a["conversation"]["id"] + "-x"
        )

    async def BP_A02(self, a: Activity) -> None:  # noqa: N802
        await self.reply(a, self.reply_body(a, "threaded elsewhere"), activity_id="some-other-id")

    async def BP_A04(self, a: Activity) -> None:  # noqa: N802
        await self.reply(a, self.reply_body(a, "to nothing", replyToId="not-an-activity"))

    async def BP_A05(self, a: Activity) -> None:  # noqa: N802
        foreign = self.sent[self.other(a)["conversation"]["id"]][-1]
        await self.reply(a, self.reply_body(a, "to a bot message elsewhere", replyToId=foreign))

    async def BP_A06(self, a: Activity) -> None:  # noqa: N802
        await self.reply(a, self.reply_body(a, "answer to someone else", replyToId=self.other(a)["id"]))

    async def BP_A07(self, a: Activity) -> None:  # noqa: N802
        await self.reply(a, self.reply_body(a, "from copied", **{"from": a["from"]}))

    async def BP_A08(self, a: Activity) -> None:  # noqa: N802
        await self.reply(a, self.reply_body(a, "recipient copied", recipient=a["recipient"]))

    async def BP_A11(self, a: Activity) -> None:  # noqa: N802
        other = next(x for c, x in self.last.items() if x["serviceUrl"] != a["serviceUrl"])
        await self.reply(a, self.reply_body(a, "through the other region"), service_url=other["serviceUrl"])

    async def BP_A13(self, a: Activity) -> None:  # noqa: N802
        await self.reply(a, self.reply_body(a, "another channel", channelId="slack"))

    async def BP_A18(self, a: Activity) -> None:  # noqa: N802
        await self.reply(a, self.reply_body(a, "no type", type=None))

    async def BP_A21(self, a: Activity) -> None:  # noqa: N802
        conv = a["conversation"]["id"]
        await self.call(
            "PUT",
            a["serviceUrl"],
            f"v3/conversations/{q(conv)}/activities/{q(a['id'])}",
            self.reply_body(a, "edited the user's message", id=a["id"]),
        )

    async def BP_A23(self, a: Activity) -> None:  # noqa: N802
        conv = a["conversation"]["id"]
        sent = await self.reply(a, self.reply_body(a, "short-lived"))
        path = f"v3/conversations/{q(conv)}/activities/{q(sent)}"
        await self.call("DELETE", a["serviceUrl"], path)
        await self.call("PUT", a["serviceUrl"], path, self.reply_body(a, "too late", id=sent))

    async def BP_A24(self, a: Activity) -> None:  # noqa: N802
        params = {
            "isGroup": False,
            "bot": a["recipient"],
            "members": [a["from"]],
            "activity": {"type": "message", "text": "hello in private"},
        }
        await self.call("POST", a["serviceUrl"], "v3/conversations", params)

    async def BP_A27(self, a: Activity) -> None:  # noqa: N802
        mention = {"type": "mention", "text": "<at>Ada</at>", "mentioned": a["from"]}
        await self.reply(a, self.reply_body(a, "hi <at>Ada &amp; co</at>", entities=[mention]))

    async def BP_A31(self, a: Activity) -> None:  # noqa: N802
        body = self.reply_body(a, "to nowhere", conversation={"id": "never-seen"}, replyToId=None)
        await self.reply(a, body)

    async def BP_O01(self, a: Activity) -> None:  # noqa: N802
        # Really concurrent: the connector holds the first answer until the second request is in.
        assert self.connector is not None
        self.connector.hold("o1-first", until="o1-second")
        await asyncio.gather(
            self.reply(a, self.reply_body(a, "o1-first")), self.reply(a, self.reply_body(a, "o1-second"))
        )

    async def BP_O02(self, a: Activity) -> None:  # noqa: N802
        # The first send is held at the connector; the second starts after it and completes first.
        assert self.connector is not None
        self.connector.hold("o2-first")
        first = asyncio.create_task(self.reply(a, self.reply_body(a, "o2-first")))
        await self.connector.arrived("o2-first")
        await self.reply(a, self.reply_body(a, "o2-second"))
        self.connector.release("o2-first")
        await first

    async def BP_O03(self, a: Activity) -> None:  # noqa: N802
        await self.reply(a, self.reply_body(a, "to what comes next", replyToId="future-1"))

    async def BP_O04(self, a: Activity) -> None:  # noqa: N802
        earlier = self.previous[a["conversation"]["id"]]  # its turn is long over
        await self.reply(earlier, self.reply_body(earlier, "about your earlier message"))

    async def BP_O05(self, a: Activity) -> dict[str, Any]:  # noqa: N802
        await self.reply(a, self.reply_body(a, "async although expectReplies"))
        return {"activities": []}

    async def BP_O06(self, a: Activity) -> None:  # noqa: N802
        await self.reply(a, self.reply_body(a, None, type="endOfConversation"))
        await self.reply(a, self.reply_body(a, "one more thing"))

    async def BP_O07(self, a: Activity) -> None:  # noqa: N802
        # The id reaches the bot before its own send returns (say, from another instance of the bot).
        assert self.connector is not None
        self.connector.hold("o7-original")
        send = asyncio.create_task(self.reply(a, self.reply_body(a, "o7-original")))
        await self.connector.arrived("o7-original")
        early_id = self.connector.assigned["o7-original"]
        conv = a["conversation"]["id"]
        await self.call(
            "PUT",
            a["serviceUrl"],
            f"v3/conversations/{q(conv)}/activities/{q(early_id)}",
            self.reply_body(a, "edited too early", id=early_id),
        )
        self.connector.release("o7-original")
        await send

    async def BP_O12(self, a: Activity) -> None:  # noqa: N802
        for _ in range(2):
            await self.reply(a, self.reply_body(a, None, type="typing"))
