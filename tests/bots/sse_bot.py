"""A bot that answers `deliveryMode: stream` activities the way the Agents SDK for .NET does: the
inbound POST gets `200 text/event-stream`, one `event: activity` frame per activity the bot sends
(`event: activity\\r\\ndata: {json}\\r\\n\\r\\n`, flushed each), and for an invoke a last
`event: invokeResponse` frame with `{status, body}` (Agents-for-net
`src/libraries/Hosting/AspNetCore/ActivityResponseHandler.cs`). Activities of other delivery modes
get a plain reply through the Connector, as usual.

The Agents SDK for Python (1.9.0) has the `stream` delivery mode but answers it with a 500 ("Unable to
extract ConnectorClient from turn context"), and the JavaScript SDK has no such mode, so the suite's
stream-speaking bot is this one, written to the .NET SDK's wire format with aiohttp.

A message streams an informative update, two chunks (each the whole text so far) and the final
message, as the Agents SDK's StreamingResponse shapes them (agents-sdk.md 1.1). `hold` (an
asyncio.Event) lets a test keep the stream open after its first frame, to see that frame arrive
through the proxy before the rest is written.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp import web

from botproxy.standins.server import serve

ACTIVITY_FRAME = "event: activity\r\ndata: {}\r\n\r\n"
INVOKE_FRAME = "event: invokeResponse\r\ndata: {}\r\n\r\n"


def streaminfo(stream_type: str, sequence: int | None, stream_id: str | None) -> dict[str, Any]:
    entity: dict[str, Any] = {"type": "streaminfo", "streamType": stream_type}
    if sequence is not None:
        entity["streamSequence"] = sequence
    if stream_id:
        entity["streamId"] = stream_id
    return entity


class SseBot:
    """`url` is its messaging endpoint once started; `answer` the text it streams for a message."""

    def __init__(self, answer: str = "The answer is 42.") -> None:
        self.answer = answer
        self.hold: asyncio.Event | None = None
        self.received: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/api/messages", self._on_activity)
        self._runner, port = await serve(app)
        self.url = f"http://127.0.0.1:{port}/api/messages"
        self._session = aiohttp.ClientSession()
        return self.url

    async def stop(self) -> None:
        if self._session:
            await self._session.close()
        if self._runner:
            await self._runner.cleanup()

    def reply(self, inbound: dict[str, Any], **fields: Any) -> dict[str, Any]:
        """An activity addressed as the SDK addresses a reply (from and recipient swapped)."""
        return {
            "channelId": inbound.get("channelId"),
            "serviceUrl": inbound.get("serviceUrl"),
            "conversation": inbound.get("conversation"),
            "from": inbound.get("recipient"),
            "recipient": inbound.get("from"),
            "replyToId": inbound.get("id"),
            **fields,
        }

    def frames(self, inbound: dict[str, Any]) -> list[dict[str, Any]]:
        """What the bot sends for one inbound activity, in order."""
        if inbound.get("type") != "message":
            return []
        stream_id = f"stream-{inbound.get('id')}"
        words = self.answer.split(" ")
        half = " ".join(words[: len(words) // 2])
        return [
            self.reply(inbound, type="typing", text="Thinking...", entities=[streaminfo("informative", 1, None)]),
            self.reply(inbound, type="typing", text=half, entities=[streaminfo("streaming", 2, stream_id)]),
            self.reply(inbound, type="typing", text=self.answer, entities=[streaminfo("streaming", 3, stream_id)]),
            self.reply(inbound, type="message", text=self.answer, entities=[streaminfo("final", None, stream_id)]),
        ]

    async def _on_activity(self, request: web.Request) -> web.StreamResponse:
        inbound = await request.json()
        self.received.append(inbound)
        if inbound.get("deliveryMode") != "stream":
            await self._reply_through_connector(inbound)
            return web.Response(status=200 if inbound.get("type") == "invoke" else 201)
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for n, activity in enumerate(self.frames(inbound)):
            await response.write(ACTIVITY_FRAME.format(json.dumps(activity)).encode())
            if n == 0 and self.hold is not None:
                await self.hold.wait()
        if inbound.get("type") == "invoke":
            answer = {"status": 200, "body": {"echo": inbound.get("value")}}
            await response.write(INVOKE_FRAME.format(json.dumps(answer)).encode())
        await response.write_eof()
        return response

    async def _reply_through_connector(self, inbound: dict[str, Any]) -> None:
        if inbound.get("type") != "message" or self._session is None:
            return
        base = str(inbound["serviceUrl"]).rstrip("/")
        conversation = inbound["conversation"]["id"]
        url = f"{base}/v3/conversations/{conversation}/activities/{inbound['id']}"
        async with self._session.post(url, json=self.reply(inbound, type="message", text=self.answer)) as resp:
            await resp.read()
