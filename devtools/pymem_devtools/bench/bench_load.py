"""Under load: queries and writes per second at 1, 4 and 16 clients, against a plain pgvector
table holding the same rows (the baseline) and langchain-postgres' store (the peer).

One run, one server, the same data for all three: ``n`` chunks of 384-d vectors over Zipf-sized
tenants, with short texts and a ``topic`` in their metadata.

* **baseline**: ``public.bench_plain`` (id, tenant, embedding, text, metadata in plaintext), one
  HNSW graph with pgvector's iterative scan, the tenant checked on the rows it walks.
* **peer**: langchain-postgres' ``PGVectorStore`` over the same rows, its documented
  multi-tenant pattern (a ``tenant`` metadata column it filters on).
* **pymem**: ``query_memory`` as an app calls it (RLS, the durable read, the tenant proof,
  opening and checking every returned row), rerank off and on (the tiny cross-encoder on the
  CPU), filtered and hybrid; single and batch writes; a mixed workload.

Each cell runs N clients, each on a connection of an N-connection pool, for a fixed time;
it reports queries per second, p50/p95/p99, WAL bytes and WAL flushes per operation (the
server's WAL position and ``pg_stat_io``/``pg_stat_wal``, which the server updates lazily:
approximate) and audit bytes per operation (the audit log's size, indexes included).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psycopg
from pgvector.psycopg import register_vector_async
from psycopg_pool import AsyncConnectionPool

import pymem
from pymem import repository
from pymem.repository import ChunkInput
from pymem_devtools.bench.common import (
    app_dsn,
    bench_cluster,
    markdown_table,
    percentiles_ms,
    ratio,
    tiny_reranker,
)
from pymem_devtools.bench.dataset import make_dataset, queries_for
from pymem_devtools.keys import ephemeral_keys

K = 10
CLIENTS = (1, 4, 16)
TOPICS = 8
WRITE_BATCH = 50
# rows, tenants, seconds per cell
SCALES = {"tiny": (300, 4, 0.5), "quick": (4_000, 20, 4.0), "full": (20_000, 50, 15.0)}
_WORDS = ("harbor lantern orchard copper meadow violet quarry saddle thistle ember falcon garnet willow"
          " cobalt juniper marble prairie canyon glacier hollow").split()

BASELINE, PEER = "plain pgvector table", "langchain-postgres PGVectorStore"
_PLAIN_SEARCH = ("SELECT id, text, metadata FROM public.bench_plain WHERE tenant = %s"
                 " ORDER BY embedding <=> %s LIMIT %s")
_PLAIN_INSERT = ("INSERT INTO public.bench_plain (id, tenant, embedding, text, metadata)"
                 " VALUES (%s, %s, %s, %s, %s)")


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 30)))


class _Data:
    """The rows, their tenants' user ids, and query vectors per tenant."""

    def __init__(self, n_rows: int, n_tenants: int):
        self.dataset = make_dataset(n_rows, n_tenants)
        rng = random.Random(5)
        self.texts = [_text(rng) for _ in range(n_rows)]
        self.users = [f"load-user-{t}" for t in range(n_tenants)]
        self.queries = {t: queries_for(self.dataset, t, 8, seed=t) for t in range(n_tenants)}

    def chunk(self, i: int) -> ChunkInput:
        return ChunkInput(f"doc-{i // 10}", "bench", self.texts[i], self.dataset.vectors[i], {"topic": i % TOPICS})

    def near(self, rng: random.Random, vector: np.ndarray) -> np.ndarray:
        """A new row's vector: near ``vector``, never equal to another (HNSW graphs degrade on
        duplicates, pymem's and the baseline's alike)."""
        noisy = vector + np.random.default_rng(rng.getrandbits(64)).normal(0, 0.05, vector.shape).astype(np.float32)
        return noisy / np.linalg.norm(noisy)

    def pick(self, rng: random.Random) -> tuple[int, np.ndarray]:
        """A tenant, by its share of rows (the Zipf skew), and one of its query vectors."""
        tenant = int(self.dataset.tenant_of_row[rng.randrange(self.dataset.n)])
        return tenant, self.queries[tenant][rng.randrange(len(self.queries[tenant]))]


async def _load(app: str, admin: str, data: _Data) -> None:
    """The same rows through pymem's batch API and into the plain table."""
    conn = await pymem.aconnect(app)
    try:
        for tenant, user in enumerate(data.users):
            rows = np.flatnonzero(data.dataset.tenant_of_row == tenant)
            for start in range(0, len(rows), 500):
                await repository.index_memory_chunks(conn, user, [data.chunk(int(i)) for i in rows[start:start + 500]])
    finally:
        await conn.close()
    dim = data.dataset.vectors.shape[1]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE public.bench_plain (id uuid PRIMARY KEY, tenant text NOT NULL,"
                     f" embedding public.vector({dim}) NOT NULL, text text NOT NULL, metadata jsonb NOT NULL)")
        with conn.cursor() as cur, cur.copy("COPY public.bench_plain FROM STDIN") as copy:
            for i in range(data.dataset.n):
                copy.write_row((uuid.uuid4(), data.users[data.dataset.tenant_of_row[i]],
                                str(data.dataset.vectors[i].tolist()), data.texts[i], f'{{"topic": {i % TOPICS}}}'))
        conn.execute("CREATE INDEX ON public.bench_plain USING hnsw (embedding public.vector_cosine_ops)")
        conn.execute("CREATE INDEX ON public.bench_plain (tenant)")
        conn.execute("VACUUM ANALYZE public.bench_plain")
        conn.execute("GRANT SELECT, INSERT, DELETE ON public.bench_plain TO pymem_bench_app")


async def _plain_configure(conn: psycopg.AsyncConnection) -> None:
    await register_vector_async(conn)
    await conn.execute("SET hnsw.iterative_scan = strict_order")


def _pymem_ops(data: _Data, rerank_query: str) -> dict[str, Callable]:
    """pymem's workloads: each takes (pool, rng) and does one operation."""

    async def search(pool, rng, **options):
        tenant, vector = data.pick(rng)
        hits = await repository.query_memory(pool, data.users[tenant], rerank_query, vector, k=K, **options)
        assert hits, "every benchmark tenant has rows"

    async def write_one(pool, rng):
        tenant, vector = data.pick(rng)
        await repository.index_memory_chunks(pool, data.users[tenant], [
            ChunkInput("bench-writes", "bench", _text(rng), data.near(rng, vector), {"topic": 0})])

    async def write_batch(pool, rng):
        tenant, vector = data.pick(rng)
        await repository.index_memory_chunks(pool, data.users[tenant], [
            ChunkInput("bench-writes", "bench", _text(rng), data.near(rng, vector), {"topic": 0})
            for _ in range(WRITE_BATCH)])

    async def mixed(pool, rng):
        # 80% searches, 10% single writes, 5% gets of what a search returned, 5% deletes of a
        # chunk written here (the data stays about the size it was).
        roll, (tenant, vector) = rng.random(), data.pick(rng)
        user = data.users[tenant]
        if roll < 0.8:
            await repository.query_memory(pool, user, rerank_query, vector, k=K, rerank=False)
        elif roll < 0.9:
            await repository.index_memory_chunks(pool, user, [ChunkInput("bench-mixed", "bench", _text(rng),
                                                                         data.near(rng, vector), {"topic": 1})])
        elif roll < 0.95:
            [hit] = await repository.query_memory(pool, user, rerank_query, vector, k=1, rerank=False)
            assert await repository.get_chunk(pool, user, hit.id)
        else:
            await repository.delete_document(pool, user, "bench-mixed")

    return {
        "query_memory, rerank off": lambda pool, rng: search(pool, rng, rerank=False),
        "query_memory, rerank on": lambda pool, rng: search(pool, rng, rerank=True),
        "query_memory, filtered (1 of 8 topics)": lambda pool, rng: search(
            pool, rng, rerank=False, where={"topic": rng.randrange(TOPICS)}),
        "query_memory, hybrid": lambda pool, rng: search(pool, rng, rerank=False, hybrid=True),
        "index_memory_chunks, 1 chunk": write_one,
        f"index_memory_chunks, {WRITE_BATCH} chunks": write_batch,
        "mixed (80% search, 10% write, 5% get, 5% delete)": mixed,
    }


def _plain_ops(data: _Data) -> dict[str, Callable]:
    async def search(pool, rng):
        tenant, vector = data.pick(rng)
        async with pool.connection() as conn:
            rows = await (await conn.execute(_PLAIN_SEARCH, (data.users[tenant], vector, K))).fetchall()
        assert rows

    async def write_one(pool, rng):
        tenant, vector = data.pick(rng)
        async with pool.connection() as conn:
            await conn.execute(_PLAIN_INSERT, (uuid.uuid4(), data.users[tenant], data.near(rng, vector), _text(rng),
                                               '{"topic": 0}'))

    async def write_batch(pool, rng):
        tenant, vector = data.pick(rng)
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(_PLAIN_INSERT, [(uuid.uuid4(), data.users[tenant], data.near(rng, vector),
                                                   _text(rng), '{"topic": 0}') for _ in range(WRITE_BATCH)])

    return {"search": search, "write_one": write_one, "write_batch": write_batch}


async def _cell(pool, op: Callable, clients: int, seconds: float, admin: psycopg.AsyncConnection) -> dict:
    """``clients`` workers calling ``op`` for ``seconds`` (after a fifth of that unmeasured, to
    warm the caches): throughput, latency, WAL and audit per op, and the CPU time per op of
    this client process and of the server's processes (where the server runs here)."""
    latencies: list[float] = []

    async def run_for(span: float, record: bool) -> None:
        deadline = time.perf_counter() + span

        async def worker(seed: int) -> None:
            rng = random.Random(seed)
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                await op(pool, rng)
                if record:
                    latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(worker(seed) for seed in range(clients)))

    await run_for(seconds / 5, record=False)
    before, client_cpu, server_cpu = await _server_counters(admin), time.process_time(), _server_cpu_s()
    start = time.perf_counter()
    await run_for(seconds, record=True)
    elapsed = time.perf_counter() - start
    client_cpu, server_cpu = time.process_time() - client_cpu, _server_cpu_s() - server_cpu
    after = await _server_counters(admin)
    ops = len(latencies)
    return {"clients": clients, "ops": ops, "qps": round(ops / elapsed, 1), **percentiles_ms(latencies),
            **{f"{name}_per_op": round((after[name] - before[name]) / ops, 2) for name in after},
            "client_cpu_ms_per_op": round(1000 * client_cpu / ops, 3),
            "server_cpu_ms_per_op": round(1000 * server_cpu / ops, 3) if server_cpu >= 0 else None}


def _server_cpu_s() -> float:
    """User + system CPU seconds of every ``postgres`` process on this machine (the embedded
    server's backends and helpers); -1 where /proc shows none (a server elsewhere)."""
    ticks, total, found = os.sysconf("SC_CLK_TCK"), 0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended meanwhile
            continue
        name, fields = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        if name == "postgres":
            found, total = True, total + int(fields[11]) + int(fields[12])
    return total / ticks if found else -1.0


async def _server_counters(admin: psycopg.AsyncConnection) -> dict[str, float]:
    await admin.execute("SELECT pg_catalog.pg_stat_clear_snapshot()")
    lsn, audit = await (await admin.execute(
        "SELECT pg_catalog.pg_current_wal_lsn() - '0/0'::pg_lsn,"
        " pg_catalog.pg_total_relation_size('pymem.audit_log')")).fetchone()
    if admin.info.server_version >= 180000:  # WAL I/O moved to pg_stat_io in 18
        flushes_sql = "SELECT COALESCE(sum(fsyncs), 0) FROM pg_catalog.pg_stat_io WHERE object = 'wal'"
    else:
        flushes_sql = "SELECT wal_sync FROM pg_catalog.pg_stat_wal"
    (flushes,) = await (await admin.execute(flushes_sql)).fetchone()
    return {"wal_bytes": float(lsn), "wal_flushes": float(flushes), "audit_bytes": float(audit)}


def _peer_search(peer_store, data: _Data) -> Callable:
    async def search(_pool, rng):
        tenant, vector = data.pick(rng)
        # Not checked for rows: its one graph, filtered after the walk, can return fewer than k
        # for a small tenant (its recall is the langchain benchmark's).
        await peer_store.asimilarity_search_by_vector(vector.tolist(), k=K, filter={"tenant": data.users[tenant]})

    return search


FLOOR_SAMPLES = {"tiny": 20, "quick": 200, "full": 400}


async def _floor(app: str, data: _Data, samples: int) -> list[tuple[str, float]]:
    """Where one client's read goes: the same pipeline built up a part at a time (p50 ms of
    ``samples`` each), from two empty transactions to ``query_memory`` whole."""
    from pymem import pins, reads, tenant
    from pymem.repository import _SEARCH_SQL
    from pymem.security import hmac_user

    conn = await pymem.aconnect(app)
    plain = await psycopg.AsyncConnection.connect(app, autocommit=True)
    await _plain_configure(plain)
    rng = random.Random(9)

    async def pipeline(statements) -> None:
        async with pins.autocommit(conn):
            await pins.send_pinned(conn, lambda: statements, [False] * len(statements))

    def parts(tenant_index: int, vector) -> dict[str, list]:
        user_hash = hmac_user(data.users[tenant_index])
        bare = pins.begin_statements(conn, "ISOLATION LEVEL READ COMMITTED, READ WRITE")
        entered = tenant.tenant_begin_statements(conn, user_hash)
        params = (vector, 24, [], [], [], None)
        intent = (reads._INTENT_SQL["search_v3"], (user_hash, uuid.uuid4(), "search", *params))
        commit = ("COMMIT", None)
        as_sent = lambda statements: [(q, p, False) for q, p in statements]  # noqa: E731
        return {
            "2 empty transactions (BEGIN, COMMIT)": as_sent([("BEGIN", None), commit] * 2),
            "+ pymem's pins in each": as_sent([*bare, commit] * 2),
            "+ the tenant proof checked in each": as_sent([*entered, commit] * 2),
            "+ the intent appended to the chain, flushed": as_sent([*entered, intent, commit, *entered, commit]),
        }

    async def timed(call) -> float:
        latencies = []
        for _ in range(samples):
            tenant_index, vector = data.pick(rng)
            start = time.perf_counter()
            await call(tenant_index, vector)
            latencies.append(time.perf_counter() - start)
        return percentiles_ms(latencies)["p50"]

    async def durable(tenant_index, vector):
        params = (vector, 24, [], [], [], None)
        await reads.durable_read_with_keys(conn, hmac_user(data.users[tenant_index]), "search_v3", params,
                                           _SEARCH_SQL, params)

    try:
        stages = [(f"{BASELINE}: search", await timed(
            lambda t, v: _fetch(plain, _PLAIN_SEARCH, (data.users[t], v, K))))]
        for name in parts(0, data.queries[0][0]):
            stages.append((name, await timed(lambda t, v, name=name: pipeline(parts(t, v)[name]))))
        stages.append(("+ the search, its result row and live keys (the durable read)", await timed(durable)))
        stages.append(("+ opening and checking 24 candidates: query_memory, rerank off", await timed(
            lambda t, v: repository.query_memory(conn, data.users[t], "q", v, k=K, rerank=False))))
        return stages
    finally:
        await conn.close()
        await plain.close()


async def _fetch(conn, query, params) -> list:
    return await (await conn.execute(query, params)).fetchall()


async def _run(app: str, admin: str, data: _Data, seconds: float, peer_store) -> dict:
    pymem_ops, plain_ops = _pymem_ops(data, "harbor lantern orchard"), _plain_ops(data)
    results: dict[str, list[dict]] = {}
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as watcher:
        for clients in CLIENTS:
            plain = AsyncConnectionPool(app, min_size=clients, max_size=clients, open=False,
                                        kwargs={"autocommit": True}, configure=_plain_configure)
            ours = AsyncConnectionPool(app, min_size=clients, max_size=clients, open=False,
                                       configure=pymem.configure, check=pymem.check, reset=pymem.reset)
            async with plain, ours:
                await plain.wait()
                await ours.wait()
                cells = [(f"{BASELINE}: search", plain, plain_ops["search"])]
                if peer_store is not None:
                    cells.append((f"{PEER}: search", None, _peer_search(peer_store, data)))
                cells += [(f"pymem {name}", ours, op) for name, op in pymem_ops.items()]
                cells += [(f"{BASELINE}: insert 1 row", plain, plain_ops["write_one"]),
                          (f"{BASELINE}: insert {WRITE_BATCH} rows", plain, plain_ops["write_batch"])]
                for name, pool, op in cells:
                    await op(pool, random.Random(0))  # warm: connections, caches, the reranker's session
                    results.setdefault(name, []).append(await _cell(pool, op, clients, seconds, watcher))
                    print(f"  {name}, {clients} clients: {results[name][-1]['qps']} ops/s", flush=True)
    return results


@contextlib.contextmanager
def _peer(admin: str, data: _Data):
    """langchain-postgres' store over the same rows (table ``public.lc_bench``), its HNSW
    index built after the load, its engine's pool as large as the most clients."""
    from pymem_devtools.bench.bench_langchain import LookupEmbeddings, _peer_store

    texts = [f"{i}: {text}" for i, text in enumerate(data.texts)]
    engine, store, build_index = _peer_store(admin, LookupEmbeddings(texts, data.dataset.vectors),
                                             data.dataset.vectors.shape[1], pool_size=max(CLIENTS))
    try:
        for start in range(0, data.dataset.n, 500):
            part = range(start, min(start + 500, data.dataset.n))
            store.add_texts([texts[i] for i in part],
                            [{"tenant": data.users[data.dataset.tenant_of_row[i]]} for i in part])
        build_index()
        yield store
    finally:
        asyncio.run_coroutine_threadsafe(engine.close(), engine._loop).result()


def run(scale: str) -> dict:
    ephemeral_keys()
    n_rows, n_tenants, seconds = SCALES[scale]
    cluster = bench_cluster(scale)
    data = _Data(n_rows, n_tenants)
    admin = cluster.fresh_database("pymem_bench_load", embedding_dim=data.dataset.vectors.shape[1])
    app = app_dsn(cluster, "pymem_bench_load")
    asyncio.run(_load(app, admin, data))
    floor = asyncio.run(_floor(app, data, FLOOR_SAMPLES[scale]))
    with tiny_reranker(), _peer(admin, data) as peer_store:
        results = asyncio.run(_run(app, admin, data, seconds, peer_store))
    return _report(results, floor, n_rows, n_tenants, seconds)


def _report(results: dict[str, list[dict]], floor: list[tuple[str, float]], n_rows: int, n_tenants: int,
            seconds: float) -> dict:
    baseline = {cell["clients"]: cell for cell in results[f"{BASELINE}: search"]}
    rows = []
    for name, cells in results.items():
        for cell in cells:
            base = baseline[cell["clients"]]
            rows.append([name, cell["clients"], cell["qps"], ratio(cell["qps"], base["qps"]), cell["p50"],
                         cell["p95"], cell["p99"], round(cell["wal_bytes_per_op"]), cell["wal_flushes_per_op"],
                         round(cell["audit_bytes_per_op"]), cell["client_cpu_ms_per_op"],
                         "" if cell["server_cpu_ms_per_op"] is None else cell["server_cpu_ms_per_op"]])
    read = {c["clients"]: c for c in results["pymem query_memory, rerank off"]}
    goals = {"qps_ratio_16_clients": ratio(read[16]["qps"], baseline[16]["qps"]),
             "p50_ratio_1_client": ratio(read[1]["p50"], baseline[1]["p50"])}
    table = markdown_table(["workload", "clients", "ops/s", f"x {BASELINE} search", "p50 ms", "p95 ms", "p99 ms",
                            "WAL B/op", "WAL flushes/op", "audit B/op", "client CPU ms/op",
                            "server CPU ms/op"], rows)
    table += (f"\n\n{n_rows:,} chunks, {n_tenants} Zipf-sized tenants, 384-d, k = {K}, {seconds:g} s per cell,"
              f" each client on its own pooled connection. Goals (`query_memory`, rerank off):"
              f" >= 0.6x the plain table's ops/s at 16 clients (here {goals['qps_ratio_16_clients']}x),"
              f" p50 <= 2x at 1 client (here {goals['p50_ratio_1_client']}x). Client and server share this"
              f" machine's {os.cpu_count()} cores: at 16 clients, ops/s is about their number over the CPU"
              f" time per op, client and server together.")
    steps = [[name, p50, "" if n < 2 else round(p50 - floor[n - 1][1], 3)] for n, (name, p50) in enumerate(floor)]
    table += ("\n\nThe read path at one client, built up a part at a time (each row adds to the one above it,"
              " except the first, the baseline):\n\n"
              + markdown_table(["what runs", "p50 ms", "added ms"], steps))
    return {"name": "load", "results": {"rows": n_rows, "tenants": n_tenants, "seconds_per_cell": seconds,
                                        "cells": results, "goals": goals, "floor_p50_ms": dict(floor)},
            "markdown": table}

