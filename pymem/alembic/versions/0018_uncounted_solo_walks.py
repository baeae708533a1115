"""A filtered search on a solo graph walks before it counts; a filter's matches are counted and read in one scan"""

from pymem.migrations import revision_steps

revision, down_revision = "0018", "0017"
upgrade, downgrade = revision_steps("0018_uncounted_solo_walks")
