"""The optional extras and the one line that says how to get one that is missing.

botproxy itself never imports botbuilder: only the bundled sample bot (and so `botproxy demo`) does,
and botbuilder comes with the `demo` extra, so that botproxy installs beside a bot on any botbuilder
version, or none.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from .errors import MissingExtra

DEMO_INSTALL = "pip install 'botproxy[demo]' (with pipx: pipx install 'botproxy[demo]')"


def missing_demo_extra(what: str, exc: ImportError, *, exit_now: bool = False) -> NoReturn:
    """Say that `what` needs the demo extra: as a MissingExtra for the CLI to print, or, when `what` runs as
    a script (`python -m botproxy.sample_bot`), as one line on stderr and exit code 2."""
    message = (
        f"{what} needs the Bot Framework SDK (botbuilder-core, botbuilder-integration-aiohttp), which botproxy "
        f"installs only with its demo extra ({exc.name or exc} is missing): {DEMO_INSTALL}"
    )
    if exit_now:
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)
    raise MissingExtra(message) from exc
