"""Recall over several builds of the same graphs: the same rows and queries, the
HNSW graphs dropped and built again, recall@10 measured after each build.

pgvector draws each row's level in the graph from the server's random numbers, so
two builds of the same rows are two different graphs, and a query's recall can
change from one to the next (issue 28, A7: the worst band of a shared store measured
0.983 in one build and 0.967 in the next). Here: tenants that all write about one
pool of 256 topics (:func:`make_shared_dataset`: 300,000 rows and 600 tenants at
full and xl scale), per band of tenant size (bench_search's bands), with pymem's
search as deployed (the 64 bucket graphs and the solo graphs of ``pymem
solo-graphs``) and on the bucket graphs alone (no solo graph), in every build.

``pymem-dev bench --scale full --only builds`` (or xl, the same data).
"""

from __future__ import annotations

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from tqdm import tqdm

from pymem.bulk_load import build_search_indexes, drop_search_indexes
from pymem_devtools.bench.bench_search import K, READ_ONLY, WARM_UP_SEARCHES, XL_BANDS, pymem_search
from pymem_devtools.bench.common import (
    app_dsn,
    bench_cluster,
    build_solo_graphs,
    drop_solo_graphs,
    markdown_table,
    percentiles_ms,
)
from pymem_devtools.bench.dataset import exact_top_k, load, make_shared_dataset, queries_for
from pymem_devtools.keys import ephemeral_keys

# rows, tenants, builds, tenants sampled per band, queries per band
SCALES = {"tiny": (3_000, 30, 2, 2, 8), "quick": (30_000, 60, 2, 4, 20), "full": (300_000, 600, 3, 8, 80),
          "xl": (300_000, 600, 3, 8, 80)}
SOLO, BUCKETS = "pymem search_chunks (solo graphs)", "pymem search_chunks, no solo graph"


def run(scale: str) -> dict:
    ephemeral_keys()
    n_rows, n_tenants, builds, per_band, per_group = SCALES[scale]
    cluster = bench_cluster(scale)
    dataset = make_shared_dataset(n_rows, n_tenants)
    admin = cluster.fresh_database("pymem_bench_builds", embedding_dim=dataset.vectors.shape[1])
    ids, _, _ = load(admin, dataset, progress=scale != "tiny")
    row_of = {chunk_id: i for i, chunk_id in enumerate(ids)}
    rng = np.random.default_rng(17)
    groups = {band: sorted(rng.choice(tenants, size=min(per_band, len(tenants)), replace=False).tolist())
              for band, tenants in dataset.tenants_by_band(XL_BANDS).items() if tenants}
    work = {band: [(t, q) for t in tenants for q in queries_for(dataset, t, -(-per_group // len(tenants)),
                                                                  seed=1000 + t)][:per_group]
            for band, tenants in groups.items()}
    truths = {band: [set(exact_top_k(dataset, t, q, K)) for t, q in pairs] for band, pairs in work.items()}
    app = psycopg.connect(app_dsn(cluster, "pymem_bench_builds"), autocommit=True)
    register_vector(app)
    per_build = []
    try:
        for build in range(builds):
            if build:  # the first build is load's
                with psycopg.connect(admin, autocommit=True) as conn:
                    build_search_indexes(conn, drop_search_indexes(conn), progress=scale != "tiny")
                    conn.execute("VACUUM ANALYZE pymem.memory_chunks")
            measured = {BUCKETS: _measure(app, dataset, groups, work, truths, row_of, f"build {build + 1}", scale)}
            solo = build_solo_graphs(admin, progress=scale != "tiny")
            measured[SOLO] = _measure(app, dataset, groups, work, truths, row_of, f"build {build + 1}", scale)
            drop_solo_graphs(admin)
            per_build.append({"solo_graphs": solo, "methods": measured})
    finally:
        app.close()
    results = {"rows": n_rows, "tenants": n_tenants, "k": K, "builds": per_build,
               "worst": {method: {"band_recall": min(b["methods"][method][band]["recall_at_10"]
                                                     for b in per_build for band in groups),
                                  "query_recall": min(b["methods"][method][band]["recall_min"]
                                                      for b in per_build for band in groups)}
                         for method in (SOLO, BUCKETS)}}
    return {"name": "builds", "results": results, "markdown": _table(results, groups, dataset)}


def _measure(app, dataset, groups, work, truths, row_of, label: str, scale: str) -> dict:
    """Recall@10 (mean, worst query) and latency per band, read-only search transactions."""
    stats = {}
    for band, tenants in groups.items():
        for tenant in tenants:
            for query in queries_for(dataset, tenant, WARM_UP_SEARCHES, seed=5000 + tenant):
                pymem_search(app, dataset.tenant_hashes[tenant], query)
        recalls, latencies = [], []
        for (tenant, query), truth in tqdm(list(zip(work[band], truths[band])), desc=f"{label}: {band}",
                                           disable=scale == "tiny", leave=False):
            got, elapsed = pymem_search(app, dataset.tenant_hashes[tenant], query)
            recalls.append(len(truth & {row_of[g] for g in got}) / len(truth))
            latencies.append(elapsed)
        stats[band] = {"recall_at_10": round(float(np.mean(recalls)), 4), "recall_min": round(float(np.min(recalls)), 2),
                       "latency_ms": percentiles_ms(latencies)}
    return stats


def _table(results: dict, groups: dict, dataset) -> str:
    rows = []
    for number, build in enumerate(results["builds"], 1):
        for method, bands in build["methods"].items():
            rows.append([number, method] + [f"{bands[b]['recall_at_10']:.3f} / {bands[b]['recall_min']:.2f}"
                                            for b in groups])
    sizes = {b: [dataset.tenant_size(t) for t in tenants] for b, tenants in groups.items()}
    headers = ["build", "method"] + [f"{b} ({min(s)}-{max(s)} rows)" for b, s in sizes.items()]
    worst = "; ".join(f"{method}: worst band {w['band_recall']:.3f}, worst query {w['query_recall']:.2f}"
                      for method, w in results["worst"].items())
    return ("### recall over several builds\n\n" + markdown_table(headers, rows)
            + f"\n\nrecall@10 mean / worst query per band, {READ_ONLY!r} transactions; {results['rows']:,} rows,"
              f" {results['tenants']} tenants sharing 256 topics, k={results['k']}, the graphs dropped and built"
              f" again {len(results['builds'])} times. Over all builds: {worst}. Goal: >= 0.98 mean and >= 0.8"
              " worst query in every band, in every build.")
