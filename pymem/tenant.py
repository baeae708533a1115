"""The tenant context: a transaction-local ``app.user_hash`` that RLS reads.

A transaction becomes a tenant's through ``pymem.enter_tenant(user_hash, proof)``
only (revision 0015). The proof is HMAC-SHA256 of the hash under a key derived
from ``MEMORY_TENANT_HMAC_KEY`` (:meth:`pymem.security.KeyRing.tenant_proof`), so
knowing a tenant's hash (which is in every row and audit row) is not enough to act
as it: a login without the keys cannot. Both go as bind parameters, so neither is
in the query text that ``pg_stat_activity`` shows to other sessions of the same
login. The server checks the proof, then sets ``app.user_hash`` and a context
ticket with ``SET LOCAL`` (which Citus forwards to the workers); every API call
checks the ticket. Both vanish at COMMIT or ROLLBACK: a session-level setting
would survive on a pooled connection and hand the next caller another tenant.

Each tenant transaction also pins what a previous user of the same connection, or
a setting stored for the login, could have changed and that pymem's correctness or
availability rests on: it is READ COMMITTED (the audit chain's row lock then waits
instead of failing) and READ WRITE whatever ``default_transaction_isolation`` or
``default_transaction_read_only`` say, and it runs with the timeouts of
:mod:`pymem.pins` off, so that a stored ``statement_timeout = '1ms'`` cannot fail
every call. Every name pymem sends is schema-qualified (``pg_catalog.uuid[]``,
``public.vector``), so temporary types, domains or tables a session left in
``pg_temp`` are never used.

The context costs no round trip of its own: ``BEGIN``, the pins and
``enter_tenant`` go in one pipeline, one round trip in all.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg.pq import TransactionStatus

from .pins import begin_statements, pinned_transaction
from .security import hmac_user, keyring

_READ_WRITE = "ISOLATION LEVEL READ COMMITTED, READ WRITE"
_READ_ONLY = "ISOLATION LEVEL READ COMMITTED, READ ONLY"
_ENTER_SQL = "SELECT FROM pymem.enter_tenant(%s::pg_catalog.bpchar, %s::pg_catalog.bytea)"
_HEX = re.compile(r"[0-9a-f]{64}")


def check_user_hash(user_hash: object) -> str:
    """Return ``user_hash`` if it is 64 lowercase hex characters, else raise ValueError."""
    if not (isinstance(user_hash, str) and len(user_hash) == 64 and _HEX.fullmatch(user_hash)):
        raise ValueError("user_hash must be 64 lowercase hex characters")
    return user_hash


def enter_tenant_call(user_hash: str, proof: bytes | None = None) -> tuple[str, tuple[str, bytes]]:
    """``pymem.enter_tenant`` with its parameters: the checked hash and its proof.

    ``proof``: the tenant's proof when it is not the key ring's (a tool moving
    tenants from one HMAC key to another); default: the ring's.

    Raises:
        ValueError: ``user_hash`` is not 64 lowercase hex characters, or the keys
            are missing or malformed.
    """
    check_user_hash(user_hash)
    return _ENTER_SQL, (user_hash, keyring().tenant_proof(user_hash) if proof is None else proof)


def tenant_begin_statements(conn, user_hash: str) -> list[tuple[str, tuple | None]]:
    """The statements that open a READ WRITE tenant transaction, one per message.

    For pipeline mode on an autocommit connection (:func:`pymem.reads.durable_read`):
    ``BEGIN`` with the modes :func:`tenant_transaction` pins, the timeouts
    (:func:`pymem.pins.begin_statements`), then ``enter_tenant``. Each item is
    ``(query, params)``.

    Raises:
        ValueError: as :func:`enter_tenant_call`.
    """
    return [*begin_statements(conn, _READ_WRITE), enter_tenant_call(user_hash)]


@asynccontextmanager
async def tenant_transaction(conn: psycopg.AsyncConnection, user_hash: str, *,
                             read_only: bool = False, proof: bytes | None = None) -> AsyncIterator[str]:
    """Open a transaction on ``conn`` scoped to the tenant ``user_hash``; yield it.

    ``read_only``: a READ ONLY transaction (what a hot standby allows).
    ``proof``: as :func:`enter_tenant_call`.

    The building block of :func:`set_rls_context`, for operators' tools (key
    rotation) that work from hashes and never see user ids; they hold the keys,
    which the proof needs.

    Raises:
        ValueError: ``user_hash`` is not 64 lowercase hex characters, or the keys
            are missing or malformed.
        RuntimeError: ``conn`` is already inside a transaction; nesting would let
            the tenant setting outlive this block, so it is refused.
        psycopg.errors.InsufficientPrivilege: the server refused the proof (keys
            other than the tenant's), or the tenant predates revision 0015 and is
            not registered yet (``pymem register-tenants``).
    """
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise RuntimeError("set_rls_context must open its own transaction: conn is already in one")
    async with pinned_transaction(conn, [enter_tenant_call(user_hash, proof)],
                                  modes=_READ_ONLY if read_only else _READ_WRITE):
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


def register_tenants(conn: psycopg.Connection) -> int:
    """Register the proofs of the tenants that predate revision 0015; return how many.

    Run once after upgrading (``pymem register-tenants``), by the DBA (pymem_owner
    or a superuser) with ``MEMORY_TENANT_HMAC_KEY`` set: until then those tenants'
    transactions are refused, since whoever knew their hashes could otherwise claim
    them. Only digests (sha256 of each proof) reach the database. Idempotent.

    Raises:
        ValueError: the keys are missing or malformed.
        psycopg.errors.InsufficientPrivilege: the login is neither pymem_owner nor a superuser.
    """
    ring = keyring()
    with conn.transaction():
        hashes = [row[0] for row in conn.execute("SELECT pymem.unregistered_tenants()")]
        if not hashes:
            return 0
        digests = [hashlib.sha256(ring.tenant_proof(user_hash)).digest() for user_hash in hashes]
        return conn.execute("SELECT pymem.register_tenant_proofs(%s::pg_catalog.bpchar[], %s::pg_catalog.bytea[])",
                            (hashes, digests)).fetchone()[0]
