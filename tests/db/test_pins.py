"""A pipeline cancelled before pymem's pins took effect is sent again; one cancelled after
them is not (A11 of the second attack round: a 1 ms statement_timeout stored for the login
applies to BEGIN and the first pin, and cancels them when the backend is descheduled)."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from pymem import pins, tenant
from pymem import repository as repo
from tests.utils import vec


@pytest.fixture
def slow_first_pin(admin_conn, monkeypatch):
    """A "pin" that sleeps past the session's statement timeout on its first run only (a
    sequence counts the runs), then BEGIN and the real pins: a stored timeout that cancels a
    pipeline before its pins, made deterministic."""
    name = f"pins_{uuid.uuid4().hex[:8]}"
    admin_conn.execute(psycopg.sql.SQL("CREATE SEQUENCE public.{} ; GRANT USAGE ON SEQUENCE public.{} TO pymem_app")
                       .format(psycopg.sql.Identifier(name), psycopg.sql.Identifier(name)))
    real = pins.begin_statements
    sleep = (psycopg.sql.SQL("SELECT pg_catalog.pg_sleep(CASE WHEN pg_catalog.nextval('public.{}') = 1"
                             " THEN 0.2 ELSE 0 END)").format(psycopg.sql.Identifier(name)), None)

    def begin_statements(conn, modes=""):
        # Before BEGIN: the cancelled pipeline leaves no transaction to roll back (as when a
        # stored timeout cancels BEGIN itself).
        return [sleep, *real(conn, modes)]

    for module in (pins, tenant):  # reads takes its BEGIN and pins from tenant_begin_statements
        monkeypatch.setattr(module, "begin_statements", begin_statements)

    def arm() -> None:
        """The next pipeline's first "pin" sleeps."""
        admin_conn.execute(psycopg.sql.SQL("ALTER SEQUENCE public.{} RESTART").format(psycopg.sql.Identifier(name)))

    def runs() -> int:
        return admin_conn.execute(psycopg.sql.SQL("SELECT last_value FROM public.{}").format(
            psycopg.sql.Identifier(name))).fetchone()[0]

    yield arm, runs
    admin_conn.execute(psycopg.sql.SQL("DROP SEQUENCE public.{}").format(psycopg.sql.Identifier(name)))


async def _timed_out_connection(app_url):
    conn = await psycopg.AsyncConnection.connect(app_url, autocommit=True)
    await conn.execute("SET statement_timeout = '50ms'")
    return conn


async def test_a_write_cancelled_before_its_pins_is_sent_again(app_url, slow_first_pin):
    arm, runs = slow_first_pin
    conn = await _timed_out_connection(app_url)
    user = f"t-{uuid.uuid4()}"
    try:
        for i in range(conn.prepare_threshold + 1):  # as above: prepared statements in the cancelled pipeline
            await repo.index_memory_chunks(conn, user, [repo.ChunkInput("d", "s", f"text {i}", vec(i))])
        arm()
        [row_id] = await repo.index_memory_chunks(conn, user, [
            repo.ChunkInput("d", "s", "text", vec(1))])
    finally:
        await conn.close()
    # The first pipeline slept past the 50 ms timeout before its pins, and the write went on.
    assert row_id and runs() >= 2


async def test_a_durable_read_cancelled_before_its_pins_is_sent_again(app_url, aconn, slow_first_pin):
    arm, runs = slow_first_pin
    user = f"t-{uuid.uuid4()}"
    await repo.upsert_memory_chunks(aconn, user, [repo.ChunkInput("d", "s", "text", vec(1), id="a")])
    conn = await _timed_out_connection(app_url)
    try:
        # Enough reads first that psycopg prepares the intent's statement in the pipeline that is
        # cancelled: sent again, it named a prepared statement the server never parsed (CI).
        for _ in range(conn.prepare_threshold):
            await repo.get_memory_chunks(conn, user, ["a"])
        arm()  # get_memory_chunks' first pipeline is its durable read (intent, then the rows)
        hits = await repo.get_memory_chunks(conn, user, ["a"])
        again = await repo.get_memory_chunks(conn, user, ["a"])
    finally:
        await conn.close()
    assert [h.text for h in hits] == ["text"] == [h.text for h in again] and runs() >= 2


async def test_a_cancellation_after_the_pins_is_not_retried(app_url, aconn):
    """pg_sleep inside the tenant transaction, after the pins: a cancel there (an operator's
    pg_cancel_backend, here the pinned-off timeout replaced by a lock wait) is raised."""
    conn = await psycopg.AsyncConnection.connect(app_url, autocommit=True)
    try:
        async with pins.pinned_transaction(conn, [("SELECT 1", None)]):
            pass
        calls = []
        real = conn.execute

        async def execute(query, params=None, **kwargs):
            calls.append(query)
            return await real(query, params, **kwargs)

        conn.execute = execute
        with pytest.raises(psycopg.errors.QueryCanceled):
            async with pins.pinned_transaction(conn, [("SET LOCAL statement_timeout = '10ms'", None),
                                                      ("SELECT pg_catalog.pg_sleep(0.2)", None)]):
                pass
        assert sum(1 for q in calls if q == "SELECT pg_catalog.pg_sleep(0.2)") == 1
    finally:
        await conn.close()


def test_cancelled_in_pins_names_the_first_statement_that_did_not_complete():
    class Done:
        pgresult = type("R", (), {"status": psycopg.pq.ExecStatus.COMMAND_OK})()

    class Skipped:
        pgresult = None

    flags = [True, True, False]
    assert pins.cancelled_in_pins([], flags)
    assert pins.cancelled_in_pins([Done(), Skipped(), Skipped()], flags)
    assert not pins.cancelled_in_pins([Done(), Done(), Skipped()], flags)
    assert not pins.cancelled_in_pins([Done(), Done(), Done()], flags)
