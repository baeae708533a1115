"""A schema that distributes by tenant: keys include user_hash, every API call names
its tenant, row-level triggers only. Valid on plain PostgreSQL; ``pymem distribute``
turns it into Citus distributed tables."""

from pymem.migrations import revision_steps

revision, down_revision = "0006", "0005"
upgrade, downgrade = revision_steps("0006_distributable")
