"""Rows as pymem wrote them before revision 0019, for the tests and the benchmarks: sealed
under a key of the environment's ring instead of the tenant's data key."""

from __future__ import annotations

from pymem.chunks import seal_row
from pymem.repository import write_sealed_rows
from pymem.security import hmac_user, keyring
from pymem.tenant import tenant_transaction
from pymem.tenant_keys import TenantKeys


async def write_ring_rows(conn, user: str, items, key_id: int | None = None) -> None:
    """Rows as pymem wrote them before revision 0019: sealed under a key of the
    environment's ring (default its active key), not under the tenant's data key."""
    user_hash, ring = hmac_user(user), keyring()
    key_id = ring.active_key_id if key_id is None else key_id
    index = ring.tenant_index(user_hash)
    rows = [seal_row(user_hash, index, item, len(item.embedding), 1 << 20, TenantKeys(user_hash, None, 0), key_id)
            for item in items]
    async with tenant_transaction(conn, user_hash):
        await write_sealed_rows(conn, user_hash, index, rows, key_id)
