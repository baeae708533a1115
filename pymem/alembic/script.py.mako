"""${message}"""

from pymem.migrations import revision_steps

revision, down_revision = ${repr(up_revision)}, ${repr(down_revision)}
upgrade, downgrade = revision_steps("${up_revision}_SQL_FILE_STEM")
