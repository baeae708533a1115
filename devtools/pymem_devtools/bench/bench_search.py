"""Search under RLS: recall@10 and latency per tenant size class.

Three ways to answer the same queries, in the same run, on the same data:
  * pymem: ``pymem.search_chunks`` as the app role (the real path, audit row included);
  * plain HNSW + filter: the shared index with pgvector's defaults, RLS filtering after;
  * exact: the tenant's rows through the btree, fully sorted.
Recall is against the exact answer for the same tenant, computed in numpy. Each
class (band) gets a fixed number of timed queries, spread over its sampled tenants,
after a few unmeasured searches per tenant (:data:`SCALES`, :data:`WARM_UP_SEARCHES`).

The adversarial neighbour (A7, :mod:`pymem_devtools.bench.crowding`) is measured
in the same run, on the same database: for the largest tenant of each band that can
take the bucket graph, another tenant in its bucket holds tens of thousands of rows
around one of its topics, and the victim asks near that topic's centre, unfiltered
and with a filter matching half its rows, against the exact answer.

``--scale xl`` is a shared memory store: a million rows, 2,000 Zipf tenants that
all write about one pool of topics (:func:`make_shared_dataset`), reported per
band of tenant size, including the bands either side of the exact-search
threshold (3,000 rows). It leaves out "plain HNSW + filter": that needs one
graph over all rows, a 36-minute build at this size on 2 cores.
"""

from __future__ import annotations

import time

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from tqdm import tqdm

from pymem import sync
from pymem.connections import SyncConnectionAsAsync
from pymem.reads import commit_read_intent, durable_read
from pymem.security import keyring
from pymem.tenant import enter_tenant_call
from pymem_devtools.bench.common import (
    PEER_INDEX_SQL,
    build_solo_graphs,
    drop_solo_graphs,
    app_dsn,
    bench_cluster,
    markdown_table,
    percentiles_ms,
)
from pymem_devtools.bench.bench_filtered import pymem_search as pymem_filtered_search
from pymem_devtools.bench.crowding import (
    BEFORE,
    CROWD_ROWS,
    centre_queries,
    crowd,
    neighbourhood,
    released_search,
    victims,
)
from pymem_devtools.keys import ephemeral_keys
from pymem_devtools.bench.dataset import (
    exact_top_k,
    load,
    make_dataset,
    make_shared_dataset,
    queries_for,
    tag_rows,
)

K = 10
# rows, tenants, tenants sampled per class, queries per class (spread evenly over the
# class's sampled tenants: at 100k rows the large class has 2 tenants, and a p95 of
# their 20 queries, 10 each, was the second slowest of 20)
SCALES = {"tiny": (3_000, 30, 2, 4), "quick": (20_000, 100, 6, 30), "full": (100_000, 200, 10, 100),
          "xl": (1_000_000, 2_000, 8, 80)}
# Unmeasured searches per sampled tenant before timing, with queries of their own:
# the timed searches meet a server whose pages they use are in memory, as on a
# server sized as "For DBAs" asks, not their first touches after the bulk load.
WARM_UP_SEARCHES = 5
XL_BANDS = {"under 1k": (0, 1_000), "1k-3k": (1_000, 3_000), "3k-10k": (3_000, 10_000),
            "10k-40k": (10_000, 40_000), "40k+": (40_000, 10**9)}

_PYMEM_SQL = ("SELECT id FROM pymem.search_chunks(%s::pg_catalog.bpchar, %s::pg_catalog.uuid, %b::public.vector,"
              " %s::pg_catalog.int4)")
# The durable read audit (0005) commits an intent before each search. "pymem
# search_chunks" times both transactions, as an app pays them (pymem's
# durable_read: one pipeline); "read only" times the search transaction alone
# (intent committed untimed): the ratio is its cost.
DURABLE, READ_ONLY = "pymem search_chunks", "pymem search_chunks, read only"
METHODS = {
    DURABLE: ("app", [], _PYMEM_SQL),
    READ_ONLY: ("app", [], _PYMEM_SQL),
    "plain HNSW + filter": ("owner", ["SET LOCAL enable_sort = off", "SET LOCAL enable_seqscan = off"],
                            "SELECT id FROM pymem.memory_chunks ORDER BY embedding <=> %b::public.vector LIMIT %s"),
    "exact (btree + sort)": ("owner", [],
                             "SELECT id FROM pymem.memory_chunks ORDER BY (embedding <=> %b::public.vector) + 0 LIMIT %s"),
}


def _measure(conn, method: str, role_sql: list[str], query_sql: str, user_hash: str,
             query: np.ndarray) -> tuple[list, float]:
    if method == DURABLE:
        start = time.perf_counter()
        rows = sync.run(durable_read(SyncConnectionAsAsync(conn), user_hash, "search", (query, K), query_sql,
                                     (query, K)))
        return [r[0] for r in rows], time.perf_counter() - start
    ticket = None
    if method == READ_ONLY:
        ticket = sync.run(commit_read_intent(SyncConnectionAsAsync(conn), user_hash, "search", (query, K)))
    start = time.perf_counter()
    with conn.transaction():
        for statement in role_sql:
            conn.execute(statement)
        conn.execute(*enter_tenant_call(user_hash))
        params = (query, K) if ticket is None else (user_hash, ticket, query, K)
        rows = conn.execute(query_sql, params).fetchall()
    elapsed = time.perf_counter() - start
    return [r[0] for r in rows], elapsed


def pymem_search(conn, user_hash: str, query: np.ndarray) -> tuple[list, float]:
    """pymem's search as the app: the ids and the seconds of the search transaction
    (its read intent committed before, untimed)."""
    return _measure(conn, READ_ONLY, [], _PYMEM_SQL, user_hash, query)


def _passes(methods: dict) -> list[tuple[str, ...]]:
    """The methods in measuring order; the durable and the read-only search share a
    pass, query by query, so that their ratio compares like with like (measured in
    separate passes, the first one warmed the cache for the second)."""
    paired = (DURABLE, READ_ONLY)
    return [paired] + [(method,) for method in methods if method not in paired]


def run(scale: str) -> dict:
    ephemeral_keys()
    n_rows, n_tenants, per_class, per_group = SCALES[scale]
    cluster = bench_cluster(scale)
    dataset = make_shared_dataset(n_rows, n_tenants) if scale == "xl" else make_dataset(n_rows, n_tenants)
    admin = cluster.fresh_database("pymem_bench_search", embedding_dim=dataset.vectors.shape[1])
    start = time.perf_counter()
    ids, build_s, build_mwm = load(admin, dataset, progress=scale != "tiny")
    load_s = time.perf_counter() - start - build_s
    solo = build_solo_graphs(admin, progress=scale != "tiny")
    row_of = {chunk_id: i for i, chunk_id in enumerate(ids)}
    if scale == "xl":
        # A seeded sample per band: the first tenants of a band are its largest.
        rng = np.random.default_rng(17)
        groups = {band: sorted(rng.choice(tenants, size=min(per_class, len(tenants)), replace=False).tolist())
                  for band, tenants in dataset.tenants_by_band(XL_BANDS).items()}
        methods = {name: m for name, m in METHODS.items() if name != "plain HNSW + filter"}
    else:
        groups = {size_class: tenants[:per_class] for size_class, tenants in dataset.tenants_by_class().items()}
        methods = METHODS

    owner = psycopg.connect(admin, autocommit=True)
    app = psycopg.connect(app_dsn(cluster, "pymem_bench_search"), autocommit=True)
    for conn in (owner, app):
        register_vector(conn)
    results: dict = {"rows": n_rows, "tenants": n_tenants, "k": K, "shared_topics": scale == "xl",
                     "load_s": round(load_s, 1), "hnsw_build_s": round(build_s, 1),
                     "build_maintenance_work_mem": build_mwm, "solo_graphs": solo, "classes": {}}
    groups = {name: tenants for name, tenants in groups.items() if tenants}
    work = {name: [(t, q) for t in tenants for q in queries_for(dataset, t, -(-per_group // len(tenants)),
                                                                 seed=1000 + t)][:per_group]
            for name, tenants in groups.items()}
    warm_up = {t: queries_for(dataset, t, WARM_UP_SEARCHES, seed=5000 + t)
               for tenants in groups.values() for t in tenants}
    stats: dict = {name: {} for name in groups}
    try:
        for together in _passes(methods):
            who, settings, query_sql = methods[together[0]]
            conn = app if who == "app" else owner
            role = [] if who == "app" else ["SET LOCAL ROLE pymem_owner"]
            if "plain HNSW + filter" in together:
                # pgvector's usual setup: one graph over every tenant's rows, built
                # after pymem's paths are measured so that they never see it.
                owner.execute(f"SET maintenance_work_mem = '1GB'; {PEER_INDEX_SQL}")
            for group, tenants in groups.items():
                recalls = {method: [] for method in together}
                latencies = {method: [] for method in together}
                for tenant in tenants:
                    for query in warm_up[tenant]:
                        for method in together:
                            _measure(conn, method, role + settings, query_sql, dataset.tenant_hashes[tenant],
                                     query)
                for number, (tenant, query) in enumerate(tqdm(work[group], desc=f"{group}: {' / '.join(together)}",
                                                              disable=scale == "tiny", leave=False)):
                    truth = set(exact_top_k(dataset, tenant, query, K))
                    # Methods measured together take turns going first: neither
                    # always meets the pages the other has just read.
                    for method in together[::-1] if number % 2 else together:
                        got, elapsed = _measure(conn, method, role + settings, query_sql,
                                                dataset.tenant_hashes[tenant], query)
                        recalls[method].append(len(truth & {row_of[g] for g in got}) / len(truth))
                        latencies[method].append(elapsed)
                for method in together:
                    stats[group][method] = {"recall_at_10": round(float(np.mean(recalls[method])), 4),
                                            "recall_min": round(float(np.min(recalls[method])), 2),
                                            "latency_ms": percentiles_ms(latencies[method])}
            if "plain HNSW + filter" in together:
                owner.execute("DROP INDEX pymem.bench_plain_hnsw")
    finally:
        owner.close()
        app.close()
    results["crowded"] = _crowded_run(cluster, dataset, per_group, scale)
    for group, tenants in groups.items():
        stats[group][DURABLE]["durable_audit_cost_p50"] = round(
            stats[group][DURABLE]["latency_ms"]["p50"] / stats[group][READ_ONLY]["latency_ms"]["p50"], 2)
        sizes = [dataset.tenant_size(t) for t in tenants]
        results["classes"][group] = {"tenants_sampled": len(tenants), "queries": len(work[group]),
                                     "tenant_rows": [min(sizes), max(sizes)], "methods": stats[group]}

    rows = []
    for size_class, info in results["classes"].items():
        for method, s in info["methods"].items():
            rows.append([size_class, f"{info['tenant_rows'][0]}-{info['tenant_rows'][1]}", method,
                         f"{s['recall_at_10']:.3f}", f"{s['recall_min']:.2f}", s["latency_ms"]["p50"],
                         s["latency_ms"]["p95"]])
    table = markdown_table(["tenants" if scale == "xl" else "class", "tenant rows", "method", "recall@10",
                            "worst query", "p50 ms", "p95 ms"], rows)
    costs = ", ".join(f"{c} {info['methods'][DURABLE]['durable_audit_cost_p50']}x"
                      for c, info in results["classes"].items())
    data = ("one shared pool of 256 topics" if scale == "xl" else "each tenant on 2-6 of 64 topics")
    goal = ("recall@10 >= 0.98 mean and >= 0.8 worst query, p95 <= 10 ms in every band" if scale == "xl"
            else "recall@10 >= 0.98 and p95 <= 5 ms in every class")
    table += (f"\n\n{n_rows:,} chunks x 384-d, {n_tenants:,} tenants (Zipf), {data}, k={K}; load (COPY)"
              f" {load_s:.1f} s, HNSW bulk build {build_s:.1f} s (64 bucket graphs,"
              f" maintenance_work_mem {build_mwm}), then `pymem solo-graphs`: {solo['built']} solo graphs"
              f" (tenants of {solo['min_rows']:,}+ rows) in {solo['build_s']:.1f} s."
              f" Goal for pymem: {goal}."
              f"\nDurable read audit (intent committed before the search), p50 with it / without: {costs}.")
    table += "\n\n" + _crowded_table(results["crowded"], CROWD_ROWS[scale])
    return {"name": "search", "results": results, "markdown": table}


def _half(position: int) -> dict[str, int]:
    return {"half": position % 2}


def _crowded_run(cluster, dataset, count: int, scale: str) -> dict:
    """The adversarial neighbour's victims, in their own database (see crowding)."""
    chosen = victims(dataset, scale)
    crowded, topics = crowd(neighbourhood(dataset, list(chosen.values())), list(chosen.values()), CROWD_ROWS[scale])
    admin = cluster.fresh_database("pymem_bench_crowded", embedding_dim=crowded.vectors.shape[1])
    ids, _, _ = load(admin, crowded, progress=scale != "tiny")
    build_solo_graphs(admin, progress=scale != "tiny")
    halves = tag_rows(admin, crowded, ids, _half, tenants=chosen.values())
    row_of = {chunk_id: i for i, chunk_id in enumerate(ids)}
    owner = psycopg.connect(admin, autocommit=True)
    app = psycopg.connect(app_dsn(cluster, "pymem_bench_crowded"), autocommit=True)
    try:
        for conn in (owner, app):
            register_vector(conn)
        results = {band: _crowded(app, owner, crowded, victim, topics[victim], halves[victim], row_of, count, scale)
                   for band, victim in chosen.items()}
        # The same searches on the bucket graphs alone (the solo graphs dropped: a
        # tenant that grew past the threshold since the last `pymem solo-graphs`),
        # then with the search of the revision before (a superuser puts its
        # definition back in this throw-away database), on the same graphs.
        drop_solo_graphs(admin)
        for suffix in (", no solo graph", f", revision {BEFORE}'s search"):
            if suffix != ", no solo graph":
                owner.execute(released_search(BEFORE))
            for band, victim in chosen.items():
                again = _crowded(app, owner, crowded, victim, topics[victim], halves[victim], row_of, count, scale,
                                 suffix=suffix)
                results[band]["methods"].update(again["methods"])
        return results
    finally:
        owner.close()
        app.close()


def _crowded(app, owner, dataset, victim: int, topic: int, rows: np.ndarray, row_of: dict, count: int,
             scale: str, suffix: str = "") -> dict:
    """The victim's searches near the crowded topic: recall@10 and latency, unfiltered and
    filtered (half its rows), and (without ``suffix``) the exact search of the same
    queries for reference. ``suffix`` names a run of pymem's searches alone."""
    user_hash = dataset.tenant_hashes[victim]
    half = rows[::2]  # positions 0, 2, ...: {"half": 0}
    tags = keyring().tenant_index(user_hash).compile_filter({"half": 0})[0]
    queries = centre_queries(dataset, topic, WARM_UP_SEARCHES + count, seed=7000 + victim)
    passes = {
        DURABLE + suffix: (lambda q: _measure(app, DURABLE, [], _PYMEM_SQL, user_hash, q)[0], rows),
        "pymem search_chunks_v2, filter on half the rows" + suffix: (
            lambda q: pymem_filtered_search(app, user_hash, q, tags), half),
    }
    if not suffix:
        passes["exact (btree + sort)"] = (lambda q: _measure(owner, "exact", ["SET LOCAL ROLE pymem_owner"],
                                                             METHODS["exact (btree + sort)"][2], user_hash, q)[0],
                                          rows)
    measured = {}
    for method, (search, among) in passes.items():
        recalls, latencies = [], []
        for number, query in enumerate(tqdm(queries, desc=f"crowded {victim}: {method}", disable=scale == "tiny",
                                            leave=False)):
            start = time.perf_counter()
            got = search(query)
            elapsed = time.perf_counter() - start
            if number < WARM_UP_SEARCHES:
                continue
            truth = set(among[np.argsort(-(dataset.vectors[among] @ query), kind="stable")[:K]].tolist())
            recalls.append(len(truth & {row_of[g] for g in got}) / len(truth))
            latencies.append(elapsed)
        measured[method] = {"recall_at_10": round(float(np.mean(recalls)), 4),
                            "recall_min": round(float(np.min(recalls)), 2), "latency_ms": percentiles_ms(latencies)}
    return {"victim_rows": len(rows), "queries": count, "methods": measured}


def _crowded_table(crowded: dict, neighbour_rows: int) -> str:
    rows = [[band, info["victim_rows"], method, f"{s['recall_at_10']:.3f}", f"{s['recall_min']:.2f}",
             s["latency_ms"]["p50"], s["latency_ms"]["p95"]]
            for band, info in crowded.items() for method, s in info["methods"].items()]
    return ("### adversarial neighbour\n\n"
            + markdown_table(["victim", "victim rows", "method", "recall@10", "worst query", "p50 ms", "p95 ms"],
                             rows)
            + f"\n\nEach victim shares its bucket graph with a neighbour of {neighbour_rows:,} rows packed around"
              " one of the victim's topics, and asks near that topic's centre (A7); measured in a database holding"
              " the victims' buckets (every tenant in them, and the neighbours), with the solo graphs"
              " `pymem solo-graphs` builds, then without them (\"no solo graph\": the bucket graph, and the exact"
              f" scan when it is crowded), then with revision {BEFORE}'s search. Goal: recall@10 >= 0.98, worst"
              " query >= 0.8, p95 <= 10 ms.")
