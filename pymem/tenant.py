"""The tenant context: a transaction-local ``app.user_hash`` that RLS reads.

The setting is only ever made with ``SET LOCAL`` inside a transaction this module
opens, so it vanishes at COMMIT or ROLLBACK. A session-level ``SET`` would survive
on a pooled connection and hand the next caller another tenant's rows. ``SET LOCAL``
rather than ``set_config(..., true)`` because Citus forwards ``SET LOCAL`` (with
``citus.propagate_set_commands = 'local'``, which ``pymem distribute`` sets for the
database) to the workers that run the tenant's calls, and ``set_config`` is not
forwarded. ``SET LOCAL`` takes no bind parameter, so the hash is checked to be 64
lowercase hex characters and sent as a quoted literal.

Each tenant transaction also pins what a previous user of the same connection
could have changed for the session and that pymem's correctness rests on: it is
READ COMMITTED (the audit chain's row lock then waits instead of failing) and
READ WRITE, whatever ``default_transaction_isolation`` or
``default_transaction_read_only`` say. Every name pymem sends is schema-qualified
(``pg_catalog.uuid[]``, ``public.vector``), so temporary types, domains
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

_SET_TENANT_SQL = sql.SQL("SET LOCAL app.user_hash = {}")
# One round trip: no parameters, so psycopg sends it as a simple query and both
# statements run. (Citus forwards the query text of each SET it propagates, here
# the whole string twice; both statements are idempotent.)
_BEGIN_TENANT_SQL = sql.SQL("SET TRANSACTION ISOLATION LEVEL READ COMMITTED, READ WRITE; {}")
_BEGIN_READ_ONLY_SQL = sql.SQL("SET TRANSACTION ISOLATION LEVEL READ COMMITTED, READ ONLY; {}")
# The same pinning as statements of their own, for pipeline mode (one statement
# per message there): BEGIN carries the transaction modes.
_BEGIN_STATEMENT = sql.SQL("BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE")
_HEX = re.compile(r"[0-9a-f]{64}")


def check_user_hash(user_hash: object) -> str:
    """Return ``user_hash`` if it is 64 lowercase hex characters, else raise ValueError."""
    if not (isinstance(user_hash, str) and len(user_hash) == 64 and _HEX.fullmatch(user_hash)):
        raise ValueError("user_hash must be 64 lowercase hex characters")
    return user_hash


def set_tenant_sql(user_hash: str) -> sql.Composed:
    """``SET LOCAL app.user_hash = '<hash>'`` for a checked hash (raises ValueError otherwise)."""
    return _SET_TENANT_SQL.format(sql.Literal(check_user_hash(user_hash)))


def tenant_begin_statements(user_hash: str) -> tuple[sql.Composable, sql.Composed]:
    """The statements that open a READ WRITE tenant transaction, one per message.

    For pipeline mode on an autocommit connection (:func:`pymem.reads.durable_read`):
    ``BEGIN`` with the modes :func:`tenant_transaction` pins, then ``SET LOCAL``.

    Raises:
        ValueError: ``user_hash`` is not 64 lowercase hex characters.
    """
    return _BEGIN_STATEMENT, set_tenant_sql(user_hash)


@asynccontextmanager
async def tenant_transaction(conn: psycopg.AsyncConnection, user_hash: str, *,
                             read_only: bool = False) -> AsyncIterator[str]:
    """Open a transaction on ``conn`` scoped to the tenant ``user_hash``; yield it.

    ``read_only``: a READ ONLY transaction (what a hot standby allows).

    The building block of :func:`set_rls_context`, for operators' tools (key
    rotation) that work from hashes and never see user ids.

    Raises:
        ValueError: ``user_hash`` is not 64 lowercase hex characters.
        RuntimeError: ``conn`` is already inside a transaction; nesting would let
            the tenant setting outlive this block, so it is refused.
    """
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise RuntimeError("set_rls_context must open its own transaction: conn is already in one")
    async with conn.transaction():
        begin = _BEGIN_READ_ONLY_SQL if read_only else _BEGIN_TENANT_SQL
        await conn.execute(begin.format(set_tenant_sql(user_hash)))
        yield user_hash


@asynccontextmanager
async def set_rls_context(conn: psycopg.AsyncConnection, user_id: str) -> AsyncIterator[str]:
    """Open a transaction on ``conn`` scoped to one tenant; yield its user_hash.

    Usage::

        async with set_rls_context(conn, "user-42") as user_hash:
            await conn.execute("SELECT pymem.delete_document(%s, %s)", (user_hash, "doc-1"))

    Args:
        conn: an async psycopg connection that is not inside a transaction.
        user_id: the application's user id (hashed with :func:`pymem.security.hmac_user`).

    Raises:
        ValueError: ``user_id`` is empty or not a str, or the HMAC key is invalid.
        RuntimeError: ``conn`` is already inside a transaction (see :func:`tenant_transaction`).
    """
    async with tenant_transaction(conn, hmac_user(user_id)) as user_hash:
        yield user_hash
