"""Search buckets: 64 partial HNSW graphs (by the low 6 bits of user_hash) instead
of one, and ef_search from the tenant's share of its bucket's graph.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

from pymem.migrations import apply_sql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql(op, "0008_search_buckets", "up")


def downgrade() -> None:
    apply_sql(op, "0008_search_buckets", "down")
