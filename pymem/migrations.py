"""Apply pymem's versioned SQL through alembic, and run alembic from Python.

``pymem/sql/`` (its README says how to change it):

``history/NNNN_name.{up,down}.sql``
    Revisions 0001-0013 as they were released. Each redefined what it changed, so
    these files hold old copies of many functions; only databases below 0014 run them.
``schema/NNNN_name.{up,down}.sql``
    The run-once DDL of a later revision (tables, columns, indexes, policies,
    ``DROP FUNCTION`` of a signature that goes away). A revision may have none.
``functions/*.sql``
    The current definition of every function, one area per file, and the grants.
    Editable; never run directly.
``released/NNNN.sql``
    ``functions/`` frozen into one bundle when revision NNNN was cut
    (``0013.sql``: the functions as revisions 0001-0013 left them).
``checksums.sha256``
    The sha256 of every file a database can run (history, schema, released). A
    file whose bytes differ from its recorded sum, or that has none, is refused,
    so a database is never migrated with SQL other than what was reviewed.

Upgrading to a revision after 0013 runs its schema step, then the bundle released
with it (if it changed any function). Downgrading from it runs its schema down
step, then re-applies the bundle that was current at the revision below.

The SQL and the alembic scripts ship inside the package (read through
``importlib.resources``), so an installed ``pymem migrate`` works anywhere; from a
checkout, ``alembic upgrade head`` uses the same files (``alembic.ini``:
``script_location = pymem:alembic``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from importlib.resources import files
from importlib.resources.abc import Traversable

from .errors import ChecksumMismatch, MigrationRefused

SQL_DIR: Traversable = files("pymem") / "sql"
ALEMBIC_SCRIPTS = "pymem:alembic"
#: Directories whose files a database can run; each file's sha256 is recorded.
FROZEN_DIRS = ("history", "schema", "released")
# Revision 0023 stores embeddings as halfvec when asked (PYMEM_EMBEDDING_TYPE); before it, a
# halfvec schema wider than HNSW indexes as vector is created at this dimension (step_dim).
TYPED_FROM = "0023"
PLACEHOLDER_DIM = 2000


def recorded_checksums() -> dict[str, str]:
    """Map path below ``sql/`` (e.g. ``history/0001_foundation.up.sql``) -> sha256 hex."""
    sums: dict[str, str] = {}
    for line in (SQL_DIR / "checksums.sha256").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split(maxsplit=1)
            sums[name.strip()] = digest
    return sums


def file_checksum(path: Traversable) -> str:
    """sha256 hex of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sql_file(relative: str) -> Traversable:
    path = SQL_DIR
    for part in relative.split("/"):
        path = path / part
    return path


def frozen_sql(relative: str) -> str:
    """The verified text of ``sql/<relative>``.

    Raises:
        ChecksumMismatch: the file is not listed in ``checksums.sha256``, or its bytes
            changed after it was recorded.
    """
    expected = recorded_checksums().get(relative)
    if expected is None:
        raise ChecksumMismatch(f"{relative} is not listed in checksums.sha256")
    if file_checksum(_sql_file(relative)) != expected:
        raise ChecksumMismatch(f"{relative} changed after release; add a new revision instead of editing it")
    return _sql_file(relative).read_text()


def released_bundles() -> list[str]:
    """Revision ids that have a released function bundle, oldest first."""
    return sorted(p.name[:-4] for p in (SQL_DIR / "released").iterdir() if p.name.endswith(".sql"))


def bundle_in_effect(revision: str) -> str:
    """The newest released bundle at or below ``revision`` (e.g. ``"0014"``)."""
    candidates = [r for r in released_bundles() if r <= revision]
    if not candidates:
        raise MigrationRefused(f"no released function bundle at or below revision {revision}")
    return candidates[-1]


def run_sql(op, text: str, settings: dict[str, str] | None = None) -> None:
    """Run SQL text whole, in the migration's transaction.

    Args:
        op: ``alembic.op``.
        text: one or more statements; sent as one simple-protocol query with no
            parameters, so ``%`` and ``:name`` reach Postgres untouched and ``$$``
            bodies stay whole.
        settings: transaction-local GUCs (``set_config(name, value, true)``) the
            SQL reads, such as ``pymem.embedding_dim``.
    """
    bind = op.get_bind()
    for name, value in (settings or {}).items():
        bind.exec_driver_sql("SELECT set_config(%s, %s, true)", (name, value))
    # Not exec_driver_sql: SQLAlchemy passes an empty parameter tuple, and psycopg
    # then parses every '%' as a placeholder. params=None sends the text as is.
    bind.connection.driver_connection.execute(text)


def _exists(relative: str) -> bool:
    return _sql_file(relative).is_file()


def migrate_step(op, name: str, direction: str, settings: dict[str, str] | None = None) -> None:
    """Run revision ``name`` (e.g. ``"0014_functions_by_area"``) ``up`` or ``down``.

    Raises:
        ValueError: direction is not ``up`` or ``down``.
        ChecksumMismatch: a file it needs is not the reviewed one.
    """
    if direction not in ("up", "down"):
        raise ValueError("direction must be 'up' or 'down'")
    history = f"history/{name}.{direction}.sql"
    if _exists(history):
        run_sql(op, frozen_sql(history), settings)
        return
    revision = name[:4]
    schema = f"schema/{name}.{direction}.sql"
    if _exists(schema):
        run_sql(op, frozen_sql(schema), settings)
    if revision in released_bundles():
        bundle = revision if direction == "up" else bundle_in_effect(f"{int(revision) - 1:04d}")
        run_sql(op, frozen_sql(f"released/{bundle}.sql"), settings)


def revision_steps(name: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """``(upgrade, downgrade)`` for the alembic revision file of ``name``."""

    def step(direction: str) -> None:
        from alembic import context, op

        attributes = context.config.attributes
        dim, kind = attributes["embedding_dim_resolved"], attributes.get("embedding_type_resolved", "vector")
        migrate_step(op, name, direction, settings={"pymem.embedding_dim": str(step_dim(name, dim, kind)),
                                                    "pymem.embedding_type": kind})

    return (lambda: step("up")), (lambda: step("down"))


def step_dim(name: str, dim: int, kind: str) -> int:
    """The dimension revision ``name`` creates the schema with: ``dim``, except that before
    revision 0023 (which stores halfvec) a halfvec schema of more dimensions than HNSW indexes
    as vector is created at :data:`PLACEHOLDER_DIM`, on a table still empty, and 0023 gives
    it ``dim``."""
    return PLACEHOLDER_DIM if kind == "halfvec" and dim > PLACEHOLDER_DIM and name[:4] < TYPED_FROM else dim


def head_revision() -> str:
    """The newest revision this pymem ships (e.g. ``"0014"``)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def reapply_functions(dsn: str) -> str:
    """Re-apply the function bundle of the database's revision, in one transaction.

    Restores every function definition and grant to what the revision shipped
    (after someone replaced one, say); tables and rows are untouched. Returns the
    bundle's revision.

    Raises:
        MigrationRefused: the database is not at this pymem's head revision.
        ChecksumMismatch: the bundle is not the reviewed one.
    """
    import psycopg

    from . import fingerprints
    from .distribute import migration_connect_args
    from .doctor import database_revision

    head = head_revision()
    with psycopg.connect(dsn, **migration_connect_args(dsn)) as conn:
        at = database_revision(conn)
        if at != head:
            raise MigrationRefused(f"the database is at {at}, not {head}: run pymem migrate instead")
        bundle = bundle_in_effect(head)
        conn.execute(frozen_sql(f"released/{bundle}.sql"))
        # Committed only if it worked: an event trigger, a function another role owns or
        # one that is not pymem's would otherwise be reported restored.
        problems = fingerprints.differences(fingerprints.grouped(fingerprints.shipped(head))["function"],
                                            fingerprints.grouped(fingerprints.on_server(conn))["function"])
        if problems:
            conn.rollback()
            raise MigrationRefused("re-applying the shipped functions did not restore them, so nothing was changed: "
                                   + "; ".join(problems) + " (drop what is not pymem's, give pymem_owner back what"
                                   " it owned, and look for event triggers)")
    return bundle


def alembic_config(dsn: str | None = None, embedding_dim: int | None = None, embedding_type: str | None = None):
    """An alembic ``Config`` for this project, optionally for a given DSN, dimension and type."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", ALEMBIC_SCRIPTS)
    if dsn is not None:
        cfg.attributes["dsn"] = dsn
    if embedding_dim is not None:
        cfg.attributes["embedding_dim"] = int(embedding_dim)
    if embedding_type is not None:
        cfg.attributes["embedding_type"] = embedding_type
    return cfg


def upgrade(dsn: str | None = None, revision: str = "head", embedding_dim: int | None = None,
            embedding_type: str | None = None) -> None:
    """``alembic upgrade`` against ``dsn`` (default: :func:`pymem.db.database_url`).

    Args:
        embedding_dim, embedding_type: the schema's embeddings (``PYMEM_EMBEDDING_DIM``,
            ``PYMEM_EMBEDDING_TYPE``: ``vector`` or ``halfvec``), for a new schema; an
            existing one keeps its own, except that the upgrade to revision 0023 may
            store a vector schema as halfvec.

    Raises:
        MigrationRefused: ``embedding_dim`` or ``embedding_type`` differs from what the
            database was migrated with.
        ChecksumMismatch: a SQL file is not the reviewed one.
    """
    from alembic import command

    command.upgrade(alembic_config(dsn, embedding_dim, embedding_type), revision)


def downgrade(dsn: str | None = None, revision: str = "base") -> None:
    """``alembic downgrade`` against ``dsn``."""
    from alembic import command

    command.downgrade(alembic_config(dsn), revision)
