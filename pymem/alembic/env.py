"""Alembic environment for pymem: online migrations only, one transaction per revision."""

from alembic import context
from sqlalchemy import create_engine, pool, text

from pymem.config import DEFAULT_EMBEDDING_DIM, EMBEDDING_TYPES, MAX_HALFVEC_DIM, MAX_VECTOR_DIM, get_settings
from pymem.db import database_url, sqlalchemy_url
from pymem.distribute import migration_connect_args
from pymem.errors import MigrationRefused
from pymem.migrations import PLACEHOLDER_DIM, TYPED_FROM
from pymem.restores import FIX, RESTORE_CHECK_SQL, restore_problems

config = context.config
if config.config_file_name is not None and not config.attributes.get("dsn"):
    from logging.config import fileConfig

    fileConfig(config.config_file_name, disable_existing_loggers=False)

# The dimension and type of memory_chunks.embedding, and the schema's revision, when the
# schema exists. Operators qualified: a database's search path must not pick them.
_EXISTING = text("SELECT a.atttypmod, t.typname::pg_catalog.text FROM pg_catalog.pg_attribute a"
                 " JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid"
                 " WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass('pymem.memory_chunks')"
                 " AND a.attname OPERATOR(pg_catalog.=) 'embedding'")
_REVISION = text("SELECT version_num FROM public.alembic_version")


def _requested(name: str, setting):
    """-x name=..., else the caller's attribute, else the setting; None when none is given."""
    raw = context.get_x_argument(as_dictionary=True).get(name)
    if raw is not None:
        return raw
    given = config.attributes.get(name)
    return setting if given is None else given


def _requested_type() -> str | None:
    kind = _requested("embedding_type", get_settings().embedding_type)
    kind = None if kind is None else str(kind).strip().lower()  # as PYMEM_EMBEDDING_TYPE is read
    if kind is not None and kind not in EMBEDDING_TYPES:
        raise MigrationRefused(f"the embedding type must be one of {', '.join(EMBEDDING_TYPES)}")
    return kind


def _requested_dim(kind: str) -> int | None:
    raw = _requested("embedding_dim", get_settings().embedding_dim)
    if raw is None:
        return None
    try:
        dim = int(raw)
    except ValueError:
        raise MigrationRefused("the embedding dimension must be an integer") from None
    limit = MAX_HALFVEC_DIM if kind == "halfvec" else MAX_VECTOR_DIM
    if not 1 <= dim <= limit:
        raise MigrationRefused(f"the embedding dimension must be between 1 and {limit} for {kind} (HNSW's limit)")
    return dim


def _revision(connection) -> str | None:
    """The database's revision; None before its first migration. A migrated database that
    pymem's roles do not own (restored without them: :mod:`pymem.restores`) is refused."""
    revision = (connection.execute(_REVISION).scalar()
                if connection.execute(text("SELECT pg_catalog.to_regclass('public.alembic_version')")).scalar()
                else None)
    problems = restore_problems(tuple(connection.exec_driver_sql(RESTORE_CHECK_SQL).one())) if revision else []
    connection.commit()
    if problems:
        raise MigrationRefused(f"{'; '.join(problems)}: {FIX}")
    return revision


def _embedding(connection, revision: str | None) -> tuple[int, str]:
    """The dimension and type to migrate with: the database's own once it has them (a different
    request is refused), except that revision 0023 may turn a vector schema into halfvec."""
    existing_dim, existing_type = connection.execute(_EXISTING).one_or_none() or (None, None)
    connection.commit()
    requested_type = _requested_type()
    kind = requested_type or existing_type or "vector"
    requested_dim = _requested_dim(kind)
    if existing_dim is None:
        return requested_dim or DEFAULT_EMBEDDING_DIM, kind
    before_types = revision is not None and revision < TYPED_FROM
    if requested_type is not None and requested_type != existing_type and not (
            before_types and existing_type == "vector"):
        raise MigrationRefused(
            f"this database stores {existing_type} embeddings; it cannot be migrated to {requested_type}"
            f" (the type is fixed when the schema is created, or when it is upgraded to revision {TYPED_FROM})")
    # A halfvec schema of more than 2,000 dimensions is created at a placeholder dimension
    # until revision 0023 gives it its own; a migration interrupted before then goes on.
    resumed = before_types and kind == "halfvec" and existing_dim == PLACEHOLDER_DIM
    if requested_dim is not None and requested_dim != existing_dim and not resumed:
        raise MigrationRefused(
            f"this database stores {existing_dim}-dimensional embeddings; it cannot be migrated to {requested_dim}"
            " (the dimension is fixed when the schema is first created: use a new database for another model)")
    return (requested_dim if resumed and requested_dim else existing_dim), kind


def run_migrations_online() -> None:
    dsn = config.attributes.get("dsn") or database_url()
    # On a Citus coordinator not yet distributed, the DDL stays local (pymem distribute).
    engine = create_engine(sqlalchemy_url(dsn), poolclass=pool.NullPool, connect_args=migration_connect_args(dsn))
    with engine.connect() as connection:
        dim, kind = _embedding(connection, _revision(connection))
        context.config.attributes["embedding_dim_resolved"] = dim
        context.config.attributes["embedding_type_resolved"] = kind
        context.configure(
            connection=connection,
            target_metadata=None,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("pymem migrations run online only: they check the server's pgvector version")
run_migrations_online()
