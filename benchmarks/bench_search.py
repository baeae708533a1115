"""Search under RLS: recall@10 and latency per tenant size class.

Three ways to answer the same queries, in the same run, on the same data:
  * pymem: ``pymem.search_chunks`` as the app role (the real path, audit row included);
  * plain HNSW + filter: the shared index with pgvector's defaults, RLS filtering after;
  * exact: the tenant's rows through the btree, fully sorted.
Recall is against the exact answer for the same tenant, computed in numpy.
"""

from __future__ import annotations

import collections
import time

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from tqdm import tqdm

from benchmarks.common import app_dsn, bench_cluster, markdown_table, percentiles_ms
from benchmarks.dataset import SIZE_CLASSES, exact_top_k, load, make_dataset, queries_for

K = 10
# rows, tenants, tenants sampled per class, queries per tenant
SCALES = {"tiny": (3_000, 30, 2, 2), "quick": (20_000, 100, 6, 5), "full": (100_000, 200, 10, 10)}

METHODS = {
    "pymem search_chunks": ("app", [], "SELECT id FROM pymem.search_chunks(%b::public.vector, %s)"),
    "plain HNSW + filter": ("owner", ["SET LOCAL enable_sort = off", "SET LOCAL enable_seqscan = off"],
                            "SELECT id FROM pymem.memory_chunks ORDER BY embedding <=> %b::public.vector LIMIT %s"),
    "exact (btree + sort)": ("owner", [],
                             "SELECT id FROM pymem.memory_chunks ORDER BY (embedding <=> %b::public.vector) + 0 LIMIT %s"),
}


def _measure(conn, role_sql: list[str], query_sql: str, user_hash: str, query: np.ndarray) -> tuple[list, float]:
    with conn.transaction():
        for statement in role_sql:
            conn.execute(statement)
        conn.execute("SELECT set_config('app.user_hash', %s, true)", (user_hash,))
        start = time.perf_counter()
        rows = conn.execute(query_sql, (query, K)).fetchall()
        elapsed = time.perf_counter() - start
    return [r[0] for r in rows], elapsed


def run(scale: str) -> dict:
    n_rows, n_tenants, per_class, per_tenant = SCALES[scale]
    cluster = bench_cluster()
    dataset = make_dataset(n_rows, n_tenants)
    admin = cluster.fresh_database("pymem_bench_search", embedding_dim=dataset.vectors.shape[1])
    ids, build_s = load(admin, dataset, progress=scale != "tiny")
    row_of = {chunk_id: i for i, chunk_id in enumerate(ids)}
    by_class = collections.defaultdict(list)
    for tenant in range(n_tenants):
        by_class[dataset.size_class(tenant)].append(tenant)

    owner = psycopg.connect(admin, autocommit=True)
    app = psycopg.connect(app_dsn(cluster, "pymem_bench_search"), autocommit=True)
    for conn in (owner, app):
        register_vector(conn)
    results: dict = {"rows": n_rows, "tenants": n_tenants, "k": K, "hnsw_build_s": round(build_s, 1), "classes": {}}
    try:
        for size_class in SIZE_CLASSES:
            tenants = by_class[size_class][:per_class]
            if not tenants:
                continue
            work = [(t, q) for t in tenants for q in queries_for(dataset, t, per_tenant, seed=1000 + t)]
            stats = {}
            for method, (who, settings, query_sql) in METHODS.items():
                conn = app if who == "app" else owner
                role = [] if who == "app" else ["SET LOCAL ROLE pymem_owner"]
                recalls, latencies = [], []
                # One unmeasured pass per tenant: 128 MB of default shared_buffers
                # cannot hold heap + graph, so the first touches read the OS cache.
                for tenant in tenants:
                    _measure(conn, role + settings, query_sql, dataset.tenant_hashes[tenant], work[0][1])
                for tenant, query in tqdm(work, desc=f"{size_class}: {method}", disable=scale == "tiny", leave=False):
                    got, elapsed = _measure(conn, role + settings, query_sql, dataset.tenant_hashes[tenant], query)
                    truth = set(exact_top_k(dataset, tenant, query, K))
                    recalls.append(len(truth & {row_of[g] for g in got}) / len(truth))
                    latencies.append(elapsed)
                stats[method] = {"recall_at_10": round(float(np.mean(recalls)), 4),
                                 "recall_min": round(float(np.min(recalls)), 2), "latency_ms": percentiles_ms(latencies)}
            sizes = [dataset.tenant_size(t) for t in tenants]
            results["classes"][size_class] = {"tenants_sampled": len(tenants), "queries": len(work),
                                              "tenant_rows": [min(sizes), max(sizes)], "methods": stats}
    finally:
        owner.close()
        app.close()

    rows = []
    for size_class, info in results["classes"].items():
        for method, s in info["methods"].items():
            rows.append([size_class, f"{info['tenant_rows'][0]}-{info['tenant_rows'][1]}", method,
                         f"{s['recall_at_10']:.3f}", s["latency_ms"]["p50"], s["latency_ms"]["p95"]])
    table = markdown_table(["class", "tenant rows", "method", "recall@10", "p50 ms", "p95 ms"], rows)
    table += (f"\n\n{n_rows:,} chunks x 384-d, {n_tenants} tenants (Zipf), k={K}; HNSW bulk build {build_s:.1f} s."
              " Goal for pymem: recall@10 >= 0.98 and p95 <= 5 ms in every class.")
    return {"name": "search", "results": results, "markdown": table}
