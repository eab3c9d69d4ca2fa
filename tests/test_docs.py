"""What the code cites is in the repository: every note a docstring or comment names is in docs/."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITED = re.compile(r"\b([\w-]+\.md)\b")
# README.md is ours, at the root; LIVESTREAMING.md is Web Chat's (docs/), cited with its repository
UPSTREAM = {"README.md", "LIVESTREAMING.md"}


def cited_notes() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "botproxy").rglob("*.py")):
        for name in CITED.findall(path.read_text(encoding="utf-8")):
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_cited_note_is_in_the_repository():
    notes = cited_notes()
    assert "protocol.md" in notes  # the rules cite it: a test that finds nothing proves nothing
    missing = {name: where for name, where in notes.items()
               if name not in UPSTREAM and not (ROOT / "docs" / name).is_file()}
    assert not missing, f"cited but not in docs/: {missing}"


def test_nothing_points_outside_the_repository():
    for path in [*(ROOT / "botproxy").rglob("*.py"), ROOT / "pyproject.toml", ROOT / "README.md"]:
        text = path.read_text(encoding="utf-8")
        assert "shared/reference" not in text and "../shared" not in text, path
