"""Solo graphs: an HNSW graph of one large tenant's rows alone (revision 0017).

A tenant's search walks its bucket's graph, which it shares with about 1/64 of the
other tenants. There, another tenant can put tens of thousands of rows where the
victim's queries land, and the walk then finds only the neighbour's rows (A7 of the
second attack round): the search stays correct (it falls back to an exact scan of the
tenant's rows) but costs that scan, 20-200 ms for a tenant of 10k-85k rows. A tenant
with a solo graph is walked there instead: a partial HNSW index whose predicate is
its ``user_hash``, holding no one else's rows.

Which tenants get one is the DBA's call, through ``pymem.tuning.solo_graph_min_rows``
(default 2,000: every tenant whose unfiltered search walks a graph). ``pymem
solo-graphs`` builds the missing ones (``CREATE INDEX CONCURRENTLY``: writes go on)
and drops those whose tenant has shrunk below half the threshold; run it after a
bulk load and on a schedule. Costs: each solo graph is one more index on
``memory_chunks`` (a tenant's writes go into two graphs; every plan of the solo walk
considers every index), and its name and predicate show the tenant's hash, and
``pg_stat_user_indexes`` its searches, to any login that can read the catalog of
pymem's database (docs/threat-model.md, A8).

For the DBA (a superuser, or a login that may ``SET ROLE pymem_owner``)::

    plan = plan_solo_graphs(conn)
    apply_solo_graphs(conn, plan)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg
from psycopg import sql

from .bulk_load import current_maintenance_work_mem_kb, graph_build_bytes
from .extras import progress_iter

log = logging.getLogger(__name__)

# Per tenant: its live rows, its solo graph's name and whether that index exists and
# is valid; plus solo graphs whose name matches no tenant with rows (erased ones).
_STATE_SQL = """
WITH tenants AS (
    SELECT s.user_hash, sum(s.live_rows)::bigint AS live_rows, pymem.solo_graph_name(s.user_hash) AS graph
      FROM pymem.key_stats s GROUP BY s.user_hash HAVING sum(s.live_rows) > 0),
graphs AS (
    SELECT c.relname::text AS graph, i.indisvalid AND i.indisready AS valid
      FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
     WHERE i.indrelid = 'pymem.memory_chunks'::pg_catalog.regclass
       AND c.relname::text LIKE 'memory\\_chunks\\_solo\\_%%')
SELECT t.user_hash, coalesce(t.live_rows, 0), coalesce(t.graph, g.graph), g.valid
  FROM tenants t FULL JOIN graphs g ON g.graph = t.graph
 WHERE g.graph IS NOT NULL OR t.live_rows >= %(min_rows)s
 ORDER BY coalesce(t.live_rows, 0) DESC, 3
"""


@dataclass(frozen=True)
class SoloGraphPlan:
    """What :func:`apply_solo_graphs` would do.

    Attributes:
        min_rows: ``pymem.tuning.solo_graph_min_rows`` when planned.
        build: ``(user_hash, live rows)`` of each tenant at or above ``min_rows`` with
            no valid solo graph, largest first.
        drop: names of solo graphs to drop: their tenant has fewer than half of
            ``min_rows`` rows (or none), or the index is invalid (a build that
            failed; rebuilt if the tenant is in ``build``).
        kept: solo graphs that stay as they are.
    """

    min_rows: int
    build: list[tuple[str, int]]
    drop: list[str]
    kept: int


def plan_solo_graphs(conn: psycopg.Connection) -> SoloGraphPlan:
    """Which solo graphs to build and drop, from ``pymem.key_stats`` and the catalog.

    Args:
        conn: a connection as a superuser or ``pymem_owner``.
    """
    (min_rows,) = conn.execute("SELECT t.solo_graph_min_rows FROM pymem.tuning t").fetchone()
    build, drop, kept = [], [], 0
    for user_hash, live_rows, graph, valid in conn.execute(_STATE_SQL, {"min_rows": min_rows}).fetchall():
        if valid is not None and (not valid or live_rows * 2 < min_rows):
            drop.append(graph)
        elif valid:
            kept += 1
        if live_rows >= min_rows and not valid:
            build.append((user_hash, live_rows))
    return SoloGraphPlan(min_rows, build, drop, kept)


@dataclass(frozen=True)
class SoloGraphReport:
    """What :func:`apply_solo_graphs` did: graphs built and dropped, and the
    ``maintenance_work_mem`` the builds ran with."""

    built: int
    dropped: int
    maintenance_work_mem: str


def apply_solo_graphs(conn: psycopg.Connection, plan: SoloGraphPlan, *, progress: bool = True) -> SoloGraphReport:
    """Drop, then build, the solo graphs of ``plan``, each concurrently with writes.

    A build that fails (the server stopped, a deadlock) leaves an invalid index,
    which no search walks and the next plan drops and rebuilds.

    Args:
        conn: an autocommit connection as a superuser or a login that may
            ``SET ROLE pymem_owner`` (the table's owner builds its indexes).
        plan: from :func:`plan_solo_graphs`.
        progress: show a progress bar (needs the ``progress`` extra).

    Raises:
        ValueError: ``conn`` is not in autocommit mode (``CONCURRENTLY`` needs it).
    """
    if not conn.autocommit:
        raise ValueError("apply_solo_graphs needs an autocommit connection (CREATE INDEX CONCURRENTLY)")
    conn.execute("SET ROLE pymem_owner")
    try:
        for graph in plan.drop:
            conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS pymem.{}").format(sql.Identifier(graph)))
        session_kb = current_maintenance_work_mem_kb(conn)
        largest = max((rows for _, rows in plan.build), default=0)
        # Enough for the largest graph to build in memory (pgvector slows down by an
        # order of magnitude once it does not fit), never less than the session's.
        built_with = f"{max(session_kb, graph_build_bytes(conn, largest) // 1024)}kB"
        conn.execute("SELECT pg_catalog.set_config('maintenance_work_mem', %s, false)", (built_with,))
        try:
            for user_hash, _ in progress_iter(plan.build, enabled=progress, desc="building solo graphs",
                                              unit="graph"):
                (graph,) = conn.execute("SELECT pymem.solo_graph_name(%s)", (user_hash,)).fetchone()
                conn.execute(sql.SQL("CREATE INDEX CONCURRENTLY {} ON pymem.memory_chunks"
                                     " USING hnsw (embedding public.vector_cosine_ops)"
                                     " WHERE user_hash OPERATOR(pg_catalog.=) {}::pg_catalog.bpchar")
                             .format(sql.Identifier(graph), sql.Literal(user_hash)))
        finally:
            conn.execute("SELECT pg_catalog.set_config('maintenance_work_mem', %s, false)", (f"{session_kb}kB",))
    finally:
        conn.execute("RESET ROLE")
    log.info("solo graphs: built %d, dropped %d", len(plan.build), len(plan.drop))
    return SoloGraphReport(len(plan.build), len(plan.drop), built_with)
