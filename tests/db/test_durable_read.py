"""The durable read's two transactions in one pipeline (pymem.reads.durable_read).

As a login role with pymem_app; the audit log is inspected on a superuser
connection. Each test shows what the pipeline must not change: the intent is
committed before the read, a read never runs after an intent that failed, a
failure leaves the connection usable, and the app's autocommit setting is kept.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from pymem import repository as repo
from pymem import sync
from pymem.connections import SyncConnectionAsAsync
from pymem.db import aconnect
from pymem.reads import durable_read
from pymem.security import hmac_user
from tests.utils import SEARCH_COUNT_SQL, vec

# Also run through a Citus coordinator (make test-citus).
pytestmark = pytest.mark.citus

SEARCH_SQL = SEARCH_COUNT_SQL.replace("%s::int", "%s::pg_catalog.int4")
# Reads that take (user_hash, ticket, *read_params) like pymem's own, and do
# something a test can see: fail, or leave a session setting behind.
FAILING_READ_SQL = "SELECT %s::pg_catalog.text, %s::pg_catalog.uuid, 1 / %s::pg_catalog.int4"
MARKING_READ_SQL = ("SELECT %s::pg_catalog.text, %s::pg_catalog.uuid,"
                    " pg_catalog.set_config('pymem_test.read_ran', 'yes', false)")


@pytest.fixture
def user() -> str:
    return f"durable-{uuid.uuid4()}"


def intents(admin_conn, user_hash: str) -> list[tuple]:
    return admin_conn.execute("SELECT operation, phase FROM pymem.audit_log WHERE user_hash = %s"
                              " AND phase = 'intent' ORDER BY chain_pos", (user_hash,)).fetchall()


@pytest.mark.parametrize("autocommit", [True, False])
async def test_a_durable_read_returns_the_rows_and_leaves_the_connection_as_it_was(app_url, admin_conn, user,
                                                                                  autocommit):
    conn = await aconnect(app_url)
    try:
        await repo.index_memory_chunks(conn, user, [repo.ChunkInput("d", "s", "t", vec(1)),
                                                    repo.ChunkInput("d", "s", "u", vec(2))])
        await conn.set_autocommit(autocommit)
        user_hash = hmac_user(user)
        rows = await durable_read(conn, user_hash, "search", (vec(1), 10), SEARCH_SQL, (vec(1), 10))
        assert rows == [(2,)]
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert conn.autocommit is autocommit
        assert intents(admin_conn, user_hash) == [("search", "intent")]
    finally:
        await conn.close()


def test_a_durable_read_on_a_sync_connection(app_url, admin_conn, user):
    with psycopg.connect(app_url) as conn:  # not autocommit, as psycopg makes it
        sync.index_memory_chunk(conn, user, "d", "s", "t", vec(3))
        user_hash = hmac_user(user)
        rows = sync.run(durable_read(SyncConnectionAsAsync(conn), user_hash, "search", (vec(3), 5), SEARCH_SQL,
                                     (vec(3), 5)))
        assert rows == [(1,)]
        assert conn.info.transaction_status == TransactionStatus.IDLE and conn.autocommit is False
    assert intents(admin_conn, hmac_user(user)) == [("search", "intent")]


@pytest.mark.parametrize("autocommit", [True, False])
async def test_a_read_that_fails_keeps_its_committed_intent_and_the_connection_usable(app_url, admin_conn, user,
                                                                                     autocommit):
    conn = await aconnect(app_url)
    try:
        await repo.index_memory_chunk(conn, user, "d", "s", "t", vec(4))
        await conn.set_autocommit(autocommit)
        user_hash = hmac_user(user)
        with pytest.raises(psycopg.errors.DivisionByZero):
            await durable_read(conn, user_hash, "search", (vec(4), 10), FAILING_READ_SQL, (0,))
        assert intents(admin_conn, user_hash) == [("search", "intent")]  # on record: the read was attempted
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert conn.autocommit is autocommit
        # The same connection then serves the next read.
        assert await durable_read(conn, user_hash, "search", (vec(4), 10), SEARCH_SQL, (vec(4), 10)) == [(1,)]
    finally:
        await conn.close()


async def test_no_read_runs_after_an_intent_that_failed(app_url, admin_conn, user):
    conn = await aconnect(app_url)
    try:
        user_hash = hmac_user(user)
        # No query vector: the digest is NULL and read_intent refuses it.
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            await durable_read(conn, user_hash, "search", (None, 10), MARKING_READ_SQL, ())
        assert conn.info.transaction_status == TransactionStatus.IDLE
        marker = await (await conn.execute("SELECT pg_catalog.current_setting('pymem_test.read_ran', true)"))\
            .fetchone()
        assert marker[0] in (None, "")  # the read after it was skipped, not run
        assert intents(admin_conn, user_hash) == []
    finally:
        await conn.close()


async def test_a_durable_read_refuses_a_connection_inside_a_transaction(aconn, user):
    async with aconn.transaction():
        with pytest.raises(RuntimeError, match="already in one"):
            await durable_read(aconn, hmac_user(user), "search", (vec(5), 10), SEARCH_SQL, (vec(5), 10))
