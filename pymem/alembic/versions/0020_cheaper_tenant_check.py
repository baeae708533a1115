"""check_tenant matches the context ticket without capture groups; live_data_key_digests names each live data key by the sha256 of its wrapped bytes"""

from pymem.migrations import revision_steps

revision, down_revision = "0020", "0019"
upgrade, downgrade = revision_steps("0020_cheaper_tenant_check")
