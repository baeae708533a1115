"""The second attack round's readers of stored data: the auditor (or anyone with an
audit export) and anyone holding a dump. Each test tries what that reader could do
with only what it holds, and shows it fails.
"""

from __future__ import annotations

import uuid

import pytest

from pymem import repository as repo
from pymem.db import aconnect, connect
from pymem.security import hmac_user
from tests.utils import vec

pytestmark = pytest.mark.citus


async def test_the_audit_digest_of_a_search_does_not_confirm_a_guessed_query(second_round, app_url, cluster):
    """A5: embedding guessed questions with the public model recovered 3 of 3 search
    questions from the unkeyed digests, and linked two tenants who asked the same."""
    cluster.login_role("pymem_test_auditor", ["pymem_auditor"])
    auditor = cluster.url("pymem_test", user="pymem_test_auditor")
    question = vec(4242)
    tenants = [f"asker-{uuid.uuid4()}" for _ in range(2)]
    conn = await aconnect(app_url)
    try:
        for user in tenants:
            await repo.index_memory_chunk(conn, user, "d", "s", "t", vec(1))
            for _ in range(2):
                await repo.query_memory(conn, user, "q", question, k=5, rerank=False)
        # The guess, as the public model would embed it, through the digest function
        # the app login may call: what the auditor would compare with.
        cursor = await conn.execute("SELECT pymem.filtered_search_digest(%b::public.vector, 5, NULL, NULL),"
                                    " pymem.search_digest(%b::public.vector, 5)", (question, question))
        guesses = set(await cursor.fetchone())
    finally:
        await conn.close()
    with connect(auditor) as audit:
        digests = {user: [bytes(r[0]) for r in audit.execute(
            "SELECT params_digest FROM pymem.audit_log WHERE user_hash = %s AND operation = 'search'"
            " AND phase = 'intent' ORDER BY chain_pos", (hmac_user(user),))] for user in tenants}
    assert all(len(d) == 2 for d in digests.values())
    assert not guesses & {d for ds in digests.values() for d in ds}  # no guess confirmed
    assert not set(digests[tenants[0]]) & set(digests[tenants[1]])  # the same question, unrelated digests
    assert digests[tenants[0]][0] == digests[tenants[0]][1]  # what it does show: one tenant asked it twice
    second_round("A5: the audit digest confirms a guessed query")
