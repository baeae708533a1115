"""A soak: a mixed workload for minutes at a steady data size, then a growth run.

**Steady size.** 16 tenants, each holding ``rows`` chunks; 8 clients on an 8-connection pool
(``pymem.check``/``pymem.reset``) run searches, filtered searches, gets, lists, upserts of
existing chunks and partial updates, and writes that each delete the tenant's oldest chunk
of this run: deletes balance inserts, so a drift in latency measures churn (dead tuples,
graph maintenance), not growth. Latency is bucketed by minute (by ``bucket_s`` at the
quick scale); the goal is the last bucket's p50 and p95 within 1.2x of the first's.

At the end: no operation failed, every chunk the clients believe is stored is there and
opens (none lost, none extra), the audit log verifies (``verify_audit_log``), and the
table's dead tuples and autovacuum runs are reported.

**Growth.** Then the tenants only grow, by doubling, and search latency is reported
against rows per tenant.
"""

from __future__ import annotations

import asyncio
import collections
import time

import numpy as np
import psycopg
from psycopg_pool import AsyncConnectionPool

import pymem
from pymem import repository
from pymem.audit import verify_audit_log
from pymem.partial_update import ChunkUpdate, update_memory_chunks
from pymem.repository import ChunkInput
from pymem_devtools.bench.common import app_dsn, bench_cluster, markdown_table, percentiles_ms, ratio
from pymem_devtools.keys import ephemeral_keys

TENANTS, CLIENTS, DIM, K = 16, 8, 384, 10
# rows per tenant, seconds of steady load, seconds per latency bucket, growth doublings
SCALES = {"tiny": (40, 6.0, 2.0, 1), "quick": (300, 180.0, 30.0, 2), "full": (3_000, 600.0, 60.0, 1)}
_WORDS = "ledger harbor copper meadow ember falcon willow cobalt juniper prairie".split()


def _vector(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


class _Tenant:
    """What a client believes one tenant holds: its chunks' ids, oldest first, and texts."""

    def __init__(self, index: int):
        self.user = f"soak-user-{index}"
        self.texts: dict[str, str] = {}
        self.order: collections.deque[str] = collections.deque()
        self.lock = asyncio.Lock()  # one writer per tenant at a time keeps the belief exact
        self.serial = 0

    def chunk(self, rng: np.random.Generator) -> ChunkInput:
        self.serial += 1
        chunk_id = f"c{self.serial}"
        text = " ".join(_WORDS[int(i)] for i in rng.integers(0, len(_WORDS), 12)) + f" {chunk_id}"
        return ChunkInput("soak", "bench", text, _vector(rng), {"topic": self.serial % 4}, id=chunk_id)

    def stored(self, chunks: list[ChunkInput]) -> None:
        for c in chunks:
            self.texts[c.id] = c.text
            self.order.append(c.id)


async def _fill(pool, tenants: list[_Tenant], rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for tenant in tenants:
        for start in range(0, rows, 500):
            chunks = [tenant.chunk(rng) for _ in range(min(500, rows - start))]
            await repository.index_memory_chunks(pool, tenant.user, chunks)
            tenant.stored(chunks)


async def _operation(pool, tenant: _Tenant, rng: np.random.Generator) -> str:
    """One operation of the mix; returns its kind."""
    roll = rng.random()
    if roll < 0.45:
        await repository.query_memory(pool, tenant.user, "ledger", _vector(rng), k=K, rerank=False)
        return "search"
    if roll < 0.55:
        await repository.query_memory(pool, tenant.user, "ledger", _vector(rng), k=K, rerank=False,
                                      where={"topic": int(rng.integers(0, 4))})
        return "filtered search"
    async with tenant.lock:
        if roll < 0.65:
            chunk_id = tenant.order[int(rng.integers(0, len(tenant.order)))]
            [hit] = await repository.get_memory_chunks(pool, tenant.user, [chunk_id])
            assert hit.text == tenant.texts[chunk_id], "a chunk read back differs from what was written"
            return "get"
        if roll < 0.70:
            await repository.list_memory_chunks(pool, tenant.user, limit=50)
            return "list"
        if roll < 0.78:
            chunk_id = tenant.order[int(rng.integers(0, len(tenant.order)))]
            text = tenant.texts[chunk_id] + " (edited)"
            await update_memory_chunks(pool, tenant.user, [ChunkUpdate(chunk_id, text=text[-400:])])
            tenant.texts[chunk_id] = text[-400:]
            return "update"
        if roll < 0.85:
            chunk_id = tenant.order[int(rng.integers(0, len(tenant.order)))]
            text = " ".join(_WORDS[int(i)] for i in rng.integers(0, len(_WORDS), 12)) + f" {chunk_id}"
            await repository.upsert_memory_chunks(pool, tenant.user, [
                ChunkInput("soak", "bench", text, _vector(rng), {"topic": 0}, id=chunk_id)])
            tenant.texts[chunk_id] = text
            return "upsert"
        chunk = tenant.chunk(rng)  # a write, and the oldest chunk deleted: the size stays
        await repository.index_memory_chunks(pool, tenant.user, [chunk])
        tenant.stored([chunk])
        oldest = tenant.order.popleft()
        assert await repository.delete_memory_chunks(pool, tenant.user, [oldest]) == 1
        del tenant.texts[oldest]
        return "write + delete"


async def _steady(pool, tenants: list[_Tenant], seconds: float, bucket_s: float) -> dict:
    buckets: dict[int, dict[str, list[float]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    errors: list[str] = []
    start = time.perf_counter()

    async def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while (now := time.perf_counter()) - start < seconds:
            tenant = tenants[int(rng.integers(0, len(tenants)))]
            began = time.perf_counter()
            try:
                kind = await _operation(pool, tenant, rng)
            except Exception as error:  # counted and named: the soak's goal is zero
                errors.append(type(error).__name__)
                continue
            buckets[int((now - start) // bucket_s)][kind].append(time.perf_counter() - began)

    await asyncio.gather(*(client(1000 + n) for n in range(CLIENTS)))
    return {"buckets": buckets, "errors": errors, "seconds": time.perf_counter() - start}


async def _lost(pool, tenants: list[_Tenant]) -> dict:
    """Every chunk the clients believe stored is there, opens and reads as written; nothing else is."""
    missing = differing = extra = 0
    for tenant in tenants:
        ids = list(tenant.texts)
        found = {}
        for start in range(0, len(ids), 500):
            for hit in await repository.get_memory_chunks(pool, tenant.user, ids[start:start + 500]):
                found[hit.external_id] = hit.text
        missing += len(set(ids) - set(found))
        differing += sum(found[i] != tenant.texts[i] for i in found)
        page, listed = None, 0
        while True:
            result = await repository.list_memory_chunks(pool, tenant.user, after=page, limit=1000)
            listed += len(result.hits)
            if result.next_cursor is None:
                break
            page = result.next_cursor
        extra += max(0, listed - len(ids))
    return {"missing": missing, "differing": differing, "extra": extra}


async def _growth(pool, tenants: list[_Tenant], doublings: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    sizes = []
    for step in range(doublings + 1):
        if step:
            for tenant in tenants:
                grow = len(tenant.order)
                for start in range(0, grow, 500):
                    chunks = [tenant.chunk(rng) for _ in range(min(500, grow - start))]
                    await repository.index_memory_chunks(pool, tenant.user, chunks)
                    tenant.stored(chunks)
        samples = []
        for n in range(200):
            tenant = tenants[n % len(tenants)]
            began = time.perf_counter()
            await repository.query_memory(pool, tenant.user, "ledger", _vector(rng), k=K, rerank=False)
            samples.append(time.perf_counter() - began)
        sizes.append({"rows_per_tenant": len(tenants[0].order), **percentiles_ms(samples)})
    return sizes


def _table_state(admin: str) -> dict:
    with psycopg.connect(admin, autocommit=True) as conn:
        tables = {name: {"live": live, "dead": dead, "autovacuums": autovacuums, "mb": round(size / 2**20, 1)}
                  for name, live, dead, autovacuums, size in conn.execute(
                      "SELECT relname::text, n_live_tup, n_dead_tup, autovacuum_count,"
                      " pg_catalog.pg_total_relation_size(relid) FROM pg_catalog.pg_stat_user_tables"
                      " WHERE schemaname = 'pymem' ORDER BY relname").fetchall()}
        problems = verify_audit_log(conn)
    chunks = tables["memory_chunks"]
    return {"live_rows": chunks["live"], "dead_rows": chunks["dead"], "autovacuums": chunks["autovacuums"],
            "audit_problems": len(problems), "tables": tables}


async def _run(app: str, admin: str, rows: int, seconds: float, bucket_s: float, doublings: int) -> dict:
    tenants = [_Tenant(i) for i in range(TENANTS)]
    async with AsyncConnectionPool(app, min_size=CLIENTS, max_size=CLIENTS, open=False, configure=pymem.configure,
                                   check=pymem.check, reset=pymem.reset) as pool:
        await _fill(pool, tenants, rows, seed=1)
        steady = await _steady(pool, tenants, seconds, bucket_s)
        lost = await _lost(pool, tenants)
        state = await asyncio.to_thread(_table_state, admin)
        growth = await _growth(pool, tenants, doublings, seed=2)
    return {"steady": steady, "lost": lost, "state": state, "growth": growth}


def run(scale: str) -> dict:
    ephemeral_keys()
    rows, seconds, bucket_s, doublings = SCALES[scale]
    cluster = bench_cluster(scale)
    admin = cluster.fresh_database("pymem_bench_soak", embedding_dim=DIM)
    outcome = asyncio.run(_run(app_dsn(cluster, "pymem_bench_soak"), admin, rows, seconds, bucket_s, doublings))
    return _report(outcome, rows, seconds, bucket_s)


def _report(outcome: dict, rows: int, seconds: float, bucket_s: float) -> dict:
    buckets = outcome["steady"]["buckets"]
    # The last bucket may be cut short by the deadline: the last whole one is compared.
    whole = sorted(b for b in buckets if (b + 1) * bucket_s <= seconds) or sorted(buckets)
    first, last = whole[0], whole[-1]

    def latency(bucket: int, kinds: tuple[str, ...] | None = None) -> dict:
        samples = [s for kind, values in buckets[bucket].items() if kinds is None or kind in kinds for s in values]
        return {"ops": len(samples), **percentiles_ms(samples)}

    searches = ("search", "filtered search")
    timeline = [{"bucket": b, "all": latency(b), "searches": latency(b, searches)} for b in whole]
    drift = {scope: {p: ratio(timeline[-1][scope][p], timeline[0][scope][p]) for p in ("p50", "p95")}
             for scope in ("all", "searches")}
    errors = collections.Counter(outcome["steady"]["errors"])
    results = {"tenants": TENANTS, "clients": CLIENTS, "rows_per_tenant": rows, "seconds": seconds,
               "bucket_s": bucket_s, "operations": sum(t["all"]["ops"] for t in timeline), "errors": dict(errors),
               "lost": outcome["lost"], "table": outcome["state"], "timeline": timeline, "drift_last_over_first": drift,
               "growth": outcome["growth"], "first_bucket": first, "last_bucket": last}
    table = markdown_table(
        [f"bucket ({bucket_s:g} s)", "ops", "all p50 ms", "all p95 ms", "search p50 ms", "search p95 ms"],
        [[t["bucket"], t["all"]["ops"], t["all"]["p50"], t["all"]["p95"], t["searches"]["p50"], t["searches"]["p95"]]
         for t in timeline])
    table += "\n\n" + markdown_table(["rows per tenant", "search p50 ms", "search p95 ms"],
                                     [[g["rows_per_tenant"], g["p50"], g["p95"]] for g in outcome["growth"]])
    state, lost = outcome["state"], outcome["lost"]
    table += (f"\n\n{TENANTS} tenants x {rows:,} chunks at a steady size, {CLIENTS} clients, {seconds:g} s: "
              f"{results['operations']:,} operations, {sum(errors.values())} errors, "
              f"{lost['missing']} lost, {lost['differing']} changed, {lost['extra']} extra; audit problems:"
              f" {state['audit_problems']}; dead rows at the end {state['dead_rows']:,} beside"
              f" {state['live_rows']:,} live, {state['autovacuums']} autovacuums. Last bucket / first:"
              f" all p50 {drift['all']['p50']}x, p95 {drift['all']['p95']}x; searches p50"
              f" {drift['searches']['p50']}x, p95 {drift['searches']['p95']}x (goal: within 1.2x).")
    return {"name": "soak", "results": results, "markdown": table}
