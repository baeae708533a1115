"""Ingest: single calls vs the batch path, and the sealed batch path vs plaintext COPY.

Both comparisons run on the same server in the same run, with the HNSW index
present on both sides.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from pymem import repository
from pymem.bulk_load import drop_search_indexes
from pymem.db import aconnect
from pymem.repository import ChunkInput
from pymem_devtools.bench.common import (
    app_dsn,
    bench_cluster,
    markdown_table,
    ratio,
    unit_vectors,
)
from pymem_devtools.keys import ephemeral_keys

DIM = 384
SIZES = {"tiny": (50, 200), "quick": (1000, 5000), "full": (1000, 20000)}  # (single-vs-batch, copy-vs-sealed)
LARGE_BATCH = {"tiny": 100, "quick": 2000, "full": 10000}  # one import: where the floor is
TEXT = "memory chunk text " * 20  # ~360 bytes, a typical short chunk

COPY_ROUNDS = 4
PLAIN_DDL = """CREATE TABLE bench_plain (id uuid PRIMARY KEY, user_hash text NOT NULL, doc_id text NOT NULL,
    source text NOT NULL, text text NOT NULL, meta jsonb NOT NULL, embedding vector(384) NOT NULL);
CREATE INDEX ON bench_plain USING hnsw (embedding vector_cosine_ops);"""


def _chunks(vectors, prefix: str) -> list[ChunkInput]:
    return [ChunkInput(f"{prefix}-{i // 10}", "bench", TEXT, v, {"i": i}) for i, v in enumerate(vectors)]


async def _single_vs_batch(cluster, name: str, n: int, with_index: bool) -> dict:
    """n single calls vs one batch of n, each into a fresh database (both graphs start empty)."""
    vectors = unit_vectors(2 * n, DIM, seed=1)
    elapsed = {}
    for mode, part in (("single", vectors[:n]), ("batch", vectors[n:])):
        admin = cluster.fresh_database(f"{name}_{mode}", embedding_dim=DIM)
        if not with_index:
            with psycopg.connect(admin, autocommit=True) as conn:
                drop_search_indexes(conn)
        dsn = app_dsn(cluster, f"{name}_{mode}")
        if mode == "single":
            elapsed[mode] = await _single_calls(dsn, part, "bench-single")
        else:
            elapsed[mode] = await _sealed_batch(dsn, part)
    return {"chunks": n, "single_chunks_per_s": round(n / elapsed["single"]),
            "batch_chunks_per_s": round(n / elapsed["batch"]),
            "batch_speedup_per_chunk": ratio(elapsed["single"], elapsed["batch"])}


async def _large_batch(cluster, n: int) -> dict:
    """One import of n chunks three ways, each into a fresh database: n single calls with
    the index (the baseline), one batch with the index, and one batch with the index
    dropped then rebuilt (:mod:`pymem.bulk_load`).

    With the index present, both paths pay the same HNSW insertion per row, measured as
    (batch with index - batch without) / n. Single calls cannot take less than that
    either, so single / insertion is the largest ratio any batch path could reach with
    the index present: the floor the benchmark shows.
    """
    from pymem.bulk_load import build_search_indexes

    vectors = unit_vectors(n, DIM, seed=5)
    names = {mode: f"pymem_bench_large_{mode}" for mode in ("single", "batch", "rebuild")}
    admins = {mode: cluster.fresh_database(name, embedding_dim=DIM) for mode, name in names.items()}
    single_s = await _single_calls(app_dsn(cluster, names["single"]), vectors, "bench-large")
    batch_s = await _sealed_batch(app_dsn(cluster, names["batch"]), vectors)
    with psycopg.connect(admins["rebuild"], autocommit=True) as conn:
        definitions = drop_search_indexes(conn)
        load_s = await _sealed_batch(app_dsn(cluster, names["rebuild"]), vectors)
        started = time.perf_counter()
        build_search_indexes(conn, definitions, progress=False)
        build_s = time.perf_counter() - started
    insertion_s = max(batch_s - load_s, 1e-9)
    return {"chunks": n, "single_s": round(single_s, 2), "batch_s": round(batch_s, 2),
            "batch_without_index_s": round(load_s, 2), "index_build_s": round(build_s, 2),
            "hnsw_insertion_ms_per_chunk": round(1000 * insertion_s / n, 3),
            "batch_vs_single": ratio(single_s, batch_s),
            "load_then_build_vs_single": ratio(single_s, load_s + build_s),
            "largest_ratio_with_index": ratio(single_s, insertion_s)}


HALFVEC_QUERIES = 50


def _halfvec_vs_vector(cluster, n: int) -> dict:
    """pgvector's ``halfvec`` (2-byte floats) against ``vector`` for the same n rows, on plain
    tables: rows inserted into an HNSW index (COPY), the index rebuilt in bulk, sizes, and
    recall@10 of the index against exact search. pymem stores ``vector``; this measures
    what switching would buy."""
    vectors = unit_vectors(n + HALFVEC_QUERIES, DIM, seed=6)
    rows, queries = vectors[:n], vectors[n:]
    conn = psycopg.connect(cluster.fresh_database("pymem_bench_halfvec", migrate=False), autocommit=True)
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    out = {"chunks": n}
    for kind in ("vector", "halfvec"):
        table, index = sql.Identifier(f"bench_{kind}"), sql.Identifier(f"bench_{kind}_hnsw")
        create_index = sql.SQL("CREATE INDEX {} ON public.{} USING hnsw (v {})").format(
            index, table, sql.SQL(f"{kind}_cosine_ops"))
        conn.execute(sql.SQL("CREATE TABLE public.{} (id int PRIMARY KEY, v {}({}))").format(
            table, sql.SQL(kind), sql.Literal(DIM)))
        conn.execute(create_index)
        started = time.perf_counter()
        with conn.cursor().copy(sql.SQL("COPY public.{} (id, v) FROM STDIN").format(table)) as copy:
            for i, v in enumerate(rows):
                copy.write_row((i, "[" + ",".join(map(str, v.tolist())) + "]"))
        insert_s = time.perf_counter() - started
        conn.execute(sql.SQL("DROP INDEX public.{}").format(index))
        started = time.perf_counter()
        conn.execute(create_index)
        build_s = time.perf_counter() - started
        table_mb, index_mb = conn.execute(
            "SELECT pg_catalog.pg_table_size(%s) / 1048576.0, pg_catalog.pg_relation_size(%s) / 1048576.0",
            (f"public.bench_{kind}", f"public.bench_{kind}_hnsw")).fetchone()
        out[kind] = {"insert_with_index_s": round(insert_s, 2), "index_build_s": round(build_s, 2),
                     "table_mb": round(float(table_mb), 1), "index_mb": round(float(index_mb), 1),
                     "recall_at_10": _recall_at_10(conn, table, kind, queries)}
    conn.close()
    out["insert_ratio"] = ratio(out["vector"]["insert_with_index_s"], out["halfvec"]["insert_with_index_s"])
    out["build_ratio"] = ratio(out["vector"]["index_build_s"], out["halfvec"]["index_build_s"])
    return out


def _recall_at_10(conn, table, kind: str, queries) -> float:
    search = sql.SQL("SELECT id FROM public.{} ORDER BY v <=> %s::{} LIMIT 10").format(table, sql.SQL(kind))
    hits = 0
    for q in queries:
        literal = "[" + ",".join(map(str, q.tolist())) + "]"
        conn.execute("SET enable_indexscan = off")
        exact = {r[0] for r in conn.execute(search, (literal,))}
        conn.execute("RESET enable_indexscan")
        hits += len(exact & {r[0] for r in conn.execute(search, (literal,))})
    return round(hits / (10 * len(queries)), 3)


async def _single_calls(dsn: str, vectors, user: str) -> float:
    conn = await aconnect(dsn)
    try:
        start = time.perf_counter()
        for chunk in _chunks(vectors, user):
            await repository.index_memory_chunk(conn, user, chunk.doc_id, chunk.source, chunk.text,
                                                chunk.embedding, chunk.metadata)
        return time.perf_counter() - start
    finally:
        await conn.close()


# The baseline without the audit chain: the same API with pymem.audit_append made a
# no-op, in a throw-away database (the chain lock taken first by every writer stays).
_NO_AUDIT_SQL = """CREATE OR REPLACE FUNCTION pymem.audit_append(p_user_hash char(64), p_operation text,
    p_phase text, p_ticket uuid, p_params_digest bytea, p_chunk_ids uuid[]) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp RETURN 0"""


def _audit_cost(cluster, n: int) -> dict:
    """Single-chunk writes with the hash-chained audit on, then off (fresh DBs)."""
    vectors = unit_vectors(n, DIM, seed=3)
    rates = {}
    for label, disable in (("audit on", False), ("audit off", True)):
        name = "pymem_bench_audit_off" if disable else "pymem_bench_audit_on"
        admin = cluster.fresh_database(name, embedding_dim=DIM)
        if disable:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(_NO_AUDIT_SQL)
        rates[label] = n / asyncio.run(_single_calls(app_dsn(cluster, name), vectors, "bench-audit"))
    return {"chunks": n, "with_audit_chunks_per_s": round(rates["audit on"]),
            "without_audit_chunks_per_s": round(rates["audit off"]),
            "audit_overhead_ratio": ratio(rates["audit on"], rates["audit off"])}


WRITERS = 8


async def _concurrent_writes(dsn: str, vectors, same_tenant: bool) -> float:
    """WRITERS connections write their share of ``vectors`` one chunk per call."""
    share = len(vectors) // WRITERS
    conns = [await aconnect(dsn) for _ in range(WRITERS)]
    try:
        start = time.perf_counter()
        await asyncio.gather(*(
            _write_each(conn, "bench-same" if same_tenant else f"bench-own-{w}", vectors[w * share:(w + 1) * share])
            for w, conn in enumerate(conns)))
        return time.perf_counter() - start
    finally:
        for conn in conns:
            await conn.close()


async def _write_each(conn, user: str, vectors) -> None:
    for chunk in _chunks(vectors, user):
        await repository.index_memory_chunk(conn, user, chunk.doc_id, chunk.source, chunk.text, chunk.embedding)


def _tenant_contention(cluster, n: int) -> dict:
    """Throughput of WRITERS concurrent writers of one tenant (one audit chain, whose
    head row serialises them until commit) vs of WRITERS different tenants."""
    vectors = unit_vectors(n, DIM, seed=4)
    rates = {}
    for label, same in (("same", True), ("different", False)):
        name = f"pymem_bench_contention_{label}"
        cluster.fresh_database(name, embedding_dim=DIM)
        rates[label] = n / asyncio.run(_concurrent_writes(app_dsn(cluster, name), vectors, same))
    return {"chunks": n, "writers": WRITERS, "same_tenant_chunks_per_s": round(rates["same"]),
            "different_tenants_chunks_per_s": round(rates["different"]),
            "same_vs_different_ratio": ratio(rates["same"], rates["different"])}


def _plain_copy(conn: psycopg.Connection, vectors, offset: int) -> float:
    """COPY rows into bench_plain (created by the caller); return the elapsed seconds."""
    user_hash = "b" * 64
    start = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy(sql.SQL("COPY bench_plain FROM STDIN WITH (FORMAT BINARY)")) as copy:
            copy.set_types(["uuid", "text", "text", "text", "text", "jsonb", "vector"])
            for i, v in enumerate(vectors, start=offset):
                copy.write_row((uuid.uuid4(), user_hash, f"plain-{i // 10}", "bench", TEXT, f'{{"i": {i}}}', v))
    return time.perf_counter() - start


async def _sealed_batch(dsn: str, vectors) -> float:
    conn = await aconnect(dsn)
    try:
        start = time.perf_counter()
        await repository.index_memory_chunks(conn, "bench-sealed", _chunks(vectors, "sealed"))
        return time.perf_counter() - start
    finally:
        await conn.close()


async def _upsert_vs_insert(cluster, n: int) -> dict:
    """Caller ids: n inserts, then n upserts of new ids, then n upserts replacing them (one batch each)."""
    cluster.fresh_database("pymem_bench_upsert", embedding_dim=DIM)
    conn = await aconnect(app_dsn(cluster, "pymem_bench_upsert"))
    vectors = unit_vectors(3 * n, DIM, seed=3)

    def with_ids(part, prefix: str) -> list[ChunkInput]:
        return [ChunkInput(c.doc_id, c.source, c.text, c.embedding, c.metadata, f"{prefix}-{i}")
                for i, c in enumerate(_chunks(part, prefix))]

    elapsed = {}
    try:
        for mode, write, chunks in (
                ("insert", repository.index_memory_chunks, with_ids(vectors[:n], "ins")),
                ("upsert_new", repository.upsert_memory_chunks, with_ids(vectors[n:2 * n], "up")),
                ("upsert_replace", repository.upsert_memory_chunks, with_ids(vectors[2 * n:], "up"))):
            start = time.perf_counter()
            await write(conn, "bench-upsert", chunks)
            elapsed[mode] = time.perf_counter() - start
    finally:
        await conn.close()
    return {"chunks": n, **{f"{mode}_chunks_per_s": round(n / s) for mode, s in elapsed.items()},
            "upsert_new_vs_insert": ratio(elapsed["insert"], elapsed["upsert_new"]),
            "upsert_replace_vs_insert": ratio(elapsed["insert"], elapsed["upsert_replace"])}


def run(scale: str) -> dict:
    ephemeral_keys()
    cluster = bench_cluster(scale)
    n_single, n_copy = SIZES[scale]
    single = asyncio.run(_single_vs_batch(cluster, "pymem_bench_sb", n_single, with_index=True))
    # The write path alone: the same comparison with no HNSW index, as during a bulk
    # load before the index is built. With the index, each row's HNSW insertion
    # (the same in both paths) bounds the ratio.
    path_only = asyncio.run(_single_vs_batch(cluster, "pymem_bench_sb_noindex", n_single, with_index=False))
    # Fresh databases for the COPY comparison: both sides start from an empty HNSW
    # graph (insertion cost grows with the graph) and grow in interleaved rounds,
    # alternating who goes first, so drift on a shared machine hits both alike.
    vectors = unit_vectors(n_copy, DIM, seed=2)
    plain = psycopg.connect(cluster.fresh_database("pymem_bench_copy", embedding_dim=DIM), autocommit=True)
    plain.execute(PLAIN_DDL)
    register_vector(plain)
    cluster.fresh_database("pymem_bench_sealed", embedding_dim=DIM)
    sealed_dsn = app_dsn(cluster, "pymem_bench_sealed")
    copy_s = sealed_s = 0.0
    step = n_copy // COPY_ROUNDS
    for r in range(COPY_ROUNDS):
        part = vectors[r * step:(r + 1) * step]
        if r % 2:
            sealed_s += asyncio.run(_sealed_batch(sealed_dsn, part))
            copy_s += _plain_copy(plain, part, r * step)
        else:
            copy_s += _plain_copy(plain, part, r * step)
            sealed_s += asyncio.run(_sealed_batch(sealed_dsn, part))
    plain.close()
    n_copy = step * COPY_ROUNDS
    copy_rate, sealed_rate = n_copy / copy_s, n_copy / sealed_s
    audit = _audit_cost(cluster, n_single // 2)
    contention = _tenant_contention(cluster, n_single)
    upsert = asyncio.run(_upsert_vs_insert(cluster, n_single))
    large = asyncio.run(_large_batch(cluster, LARGE_BATCH[scale]))
    half = _halfvec_vs_vector(cluster, LARGE_BATCH[scale])
    results = {
        "large_batch": large,
        "halfvec_vs_vector": half,
        "upsert_vs_insert": upsert,
        "audit_chain_cost": audit,
        "same_tenant_contention": contention,
        "single_vs_batch": single,
        "single_vs_batch_no_hnsw": path_only,
        "copy_vs_sealed": {"chunks": n_copy, "plaintext_copy_chunks_per_s": round(copy_rate),
                           "sealed_batch_chunks_per_s": round(sealed_rate),
                           "sealed_ratio_vs_copy": ratio(sealed_rate, copy_rate)},
    }
    table = markdown_table(
        ["ingest (384-d; HNSW index present unless noted)", "chunks", "chunks/s", "ratio"],
        [["index_memory_chunk x N (one transaction each)", n_single, f"{single['single_chunks_per_s']:,}", "1.0"],
         ["index_memory_chunks (one batch)", n_single, f"{single['batch_chunks_per_s']:,}",
          f"{single['batch_speedup_per_chunk']}x faster per chunk (goal >= 10x)"],
         ["index_memory_chunk x N, no HNSW index (write path only)", n_single,
          f"{path_only['single_chunks_per_s']:,}", "1.0"],
         ["index_memory_chunks, no HNSW index (write path only)", n_single, f"{path_only['batch_chunks_per_s']:,}",
          f"{path_only['batch_speedup_per_chunk']}x faster per chunk"],
         ["plaintext COPY BINARY (baseline)", n_copy, f"{round(copy_rate):,}", "1.0"],
         ["pymem sealed batch (seal x3 + audit + RLS)", n_copy, f"{round(sealed_rate):,}",
          f"{results['copy_vs_sealed']['sealed_ratio_vs_copy']}x of COPY (goal >= 0.8x)"],
         ["single writes, audit_append a no-op (baseline)", audit["chunks"], f"{audit['without_audit_chunks_per_s']:,}",
          "1.0"],
         ["single writes, hash-chained audit on", audit["chunks"], f"{audit['with_audit_chunks_per_s']:,}",
          f"{audit['audit_overhead_ratio']}x of no-audit"],
         [f"single writes, {WRITERS} writers, {WRITERS} different tenants (baseline)", contention["chunks"],
          f"{contention['different_tenants_chunks_per_s']:,}", "1.0"],
         [f"single writes, {WRITERS} writers, one tenant (one audit chain)", contention["chunks"],
          f"{contention['same_tenant_chunks_per_s']:,}", f"{contention['same_vs_different_ratio']}x of different"],
         ["insert with caller ids, one batch (baseline)", upsert["chunks"], f"{upsert['insert_chunks_per_s']:,}", "1.0"],
         ["upsert, new ids, one batch", upsert["chunks"], f"{upsert['upsert_new_chunks_per_s']:,}",
          f"{upsert['upsert_new_vs_insert']}x of insert"],
         ["upsert replacing every row, one batch", upsert["chunks"], f"{upsert['upsert_replace_chunks_per_s']:,}",
          f"{upsert['upsert_replace_vs_insert']}x of insert"]])
    n = large["chunks"]
    table += "\n\n" + markdown_table(
        [f"one import of {n:,} chunks (one tenant, fresh database)", "seconds", "chunks/s", "vs single calls"],
        [["index_memory_chunk x N, HNSW index present (baseline)", large["single_s"], f"{round(n / large['single_s']):,}",
          "1.0"],
         ["index_memory_chunks, one batch, HNSW index present", large["batch_s"], f"{round(n / large['batch_s']):,}",
          f"{large['batch_vs_single']}x (goal >= 5x)"],
         ["the same batch, no HNSW index", large["batch_without_index_s"], "", ""],
         ["then pymem.bulk_load.build_search_indexes", large["index_build_s"], "", ""],
         ["load, then build the index (total)", round(large["batch_without_index_s"] + large["index_build_s"], 2),
          f"{round(n / (large['batch_without_index_s'] + large['index_build_s'])):,}",
          f"{large['load_then_build_vs_single']}x"]])
    table += (f"\n\nHNSW insertion, paid per row by both paths while the index is present: "
              f"{large['hnsw_insertion_ms_per_chunk']} ms per chunk (batch with index - batch without). "
              f"Even with everything else free, a batch could be at most {large['largest_ratio_with_index']}x "
              f"single calls with the index present: that is the floor.")
    table += "\n\n" + markdown_table(
        [f"{half['chunks']:,} x {DIM}-d, plain table, cosine HNSW", "COPY into the index s", "index build s",
         "table MB", "index MB", "recall@10"],
        [[kind, half[kind]["insert_with_index_s"], half[kind]["index_build_s"], half[kind]["table_mb"],
          half[kind]["index_mb"], half[kind]["recall_at_10"]] for kind in ("vector", "halfvec")])
    table += (f"\n\nhalfvec vs vector: insertion {half['insert_ratio']}x as fast, bulk build "
              f"{half['build_ratio']}x as fast ({HALFVEC_QUERIES} queries for recall, exact search as truth).")
    return {"name": "ingest", "results": results, "markdown": table}
