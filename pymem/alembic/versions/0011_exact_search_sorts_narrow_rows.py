"""An exact search chooses its top k among narrow rows, then reads those k whole.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

from pymem.migrations import apply_sql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql(op, "0011_exact_search_sorts_narrow_rows", "up")


def downgrade() -> None:
    apply_sql(op, "0011_exact_search_sorts_narrow_rows", "down")
