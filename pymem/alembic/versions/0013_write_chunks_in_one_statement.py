"""write_chunks inserts a call's rows in one statement instead of one INSERT per row.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

from pymem.migrations import apply_sql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql(op, "0013_write_chunks_in_one_statement", "up")


def downgrade() -> None:
    apply_sql(op, "0013_write_chunks_in_one_statement", "down")
