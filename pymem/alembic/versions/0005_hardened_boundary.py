"""Hardened tenant boundary and audit trail: audit log v2 with row-locked chains and
durable read intents, pinned search settings, registered key ids, AAD v2.

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
    apply_sql(op, "0005_hardened_boundary", "up")


def downgrade() -> None:
    apply_sql(op, "0005_hardened_boundary", "down")
