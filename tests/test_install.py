"""botproxy installs beside any bot: botbuilder is the `demo` extra's, and nothing else imports it.

The fast tests hide botbuilder (and what only it brings: msrest, jsonpickle, botframework) from a real
interpreter; the slow ones install botproxy's wheel with real pip into fresh venvs that already hold
what used to make the resolution fail (botbuilder-core 4.15.1, jsonpickle 4.1.1).
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO_HINT = "pip install 'botproxy[demo]'"

# A real interpreter in which the demo extra's packages cannot be imported, as where it is not installed.
HIDE_DEMO_EXTRA = """
import sys

class HideDemoExtra:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("botbuilder", "botframework", "msrest", "jsonpickle"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, HideDemoExtra())
"""


def run_hidden(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", HIDE_DEMO_EXTRA + code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )


@pytest.mark.slow
def test_no_module_but_the_sample_bot_imports_botbuilder(tmp_path: Path) -> None:
    proc = run_hidden(
        """
import importlib, json, pkgutil
import botproxy
from botproxy.errors import MissingExtra
needs = []
for module in pkgutil.walk_packages(botproxy.__path__, "botproxy."):
    if module.name == "botproxy.__main__":
        continue
    try:
        importlib.import_module(module.name)
    except MissingExtra:
        needs.append(module.name)
print(json.dumps(sorted(needs)))
""",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == ["botproxy.demo", "botproxy.sample_bot"]


@pytest.mark.slow
def test_demo_without_the_extra_says_how_to_get_it(tmp_path: Path) -> None:
    proc = run_hidden(
        "sys.argv = ['botproxy', 'demo', '--db', 'demo.db']\nfrom botproxy.cli import main\nmain()", tmp_path
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("botproxy: error: the sample bot needs the Bot Framework SDK")
    assert DEMO_HINT in proc.stderr
    assert not (tmp_path / "demo.db").exists()


@pytest.mark.slow
def test_sample_bot_without_the_extra_says_how_to_get_it(tmp_path: Path) -> None:
    proc = run_hidden(
        "import runpy\nsys.argv = ['sample_bot', '--port', '0']\n"
        "runpy.run_module('botproxy.sample_bot', run_name='__main__', alter_sys=True)",
        tmp_path,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: the sample bot needs the Bot Framework SDK")
    assert DEMO_HINT in proc.stderr


# -- real pip, fresh venvs ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def botproxy_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """botproxy built as users get it (a wheel, not an editable tree)."""
    out = tmp_path_factory.mktemp("wheel")
    pip(sys.executable, "wheel", "--no-deps", "--wheel-dir", str(out), str(ROOT))
    (wheel,) = out.glob("botproxy-*.whl")
    return wheel


def pip(python: str | Path, *args: str) -> str:
    proc = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"pip {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def installed(python: Path) -> dict[str, str]:
    return {d["name"].lower(): d["version"] for d in json.loads(pip(python, "list", "--format", "json"))}


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize(
    ("already", "demo_says"),
    [
        pytest.param("botbuilder-core==4.15.1", DEMO_HINT, id="botbuilder-core-4.15.1"),
        pytest.param("jsonpickle==4.1.1", DEMO_HINT, id="jsonpickle-4.1.1"),
        # A whole 4.15 bot environment: botproxy installs; its sample bot, which needs 4.16, says so.
        pytest.param(
            "botbuilder-integration-aiohttp==4.15.1",
            "needs botbuilder-core>=4.16, and this environment has 4.15.1",
            id="botbuilder-integration-aiohttp-4.15.1",
        ),
    ],
)
def test_installs_beside_a_bot_environment(already: str, demo_says: str, botproxy_wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    pip(python, "install", "--quiet", already)
    name, version = already.split("==")
    pip(python, "install", "--quiet", str(botproxy_wheel))  # a real resolution against what is there

    versions = installed(python)
    assert versions["botproxy"] == "0.1.0"
    assert versions[name] == version  # the bot's own version is left alone
    if name != "botbuilder-integration-aiohttp":
        assert "botbuilder-integration-aiohttp" not in versions  # the demo extra was not pulled in
    pip(python, "check")
    botproxy = env_dir / "bin" / "botproxy"
    for args in (["--help"], ["record", "--help"]):
        proc = subprocess.run([str(botproxy), *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "Usage: botproxy" in proc.stdout
    demo = subprocess.run([str(botproxy), "demo"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert demo.returncode == 2
    assert len(demo.stderr.splitlines()) == 1 and demo_says in demo.stderr, demo.stderr
    assert "pipx install 'botproxy[demo]'" in demo.stderr
    assert not (tmp_path / "botproxy.db").exists()
