"""Exact search when it is cheaper than walking the bucket graph.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

from pymem.migrations import apply_sql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql(op, "0010_exact_search_when_cheaper", "up")


def downgrade() -> None:
    apply_sql(op, "0010_exact_search_when_cheaper", "down")
