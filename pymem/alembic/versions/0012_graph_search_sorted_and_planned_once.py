"""A graph search returns its hits in distance order and keeps one plan per bucket graph.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

from pymem.migrations import apply_sql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql(op, "0012_graph_search_sorted_and_planned_once", "up")


def downgrade() -> None:
    apply_sql(op, "0012_graph_search_sorted_and_planned_once", "down")
