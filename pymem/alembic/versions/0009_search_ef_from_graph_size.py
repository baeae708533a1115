"""ef_search at least 1/400 of the rows of the bucket graph a search walks.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

from pymem.migrations import apply_sql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql(op, "0009_search_ef_from_graph_size", "up")


def downgrade() -> None:
    apply_sql(op, "0009_search_ef_from_graph_size", "down")
