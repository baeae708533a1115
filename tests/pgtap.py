"""Run pgTAP files with psql and read their TAP output.

pgTAP comes from Debian's ``postgresql-15-pgtap``; its extension files are plain
SQL and load into the embedded PG 16/18 servers once copied into their share dir.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

DEBIAN_PGTAP_DIR = Path("/usr/share/postgresql/15/extension")
_PLAN = re.compile(r"^1\.\.(\d+)$")
_RESULT = re.compile(r"^(not ok|ok) (\d+)(?: - (.*))?$")


def install_pgtap(sharedir: Path | None) -> None:
    """Copy pgTAP's extension files into an embedded server's share dir.

    Raises:
        RuntimeError: the Debian package is not installed (``make test`` and
            ``.ci/run`` install it; the SQL suites are never silently skipped).
    """
    sources = sorted(DEBIAN_PGTAP_DIR.glob("pgtap*"))
    if not sources:
        raise RuntimeError(
            "pgTAP is not installed: apt-get install postgresql-15-pgtap (make test does this)"
        )
    if sharedir is None:  # external server: the DBA installs pgTAP there
        return
    target = sharedir / "extension"
    for src in sources:
        dest = target / src.name
        if not dest.exists():
            shutil.copyfile(src, dest)


_SET_ROLE = re.compile(r"^SET (LOCAL )?ROLE pymem_app;\n", re.MULTILINE)


def inheriting_copy(path: Path, directory: Path) -> Path:
    """A copy of a pgTAP or fixture file without its ``SET [LOCAL] ROLE pymem_app``
    lines, for a login that inherits pymem_app (Citus reaches the workers as the
    current user, and pymem_app itself cannot log in)."""
    copy = directory / path.name
    copy.write_text(_SET_ROLE.sub("", path.read_text()))
    return copy


@dataclass
class TapResult:
    """Parsed output of one pgTAP file."""

    planned: int | None = None
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    output: str = ""

    @property
    def ran(self) -> int:
        return len(self.passed) + len(self.failed)

    @property
    def ok(self) -> bool:
        return self.planned is not None and not self.failed and self.ran == self.planned


def parse_tap(text: str) -> TapResult:
    """Collect the plan and each ``ok``/``not ok`` line; other lines are ignored."""
    result = TapResult(output=text)
    for line in (raw.strip() for raw in text.splitlines()):
        if m := _PLAN.match(line):
            result.planned = int(m.group(1))
        elif m := _RESULT.match(line):
            (result.passed if m.group(1) == "ok" else result.failed).append(m.group(3) or m.group(2))
    return result


def run_file(psql: str, dsn: str, path: Path, timeout: float = 120) -> TapResult:
    """Run one file with ``psql -X -v ON_ERROR_STOP=1`` and parse its TAP.

    A psql error (exit status != 0) is reported as a failed assertion so that a
    broken file can never pass by printing nothing.
    """
    proc = subprocess.run(
        [psql, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", str(path)],
        capture_output=True, text=True, timeout=timeout,
    )
    result = parse_tap(proc.stdout)
    result.output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        result.failed.append(f"psql exited {proc.returncode}: {proc.stderr.strip()[:500]}")
    return result


def run_sql(psql: str, dsn: str, path: Path) -> None:
    """Run a fixture file, raising on any error."""
    subprocess.run(
        [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", str(path)],
        check=True, capture_output=True, text=True,
    )
