"""Filtered search on sealed metadata: recall@10 and latency by tenant size and selectivity.

Each row carries blind-index tags (:mod:`pymem.blind_index`) of three attributes
whose values split a tenant's rows into 100, 10 and 2 equal parts, so a filter on
one value matches 1%, 10% or 50% of the tenant's rows. The solo graphs are built
after the load, as a DBA runs ``pymem solo-graphs``. In the same run, on the same
data:
  * pymem: ``pymem.search_chunks_v2`` with the filter, as the app role (intent
    committed first, as an app pays it);
  * the same with the search of the revision before (:data:`BEFORE`, its
    ``search_rows_v2`` put back by a superuser in this throw-away database);
  * plain HNSW + filter: the shared index with pgvector's defaults, the filter
    and the tenant checked on the rows it returns.
Recall is against the exact top 10 of the tenant's matching rows, in numpy.
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from pymem import sync
from pymem.connections import SyncConnectionAsAsync
from pymem.extras import progress_iter
from pymem.reads import durable_read
from pymem.security import keyring
from pymem.tenant import enter_tenant_call
from pymem_devtools.bench.common import (
    PEER_INDEX_SQL,
    app_dsn,
    bench_cluster,
    build_solo_graphs,
    markdown_table,
    percentiles_ms,
    ratio,
)
from pymem_devtools.bench.crowding import released_search
from pymem_devtools.bench.dataset import SIZE_CLASSES, load, make_dataset, queries_for, tag_rows
from pymem_devtools.keys import ephemeral_keys

K = 10
SELECTIVITY = {"1%": "part100", "10%": "part10", "50%": "part2"}  # filter on value 0 of the attribute
# rows, tenants, tenants sampled per class, queries per tenant
SCALES = {"tiny": (3_000, 30, 2, 2), "quick": (20_000, 100, 5, 4), "full": (100_000, 200, 8, 6)}

_PYMEM_SQL = ("SELECT id FROM pymem.search_chunks_v2(%s::pg_catalog.bpchar, %s::pg_catalog.uuid, %b::public.vector,"
              " %s::pg_catalog.int4, %b::pg_catalog.bytea[], %b::pg_catalog.int4[])")
_PLAIN_SQL = ("SELECT id FROM pymem.memory_chunks WHERE user_hash = %s AND meta_tags && %b::pg_catalog.bytea[]"
              " ORDER BY embedding <=> %b::public.vector LIMIT %s")
PYMEM, PLAIN = "pymem search_chunks_v2", "plain HNSW + filter"
#: The revision whose search is measured beside the current one: 0018 walks a solo
#: graph before it counts a filter's matches, 0017 counted first.
BEFORE = "0017"
BEFORE_METHOD = f"{PYMEM}, revision {BEFORE}'s search"


def _metadata(position: int) -> dict[str, int]:
    return {name: position % int(name.removeprefix("part")) for name in SELECTIVITY.values()}


def _exact(dataset, rows: np.ndarray, query: np.ndarray) -> set[int]:
    sims = dataset.vectors[rows] @ query
    return set(rows[np.argsort(-sims, kind="stable")[:K]].tolist())


def pymem_search(conn, user_hash: str, query: np.ndarray, tags: list[bytes]) -> list[uuid.UUID]:
    params = (query, K, tags, [len(tags)])
    rows = sync.run(durable_read(SyncConnectionAsAsync(conn), user_hash, "filtered_search", params, _PYMEM_SQL,
                                 params))
    return [r[0] for r in rows]


def _plain_search(conn, user_hash: str, query: np.ndarray, tags: list[bytes]) -> list[uuid.UUID]:
    with conn.transaction():
        conn.execute("SET LOCAL ROLE pymem_owner")
        conn.execute(*enter_tenant_call(user_hash))
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SET LOCAL enable_sort = off")
        return [r[0] for r in conn.execute(_PLAIN_SQL, (user_hash, tags, query, K))]


def run(scale: str) -> dict:
    ephemeral_keys()
    n_rows, n_tenants, per_class, per_tenant = SCALES[scale]
    cluster = bench_cluster(scale)
    dataset = make_dataset(n_rows, n_tenants)
    admin = cluster.fresh_database("pymem_bench_filtered", embedding_dim=dataset.vectors.shape[1])
    ids, _, _ = load(admin, dataset, progress=scale != "tiny")
    solo = build_solo_graphs(admin, progress=scale != "tiny")
    positions = tag_rows(admin, dataset, ids, _metadata)
    row_of = {chunk_id: i for i, chunk_id in enumerate(ids)}
    by_class = dataset.tenants_by_class()

    owner = psycopg.connect(admin, autocommit=True)
    app = psycopg.connect(app_dsn(cluster, "pymem_bench_filtered"), autocommit=True)
    for conn in (owner, app):
        register_vector(conn)
    methods = {PYMEM: (app, pymem_search), BEFORE_METHOD: (app, pymem_search), PLAIN: (owner, _plain_search)}
    cells = []
    for size_class in SIZE_CLASSES:
        tenants = by_class[size_class][:per_class]
        for selectivity, attribute in SELECTIVITY.items():
            work = []
            for tenant in tenants:
                rows = positions[tenant]
                matching = rows[[_metadata(p)[attribute] == 0 for p in range(len(rows))]]
                [tag] = keyring().tenant_index(dataset.tenant_hashes[tenant]).compile_filter({attribute: 0})[0]
                work += [(tenant, q, matching, [tag]) for q in queries_for(dataset, tenant, per_tenant,
                                                                         seed=5000 + tenant)]
            if work:
                cells.append(({"class": size_class, "selectivity": selectivity,
                               "matching_rows": [min(len(w[2]) for w in work), max(len(w[2]) for w in work)]},
                              work))
    try:
        for method, (conn, search) in methods.items():
            if method == BEFORE_METHOD:
                owner.execute(released_search(BEFORE))
            if method == PLAIN:
                # pgvector's usual setup: one graph over every tenant's rows (pymem's own
                # graphs are per bucket since 0008), built after pymem is measured.
                owner.execute(f"SET maintenance_work_mem = '1GB'; {PEER_INDEX_SQL}")
            for cell, work in cells:
                search(conn, dataset.tenant_hashes[work[0][0]], work[0][1], work[0][3])  # warm the cache
                recalls, latencies = [], []
                for tenant, query, matching, tags in progress_iter(
                        work, enabled=scale != "tiny", desc=f"{cell['class']} {cell['selectivity']}: {method}",
                        leave=False):
                    start = time.perf_counter()
                    got = search(conn, dataset.tenant_hashes[tenant], query, tags)
                    latencies.append(time.perf_counter() - start)
                    truth = _exact(dataset, matching, query)
                    recalls.append(len(truth & {row_of[g] for g in got}) / len(truth))
                cell[method] = {"recall_at_10": round(float(np.mean(recalls)), 4),
                                "recall_min": round(float(np.min(recalls)), 2),
                                "latency_ms": percentiles_ms(latencies)}
            if method == PLAIN:
                owner.execute("DROP INDEX pymem.bench_plain_hnsw")
    finally:
        owner.close()
        app.close()
    cells = [cell for cell, _ in cells]

    rows = [[c["class"], c["selectivity"], f"{c['matching_rows'][0]}-{c['matching_rows'][1]}", method,
             f"{c[method]['recall_at_10']:.3f}", c[method]["recall_min"], c[method]["latency_ms"]["p50"],
             c[method]["latency_ms"]["p95"]] for c in cells for method in methods]
    table = markdown_table(["class", "filter matches", "matching rows", "method", "recall@10", "recall min",
                            "p50 ms", "p95 ms"], rows)
    worst = min(c[PYMEM]["recall_at_10"] for c in cells)
    worst_plain = min(c[PLAIN]["recall_at_10"] for c in cells)
    p95 = max(c[PYMEM]["latency_ms"]["p95"] for c in cells)
    table += (f"\n\n{n_rows:,} chunks x 384-d, {n_tenants} tenants (Zipf), k={K}; filters on blind-index tags;"
              f" {solo['built']} solo graphs (tenants of {solo['min_rows']:,}+ rows)."
              f" Goal: recall@10 >= 0.98 in every cell. pymem worst cell {worst:.3f}"
              f" (plain HNSW + filter: {worst_plain:.3f}); pymem worst p95 {p95} ms"
              f" ({ratio(p95, max(c[PLAIN]['latency_ms']['p95'] for c in cells))}x the plain path's worst).")
    return {"name": "filtered", "results": {"rows": n_rows, "tenants": n_tenants, "k": K, "solo_graphs": solo,
                                            "cells": cells, "worst_recall": worst}, "markdown": table}


if __name__ == "__main__":
    import sys

    print(run(sys.argv[1] if len(sys.argv) > 1 else "tiny")["markdown"])
