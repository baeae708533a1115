"""write_chunks inserts a call's rows in one statement instead of one INSERT per row."""

from pymem.migrations import revision_steps

revision, down_revision = "0013", "0012"
upgrade, downgrade = revision_steps("0013_write_chunks_in_one_statement")
