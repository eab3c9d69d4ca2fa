"""A corpus of real-SDK bots for replay verdicts (issue 11): each one shape that once fooled replay.

Written with botbuilder-python (CloudAdapter, anonymous) and with the Microsoft 365 Agents SDK for
Python (microsoft-agents-hosting-aiohttp), served in the test's event loop on 127.0.0.1. Every bot
has an `edited` build that changes exactly one thing, in one turn:

    uploads    echoes an uploaded attachment back (its contentUrl under the serviceUrl)     text
    thread     a Teams bot that starts a channel thread (CreateConversation with an activity),
               then replies in the thread addressed to its first message                    the thread's first message
    notify     keeps conversation references; POST /api/notify sends "proactive hello" (the SDK's
               continuation id as replyToId) while a "slow" turn is open; "card" is a hero card  card title
    overlap    Direct Line (botbuilder-python sets no replyToId there): "first" waits until
               "second" has arrived, so both turns are open when the replies go out           the second reply's text
    stream     an Agents SDK agent on Teams: StreamingResponse (informative, a chunk, the final;
               streamId = the id the connector gave the first chunk)                         the streamed final text
    tidy       sends a message and deletes it; when the connector fails the delete, apologises  the apology
    greet      "Hello, <random name>!" then "How can I help?"                               the second text
    later      "remind me": answers, then sends "reminder" proactively LATER seconds after the
               turn (longer than a replay's quiet window, as a loaded machine delays a send)  the reminder
    locked     requires authentication (an app id and password): every activity gets 401
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from botbuilder.core import ActivityHandler, CardFactory, MessageFactory, TurnContext
from botbuilder.integration.aiohttp import ConfigurationBotFrameworkAuthentication
from botbuilder.schema import ConversationParameters, ConversationReference, HeroCard
from botframework.connector.models import ErrorResponseException

from botproxy.sample_bot import AnonymousConfig, SampleCloudAdapter
from botproxy.standins.server import serve

NAMES = ("Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances")
TEAMS_CHANNEL = "19:general@thread.tacv2"
WAIT = 0.3  # s: how long a turn that waits for another event waits when it never comes (a replay)
LATER = 0.4  # s: how long after its turn the `later` bot sends its reminder


@dataclass
class RunningBot:
    name: str
    edited: bool
    runner: web.AppRunner
    port: int
    bot: Any = None
    events: dict[str, asyncio.Event] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/messages"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


# -- botbuilder-python bots -----------------------------------------------------------------------------


class UploadBot(ActivityHandler):
    def __init__(self, edited: bool) -> None:
        self.edited = edited

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        files = list(turn_context.activity.attachments or [])
        if files:
            word = "Received" if self.edited else "Got"
            reply = MessageFactory.text(f"{word} {len(files)} file(s): {files[0].name}")
            reply.attachments = files  # echoed back: contentUrl is under the channel's serviceUrl
            await turn_context.send_activity(reply)
        else:
            await turn_context.send_activity(f"You said: {turn_context.activity.text}")


class ThreadBot(ActivityHandler):
    """A Teams bot that starts a channel thread, as TeamsInfo.send_message_to_teams_channel does it."""

    def __init__(self, edited: bool) -> None:
        self.edited = edited

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        if (turn_context.activity.text or "").strip() != "start a thread":
            await turn_context.send_activity(f"You said: {turn_context.activity.text}")
            return
        first = MessageFactory.text("Thread: release notes, please comment" if self.edited
                                    else "Thread: release notes")
        parameters = ConversationParameters(is_group=True, channel_data={"channel": {"id": TEAMS_CHANNEL}},
                                            activity=first)

        async def in_thread(thread_context: TurnContext) -> None:
            # Addressed to the thread's first message: replyToId is the id CreateConversation returned.
            await thread_context.send_activity("First reply in the thread")

        adapter: SampleCloudAdapter = turn_context.adapter
        await adapter.create_conversation("", in_thread, parameters, "msteams", turn_context.activity.service_url,
                                          None)
        await turn_context.send_activity("Started a thread in General")


class NotifyBot(ActivityHandler):
    """Keeps references; `notify()` (POST /api/notify) sends proactively, from outside any turn."""

    def __init__(self, edited: bool, events: dict[str, asyncio.Event]) -> None:
        self.edited = edited
        self.references: dict[str, ConversationReference] = {}
        self.events = events

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        self.references[activity.conversation.id] = TurnContext.get_conversation_reference(activity)
        text = (activity.text or "").strip()
        if text == "slow":
            self.events["slow_open"].set()
            try:  # the recording's /api/notify comes now; a replay sends none
                await asyncio.wait_for(self.events["notified"].wait(), WAIT)
            except TimeoutError:
                pass
            await turn_context.send_activity("done thinking")
        elif text == "card":
            card = HeroCard(title="Today's menu (v2)" if self.edited else "Today's menu", text="Soup and bread")
            await turn_context.send_activity(MessageFactory.attachment(CardFactory.hero_card(card)))
        else:
            await turn_context.send_activity(f"You said: {text}")

    async def notify(self, adapter: SampleCloudAdapter) -> None:
        async def callback(context: TurnContext) -> None:
            await context.send_activity("proactive hello")

        for reference in list(self.references.values()):
            await adapter.continue_conversation(reference, callback, bot_app_id="")
        self.events["notified"].set()


class OverlapBot(ActivityHandler):
    """Two messages of one Direct Line conversation processed at once: "first" replies only once
    "second" has arrived, "second" only once "first" has replied (so the wire order is in1 in2 r1 r2)."""

    def __init__(self, edited: bool, events: dict[str, asyncio.Event]) -> None:
        self.edited = edited
        self.events = events

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        text = (turn_context.activity.text or "").strip()
        if text == "first":
            self.events["first_open"].set()
            await _wait(self.events["second_open"])
            await turn_context.send_activity("answer to first")
            self.events["first_answered"].set()
        elif text == "second":
            self.events["second_open"].set()
            await _wait(self.events["first_answered"])
            await turn_context.send_activity("answer to second, edited" if self.edited else "answer to second")
        else:
            await turn_context.send_activity(f"You said: {text}")


async def _wait(event: asyncio.Event) -> None:
    try:
        await asyncio.wait_for(event.wait(), WAIT)
    except TimeoutError:
        pass  # a replay sends the turns one after the other


class LaterBot(ActivityHandler):
    """Sends a reminder from outside the turn, a while after it (continue_conversation)."""

    def __init__(self, edited: bool, events: dict[str, asyncio.Event]) -> None:
        self.edited = edited
        self.events = events
        self.tasks: set[asyncio.Task[None]] = set()

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        text = (turn_context.activity.text or "").strip()
        if text != "remind me":
            await turn_context.send_activity(f"You said: {text}")
            return
        await turn_context.send_activity("I will remind you")
        reference = TurnContext.get_conversation_reference(turn_context.activity)
        task = asyncio.create_task(self._remind(turn_context.adapter, reference))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _remind(self, adapter: SampleCloudAdapter, reference: ConversationReference) -> None:
        await asyncio.sleep(LATER)

        async def callback(context: TurnContext) -> None:
            await context.send_activity("reminder (v2)" if self.edited else "reminder")

        await adapter.continue_conversation(reference, callback, bot_app_id="")
        self.events["reminded"].set()


class TidyBot(ActivityHandler):
    def __init__(self, edited: bool) -> None:
        self.edited = edited

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        if (turn_context.activity.text or "").strip() != "tidy":
            await turn_context.send_activity(f"You said: {turn_context.activity.text}")
            return
        sent = await turn_context.send_activity("a temporary note")
        try:
            await turn_context.delete_activity(sent.id)
        except ErrorResponseException:
            await turn_context.send_activity("Sorry, that note could not be removed" if self.edited
                                             else "Sorry, I could not delete that note")
            return
        await turn_context.send_activity("Removed the note")


class GreetBot(ActivityHandler):
    def __init__(self, edited: bool) -> None:
        self.edited = edited

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        if (turn_context.activity.text or "").strip() != "hi":
            await turn_context.send_activity(f"You said: {turn_context.activity.text}")
            return
        # Different on every run (a name and a tag, so two runs never happen to agree).
        await turn_context.send_activity(f"Hello, {random.choice(NAMES)} ({secrets.token_hex(4)})!")
        await turn_context.send_activity("How may I help?" if self.edited else "How can I help?")


def _botbuilder_app(bot: ActivityHandler, config: Any = None,
                    extra: Callable[[web.Application, SampleCloudAdapter], None] | None = None) -> web.Application:
    adapter = SampleCloudAdapter(ConfigurationBotFrameworkAuthentication(config or AnonymousConfig()))

    async def messages(request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse = await adapter.process(request, bot)
        return response

    app = web.Application()
    app.router.add_post("/api/messages", messages)
    if extra is not None:
        extra(app, adapter)
    return app


class _LockedConfig:
    """A bot configured with credentials: it refuses activities without a channel's token."""

    PORT = 3978
    APP_ID = "00000000-0000-0000-0000-00000000b0b0"
    APP_PASSWORD = "not-a-real-password"
    APP_TYPE = "MultiTenant"
    APP_TENANTID = ""


# -- a Microsoft 365 Agents SDK agent -------------------------------------------------------------------


def _stream_agent_app(edited: bool) -> web.Application:
    from microsoft_agents.hosting.aiohttp import CloudAdapter, start_agent_process
    from microsoft_agents.hosting.core import AgentApplication, MemoryStorage, TurnState
    from microsoft_agents.hosting.core import TurnContext as AgentTurnContext
    from microsoft_agents.hosting.core.authorization import AgentAuthConfiguration, AnonymousTokenProvider
    from microsoft_agents.hosting.core.authorization.connection_manager import ConnectionManager

    connections = ConnectionManager(lambda _config: AnonymousTokenProvider(),
                                    connections_configurations={"SERVICE_CONNECTION": AgentAuthConfiguration()})
    adapter = CloudAdapter(connection_manager=connections)
    agent = AgentApplication[TurnState](storage=MemoryStorage(), connection_manager=connections)

    @agent.activity("message")
    async def on_message(context: AgentTurnContext, _state: TurnState) -> None:
        if (context.activity.text or "").strip() != "stream":
            await context.send_activity(f"echo: {context.activity.text}")
            return
        response = context.streaming_response
        # Teams paces a stream at one send a second; a test agent need not wait that long.
        response._interval = 0.01
        response.queue_informative_update("Looking it up...")
        await response.wait_for_queue()  # one chunk at a time: the same sends on every run
        response.queue_text_chunk("The slow grey cat sleeps." if edited else "The quick brown fox jumps.")
        await response.wait_for_queue()
        await response.end_stream()

    async def messages(request: web.Request) -> web.Response:
        response = await start_agent_process(request, agent, adapter)
        return response if response is not None else web.Response(status=202)

    app = web.Application()
    app.router.add_post("/api/messages", messages)
    return app


# -- starting them --------------------------------------------------------------------------------------


KINDS = ("uploads", "thread", "notify", "overlap", "stream", "tidy", "greet", "locked")


async def start(kind: str, edited: bool = False) -> RunningBot:
    """Start one bot of the corpus on a free 127.0.0.1 port."""
    events: dict[str, asyncio.Event] = {name: asyncio.Event() for name in (
        "slow_open", "notified", "first_open", "second_open", "first_answered", "reminded")}
    bot: Any = None
    if kind == "stream":
        app = _stream_agent_app(edited)
    elif kind == "locked":
        app = _botbuilder_app(GreetBot(edited), _LockedConfig())
    elif kind == "notify":
        bot = NotifyBot(edited, events)

        def notify_route(app: web.Application, adapter: SampleCloudAdapter) -> None:
            async def notify(request: web.Request) -> web.Response:
                await bot.notify(adapter)
                return web.json_response({"notified": len(bot.references)})

            app.router.add_post("/api/notify", notify)

        app = _botbuilder_app(bot, extra=notify_route)
    else:
        makers: dict[str, Callable[[], ActivityHandler]] = {
            "uploads": lambda: UploadBot(edited),
            "thread": lambda: ThreadBot(edited),
            "overlap": lambda: OverlapBot(edited, events),
            "tidy": lambda: TidyBot(edited),
            "greet": lambda: GreetBot(edited),
            "later": lambda: LaterBot(edited, events),
        }
        bot = makers[kind]()
        app = _botbuilder_app(bot)
    runner, port = await serve(app)
    return RunningBot(kind, edited, runner, port, bot, events)


def reset(bot: RunningBot) -> None:
    """Forget what a recording taught the bot's events (before it is replayed against)."""
    for event in bot.events.values():
        event.clear()

