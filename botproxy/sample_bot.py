"""The bundled sample bot: a real Bot Framework SDK bot (botbuilder-core + CloudAdapter), anonymous.

It has no app id and no password, so it accepts unauthenticated inbound activities and sends its
replies without a token, to whatever ``serviceUrl`` the inbound activity names. That is what lets
botproxy record it against a local connector stand-in.

Run it with ``python -m botproxy.sample_bot --port 3978 --build 1``. It serves ``POST /api/messages``
and ``GET /health``.

What it does (message commands are trimmed and case-insensitive):

    conversationUpdate   "Welcome, <name>!" for each added member who is not the bot
    help                 a help text listing the commands
    typing               a typing activity, then "done typing"
    card                 a message with a HeroCard (title, text, two buttons) and suggested actions
    update               "original", then updates that activity to "updated"
    delete               "to be deleted", then deletes that activity
    proactive            "will send proactively"; then, outside the turn, continue_conversation sends
                         "proactive hello" and sets ``SampleBot.proactive_done``
    two                  "first" and "second" in one send_activities call
    random               "a random value", carrying ``value: {"nonce": <random hex>}`` (different every time:
                         what a replay learns to ignore from a baseline)
    anything else        echo: "You said: <text>"
    invoke (any name)    HTTP response body {"echo": <activity.value>}, status 200

The HTTP layer is CloudAdapter's, with one repair (see :class:`SampleCloudAdapter`) so that invoke
responses with plain-JSON bodies and ``expectReplies`` answers work on botbuilder 4.17.1.

Under ``deliveryMode: expectReplies`` the SDK returns the replies in the HTTP response body instead
of posting them; ``update`` and ``delete`` then skip their second step, because a buffered reply has
no id to update or delete.

Build 2 differs from build 1 on purpose, so that a replay of a build-1 recording shows each kind of
difference:

    echo     texts containing "weather" (any case) get a "!": "You said: <text>!"   (changed text)
    help     HELP_TEXT_BUILD_2 instead of HELP_TEXT                                (changed text)
    card     the HeroCard title is "Sample card (build 2)" instead of "Sample card" (changed card)
    welcome  after the welcomes, one more message: WELCOME_HINT_BUILD_2             (an extra reply)
    typing   no typing activity, only "done typing"                                (a missing reply)
    two      "second" and then "first"                                             (a reordered pair)

Everything else is identical.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

try:
    from botbuilder.core import (
        ActivityHandler,
        Bot,
        CardFactory,
        InvokeResponse,
        MessageFactory,
        Middleware,
        TurnContext,
        serializer_helper,
    )
    from botbuilder.integration.aiohttp import (
        CloudAdapter,
        ConfigurationBotFrameworkAuthentication,
    )
    from botbuilder.integration.aiohttp.aiohttp_channel_service_exception_middleware import (
        aiohttp_error_middleware,
    )
    from botbuilder.schema import (
        ActionTypes,
        Activity,
        ActivityTypes,
        CardAction,
        ChannelAccount,
        ConversationReference,
        HeroCard,
        SuggestedActions,
    )
    from msrest.serialization import Model
except ImportError as exc:  # botbuilder comes with the demo extra only (botproxy/extras.py)
    from .extras import missing_demo_extra

    missing_demo_extra("the sample bot", exc, exit_now=__name__ == "__main__")
else:
    from .extras import check_demo_versions

    check_demo_versions("the sample bot", exit_now=__name__ == "__main__")

logger = logging.getLogger(__name__)

HELP_TEXT = "Commands: hello, help, typing, card, update, delete, proactive, two. Anything else is echoed."
HELP_TEXT_BUILD_2 = "Try one of: help, typing, card, update, delete, proactive, two (or say anything)."
ERROR_TEXT = "The bot encountered an error or bug."
WELCOME_HINT_BUILD_2 = "Type help to see what I can do."


class AnonymousConfig:
    """The SDK samples' DefaultConfig with no credentials: auth disabled both ways."""

    APP_ID = ""
    APP_PASSWORD = ""
    APP_TYPE = "MultiTenant"
    APP_TENANTID = ""


class SampleCloudAdapter(CloudAdapter):
    """CloudAdapter whose HTTP answer accepts both msrest models and plain JSON as the body.

    botbuilder-integration-aiohttp 4.17.1 passes every InvokeResponse body through
    ``serializer_helper``, which only accepts msrest models, while CloudAdapterBase hands it a plain dict
    for ExpectedReplies (it calls ``.serialize()`` first) and bots commonly return dicts for invokes, so
    both end in a 500. 4.16 had the opposite bug (models were not JSON-serialisable,
    botbuilder-python#2156). Everything else is left to the SDK.
    """

    async def process(self, request: web.Request, bot: Bot, ws_response: Any = None) -> web.StreamResponse:
        if request.method != "POST":
            response: web.StreamResponse = await super().process(request, bot, ws_response)
            return response
        if "application/json" not in request.headers.get("Content-Type", ""):
            raise web.HTTPUnsupportedMediaType()
        activity = Activity().deserialize(await request.json())
        if not activity.type:
            raise web.HTTPBadRequest()
        try:
            auth_header = request.headers.get("Authorization", "")
            invoke_response = await self.process_activity(auth_header, activity, bot.on_turn)
        except PermissionError:
            raise web.HTTPUnauthorized() from None
        if not invoke_response:
            return web.Response(status=201)
        return web.json_response(data=_json_body(invoke_response.body), status=invoke_response.status)


def _json_body(body: Any) -> Any:
    return serializer_helper(body) if isinstance(body, Model) else body


class SampleBot(ActivityHandler):
    def __init__(self, build: int = 1) -> None:
        if build not in (1, 2):
            raise ValueError(f"build must be 1 or 2, not {build!r}")
        self.build = build
        self.proactive_done = asyncio.Event()
        self.proactive_errors: list[BaseException] = []
        self.turn_errors: list[BaseException] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._commands: dict[str, Callable[[TurnContext], Awaitable[None]]] = {
            "help": self._help,
            "typing": self._typing,
            "card": self._card,
            "update": self._update,
            "delete": self._delete,
            "proactive": self._proactive,
            "two": self._two,
            "random": self._random,
        }

    async def on_members_added_activity(
        self, members_added: list[ChannelAccount], turn_context: TurnContext
    ) -> None:
        bot_id = turn_context.activity.recipient.id if turn_context.activity.recipient else None
        welcomed = False
        for member in members_added:
            if member.id != bot_id:
                await turn_context.send_activity(f"Welcome, {member.name or member.id}!")
                welcomed = True
        if welcomed and self.build == 2:
            await turn_context.send_activity(WELCOME_HINT_BUILD_2)

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        text = (turn_context.activity.text or "").strip()
        command = self._commands.get(text.lower())
        if command is not None:
            await command(turn_context)
        else:
            await turn_context.send_activity(self.echo_text(text))

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        return InvokeResponse(status=200, body={"echo": turn_context.activity.value})

    def echo_text(self, text: str) -> str:
        if self.build == 2 and "weather" in text.lower():
            return f"You said: {text}!"
        return f"You said: {text}"

    async def close(self) -> None:
        """Cancel proactive sends still under way (the server is shutting down)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- commands ----------------------------------------------------------------------------------

    async def _help(self, turn_context: TurnContext) -> None:
        await turn_context.send_activity(HELP_TEXT_BUILD_2 if self.build == 2 else HELP_TEXT)

    async def _typing(self, turn_context: TurnContext) -> None:
        if self.build == 1:
            await turn_context.send_activity(Activity(type=ActivityTypes.typing))
        await turn_context.send_activity("done typing")

    async def _card(self, turn_context: TurnContext) -> None:
        title = "Sample card (build 2)" if self.build == 2 else "Sample card"
        card = HeroCard(
            title=title,
            text="A card from the botproxy sample bot.",
            buttons=[
                CardAction(type=ActionTypes.im_back, title="Say hello", value="hello"),
                CardAction(type=ActionTypes.open_url, title="Docs", value="https://aka.ms/botframework"),
            ],
        )
        reply = MessageFactory.attachment(CardFactory.hero_card(card))
        reply.suggested_actions = SuggestedActions(
            actions=[
                CardAction(type=ActionTypes.im_back, title="Help", value="help"),
                CardAction(type=ActionTypes.im_back, title="Two", value="two"),
            ]
        )
        await turn_context.send_activity(reply)

    async def _update(self, turn_context: TurnContext) -> None:
        sent = await turn_context.send_activity("original")
        if not (sent and sent.id):
            logger.info("update: the reply was buffered (expectReplies), nothing to update")
            return
        revised = MessageFactory.text("updated")
        revised.id = sent.id
        await turn_context.update_activity(revised)

    async def _delete(self, turn_context: TurnContext) -> None:
        sent = await turn_context.send_activity("to be deleted")
        if not (sent and sent.id):
            logger.info("delete: the reply was buffered (expectReplies), nothing to delete")
            return
        await turn_context.delete_activity(sent.id)

    async def _proactive(self, turn_context: TurnContext) -> None:
        await turn_context.send_activity("will send proactively")
        reference = TurnContext.get_conversation_reference(turn_context.activity)
        # Keep a reference to the task: the event loop only holds a weak one.
        task = asyncio.create_task(self._send_proactive(turn_context.adapter, reference))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_proactive(self, adapter: CloudAdapter, reference: ConversationReference) -> None:
        async def callback(context: TurnContext) -> None:
            await context.send_activity("proactive hello")

        try:
            # Anonymous bot: an empty app id gives a connector client without credentials.
            await adapter.continue_conversation(reference, callback, bot_app_id="")
        except Exception as exc:
            logger.exception("proactive send failed")
            self.proactive_errors.append(exc)
        finally:
            self.proactive_done.set()

    async def _two(self, turn_context: TurnContext) -> None:
        texts = ["first", "second"] if self.build == 1 else ["second", "first"]
        await turn_context.send_activities([MessageFactory.text(text) for text in texts])

    async def _random(self, turn_context: TurnContext) -> None:
        reply = MessageFactory.text("a random value")
        reply.value = {"nonce": secrets.token_hex(8)}
        await turn_context.send_activity(reply)


def _error_handler(bot: SampleBot) -> Callable[[TurnContext, Exception], Awaitable[None]]:
    async def on_turn_error(context: TurnContext, error: Exception) -> None:
        # Like the SDK samples: log, tell the user, and answer the inbound request normally.
        logger.error("turn failed: %s", error, exc_info=error)
        bot.turn_errors.append(error)
        try:
            await context.send_activity(ERROR_TEXT)
        except Exception:
            # The connector itself may be what failed; the error is already recorded.
            logger.exception("could not tell the user about the error")

    return on_turn_error


BOT_KEY = web.AppKey("sample_bot", SampleBot)


def make_app(build: int = 1, middleware: Sequence[Middleware] = ()) -> web.Application:
    """The sample bot as an aiohttp application: ``POST /api/messages`` and ``GET /health``.

    `middleware`: Bot Framework middleware the adapter runs (a `TranscriptLoggerMiddleware`, say)."""
    bot = SampleBot(build)
    adapter = SampleCloudAdapter(ConfigurationBotFrameworkAuthentication(AnonymousConfig()))
    adapter.on_turn_error = _error_handler(bot)
    for item in middleware:
        adapter.use(item)

    async def messages(request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse = await adapter.process(request, bot)
        return response

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def close_bot(app: web.Application) -> None:
        await bot.close()

    app = web.Application(middlewares=[aiohttp_error_middleware])
    app.router.add_post("/api/messages", messages)
    app.router.add_get("/health", health)
    app.on_cleanup.append(close_bot)
    app[BOT_KEY] = bot
    return app


@dataclass
class SampleBotServer:
    """A running sample bot; ``url`` is its messaging endpoint."""

    runner: web.AppRunner
    bot: SampleBot
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/api/messages"

    @property
    def proactive_done(self) -> asyncio.Event:
        return self.bot.proactive_done

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_bot(
    host: str = "127.0.0.1", port: int = 0, build: int = 1, middleware: Sequence[Middleware] = ()
) -> SampleBotServer:
    """Start the sample bot in this event loop; port 0 picks a free port."""
    app = make_app(build, middleware)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound_port: int = runner.addresses[0][1]
    logger.debug("sample bot (build %d) listening on %s:%d", build, host, bound_port)
    return SampleBotServer(runner, app[BOT_KEY], host, bound_port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m botproxy.sample_bot",
        description="Run the botproxy sample bot (a Bot Framework SDK bot, anonymous: no app id, no password). "
        "It serves POST /api/messages and GET /health; say `help` to it for its commands.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default: %(default)s).")
    parser.add_argument("--port", type=int, default=3978, help="Port to listen on (default: %(default)s).")
    parser.add_argument(
        "--build",
        type=int,
        choices=(1, 2),
        default=1,
        help="Which build to run: 1, or 2, which changes a few answers on purpose, so that a replay of a "
        "build-1 recording against it shows each kind of difference (default: %(default)s).",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Two builds are often run side by side (baseline and candidate): each log says which one it is.
    logger.info("sample bot build %d on http://%s:%d/api/messages", args.build, args.host, args.port)

    def log(message: Any) -> None:
        logger.info("%s", message)

    # run_app turns SIGINT and SIGTERM into a clean shutdown.
    web.run_app(make_app(args.build), host=args.host, port=args.port, print=log, access_log=None)


if __name__ == "__main__":
    main()
