"""A graph search returns its hits in distance order and keeps one plan per bucket graph."""

from pymem.migrations import revision_steps

revision, down_revision = "0012", "0011"
upgrade, downgrade = revision_steps("0012_graph_search_sorted_and_planned_once")
