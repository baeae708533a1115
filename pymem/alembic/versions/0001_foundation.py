"""Foundation: schema, roles, memory_chunks with forced RLS, audit log, HNSW, SQL API."""

from pymem.migrations import revision_steps

revision, down_revision = "0001", None
upgrade, downgrade = revision_steps("0001_foundation")
