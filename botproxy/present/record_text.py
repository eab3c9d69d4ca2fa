"""What the long-running commands say as they start and stop: `botproxy record`'s banner and its note on
authenticated traffic, and `botproxy channel`'s addresses and how to record both sides of it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ..settings import DEFAULTS
from ..wire.redact import scrub
from .words import counted


def recording_lines(proxy: Any) -> list[str]:
    """A started RecordingProxy: the session it records into and where each side connects."""
    live = proxy.session
    lines = [f"recording session {live.name!r} into {live.db_path}"]
    if proxy.config.bot_url:
        lines.append(f"  channel → {proxy.endpoint}  →  bot {scrub(proxy.config.bot_url)}")
    if proxy.config.directline:
        lines.append(f"  Direct Line clients → {proxy.directline_endpoint}  →  {scrub(proxy.config.directline)}")
    if proxy.forward_listen:
        lines.append(f"  forward proxy for the bot's outbound calls: {proxy.forward_url}")
    lines.append("press Ctrl-C to stop")
    return lines


def forward_proxy_lines(env: Mapping[str, str]) -> list[str]:
    """Said once: authenticated traffic is forwarded untouched, so replies must use the forward proxy
    (`env`: the proxy variables for the bot, empty when there is no forward listener)."""
    lines = ["note: inbound requests carry an Authorization header, so botproxy forwards them byte for byte"]
    if not env:
        return [*lines, "  and cannot see the bot's replies: restart without --no-forward to capture them"]
    lines.append("  to capture the bot's replies, run the bot with these variables (mitmproxy's CA is created on "
                 "start):")
    return lines + [f"    export {name}={value}" for name, value in env.items()]


def channel_lines(dl: Any) -> list[str]:
    """A started DirectLineChannel: its addresses, how clients connect, how to record both sides."""
    path = urlsplit(dl.bot_url).path or "/api/messages"
    return [
        f"Direct Line channel for the bot at {dl.bot_url}",
        f"  chat page:         {dl.base_url}/",
        f"  Direct Line base:  {dl.directline_url}",
        f"  secret:            {dl.secret}",
        f"  the bot replies to serviceUrl {dl.service_url}",
        "directlinejs / Web Chat: pass the base as `domain`, e.g.",
        f"  new DirectLine({{ domain: '{dl.directline_url}', secret: '{dl.secret}' }})",
        f"  or a token from: curl -X POST -H 'Authorization: Bearer {dl.secret}' {dl.directline_url}/tokens/generate",
        "to record both sides, put the recorder in front of the bot and of this channel:",
        f"  botproxy record --bot {dl.bot_url} --directline {dl.base_url}",
        f"  botproxy channel --bot http://{DEFAULTS.listen}{path}   (this channel, bot side through it)",
        f"  and clients use http://{DEFAULTS.directline_listen}/v3/directline (the recorder's defaults)",
        "press Ctrl-C to stop",
    ]


def channel_stopped_line(dl: Any) -> str:
    activities = sum(len(c.activities) for c in dl.conversations.values())
    return (f"stopped: {counted(len(dl.conversations), 'conversation')}, "
            f"{counted(activities, 'activity', 'activities')} delivered to clients")
