"""Second attack round: acting as a tenant needs a proof only the app's keys make (enter_tenant, tenant_proofs, context tickets every API call checks), not the tenant's hash"""

from pymem.migrations import revision_steps

revision, down_revision = "0015", "0014"
upgrade, downgrade = revision_steps("0015_tenant_proofs")
