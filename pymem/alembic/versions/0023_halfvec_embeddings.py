"""Searchable embeddings at half precision (halfvec), up to 4,000 dimensions, chosen at migration"""

from pymem.migrations import revision_steps

revision, down_revision = "0023", "0022"
upgrade, downgrade = revision_steps("0023_halfvec_embeddings")
