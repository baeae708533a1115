"""The tenant context: a transaction-local ``app.user_hash`` that RLS reads.

The setting is only ever made with ``set_config(..., true)`` inside a transaction
this module opens, so it vanishes at COMMIT or ROLLBACK. A session-level ``SET``
would survive on a pooled connection and hand the next caller another tenant's rows.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg.pq import TransactionStatus

from .security import hmac_user

SET_TENANT_SQL = "SELECT set_config('app.user_hash', %s, true)"
_HEX = re.compile(r"[0-9a-f]{64}")


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
    if not (isinstance(user_hash, str) and len(user_hash) == 64 and _HEX.fullmatch(user_hash)):
        raise ValueError("user_hash must be 64 lowercase hex characters")
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise RuntimeError("set_rls_context must open its own transaction: conn is already in one")
    async with conn.transaction():
        await conn.execute(SET_TENANT_SQL, (user_hash,))
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
