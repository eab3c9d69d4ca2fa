"""Project settings: a table of the nearest botproxy.toml, or of `[tool.botproxy]` in pyproject.toml.

    # botproxy.toml                          # pyproject.toml
    [replay]                                 [tool.botproxy.replay]
    ignore = ["root['channelData']"]         ignore = ["root['channelData']"]

The nearest directory (from `start_dir` upwards) holding botproxy.toml, or a pyproject.toml with a
`[tool.botproxy]` table, decides; when it holds both, botproxy.toml wins. These are the same rules as
the checks' `[checks]` table (botproxy/checks/config.py).

`DEFAULTS` is the one home of the defaults the command line, the mitmdump addon, the pytest plugin and
the library share (the database file, the listen addresses, mitmproxy's folder, the replay timings):
`botproxy X --help` shows them from here.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError


@dataclass(frozen=True)
class Defaults:
    db: str = "botproxy.db"
    listen: str = "127.0.0.1:5055"  # record: where channels post instead of the bot
    forward_listen: str = "127.0.0.1:5056"  # record: the forward proxy for the bot's outbound calls
    directline_listen: str = "127.0.0.1:5057"  # record: where Direct Line clients connect
    directline: str = "https://directline.botframework.com"  # record --directline without a URL
    channel_listen: str = "127.0.0.1:5080"  # channel: the local Direct Line channel
    confdir: str = "~/.mitmproxy"  # mitmproxy's folder: its CA and botproxy's serviceUrl key
    concurrency: int = 4  # replay: conversations at once
    quiet_ms: float = 200.0  # replay: a turn ends after this long without a connector call
    cap_ms: float = 2000.0  # replay: the longest wait for that quiet
    timeout_s: float = 30.0  # replay: the time the bot has to answer an inbound activity
    start_timeout_s: float = 60.0  # replay --start: the time a started build has to answer


DEFAULTS = Defaults()


def find_table(section: str, start_dir: str | Path = ".") -> tuple[dict[str, Any] | None, str]:
    """(the `section` table or None, where it was looked up) for the project around `start_dir`."""
    directory = Path(start_dir).resolve()
    for folder in (directory, *directory.parents):
        own, pyproject = folder / "botproxy.toml", folder / "pyproject.toml"
        if own.is_file():
            return _table(_read(own).get(section), f"{own} [{section}]")
        if pyproject.is_file():
            tool, _ = _table(_read(pyproject).get("tool"), f"{pyproject} [tool]")
            botproxy, _ = _table((tool or {}).get("botproxy"), f"{pyproject} [tool.botproxy]")
            if botproxy is not None:
                return _table(botproxy.get(section), f"{pyproject} [tool.botproxy.{section}]")
    return None, "defaults"


def _table(value: Any, source: str) -> tuple[dict[str, Any] | None, str]:
    if value is not None and not isinstance(value, dict):
        raise UsageError(f"{source} must be a table, not {type(value).__name__} {value!r:.40}")
    return value, source


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except UnicodeDecodeError as exc:  # tomllib decodes the bytes first; TOML files are UTF-8
        raise UsageError(f"cannot read {path}: it is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except (OSError, ValueError) as exc:  # ValueError: tomllib.TOMLDecodeError, or a value it cannot make
        raise UsageError(f"cannot read {path}: {exc}") from exc


@dataclass(frozen=True)
class ReplayConfig:
    ignore: tuple[str, ...] = ()
    source: str = "defaults"


def load_replay_config(start_dir: str | Path = ".") -> ReplayConfig:
    """`[replay]` / `[tool.botproxy.replay]`: ``ignore``, a list of deepdiff paths or regexes."""
    table, source = find_table("replay", start_dir)
    if table is None:
        return ReplayConfig(source=source)
    unknown = set(table) - {"ignore"}
    if unknown:
        raise UsageError(f"{source}: unknown key(s) {', '.join(sorted(unknown))} (expected ignore)")
    ignore = table.get("ignore", [])
    if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
        raise UsageError(f"{source}: ignore must be a list of paths, e.g. [\"root['channelData']\"]")
    return ReplayConfig(tuple(ignore), source)
