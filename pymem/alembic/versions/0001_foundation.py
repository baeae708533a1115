"""Foundation: schema, roles, memory_chunks with forced RLS, audit log, HNSW, SQL API.

Revision ID: 0001
Revises:
"""

from alembic import context, op

from pymem.migrations import apply_sql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    dim = context.config.attributes["embedding_dim_resolved"]
    apply_sql(op, "0001_foundation", "up", settings={"pymem.embedding_dim": str(dim)})


def downgrade() -> None:
    apply_sql(op, "0001_foundation", "down")
