"""The optional extras and the one line that says how to get one that is missing.

botproxy itself never imports botbuilder: only the bundled sample bot (and so `botproxy demo`) does,
and botbuilder comes with the `demo` extra, so that botproxy installs beside a bot on any botbuilder
version, or none.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from typing import NoReturn

from .errors import MissingExtra

DEMO_INSTALL = "pip install 'botproxy[demo]' (with pipx: pipx install 'botproxy[demo]')"
# As pyproject.toml's demo extra: the sample bot's adapter repair is for 4.16+ (4.15 answers expectReplies with 500).
DEMO_MINIMUM = {"botbuilder-core": (4, 16), "botbuilder-integration-aiohttp": (4, 16)}


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


def check_demo_versions(what: str, *, exit_now: bool = False) -> None:
    """Say that `what` needs a newer botbuilder than the one installed (a bot's own environment, most likely)."""
    for dist, minimum in DEMO_MINIMUM.items():
        try:
            installed = metadata.version(dist)
        except metadata.PackageNotFoundError:  # importable without its metadata (a vendored copy): trust it
            continue
        if tuple(int(n) for n in re.findall(r"\d+", installed)[:2]) < minimum:
            message = (
                f"{what} needs {dist}>={'.'.join(map(str, minimum))}, and this environment has {installed} (a bot's "
                "own, most likely): give botproxy an environment of its own with the demo extra: "
                "pipx install 'botproxy[demo]'"
            )
            if exit_now:
                print(f"error: {message}", file=sys.stderr)
                raise SystemExit(2)
            raise MissingExtra(message)
