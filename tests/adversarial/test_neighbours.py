"""A7 of the second attack round: a neighbour lowers a tenant's search recall.

A tenant whose hash lands in the victim's search bucket shares the victim's HNSW
graph. It writes, through the API as the app role, rows packed around the point the
victim asks about, more than the graph walk keeps (``hnsw.ef_search`` is at most
1,000): every row the walk finds near the query is the neighbour's. The search must
still return the victim's exact top k (revision 0016: fewer than k of the tenant's
rows among the walk's means the exact path answers), not fewer rows or farther
ones. The database's tuning sends every search of this small database to the graph,
as a large tenant's would go.
"""

from __future__ import annotations

import numpy as np
import pytest

from pymem import repository as repo
from pymem.repository import ChunkInput
from pymem.security import hmac_user
from tests.utils import DIM

pytestmark = pytest.mark.citus

CROWD = 1_500  # more than the 1,000 rows the walk keeps at most
K = 10


def _bucket(user: str) -> int:
    return int(hmac_user(user)[-2:], 16) & 63


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.fixture
async def crowded(server, request):
    """(app connection, victim, query, the victim's rows by id) in a fresh database whose
    searches all take the bucket graph, the victim's bucket crowded by a neighbour."""
    from pymem.db import aconnect, connect

    name = f"pymem_crowd_{request.node.name[5:25].lower()}"
    admin = server.fresh_database(name, embedding_dim=DIM)
    with connect(admin) as conn:
        conn.execute("UPDATE pymem.tuning SET exact_search_max_rows = 0, filtered_exact_max_rows = 0")
    server.login_role("pymem_test_app", ["pymem_app"])
    app = await aconnect(server.url(name, user="pymem_test_app"))
    victim = "crowded-victim"
    neighbour = next(f"crowding-neighbour-{i}" for i in range(10_000) if _bucket(f"crowding-neighbour-{i}")
                     == _bucket(victim))
    rng = np.random.default_rng(7)
    query = _unit(rng.standard_normal(DIM))
    # The victim's 40 rows are farther from the query than every one of the neighbour's.
    own = _unit(query + 1.2 * _unit(rng.standard_normal((40, DIM))))
    crowd = _unit(query + 0.3 * _unit(rng.standard_normal((CROWD, DIM))))
    ids = await repo.index_memory_chunks(app, victim, [
        ChunkInput("d", "s", f"victim {n}", v, {"half": n % 2}) for n, v in enumerate(own)])
    await repo.index_memory_chunks(app, neighbour, [ChunkInput("n", "s", "crowd", v) for v in crowd])
    try:
        yield app, victim, query, dict(zip(ids, own))
    finally:
        await app.close()


def _exact(rows: dict, query: np.ndarray, keep=lambda _: True) -> list:
    chosen = [i for i in rows if keep(i)]
    return sorted(chosen, key=lambda i: -float(rows[i] @ query))[:K]


async def test_a_neighbour_crowding_the_bucket_graph_does_not_lower_a_tenants_recall(crowded, second_round):
    app, victim, query, rows = crowded
    hits = await repo.query_memory(app, victim, "q", query, k=K, rerank=False)
    assert [h.id for h in hits] == _exact(rows, query)
    texts = {i: n for n, i in enumerate(rows)}
    filtered = await repo.query_memory(app, victim, "q", query, k=K, rerank=False, where={"half": 0})
    assert [h.id for h in filtered] == _exact(rows, query, keep=lambda i: texts[i] % 2 == 0)
    second_round("A7: a neighbour crowds the victim's bucket graph")


async def test_a_neighbour_cannot_crowd_a_tenant_with_a_solo_graph(crowded, server, second_round):
    """Revision 0017: the victim's own graph (built by the DBA's ``pymem solo-graphs``)
    holds none of the neighbour's rows; test_solo_graphs shows the search walks it."""
    from pymem.db import connect
    from pymem.solo_graphs import apply_solo_graphs, plan_solo_graphs

    app, victim, query, rows = crowded
    (admin,) = [row[0] for row in await (await app.execute("SELECT pg_catalog.current_database()")).fetchall()]
    with connect(server.url(admin)) as conn:
        conn.execute("UPDATE pymem.tuning SET solo_graph_min_rows = 40")
        plan = plan_solo_graphs(conn)
        assert hmac_user(victim) in {user_hash for user_hash, _ in plan.build}
        apply_solo_graphs(conn, plan, progress=False)
    hits = await repo.query_memory(app, victim, "q", query, k=K, rerank=False)
    assert [h.id for h in hits] == _exact(rows, query)
    texts = {i: n for n, i in enumerate(rows)}
    filtered = await repo.query_memory(app, victim, "q", query, k=K, rerank=False, where={"half": 1})
    assert [h.id for h in filtered] == _exact(rows, query, keep=lambda i: texts[i] % 2 == 1)
    second_round("A7: a neighbour crowds a tenant that has a solo graph")
