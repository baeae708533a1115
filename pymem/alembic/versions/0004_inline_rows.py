"""Inline chunk rows: ciphertext stored EXTERNAL (never compressed), embedding MAIN.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

from pymem.migrations import apply_sql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql(op, "0004_inline_rows", "up")


def downgrade() -> None:
    apply_sql(op, "0004_inline_rows", "down")
