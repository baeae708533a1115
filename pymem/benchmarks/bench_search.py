"""Search under RLS: recall@10 and latency per tenant size class.

Three ways to answer the same queries, in the same run, on the same data:
  * pymem: ``pymem.search_chunks`` as the app role (the real path, audit row included);
  * plain HNSW + filter: the shared index with pgvector's defaults, RLS filtering after;
  * exact: the tenant's rows through the btree, fully sorted.
Recall is against the exact answer for the same tenant, computed in numpy.
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from tqdm import tqdm

from pymem.benchmarks.common import app_dsn, bench_cluster, markdown_table, percentiles_ms
from pymem.benchmarks.dataset import SIZE_CLASSES, exact_top_k, load, make_dataset, queries_for
from pymem.tenant import set_tenant_sql

K = 10
# rows, tenants, tenants sampled per class, queries per tenant
SCALES = {"tiny": (3_000, 30, 2, 2), "quick": (20_000, 100, 6, 5), "full": (100_000, 200, 10, 10)}

_INTENT_SQL = ("SELECT pymem.read_intent(%s::pg_catalog.bpchar, %s::pg_catalog.uuid, 'search',"
               " pymem.search_digest(%b::public.vector, %s::pg_catalog.int4))")
_PYMEM_SQL = ("SELECT id FROM pymem.search_chunks(%s::pg_catalog.bpchar, %s::pg_catalog.uuid, %b::public.vector,"
              " %s::pg_catalog.int4)")
# The durable read audit (0005) commits an intent before each search. "pymem
# search_chunks" times both transactions, as an app pays them; "read only" times
# the search transaction alone (intent committed untimed): the ratio is its cost.
DURABLE, READ_ONLY = "pymem search_chunks", "pymem search_chunks, read only"
METHODS = {
    DURABLE: ("app", [], _PYMEM_SQL),
    READ_ONLY: ("app", [], _PYMEM_SQL),
    "plain HNSW + filter": ("owner", ["SET LOCAL enable_sort = off", "SET LOCAL enable_seqscan = off"],
                            "SELECT id FROM pymem.memory_chunks ORDER BY embedding <=> %b::public.vector LIMIT %s"),
    "exact (btree + sort)": ("owner", [],
                             "SELECT id FROM pymem.memory_chunks ORDER BY (embedding <=> %b::public.vector) + 0 LIMIT %s"),
}


def _commit_intent(conn, user_hash: str, query: np.ndarray) -> uuid.UUID:
    ticket = uuid.uuid4()
    with conn.transaction():
        conn.execute(set_tenant_sql(user_hash))
        conn.execute(_INTENT_SQL, (user_hash, ticket, query, K))
    return ticket


def _measure(conn, method: str, role_sql: list[str], query_sql: str, user_hash: str,
             query: np.ndarray) -> tuple[list, float]:
    ticket = _commit_intent(conn, user_hash, query) if method == READ_ONLY else None
    start = time.perf_counter()
    if method == DURABLE:
        ticket = _commit_intent(conn, user_hash, query)
    with conn.transaction():
        for statement in role_sql:
            conn.execute(statement)
        conn.execute(set_tenant_sql(user_hash))
        params = (query, K) if ticket is None else (user_hash, ticket, query, K)
        rows = conn.execute(query_sql, params).fetchall()
    elapsed = time.perf_counter() - start
    return [r[0] for r in rows], elapsed


def run(scale: str) -> dict:
    n_rows, n_tenants, per_class, per_tenant = SCALES[scale]
    cluster = bench_cluster()
    dataset = make_dataset(n_rows, n_tenants)
    admin = cluster.fresh_database("pymem_bench_search", embedding_dim=dataset.vectors.shape[1])
    ids, build_s = load(admin, dataset, progress=scale != "tiny")
    row_of = {chunk_id: i for i, chunk_id in enumerate(ids)}
    by_class = dataset.tenants_by_class()

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
                    _measure(conn, method, role + settings, query_sql, dataset.tenant_hashes[tenant], work[0][1])
                for tenant, query in tqdm(work, desc=f"{size_class}: {method}", disable=scale == "tiny", leave=False):
                    got, elapsed = _measure(conn, method, role + settings, query_sql, dataset.tenant_hashes[tenant],
                                            query)
                    truth = set(exact_top_k(dataset, tenant, query, K))
                    recalls.append(len(truth & {row_of[g] for g in got}) / len(truth))
                    latencies.append(elapsed)
                stats[method] = {"recall_at_10": round(float(np.mean(recalls)), 4),
                                 "recall_min": round(float(np.min(recalls)), 2), "latency_ms": percentiles_ms(latencies)}
            stats[DURABLE]["durable_audit_cost_p50"] = round(
                stats[DURABLE]["latency_ms"]["p50"] / stats[READ_ONLY]["latency_ms"]["p50"], 2)
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
    costs = ", ".join(f"{c} {info['methods'][DURABLE]['durable_audit_cost_p50']}x"
                      for c, info in results["classes"].items())
    table += (f"\n\n{n_rows:,} chunks x 384-d, {n_tenants} tenants (Zipf), k={K}; HNSW bulk build {build_s:.1f} s."
              " Goal for pymem: recall@10 >= 0.98 and p95 <= 5 ms in every class."
              f"\nDurable read audit (intent committed before the search), p50 with it / without: {costs}.")
    return {"name": "search", "results": results, "markdown": table}
