"""The same LangChain workload through langchain-postgres' PGVectorStore and pymem's store.

Both on the same embedded Postgres, same rows, same queries, same embeddings (a
lookup of precomputed vectors, so no model time is measured):
  * ingest: ``add_texts`` with caller ids, in batches, every tenant's rows, into a
    table that already has its HNSW index (both stores);
  * search: ``similarity_search_by_vector(k=10)`` per tenant; PGVectorStore holds
    all tenants in one table with a ``tenant`` metadata column and filters on it
    (its documented multi-tenant pattern), pymem has one store per tenant (RLS,
    sealed rows, audited reads). Recall@10 is against the exact answer for the
    tenant, computed in numpy.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid

import numpy as np
import psycopg
from langchain_core.embeddings import Embeddings
from sqlalchemy import URL

from pymem.integrations.langchain import PymemVectorStore
from pymem_devtools.bench.common import (
    app_dsn,
    bench_cluster,
    markdown_table,
    percentiles_ms,
    ratio,
)
from pymem_devtools.bench.dataset import (
    SIZE_CLASSES,
    exact_top_k,
    make_dataset,
    queries_for,
)
from pymem_devtools.keys import ephemeral_keys

K = 10
BATCH = 500
# rows, tenants, tenants sampled per class, queries per tenant
SCALES = {"tiny": (2_000, 20, 2, 2), "quick": (10_000, 50, 4, 5), "full": (30_000, 50, 8, 10)}
PEER, OURS = "langchain-postgres PGVectorStore", "pymem PymemVectorStore"


class LookupEmbeddings(Embeddings):
    """Precomputed vectors by text: both stores embed through it, at no cost."""

    def __init__(self, texts: list[str], vectors: np.ndarray):
        self._by_text = {text: vector.tolist() for text, vector in zip(texts, vectors, strict=True)}

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._by_text[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._by_text[text]


def _rows_by_tenant(dataset) -> dict[int, list[int]]:
    rows = collections.defaultdict(list)
    for i, tenant in enumerate(dataset.tenant_of_row):
        rows[int(tenant)].append(i)
    return rows


def _asyncpg_url(dsn: str) -> URL:
    """asyncpg: PGVectorStore's fastest driver here (about 3x psycopg's ingest, measured)."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    query = {name: info[name] for name in ("host", "port") if info.get(name)}
    return URL.create("postgresql+asyncpg", username=info.get("user"), password=info.get("password"),
                      database=info.get("dbname"), query=query)


def _peer_store(admin: str, embeddings: Embeddings, dim: int, **engine_options):
    from langchain_postgres import Column, PGEngine, PGVectorStore
    from langchain_postgres.v2.indexes import HNSWIndex

    engine = PGEngine.from_connection_string(_asyncpg_url(admin), **engine_options)
    engine.init_vectorstore_table("lc_bench", dim, metadata_columns=[Column("tenant", "TEXT")],
                                  overwrite_existing=True)
    store = PGVectorStore.create_sync(engine, embeddings, "lc_bench", metadata_columns=["tenant"])
    return engine, store, lambda: store.apply_vector_index(HNSWIndex())


def _ingest(add_batches) -> float:
    start = time.perf_counter()
    add_batches()
    return time.perf_counter() - start


def _search(search, work, dataset, row_of) -> dict:
    recalls, latencies = [], []
    for tenant, query in work:
        start = time.perf_counter()
        docs = search(tenant, query.tolist())
        latencies.append(time.perf_counter() - start)
        truth = set(exact_top_k(dataset, tenant, query, K))
        recalls.append(len(truth & {row_of[d.id] for d in docs}) / len(truth))
    return {"recall_at_10": round(float(np.mean(recalls)), 4), "recall_min": round(float(np.min(recalls)), 2),
            "latency_ms": percentiles_ms(latencies)}


def run(scale: str) -> dict:
    ephemeral_keys()
    n_rows, n_tenants, per_class, per_tenant = SCALES[scale]
    dataset = make_dataset(n_rows, n_tenants)
    dim = dataset.vectors.shape[1]
    texts = [f"chunk {i}" for i in range(n_rows)]
    # UUIDs: PGVectorStore's id column is uuid by default (LangChain's ids are uuid4).
    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"pymem-bench/{i}")) for i in range(n_rows)]
    row_of = {chunk_id: i for i, chunk_id in enumerate(ids)}
    tenants = _rows_by_tenant(dataset)
    embeddings = LookupEmbeddings(texts, dataset.vectors)
    cluster = bench_cluster(scale)

    # PGVectorStore, in its own database (it creates public.lc_bench).
    peer_admin = cluster.fresh_database("pymem_bench_lc_peer", embedding_dim=dim)
    engine, peer, build_index = _peer_store(peer_admin, embeddings, dim)
    order = list(range(n_rows))

    def peer_batches():
        for start in range(0, n_rows, BATCH):
            part = order[start:start + BATCH]
            peer.add_texts([texts[i] for i in part], [{"tenant": str(dataset.tenant_of_row[i])} for i in part],
                           ids=[ids[i] for i in part])

    # The index exists before the load, as in pymem's table: both stores insert into
    # an HNSW graph (an app adds documents to a store it already searches).
    build_index()
    peer_ingest_s = _ingest(peer_batches)

    ours_admin = cluster.fresh_database("pymem_bench_lc_ours", embedding_dim=dim)
    connection = psycopg.connect(app_dsn(cluster, "pymem_bench_lc_ours"), autocommit=True)
    stores = {t: PymemVectorStore(embeddings, f"bench-tenant-{t}", connection=connection) for t in tenants}

    def our_batches():
        for tenant, rows in tenants.items():
            for start in range(0, len(rows), BATCH):
                part = rows[start:start + BATCH]
                stores[tenant].add_texts([texts[i] for i in part], [{} for _ in part], ids=[ids[i] for i in part])

    our_ingest_s = _ingest(our_batches)
    with psycopg.connect(ours_admin, autocommit=True) as owner:
        owner.execute("VACUUM ANALYZE pymem.memory_chunks")

    by_class = dataset.tenants_by_class()
    classes = {}
    try:
        for size_class in SIZE_CLASSES:
            sampled = by_class[size_class][:per_class]
            if not sampled:
                continue
            work = [(t, q) for t in sampled for q in queries_for(dataset, t, per_tenant, seed=3000 + t)]
            stats = {
                PEER: _search(lambda t, q: peer.similarity_search_by_vector(q, k=K, filter={"tenant": str(t)}),
                              work, dataset, row_of),
                OURS: _search(lambda t, q: stores[t].similarity_search_by_vector(q, k=K), work, dataset, row_of),
            }
            sizes = [len(tenants[t]) for t in sampled]
            classes[size_class] = {"tenant_rows": [min(sizes), max(sizes)], "queries": len(work), "stores": stats}
    finally:
        connection.close()
        asyncio.run_coroutine_threadsafe(engine.close(), engine._loop).result()

    results = {
        "rows": n_rows, "tenants": n_tenants, "k": K,
        "ingest_rows_per_s": {PEER: round(n_rows / peer_ingest_s), OURS: round(n_rows / our_ingest_s)},
        "ingest_ratio_pymem_over_peer": ratio(peer_ingest_s, our_ingest_s),
        "classes": classes,
    }
    rows = [["ingest (rows/s)", "", PEER, results["ingest_rows_per_s"][PEER], "", "", ""],
            ["ingest (rows/s)", "", OURS, results["ingest_rows_per_s"][OURS], "", "", ""]]
    for size_class, info in classes.items():
        for store, s in info["stores"].items():
            rows.append([size_class, f"{info['tenant_rows'][0]}-{info['tenant_rows'][1]}", store,
                         f"{s['recall_at_10']:.3f}", s["recall_min"], s["latency_ms"]["p50"], s["latency_ms"]["p95"]])
    table = markdown_table(["class", "tenant rows", "store", "recall@10 (or rows/s)", "recall min", "p50 ms",
                            "p95 ms"], rows)
    p95 = ", ".join(f"{c} {ratio(i['stores'][OURS]['latency_ms']['p95'], i['stores'][PEER]['latency_ms']['p95'])}x"
                    for c, i in classes.items())
    table += (f"\n\n{n_rows:,} chunks x {dim}-d, {n_tenants} tenants (Zipf), k={K}, batches of {BATCH}, sync API."
              f" Ingest into an HNSW-indexed table, pymem / PGVectorStore (rows/s):"
              f" {results['ingest_ratio_pymem_over_peer']}x."
              f" Search p95, pymem / PGVectorStore: {p95}. pymem seals, audits and isolates by RLS; the peer"
              " stores plaintext and filters on a column.")
    return {"name": "langchain", "results": results, "markdown": table}


if __name__ == "__main__":
    import sys

    print(run(sys.argv[1] if len(sys.argv) > 1 else "tiny")["markdown"])
