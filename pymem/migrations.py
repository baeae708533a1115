"""Apply the versioned SQL in ``pymem/sql/`` through alembic, and run alembic from Python.

``pymem/sql/NNNN_name.up.sql`` / ``.down.sql`` are the source of truth. A released
file is frozen: its sha256 is listed in ``pymem/sql/checksums.sha256`` and applying
a file whose bytes no longer match refuses to run, so a database is never migrated
with SQL that differs from what was reviewed.

The SQL and the alembic scripts ship inside the package (read through
``importlib.resources``), so ``pip install pymem`` then ``pymem migrate`` works
anywhere; from a checkout, ``alembic upgrade head`` uses the same files
(``alembic.ini``: ``script_location = pymem:alembic``).
"""

from __future__ import annotations

import hashlib
from importlib.resources import files
from importlib.resources.abc import Traversable

SQL_DIR: Traversable = files("pymem") / "sql"
ALEMBIC_SCRIPTS = "pymem:alembic"


class ChecksumMismatch(RuntimeError):
    """A released SQL file differs from its recorded sha256."""


def recorded_checksums() -> dict[str, str]:
    """Map file name -> sha256 hex, as recorded in ``sql/checksums.sha256``."""
    sums: dict[str, str] = {}
    for line in (SQL_DIR / "checksums.sha256").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split(maxsplit=1)
            sums[name.strip()] = digest
    return sums


def file_checksum(path: Traversable) -> str:
    """sha256 hex of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_sql(revision: str, direction: str) -> str:
    """Return the verified text of ``sql/<revision>.<direction>.sql``.

    Raises:
        ValueError: direction is not ``up`` or ``down``.
        ChecksumMismatch: the file is released but its bytes changed, or it is not
            listed in the checksum file at all.
    """
    if direction not in ("up", "down"):
        raise ValueError("direction must be 'up' or 'down'")
    path = SQL_DIR / f"{revision}.{direction}.sql"
    expected = recorded_checksums().get(path.name)
    if expected is None:
        raise ChecksumMismatch(f"{path.name} is not listed in checksums.sha256")
    if file_checksum(path) != expected:
        raise ChecksumMismatch(
            f"{path.name} changed after release; add a new migration instead of editing it"
        )
    return path.read_text()


def apply_sql(op, revision: str, direction: str, settings: dict[str, str] | None = None) -> None:
    """Run one SQL file whole, from an alembic revision.

    Args:
        op: ``alembic.op``.
        revision: e.g. ``"0001_foundation"``.
        direction: ``"up"`` or ``"down"``.
        settings: transaction-local GUCs (``set_config(name, value, true)``) the
            file reads, such as ``pymem.embedding_dim``.

    The file is sent as one simple-protocol query with no parameters, so ``%``
    and ``:name`` in it reach Postgres untouched, and ``$$`` bodies stay whole.
    """
    bind = op.get_bind()
    for name, value in (settings or {}).items():
        bind.exec_driver_sql("SELECT set_config(%s, %s, true)", (name, value))
    # Not exec_driver_sql: SQLAlchemy passes an empty parameter tuple, and psycopg
    # then parses every '%' as a placeholder. params=None sends the text as is.
    bind.connection.driver_connection.execute(read_sql(revision, direction))


def alembic_config(dsn: str | None = None, embedding_dim: int | None = None):
    """An alembic ``Config`` for this project, optionally for a given DSN and dimension."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", ALEMBIC_SCRIPTS)
    if dsn is not None:
        cfg.attributes["dsn"] = dsn
    if embedding_dim is not None:
        cfg.attributes["embedding_dim"] = int(embedding_dim)
    return cfg


def upgrade(dsn: str | None = None, revision: str = "head", embedding_dim: int | None = None) -> None:
    """``alembic upgrade`` against ``dsn`` (default: :func:`pymem.db.database_url`)."""
    from alembic import command

    command.upgrade(alembic_config(dsn, embedding_dim), revision)


def downgrade(dsn: str | None = None, revision: str = "base") -> None:
    """``alembic downgrade`` against ``dsn``."""
    from alembic import command

    command.downgrade(alembic_config(dsn), revision)
