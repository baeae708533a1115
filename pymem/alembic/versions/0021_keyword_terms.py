"""Keyword terms for hybrid search (memory_terms, write_chunks_v2, search_hybrid_chunks, index_terms), updates of rows as read, memory_chunks.updated_at"""

from pymem.migrations import revision_steps

revision, down_revision = "0021", "0020"
upgrade, downgrade = revision_steps("0021_keyword_terms")
