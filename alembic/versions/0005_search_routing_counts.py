"""Route searches by the tenant's row count from key_stats (one index probe, not a bounded count).

Revision ID: 0005
Revises: 0004
"""

from alembic import op

from pymem.migrations import apply_sql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql(op, "0005_search_routing_counts", "up")


def downgrade() -> None:
    apply_sql(op, "0005_search_routing_counts", "down")
