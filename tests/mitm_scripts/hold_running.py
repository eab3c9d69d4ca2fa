"""A mitmdump script that holds mitmproxy's `running` hook until a first request has passed through.

mitmproxy listens before it calls `running` (where botproxy's addon opens its session); on a loaded
machine a fast first request can fall in between. Loaded before botproxy's addon, this script makes
that window certain instead of rare.
"""

import asyncio


class HoldRunningUntilARequest:
    def __init__(self) -> None:
        self.seen = asyncio.Event()

    def request(self, flow) -> None:
        self.seen.set()

    async def running(self) -> None:
        await self.seen.wait()


addons = [HoldRunningUntilARequest()]
