"""Revision 0017: solo graphs. A tenant of ``pymem.tuning.solo_graph_min_rows`` rows or
more gets an HNSW graph of its own rows (``pymem solo-graphs``), and its searches walk
that graph instead of its bucket's."""

from __future__ import annotations

import psycopg
import pytest

from pymem import repository as repo
from pymem.cli import main
from pymem.db import aconnect, connect
from pymem.repository import ChunkInput
from pymem.security import hmac_user
from pymem.solo_graphs import apply_solo_graphs, plan_solo_graphs
from tests.utils import DIM, vec

pytestmark = pytest.mark.citus

def _solo_graphs(conn: psycopg.Connection) -> dict[str, str]:
    """Solo graph name -> its definition."""
    return dict(conn.execute("SELECT indexname, indexdef FROM pg_catalog.pg_indexes WHERE schemaname = 'pymem'"
                             " AND indexname LIKE 'memory\\_chunks\\_solo\\_%'").fetchall())


async def _write(app, user: str, doc: str, count: int, offset: int = 0) -> list:
    return await repo.index_memory_chunks(app, user, [ChunkInput(doc, "s", f"{doc} {i}", vec(offset + i))
                                                      for i in range(count)])


async def test_solo_graphs_are_built_for_large_tenants_and_dropped_once_they_shrink(server):
    admin = server.fresh_database("pymem_solo_graphs", embedding_dim=DIM)
    server.login_role("pymem_test_app", ["pymem_app"])
    app = await aconnect(server.url("pymem_solo_graphs", user="pymem_test_app"))
    large, small = "solo-large", "solo-small"
    try:
        await _write(app, large, "kept", 14)
        await _write(app, large, "gone", 26, offset=100)
        await _write(app, small, "kept", 10, offset=200)
        with connect(admin) as conn:
            conn.execute("UPDATE pymem.tuning SET solo_graph_min_rows = 30")
            plan = plan_solo_graphs(conn)
            assert (plan.build, plan.drop, plan.kept) == ([(hmac_user(large), 40)], [], 0)
            assert apply_solo_graphs(conn, plan, progress=False).built == 1
            graphs = _solo_graphs(conn)
            (name,) = conn.execute("SELECT pymem.solo_graph_name(%s)", (hmac_user(large),)).fetchone()
            assert list(graphs) == [name] and hmac_user(large) in graphs[name] and "hnsw" in graphs[name]
            plan = plan_solo_graphs(conn)
            assert (plan.build, plan.drop, plan.kept) == ([], [], 1)
        # 14 rows left: under half the threshold, the graph goes.
        await repo.delete_document(app, large, "gone")
        with connect(admin) as conn:
            plan = plan_solo_graphs(conn)
            assert (plan.build, plan.drop, plan.kept) == ([], [name], 0)
            assert apply_solo_graphs(conn, plan, progress=False).dropped == 1
            assert _solo_graphs(conn) == {}
    finally:
        await app.close()


async def test_an_erased_tenants_solo_graph_is_dropped(server):
    admin = server.fresh_database("pymem_solo_erased", embedding_dim=DIM)
    server.login_role("pymem_test_app", ["pymem_app"])
    app = await aconnect(server.url("pymem_solo_erased", user="pymem_test_app"))
    try:
        await _write(app, "solo-erased", "d", 12)
        with connect(admin) as conn:
            conn.execute("UPDATE pymem.tuning SET solo_graph_min_rows = 10")
            apply_solo_graphs(conn, plan_solo_graphs(conn), progress=False)
            assert len(_solo_graphs(conn)) == 1
        await repo.erase_user(app, "solo-erased")
        with connect(admin) as conn:
            plan = plan_solo_graphs(conn)
            assert len(plan.drop) == 1 and plan.build == []
            apply_solo_graphs(conn, plan, progress=False)
            assert _solo_graphs(conn) == {}  # nothing in the catalog names the erased tenant
    finally:
        await app.close()


async def _solo_tenant(cluster, dbname: str, user: str, chunks: list[ChunkInput], tuning: str):
    """A database where ``user`` (its ``chunks`` written as the app) has a solo graph.

    Returns the admin connection (autocommit), the chunk ids and the graph's name."""
    admin = cluster.fresh_database(dbname, embedding_dim=DIM)
    conn = await aconnect(admin)
    await conn.set_autocommit(True)
    await conn.execute(f"UPDATE pymem.tuning SET {tuning}")
    await conn.execute("SET ROLE pymem_app")
    ids = await repo.index_memory_chunks(conn, user, chunks)
    await conn.execute("RESET ROLE")
    with connect(admin) as sync_conn:
        apply_solo_graphs(sync_conn, plan_solo_graphs(sync_conn), progress=False)
    await conn.execute("ANALYZE pymem.memory_chunks")
    solo = (await (await conn.execute("SELECT pymem.solo_graph_name(%s)", (hmac_user(user),))).fetchone())[0]
    return conn, ids, solo


async def _search_as_app(conn, user: str, where=None) -> tuple[list, set[str]]:
    """``query_memory`` near vec(3) as the app: the hits' ids, and what of memory_chunks it
    scanned (its indexes by name, "seq scan" for the table)."""
    before = await _scans(conn)
    await conn.execute("SET ROLE pymem_app")
    hits = await repo.query_memory(conn, user, "q", vec(3), k=5, rerank=False, where=where)
    await conn.execute("RESET ROLE")
    after = await _scans(conn)
    return [h.id for h in hits], {name for name, count in after.items() if count > before.get(name, 0)}


async def _scans(conn) -> dict[str, int]:
    """Scans of each index of memory_chunks, and of the table itself ("seq scan")."""
    await conn.execute("SELECT pg_catalog.pg_stat_force_next_flush()")
    return dict(await (await conn.execute(
        "SELECT indexrelname, idx_scan FROM pg_catalog.pg_stat_user_indexes"
        " WHERE schemaname = 'pymem' AND relname = 'memory_chunks'"
        " UNION ALL SELECT 'seq scan', seq_scan FROM pg_catalog.pg_stat_user_tables"
        " WHERE schemaname = 'pymem' AND relname = 'memory_chunks'")).fetchall())


@pytest.mark.single_node  # on Citus the graphs are per shard, named after it
async def test_a_tenant_with_a_solo_graph_walks_it_and_not_its_bucket_graph(cluster):
    alice = "solo-walker"
    conn, mine, solo = await _solo_tenant(cluster, "pymem_solo_walk", alice,
                                          [ChunkInput("d", "s", f"d {i}", vec(i)) for i in range(40)],
                                          "exact_search_max_rows = 0, solo_graph_min_rows = 30")
    try:
        hits, scanned = await _search_as_app(conn, alice)
    finally:
        await conn.close()
    assert scanned == {solo}
    exact = sorted(range(40), key=lambda i: -float(vec(i) @ vec(3)))[:5]
    assert hits == [mine[i] for i in exact]


@pytest.mark.single_node  # on Citus the graphs are per shard, named after it
async def test_a_filtered_search_on_a_solo_graph_walks_before_it_counts(cluster):
    """Revision 0018: a filter that k of the walk's nearest rows satisfy is answered by the
    walk alone, without reading the tenant's rows to count the matches; a filter they do
    not satisfy is then counted and read exactly (4 matches: all 4, in order)."""
    alice = "solo-filterer"
    chunks = [ChunkInput("d", "s", f"d {i}", vec(i), metadata={"kind": "rare" if i % 10 == 0 else "common"})
              for i in range(40)]
    conn, ids, solo = await _solo_tenant(cluster, "pymem_solo_filtered", alice, chunks, "solo_graph_min_rows = 30")
    try:
        searched = {kind: await _search_as_app(conn, alice, {"kind": kind}) for kind in ("common", "rare")}
    finally:
        await conn.close()
    common = [i for i in sorted(range(40), key=lambda i: -float(vec(i) @ vec(3))) if i % 10][:5]
    assert searched["common"] == ([ids[i] for i in common], {solo})
    rare_ids, rare_scans = searched["rare"]
    rare = sorted(range(0, 40, 10), key=lambda i: -float(vec(i) @ vec(3)))
    assert rare_ids == [ids[i] for i in rare]
    assert solo in rare_scans and len(rare_scans) > 1  # the count and the exact read: an index or the table


@pytest.mark.single_node  # the command runs on the coordinator in the same way; this checks its output
def test_doctor_fails_until_the_solo_graphs_command_has_built_them(cluster, monkeypatch, capsys):
    import asyncio

    admin = cluster.fresh_database("pymem_solo_cli", embedding_dim=DIM)
    monkeypatch.setenv("PYMEM_DATABASE_URL", admin)

    async def write():
        conn = await aconnect(admin)
        try:
            await conn.execute("SET ROLE pymem_app")
            await _write(conn, "solo-cli", "d", 12)
            await conn.commit()
        finally:
            await conn.close()

    asyncio.run(write())
    with connect(admin) as conn:
        conn.execute("UPDATE pymem.tuning SET solo_graph_min_rows = 10")
    assert main(["doctor"]) == 1
    assert ("FAIL large tenants have solo graphs: 1 tenants of 10+ rows have none and 0 solo graphs are stale"
            in capsys.readouterr().out)
    assert main(["solo-graphs", "--dry-run"]) == 0
    assert "without a solo graph: 1 (12 rows); solo graphs to drop: 0; kept: 0" in capsys.readouterr().out
    with connect(admin) as conn:
        assert _solo_graphs(conn) == {}
    assert main(["solo-graphs", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "built 1 and dropped 0 solo graphs" in out and hmac_user("solo-cli") not in out
    with connect(admin) as conn:
        assert len(_solo_graphs(conn)) == 1
    assert main(["doctor"]) == 0
    assert "ok   large tenants have solo graphs: 1 solo graphs, one per tenant of 10+ rows" in capsys.readouterr().out


def test_the_app_cannot_build_solo_graphs(server):
    server.fresh_database("pymem_solo_app", embedding_dim=DIM)
    server.login_role("pymem_test_app", ["pymem_app"])
    with connect(server.url("pymem_solo_app", user="pymem_test_app")) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE INDEX memory_chunks_solo_x ON pymem.memory_chunks"
                         " USING hnsw (embedding public.vector_cosine_ops) WHERE user_hash = 'x'")


async def test_only_the_largest_tenants_up_to_the_cap_get_solo_graphs(server):
    admin = server.fresh_database("pymem_solo_cap", embedding_dim=DIM)
    server.login_role("pymem_test_app", ["pymem_app"])
    app = await aconnect(server.url("pymem_solo_cap", user="pymem_test_app"))
    try:
        await _write(app, "solo-cap-a", "d", 30)
        await _write(app, "solo-cap-b", "d", 20, offset=100)
        with connect(admin) as conn:
            conn.execute("UPDATE pymem.tuning SET solo_graph_min_rows = 10, solo_graph_max_count = 1")
            plan = plan_solo_graphs(conn)
            assert (plan.build, plan.left_out) == ([(hmac_user("solo-cap-a"), 30)], 1)
            apply_solo_graphs(conn, plan, progress=False)
        # b outgrows a: a's graph goes, b's is built.
        await _write(app, "solo-cap-b", "e", 20, offset=200)
        with connect(admin) as conn:
            (graph_a,) = conn.execute("SELECT pymem.solo_graph_name(%s)", (hmac_user("solo-cap-a"),)).fetchone()
            plan = plan_solo_graphs(conn)
            assert (plan.build, plan.drop, plan.left_out) == ([(hmac_user("solo-cap-b"), 40)], [graph_a], 1)
    finally:
        await app.close()


def test_a_second_run_while_one_holds_the_lock_is_refused(server):
    from pymem.errors import NotReady
    from pymem.solo_graphs import SoloGraphPlan

    admin = server.fresh_database("pymem_solo_lock", embedding_dim=DIM)
    with connect(admin) as first, connect(admin) as second:
        first.execute("SELECT pg_catalog.pg_advisory_lock(%s)", (0x706D736F6C6F,))
        with pytest.raises(NotReady, match="another pymem solo-graphs is running"):
            apply_solo_graphs(second, SoloGraphPlan(10, 1, [], [], 0), progress=False)
        first.execute("SELECT pg_catalog.pg_advisory_unlock(%s)", (0x706D736F6C6F,))
        assert apply_solo_graphs(second, SoloGraphPlan(10, 1, [], [], 0), progress=False).built == 0
