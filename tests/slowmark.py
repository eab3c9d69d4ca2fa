"""The `slow` marker, kept true: `pytest -m "not slow"` is the quick edit loop.

A test is slow when it starts mitmproxy, a subprocess (a bot, mitmdump, Node, a recorder's child) or
Chromium. Tests using a fixture that does (`SLOW_FIXTURES`) are marked here; the others carry
`@pytest.mark.slow` (or a module's `pytestmark`). So that no slow test hides in the fast half, every
test not marked slow runs with mitmproxy's Master, subprocess.Popen and multiprocessing's start
watched: a test that starts one anyway fails, naming what it started.
"""

from __future__ import annotations

import multiprocessing.process
import platform
import subprocess
from collections.abc import Iterator

import pytest
from mitmproxy import master

SLOW_FIXTURES = {"recorders", "demo_db"}  # the embedded recorder (mitmproxy); the demo recorded through it

# platform.platform() runs `uname -p` the first time anything asks (msrest's user agent does, for the SDK):
# ask now, so that one-off is nobody's test.
platform.platform()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _slow_tests_are_marked(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if request.node.get_closest_marker("slow") is not None:
        yield
        return
    started: list[str] = []

    def watch(owner: object, name: str, what: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args: object, **kwargs: object) -> object:
            started.append(what)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    watch(master.Master, "run", "mitmproxy")  # a proxy that runs (taddons.context() builds a Master, runs none)
    watch(subprocess.Popen, "__init__", "a subprocess")
    watch(multiprocessing.process.BaseProcess, "start", "a child process")
    yield
    if started:
        pytest.fail(f"this test starts {', '.join(sorted(set(started)))}: mark it @pytest.mark.slow", pytrace=False)
