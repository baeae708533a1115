"""Caller-chosen ids (hashed or UUID, sealed), upsert, delete and list by id, blind-index
filters on sealed metadata, and v2 reads that return the sealed caller id.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

from pymem.migrations import apply_sql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql(op, "0007_caller_ids_and_filters", "up")


def downgrade() -> None:
    apply_sql(op, "0007_caller_ids_and_filters", "down")
