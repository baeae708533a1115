"""A1 of the second attack round: the tenant boundary against a login without the keys.

The attacker has the application's database login (``pymem_app``), for instance SQL
injected into one app session or a component that holds only the database
credentials, but not ``MEMORY_TENANT_HMAC_KEY``. It can read ``pg_stat_activity``
for every session of that login, and it may know tenant hashes (they are in every
row and audit row). Each test tries one way to act as a tenant and shows it fails;
the victim's rows are checked to be intact afterwards. Runs on PostgreSQL 16 and 18,
and (``--target=citus``) through the Citus coordinator, where the context reaches
the tenant's worker.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from pymem import repository as repo
from pymem.connections import check, configure, reset
from pymem.db import aconnect, connect
from pymem.reads import commit_read_intent
from pymem.security import hmac_user, keyring
from pymem.tenant import register_tenants
from tests.utils import DIM, vec

pytestmark = pytest.mark.citus

_SEARCH = ("SELECT count(*) FROM pymem.search_chunks_v2(%s::bpchar, %s::uuid, %b::public.vector, %s::int,"
           " NULL::bytea[], NULL::int[])")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@pytest.fixture(scope="module")
def admin_url(server) -> str:
    return server.fresh_database("pymem_boundary", embedding_dim=DIM)


@pytest.fixture(scope="module")
def app_url(server, admin_url) -> str:
    server.login_role("pymem_boundary_app", ["pymem_app"])
    return server.url("pymem_boundary", user="pymem_boundary_app")


async def _victim(app_url: str) -> tuple[str, str]:
    """A tenant with one row, written by the app (which holds the keys)."""
    user = f"victim-{uuid.uuid4()}"
    conn = await aconnect(app_url)
    try:
        await repo.index_memory_chunk(conn, user, "doc", "src", "secret text", vec(7))
    finally:
        await conn.close()
    return user, hmac_user(user)


async def _rows_of(app_url: str, user: str) -> int:
    conn = await aconnect(app_url)
    try:
        return len(await repo.query_memory(conn, user, "q", vec(7), k=10, rerank=False))
    finally:
        await conn.close()


async def test_pg_stat_activity_shows_another_session_of_the_login_no_hash_or_proof(app_url, second_round):
    user, user_hash = await _victim(app_url)
    proof = keyring().tenant_proof(user_hash).hex()
    victim = await aconnect(app_url)
    try:
        with connect(app_url) as attacker:
            seen = []
            for call in ("write", "search", "enter"):
                if call == "write":
                    await repo.index_memory_chunk(victim, user, "doc2", "src", "more", vec(8))
                elif call == "search":
                    await repo.query_memory(victim, user, "q", vec(8), k=3, rerank=False)
                else:  # stay idle inside the tenant transaction, its last statement on show
                    await victim.execute("BEGIN")
                    from pymem.tenant import enter_tenant_call
                    await victim.execute(*enter_tenant_call(user_hash))
                seen += [row[0] for row in attacker.execute(
                    "SELECT query FROM pg_catalog.pg_stat_activity WHERE pid = %s", (victim.info.backend_pid,))]
            await victim.execute("ROLLBACK")
    finally:
        await victim.close()
    assert any("enter_tenant" in query for query in seen), seen  # the poll did see the victim's statements
    leaked = [q for q in seen if user_hash in q or proof in q or _HEX64.search(q)]
    assert leaked == []
    second_round("A1: pg_stat_activity shows no tenant hash or proof")


@pytest.mark.parametrize("call", ["search", "get", "erase", "write", "read_intent", "search_v3", "export_v3",
                                  "purge_expired", "get_v3", "write_v3"])
async def test_a_keyless_login_that_knows_a_hash_cannot_act_as_the_tenant(app_url, call, second_round):
    user, user_hash = await _victim(app_url)
    statements = {
        "search": (_SEARCH, (user_hash, uuid.uuid4(), vec(7), 10)),
        "get": ("SELECT count(*) FROM pymem.get_chunks_v2(%s::bpchar, %s::uuid, ARRAY[gen_random_uuid()])",
                (user_hash, uuid.uuid4())),
        "erase": ("SELECT pymem.erase_tenant(%s::bpchar)", (user_hash,)),
        "write": ("SELECT pymem.delete_document(%s::bpchar, 'doc')", (user_hash,)),
        "read_intent": ("SELECT pymem.read_intent(%s::bpchar, gen_random_uuid(), 'search', sha256('x'))",
                        (user_hash,)),
        # Revision 0022's functions, expired rows included where they can be asked for.
        "search_v3": ("SELECT count(*) FROM pymem.search_chunks_v3(%s::bpchar, %s::uuid, %b::public.vector, 10,"
                      " '{}', '{}', '{}', NULL)", (user_hash, uuid.uuid4(), vec(7))),
        "export_v3": ("SELECT count(*) FROM pymem.export_chunks_v3(%s::bpchar, %s::uuid, NULL, NULL, 10, '{}', 'all')",
                      (user_hash, uuid.uuid4())),
        "purge_expired": ("SELECT pymem.purge_expired(%s::bpchar, ARRAY[gen_random_uuid()], ARRAY[sha256('x')],"
                          " ARRAY[sha256('x')])",
                          (user_hash,)),
        "get_v3": ("SELECT count(*) FROM pymem.get_chunks_v3(%s::bpchar, %s::uuid, ARRAY[gen_random_uuid()])",
                   (user_hash, uuid.uuid4())),
        "write_v3": ("SELECT pymem.write_chunks_v3(%s::bpchar, true, ARRAY[gen_random_uuid()], '{d}', '{s}',"
                     " '{x}', '{x}', '{x}', '{NULL}', '{x}', '{1}', ARRAY[%b::public.vector], 3::int2, NULL, NULL,"
                     " NULL, NULL, NULL)", (user_hash, vec(7))),
    }
    statement, params = statements[call]
    with connect(app_url) as attacker:
        # The context set by hand, as before revision 0015.
        with pytest.raises(psycopg.errors.InsufficientPrivilege), attacker.transaction():
            attacker.execute(psycopg.sql.SQL("SET LOCAL app.user_hash = {}").format(psycopg.sql.Literal(user_hash)))
            attacker.execute(statement, params)
        # A guessed proof.
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="wrong tenant proof"), attacker.transaction():
            attacker.execute("SELECT pymem.enter_tenant(%s::bpchar, %s::bytea)", (user_hash, os.urandom(32)))
    assert await _rows_of(app_url, user) == 1
    second_round(f"A1: keyless login acts as a known tenant ({call})")


async def test_a_ticket_copied_from_the_tenants_transaction_is_refused_elsewhere(app_url, second_round):
    """The ticket is never shown to other sessions; even a copied one (a log, a
    worker's activity on Citus) is bound to its backend and transaction."""
    user, user_hash = await _victim(app_url)
    victim = await aconnect(app_url)
    try:
        ticket = await commit_read_intent(victim, user_hash, "search", (vec(7), 10))
        from pymem.tenant import tenant_transaction
        async with tenant_transaction(victim, user_hash):
            copied = (await (await victim.execute("SELECT current_setting('app.tenant_ticket')")).fetchone())[0]
            count = (await (await victim.execute(
                "SELECT count(*) FROM pymem.search_chunks(%s::bpchar, %s::uuid, %b::public.vector, %s::int)",
                (user_hash, ticket, vec(7), 10))).fetchone())[0]
        assert count == 1  # control: the ticket works where it was made
        with connect(app_url) as attacker, pytest.raises(psycopg.errors.InsufficientPrivilege), \
                attacker.transaction():
            attacker.execute("SELECT set_config('app.user_hash', %s, true), set_config('app.tenant_ticket', %s, true)",
                             (user_hash, copied))
            attacker.execute("SELECT count(*) FROM pymem.search_chunks(%s::bpchar, %s::uuid, %b::public.vector,"
                             " %s::int)", (user_hash, ticket, vec(7), 10))
        # The same backend, a later transaction (a pooler hands the backend on), also
        # claiming to be a connection Citus opened for a delegated call.
        for application_name in ("pymem-app", f"citus_internal gpid={copied.split('.')[0]}"):
            await victim.execute("SELECT set_config('application_name', %s, false)", (application_name,))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                async with victim.transaction():
                    await victim.execute("SET LOCAL citus.allow_nested_distributed_execution = on")
                    await victim.execute("SELECT set_config('app.user_hash', %s, true),"
                                         " set_config('app.tenant_ticket', %s, true)", (user_hash, copied))
                    await victim.execute("SELECT pymem.erase_tenant(%s::bpchar)", (user_hash,))
    finally:
        await victim.close()
    assert await _rows_of(app_url, user) == 1
    second_round("A1: a copied context ticket replayed in another transaction")


async def test_a_tenant_from_before_proofs_is_refused_until_the_dba_registers_it(app_url, admin_url, second_round):
    user, user_hash = await _victim(app_url)
    with connect(admin_url) as admin:  # as revision 0015 leaves a tenant that had an audit chain before it
        admin.execute("UPDATE pymem.tenant_proofs SET proof_digest = NULL WHERE user_hash = %s", (user_hash,))
    with connect(app_url) as attacker:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="predates"), attacker.transaction():
            attacker.execute("SELECT pymem.enter_tenant(%s::bpchar, %s::bytea)", (user_hash, os.urandom(32)))
        with pytest.raises(psycopg.errors.InsufficientPrivilege), attacker.transaction():
            attacker.execute("SELECT pymem.register_tenant_proofs(ARRAY[%s]::bpchar[], ARRAY[%s]::bytea[])",
                             (user_hash, os.urandom(32)))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="predates"):
        await _rows_of(app_url, user)  # the app too, until the DBA registers it
    with connect(admin_url) as admin:
        assert register_tenants(admin) >= 1
        assert register_tenants(admin) == 0  # idempotent
    assert await _rows_of(app_url, user) == 1
    with connect(app_url) as attacker, pytest.raises(psycopg.errors.InsufficientPrivilege), attacker.transaction():
        attacker.execute("SELECT pymem.enter_tenant(%s::bpchar, %s::bytea)", (user_hash, os.urandom(32)))
    second_round("A1: claiming a tenant that predates proofs")


@pytest.mark.single_node
async def test_timeouts_a_login_stores_for_itself_do_not_fail_pymem_calls(server, app_url, second_round):
    """A11: ``ALTER ROLE CURRENT_USER SET statement_timeout = '1ms'`` (and the other
    timeouts) outlives DISCARD ALL and reaches every new session of the login.

    Not on Citus: there the stored setting also reaches the sessions the
    coordinator opens on the workers, whose first statements run before the
    forwarded pins (docs/threat-model.md says so); doctor's report is the defence.
    """
    from pymem.doctor import check_deployment

    login = "pymem_boundary_app"
    with connect(app_url) as attacker:
        # Also the timeouts that act between transactions (issue 27's review): the session's
        # idle timeout, and (PostgreSQL 17+) the transaction timeout, whose timer starts at BEGIN.
        newer = attacker.info.server_version >= 170000
        for setting in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout",
                        "idle_session_timeout", *(["transaction_timeout"] if newer else [])):
            attacker.execute(psycopg.sql.SQL("ALTER ROLE CURRENT_USER SET {} = '1ms'").format(
                psycopg.sql.Identifier(setting)))
    try:
        calls = 0

        async def calls_of_a_tenant(source, round_: int) -> int:
            user = f"timeouts-{uuid.uuid4()}"
            chunk_id = await repo.index_memory_chunk(source, user, "doc", "src", "text", vec(round_))
            await asyncio.sleep(0.05)  # idle between calls, past the stored idle_session_timeout
            assert [h.id for h in await repo.query_memory(source, user, "q", vec(round_), k=3, rerank=False)] \
                == [chunk_id]
            assert (await repo.get_chunk(source, user, chunk_id)).text == "text"
            assert await repo.delete_document(source, user, "doc") == 1
            return 4

        for round_ in range(5):
            conn = await aconnect(app_url)
            try:
                calls += await calls_of_a_tenant(conn, round_)
            finally:
                await conn.close()
        async with AsyncConnectionPool(app_url, min_size=2, max_size=2, open=False, configure=configure,
                                       check=check, reset=reset) as pool:
            for round_ in range(5):
                calls += await calls_of_a_tenant(pool, round_)
        assert calls == 40
        with connect(server.url("pymem_boundary")) as admin:
            findings = {f.check: f for f in check_deployment(admin, login)}
        stored = findings["no settings stored for the login"]
        assert not stored.ok and "statement_timeout" in stored.detail and "1ms" not in stored.detail
    finally:
        with connect(server.url("pymem_boundary")) as admin:
            admin.execute(psycopg.sql.SQL("ALTER ROLE {} RESET ALL").format(psycopg.sql.Identifier(login)))
    second_round("A11: timeouts stored for the app login")


def test_a_login_with_no_pymem_role_reads_no_bucket_statistics_once_doctor_passes(server, admin_url, second_round):
    """A8: another application's login on the same server reads each bucket graph's
    size and use from the statistics views while it may connect to pymem's
    database; doctor fails until CONNECT is PUBLIC's no more and the database holds
    pymem alone, and then the login cannot connect at all."""
    from pymem.doctor import check_deployment

    check = "a database of pymem's own, not open to PUBLIC"
    server.login_role("pymem_boundary_other_app", [])
    server.login_role("pymem_boundary_app", ["pymem_app"])
    outsider = server.url("pymem_boundary", user="pymem_boundary_other_app")
    with connect(admin_url) as admin:
        admin.execute("CREATE TABLE public.other_apps_orders (id int)")
        try:
            finding = {f.check: f for f in check_deployment(admin, "pymem_boundary_app")}[check]
            assert not finding.ok and "REVOKE CONNECT" in finding.detail and "public.other_apps_orders" in finding.detail
        finally:
            admin.execute("DROP TABLE public.other_apps_orders")
    with psycopg.connect(outsider) as conn:  # the leak doctor warns of
        seen = conn.execute("SELECT count(*) FROM pg_catalog.pg_stat_user_indexes"
                            " WHERE schemaname = 'pymem'").fetchone()[0]
    assert seen > 0
    with connect(admin_url) as admin:
        admin.execute("REVOKE CONNECT ON DATABASE pymem_boundary FROM PUBLIC")
        admin.execute("GRANT CONNECT ON DATABASE pymem_boundary TO pymem_app, pymem_owner")
        try:
            assert {f.check: f for f in check_deployment(admin, "pymem_boundary_app")}[check].ok
            with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
                psycopg.connect(outsider).close()
        finally:
            admin.execute("GRANT CONNECT ON DATABASE pymem_boundary TO PUBLIC")
    second_round("A8: bucket statistics read by a login with no pymem role")


def test_doctor_fails_while_the_server_logs_statements_with_their_parameters(server, admin_url):
    """A tenant's proof is a bind parameter of every tenant transaction: a statement log
    with parameters would hand it to whoever reads the log (a red-team finding)."""
    from pymem.doctor import check_deployment

    check = "no statement logged with its parameters"
    server.login_role("pymem_boundary_app", ["pymem_app"])
    database = psycopg.sql.Identifier("pymem_boundary")
    try:
        for settings, ok in (({"log_min_duration_statement": "0"}, False),
                             ({"log_min_duration_statement": "0", "log_parameter_max_length": "0"}, True)):
            with connect(admin_url) as admin:
                for name, value in settings.items():
                    admin.execute(psycopg.sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                        database, psycopg.sql.Identifier(name), psycopg.sql.Literal(value)))
            with connect(admin_url) as admin:  # a new session reads the database's settings
                assert {f.check: f.ok for f in check_deployment(admin, "pymem_boundary_app")}[check] is ok
    finally:
        with connect(admin_url) as admin:
            for name in ("log_min_duration_statement", "log_parameter_max_length"):
                admin.execute(psycopg.sql.SQL("ALTER DATABASE {} RESET {}").format(
                    database, psycopg.sql.Identifier(name)))
