"""Service through the faults that stop it without losing data: a network that goes
silent under a pool, a client frozen inside a write, a connection cut after its COMMIT
was sent. Each test shows that service goes on, that nothing is lost or stored twice,
and that the audit log still verifies."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from pymem_devtools.clusters import as_server_user, free_port

from pymem import connections
from pymem import repository as repo
from pymem.audit import verify_audit_log
from pymem.db import aconnect, connect
from pymem.errors import CommitUnknown, DuplicateId
from pymem.security import hmac_user
from tests.fault_proxy import FaultProxy
from tests.utils import vec

pytestmark = pytest.mark.single_node  # the proxy stands in front of one server's socket

# A hang guard, not a timing claim: a call that has not returned after this long hangs.
HANG_S = 60


@pytest.fixture
def proxy(cluster, app_url):
    proxy = FaultProxy(app_url)
    yield proxy
    proxy.close()


@pytest.fixture
def quick_checks(monkeypatch):
    monkeypatch.setenv("PYMEM_POOL_CHECK_TIMEOUT_S", "0.5")


async def _unprepared(url: str) -> psycopg.AsyncConnection:
    """A connection that sends each statement's text every time (psycopg sends a prepared
    statement's name instead), so that the proxy can tell a COMMIT."""
    conn = await aconnect(url)
    conn.prepare_threshold = None
    return conn


def _chunk(n: int, **fields) -> repo.ChunkInput:
    return repo.ChunkInput("doc", "src", f"text {n}", vec(n), **fields)


async def test_a_pool_serves_every_call_after_its_idle_connections_go_silent(proxy, quick_checks):
    """Three of a pool's four connections go silent (no FIN, no RST) while idle in it: each
    is dropped when the pool's check gets no answer, and all 20 calls are served."""
    user = f"silent-{uuid.uuid4()}"
    pool = AsyncConnectionPool(proxy.url(), min_size=4, max_size=4, open=False, configure=connections.configure,
                               check=connections.check, reset=connections.reset)
    await pool.open(wait=True)
    try:
        [chunk_id] = await repo.index_memory_chunks(pool, user, [_chunk(1)])
        held = [await pool.getconn() for _ in range(3)]  # three idle connections, as the pool left them
        for conn in held:
            await pool.putconn(conn)
        assert proxy.silence() == 4

        async def call() -> str:
            return (await repo.get_chunk(pool, user, chunk_id)).text

        served = [await asyncio.wait_for(call(), HANG_S) for _ in range(20)]
        assert served == ["text 1"] * 20
        assert proxy.silent_closed_by_client() == 4
    finally:
        await pool.close()


@pytest.mark.parametrize("reset", [connections.reset, connections.check])
async def test_a_silent_connection_is_closed_by_the_pools_reset_and_check_not_waited_on(proxy, quick_checks,
                                                                                         reset):
    conn = await aconnect(proxy.url())
    proxy.silence()
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match="did not answer"):
        await asyncio.wait_for(reset(conn), HANG_S)
    assert conn.closed and time.monotonic() - started < HANG_S


@pytest.mark.parametrize("reset", [connections.reset_sync, connections.check_sync])
def test_a_silent_connection_is_closed_by_the_sync_pools_reset_and_check(proxy, quick_checks, reset):
    with connect(proxy.url()) as conn:
        reset(conn)  # answered: nothing raised
        proxy.silence()
        with pytest.raises(psycopg.OperationalError, match="did not answer"):
            reset(conn)
        assert conn.closed


def test_a_sync_pool_serves_calls_after_its_connections_go_silent(proxy, quick_checks):
    user = f"silent-sync-{uuid.uuid4()}"
    with ConnectionPool(proxy.url(), min_size=2, max_size=2, configure=connections.configure_sync,
                        check=connections.check_sync, reset=connections.reset_sync) as pool:
        pool.wait()
        from pymem import sync
        chunk_id = sync.index_memory_chunk(pool, user, "doc", "src", "text", vec(2))
        proxy.silence()
        assert [sync.get_chunk(pool, user, chunk_id).text for _ in range(5)] == ["text"] * 5


async def test_a_writer_frozen_inside_its_transaction_frees_the_tenant(app_url, admin_url, monkeypatch):
    """A client stops inside a write, after its statements and before COMMIT, holding the
    tenant's audit chain head. The idle-in-transaction timeout pymem pins ends its session;
    the tenant's next write goes through, and the frozen write is not stored."""
    monkeypatch.setenv("PYMEM_IDLE_IN_TRANSACTION_TIMEOUT_S", "1")
    user = f"frozen-{uuid.uuid4()}"
    frozen, thaw = asyncio.Event(), asyncio.Event()
    write = repo.write_sealed_rows

    async def write_then_freeze(*args, **kwargs):
        await write(*args, **kwargs)
        frozen.set()
        await thaw.wait()  # the client sends nothing: to the server, a frozen process

    stuck, other = await aconnect(app_url), await aconnect(app_url)
    try:
        monkeypatch.setattr(repo, "write_sealed_rows", write_then_freeze)
        stuck_write = asyncio.create_task(repo.index_memory_chunks(stuck, user, [_chunk(1, id="frozen")]))
        await asyncio.wait_for(frozen.wait(), HANG_S)
        monkeypatch.setattr(repo, "write_sealed_rows", write)
        # Waits on the frozen writer's row lock until the server ends that session.
        await asyncio.wait_for(repo.index_memory_chunks(other, user, [_chunk(2, id="after")]), HANG_S)
        thaw.set()
        with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):  # the server said: not stored
            await stuck_write
        assert [hit.external_id for hit in await repo.get_memory_chunks(other, user, ["frozen", "after"])] == ["after"]
    finally:
        thaw.set()
        await stuck.close()
        await other.close()
    with connect(admin_url) as conn:
        assert verify_audit_log(conn) == []


async def test_a_batch_cut_off_after_its_commit_is_retried_safely(proxy, app_url, admin_url):
    """The connection is cut after the server received COMMIT: the client cannot know
    whether the batch is stored. CommitUnknown says so and carries the batch with its
    ids; the retry it names stores every chunk once, generated ids included."""
    user = f"cut-{uuid.uuid4()}"
    conn = await _unprepared(proxy.url())
    try:
        await repo.index_memory_chunks(conn, user, [_chunk(0, id="warm-up")])  # keys and shape cached
        proxy.cut_when_sent(b"COMMIT\x00")
        batch = [_chunk(1, id="a"), _chunk(2, id="b"), _chunk(3), _chunk(4, ttl=3600)]
        with pytest.raises(CommitUnknown) as cut:
            await repo.index_memory_chunks(conn, user, batch)
    finally:
        await conn.close()
    assert proxy.cuts == 1
    retry = cut.value.chunks
    assert [c.id for c in retry][:2] == ["a", "b"] and all(c.id for c in retry)
    assert [c.text for c in retry] == [c.text for c in batch] and retry[3].ttl is None and retry[3].expires_at
    fresh = await aconnect(app_url)
    try:
        # It had committed: the original call again fails, or would store chunk 3 twice.
        with pytest.raises(DuplicateId):
            await repo.index_memory_chunks(fresh, user, batch[:2])
        assert await repo.upsert_memory_chunks(fresh, user, retry) == [c.id for c in retry]
        assert await repo.upsert_memory_chunks(fresh, user, retry) == [c.id for c in retry]  # and again
        stored = (await repo.list_memory_chunks(fresh, user, limit=100)).hits
    finally:
        await fresh.close()
    assert sorted(hit.text for hit in stored) == [f"text {n}" for n in range(5)]
    assert {hit.external_id for hit in stored} == {"warm-up", *(c.id for c in retry)}
    with connect(admin_url) as conn:
        assert verify_audit_log(conn) == []


async def test_a_batch_cut_off_before_its_commit_is_not_stored_and_not_called_ambiguous(proxy, app_url):
    user = f"cut-early-{uuid.uuid4()}"
    conn = await _unprepared(proxy.url())
    try:
        await repo.index_memory_chunks(conn, user, [_chunk(0, id="warm-up")])
        proxy.cut_when_sent(b"SELECT pymem.write_chunks_v3", deliver=False)
        with pytest.raises(psycopg.OperationalError) as failed:
            await asyncio.wait_for(repo.index_memory_chunks(conn, user, [_chunk(1, id="a")]), HANG_S)
        assert not isinstance(failed.value, CommitUnknown)
    finally:
        await conn.close()
    assert proxy.cuts == 1
    fresh = await aconnect(app_url)
    try:
        assert [hit.external_id for hit in await repo.get_memory_chunks(fresh, user, ["warm-up", "a"])] == ["warm-up"]
    finally:
        await fresh.close()


@pytest.fixture
def crashable(cluster, admin_url, app_url):
    """A copy of the test server (pg_basebackup) that a test may crash: (superuser DSN, app
    DSN, crash-and-restart). Its WAL writer waits 10 s between flushes, so a commit that
    did not wait for its own flush is still unflushed when the server is killed."""
    if cluster.bin_dir is None:
        pytest.fail("the crash test needs the embedded server (pg_basebackup, pg_ctl)")
    source = conninfo_to_dict(cluster.admin_url)
    data = Path(tempfile.mkdtemp(prefix="pymem-crash-"))
    os.chmod(data, 0o777)
    target, port = data / "copy", free_port()
    subprocess.run(as_server_user([str(cluster.bin_dir / "pg_basebackup"), "-D", str(target), "-X", "stream",
                                    "-c", "fast", "-h", source["host"], "-p", source.get("port", "5432"),
                                    "-U", source["user"]]), check=True, capture_output=True)
    with open(target / "postgresql.conf", "a") as conf:
        conf.write(f"\nport = {port}\nunix_socket_directories = '{data}'\nwal_writer_delay = '10s'\n")

    def pg_ctl(*args: str) -> None:
        subprocess.run(as_server_user([str(cluster.bin_dir / "pg_ctl"), "-D", str(target), "-l", str(data / "log"),
                                        *args]), check=True, capture_output=True)

    def crash_and_restart() -> None:
        pg_ctl("-m", "immediate", "stop")
        pg_ctl("-w", "start")

    pg_ctl("-w", "start")
    try:
        yield (make_conninfo(admin_url, host=str(data), port=port),
               make_conninfo(app_url, host=str(data), port=port), crash_and_restart)
    finally:
        subprocess.run(as_server_user([str(cluster.bin_dir / "pg_ctl"), "-D", str(target), "-m", "immediate",
                                        "stop"]), capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


async def test_a_read_intent_outlives_a_crash_when_the_login_stored_synchronous_commit_off(crashable):
    """The intent must be on disk before the read's rows return, whatever the login stored
    for itself: ``synchronous_commit = off`` would leave it in the WAL buffers until the WAL
    writer's next flush, and a crash then would erase the trace of a read that happened."""
    admin, app, crash_and_restart = crashable
    user = f"crash-{uuid.uuid4()}"
    conn = await aconnect(app)
    try:
        await repo.index_memory_chunks(conn, user, [_chunk(1, id="a")])
    finally:
        await conn.close()
    with connect(admin) as owner:
        owner.execute("CHECKPOINT")  # the row is on disk before the login's setting changes anything
        owner.execute(psycopg.sql.SQL("ALTER ROLE {} SET synchronous_commit = off").format(
            psycopg.sql.Identifier(conninfo_to_dict(app)["user"])))
    conn = await aconnect(app)
    try:
        assert (await (await conn.execute("SHOW synchronous_commit")).fetchone())[0] == "off"
        [hit] = await repo.get_memory_chunks(conn, user, ["a"])
        assert hit.text == "text 1"
    finally:
        await conn.close()
    crash_and_restart()
    with connect(admin) as owner:
        phases = owner.execute("SELECT phase FROM pymem.audit_log WHERE user_hash = %s AND operation = 'get'",
                               (hmac_user(user),)).fetchall()
        owner.execute(psycopg.sql.SQL("ALTER ROLE {} RESET ALL").format(
            psycopg.sql.Identifier(conninfo_to_dict(app)["user"])))
    assert ("intent",) in phases


async def test_the_transaction_timeout_bounds_a_write_whatever_the_login_stored(app_url, monkeypatch):
    """PostgreSQL 17+: pymem's transaction timeout bounds its transactions, also when the login
    stored a longer one (whose timer starts at BEGIN, and which setting another value while it
    runs would leave running): pymem stops it first, then starts its own."""
    monkeypatch.setenv("PYMEM_TRANSACTION_TIMEOUT_S", "1")
    user = f"bounded-{uuid.uuid4()}"
    write = repo.write_sealed_rows

    async def slow_write(*args, **kwargs):
        await write(*args, **kwargs)
        await asyncio.sleep(2)  # inside the transaction, past the 1 s bound, under the idle timeout

    conn = await aconnect(app_url)
    try:
        if conn.info.server_version < 170000:
            pytest.skip("PostgreSQL 16 has no transaction_timeout")
        with connect(app_url) as attacker:
            attacker.execute("ALTER ROLE CURRENT_USER SET transaction_timeout = '1h'")
        fresh = await aconnect(app_url)
        monkeypatch.setattr(repo, "write_sealed_rows", slow_write)
        try:
            with pytest.raises(psycopg.errors.TransactionTimeout):
                await repo.index_memory_chunks(fresh, user, [_chunk(1, id="slow")])
        finally:
            await fresh.close()
        monkeypatch.setattr(repo, "write_sealed_rows", write)
        assert await repo.get_memory_chunks(conn, user, ["slow"]) == []
    finally:
        with connect(app_url) as attacker:
            attacker.execute("ALTER ROLE CURRENT_USER RESET transaction_timeout")
        await conn.close()
