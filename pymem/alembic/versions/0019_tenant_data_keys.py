"""per-tenant data keys wrapped by a root key; erase destroys them"""

from pymem.migrations import revision_steps

revision, down_revision = "0019", "0018"
upgrade, downgrade = revision_steps("0019_tenant_data_keys")
