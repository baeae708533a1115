"""Helpers shared by the test suites (fixtures are plugins in tests/fixtures/).

Vectors, SQL the suites share, and the pgTAP runner: pgTAP comes from Debian's
``postgresql-15-pgtap``; its extension files are plain SQL and load into the
embedded PG 16/18 servers once copied into their share dir.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg

from pymem.config import get_settings
from pymem_devtools.ring_rows import write_ring_rows  # noqa: F401 (the suites' helper)

#: The repository checkout the tests run from.
ROOT = Path(__file__).resolve().parent.parent
#: Known-answer vectors and other test data (tests/data/README.md).
DATA_DIR = ROOT / "tests" / "data"
#: The embedding dimension of the suites' databases.
DIM = 384
SEARCH_COUNT_SQL = "SELECT count(*) FROM pymem.search_chunks(%s::bpchar, %s::uuid, %b::public.vector, %s::int)"


def external_database() -> bool:
    """True when the suites run against PYMEM_DATABASE_URL instead of embedded servers."""
    return get_settings().database_url is not None


#: The PostgreSQL majors a suite runs on: 16 and 18 embedded, or the external server (None).
SERVER_VERSIONS = [None] if external_database() else [16, 18]


def source_copy(dest: Path) -> Path:
    """A copy of the checkout's sources in ``dest`` (no venv, git data or build outputs), to build
    wheels from: setuptools reuses an in-tree ``build/``, which can hold files since removed."""
    ignored = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                     ".hypothesis", "onnx_models", "benchmarks", ".coverage*")
    shutil.copytree(ROOT, dest, ignore=ignored)
    return dest


def vec(seed: int, dim: int = DIM) -> np.ndarray:
    """A unit vector, the same for the same seed."""
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


# ---------------------------------------------------------------------------
# pgTAP
# ---------------------------------------------------------------------------
TAP_DIR = ROOT / "tests" / "sql"
TAP_FILES = sorted(TAP_DIR.glob("[0-9]*.sql"))
TAP_ROLE = "pymem_tap"
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


def prepare_tap_database(cluster, name: str, *, inherit: bool = False) -> str:
    """Migrate a 3-d database, load pgTAP + helpers + seed; return the tap role's DSN.

    ``inherit``: the tap login inherits pymem_app instead of each file's SET ROLE
    switching to it (Citus, which connects to workers as the current user).
    """
    install_pgtap(cluster.sharedir())
    admin = cluster.fresh_database(name, embedding_dim=3)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pgtap")
    run_sql(cluster.psql(), admin, TAP_DIR / "fixtures" / "helpers.sql")
    # NOINHERIT: the login role holds nothing itself; each file does SET LOCAL ROLE pymem_app.
    cluster.login_role(TAP_ROLE, ["pymem_app"], inherit=inherit)
    tap_url = cluster.url(name, user=TAP_ROLE)
    seed = TAP_DIR / "fixtures" / "seed.sql"
    with tempfile.TemporaryDirectory() as scratch:
        run_sql(cluster.psql(), tap_url, inheriting_copy(seed, Path(scratch)) if inherit else seed)
    return tap_url


def open_everything(admin_url: str) -> dict[int, int]:
    """Open every field of every row, as the app would (ring keys, or the tenant's data
    key unwrapped under its root key); return rows per key id. Raises InvalidTag if one
    does not open."""
    from pymem.root_keys import KeyContext, provider_of
    from pymem.security import chunk_aad, expiry_label, open_sealed, open_with
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    per_key: dict[int, int] = {}
    with psycopg.connect(admin_url) as conn:
        rows = conn.execute("SELECT id, user_hash, doc_id, source, aad_version, expires_at, text_cipher,"
                            " meta_cipher, emb_cipher, key_id FROM pymem.memory_chunks").fetchall()
        data_keys = {(h, v): (root, bytes(wrapped)) for h, v, root, wrapped in conn.execute(
            "SELECT user_hash, version, root_key, wrapped FROM pymem.data_keys WHERE wrapped IS NOT NULL")}
    for chunk_id, user_hash, doc_id, source, aad_version, expires_at, *blobs, key_id in rows:
        labels = None if aad_version == 1 else (doc_id, source)
        expiry = expiry_label(expires_at) if aad_version == 3 else None
        if key_id < 0:
            root, wrapped = data_keys[(user_hash, -key_id)]
            aead = AESGCM(provider_of(root).unwrap(root, wrapped, KeyContext(user_hash, -key_id)))
        for blob, field_name in zip(blobs, ("text", "meta", "emb")):
            aad = chunk_aad(user_hash, str(chunk_id), field_name, labels, expiry)
            if key_id < 0:
                open_with(aead, blob, aad)
            else:
                open_sealed(blob, aad, key_id=key_id)
        per_key[key_id] = per_key.get(key_id, 0) + 1
    return per_key
