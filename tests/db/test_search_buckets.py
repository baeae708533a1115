"""Migrations 0008, 0010 and 0012: 64 bucket HNSW graphs, a search walks only its tenant's
own, only when that is cheaper than reading the tenant's rows exactly, and returns its hits
in distance order."""

from __future__ import annotations

import uuid

import numpy as np
import psycopg
import pytest

from pymem import repository as repo
from pymem.bulk_load import (
    build_search_indexes,
    drop_search_indexes,
    maintenance_work_mem_for,
)
from pymem.db import aconnect
from pymem.repository import ChunkInput
from pymem.security import hmac_user
from pymem.tenant import enter_tenant_call
from tests.utils import DIM, vec

_BUCKET_SCANS_SQL = ("SELECT indexrelname, idx_scan FROM pg_catalog.pg_stat_user_indexes"
                     " WHERE schemaname = 'pymem' AND indexrelname LIKE 'memory\\_chunks\\_embedding\\_hnsw\\_%'")


def bucket_of(user_hash: str) -> int:
    return int(user_hash[-2:], 16) & 63


def two_tenants(*, same_bucket: bool) -> tuple[str, str]:
    """Two fresh tenants whose hashes fall in the same bucket, or in different ones (drawn until they do)."""
    first = f"bucket-a-{uuid.uuid4()}"
    while True:
        second = f"bucket-b-{uuid.uuid4()}"
        if (bucket_of(hmac_user(second)) == bucket_of(hmac_user(first))) == same_bucket:
            return first, second


def test_the_bucket_is_the_low_six_bits_of_the_tenant_hash(admin_conn):
    for tail, bucket in (("00", 0), ("3f", 63), ("40", 0), ("7f", 63), ("c1", 1), ("ff", 63)):
        got = admin_conn.execute("SELECT pymem.search_bucket(%s)", ("0" * 62 + tail,)).fetchone()[0]
        assert got == bucket


@pytest.mark.single_node  # on Citus the graphs are per shard, named after it
async def test_a_search_walks_only_its_own_tenants_bucket_graph(admin_url):
    alice, bob = two_tenants(same_bucket=False)
    conn = await aconnect(admin_url)
    try:
        old = (await (await conn.execute("SELECT exact_search_max_rows FROM pymem.tuning")).fetchone())[0]
        await conn.execute("UPDATE pymem.tuning SET exact_search_max_rows = 0")  # every tenant on the HNSW path
        # The app's role for the API calls; the same session reads its own index counters.
        await conn.execute("SET ROLE pymem_app")
        mine = await repo.index_memory_chunks(conn, alice, [ChunkInput("d", "s", f"a{i}", vec(i)) for i in range(8)])
        await repo.index_memory_chunks(conn, bob, [ChunkInput("d", "s", f"b{i}", vec(100 + i)) for i in range(8)])
        await conn.execute("RESET ROLE")
        before = await _bucket_scans(conn)
        await conn.execute("SET ROLE pymem_app")
        hits = await repo.query_memory(conn, alice, "q", vec(3), k=5, rerank=False)
        await conn.execute("RESET ROLE")
        after = await _bucket_scans(conn)
    finally:
        await conn.execute("RESET ROLE")
        await conn.execute("UPDATE pymem.tuning SET exact_search_max_rows = %s", (old,))
        await conn.close()
    assert {h.id for h in hits} <= set(mine) and hits[0].id == mine[3]
    scanned = {name for name, count in after.items() if count > before[name]}
    assert scanned == {f"memory_chunks_embedding_hnsw_{bucket_of(hmac_user(alice))}"}


@pytest.mark.single_node  # on Citus the graphs are per shard, named after it
async def test_a_tenant_walks_its_graph_only_where_that_is_cheaper_than_an_exact_scan(cluster):
    # 0010: exact when the tenant has at most 20 x ef_search rows. k = 10: 2,001 rows
    # alone in a graph: share 1, ef_search 100, the graph. The same 2,001 rows beside
    # another tenant's 700: share 0.74, ef_search 108, up to 2,160 rows exact: the scan.
    admin = cluster.fresh_database("pymem_exact_or_graph", embedding_dim=DIM)
    carol, dave = two_tenants(same_bucket=True)
    index = f"memory_chunks_embedding_hnsw_{bucket_of(hmac_user(carol))}"
    query = vec(5)
    conn = await aconnect(admin)
    try:
        await conn.set_autocommit(True)
        await conn.execute("SET ROLE pymem_app")
        mine = await repo.index_memory_chunks(conn, carol, [ChunkInput("d", "s", f"c{i}", vec(i)) for i in range(2001)])
        scans = await _searches_on_the_graph(conn, carol, query, index)
        # An approximate search on random 384-d vectors: only its own rows are certain.
        assert scans["graph scans"] == 1 and scans["nearest"] in set(mine)
        await conn.execute("SET ROLE pymem_app")
        await repo.index_memory_chunks(conn, dave, [ChunkInput("d", "s", f"d{i}", vec(10_000 + i))
                                                    for i in range(700)])
        scans = await _searches_on_the_graph(conn, carol, query, index)
        assert scans["graph scans"] == 0 and scans["nearest"] == mine[5]  # exact: the query's own row
    finally:
        await conn.close()


async def _searches_on_the_graph(conn, user_id: str, query: np.ndarray, index: str) -> dict:
    """Search as the app; count the scans of ``index`` it made. The graph's row count
    comes from the index's statistics: ANALYZE refreshes them first (after inserts
    alone VACUUM does not: pgvector reports a row count only when it removed rows)."""
    await conn.execute("RESET ROLE")
    await conn.execute("ANALYZE pymem.memory_chunks")
    before = (await _bucket_scans(conn))[index]
    await conn.execute("SET ROLE pymem_app")
    hits = await repo.query_memory(conn, user_id, "q", query, k=10, candidates=10, rerank=False)
    await conn.execute("RESET ROLE")
    return {"graph scans": (await _bucket_scans(conn))[index] - before, "nearest": hits[0].id}


async def _bucket_scans(conn) -> dict[str, int]:
    # Pending counters reach the shared statistics at the end of this statement's
    # transaction; the next statement reads them.
    await conn.execute("SELECT pg_catalog.pg_stat_force_next_flush()")
    rows = await (await conn.execute(_BUCKET_SCANS_SQL)).fetchall()
    assert len(rows) == 64
    return dict(rows)


@pytest.mark.parametrize("internal", ["pymem.search_bucket(%s::bpchar)", "pymem.search_graph_rows(%s::bpchar)"])
def test_the_app_cannot_call_0008s_internal_functions(conn, internal):
    user_hash = hmac_user(f"t-{uuid.uuid4()}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
        conn.execute(*enter_tenant_call(user_hash))
        conn.execute(f"SELECT {internal}", (user_hash,))


def test_a_bulk_load_drops_and_rebuilds_all_64_graphs(cluster):
    admin = cluster.fresh_database("pymem_bulk_load", embedding_dim=8)
    with psycopg.connect(admin, autocommit=True) as conn:
        definitions = drop_search_indexes(conn)
        assert len(definitions) == 64
        assert _hnsw_count(conn) == 0
        session_mwm = conn.execute("SHOW maintenance_work_mem").fetchone()[0]
        assert build_search_indexes(conn, definitions, maintenance_work_mem="96MB", progress=False) == "96MB"
        assert _hnsw_count(conn) == 64
        assert conn.execute("SHOW maintenance_work_mem").fetchone()[0] == session_mwm  # restored
        # One bad statement and none of them runs.
        drop_search_indexes(conn)
        with pytest.raises(ValueError, match="not an HNSW index definition"):
            build_search_indexes(conn, [*definitions, "DROP TABLE pymem.memory_chunks"], progress=False)
        assert _hnsw_count(conn) == 0
        build_search_indexes(conn, definitions, progress=False)
        assert _hnsw_count(conn) == 64


def test_maintenance_work_mem_follows_the_largest_bucket(cluster):
    admin = cluster.fresh_database("pymem_bulk_sizing", embedding_dim=8)
    with psycopg.connect(admin, autocommit=True) as conn:
        assert maintenance_work_mem_for(conn) == 0
        # Two tenants in bucket 1 (hashes ending 01 and 41), one in bucket 2.
        for tail, rows in (("01", 1000), ("41", 500), ("02", 1200)):
            conn.execute("INSERT INTO pymem.key_stats (key_id, user_hash, live_rows, seals) VALUES (1, %s, %s, 0)",
                         ("0" * 62 + tail, rows))
        assert maintenance_work_mem_for(conn) == 1500 * (4 * 8 + 900)


def _hnsw_count(conn) -> int:
    return conn.execute("SELECT count(*) FROM pg_catalog.pg_indexes WHERE schemaname = 'pymem'"
                        " AND tablename = 'memory_chunks' AND indexdef LIKE '%USING hnsw%'").fetchone()[0]


@pytest.mark.single_node  # forces the graph for every tenant of a fresh database
async def test_a_search_that_walks_the_graph_returns_its_hits_in_distance_order(cluster):
    # Two tenants on the same 16 topics, one with 1% of the bucket graph: the first
    # ef_search candidates hold fewer than k of its rows, the iterative scan goes
    # on, and with relaxed_order a later row can be nearer than an earlier one. The
    # function must sort the k hits: on PostgreSQL 17+ its ORDER BY over the
    # materialized CTE was planned away until 0012 (8 of these 40 searches came
    # back out of order on PG 18 with 0011's function).
    admin = cluster.fresh_database("pymem_graph_order", embedding_dim=DIM)
    erin, frank = two_tenants(same_bucket=True)
    topics = [vec(70_000 + t) for t in range(16)]

    def on_topic(i: int, seed: int) -> np.ndarray:
        v = topics[i % 16] + 0.6 * vec(seed)
        return v / np.linalg.norm(v)

    conn = await aconnect(admin)
    try:
        await conn.set_autocommit(True)
        await conn.execute("UPDATE pymem.tuning SET exact_search_max_rows = 0")  # every tenant on the graph
        await conn.execute("SET ROLE pymem_app")
        await repo.index_memory_chunks(conn, frank, [ChunkInput("d", "s", f"f{i}", on_topic(i, 50_000 + i))
                                                     for i in range(4000)])
        await repo.index_memory_chunks(conn, erin, [ChunkInput("d", "s", f"e{i}", on_topic(i, i)) for i in range(40)])
        await conn.execute("RESET ROLE")
        await conn.execute("ANALYZE pymem.memory_chunks")
        await conn.execute("SET ROLE pymem_app")
        for seed in range(40):
            hits = await repo.query_memory(conn, erin, "q", on_topic(seed, 90_000 + seed), k=40, candidates=40,
                                           rerank=False)
            distances = [h.distance for h in hits]
            assert distances == sorted(distances)
    finally:
        await conn.close()
