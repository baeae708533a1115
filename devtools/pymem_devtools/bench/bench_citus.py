"""Search on Citus against one PostgreSQL: recall@10 and latency per tenant size class.

The same dataset is loaded into the single-node embedded PostgreSQL and into a Citus
cluster (PG 16, one coordinator and two workers on this machine, ``pymem
distribute`` with 32 shards), and the same queries go through ``pymem.search_chunks``
as the app role on both (intent committed first, as in the search benchmark).
Recall is against the exact answer for the tenant, computed in numpy. The goal is
equal recall in every class; latency on three nodes sharing these cores says little
about a real cluster and is reported for completeness.
"""

from __future__ import annotations

import atexit
import collections

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from tqdm import tqdm

from pymem_devtools.bench.bench_search import DURABLE, METHODS, _measure
from pymem_devtools.bench.common import (
    app_dsn,
    bench_cluster,
    markdown_table,
    percentiles_ms,
)
from pymem_devtools.bench.dataset import (
    SIZE_CLASSES,
    exact_top_k,
    load,
    make_dataset,
    queries_for,
)

# rows, tenants, tenants sampled per class, queries per tenant
SCALES = {"tiny": (3_000, 30, 2, 2), "quick": (20_000, 100, 6, 5), "full": (100_000, 200, 10, 10)}
SHARDS = 32
K = 10
SINGLE, CITUS = "PostgreSQL (one node)", "Citus (3 nodes, 32 shards)"


def _recall_by_class(admin: str, app: str, dataset, by_class, per_class: int, per_tenant: int, progress: bool,
                     label: str) -> dict:
    ids, build_s, _ = load(admin, dataset, progress=progress)
    row_of = {chunk_id: i for i, chunk_id in enumerate(ids)}
    _, _, query_sql = METHODS[DURABLE]
    classes = {}
    with psycopg.connect(app, autocommit=True) as conn:
        register_vector(conn)
        for size_class in SIZE_CLASSES:
            tenants = by_class[size_class][:per_class]
            if not tenants:
                continue
            work = [(t, q) for t in tenants for q in queries_for(dataset, t, per_tenant, seed=1000 + t)]
            for tenant in tenants:  # warm-up pass, unmeasured (as in the search benchmark)
                _measure(conn, DURABLE, [], query_sql, dataset.tenant_hashes[tenant], work[0][1])
            recalls, latencies = [], []
            for tenant, query in tqdm(work, desc=f"{label}: {size_class}", disable=not progress, leave=False):
                got, elapsed = _measure(conn, DURABLE, [], query_sql, dataset.tenant_hashes[tenant], query)
                truth = set(exact_top_k(dataset, tenant, query, K))
                recalls.append(len(truth & {row_of[g] for g in got}) / len(truth))
                latencies.append(elapsed)
            classes[size_class] = {"recall_at_10": round(float(np.mean(recalls)), 4),
                                   "latency_ms": percentiles_ms(latencies), "queries": len(work)}
    return {"hnsw_build_s": round(build_s, 1), "classes": classes}


def run(scale: str) -> dict:
    from pymem_devtools.citus import CitusCluster

    n_rows, n_tenants, per_class, per_tenant = SCALES[scale]
    dataset = make_dataset(n_rows, n_tenants)
    dim = dataset.vectors.shape[1]
    by_class = collections.defaultdict(list)
    for tenant in range(n_tenants):
        by_class[dataset.size_class(tenant)].append(tenant)
    progress = scale != "tiny"

    single = bench_cluster(scale)
    single_admin = single.fresh_database("pymem_bench_citus_single", embedding_dim=dim)
    citus = CitusCluster(16)
    atexit.register(citus.close)
    try:
        citus_admin = citus.fresh_database("pymem_bench_citus", embedding_dim=dim, shard_count=SHARDS)
        targets = {
            SINGLE: _recall_by_class(single_admin, app_dsn(single, "pymem_bench_citus_single"), dataset, by_class,
                                     per_class, per_tenant, progress, SINGLE),
            CITUS: _recall_by_class(citus_admin, app_dsn(citus, "pymem_bench_citus"), dataset, by_class,
                                    per_class, per_tenant, progress, CITUS),
        }
    finally:
        citus.close()

    results = {"rows": n_rows, "tenants": n_tenants, "k": K, "shards": SHARDS, "targets": targets,
               "recall_difference": {c: round(targets[CITUS]["classes"][c]["recall_at_10"]
                                              - targets[SINGLE]["classes"][c]["recall_at_10"], 4)
                                     for c in targets[SINGLE]["classes"]}}
    rows = []
    for size_class, single_stats in targets[SINGLE]["classes"].items():
        citus_stats = targets[CITUS]["classes"][size_class]
        rows.append([size_class, f"{single_stats['recall_at_10']:.3f}", f"{citus_stats['recall_at_10']:.3f}",
                     f"{results['recall_difference'][size_class]:+.3f}", single_stats["latency_ms"]["p50"],
                     citus_stats["latency_ms"]["p50"]])
    table = markdown_table(["class", "recall@10, one node", "recall@10, Citus", "difference",
                            "p50 ms, one node", "p50 ms, Citus"], rows)
    table += (f"\n\n{n_rows:,} chunks x {dim}-d, {n_tenants} tenants (Zipf), k={K}, the same queries on both;"
              f" Citus: coordinator + 2 workers on this machine, {SHARDS} shards, every call delegated to the"
              " tenant's worker. Goal: the same recall in every class.")
    return {"name": "citus", "results": results, "markdown": table}
