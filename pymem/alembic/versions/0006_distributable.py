"""A schema that distributes by tenant: keys include user_hash, every API call names
its tenant, row-level triggers only. Valid on plain PostgreSQL; ``pymem distribute``
turns it into Citus distributed tables.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

from pymem.migrations import apply_sql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql(op, "0006_distributable", "up")


def downgrade() -> None:
    apply_sql(op, "0006_distributable", "down")
