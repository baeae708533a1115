"""Tenant-aware search: exact for small tenants, iterative HNSW for large ones, routed by key_stats."""

from pymem.migrations import revision_steps

revision, down_revision = "0003", "0002"
upgrade, downgrade = revision_steps("0003_tenant_aware_search")
