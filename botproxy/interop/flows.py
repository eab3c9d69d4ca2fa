"""mitmproxy flow files (`mitmdump -w`): read into recorder events (filled in by the flows slice)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def read_flows(path: Path) -> list[Any] | None:
    """The events of a flow file, or None when the file is not one."""
    return None
