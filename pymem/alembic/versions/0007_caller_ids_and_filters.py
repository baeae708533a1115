"""Caller-chosen ids (hashed or UUID, sealed), upsert, delete and list by id, blind-index
filters on sealed metadata, and v2 reads that return the sealed caller id."""

from pymem.migrations import revision_steps

revision, down_revision = "0007", "0006"
upgrade, downgrade = revision_steps("0007_caller_ids_and_filters")
