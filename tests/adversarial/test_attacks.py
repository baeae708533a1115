"""The attacks of the 0005 security review, each tried the way an attacker would,
with only the role the attacker had, and shown to fail.

Real Postgres, real pools, real cryptography; nothing is mocked. The count of
attacks tried and of attacks that worked goes to the run's summary, which the
README quotes.
"""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import psycopg
import pytest
from cryptography.exceptions import InvalidTag
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from pymem import repository as repo
from pymem.audit import verify_audit_log
from pymem.connections import configure, reset
from pymem.db import aconnect, connect
from pymem.doctor import check_deployment
from pymem.reads import commit_read_intent
from pymem.repository import ChunkInput
from pymem.rotation import rotate_encryption_key
from pymem.security import (
    EmbeddingMismatch,
    chunk_aad,
    generate_key,
    hmac_user,
    seal,
)
from pymem.tenant import enter_tenant_call
from tests.fixtures.fix_report import count_failed_attack
from tests.utils import DIM, SEARCH_COUNT_SQL, SERVER_VERSIONS, vec, write_ring_rows


# Every attack runs on PostgreSQL 16 and 18: these module fixtures override the
# session's single-server ones from tests/fixtures/fix_db.py.
@pytest.fixture(scope="module", params=SERVER_VERSIONS, ids=lambda v: "external" if v is None else f"pg{v}")
def cluster(cluster_for, request):
    """The server of one PG major version."""
    return cluster_for(request.param)


@pytest.fixture(scope="module")
def admin_url(cluster) -> str:
    """Superuser DSN of a fresh, migrated database for this module."""
    return cluster.fresh_database("pymem_attacks", embedding_dim=DIM)


@pytest.fixture(scope="module")
def app_url(cluster, admin_url) -> str:
    """A LOGIN role that has pymem_app, as an application would connect."""
    cluster.login_role("pymem_attacks_app", ["pymem_app"])
    return cluster.url("pymem_attacks", user="pymem_attacks_app")


@pytest.fixture
def attack_failed(report):
    """``attack_failed(name)`` counts one attack that was tried and failed (call it after
    the attack's assertions)."""
    return lambda name: count_failed_attack(report)


def problems(admin_url: str) -> list:
    with connect(admin_url) as conn:
        return verify_audit_log(conn)


@pytest.fixture
def user() -> str:
    return f"victim-{uuid.uuid4()}"


# --------------------------------------------------------------------------- 1. pg_temp hijack
# A temporary domain named like a type pymem casts to, whose CHECK runs a function
# of the attacker's that copies the tenant context it runs under.
SPY_SETUP = """
CREATE TEMP TABLE loot (user_hash text);
CREATE FUNCTION pg_temp.spy(anyelement) RETURNS boolean LANGUAGE sql AS
    $$ INSERT INTO pg_temp.loot VALUES (current_setting('app.user_hash', true)) RETURNING true $$;
"""
HIJACKED_TYPES = {"uuid": "pg_catalog.uuid", "text": "pg_catalog.text", "bytea": "pg_catalog.bytea",
                  "int4": "pg_catalog.int4", "int2": "pg_catalog.int2", "bpchar": "pg_catalog.bpchar",
                  "vector": "public.vector"}


async def _victim_calls(conn, user: str) -> None:
    chunk_id = await repo.index_memory_chunk(conn, user, "doc", "src", "victim's secret note", vec(7), {"k": 1})
    hits = await repo.query_memory(conn, user, "q", vec(7), k=3, rerank=False)
    assert [h.id for h in hits] == [chunk_id]
    assert (await repo.get_chunk(conn, user, chunk_id)).text == "victim's secret note"
    assert await repo.delete_document(conn, user, "doc") == 1


async def test_temp_domains_left_on_a_connection_never_run_in_a_later_tenant_transaction(attack_failed, app_url, user):
    # No pool reset here: the worst case, as a transaction-mode pooler's shared
    # server connection without a reset query.
    conn = await aconnect(app_url)
    try:
        await conn.execute(SPY_SETUP)
        for name, base in HIJACKED_TYPES.items():
            await conn.execute(sql.SQL("CREATE DOMAIN pg_temp.{} AS {} CHECK (pg_temp.spy(VALUE))").format(
                sql.Identifier(name), sql.SQL(base)))
        await _victim_calls(conn, user)
        cur = await conn.execute("SELECT count(*) FROM pg_temp.loot")
        assert (await cur.fetchone())[0] == 0  # the attacker's function never ran
    finally:
        await conn.close()
    attack_failed("pg_temp domains")


async def test_temp_domains_made_before_pymem_first_uses_the_connection_never_run(second_round, app_url, user):
    """A9: the trap is laid before pymem sets the connection up (pgvector's type
    lookup included), on a plain psycopg connection handed to pymem afterwards."""
    conn = await psycopg.AsyncConnection.connect(app_url, autocommit=True)
    try:
        await conn.execute(SPY_SETUP)
        for name, base in HIJACKED_TYPES.items():
            await conn.execute(sql.SQL("CREATE DOMAIN pg_temp.{} AS {} CHECK (pg_temp.spy(VALUE))").format(
                sql.Identifier(name), sql.SQL(base)))
        await _victim_calls(conn, user)
        cur = await conn.execute("SELECT count(*) FROM pg_temp.loot")
        assert (await cur.fetchone())[0] == 0  # the attacker's function never ran
    finally:
        await conn.close()
    second_round("A9: pg_temp domains laid before pymem's first use")


async def test_session_settings_left_on_a_connection_do_not_change_a_later_tenant_transaction(attack_failed, app_url, user):
    clean = await aconnect(app_url)
    dirty = await aconnect(app_url)
    try:
        await repo.index_memory_chunks(clean, user, [ChunkInput("d", "s", f"t{i}", vec(i)) for i in range(5)])
        expected = [h.id for h in await repo.query_memory(clean, user, "q", vec(2), k=5, rerank=False)]
        for statement in ("SET search_path = pg_temp, public", "SET row_security = off",
                          "SET default_transaction_isolation = 'serializable'",
                          "SET default_transaction_read_only = on", "SET enable_indexscan = off",
                          "SET hnsw.ef_search = 1", "SET hnsw.max_scan_tuples = 1",
                          "SET pymem.exact_search_max_rows = 0"):
            await dirty.execute(statement)
        got = [h.id for h in await repo.query_memory(dirty, user, "q", vec(2), k=5, rerank=False)]
        assert got == expected
        await repo.index_memory_chunk(dirty, user, "d2", "s", "written under hostile defaults", vec(9))
        assert await repo.delete_document(dirty, user, "d2") == 1
    finally:
        await clean.close()
        await dirty.close()
    attack_failed("leftover session settings")


async def test_pool_reset_discards_what_a_borrower_left(attack_failed, app_url):
    async with AsyncConnectionPool(app_url, min_size=1, max_size=1, kwargs={"autocommit": True},
                                   configure=configure, reset=reset, open=False) as pool:
        async with pool.connection() as conn:
            pid = conn.info.backend_pid
            await conn.execute(SPY_SETUP)
            await conn.execute("CREATE DOMAIN pg_temp.uuid AS pg_catalog.uuid CHECK (pg_temp.spy(VALUE))")
            # An hour, not a millisecond: a 1 ms timeout can cancel the reset itself
            # on a loaded machine, and the pool then (safely) opens a new session,
            # which would not show that the reset did its work.
            await conn.execute("SET statement_timeout = '1h'")
        async with pool.connection() as conn:
            assert conn.info.backend_pid == pid  # the same server session, reused
            cur = await conn.execute("SELECT count(*) FROM pg_catalog.pg_type WHERE typnamespace = pg_my_temp_schema()")
            assert (await cur.fetchone())[0] == 0
            cur = await conn.execute("SHOW statement_timeout")
            assert (await cur.fetchone())[0] == "0"
    attack_failed("pooled connection reuse")


async def test_pool_reset_also_works_on_connections_outside_autocommit(app_url):
    conn = await psycopg.AsyncConnection.connect(app_url)  # autocommit off, as psycopg's default
    try:
        await conn.execute("SET statement_timeout = '1h'")
        await conn.rollback()  # the SET was in a transaction; a SET that was committed survives:
        await conn.execute("SET statement_timeout = '1h'")
        await conn.commit()
        await reset(conn)
        assert not conn.autocommit
        cur = await conn.execute("SHOW statement_timeout")
        assert (await cur.fetchone())[0] == "0"
    finally:
        await conn.close()


def test_doctor_flags_temp_privilege_until_the_dba_revokes_it(attack_failed, cluster):
    name = "pymem_doctor"
    admin = cluster.fresh_database(name, embedding_dim=8)
    cluster.login_role("pymem_doctor_app", ["pymem_app"])
    with connect(admin) as conn:
        before = {f.check: f.ok for f in check_deployment(conn, "pymem_doctor_app")}
        conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
        after = {f.check: f.ok for f in check_deployment(conn, "pymem_doctor_app")}
    assert before["no temporary objects"] is False and after["no temporary objects"] is True
    assert after["app role"] and after["no role but pymem_app"]
    # And then the attack has nowhere to start: the app login cannot create temp objects.
    with connect(cluster.url(name, user="pymem_doctor_app")) as app:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("CREATE DOMAIN pg_temp.uuid AS pg_catalog.uuid")
    attack_failed("temp objects with TEMP revoked")


# --------------------------------------------------------------------------- 2. rolled-back reads
@pytest.mark.parametrize("ending", ["rollback", "savepoint rollback then commit", "disconnect"])
async def test_a_rolled_back_read_stays_on_record(attack_failed, app_url, admin_conn, user, ending):
    conn = await aconnect(app_url)
    await repo.index_memory_chunk(conn, user, "d", "s", "t", vec(3))
    user_hash = hmac_user(user)
    ticket = await commit_read_intent(conn, user_hash, "search", (vec(3), 10))
    await conn.set_autocommit(False)
    await conn.execute(*enter_tenant_call(user_hash))
    if ending == "savepoint rollback then commit":
        await conn.execute("SAVEPOINT s")
    cur = await conn.execute(SEARCH_COUNT_SQL, (user_hash, ticket, vec(3), 10))
    assert (await cur.fetchone())[0] == 1  # the attacker did read the row
    if ending == "rollback":
        await conn.rollback()
    elif ending == "savepoint rollback then commit":
        await conn.execute("ROLLBACK TO SAVEPOINT s")
        await conn.commit()
    await conn.close()  # "disconnect": closed with the read's transaction still open
    intent = admin_conn.execute("SELECT operation, phase, params_digest IS NOT NULL FROM pymem.audit_log"
                                " WHERE user_hash = %s AND ticket = %s", (user_hash, ticket)).fetchall()
    assert intent == [("search", "intent", True)]
    attack_failed(f"read then {ending}")


async def test_a_read_without_a_committed_intent_returns_nothing(attack_failed, aconn, user):
    await repo.index_memory_chunk(aconn, user, "d", "s", "t", vec(4))
    async with aconn.transaction():
        user_hash = hmac_user(user)
        await aconn.execute(*enter_tenant_call(user_hash))
        ticket = uuid.uuid4()
        await aconn.execute("SELECT pymem.read_intent(%s, %s, 'search', pymem.search_digest(%b::public.vector, 10))",
                            (user_hash, ticket, vec(4)))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be committed"):
            await aconn.execute(SEARCH_COUNT_SQL, (user_hash, ticket, vec(4), 10))
    attack_failed("read with an uncommitted intent")


# --------------------------------------------------------------------------- 3. freezing a tenant
async def test_a_login_without_pymem_roles_cannot_freeze_a_tenant(attack_failed, cluster, admin_url, app_url, user):
    cluster.login_role("pymem_outsider", [])
    outsider = connect(cluster.url("pymem_attacks", user="pymem_outsider"))
    victim = await aconnect(app_url)
    try:
        await repo.index_memory_chunk(victim, user, "d", "s", "t", vec(5))
        user_hash = hmac_user(user)
        # The old chain lock's key, and every lock an outsider can try to take.
        outsider.execute("SELECT pg_advisory_lock(hashtextextended('pymem.audit:' || %s, 0))", (user_hash,))
        for statement in ("SELECT * FROM pymem.audit_chain_heads FOR UPDATE",
                          "LOCK TABLE pymem.audit_chain_heads IN ACCESS EXCLUSIVE MODE",
                          "LOCK TABLE pymem.memory_chunks IN ACCESS EXCLUSIVE MODE"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                with outsider.transaction():
                    outsider.execute(statement)
        # The tenant's writes and reads go through within a generous bound.
        await asyncio.wait_for(repo.index_memory_chunk(victim, user, "d", "s", "t2", vec(6)), timeout=30)
        hits = await asyncio.wait_for(repo.query_memory(victim, user, "q", vec(6), k=2, rerank=False), timeout=30)
        assert len(hits) == 2
        # Mid-transaction, pg_locks shows the outsider no advisory lock of the tenant's.
        async with victim.transaction():
            await victim.execute(*enter_tenant_call(user_hash))
            await victim.execute("SELECT pymem.delete_document(%s, 'd')", (user_hash,))
            seen = outsider.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'advisory'",
                                    (victim.info.backend_pid,)).fetchone()[0]
        assert seen == 0
    finally:
        outsider.close()
        await victim.close()
    attack_failed("freeze a tenant from a login with no pymem role")


# --------------------------------------------------------------------------- 4. chain under concurrency
@pytest.mark.parametrize("isolation", ["read committed", "repeatable read", "serializable"])
async def test_same_tenant_concurrency_raises_no_false_alarm(attack_failed, cluster, isolation):
    name = f"pymem_iso_{isolation.replace(' ', '_')}"
    admin = cluster.fresh_database(name, embedding_dim=8)
    login = f"pymem_iso_{isolation.split()[0]}"
    cluster.login_role(login, ["pymem_app"])
    with connect(admin) as conn:  # an app login can set this on itself; here the DBA does
        conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_isolation = {}").format(
            sql.Identifier(login), sql.Literal(isolation)))
    url = cluster.url(name, user=login)
    tenant = "one-busy-tenant"
    errors: list[BaseException] = []

    async def worker(w: int):
        conn = await aconnect(url)
        try:
            for i in range(40):
                v = np.ones(8, dtype=np.float32) + np.float32(w * 100 + i) / 1000
                await repo.index_memory_chunk(conn, tenant, f"d{w}-{i % 3}", "s", "t", v)
                await repo.query_memory(conn, tenant, "q", v, k=3, rerank=False)
                if i % 5 == 4:
                    await repo.delete_document(conn, tenant, f"d{w}-{i % 3}")
        except BaseException as exc:  # noqa: BLE001 - every error the app would see counts
            errors.append(exc)
        finally:
            await conn.close()

    await asyncio.gather(*(worker(w) for w in range(8)))
    assert errors == []  # no serialization, unique or deadlock error surfaced
    assert problems(admin) == []
    attack_failed(f"same-tenant concurrency under {isolation}")


# --------------------------------------------------------------------------- 5. settings steering search
async def test_caller_settings_cannot_push_a_small_tenant_onto_the_shared_index(attack_failed, aconn, user):
    # The oracle: a one-row tenant forced onto HNSW with max_scan_tuples = 1 loses
    # its own bait row when other tenants crowd the region of the query.
    crowd = [ChunkInput("c", "s", "c", vec(1000) + 0.01 * vec(2000 + i)) for i in range(200)]
    await repo.index_memory_chunks(aconn, f"crowd-{uuid.uuid4()}", crowd)
    bait = await repo.index_memory_chunk(aconn, user, "bait", "s", "bait", vec(3000))
    for statement in ("SET pymem.exact_search_max_rows = 0", "SET hnsw.max_scan_tuples = 1",
                      "SET hnsw.ef_search = 1", "SET hnsw.iterative_scan = off"):
        await aconn.execute(statement)
    try:
        hits = await repo.query_memory(aconn, user, "q", vec(1000), k=1, rerank=False)
    finally:
        await aconn.execute("RESET ALL")
    assert [h.id for h in hits] == [bait]
    attack_failed("search-settings density oracle")


# --------------------------------------------------------------------------- 6. blocking key rotation
@pytest.fixture
def rotation_db(cluster, request):
    """(admin DSN, operator DSN with pymem_app + pymem_maintainer) of a fresh database."""
    name = f"pymem_att_{request.node.name[:18].lower()}"
    admin = cluster.fresh_database(name, embedding_dim=DIM)
    cluster.login_role("pymem_test_ops", ["pymem_app", "pymem_maintainer"])
    return admin, cluster.url(name, user="pymem_test_ops")


_RAW_PUT = ("SELECT pymem.put_chunks(%s::pg_catalog.bpchar, %b::pg_catalog.uuid[], '{d}', '{s}', %b::pg_catalog.bytea[],"
            " %b::pg_catalog.bytea[], %b::pg_catalog.bytea[], %b::pg_catalog.int4[], %b::public.vector[], 2::int2)")


async def _raw_put(conn, user: str, key_id: int, blob: bytes) -> uuid.UUID:
    """What a caller that enters the tenant can write through the API: any bytes (the
    server cannot check a seal). Returns the row's id."""
    user_hash, row_id = hmac_user(user), uuid.uuid4()
    async with conn.transaction():
        await conn.execute(*enter_tenant_call(user_hash))
        await conn.execute(_RAW_PUT, (user_hash, [row_id], [blob], [blob], [blob], [key_id], [vec(8)]))
    return row_id


async def test_a_row_under_an_unregistered_key_id_or_another_tenants_data_key_is_refused(attack_failed, aconn, user):
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        await _raw_put(aconn, user, 99, bytes(40))
    # Data key version 1 exists (another tenant made one), but not for this tenant.
    await repo.index_memory_chunk(aconn, f"other-{user}", "d", "s", "t", vec(1))
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        await _raw_put(aconn, user, -1, bytes(40))
    attack_failed("plant a row under key id 99, or under a data key the tenant does not have")


async def test_one_junk_row_does_not_stop_key_rotation(attack_failed, rotation_db, keys, user):
    admin, ops = rotation_db
    k1, k2 = generate_key(), generate_key()
    keys.ring(1, {1: k1})
    conn = await aconnect(ops)
    try:  # rows written before revision 0019, under the ring's key 1
        await write_ring_rows(conn, user, [ChunkInput("d", "s", f"t{i}", vec(i)) for i in range(20)])
        await _raw_put(conn, f"junk-{user}", 1, bytes(40))  # junk ciphertext under the old key
        keys.ring(2, {1: k1, 2: k2})
        report = await rotate_encryption_key(conn, batch_size=7)
        assert (report.rows_resealed, report.quarantined, report.rows_left) == (20, 1, 1)
        assert all(h.text.startswith("t") for h in await repo.query_memory(conn, user, "q", vec(1), k=20,
                                                                            rerank=False))
    finally:
        await conn.close()
    with connect(admin) as c:
        assert c.execute("SELECT reason FROM pymem.quarantined()").fetchall() == [("does not open",)]
    attack_failed("junk row blocks rotation")


# --------------------------------------------------------------------------- 7. rotation vs live traffic
async def test_rotation_beside_live_writes_deletes_and_searches_does_not_deadlock(attack_failed, rotation_db, keys):
    admin, ops = rotation_db
    k1, k2 = generate_key(), generate_key()
    keys.ring(1, {1: k1})
    tenants = [f"live-{i}" for i in range(4)]
    setup = await aconnect(ops)
    try:
        for t, tenant in enumerate(tenants):  # written before revision 0019, under the ring's key 1
            await write_ring_rows(setup, tenant, [
                ChunkInput(f"doc-{i % 10}", "s", f"{tenant} {i}", vec(t * 1000 + i)) for i in range(120)])
    finally:
        await setup.close()
    with connect(ops) as c:  # the operator registers the new key id before the app uses it
        c.execute("SELECT pymem.register_encryption_key(2)")
    keys.ring(2, {1: k1, 2: k2})
    errors: list[BaseException] = []

    async def traffic(w: int):
        conn = await aconnect(ops)
        try:
            for i in range(30):
                tenant = tenants[(w + i) % len(tenants)]
                await repo.delete_document(conn, tenant, f"doc-{(w * 3 + i) % 10}")
                await repo.index_memory_chunk(conn, tenant, f"doc-{i % 10}", "s", f"{tenant} new {i}", vec(w * 50 + i))
                await repo.query_memory(conn, tenant, "q", vec(i), k=5, rerank=False)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            await conn.close()

    async def rotate():
        conn = await aconnect(ops)
        try:
            return await rotate_encryption_key(conn, batch_size=20)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            await conn.close()

    results = await asyncio.gather(rotate(), *(traffic(w) for w in range(4)))
    assert errors == [], errors
    assert results[0].quarantined == 0
    assert problems(admin) == []
    with connect(admin) as c:  # rows written under key 1 before the switch are all re-sealed
        assert c.execute("SELECT count(*) FROM pymem.memory_chunks WHERE key_id = 1").fetchone()[0] == 0
    attack_failed("rotation beside live traffic")


# --------------------------------------------------------------------------- 8. keys in the server's environment
def test_the_embedded_server_does_not_hold_the_keys(attack_failed, admin_conn):
    import os

    assert os.environ.get("MEMORY_ENCRYPTION_KEY")  # this process has them (conftest) ...
    # What a database superuser does: run a program that inherits the server's
    # environment. (/proc/self/environ of a backend is no test: Postgres reuses
    # that memory for its process title.)
    with admin_conn.transaction():
        admin_conn.execute("CREATE TEMP TABLE server_env (line text)")
        admin_conn.execute("COPY server_env FROM PROGRAM 'env'")
        environ = "\n".join(r[0] for r in admin_conn.execute("SELECT line FROM server_env"))
        admin_conn.execute("DROP TABLE server_env")
    assert "PATH=" in environ  # the program ran and its environment came back
    for name in ("MEMORY_ENCRYPTION_KEY", "MEMORY_TENANT_HMAC_KEY"):
        assert name not in environ and os.environ[name] not in environ  # ... the server does not
    attack_failed("read the keys from the server's environment")


# --------------------------------------------------------------------------- 9. honest roles
async def test_maintainer_reads_are_audited_under_the_operator_login(attack_failed, rotation_db, keys, user):
    admin, ops = rotation_db
    keys.ring(1, {1: generate_key()})
    conn = await aconnect(ops)
    try:
        await repo.index_memory_chunk(conn, user, "d", "s", "t", vec(1))
        user_hash = hmac_user(user)
        ticket = await commit_read_intent(conn, user_hash, "export", (None, 100))
        async with conn.transaction():
            await conn.execute(*enter_tenant_call(user_hash))
            cur = await conn.execute("SELECT count(*) FROM pymem.export_chunks(%s, %s, NULL, NULL, 100)",
                                     (user_hash, ticket))
            assert (await cur.fetchone())[0] == 1
    finally:
        await conn.close()
    with connect(admin) as c:
        rows = c.execute("SELECT phase, db_role FROM pymem.audit_log WHERE user_hash = %s AND operation = 'export'"
                         " ORDER BY chain_pos", (user_hash,)).fetchall()
    assert rows == [("intent", "pymem_test_ops"), ("result", "pymem_test_ops")]
    attack_failed("unaudited maintainer export")


async def test_everything_a_maintainer_changes_in_a_tenant_is_in_the_tenants_chain(second_round, rotation_db, keys,
                                                                                    user):
    """A10: a quarantine and a re-key each append a row naming the ids to the tenant's
    chain, under the operator's login."""
    admin, ops = rotation_db
    k1, k2 = generate_key(), generate_key()
    keys.ring(1, {1: k1})
    conn = await aconnect(ops)
    try:
        await write_ring_rows(conn, user, [ChunkInput("d", "s", f"t{i}", vec(i)) for i in range(3)])
        junk = await _raw_put(conn, user, 1, bytes(40))
        keys.ring(2, {1: k1, 2: k2})
        report = await rotate_encryption_key(conn)
        assert (report.rows_resealed, report.quarantined) == (3, 1)
    finally:
        await conn.close()
    with connect(admin) as c:
        rows = c.execute("SELECT operation, row_count, chunk_ids, db_role FROM pymem.audit_log WHERE user_hash = %s"
                         " AND phase = 'write' AND operation IN ('update', 'quarantine') ORDER BY chain_pos",
                         (hmac_user(user),)).fetchall()
    assert ("quarantine", 1, [junk], "pymem_test_ops") in rows
    assert sum(n for op, n, _, role in rows if op == "update" and role == "pymem_test_ops") == 3
    second_round("A10: a quarantine or re-key left out of the tenant's chain")


async def test_a_maintainer_without_the_keys_can_neither_quarantine_nor_rekey_a_tenant(second_round, rotation_db,
                                                                                       keys, user):
    """A10: before 0015 a keyless maintainer re-keyed another tenant's rows to junk and
    probed which ids it had; each call now needs the tenant's proof."""
    admin, ops = rotation_db
    keys.ring(1, {1: generate_key()})
    conn = await aconnect(ops)
    try:
        [chunk_id] = await repo.index_memory_chunks(conn, user, [ChunkInput("d", "s", "t", vec(1))])
    finally:
        await conn.close()
    user_hash = hmac_user(user)
    with connect(ops) as attacker:  # the operator's login, without the keys in its process
        for statement, params in (
                ("SELECT pymem.quarantine_chunks(%s, %s, 'probe')", (user_hash, [uuid.UUID(str(chunk_id))])),
                ("SELECT pymem.rekey_chunks_v2(%s, %s, ARRAY[1], ARRAY['\\x00'::bytea], ARRAY['\\x00'::bytea],"
                 " ARRAY['\\x00'::bytea], ARRAY[NULL::bytea], 1, 2::smallint, ARRAY['\\x00'::bytea])",
                 (user_hash, [uuid.UUID(str(chunk_id))]))):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), attacker.transaction():
                attacker.execute(sql.SQL("SET LOCAL app.user_hash = {}").format(sql.Literal(user_hash)))
                attacker.execute(statement, params)
    conn = await aconnect(ops)
    try:
        assert (await repo.get_chunk(conn, user, chunk_id)).text == "t"
    finally:
        await conn.close()
    second_round("A10: a keyless maintainer re-keys or quarantines a tenant")


# --------------------------------------------------------------------------- 10. labels and embedding
async def test_a_relabelled_chunk_no_longer_opens(attack_failed, aconn, admin_conn, user):
    chunk_id = await repo.index_memory_chunk(aconn, user, "doc-a", "src", "t", vec(1))
    admin_conn.execute("UPDATE pymem.memory_chunks SET doc_id = 'doc-b' WHERE id = %s", (chunk_id,))
    with pytest.raises(InvalidTag):
        await repo.get_chunk(aconn, user, chunk_id)
    admin_conn.execute("UPDATE pymem.memory_chunks SET doc_id = 'doc-a', source = 'other' WHERE id = %s", (chunk_id,))
    with pytest.raises(InvalidTag):
        await repo.get_chunk(aconn, user, chunk_id)
    attack_failed("relabel a chunk")


async def test_a_changed_plaintext_embedding_is_detected_on_read(attack_failed, aconn, admin_conn, user):
    chunk_id = await repo.index_memory_chunk(aconn, user, "d", "s", "t", vec(1))
    admin_conn.execute("UPDATE pymem.memory_chunks SET embedding = %s WHERE id = %s", (vec(2), chunk_id))
    with pytest.raises(EmbeddingMismatch):
        await repo.query_memory(aconn, user, "q", vec(2), k=1, rerank=False)
    with pytest.raises(EmbeddingMismatch):
        await repo.get_chunk(aconn, user, chunk_id)
    attack_failed("swap a plaintext embedding")


def _near(query: np.ndarray, distance: float, seed: int) -> np.ndarray:
    moved = query + distance * vec(seed)
    return (moved / np.linalg.norm(moved)).astype(np.float32)


async def test_a_changed_row_past_the_top_k_still_fails_a_search_without_reranking(attack_failed, aconn,
                                                                                   admin_conn, user):
    """Every candidate is opened and checked, not only the k returned: a row changed in the
    database fails the search even when it would rank k+1, and a changed embedding cannot
    push the best row out of the top k unnoticed (review of issue 27's read path)."""
    query = vec(1)
    ids = await repo.index_memory_chunks(aconn, user, [ChunkInput("d", "s", f"t{i}", _near(query, 0.2 * i, 100 + i))
                                                       for i in range(5)])
    admin_conn.execute("UPDATE pymem.memory_chunks SET text_cipher = pg_catalog.set_byte(text_cipher, 20,"
                       " pg_catalog.get_byte(text_cipher, 20) # 1) WHERE id = %s", (ids[2],))
    with pytest.raises(InvalidTag):
        await repo.query_memory(aconn, user, "q", query, k=2, rerank=False)
    admin_conn.execute("DELETE FROM pymem.memory_chunks WHERE id = %s", (ids[2],))
    admin_conn.execute("UPDATE pymem.memory_chunks SET embedding = %s WHERE id = %s", (_near(query, 0.5, 777), ids[0]))
    with pytest.raises(EmbeddingMismatch):
        await repo.query_memory(aconn, user, "q", query, k=2, rerank=False)
    attack_failed("a changed row just past the top k of a search without reranking")


async def test_rows_sealed_before_0005_still_open(aconn, admin_conn, user):
    """A v1 row (AAD without labels), as written before this migration, keeps opening."""
    user_hash, chunk_id, v = hmac_user(user), uuid.uuid4(), vec(3)
    fields = [seal(data, chunk_aad(user_hash, str(chunk_id), field))
              for data, field in ((b"old text", "text"), (b"{}", "meta"), (v.tobytes(), "emb"))]
    admin_conn.execute("INSERT INTO pymem.memory_chunks (id, user_hash, doc_id, source, text_cipher, meta_cipher,"
                       " emb_cipher, key_id, embedding, aad_version) VALUES (%s, %s, 'd', 's', %s, %s, %s, 1, %s, 1)",
                       (chunk_id, user_hash, *fields, v))
    assert (await repo.get_chunk(aconn, user, chunk_id)).text == "old text"
