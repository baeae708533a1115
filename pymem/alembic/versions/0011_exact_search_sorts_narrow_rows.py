"""An exact search chooses its top k among narrow rows, then reads those k whole."""

from pymem.migrations import revision_steps

revision, down_revision = "0011", "0010"
upgrade, downgrade = revision_steps("0011_exact_search_sorts_narrow_rows")
