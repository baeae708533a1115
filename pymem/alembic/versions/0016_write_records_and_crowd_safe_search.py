"""Write records: every audited write records a keyed MAC of each row it wrote, so that pymem verify-rows tells a live row from an older copy; the graph search falls back to the exact path when other tenants' rows crowd the query's region"""

from pymem.migrations import revision_steps

revision, down_revision = "0016", "0015"
upgrade, downgrade = revision_steps("0016_write_records_and_crowd_safe_search")
