"""The current definition of every function in one file per area (pymem/sql/functions/), frozen into released/0014.sql; no function's code changes."""

from pymem.migrations import revision_steps

revision, down_revision = "0014", "0013"
upgrade, downgrade = revision_steps("0014_functions_by_area")
