"""The README's module table is generated from the package's docstrings, so it lists every module and
says what each docstring says. Regenerate it with `python tests/test_module_table.py --write`."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "botproxy"
START, END = "<!-- modules:start -->", "<!-- modules:end -->"
SKIP = {"__main__.py"}
STAGES = ["wire", "record", "checks", "standins", "replay", "present", "interop"]  # the way data flows


def summary(path: Path) -> str:
    """The docstring's first paragraph, on one line."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    first = doc.strip().split("\n\n")[0]
    return " ".join(line.strip() for line in first.splitlines()).replace("|", "\\|")


def module_table() -> str:
    """The root's modules, then one row per package (its `__init__` docstring) followed by its modules,
    packages in the order data flows through them."""
    rows = ["| module | its one job |", "|---|---|"]

    def walk(folder: Path) -> None:
        relative = folder.relative_to(PACKAGE).as_posix()
        prefix = "" if relative == "." else relative + "/"
        if prefix:
            rows.append(f"| **`{prefix}`** | {summary(folder / '__init__.py')} |")
        for path in sorted(folder.glob("*.py")):
            if path.name in SKIP or (prefix and path.name == "__init__.py"):
                continue
            rows.append(f"| `{prefix}{path.name}` | {summary(path)} |")
        subs = [p for p in folder.iterdir() if (p / "__init__.py").is_file()]
        order = {name: n for n, name in enumerate(STAGES)}
        for sub in sorted(subs, key=lambda p: (order.get(p.name, len(STAGES)), p.name)):
            walk(sub)

    walk(PACKAGE)
    return "\n".join(rows) + "\n"


def readme_table(readme: str) -> str:
    start, end = readme.index(START) + len(START), readme.index(END)
    return readme[start:end].strip("\n") + "\n"


def test_the_readme_module_table_is_generated_from_the_docstrings():
    table = readme_table((ROOT / "README.md").read_text(encoding="utf-8"))
    assert "`cli.py`" in table  # the table is where the markers say
    assert table == module_table(), "regenerate it: python tests/test_module_table.py --write"


def test_every_module_has_a_docstring_that_says_its_job():
    for path in PACKAGE.rglob("*.py"):
        if path.name not in SKIP:
            assert summary(path), f"{path.relative_to(ROOT)} has no docstring"


if __name__ == "__main__" and "--write" in sys.argv:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = readme.index(START) + len(START), readme.index(END)
    (ROOT / "README.md").write_text(readme[:start] + "\n" + module_table() + readme[end:], encoding="utf-8")
