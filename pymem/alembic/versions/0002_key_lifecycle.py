"""Key lifecycle: per-key counters, tenant-scoped export and re-keying, pymem_maintainer.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from pymem.migrations import apply_sql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql(op, "0002_key_lifecycle", "up")


def downgrade() -> None:
    apply_sql(op, "0002_key_lifecycle", "down")
