"""Durable read audit: a committed intent first, then the read.

Since migration 0005 (tenant argument since 0006), ``pymem.search_chunks``, ``pymem.get_chunks`` and
``pymem.export_chunks`` refuse to run unless the caller's audit chain holds a
*committed* read intent with the same ticket and the same parameters. The intent
is written and committed in its own transaction before the read starts, so what
the caller does with the read's transaction afterwards (ROLLBACK, a savepoint
rollback, disconnecting, crashing) cannot erase the trace. The read then appends
a ``result`` row naming the ids it returned, which exists only if that
transaction commits.

An intent stays usable for ``pymem.tuning.read_intent_ttl_s`` seconds (120 by
default) for reads with exactly its parameters; a replay inside that window
repeats a read that is already on record.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import psycopg
from psycopg import sql

from .tenant import tenant_transaction

# The server computes each digest with the same function the read checks it with.
_DIGEST_SQL = {
    "search": "pymem.search_digest(%b::public.vector, %s::pg_catalog.int4)",
    "get": "pymem.get_digest(%b::pg_catalog.uuid[])",
    "export": "pymem.export_digest(%b::pg_catalog.int4[], %s::pg_catalog.int4)",
}
_INTENT_SQL = {
    operation: sql.SQL(
        "SELECT pymem.read_intent(%s::pg_catalog.bpchar, %s::pg_catalog.uuid, %s::pg_catalog.text, {})").format(
        sql.SQL(digest))
    for operation, digest in _DIGEST_SQL.items()
}


async def commit_read_intent(conn: psycopg.AsyncConnection, user_hash: str, operation: str,
                             digest_params: Sequence) -> uuid.UUID:
    """Write and commit a read intent in the tenant's audit chain; return its ticket.

    Args:
        conn: an async connection not inside a transaction.
        user_hash: the tenant.
        operation: ``search`` (params: query vector, k), ``get`` (params: list of
            ids) or ``export`` (params: key ids or None, page size).

    Raises:
        KeyError: unknown operation.
    """
    ticket = uuid.uuid4()
    async with tenant_transaction(conn, user_hash):
        await conn.execute(_INTENT_SQL[operation], (user_hash, ticket, operation, *digest_params))
    return ticket
