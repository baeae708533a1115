"""Durable read audit: a committed intent first, then the read.

Since migration 0005 (tenant argument since 0006), ``pymem.search_chunks``, ``pymem.get_chunks`` and
``pymem.export_chunks`` refuse to run unless the caller's audit chain holds a
*committed* read intent with the same ticket and the same parameters. The intent
is written and committed in its own transaction before the read starts, so what
the caller does with the read's transaction afterwards (ROLLBACK, a savepoint
rollback, disconnecting, crashing) cannot erase the trace. The read then appends
a ``result`` row naming the ids it returned, which exists only if that
transaction commits.

The intent's COMMIT waits for its WAL flush (``synchronous_commit = on``, pinned in every
transaction pymem opens: :mod:`pymem.pins`); the read's does not (``synchronous_commit = off``
for that transaction alone): one synchronous flush per read. The result row is therefore
best effort: a server crash just after a read returned can lose it, as a ROLLBACK of the
read drops it, while the intent stays on record.

:func:`durable_read` sends both transactions in one round trip (psycopg's
pipeline mode). The server still runs them one after the other: the intent's
COMMIT, WAL flush included, completes before the read's BEGIN is processed.

An intent stays usable for ``pymem.tuning.read_intent_ttl_s`` seconds (120 by
default) for reads with exactly its parameters; a replay inside that window
repeats a read that is already on record.

Searches can be served by a hot standby (:func:`read_on_standby`): the intent is
committed on the primary, the standby answers once it has replayed it (an intent
visible there is committed on the primary), and the result row goes to the
primary afterwards. The trace that cannot be erased is the intent, as on the
primary, where a ROLLBACK of the read also drops its result row.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from .pins import autocommit, pinned_transaction, send_pinned
from .tenant import tenant_begin_statements, tenant_transaction
from .errors import StandbyBehind

# The server computes each digest with the same function the read checks it with.
# Read -> (the intent's operation, its digest). "search" is search_chunks' (0006),
# "filtered_search" search_chunks_v2's (0007), "hybrid_search" search_hybrid_chunks' (0021).
_DIGEST_SQL = {
    "search": ("search", "pymem.search_digest(%b::public.vector, %s::pg_catalog.int4)"),
    "filtered_search": ("search", "pymem.filtered_search_digest(%b::public.vector, %s::pg_catalog.int4,"
                                  " %b::pg_catalog.bytea[], %b::pg_catalog.int4[])"),
    "hybrid_search": ("search", "pymem.hybrid_search_digest(%b::public.vector, %s::pg_catalog.int4,"
                                " %b::pg_catalog.bytea[], %b::pg_catalog.int4[], %b::pg_catalog.bytea[])"),
    "get": ("get", "pymem.get_digest(%b::pg_catalog.uuid[])"),
    "export": ("export", "pymem.export_digest(%b::pg_catalog.int4[], %s::pg_catalog.int4)"),
    # 0022: search_chunks_v3 (vector or hybrid, time window) and export_chunks_v3.
    "search_v3": ("search", "pymem.search_digest_v3(%b::public.vector, %s::pg_catalog.int4,"
                            " %b::pg_catalog.bytea[], %b::pg_catalog.int4[], %b::pg_catalog.timestamptz[],"
                            " %b::pg_catalog.bytea[])"),
    "export_v3": ("export", "pymem.export_digest_v3(%b::pg_catalog.int4[], %s::pg_catalog.int4,"
                            " %b::pg_catalog.timestamptz[], %s::pg_catalog.text)"),
}
_OPERATION = {read: operation for read, (operation, _) in _DIGEST_SQL.items()}
_INTENT_SQL = {
    read: sql.SQL(
        "SELECT pymem.read_intent(%s::pg_catalog.bpchar, %s::pg_catalog.uuid, %s::pg_catalog.text, {})").format(
        sql.SQL(digest))
    for read, (_, digest) in _DIGEST_SQL.items()
}


_REPLAYED_SQL = ("SELECT pg_catalog.pg_is_in_recovery(),"
                 " pg_catalog.pg_last_wal_replay_lsn() >= %s::pg_catalog.pg_lsn")
_LIVE_KEYS_SQL = "SELECT version, wrapped_sha256 FROM pymem.live_data_key_digests(%s::pg_catalog.bpchar)"
# The read's transaction commits without waiting for its WAL flush: one synchronous flush per
# read, the intent's, which is what must outlive a crash. The result row is best effort: a
# crash in the moment after a read returns can lose it (as a ROLLBACK of the read drops it).
_RESULT_NOT_FLUSHED = "SET LOCAL synchronous_commit = off"
_RESULT_SQL = ("SELECT FROM pymem.read_result(%s::pg_catalog.bpchar, %s::pg_catalog.uuid, %s::pg_catalog.text,"
               " %b::pg_catalog.uuid[])")


async def commit_read_intent(conn: psycopg.AsyncConnection, user_hash: str, read: str,
                             digest_params: Sequence, *, proof: bytes | None = None) -> uuid.UUID:
    """Write and commit a read intent in the tenant's audit chain; return its ticket.

    Args:
        conn: an async connection not inside a transaction.
        user_hash: the tenant.
        read: ``search`` (``search_chunks``; params: query vector, k),
            ``filtered_search`` (``search_chunks_v2``; params: query vector, k,
            filter tags, clause ends), ``hybrid_search`` (``search_hybrid_chunks``; the
            same and the query's term tags), ``get`` (params: list of ids), ``export``
            (params: key ids or None, page size), ``search_v3`` (``search_chunks_v3``: query
            vector, k, filter tags, clause ends, time window, term tags or None) or
            ``export_v3`` (``export_chunks_v3``: key ids or None, page size, time window,
            which rows: ``live``, ``all`` or ``expired``).
        proof: the tenant's proof, when not the key ring's (:func:`pymem.tenant.enter_tenant_call`).

    Raises:
        KeyError: unknown read.
    """
    ticket = uuid.uuid4()
    async with tenant_transaction(conn, user_hash, proof=proof):
        await conn.execute(_INTENT_SQL[read], (user_hash, ticket, _OPERATION[read], *digest_params))
    return ticket


async def durable_read(conn: psycopg.AsyncConnection, user_hash: str, read: str, digest_params: Sequence,
                       read_sql: str, read_params: Sequence) -> list[tuple]:
    """Commit a read intent, then run the read in a second transaction: one round trip.

    See :func:`durable_read_with_keys`, which also says which of the tenant's data keys
    are live; this returns the rows only.
    """
    return (await _durable_read(conn, user_hash, read, digest_params, read_sql, read_params, False))[0]


async def durable_read_with_keys(conn: psycopg.AsyncConnection, user_hash: str, read: str,
                                 digest_params: Sequence, read_sql: str,
                                 read_params: Sequence) -> tuple[list[tuple], dict[int, bytes]]:
    """:func:`durable_read`, and the tenant's live data keys (version -> sha256 of the wrapped
    bytes), read in the same transaction as the rows (``pymem.live_data_key_digests``):
    with them, a cached key that was destroyed since (an erasure in another process), or
    whose row was replaced, is never used to open the rows. One round trip still.

    Both tenant transactions are sent in one pipeline and end with one Sync. If a
    statement fails, the server skips the rest of the pipeline: a read never runs
    after an intent that did not commit (and ``read_sql`` refuses without one in
    any case). The failed transaction is rolled back and the error raised; an
    intent that committed before the failure stays on record, as it should.

    Args:
        conn: an async connection (or pymem's sync wrapper) not inside a
            transaction; autocommit or not (its setting is restored).
        user_hash: the tenant.
        read, digest_params: as :func:`commit_read_intent`.
        read_sql: the read, taking ``user_hash, ticket, *read_params``; its rows
            are returned (binary).

    Raises:
        RuntimeError: ``conn`` is already inside a transaction.
        ValueError: ``user_hash`` is not 64 lowercase hex characters.
        KeyError: unknown read.
        psycopg.Error: a statement failed.
    """
    return await _durable_read(conn, user_hash, read, digest_params, read_sql, read_params, True)


async def _durable_read(conn, user_hash: str, read: str, digest_params: Sequence, read_sql: str,
                        read_params: Sequence, with_keys: bool) -> tuple[list[tuple], dict[int, bytes] | None]:
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise RuntimeError("a durable read opens its own transactions: conn is already in one")
    begin = tenant_begin_statements(conn, user_hash)
    opening = [True] * (len(begin) - 1) + [False]  # BEGIN and the pins, then enter_tenant
    intent_sql, operation = _INTENT_SQL[read], _OPERATION[read]
    keys_at = 2 * len(begin) + 4  # the live keys' cursor, after the read's

    def statements() -> list[tuple]:
        # A new ticket each time the pipeline is sent: an intent that committed before the
        # pipeline was cancelled stays on record.
        ticket = uuid.uuid4()
        return [*((q, p, False) for q, p in begin),
                (intent_sql, (user_hash, ticket, operation, *digest_params), False), ("COMMIT", None, False),
                *((q, p, False) for q, p in begin), (_RESULT_NOT_FLUSHED, None, False),
                (read_sql, (user_hash, ticket, *read_params), True),
                *([(_LIVE_KEYS_SQL, (user_hash,), False)] if with_keys else []), ("COMMIT", None, False)]

    pins = [*opening, False, False, *opening, False, False, *([False] if with_keys else []), False]
    # Autocommit for the pipeline's length (pymem.pins.autocommit): the BEGINs are
    # explicit. Only the client's flag changes; nothing is sent.
    async with autocommit(conn):
        try:
            queued = await send_pinned(conn, statements, pins)
        except BaseException:
            if conn.info.transaction_status == TransactionStatus.INERROR:
                await conn.execute("ROLLBACK")
            raise
        rows = await queued[keys_at - 1].fetchall()
        return rows, dict(await queued[keys_at].fetchall()) if with_keys else None


async def read_on_standby(conn: psycopg.AsyncConnection, standby: psycopg.AsyncConnection, user_hash: str,
                          read: str, digest_params: Sequence, read_sql: str, read_params: Sequence, *,
                          wait_s: float = 5.0) -> tuple[list[tuple], dict[int, bytes]]:
    """A durable read served by a hot standby: its rows, and the tenant's live data keys
    as :func:`durable_read_with_keys` returns them, read on the standby with the rows.

    The intent is committed on ``conn`` (the primary); ``standby`` waits until it
    has replayed it, then runs ``read_sql`` (a ``*_on_standby`` function taking
    ``user_hash, ticket, *read_params``) in a READ ONLY tenant transaction; the ids
    returned are then recorded on the primary (``pymem.read_result``).

    Raises:
        ValueError: ``standby`` is not a hot standby.
        StandbyBehind: the standby had not replayed the intent after ``wait_s``.
    """
    ticket = await commit_read_intent(conn, user_hash, read, digest_params)
    async with pinned_transaction(conn, [("SELECT pg_catalog.pg_current_wal_lsn()", None)]) as (cursor,):
        lsn = (await cursor.fetchone())[0]
    deadline = time.monotonic() + wait_s
    while True:
        async with pinned_transaction(standby, [(_REPLAYED_SQL, (lsn,))]) as (cursor,):
            in_recovery, replayed = await cursor.fetchone()
        if not in_recovery:
            raise ValueError("the standby connection is not to a hot standby")
        if replayed:
            break
        if time.monotonic() > deadline:
            raise StandbyBehind(f"the standby had not replayed the read intent after {wait_s} s")
        await asyncio.sleep(0.005)
    async with tenant_transaction(standby, user_hash, read_only=True):
        cursor = await standby.execute(read_sql, (user_hash, ticket, *read_params), binary=True)
        rows = await cursor.fetchall()
        live = dict(await (await standby.execute(_LIVE_KEYS_SQL, (user_hash,))).fetchall())
    async with tenant_transaction(conn, user_hash):
        await conn.execute(_RESULT_SQL, (user_hash, ticket, _OPERATION[read], [row[0] for row in rows]))
    return rows, live
