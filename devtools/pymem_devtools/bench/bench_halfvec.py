"""Embeddings at half precision (revision 0023): pymem's schema with ``vector`` against the
same schema with ``halfvec`` (``PYMEM_EMBEDDING_TYPE``), on the same data, in one run; and a
3,072-dimension schema, which only halfvec can index (HNSW indexes vector up to 2,000).

For each: the size of the 64 bucket graphs (HNSW indexes) and of the table, and recall@10
and latency of ``pymem.search_chunks_v3`` as the app role (the durable read, intent included)
against the exact top 10 in float32. Every search walks its tenant's bucket graph
(``exact_search_max_rows = 0``): the graphs' recall is what differs; the exact path reads
the same rows either way.
"""

from __future__ import annotations

import time

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from tqdm import tqdm

from pymem import sync
from pymem.connections import SyncConnectionAsAsync
from pymem.reads import durable_read
from pymem_devtools.bench.common import app_dsn, bench_cluster, markdown_table, percentiles_ms, ratio
from pymem_devtools.bench.dataset import exact_top_k, load, make_dataset, queries_for
from pymem_devtools.keys import ephemeral_keys

K = 10
# rows, tenants, tenants sampled, queries per sampled tenant; and the 3,072-d schema's rows
SCALES = {"tiny": (3_000, 20, 4, 5, 1_000), "quick": (20_000, 50, 8, 10, 5_000),
          "full": (100_000, 100, 10, 20, 20_000)}
WIDE_DIM = 3072
_SEARCH_SQL = ("SELECT id FROM pymem.search_chunks_v3(%s::pg_catalog.bpchar, %s::pg_catalog.uuid, %b::public.vector,"
               " %s::pg_catalog.int4, %b::pg_catalog.bytea[], %b::pg_catalog.int4[], %b::pg_catalog.timestamptz[],"
               " %b::pg_catalog.bytea[])")
_SIZES_SQL = """
SELECT coalesce(sum(pg_catalog.pg_relation_size(i.indexrelid)), 0),
       pg_catalog.pg_table_size('pymem.memory_chunks'::pg_catalog.regclass)
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
  JOIN pg_catalog.pg_am a ON a.oid = c.relam
 WHERE i.indrelid = 'pymem.memory_chunks'::pg_catalog.regclass AND a.amname = 'hnsw'"""


def _schema(cluster, name: str, dataset, kind: str, sampled: int, per_tenant: int, progress: bool) -> dict:
    """Load ``dataset`` into a fresh schema of embedding type ``kind``; measure it."""
    admin = cluster.fresh_database(name, embedding_dim=dataset.vectors.shape[1], embedding_type=kind)
    ids, build_s, _ = load(admin, dataset, progress=progress)
    row_of = {chunk_id: i for i, chunk_id in enumerate(ids)}
    with psycopg.connect(admin, autocommit=True) as owner:
        index_bytes, table_bytes = owner.execute(_SIZES_SQL).fetchone()
        owner.execute("UPDATE pymem.tuning SET exact_search_max_rows = 0, filtered_exact_max_rows = 0")
    # The largest tenants first: a graph walk is what a tenant too large to read exactly gets.
    tenants = sorted(range(len(dataset.tenant_hashes)), key=dataset.tenant_size, reverse=True)[:sampled]
    recalls, latencies = [], []
    with psycopg.connect(app_dsn(cluster, name), autocommit=True) as app:
        register_vector(app)
        conn = SyncConnectionAsAsync(app)
        for tenant in tqdm(tenants, desc=f"{kind} {dataset.vectors.shape[1]}-d searches", disable=not progress,
                           leave=False):
            user_hash = dataset.tenant_hashes[tenant]
            for query in queries_for(dataset, tenant, per_tenant, seed=3000 + tenant):
                params = (query, K, [], [], [], None)
                start = time.perf_counter()
                rows = sync.run(durable_read(conn, user_hash, "search_v3", params, _SEARCH_SQL, params))
                latencies.append(time.perf_counter() - start)
                truth = set(exact_top_k(dataset, tenant, query, K))
                recalls.append(len(truth & {row_of[r[0]] for r in rows}) / len(truth))
    return {"type": kind, "dim": int(dataset.vectors.shape[1]), "rows": dataset.n, "graphs_bytes": int(index_bytes),
            "table_bytes": int(table_bytes), "hnsw_build_s": round(build_s, 1),
            "recall_at_10": round(float(np.mean(recalls)), 4), "recall_min": round(float(np.min(recalls)), 2),
            "latency_ms": percentiles_ms(latencies), "searches": len(recalls)}


def run(scale: str) -> dict:
    ephemeral_keys()
    n_rows, n_tenants, sampled, per_tenant, wide_rows = SCALES[scale]
    cluster = bench_cluster(scale)
    progress = scale != "tiny"
    dataset = make_dataset(n_rows, n_tenants)
    systems = {kind: _schema(cluster, f"pymem_bench_{kind}", dataset, kind, sampled, per_tenant, progress)
               for kind in ("vector", "halfvec")}
    wide = make_dataset(wide_rows, max(4, n_tenants // 5), dim=WIDE_DIM)
    systems["halfvec 3072-d"] = _schema(cluster, "pymem_bench_halfvec_wide", wide, "halfvec", sampled, per_tenant,
                                        progress)
    vector, half = systems["vector"], systems["halfvec"]
    ratios = {"graphs_halfvec_over_vector": ratio(half["graphs_bytes"], vector["graphs_bytes"]),
              "table_halfvec_over_vector": ratio(half["table_bytes"], vector["table_bytes"]),
              "recall_halfvec_minus_vector": round(half["recall_at_10"] - vector["recall_at_10"], 4),
              "p95_halfvec_over_vector": ratio(half["latency_ms"]["p95"], vector["latency_ms"]["p95"])}
    rows = [[name, s["dim"], f"{s['rows']:,}", f"{s['graphs_bytes'] / 2**20:.1f}", f"{s['table_bytes'] / 2**20:.1f}",
             s["recall_at_10"], s["recall_min"], s["latency_ms"]["p50"], s["latency_ms"]["p95"]]
            for name, s in systems.items()]
    markdown = (markdown_table(["schema", "dims", "rows", "graphs MB", "table MB", "recall@10", "min", "p50 ms",
                                "p95 ms"], rows)
                + f"\n\nhalfvec / vector at {vector['dim']}-d: graphs {ratios['graphs_halfvec_over_vector']}x,"
                  f" table {ratios['table_halfvec_over_vector']}x, recall@10"
                  f" {ratios['recall_halfvec_minus_vector']:+.4f}, p95 {ratios['p95_halfvec_over_vector']}x."
                  f" Every search walks its bucket graph (exact_search_max_rows = 0), {sampled} largest tenants,"
                  f" {per_tenant} queries each; a {WIDE_DIM}-d schema is refused as vector (HNSW's 2,000).\n")
    return {"results": {"systems": systems, "ratios": ratios}, "markdown": markdown}
