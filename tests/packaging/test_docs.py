"""The README's and the getting-started page's code blocks, run as printed.

Each page's blocks run in order in one bash process, as a newcomer would type
them: in a copy of the checkout, in a fresh virtual environment, with no
``PYMEM_DATABASE_URL``, no keys and an empty ``PYMEM_HOME``; a ``python`` block is
saved to a file and run with that environment's python. The README's quick start
is the exception: ``make demo`` runs in the checkout itself (it builds its own
environment), and ``make test`` is the command running this test (``.ci/run``
calls it), so it is checked to be that, not run again.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.utils import ROOT, source_copy

PAGES = {"README": ROOT / "README.md", "getting-started": ROOT / "docs" / "getting-started.md"}
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
_STRIPPED = ("PYMEM_DATABASE_URL", "PYTHONPATH", "VIRTUAL_ENV", "COV_CORE_SOURCE", "COV_CORE_CONFIG",
             "COV_CORE_DATAFILE", "MEMORY_ENCRYPTION_KEY", "MEMORY_ENCRYPTION_KEY_ID", "MEMORY_ENCRYPTION_OLD_KEYS",
             "MEMORY_TENANT_HMAC_KEY", "MEMORY_TENANT_HMAC_KEY_NEW", "PYMEM_HOME")


def blocks(page: Path) -> list[tuple[str, str]]:
    """(language, code) of every fenced block of a page, in order."""
    return [(m.group(1), m.group(2)) for m in _BLOCK.finditer(page.read_text())]


def quick_start(page_blocks: list[tuple[str, str]]) -> tuple[str, str]:
    return next(b for b in page_blocks if "make demo" in b[1])


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory):
    """(checkout copy, environment) of a fresh machine: a new venv first on PATH, nothing else set."""
    root = tmp_path_factory.mktemp("newcomer")
    env = {k: v for k, v in os.environ.items() if k not in _STRIPPED}
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, env=env)
    env.update(PATH=f"{root / 'venv' / 'bin'}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(root / "venv"),
               PYMEM_HOME=str(root / "home"))
    yield source_copy(root / "checkout"), env
    if shutil.which("pymem", path=env["PATH"]):
        subprocess.run(["pymem", "local-db", "--stop"], env=env, capture_output=True, timeout=120)


def run_page(name: str, checkout: Path, env: dict[str, str], *, skip: tuple[str, str] | None = None) -> str:
    lines = ["set -euo pipefail"]
    for number, (language, code) in enumerate(blocks(PAGES[name])):
        if (language, code) == skip:
            continue
        assert language in ("bash", "python"), f"{name}: a {language or 'plain'} block cannot run"
        if language == "bash":
            lines.append(code)
        else:
            script = checkout / f"{name}_{number}.py"
            script.write_text(code)
            lines.append(f"python {script.name}")
    done = subprocess.run(["bash", "-c", "\n".join(lines)], cwd=checkout, env=env, capture_output=True, text=True,
                          timeout=1500)
    assert done.returncode == 0, f"{name}:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}"
    return done.stdout


def test_every_block_of_the_pages_is_bash_or_python():
    for name, page in PAGES.items():
        found = blocks(page)
        assert found, name
        assert {language for language, _ in found} <= {"bash", "python"}, name


def test_the_readme_quick_start_runs(tmp_path):
    language, code = quick_start(blocks(PAGES["README"]))
    commands = [line.split("#")[0].strip() for line in code.splitlines() if line.strip()]
    assert language == "bash" and commands == ["make demo", "make test"]
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M), ".ci/run runs the README's make test"
    env = {k: v for k, v in os.environ.items() if k not in _STRIPPED} | {"PYMEM_HOME": str(tmp_path)}
    done = subprocess.run(["make", "demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "invisible to this tenant" in done.stdout


def test_the_readme_runs_as_printed(newcomer):
    checkout, env = newcomer
    out = run_page("README", checkout, env, skip=quick_start(blocks(PAGES["README"])))
    assert "1 osprey-launch" in out


def test_the_getting_started_page_runs_as_printed(newcomer):
    checkout, env = newcomer
    out = run_page("getting-started", checkout, env)
    assert "pymem 0.1.0" in out and "ok   no temporary objects" in out
    assert "1. flight: The flight to Lisbon leaves at 9:40" in out and "milk Buy oat milk" in out
    assert "stopped the embedded server" in out


_CITATION = re.compile(r"`(tests/[\w/]+\.(?:py|sql))?(?:::([\w:]+))?`")


def test_every_test_the_security_pages_cite_exists():
    """A promise names the test that tries the attack; a renamed or removed test would
    leave the promise unbacked. ``::name`` alone refers to the file cited before it."""
    missing = []
    for page in ("docs/threat-model.md", "docs/security.md"):
        last_file = None
        for path, name in _CITATION.findall((ROOT / page).read_text()):
            if path:
                last_file = path
                if not (ROOT / path).is_file():
                    missing.append(f"{page}: {path}")
            if name and last_file and last_file.endswith(".py"):
                source = (ROOT / last_file).read_text()
                function = name.split("::")[-1]
                if not re.search(rf"^\s*(async )?def {function}\(|^class {function}\b", source, re.MULTILINE):
                    missing.append(f"{page}: {last_file}::{name}")
    assert missing == []
