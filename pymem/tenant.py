"""The tenant context: a transaction-local ``app.user_hash`` that RLS reads.

The setting is only ever made with ``set_config(..., true)`` inside a transaction
this module opens, so it vanishes at COMMIT or ROLLBACK. A session-level ``SET``
would survive on a pooled connection and hand the next caller another tenant's rows.

Each tenant transaction also pins what a previous user of the same connection
could have changed for the session and that pymem's correctness rests on: it is
READ COMMITTED (the audit chain's row lock then waits instead of failing) and
READ WRITE, whatever ``default_transaction_isolation`` or
``default_transaction_read_only`` say. Every name pymem sends is schema-qualified
(``pg_catalog.set_config``, ``pg_catalog.uuid[]``), so temporary types, domains
or tables a session left in ``pg_temp`` are never used.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from .security import hmac_user

SET_TENANT_SQL = "SELECT pg_catalog.set_config('app.user_hash', %s, true)"
# One round trip: no parameters, so psycopg sends it as a simple query and both
# statements run; the hash is a validated literal (64 lowercase hex characters).
_BEGIN_TENANT_SQL = sql.SQL(
    "SET TRANSACTION ISOLATION LEVEL READ COMMITTED, READ WRITE;"
    " SELECT pg_catalog.set_config('app.user_hash', {}, true)")
_HEX = re.compile(r"[0-9a-f]{64}")


def check_user_hash(user_hash: object) -> str:
    """Return ``user_hash`` if it is 64 lowercase hex characters, else raise ValueError."""
    if not (isinstance(user_hash, str) and len(user_hash) == 64 and _HEX.fullmatch(user_hash)):
        raise ValueError("user_hash must be 64 lowercase hex characters")
    return user_hash


@asynccontextmanager
async def tenant_transaction(conn: psycopg.AsyncConnection, user_hash: str) -> AsyncIterator[str]:
    """Open a transaction on ``conn`` scoped to the tenant ``user_hash``; yield it.

    The building block of :func:`set_rls_context`, for operators' tools (key
    rotation) that work from hashes and never see user ids.

    Raises:
        ValueError: ``user_hash`` is not 64 lowercase hex characters.
        RuntimeError: ``conn`` is already inside a transaction; nesting would let
            the tenant setting outlive this block, so it is refused.
    """
    check_user_hash(user_hash)
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise RuntimeError("set_rls_context must open its own transaction: conn is already in one")
    async with conn.transaction():
        await conn.execute(_BEGIN_TENANT_SQL.format(sql.Literal(user_hash)))
        yield user_hash


@asynccontextmanager
async def set_rls_context(conn: psycopg.AsyncConnection, user_id: str) -> AsyncIterator[str]:
    """Open a transaction on ``conn`` scoped to one tenant; yield its user_hash.

    Usage::

        async with set_rls_context(conn, "user-42") as user_hash:
            await conn.execute("SELECT * FROM pymem.search_chunks(%s, %s)", (vec, 10))

    Args:
        conn: an async psycopg connection that is not inside a transaction.
        user_id: the application's user id (hashed with :func:`pymem.security.hmac_user`).

    Raises:
        ValueError: ``user_id`` is empty or not a str, or the HMAC key is invalid.
        RuntimeError: ``conn`` is already inside a transaction (see :func:`tenant_transaction`).
    """
    async with tenant_transaction(conn, hmac_user(user_id)) as user_hash:
        yield user_hash
