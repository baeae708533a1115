"""Tenant-aware search: exact for small tenants, iterative HNSW for large ones, routed by key_stats.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from pymem.migrations import apply_sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql(op, "0003_tenant_aware_search", "up")


def downgrade() -> None:
    apply_sql(op, "0003_tenant_aware_search", "down")
