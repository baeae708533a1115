"""Key lifecycle: per-key counters, tenant-scoped export and re-keying, pymem_maintainer."""

from pymem.migrations import revision_steps

revision, down_revision = "0002", "0001"
upgrade, downgrade = revision_steps("0002_key_lifecycle")
