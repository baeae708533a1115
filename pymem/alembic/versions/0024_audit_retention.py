"""audit retention: signed anchors, retired segments, audited re-baselines"""

from pymem.migrations import revision_steps

revision, down_revision = "0024", "0023"
upgrade, downgrade = revision_steps("0024_audit_retention")
