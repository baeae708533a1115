"""Search buckets: 64 partial HNSW graphs (by the low 6 bits of user_hash) instead
of one, and ef_search from the tenant's share of its bucket's graph."""

from pymem.migrations import revision_steps

revision, down_revision = "0008", "0007"
upgrade, downgrade = revision_steps("0008_search_buckets")
