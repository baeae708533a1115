"""A superuser's changes to what pymem runs: ``pymem doctor`` names each one, and
``pymem migrate --reapply-functions`` restores the functions, or changes nothing.

The attacker is a superuser or DBA without the keys, working through SQL. Each test
makes one change, then shows what doctor reports and what reapplying does. Doctor's
answers come from the server: a server that lies about its catalog is out of reach
(docs/threat-model.md).
"""

from __future__ import annotations

import psycopg
import pytest
from pymem_devtools.clusters import Cluster

from pymem import migrations
from pymem.doctor import check_schema
from pymem.errors import MigrationRefused
from tests.utils import external_database


@pytest.fixture(scope="module")
def server():
    """A server of this module's own: roles are cluster-wide, and these tests change them."""
    cluster = Cluster(None if external_database() else 18)
    yield cluster
    cluster.close()


@pytest.fixture
def victim(server, request) -> str:
    """A fresh database migrated to head (superuser DSN); the pymem roles as the migrations made them."""
    url = server.fresh_database(f"pymem_tamper_{request.node.name[5:25].lower()}", embedding_dim=8)
    yield url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER ROLE pymem_owner NOBYPASSRLS")


def findings(url: str) -> dict[str, tuple[bool, str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {f.check: (f.ok, f.detail) for f in check_schema(conn)}


def test_an_untouched_database_passes_every_check(victim):
    assert all(ok for ok, _ in findings(victim).values()) and len(findings(victim)) == 4


def test_a_replaced_function_is_named_and_reapplying_restores_it(victim):
    with psycopg.connect(victim, autocommit=True) as conn:
        conn.execute("CREATE OR REPLACE FUNCTION pymem.check_aad_version(p_aad_version smallint) RETURNS void"
                     " LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$ BEGIN END $$")
    ok, detail = findings(victim)["function definitions"]
    assert not ok and "function pymem.check_aad_version(smallint) differs from the shipped one" in detail
    assert migrations.reapply_functions(victim) == "0014"
    assert all(ok for ok, _ in findings(victim).values())


def test_grants_a_superuser_planted_are_revoked_by_reapplying(victim):
    with psycopg.connect(victim, autocommit=True) as conn:
        conn.execute("CREATE ROLE pymem_tamper_friend NOLOGIN")
        conn.execute("GRANT EXECUTE ON FUNCTION pymem.audit_append(char, text, text, uuid, bytea, uuid[])"
                     " TO pymem_tamper_friend")
        conn.execute("GRANT EXECUTE ON FUNCTION pymem.delete_chunks(char, text) TO pymem_app WITH GRANT OPTION")
        conn.execute("SET ROLE pymem_app")
        conn.execute("GRANT EXECUTE ON FUNCTION pymem.delete_chunks(char, text) TO PUBLIC")
        conn.execute("RESET ROLE")
    ok, detail = findings(victim)["function definitions"]
    assert not ok and "pymem.audit_append" in detail and "pymem.delete_chunks" in detail
    migrations.reapply_functions(victim)
    assert findings(victim)["function definitions"][0]
    with psycopg.connect(victim, autocommit=True) as conn:
        assert conn.execute("SELECT has_function_privilege('public', 'pymem.delete_chunks(char, text)', 'EXECUTE'),"
                            " has_function_privilege('pymem_tamper_friend',"
                            " 'pymem.audit_append(char, text, text, uuid, bytea, uuid[])', 'EXECUTE')"
                            ).fetchone() == (False, False)


@pytest.mark.parametrize("tamper, what", [
    ("CREATE FUNCTION pymem.backdoor() RETURNS int LANGUAGE sql RETURN 1", "function pymem.backdoor() is not pymem's"),
    ("CREATE AGGREGATE pymem.backdoor_sum(int) (SFUNC = int4pl, STYPE = int)", "pymem.backdoor_sum(integer) is not"),
    ("ALTER FUNCTION pymem.no_tenant() OWNER TO postgres", "function pymem.no_tenant() differs"),
])
def test_what_reapplying_cannot_restore_is_refused_and_changes_nothing(victim, tamper, what):
    with psycopg.connect(victim, autocommit=True) as conn:
        conn.execute(tamper)
        conn.execute("CREATE OR REPLACE FUNCTION pymem.check_aad_version(p_aad_version smallint) RETURNS void"
                     " LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$ BEGIN END $$")
    before = findings(victim)["function definitions"]
    assert not before[0] and what in before[1]
    with pytest.raises((MigrationRefused, psycopg.errors.InsufficientPrivilege)):
        migrations.reapply_functions(victim)
    assert findings(victim)["function definitions"] == before  # rolled back: nothing claimed, nothing half-done


def test_reapplying_resolves_names_in_pg_catalog_whatever_the_databases_search_path(victim):
    with psycopg.connect(victim, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA evil")
        conn.execute("CREATE FUNCTION evil.repeat(text, integer) RETURNS text LANGUAGE sql RETURN 'f00d'")
        dbname = conn.info.dbname
        conn.execute(psycopg.sql.SQL("ALTER DATABASE {} SET search_path = evil, pg_catalog").format(
            psycopg.sql.Identifier(dbname)))
        conn.execute("CREATE OR REPLACE FUNCTION pymem.check_aad_version(p_aad_version smallint) RETURNS void"
                     " LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$ BEGIN END $$")
    migrations.reapply_functions(victim)
    assert all(ok for ok, _ in findings(victim).values())
    with psycopg.connect(victim) as conn:
        assert conn.execute("SELECT pymem.no_tenant()").fetchone()[0] == "0" * 64


@pytest.mark.parametrize("tamper, what", [
    ("ALTER POLICY tenant_isolation ON pymem.memory_chunks USING (true)", "policy memory_chunks.tenant_isolation"),
    ("ALTER ROLE pymem_owner BYPASSRLS", "role pymem_owner differs"),
    ("ALTER TABLE pymem.memory_chunks NO FORCE ROW LEVEL SECURITY", "table memory_chunks differs"),
    ("ALTER TABLE pymem.audit_log DISABLE TRIGGER audit_log_append_only", "trigger audit_log.audit_log_append_only"),
    ("CREATE FUNCTION public.drop_rows() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;"
     " CREATE TRIGGER quiet BEFORE INSERT ON pymem.audit_log FOR EACH ROW EXECUTE FUNCTION public.drop_rows()",
     "trigger audit_log.quiet is not pymem's"),
    ("GRANT SELECT ON pymem.memory_chunks TO pymem_auditor", "table memory_chunks differs"),
    ("CREATE FUNCTION public.noop() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$;"
     " CREATE EVENT TRIGGER watch ON ddl_command_end EXECUTE FUNCTION public.noop()", "event trigger watch"),
])
def test_tables_policies_triggers_and_roles_changed_by_a_superuser_are_named(victim, tamper, what):
    with psycopg.connect(victim, autocommit=True) as conn:
        conn.execute(tamper)
    ok, detail = findings(victim)["tables, policies, triggers and roles"]
    assert not ok and what in detail
    if "EVENT TRIGGER" in tamper:
        with psycopg.connect(victim, autocommit=True) as conn:
            conn.execute("DROP EVENT TRIGGER watch")


def test_a_replaced_pgvector_distance_function_is_named(victim):
    """Inverting the cosine distance would turn every search upside down without touching a row."""
    with psycopg.connect(victim, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION public.cd_orig(public.vector, public.vector) RETURNS float8 LANGUAGE c"
                     " IMMUTABLE STRICT PARALLEL SAFE AS '$libdir/vector', 'cosine_distance'")
        conn.execute("CREATE OR REPLACE FUNCTION public.cosine_distance(public.vector, public.vector) RETURNS float8"
                     " LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE RETURN 2 - public.cd_orig($1, $2)")
    ok, detail = findings(victim)["pgvector's functions"]
    assert not ok and "cosine_distance(public.vector,public.vector)" in detail


def test_a_second_revision_row_is_refused(victim):
    with psycopg.connect(victim, autocommit=True) as conn:
        conn.execute("INSERT INTO public.alembic_version VALUES ('0013')")
        with pytest.raises(MigrationRefused, match="holds 2 revisions"):
            check_schema(conn)


def test_doctor_reads_utf8_whatever_the_databases_client_encoding(victim):
    from pymem.db import connect

    with psycopg.connect(victim, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("ALTER DATABASE {} SET client_encoding = 'SQL_ASCII'").format(
            psycopg.sql.Identifier(conn.info.dbname)))
    with connect(victim) as conn:
        assert all(f.ok for f in check_schema(conn)), check_schema(conn)
