"""Alembic environment for pymem: online migrations only, one transaction per revision."""

from alembic import context
from sqlalchemy import create_engine, pool

from pymem.db import database_url, sqlalchemy_url
from pymem.distribute import migration_connect_args

config = context.config
if config.config_file_name is not None and not config.attributes.get("dsn"):
    from logging.config import fileConfig

    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _embedding_dim() -> int:
    """-x embedding_dim=N, else the caller's attribute, else PYMEM_EMBEDDING_DIM (384)."""
    from pymem.config import get_settings

    raw = context.get_x_argument(as_dictionary=True).get("embedding_dim")
    if raw is None:
        return int(config.attributes.get("embedding_dim") or get_settings().embedding_dim)
    try:
        dim = int(raw)
    except ValueError:
        raise SystemExit("-x embedding_dim must be an integer") from None
    if not 1 <= dim <= 2000:
        raise SystemExit("-x embedding_dim must be between 1 and 2000 (HNSW's limit)")
    return dim


def run_migrations_online() -> None:
    dsn = config.attributes.get("dsn") or database_url()
    # On a Citus coordinator not yet distributed, the DDL stays local (pymem distribute).
    engine = create_engine(sqlalchemy_url(dsn), poolclass=pool.NullPool, connect_args=migration_connect_args(dsn))
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=None,
            transaction_per_migration=True,
        )
        context.config.attributes["embedding_dim_resolved"] = _embedding_dim()
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("pymem migrations run online only: they check the server's pgvector version")
run_migrations_online()
