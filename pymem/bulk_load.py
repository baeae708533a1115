"""Large imports: load with the search indexes dropped, then build them in bulk.

Inserting into an HNSW graph costs about a millisecond per row on one core; a
bulk build after the load is several times cheaper per row, as long as each
graph fits in ``maintenance_work_mem`` (pgvector says so with a NOTICE, "hnsw
graph no longer fits into maintenance_work_mem", and then slows down by an
order of magnitude). Migration 0008 splits the search index into 64 bucket
graphs, so each needs 1/64 of the memory one graph did:
:func:`maintenance_work_mem_for` gives the setting for a table.

For the DBA (a superuser or ``pymem_owner``), never the app role::

    definitions = drop_search_indexes(conn)
    ...  # COPY or pymem's batch API
    build_search_indexes(conn, definitions)
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from .extras import progress_iter

log = logging.getLogger(__name__)

_SEARCH_INDEXES_SQL = ("SELECT c.relname, pg_catalog.pg_get_indexdef(i.indexrelid)"
                       " FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid"
                       " JOIN pg_catalog.pg_am a ON a.oid = c.relam"
                       " WHERE i.indrelid = 'pymem.memory_chunks'::pg_catalog.regclass AND a.amname = 'hnsw'"
                       " ORDER BY c.relname")
# Bytes a bulk build holds per row beyond the vector itself (pgvector's element
# and its 2m = 32 layer-0 neighbours). Measured on 384-d rows: pgvector's "no
# longer fits" NOTICE came after 28,362 rows at 64 MB and 73,722 at 160 MB, i.e.
# 2,366 and 2,276 bytes per row, 4 x 384 of them the vector; 900 rounds up.
_GRAPH_BYTES_PER_ROW = 900


def drop_search_indexes(conn: psycopg.Connection) -> list[str]:
    """Drop the HNSW indexes of ``pymem.memory_chunks``; return their definitions.

    Args:
        conn: an autocommit connection as a superuser or ``pymem_owner``.

    Returns:
        The ``CREATE INDEX`` statements to give :func:`build_search_indexes`.
    """
    found = conn.execute(_SEARCH_INDEXES_SQL).fetchall()
    for name, _ in found:
        conn.execute(sql.SQL("DROP INDEX pymem.{}").format(sql.Identifier(name)))
    return [definition for _, definition in found]


def build_search_indexes(conn: psycopg.Connection, definitions: list[str], *,
                         maintenance_work_mem: str | None = None, progress: bool = True) -> str:
    """Run the ``CREATE INDEX`` statements :func:`drop_search_indexes` returned.

    Args:
        conn: an autocommit connection as a superuser or ``pymem_owner``.
        definitions: the statements, as returned (pg_get_indexdef output only).
        maintenance_work_mem: for these builds (e.g. ``"1GB"``); default: the
            session's, raised to :func:`maintenance_work_mem_for` this table.
            The session's own value is restored afterwards.
        progress: show a progress bar (needs the ``progress`` extra).

    Returns:
        The ``maintenance_work_mem`` the builds ran with.

    Raises:
        ValueError: a statement is not an HNSW index definition (checked for all
            before any runs).
    """
    if any(not d.startswith("CREATE INDEX ") or " USING hnsw " not in d for d in definitions):
        raise ValueError("not an HNSW index definition from drop_search_indexes")
    session_kb = current_maintenance_work_mem_kb(conn)
    if maintenance_work_mem is None:
        maintenance_work_mem = f"{max(session_kb, maintenance_work_mem_for(conn) // 1024)}kB"
    conn.execute("SELECT pg_catalog.set_config('maintenance_work_mem', %s, false)", (maintenance_work_mem,))
    try:
        for definition in progress_iter(definitions, enabled=progress, desc="building search indexes", unit="index"):
            conn.execute(definition)
    finally:
        conn.execute("SELECT pg_catalog.set_config('maintenance_work_mem', %s, false)", (f"{session_kb}kB",))
    return maintenance_work_mem


def maintenance_work_mem_for(conn: psycopg.Connection) -> int:
    """Bytes of ``maintenance_work_mem`` that keep the largest bucket graph in memory.

    The rule: rows in the largest search bucket x (4 x dimensions + 900) bytes.
    Buckets hold 1/64 of the rows each, plus whatever one large tenant adds to
    its own; the count comes from ``pymem.key_stats``.
    """
    (largest,) = conn.execute(
        "SELECT coalesce(max(b.live_rows), 0)"
        " FROM (SELECT sum(s.live_rows) AS live_rows FROM pymem.key_stats s"
        "        GROUP BY pymem.search_bucket(s.user_hash)) b").fetchone()
    return graph_build_bytes(conn, int(largest))


def graph_build_bytes(conn: psycopg.Connection, rows: int) -> int:
    """Bytes an in-memory HNSW build of ``rows`` rows of this table's embeddings holds."""
    (dim,) = conn.execute(
        "SELECT a.atttypmod FROM pg_catalog.pg_attribute a"
        " WHERE a.attrelid = 'pymem.memory_chunks'::pg_catalog.regclass AND a.attname = 'embedding'").fetchone()
    return rows * (4 * int(dim) + _GRAPH_BYTES_PER_ROW)


def current_maintenance_work_mem_kb(conn: psycopg.Connection) -> int:
    """The session's ``maintenance_work_mem``, in kB."""
    return int(conn.execute("SELECT setting FROM pg_catalog.pg_settings WHERE name = 'maintenance_work_mem'"
                            ).fetchone()[0])
