"""Expiry and its audited purge, time windows, negated filters ($ne, $nin, $exists) and timestamps in reads"""

from pymem.migrations import revision_steps

revision, down_revision = "0022", "0021"
upgrade, downgrade = revision_steps("0022_expiry_and_negated_filters")
