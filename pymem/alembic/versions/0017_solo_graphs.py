"""Solo graphs: a large tenant's searches walk an HNSW graph of its own rows (A7)"""

from pymem.migrations import revision_steps

revision, down_revision = "0017", "0016"
upgrade, downgrade = revision_steps("0017_solo_graphs")
