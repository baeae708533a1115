"""Hardened tenant boundary and audit trail: audit log v2 with row-locked chains and
durable read intents, pinned search settings, registered key ids, AAD v2."""

from pymem.migrations import revision_steps

revision, down_revision = "0005", "0004"
upgrade, downgrade = revision_steps("0005_hardened_boundary")
