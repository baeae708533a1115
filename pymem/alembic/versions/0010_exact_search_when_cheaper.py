"""Exact search when it is cheaper than walking the bucket graph."""

from pymem.migrations import revision_steps

revision, down_revision = "0010", "0009"
upgrade, downgrade = revision_steps("0010_exact_search_when_cheaper")
