"""Searches served by a hot standby (pg_basebackup + streaming replication), with the
read audit as durable as on the primary: the intent is committed on the primary
before the standby answers, and the result row is recorded there afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pymem_devtools.clusters import as_server_user, free_port

from pymem import repository as repo
from pymem.db import aconnect, connect
from pymem.errors import KeyDestroyed
from pymem.reads import StandbyBehind, commit_read_intent, read_on_standby
from pymem.repository import _STANDBY_SEARCH_SQL, ChunkInput
from pymem.security import hmac_user
from pymem.tenant import tenant_transaction
from tests.utils import vec

DIM = 8


@pytest.fixture(scope="module")
def replicated(cluster):
    """(primary admin DSN, primary app DSN, standby app DSN) for one database."""
    if cluster.bin_dir is None:
        pytest.fail("the standby suite needs the embedded server (pg_basebackup, pg_ctl)")
    admin = cluster.fresh_database("pymem_standby", embedding_dim=DIM)
    cluster.login_role("pymem_standby_app", ["pymem_app"])
    primary = conninfo_to_dict(cluster.admin_url)
    data = Path(tempfile.mkdtemp(prefix="pymem-standby-"))
    os.chmod(data, 0o777)
    target = data / "standby"
    port = free_port()
    subprocess.run(as_server_user([str(cluster.bin_dir / "pg_basebackup"), "-D", str(target), "-R", "-X", "stream", "-c", "fast",
                                    "-h", primary["host"], "-p", primary.get("port", "5432"), "-U", primary["user"]]),
                   check=True, capture_output=True)
    with open(target / "postgresql.conf", "a") as conf:
        conf.write(f"\nport = {port}\nhot_standby = on\nunix_socket_directories = '{data}'\n")
    subprocess.run(as_server_user([str(cluster.bin_dir / "pg_ctl"), "-D", str(target), "-l", str(data / "log"),
                                    "-w", "start"]), check=True, capture_output=True)
    try:
        standby_app = make_conninfo(cluster.url("pymem_standby", user="pymem_standby_app"), host=str(data), port=port)
        yield admin, cluster.url("pymem_standby", user="pymem_standby_app"), standby_app
    finally:
        subprocess.run(as_server_user([str(cluster.bin_dir / "pg_ctl"), "-D", str(target), "-m", "immediate",
                                        "stop"]), capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


async def test_a_search_served_by_the_standby_is_on_record_on_the_primary(replicated):
    admin, app, standby_app = replicated
    conn, standby = await aconnect(app), await aconnect(standby_app)
    try:
        for user in ("standby-alice", "standby-bob"):
            await repo.index_memory_chunks(conn, user, [ChunkInput("d", "s", f"{user} {i}", vec(i, DIM)) for i in range(5)])
        hits = await repo.query_memory(conn, "standby-alice", "q", vec(1, DIM), k=3, rerank=False, standby=standby)
        async with standby.transaction():
            assert (await (await standby.execute("SELECT pg_is_in_recovery()")).fetchone())[0]
    finally:
        await conn.close()
        await standby.close()
    assert len(hits) == 3 and all(h.text.startswith("standby-alice ") for h in hits)
    with connect(admin) as c:
        rows = c.execute("SELECT phase, chunk_ids FROM pymem.audit_log WHERE user_hash = %s AND operation = 'search'"
                         " ORDER BY chain_pos", (hmac_user("standby-alice"),)).fetchall()
    assert [phase for phase, _ in rows] == ["intent", "result"]
    # The result row names every candidate the standby returned (all 5 of her rows).
    assert len(rows[1][1]) == 5 and {h.id for h in hits} <= set(rows[1][1])


async def test_the_standby_refuses_a_read_without_a_committed_intent(replicated):
    _, app, standby_app = replicated
    standby = await aconnect(standby_app)
    user_hash = hmac_user("standby-alice")
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no read intent"):
            async with tenant_transaction(standby, user_hash, read_only=True):
                await standby.execute(_STANDBY_SEARCH_SQL, (user_hash, uuid.uuid4(), vec(1, DIM), 3, [], [], [], None))
    finally:
        await standby.close()


async def test_the_standby_refuses_another_tenants_intent_and_the_primary_the_standby_path(replicated):
    _, app, standby_app = replicated
    conn, standby = await aconnect(app), await aconnect(standby_app)
    try:
        bob_ticket = await commit_read_intent(conn, hmac_user("standby-bob"), "search_v3", (vec(1, DIM), 3, [], [], [], None))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            async with tenant_transaction(standby, hmac_user("standby-alice"), read_only=True):
                await standby.execute(_STANDBY_SEARCH_SQL, (hmac_user("standby-bob"), bob_ticket, vec(1, DIM), 3, [], [], [], None))
        # The standby path on the primary: refused by pymem, and by the database.
        with pytest.raises(ValueError, match="not to a hot standby"):
            await read_on_standby(conn, conn, hmac_user("standby-bob"), "search_v3", (vec(1, DIM), 3, [], [], [], None),
                                  _STANDBY_SEARCH_SQL, (vec(1, DIM), 3, [], [], [], None))
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="serves hot standbys"):
            async with tenant_transaction(conn, hmac_user("standby-bob")):
                await conn.execute(_STANDBY_SEARCH_SQL, (hmac_user("standby-bob"), bob_ticket, vec(1, DIM), 3, [], [], [], None))
    finally:
        await conn.close()
        await standby.close()


async def test_a_standby_that_has_not_replayed_the_intent_is_not_read(replicated):
    _, app, standby_app = replicated
    conn, standby = await aconnect(app), await aconnect(standby_app)
    try:
        with psycopg.connect(make_conninfo(standby_app, user="postgres"), autocommit=True) as superuser:
            superuser.execute("SELECT pg_wal_replay_pause()")
            try:
                with pytest.raises(StandbyBehind):
                    await read_on_standby(conn, standby, hmac_user("standby-alice"), "search_v3",
                                          (vec(2, DIM), 3, [], [], [], None), _STANDBY_SEARCH_SQL, (vec(2, DIM), 3, [], [], [], None), wait_s=0.3)
            finally:
                superuser.execute("SELECT pg_wal_replay_resume()")
    finally:
        await conn.close()
        await standby.close()


async def test_a_result_row_needs_a_committed_intent_is_written_once_and_names_only_the_tenants_rows(replicated):
    admin, app, _ = replicated
    conn = await aconnect(app)
    user_hash = hmac_user("standby-alice")
    result_sql = "SELECT FROM pymem.read_result(%s, %s, 'search', %s::uuid[])"
    try:
        with connect(admin) as c:
            own = c.execute("SELECT id FROM pymem.memory_chunks WHERE user_hash = %s LIMIT 1", (user_hash,)).fetchone()[0]
        # An intent written in the same transaction is not committed: refused.
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="committed"):
            async with tenant_transaction(conn, user_hash):
                ticket = uuid.uuid4()
                await conn.execute("SELECT FROM pymem.read_intent(%s, %s, 'search', pymem.search_digest(%b, 3))",
                                   (user_hash, ticket, vec(3, DIM)))
                await conn.execute(result_sql, (user_hash, ticket, [own]))
        ticket = await commit_read_intent(conn, user_hash, "search", (vec(3, DIM), 3))
        foreign = uuid.uuid4()
        async with tenant_transaction(conn, user_hash):
            await conn.execute(result_sql, (user_hash, ticket, [foreign, own]))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="already has its result"):
            async with tenant_transaction(conn, user_hash):
                await conn.execute(result_sql, (user_hash, ticket, [own]))
    finally:
        await conn.close()
    with connect(admin) as c:
        ids = c.execute("SELECT chunk_ids FROM pymem.audit_log WHERE user_hash = %s AND ticket = %s"
                        " AND phase = 'result'", (user_hash, ticket)).fetchall()
    assert ids == [([own],)]


@pytest.mark.parametrize("ids", ["1001 ids", "an id twice"])
async def test_a_result_row_is_bounded_and_names_each_id_once(replicated, ids):
    """A12: one call stored 2,000,000 ids in the undeletable log before this bound."""
    _, app, _ = replicated
    conn = await aconnect(app)
    user_hash = hmac_user("standby-alice")
    given = [uuid.uuid4() for _ in range(1001)] if ids == "1001 ids" else [uuid.UUID(int=1)] * 2
    try:
        ticket = await commit_read_intent(conn, user_hash, "search", (vec(4, DIM), 3))
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="at most 1000 ids, each once"):
            async with tenant_transaction(conn, user_hash):
                await conn.execute("SELECT FROM pymem.read_result(%s, %s, 'search', %s::uuid[])",
                                   (user_hash, ticket, given))
    finally:
        await conn.close()


async def test_a_standby_read_never_opens_an_erased_tenants_put_back_rows_with_a_cached_key(replicated):
    """Found by this session's attack review: a search served by a standby did not read which
    of the tenant's keys are live, so a key this process had cached opened the rows of a
    tenant erased by another process and put back by a superuser. The standby now reads the
    live keys with the rows, as the primary does."""
    admin, app, standby_app = replicated
    conn, standby = await aconnect(app), await aconnect(standby_app)
    erin = hmac_user("standby-erin")
    try:
        await repo.index_memory_chunks(conn, "standby-erin",
                                       [ChunkInput("d", "s", f"standby-erin {i}", vec(i, DIM)) for i in range(3)])
        cached = await repo.query_memory(conn, "standby-erin", "q", vec(1, DIM), k=3, rerank=False, standby=standby)
        assert len(cached) == 3  # erin's key is in this process's cache
        with connect(admin) as c:
            c.execute("CREATE TABLE public.erin_copy AS SELECT * FROM pymem.memory_chunks WHERE user_hash = %s",
                      (erin,))
        other = await aconnect(app)  # another process's erasure: this process's cache is left as it was
        try:
            async with tenant_transaction(other, erin):
                await other.execute("SELECT pymem.erase_tenant(%s::pg_catalog.bpchar)", (erin,))
        finally:
            await other.close()
        with connect(admin) as c:
            c.execute("INSERT INTO pymem.memory_chunks SELECT * FROM public.erin_copy")
        with pytest.raises(KeyDestroyed):
            await repo.query_memory(conn, "standby-erin", "q", vec(1, DIM), k=3, rerank=False, standby=standby)
    finally:
        await conn.close()
        await standby.close()


async def test_a_hybrid_search_served_by_the_standby_finds_the_exact_term_and_is_on_record(replicated):
    admin, app, standby_app = replicated
    conn, standby = await aconnect(app), await aconnect(standby_app)
    try:
        await repo.index_memory_chunks(conn, "standby-hal", [
            ChunkInput("d", "s", f"ticket INC-{20000 + i} escalated", vec(1, DIM)) for i in range(12)])
        hits = await repo.query_memory(conn, "standby-hal", "INC-20007", vec(7, DIM), k=3, rerank=False,
                                       hybrid=True, standby=standby)
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="serves hot standbys"):
            async with tenant_transaction(conn, hmac_user("standby-hal")):
                await conn.execute("SELECT * FROM pymem.search_hybrid_chunks_on_standby(%s, %s, %b, 3, '{}', '{}',"
                                   " ARRAY['\\x00000000000000000000000000000000'::bytea])",
                                   (hmac_user("standby-hal"), uuid.uuid4(), vec(1, DIM)))
    finally:
        await conn.close()
        await standby.close()
    assert hits[0].text == "ticket INC-20007 escalated" and hits[0].keyword_score
    with connect(admin) as c:
        phases = [p for (p,) in c.execute("SELECT phase FROM pymem.audit_log WHERE user_hash = %s"
                                          " AND operation = 'search' ORDER BY chain_pos",
                                          (hmac_user("standby-hal"),))]
    assert phases == ["intent", "result"]
