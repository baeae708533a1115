"""A3 of the second attack round: what the database evaluates for the client.

A superuser or DBA without the keys changes a row's blind-index tags so that a filter
returns a row it should not, or removes a row's sealed caller id so that a read would
take the row id for it. Each is caught when the row is opened (``TamperedRow``). What
the DBA can still do, hide rows from a filter by removing their tags, is availability:
shown here as not detected, and documented.
"""

from __future__ import annotations

import uuid

import pytest

from pymem import repository as repo
from pymem.errors import TamperedRow
from pymem.repository import ChunkInput
from pymem.security import hmac_user, keyring
from tests.utils import vec

pytestmark = pytest.mark.citus


@pytest.fixture
def tenant() -> str:
    return f"integrity-{uuid.uuid4()}"


async def _rows(aconn, tenant):
    return await repo.index_memory_chunks(aconn, tenant, [
        ChunkInput("d", "s", "the public note", vec(1), {"visibility": "public"}, id="pub"),
        ChunkInput("d", "s", "the private note", vec(2), {"visibility": "private"}, id="priv")])


async def test_a_private_row_given_the_public_tags_fails_closed_on_a_filtered_search(aconn, admin_conn, tenant,
                                                                                    second_round):
    await _rows(aconn, tenant)
    user_hash = hmac_user(tenant)
    public_id = keyring().tenant_index(user_hash).row_id("pub")
    public = admin_conn.execute("SELECT meta_tags FROM pymem.memory_chunks WHERE user_hash = %s AND id = %s",
                                (user_hash, public_id)).fetchone()[0]
    hits = await repo.query_memory(aconn, tenant, "q", vec(2), k=5, rerank=False, where={"visibility": "public"})
    assert [h.external_id for h in hits] == ["pub"]  # control: the filter works untampered
    with admin_conn.transaction():
        admin_conn.execute("UPDATE pymem.memory_chunks SET meta_tags = %s WHERE user_hash = %s",
                           (public, user_hash))
    with pytest.raises(TamperedRow, match="does not meet the filter"):
        await repo.query_memory(aconn, tenant, "q", vec(2), k=5, rerank=False, where={"visibility": "public"})
    second_round("A3: a filter returns a row given another row's tags")


async def test_a_removed_caller_id_fails_closed_instead_of_becoming_the_row_id(aconn, admin_conn, tenant,
                                                                              second_round):
    await _rows(aconn, tenant)
    with admin_conn.transaction():
        admin_conn.execute("UPDATE pymem.memory_chunks SET ref_cipher = NULL WHERE user_hash = %s",
                           (hmac_user(tenant),))
    with pytest.raises(TamperedRow, match="no sealed caller id"):
        await repo.get_memory_chunks(aconn, tenant, ["pub"])
    with pytest.raises(TamperedRow):
        await repo.query_memory(aconn, tenant, "q", vec(1), k=5, rerank=False)
    second_round("A3: a removed caller id becomes the row id")


async def test_a_row_hidden_from_a_filter_by_removing_its_tags_is_not_detected(aconn, admin_conn, tenant):
    """Not promised (availability): documented in docs/threat-model.md."""
    await _rows(aconn, tenant)
    with admin_conn.transaction():
        admin_conn.execute("UPDATE pymem.memory_chunks SET meta_tags = '{}' WHERE user_hash = %s",
                           (hmac_user(tenant),))
    assert await repo.query_memory(aconn, tenant, "q", vec(1), k=5, rerank=False,
                                   where={"visibility": "public"}) == []
