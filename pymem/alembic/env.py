"""Alembic environment for pymem: online migrations only, one transaction per revision."""

from alembic import context
from sqlalchemy import create_engine, pool, text

from pymem.config import DEFAULT_EMBEDDING_DIM, get_settings
from pymem.db import database_url, sqlalchemy_url
from pymem.distribute import migration_connect_args
from pymem.errors import MigrationRefused

config = context.config
if config.config_file_name is not None and not config.attributes.get("dsn"):
    from logging.config import fileConfig

    fileConfig(config.config_file_name, disable_existing_loggers=False)

# The dimension memory_chunks.embedding has, when the schema exists.
# Operators qualified: a database's search path must not pick them.
_EXISTING_DIM = text("SELECT a.atttypmod FROM pg_catalog.pg_attribute a"
                     " WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass('pymem.memory_chunks')"
                     " AND a.attname OPERATOR(pg_catalog.=) 'embedding'")


def _requested_dim() -> int | None:
    """-x embedding_dim=N, else the caller's attribute, else PYMEM_EMBEDDING_DIM; None when none is given."""
    raw = context.get_x_argument(as_dictionary=True).get("embedding_dim")
    if raw is None:
        given = config.attributes.get("embedding_dim") or get_settings().embedding_dim
        return None if given is None else int(given)
    try:
        dim = int(raw)
    except ValueError:
        raise SystemExit("-x embedding_dim must be an integer") from None
    if not 1 <= dim <= 2000:
        raise SystemExit("-x embedding_dim must be between 1 and 2000 (HNSW's limit)")
    return dim


def _embedding_dim(connection) -> int:
    """The dimension to migrate with: the database's own once it has one (a different request is refused)."""
    requested = _requested_dim()
    existing = connection.execute(_EXISTING_DIM).scalar()
    connection.commit()
    if existing is None:
        return requested or DEFAULT_EMBEDDING_DIM
    if requested is not None and requested != existing:
        raise MigrationRefused(
            f"this database stores {existing}-dimensional embeddings; it cannot be migrated to {requested}"
            " (the dimension is fixed when the schema is first created: use a new database for another model)")
    return existing


def run_migrations_online() -> None:
    dsn = config.attributes.get("dsn") or database_url()
    # On a Citus coordinator not yet distributed, the DDL stays local (pymem distribute).
    engine = create_engine(sqlalchemy_url(dsn), poolclass=pool.NullPool, connect_args=migration_connect_args(dsn))
    with engine.connect() as connection:
        context.config.attributes["embedding_dim_resolved"] = _embedding_dim(connection)
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
