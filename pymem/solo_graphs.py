"""Solo graphs: an HNSW graph of one large tenant's rows alone (revision 0017).

A tenant's search walks its bucket's graph, which it shares with about 1/64 of the
other tenants. There, another tenant can put tens of thousands of rows where the
victim's queries land, and the walk then finds only the neighbour's rows (A7 of the
second attack round): the search stays correct (it falls back to an exact scan of the
tenant's rows) but costs that scan, 20-200 ms for a tenant of 10k-85k rows. A tenant
with a solo graph is walked there instead: a partial HNSW index whose predicate is
its ``user_hash``, holding no one else's rows.

Which tenants get one is the DBA's call, through ``pymem.tuning.solo_graph_min_rows``
(default 2,000: every tenant whose unfiltered search walks a graph) and
``solo_graph_max_count`` (default 64: the largest tenants first). ``pymem
solo-graphs`` builds the missing ones (``CREATE INDEX CONCURRENTLY``: writes go on)
and drops those whose tenant has shrunk below half the threshold or left the largest
``solo_graph_max_count``; run it after a bulk load and on a schedule. Costs: each solo
graph is one more index on ``memory_chunks``, which every write and every plan of the
table opens and locks (and a solo tenant's rows go into two graphs); each build reads
the whole table (``CONCURRENTLY``: twice); and its predicate shows the tenant's hash,
and ``pg_stat_user_indexes`` its searches, to any login that can read the catalog of
pymem's database (docs/threat-model.md, A8). "Every tenant whose search walks a
graph" holds as of the last run: a tenant that grew since walks its bucket graph.

For the DBA (a superuser, or a login that may ``SET ROLE pymem_owner``)::

    plan = plan_solo_graphs(conn)
    apply_solo_graphs(conn, plan)
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import psycopg
from psycopg import sql

from .bulk_load import current_maintenance_work_mem_kb, graph_build_bytes
from .errors import NotReady
from .extras import progress_iter

log = logging.getLogger(__name__)

# Graph quality for the build: pgvector's defaults are m = 16, ef_construction = 64.
# A solo graph is built offline, concurrently with writes, and walked by every search
# of its tenant: a wider construction search buys recall with build time only.
_SOLO_GRAPH_WITH = "m = 16, ef_construction = 200"
# Session-level advisory lock of one run of apply_solo_graphs ("pmsolo" in ASCII):
# a second run would take the first one's graph under construction (not valid yet)
# for a failed build and drop it.
_RUN_LOCK = 0x706D736F6C6F
# Per tenant: its live rows, its rank by rows among the tenants that may keep a graph
# (half the threshold or more), its solo graph's name, whether that index exists, is
# valid and has exactly the predicate the command gives it; plus solo graphs whose
# name matches no tenant with rows (erased ones). Run with search_path = pg_catalog
# (every operator and function is then pg_catalog's, and the predicate deparses the
# same way every time).
_STATE_SQL = """
WITH tenants AS (
    SELECT s.user_hash, sum(s.live_rows)::bigint AS live_rows, pymem.solo_graph_name(s.user_hash) AS graph
      FROM pymem.key_stats s GROUP BY s.user_hash HAVING sum(s.live_rows) > 0),
ranked AS (
    SELECT t.*, CASE WHEN t.live_rows * 2 >= %(min_rows)s
                     THEN row_number() OVER (ORDER BY t.live_rows * 2 >= %(min_rows)s DESC, t.live_rows DESC,
                                                      t.user_hash) END AS rank
      FROM tenants t),
graphs AS (
    SELECT c.relname::text AS graph, i.indisvalid AND i.indisready AS valid,
           pg_get_expr(i.indpred, i.indrelid) AS predicate
      FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
     WHERE i.indrelid = 'pymem.memory_chunks'::regclass
       AND c.relname::text LIKE 'memory\\_chunks\\_solo\\_%%')
SELECT r.user_hash, coalesce(r.live_rows, 0), r.rank, coalesce(r.graph, g.graph), g.valid,
       g.predicate IS NOT DISTINCT FROM format('(user_hash = %%L::bpchar)', r.user_hash)
  FROM ranked r FULL JOIN graphs g ON g.graph = r.graph
 WHERE g.graph IS NOT NULL OR r.live_rows >= %(min_rows)s
 ORDER BY coalesce(r.live_rows, 0) DESC, 4
"""


@dataclass(frozen=True)
class SoloGraphPlan:
    """What :func:`apply_solo_graphs` would do.

    Attributes:
        min_rows: ``pymem.tuning.solo_graph_min_rows`` when planned.
        max_count: ``pymem.tuning.solo_graph_max_count`` when planned.
        build: ``(user_hash, live rows)`` of each tenant at or above ``min_rows``, among
            the ``max_count`` largest, with no valid solo graph; largest first.
        drop: names of solo graphs to drop: their tenant has fewer than half of
            ``min_rows`` rows (or none), or is no longer among the ``max_count``
            largest; or the index is invalid (a build that failed: runs take a
            lock, so no other run is building it) or not the command's (another
            predicate). Rebuilt if the tenant is in ``build``.
        kept: solo graphs that stay as they are.
        left_out: tenants at or above ``min_rows`` beyond the ``max_count`` largest.
    """

    min_rows: int
    max_count: int
    build: list[tuple[str, int]]
    drop: list[str]
    kept: int
    left_out: int = 0


def plan_solo_graphs(conn: psycopg.Connection) -> SoloGraphPlan:
    """Which solo graphs to build and drop, from ``pymem.key_stats`` and the catalog.

    Args:
        conn: a connection as a superuser or ``pymem_owner`` (its ``search_path`` is
            set to ``pg_catalog`` for the query and restored).
    """
    min_rows, max_count = conn.execute(
        "SELECT t.solo_graph_min_rows, t.solo_graph_max_count FROM pymem.tuning t").fetchone()
    with _catalog_search_path(conn):
        rows = conn.execute(_STATE_SQL, {"min_rows": min_rows}).fetchall()
    build, drop, kept, left_out = [], [], 0, 0
    for user_hash, live_rows, rank, graph, valid, own_predicate in rows:
        among_largest = rank is not None and rank <= max_count
        sound = bool(valid) and own_predicate
        if valid is not None and not (sound and among_largest):
            drop.append(graph)
        elif valid is not None:
            kept += 1
        if live_rows >= min_rows and not among_largest:
            left_out += 1
        elif live_rows >= min_rows and not sound:
            build.append((user_hash, live_rows))
    return SoloGraphPlan(min_rows, max_count, build, drop, kept, left_out)


@contextlib.contextmanager
def _catalog_search_path(conn: psycopg.Connection):
    (saved,) = conn.execute("SELECT pg_catalog.current_setting('search_path')").fetchone()
    conn.execute("SELECT pg_catalog.set_config('search_path', 'pg_catalog', false)")
    try:
        yield
    finally:
        conn.execute("SELECT pg_catalog.set_config('search_path', %s, false)", (saved,))


@dataclass(frozen=True)
class SoloGraphReport:
    """What :func:`apply_solo_graphs` did: graphs built and dropped, and the SQLSTATE
    of each build that failed (its tenant's graph is then missing or invalid; the next
    run retries it)."""

    built: int
    dropped: int
    failed: list[str]


def embedding_opclass(conn: psycopg.Connection) -> str:
    """The HNSW operator class of the schema's embeddings: ``halfvec_cosine_ops`` where they are
    stored at half precision (revision 0023), else ``vector_cosine_ops``."""
    (kind,) = conn.execute("SELECT t.typname::pg_catalog.text FROM pg_catalog.pg_attribute a"
                           " JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid"
                           " WHERE a.attrelid OPERATOR(pg_catalog.=) 'pymem.memory_chunks'::pg_catalog.regclass"
                           " AND a.attname OPERATOR(pg_catalog.=) 'embedding'").fetchone()
    return "halfvec_cosine_ops" if kind == "halfvec" else "vector_cosine_ops"


def apply_solo_graphs(conn: psycopg.Connection, plan: SoloGraphPlan, *, progress: bool = True) -> SoloGraphReport:
    """Drop, then build, the solo graphs of ``plan``, each concurrently with writes.

    Each build runs with ``maintenance_work_mem`` raised (never lowered) to hold its
    graph (pgvector slows down by an order of magnitude once a graph does not fit). A
    build that fails (the server stopped, a deadlock) leaves an invalid index, which no
    search walks and the next plan drops and rebuilds; the other builds go on. A build
    waits for transactions that were writing when it started (``CONCURRENTLY``).

    Args:
        conn: an autocommit connection as a superuser or a login that may
            ``SET ROLE pymem_owner`` (the table's owner builds its indexes).
        plan: from :func:`plan_solo_graphs`.
        progress: show a progress bar (needs the ``progress`` extra).

    Raises:
        ValueError: ``conn`` is not in autocommit mode (``CONCURRENTLY`` needs it).
        NotReady: another run holds the lock.
    """
    if not conn.autocommit:
        raise ValueError("apply_solo_graphs needs an autocommit connection (CREATE INDEX CONCURRENTLY)")
    if not conn.execute("SELECT pg_catalog.pg_try_advisory_lock(%s)", (_RUN_LOCK,)).fetchone()[0]:
        raise NotReady("another pymem solo-graphs is running on this database; wait for it to finish")
    failed = []
    try:
        conn.execute("SET ROLE pymem_owner")
        session_kb = current_maintenance_work_mem_kb(conn)
        opclass = embedding_opclass(conn)
        for graph in plan.drop:
            conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS pymem.{}").format(sql.Identifier(graph)))
        for user_hash, live_rows in progress_iter(plan.build, enabled=progress, desc="building solo graphs",
                                                  unit="graph"):
            needed = f"{max(session_kb, graph_build_bytes(conn, live_rows) // 1024)}kB"
            conn.execute("SELECT pg_catalog.set_config('maintenance_work_mem', %s, false)", (needed,))
            (graph,) = conn.execute("SELECT pymem.solo_graph_name(%s)", (user_hash,)).fetchone()
            try:
                conn.execute(sql.SQL("CREATE INDEX CONCURRENTLY {} ON pymem.memory_chunks"
                                     " USING hnsw (embedding public.{}) WITH ({})"
                                     " WHERE user_hash OPERATOR(pg_catalog.=) {}::pg_catalog.bpchar")
                             .format(sql.Identifier(graph), sql.Identifier(opclass), sql.SQL(_SOLO_GRAPH_WITH),
                                     sql.Literal(user_hash)))
            except psycopg.Error as exc:  # the message may quote the hash: only its SQLSTATE is kept
                failed.append(exc.sqlstate or type(exc).__name__)
        conn.execute("SELECT pg_catalog.set_config('maintenance_work_mem', %s, false)", (f"{session_kb}kB",))
    finally:
        conn.execute("RESET ROLE")
        conn.execute("SELECT pg_catalog.pg_advisory_unlock(%s)", (_RUN_LOCK,))
    log.info("solo graphs: built %d, dropped %d, failed %d", len(plan.build) - len(failed), len(plan.drop),
             len(failed))
    return SoloGraphReport(len(plan.build) - len(failed), len(plan.drop), failed)
