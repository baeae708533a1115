"""Rows as pymem wrote them before revision 0019, for the tests and the benchmarks: sealed
under a key of the environment's ring instead of the tenant's data key."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from unittest.mock import patch

from pymem import repository
from pymem.chunks import seal_row
from pymem.reads import durable_read
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


@contextmanager
def reads_before_data_keys() -> Iterator[None]:
    """pymem's reads as they were before revision 0019, the benchmarks' baseline: the rows
    alone (no live-key read beside them) and no data-key lookup (rows open under the ring's
    keys). Everything else in ``query_memory`` and the other reads is today's code."""
    async def rows_only(conn, user_hash, read, digest_params, read_sql, read_params):
        return await durable_read(conn, user_hash, read, digest_params, read_sql, read_params), None

    async def ring_keys(conn, user_hash, rows, live):
        return TenantKeys(user_hash, None, 0)

    with patch.object(repository, "durable_read_with_keys", rows_only), \
            patch.object(repository, "keys_of_rows", ring_keys):
        yield
