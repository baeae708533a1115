"""Any connection: psycopg connections and pools, async or sync, as apps bring them.

Every public function of :mod:`pymem.repository` takes a ``source``: a
``psycopg.AsyncConnection``, a ``psycopg.Connection``, or a
``psycopg_pool.AsyncConnectionPool`` / ``ConnectionPool``. :func:`borrow` turns it
into what the implementation awaits:

* a pool lends a connection for the call and takes it back afterwards;
* a sync connection is wrapped so that the one async implementation drives it
  (:mod:`pymem.sync` runs that implementation to completion for sync callers);
* pgvector's types are registered on a connection the first time pymem sees it
  (one catalog query), and pymem's statements read tuples whatever row factory
  the app set.

A connection must not be inside a transaction when pymem gets it: each call opens
its own tenant transactions (see :mod:`pymem.tenant`), autocommit or not.

Pools: pass :func:`configure`, :func:`check` and :func:`reset` (async pools) or
:func:`configure_sync`, :func:`check_sync` and :func:`reset_sync` (sync pools) as the
pool's ``configure=``, ``check=`` and ``reset=`` callbacks. ``reset`` runs ``DISCARD ALL``
when a connection goes back to the pool, so temporary objects, session settings, roles
and prepared statements a borrower left behind are gone before the next borrower;
``check`` makes sure a connection still answers before it is lent.

Both wait at most ``PYMEM_POOL_CHECK_TIMEOUT_S`` (5 s by default) for the server. On a
network that went silent (a partition that sends no FIN or RST) a connection never
answers, and psycopg_pool runs resets on its few worker tasks: an unbounded reset
would hold a worker for good, and three of them starve the pool. A connection that does
not answer in time is closed; the pool opens another. A silence that starts while a
call is on the connection is the kernel's to detect: set ``tcp_user_timeout`` and the
keepalives in the connection string (docs/api.md, Connections).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import select
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import psycopg
from pgvector.psycopg.vector import register_vector_info
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import ExecStatus
from psycopg.rows import tuple_row
from psycopg.types import TypeInfo
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from .config import pool_check_timeout
from .errors import PgvectorMissing
from .pins import pinned_transaction

log = logging.getLogger(__name__)
T = TypeVar("T")


def _log_server_warning(diag: psycopg.errors.Diagnostic) -> None:
    """Forward the server's WARNINGs (e.g. a key nearing its seal budget) to logging."""
    if diag.severity_nonlocalized == "WARNING":
        log.warning("postgres: %s", diag.message_primary)


# Every name qualified: pgvector's register_vector() looks up "vector" on the search
# path, and psycopg's TypeInfo.fetch() names pg_type and text unqualified, so a
# temporary domain or table left on the connection before pymem first used it
# would come first (a domain named vector would see every embedding sent).
_VECTOR_TYPE_SQL = ("SELECT t.typname::pg_catalog.text, t.oid, t.typarray, t.typdelim::pg_catalog.text"
                    " FROM pg_catalog.pg_type t WHERE t.oid = pg_catalog.to_regtype('public.vector')")


def _vector_info(row: tuple | None) -> TypeInfo:
    if row is None:
        raise PgvectorMissing("the pgvector extension is not installed in this database: run the pymem migrations")
    name, oid, array_oid, delimiter = row
    return TypeInfo(name, oid, array_oid, regtype="public.vector", delimiter=delimiter)


def _configured(conn: psycopg.Connection | psycopg.AsyncConnection) -> bool:
    return conn.adapters.types.get("vector") is not None


async def configure(conn: psycopg.AsyncConnection) -> None:
    """Prepare an async connection for pymem: pgvector's types, server WARNINGs to logging.

    Use as an ``AsyncConnectionPool``'s ``configure`` callback. Idempotent.
    """
    if _configured(conn):
        return
    conn.add_notice_handler(_log_server_warning)
    with _tuple_rows(conn):  # whatever row factory the app set
        row = await _vector_row(conn)
    register_vector_info(conn, _vector_info(row))


def session_pins(conn) -> list[str]:
    """Session settings pymem makes on each connection it configures (and again after each
    pool reset, which undoes them): the timeouts that act between transactions switched
    off. A value the login stored for ``idle_session_timeout`` would end pooled sessions
    between calls, and one for ``transaction_timeout`` would start at each ``BEGIN``,
    before pymem's pins (:mod:`pymem.pins`) can stop it."""
    return ["SET idle_session_timeout = 0",
            *(["SET transaction_timeout = 0"] if conn.info.server_version >= 170000 else [])]


def startup_options(dsn: str, options: str | None = None) -> str:
    """``options`` for a new connection: ``-c idle_session_timeout=0`` before the DSN's own (or
    ``options``): sent with the startup packet, it outranks a value stored for the login
    from the session's first moment, before :func:`configure` runs."""
    given = options if options is not None else conninfo_to_dict(dsn).get("options")
    return " ".join(part for part in ("-c idle_session_timeout=0", given) if part)


async def _vector_row(conn) -> tuple | None:
    # Its own transaction: a connection that is not in autocommit mode must not
    # be left inside the implicit one the catalog query would open. Pinned, so a
    # timeout stored for the login cannot fail it; the session pins go with it.
    async with pinned_transaction(conn, [(_VECTOR_TYPE_SQL, None), *((pin, None) for pin in session_pins(conn))]) \
            as (cursor, *_):
        return await cursor.fetchone()


def configure_sync(conn: psycopg.Connection) -> None:
    """Sync twin of :func:`configure`, for a ``ConnectionPool``."""
    if _configured(conn):
        return
    conn.add_notice_handler(_log_server_warning)
    with _tuple_rows(conn):
        row = _finish(_vector_row(SyncConnectionAsAsync(conn)))
    register_vector_info(conn, _vector_info(row))


def _finish(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (pymem's async code on a sync connection)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("a coroutine on a sync connection suspended")


async def check(conn: psycopg.AsyncConnection) -> None:
    """An empty query, answered within ``PYMEM_POOL_CHECK_TIMEOUT_S``; use as an
    ``AsyncConnectionPool``'s ``check`` callback.

    Raises:
        psycopg.OperationalError: the connection did not answer in time (it is closed
            then) or is broken: the pool drops it and lends another.
    """
    await _answered_in_time(conn, "")


async def reset(conn: psycopg.AsyncConnection) -> None:
    """``DISCARD ALL``: drop what a borrower left in the session (temporary types,
    functions and tables, settings, SET ROLE, prepared statements, advisory locks).

    Use as an ``AsyncConnectionPool``'s ``reset`` callback. psycopg is made to
    forget its own prepared statements too (see :func:`_forget_prepared`);
    pgvector's adapters stay.
    The session pins (:func:`session_pins`) are made again after it.
    If the reset itself fails (a borrower left a ``statement_timeout`` short enough
    to cancel it, say), or the server does not answer within ``PYMEM_POOL_CHECK_TIMEOUT_S``
    (the connection is closed then), the error reaches the pool, which drops that
    session and opens a new one: nothing a borrower left survives either way, and no
    pool worker waits on a silent network in the reset. (psycopg_pool rolls back a
    connection given back inside a transaction before calling the reset, without a bound;
    pymem's calls give connections back outside transactions.)
    """
    await _answered_in_time(conn, "DISCARD ALL")
    _forget_prepared(conn)
    await _answered_in_time(conn, "; ".join(session_pins(conn)))


async def _answered_in_time(conn: psycopg.AsyncConnection, statement: str) -> None:
    limit = pool_check_timeout()
    autocommit = conn.autocommit
    if not autocommit:  # DISCARD ALL cannot run inside a transaction block
        await conn.set_autocommit(True)
    try:
        await asyncio.wait_for(conn.execute(statement), limit)
    except TimeoutError:
        await conn.close()
        raise _silent(limit) from None
    if not autocommit:
        await conn.set_autocommit(False)


def _silent(limit: float) -> psycopg.OperationalError:
    return psycopg.OperationalError(f"the server did not answer within {limit:g} s"
                                    " (PYMEM_POOL_CHECK_TIMEOUT_S): the connection is closed")


def _all_results(pgconn: psycopg.pq.abc.PGconn, results: list) -> bool:
    """Take the results libpq has whole; True once the last has come."""
    while not pgconn.is_busy():
        result = pgconn.get_result()
        if result is None:
            return True
        results.append(result)
    return False


def check_sync(conn: psycopg.Connection) -> None:
    """Sync twin of :func:`check`, for a ``ConnectionPool``."""
    _answered_in_time_sync(conn, b"")


def reset_sync(conn: psycopg.Connection) -> None:
    """Sync twin of :func:`reset`, for a ``ConnectionPool``."""
    _answered_in_time_sync(conn, b"DISCARD ALL")
    _forget_prepared(conn)
    _answered_in_time_sync(conn, "; ".join(session_pins(conn)).encode())


def _answered_in_time_sync(conn: psycopg.Connection, statement: bytes) -> None:
    """Run ``statement`` (outside any transaction), waiting at most the check timeout.

    psycopg's blocking calls have no deadline, so this drives libpq itself (its
    public ``pq`` interface) under the connection's lock: send, then read what is
    ready until the last result, with ``select`` bounded by the time left.
    """
    limit = pool_check_timeout()
    deadline = time.monotonic() + limit
    pgconn = conn.pgconn
    results = []
    with conn.lock:
        if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            raise psycopg.OperationalError("the connection is closed or inside a transaction")
        pgconn.send_query(statement)
        while True:
            sent = pgconn.flush() == 0
            if sent:
                pgconn.consume_input()
                if _all_results(pgconn, results):
                    break
            left = deadline - time.monotonic()
            socket = [pgconn.socket]
            if left <= 0 or not any(select.select(socket, [] if sent else socket, [], left)):
                conn.close()
                raise _silent(limit)
    failed = [r for r in results if r.status not in (ExecStatus.COMMAND_OK, ExecStatus.EMPTY_QUERY)]
    if failed:
        sqlstate = (failed[0].error_field(psycopg.pq.DiagnosticField.SQLSTATE) or b"").decode()
        raise psycopg.OperationalError(f"the server refused {statement.decode() or 'an empty query'}"
                                       f" (SQLSTATE {sqlstate or 'none'})")


def _forget_prepared(conn: psycopg.Connection | psycopg.AsyncConnection) -> None:
    """Drop psycopg's record of the statements it prepared: DISCARD ALL dropped them.

    psycopg (3.3.9, the latest) clears that record on DISCARD ALL only while the
    statement is new to its cache, i.e. the first time the connection runs it. A
    pooled connection reset again, after psycopg had prepared a statement (its
    fifth run), would then send names the server no longer knows ("prepared
    statement "_pg3_0" does not exist"). psycopg has no public call for this.
    """
    conn._prepared.clear()


class _AwaitableCursor:
    """A sync cursor behind the async cursor methods pymem calls."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: psycopg.Cursor):
        self._cursor = cursor

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchall(self) -> list:
        return self._cursor.fetchall()


class SyncConnectionAsAsync:
    """A sync psycopg connection behind the async connection methods pymem calls.

    Each method blocks, then returns: awaiting it never suspends, so the async
    implementation runs unchanged on a sync connection (see :mod:`pymem.sync`).
    """

    __slots__ = ("wrapped", "__weakref__")

    def __init__(self, conn: psycopg.Connection):
        self.wrapped = conn

    @property
    def info(self) -> psycopg.ConnectionInfo:
        return self.wrapped.info

    async def execute(self, query, params=None, *, binary: bool = False,
                      prepare: bool | None = None) -> _AwaitableCursor:
        return _AwaitableCursor(self.wrapped.execute(query, params, binary=binary, prepare=prepare))

    @property
    def autocommit(self) -> bool:
        return self.wrapped.autocommit

    async def set_autocommit(self, value: bool) -> None:
        self.wrapped.autocommit = value

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        with self.wrapped.transaction():
            yield

    @asynccontextmanager
    async def pipeline(self) -> AsyncIterator[None]:
        with self.wrapped.pipeline():
            yield


def connection_key(conn: Any) -> Any:
    """The connection a per-connection cache should key on (the sync one behind a wrapper)."""
    return getattr(conn, "wrapped", conn)


@contextmanager
def _tuple_rows(conn: psycopg.Connection | psycopg.AsyncConnection) -> Iterator[None]:
    """pymem reads rows by position: use tuples for the call, then restore the app's factory."""
    factory = conn.row_factory
    conn.row_factory = tuple_row
    try:
        yield
    finally:
        conn.row_factory = factory


def borrowing(implementation: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Let a coroutine whose first argument is a connection take any ``source`` (see :func:`borrow`)."""

    @functools.wraps(implementation)
    async def call(source: Any, *args: Any, **kwargs: Any) -> T:
        async with borrow(source) as conn:
            return await implementation(conn, *args, **kwargs)

    return call


@asynccontextmanager
async def borrow(source: Any) -> AsyncIterator[psycopg.AsyncConnection | SyncConnectionAsAsync]:
    """Yield a configured connection from ``source`` for one pymem call.

    Args:
        source: ``psycopg.AsyncConnection``, ``psycopg.Connection``,
            ``psycopg_pool.AsyncConnectionPool`` or ``psycopg_pool.ConnectionPool``.

    Raises:
        TypeError: ``source`` is none of these.
        PgvectorMissing: the database has no pgvector (not migrated).
    """
    if isinstance(source, SyncConnectionAsAsync):  # already borrowed by an outer call
        yield source
    elif isinstance(source, psycopg.AsyncConnection):
        await configure(source)
        with _tuple_rows(source):
            yield source
    elif isinstance(source, psycopg.Connection):
        configure_sync(source)
        with _tuple_rows(source):
            yield SyncConnectionAsAsync(source)
    elif isinstance(source, AsyncConnectionPool):
        async with source.connection() as conn:
            async with borrow(conn) as ready:
                yield ready
    elif isinstance(source, ConnectionPool):
        with source.connection() as conn:
            async with borrow(conn) as ready:
                yield ready
    else:
        raise TypeError("pass a psycopg connection or a psycopg_pool pool (async or sync)")

