"""A Microsoft 365 Agents SDK for Python agent (microsoft-agents-hosting-aiohttp), anonymous, for the tests.

    python agents_stream_bot.py PORT [BUILD]   # prints "READY" when listening on 127.0.0.1:PORT/api/messages

It answers, through the SDK's own connector client:
- "stream": a streamed reply with the SDK's StreamingResponse: an informative update, text chunks,
  then the final with a hero card, the AI label and the feedback loop (attachments and labels are final-only);
  build 2 streams another text (a changed build, for replay);
- "card": an Adaptive Card;
- "proactive": "ok" now, then "later" through `continue_conversation` after the turn has ended;
- anything else: "echo: <text>".
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web
from microsoft_agents.activity import Activity, Attachment, HeroCard
from microsoft_agents.hosting.aiohttp import CloudAdapter, start_agent_process
from microsoft_agents.hosting.core import (
    AgentApplication,
    MemoryStorage,
    TurnContext,
    TurnState,
)
from microsoft_agents.hosting.core.authorization import (
    AgentAuthConfiguration,
    AnonymousTokenProvider,
    AuthenticationConstants,
    ClaimsIdentity,
)
from microsoft_agents.hosting.core.authorization.connection_manager import ConnectionManager

from botproxy.standins.server import serve

CONNECTIONS = ConnectionManager(
    lambda _config: AnonymousTokenProvider(),
    connections_configurations={"SERVICE_CONNECTION": AgentAuthConfiguration()},
)
ADAPTER = CloudAdapter(connection_manager=CONNECTIONS)
APP = AgentApplication[TurnState](storage=MemoryStorage(), connection_manager=CONNECTIONS)
AUDIENCE = AuthenticationConstants.AGENTS_SDK_SCOPE
STREAMED = ("The quick", " brown fox", " jumps over", " the lazy dog.")
CHANGED = ("The slow", " grey cat", " sleeps.")
BUILD = 1
_later: set[asyncio.Task[None]] = set()  # proactive sends under way (a reference keeps each alive)


async def stream(context: TurnContext, parts: tuple[str, ...]) -> None:
    response = context.streaming_response
    response.queue_informative_update("Looking it up...")
    response.queue_text_chunk(parts[0])
    # However slow the machine, at least one chunk goes out before the final (the SDK folds chunks still
    # queued at end_stream into the final): wait until the SDK has sent what is queued.
    await response.wait_for_queue()
    for part in parts[1:]:
        await asyncio.sleep(0.3)
        response.queue_text_chunk(part)
    response.set_attachments(
        [Attachment(content_type="application/vnd.microsoft.card.hero", content=HeroCard(title="Fox facts"))]
    )
    response.set_generated_by_ai_label(True)
    response.set_feedback_loop(True)
    await response.end_stream()


async def card(context: TurnContext) -> None:
    content = {
        "type": "AdaptiveCard",
        "version": "1.5",
        "body": [{"type": "TextBlock", "text": "Pick one"}],
        "actions": [{"type": "Action.Submit", "title": "Fox", "data": {"pick": "fox"}}],
    }
    await context.send_activity(
        Activity(
            type="message",
            attachments=[Attachment(content_type="application/vnd.microsoft.card.adaptive", content=content)],
        )
    )


async def proactive_later(reference_activity: Activity) -> None:
    async def send(turn: TurnContext) -> None:
        await turn.send_activity("later")

    await asyncio.sleep(0.2)
    continuation = reference_activity.get_conversation_reference().get_continuation_activity()
    # Anonymous (no app id), as in local development: the claims of an anonymous request.
    await ADAPTER.continue_conversation_with_claims(ClaimsIdentity(), continuation, send, audience=AUDIENCE)


@APP.activity("message")
async def on_message(context: TurnContext, _state: TurnState) -> None:
    text = (context.activity.text or "").strip().lower()
    if text == "stream":
        await stream(context, CHANGED if BUILD == 2 else STREAMED)
    elif text == "card":
        await card(context)
    elif text == "proactive":
        await context.send_activity("ok")
        task = asyncio.create_task(proactive_later(context.activity))
        _later.add(task)
        task.add_done_callback(_later.discard)
    else:
        await context.send_activity(f"echo: {context.activity.text}")


async def messages(request: web.Request) -> web.Response:
    response = await start_agent_process(request, APP, ADAPTER)
    return response if response is not None else web.Response(status=202)


async def main(port: int) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/api/messages", messages)
    runner, _ = await serve(app, port=port)
    print("READY", flush=True)
    return runner


if __name__ == "__main__":
    BUILD = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    loop = asyncio.new_event_loop()
    loop.run_until_complete(main(int(sys.argv[1])))
    loop.run_forever()
