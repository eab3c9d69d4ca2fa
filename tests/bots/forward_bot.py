"""A bot process for the forward-proxy test.

It writes every request body it receives, byte for byte, to a file, and answers through the Bot
Framework SDK's own connector client (msrest over requests), which honours HTTPS_PROXY and
REQUESTS_CA_BUNDLE the way a deployed Python bot does. The outbound call carries a bearer token, as a
bot with an app id would send.

    python forward_bot.py PORT RECEIVED_FILE OUTBOUND_TOKEN   # prints "READY" when listening
"""

import json
import sys

from aiohttp import web
from botbuilder.schema import Activity, ChannelAccount, ConversationAccount
from botframework.connector.aio import ConnectorClient
from msrest.authentication import BasicTokenAuthentication

from botproxy.standins.server import serve

PORT, RECEIVED, TOKEN = int(sys.argv[1]), sys.argv[2], sys.argv[3]


async def messages(request: web.Request) -> web.Response:
    raw = await request.read()
    with open(RECEIVED, "ab") as out:
        out.write(raw)
    inbound = Activity().deserialize(json.loads(raw))
    reply = Activity(
        type="message",
        text="reply through the forward proxy",
        reply_to_id=inbound.id,
        conversation=ConversationAccount(id=inbound.conversation.id),
        from_property=ChannelAccount(id=inbound.recipient.id),
        recipient=ChannelAccount(id=inbound.from_property.id),
        service_url=inbound.service_url,
        channel_id=inbound.channel_id,
    )
    client = ConnectorClient(BasicTokenAuthentication({"access_token": TOKEN}), base_url=inbound.service_url)
    await client.conversations.reply_to_activity(inbound.conversation.id, inbound.id, reply)
    return web.Response(status=201)


async def main() -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/api/messages", messages)
    runner, _ = await serve(app, port=PORT)
    print("READY", flush=True)
    return runner


if __name__ == "__main__":
    import asyncio

    loop = asyncio.new_event_loop()
    loop.run_until_complete(main())
    loop.run_forever()
