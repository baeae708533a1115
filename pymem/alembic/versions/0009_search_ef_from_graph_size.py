"""ef_search at least 1/400 of the rows of the bucket graph a search walks."""

from pymem.migrations import revision_steps

revision, down_revision = "0009", "0008"
upgrade, downgrade = revision_steps("0009_search_ef_from_graph_size")
