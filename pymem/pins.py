"""Settings pymem pins at the start of each transaction it opens.

A setting stored for the app's login (``ALTER ROLE ... SET``, which the login may
do to itself and which ``DISCARD ALL`` does not undo) or left on a pooled session
applies to every later session. Those that could deny service to pymem's calls, or
undo what they did, are pinned in each transaction pymem opens: the statement and lock
timeouts switched off (PostgreSQL's defaults), the idle-in-transaction timeout set to
``PYMEM_IDLE_IN_TRANSACTION_TIMEOUT_S`` (10 s by default), ``synchronous_commit`` on and,
on PostgreSQL 17 and later, the transaction timeout stopped first, then started afresh at
``PYMEM_TRANSACTION_TIMEOUT_S`` (300 s by default). Timeouts that act between
transactions (``idle_session_timeout``, and the transaction timeout from ``BEGIN`` to
the first pin) are switched off for the session by :mod:`pymem.connections`.

The idle-in-transaction limit is what frees a tenant whose client froze, or lost its
network, inside a write: the write holds the tenant's audit chain head (a row lock)
until its transaction ends, and every other read and write of the tenant waits on it.
The server ends such a session once it has waited that long on the client; the
transaction rolls back and nothing of it stays. A shorter limit stored for the login
cannot cut pymem's own transactions short, and a longer one (or none) cannot let them
hold the head longer. The idle timer runs only once the server has answered a whole
pipeline (its Sync): a client that stops in the middle of one, or a network that holds
back its last message (possible without TLS), is bounded by the transaction timeout,
which PostgreSQL 16 does not have.

The pins go first, with ``BEGIN``, in one pipeline: a timeout would otherwise apply to
the statements before them, and an idle-in-transaction timeout to the round trip after
``BEGIN``. A pipeline such a timeout cancelled before its pins were in force ran
nothing, and is sent again (:func:`cancelled_in_pins`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.pq import ExecStatus, TransactionStatus

from .config import transaction_limits

_TIMEOUTS_OFF = ("SET LOCAL statement_timeout = 0", "SET LOCAL lock_timeout = 0")
# First, right after BEGIN: a transaction timeout stored for the login starts its timer at
# BEGIN and ends the session (not the statement: no retry helps), so it is stopped first.
_TRANSACTION_TIMER_OFF = ("SET LOCAL transaction_timeout = 0",)
# Every commit waits for its WAL flush (and a synchronous standby's, where there is one):
# with "off" stored for the login, a crash would lose acknowledged writes, deletes and
# erasures, and the intents of reads that returned rows, with no trace in the audit log.
_FLUSHED = "SET LOCAL synchronous_commit = on"
PIN_ATTEMPTS = 3  # sends of a pipeline a stored timeout cancelled before its pins (cancelled_in_pins)
_COMPLETED = (ExecStatus.COMMAND_OK, ExecStatus.TUPLES_OK)


def timeout_pins(conn) -> tuple[str, ...]:
    """The pins this server knows, one statement each (for pipeline mode)."""
    idle_s, transaction_s = transaction_limits()
    newer = conn.info.server_version >= 170000
    # Whole milliseconds, at least one: the settings are validated numbers, never text.
    pins = (*(_TRANSACTION_TIMER_OFF if newer else ()), *_TIMEOUTS_OFF,
            f"SET LOCAL idle_in_transaction_session_timeout = {max(1, round(idle_s * 1000))}", _FLUSHED)
    if newer and transaction_s > 0:
        # Set after 0, the server starts the timer afresh: setting one while another runs
        # would leave the running one, started at BEGIN by a value the login stored.
        pins += (f"SET LOCAL transaction_timeout = {round(transaction_s * 1000)}",)
    return pins


def cancelled_in_pins(cursors: Sequence, pins: Sequence[bool]) -> bool:
    """Whether a pipeline that raised ``QueryCanceled`` was cancelled in a ``BEGIN`` or a pin.

    ``pins``: for each statement the pipeline was to send, whether it is a ``BEGIN`` or a
    pin; ``cursors``: those of the statements queued before the error, in order. The
    statement that failed is the first that did not complete. Before the pins, a timeout
    stored for the login still applies, and at ``1ms`` a backend descheduled for a
    millisecond during ``BEGIN`` is cancelled (A11 of the second attack round); the
    transaction ran nothing then, and the pipeline is sent again, up to PIN_ATTEMPTS
    times. A cancellation anywhere else (an operator's, or the client's) is not retried.
    """
    for n, pin in enumerate(pins):
        if n >= len(cursors) or cursors[n].pgresult is None or cursors[n].pgresult.status not in _COMPLETED:
            return pin
    return False


async def send_pinned(conn, statements: Callable[[], Sequence[tuple[Any, Any, bool]]],
                      pins: Sequence[bool]) -> list:
    """Send ``statements()`` (``(query, params, binary)`` triples) in one pipeline on an
    autocommit connection; return their cursors. ``pins``: for each, whether it is a
    ``BEGIN`` or a pin. Cancelled in one of those (:func:`cancelled_in_pins`), the
    pipeline is sent again, ``statements()`` made anew, up to PIN_ATTEMPTS times.

    Nothing is prepared (``prepare=False``): psycopg names a statement it prepares when
    it queues it, and forgets the name only when the result comes back, so a pipeline
    aborted before the server parsed it (a cancellation, or an error in an earlier
    statement) left names of statements the server never had, which the next send used
    (CI, this revision). The functions the statements call keep their plans.

    Raises:
        psycopg.Error: a statement failed (the connection may be in a failed transaction:
            the caller rolls it back).
    """
    for attempt in range(1, PIN_ATTEMPTS + 1):
        queued: list = []
        try:
            async with conn.pipeline():
                for query, params, binary in statements():
                    queued.append(await conn.execute(query, params, binary=binary, prepare=False))
            return queued
        except psycopg.errors.QueryCanceled:
            if attempt == PIN_ATTEMPTS or not cancelled_in_pins(queued, pins):
                raise
            if conn.info.transaction_status == TransactionStatus.INERROR:
                await conn.execute("ROLLBACK")
    raise AssertionError("unreachable")


def begin_statements(conn, modes: str = "") -> list[tuple[str, None]]:
    """``BEGIN`` (with ``modes``, e.g. ``ISOLATION LEVEL READ COMMITTED, READ ONLY``) and
    the pins, as ``(query, params)`` pairs for one pipeline on an autocommit connection."""
    return [(f"BEGIN {modes}".rstrip(), None), *((pin, None) for pin in timeout_pins(conn))]


@asynccontextmanager
async def autocommit(conn) -> AsyncIterator[None]:
    """Autocommit for the block, the connection's own setting restored once it is out of
    any transaction. pymem sends its own BEGIN and COMMIT in a pipeline: psycopg's
    transaction() sends a Sync right after BEGIN, and a connection that is not
    autocommit gets a BEGIN and a Sync of psycopg's before the first statement; either
    makes the server wait, idle in the transaction, for the pins."""
    was = conn.autocommit
    if not was:
        await conn.set_autocommit(True)
    try:
        yield
    finally:
        if not was and conn.info.transaction_status == TransactionStatus.IDLE:
            await conn.set_autocommit(False)


@asynccontextmanager
async def pinned_transaction(conn, statements: Sequence[tuple[Any, Any]] = (), *,
                             modes: str = "") -> AsyncIterator[list]:
    """Open a transaction on ``conn`` with the timeouts off; yield the cursors of ``statements``.

    ``BEGIN`` (with ``modes``), the pins and ``statements`` (``(query, params)``
    pairs, run in order before the block's body) go in one pipeline with one Sync at
    its end (:func:`send_pinned`): one round trip, and the server never waits idle inside
    the transaction before the pins are in force. The block commits if it ends normally and rolls
    back otherwise; an error in the pipeline is raised on entering, rolled back.

    Args:
        conn: an async connection (or pymem's sync wrapper) not inside a
            transaction; autocommit or not (its setting is restored).

    Raises:
        RuntimeError: ``conn`` is already inside a transaction.
    """
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise RuntimeError("pymem opens its own transactions: conn is already in one")
    async with autocommit(conn):
        try:
            opening = begin_statements(conn, modes)
            sent = [(query, params, False) for query, params in [*opening, *statements]]
            queued = await send_pinned(conn, lambda: sent, [n < len(opening) for n in range(len(sent))])
            yield queued[len(opening):]
        except BaseException:
            if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
                await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
