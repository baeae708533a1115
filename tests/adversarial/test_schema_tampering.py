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
from pymem.doctor import check_deployment, check_schema
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
    with psycopg.connect(url, autocommit=True) as conn:  # roles are the server's: undo what a test did to them
        conn.execute("ALTER ROLE pymem_owner NOBYPASSRLS NOLOGIN; ALTER ROLE pymem_auditor NOLOGIN")
        conn.execute("REVOKE pymem_auditor, pymem_owner FROM pymem_app")
        conn.execute("DROP ROLE IF EXISTS pymem_tamper_login; DROP ROLE IF EXISTS pymem_tamper_super")


def findings(url: str) -> dict[str, tuple[bool, str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {f.check: (f.ok, f.detail) for f in check_schema(conn)}


def test_an_untouched_database_passes_every_check(victim):
    assert all(ok for ok, _ in findings(victim).values()) and len(findings(victim)) == 7


def test_a_replaced_function_is_named_and_reapplying_restores_it(victim):
    with psycopg.connect(victim, autocommit=True) as conn:
        conn.execute("CREATE OR REPLACE FUNCTION pymem.check_aad_version(p_aad_version smallint) RETURNS void"
                     " LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$ BEGIN END $$")
    ok, detail = findings(victim)["function definitions"]
    assert not ok and "function pymem.check_aad_version(smallint) differs from the shipped one" in detail
    assert migrations.reapply_functions(victim) == migrations.released_bundles()[-1]
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
    # An event trigger made a member of an extension is still named: only Citus's own is expected.
    ("CREATE FUNCTION public.noop() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$;"
     " CREATE EVENT TRIGGER hidden ON login EXECUTE FUNCTION public.noop();"
     " ALTER EVENT TRIGGER hidden DISABLE; ALTER EXTENSION plpgsql ADD EVENT TRIGGER hidden",
     "event trigger hidden is not pymem's"),
    # A column grant lets the app read rows without an intent or an audit row.
    ("GRANT SELECT (user_hash, text_cipher) ON pymem.memory_chunks TO pymem_app",
     "column memory_chunks.text_cipher differs"),
    # An unlogged audit log is emptied by a crash.
    ("ALTER TABLE pymem.audit_chain_heads SET UNLOGGED; ALTER TABLE pymem.audit_log SET UNLOGGED",
     "table audit_log differs"),
    # A parent table reads every tenant's rows past row security; a child plants rows without an audit row.
    ("CREATE TABLE public.mirror (user_hash bpchar); ALTER TABLE pymem.memory_chunks INHERIT public.mirror",
     "table memory_chunks differs"),
    ("CREATE TABLE public.extra () INHERITS (pymem.memory_chunks)", "table memory_chunks differs"),
    ("ALTER TABLE pymem.memory_chunks DROP CONSTRAINT memory_chunks_key_registered",
     "constraint memory_chunks.memory_chunks_key_registered is missing"),
    ("ALTER TABLE pymem.memory_chunks ALTER COLUMN created_at SET DEFAULT '2000-01-01'",
     "column memory_chunks.created_at differs"),
    # The app's role made a member of the auditor (every tenant's audit rows) or the owner.
    ("GRANT pymem_auditor TO pymem_app", "role pymem_app differs"),
    ("GRANT pymem_owner TO pymem_app", "role pymem_app differs"),
    ("ALTER ROLE pymem_auditor LOGIN", "role pymem_auditor differs"),
    # A table access method of one's own could drop or hide audit rows.
    ("CREATE ACCESS METHOD heap2 TYPE TABLE HANDLER heap_tableam_handler;"
     " ALTER TABLE pymem.audit_log SET ACCESS METHOD heap2", "table audit_log differs"),
])
def test_tables_policies_triggers_and_roles_changed_by_a_superuser_are_named(victim, tamper, what):
    with psycopg.connect(victim, autocommit=True) as conn:
        conn.execute(tamper)
    ok, detail = findings(victim)["tables, policies, triggers and roles"]
    assert not ok and what in detail


def test_a_column_retyped_to_a_domain_with_its_own_equality_is_named(victim):
    """The policy's text stays the same while its ``=`` becomes the attacker's (every tenant's rows for A)."""
    with psycopg.connect(victim, autocommit=True) as conn:
        conn.execute("CREATE DOMAIN public.tenant_hash AS bpchar;"
                     " CREATE FUNCTION public.tenant_eq(public.tenant_hash, bpchar) RETURNS boolean LANGUAGE sql"
                     "  IMMUTABLE RETURN true;"
                     " CREATE OPERATOR pg_catalog.= (LEFTARG = public.tenant_hash, RIGHTARG = bpchar,"
                     "  FUNCTION = public.tenant_eq);"
                     " DROP POLICY tenant_isolation ON pymem.memory_chunks;"
                     " ALTER TABLE pymem.memory_chunks ALTER COLUMN user_hash TYPE public.tenant_hash;"
                     " CREATE POLICY tenant_isolation ON pymem.memory_chunks FOR ALL TO pymem_app, pymem_owner"
                     "  USING (user_hash = (NULLIF(current_setting('app.user_hash', true), ''))::bpchar)"
                     "  WITH CHECK (user_hash = (NULLIF(current_setting('app.user_hash', true), ''))::bpchar)")
    found = findings(victim)
    assert not found["tables, policies, triggers and roles"][0]
    assert "column memory_chunks.user_hash differs" in found["tables, policies, triggers and roles"][1]
    ok, detail = found["nothing reaches in from outside the schema"]
    assert not ok and "operator =(public.tenant_hash,character)" in detail


@pytest.mark.parametrize("tamper, what", [
    # Replica mode skips every trigger: the audit log's append-only guard among them.
    ("ALTER DATABASE {db} SET session_replication_role = replica", "every role: session_replication_role=replica"),
    ("ALTER ROLE pymem_app IN DATABASE {db} SET app.user_hash = '" + "b" * 64 + "'",
     "pymem_app: app.user_hash=" + "b" * 64),
    ("ALTER ROLE pymem_app IN DATABASE {db} SET local_preload_libraries = 'plpgsql'",
     "pymem_app: local_preload_libraries=plpgsql"),
    ("CREATE FUNCTION public.to_text(bytea) RETURNS text LANGUAGE sql IMMUTABLE RETURN 'x';"
     " CREATE CAST (bytea AS text) WITH FUNCTION public.to_text(bytea) AS IMPLICIT", "cast (bytea AS text)"),
    # Custom settings keep the case they were given in.
    ("ALTER ROLE pymem_app IN DATABASE {db} SET \"APP.user_hash\" = 'x'", "pymem_app: APP.user_hash=x"),
    # Asynchronous commit loses the last committed read intents and audit rows in a crash.
    ("ALTER DATABASE {db} SET synchronous_commit = off", "every role: synchronous_commit=off"),
    # Made a member of an extension, an operator or function that captures pymem's expressions
    # (v_ids || id collects a read's row ids for its audit row) is still named.
    ("CREATE FUNCTION public.keep(uuid[], uuid) RETURNS uuid[] LANGUAGE sql IMMUTABLE RETURN $1;"
     " CREATE OPERATOR pg_catalog.|| (LEFTARG = uuid[], RIGHTARG = uuid, FUNCTION = public.keep);"
     " ALTER EXTENSION plpgsql ADD OPERATOR pg_catalog.||(uuid[], uuid)", "operator ||(uuid[],uuid)"),
    ("CREATE FUNCTION pg_catalog.make_interval(secs integer) RETURNS interval LANGUAGE sql IMMUTABLE"
     " RETURN interval '1 year'; ALTER EXTENSION plpgsql ADD FUNCTION pg_catalog.make_interval(integer)",
     "function make_interval(integer)"),
    # A trigger elsewhere that runs pymem's audit trigger forges audit rows for any tenant.
    ("CREATE TABLE public.inbox (user_hash char(64), id uuid, key_id int);"
     " CREATE TRIGGER inbox_audit AFTER INSERT ON public.inbox FOR EACH ROW EXECUTE FUNCTION pymem.audit_direct_write()",
     "trigger public.inbox.inbox_audit runs pymem's pymem.audit_direct_write"),
    # A view the owner owns reads every tenant's audit rows under the owner's policies.
    ("CREATE VIEW public.activity AS SELECT * FROM pymem.audit_log; ALTER VIEW public.activity OWNER TO pymem_owner",
     "view public.activity is owned by pymem_owner"),
])
def test_settings_and_catalog_additions_that_reach_into_pymem_are_named(victim, tamper, what):
    with psycopg.connect(victim, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL(tamper).format(db=psycopg.sql.Identifier(conn.info.dbname)))
    ok, detail = findings(victim)["nothing reaches in from outside the schema"]
    assert not ok and what in detail


@pytest.mark.parametrize("grant", [
    "CREATE ROLE pymem_tamper_login LOGIN IN ROLE pymem_owner",
    "CREATE ROLE pymem_tamper_super NOLOGIN SUPERUSER; CREATE ROLE pymem_tamper_login LOGIN IN ROLE pymem_tamper_super",
    "CREATE ROLE pymem_tamper_login LOGIN REPLICATION",
    "ALTER ROLE pymem_owner LOGIN",
])
def test_logins_that_can_get_past_row_security_are_listed(victim, grant):
    with psycopg.connect(victim, autocommit=True) as conn:
        conn.execute(grant)
    listed = findings(victim)["who can get past row security"][1]
    assert ("pymem_owner" if "pymem_owner LOGIN" in grant else "pymem_tamper_login") in listed


def test_logins_that_can_act_as_the_auditor_are_listed(victim):
    assert findings(victim)["who can act as a maintainer or the auditor"][1].startswith("no login but superusers")
    with psycopg.connect(victim, autocommit=True) as conn:
        conn.execute("CREATE ROLE pymem_tamper_login LOGIN IN ROLE pymem_auditor")
    assert "pymem_tamper_login (auditor)" in findings(victim)["who can act as a maintainer or the auditor"][1]


@pytest.mark.parametrize("grant, failing", [
    ("CREATE ROLE pymem_tamper_login LOGIN IN ROLE pymem_app, pymem_auditor", {"no role but pymem_app"}),
    ("CREATE ROLE pymem_tamper_login LOGIN IN ROLE pymem_app, pg_read_all_data", {"no role but pymem_app"}),
    ("CREATE ROLE pymem_tamper_login LOGIN REPLICATION IN ROLE pymem_app", {"no superuser, BYPASSRLS or REPLICATION"}),
    ("CREATE ROLE pymem_tamper_super NOLOGIN SUPERUSER;"
     " CREATE ROLE pymem_tamper_login LOGIN IN ROLE pymem_app, pymem_tamper_super",
     {"no role but pymem_app", "no superuser, BYPASSRLS or REPLICATION"}),
])
def test_an_app_login_that_reaches_more_than_pymem_app_fails_the_deployment_check(victim, grant, failing):
    with psycopg.connect(victim, autocommit=True) as conn:
        conn.execute(grant)
        checks = {f.check: f.ok for f in check_deployment(conn, "pymem_tamper_login")}
    assert checks["app role"] and {check for check, ok in checks.items() if not ok} >= failing


def test_a_replaced_pgvector_distance_function_is_named(victim):
    """Inverting the cosine distance would turn every search upside down without touching a row."""
    with psycopg.connect(victim, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION public.cd_orig(public.vector, public.vector) RETURNS float8 LANGUAGE c"
                     " IMMUTABLE STRICT PARALLEL SAFE AS '$libdir/vector', 'cosine_distance'")
        conn.execute("CREATE OR REPLACE FUNCTION public.cosine_distance(public.vector, public.vector) RETURNS float8"
                     " LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE RETURN 2 - public.cd_orig($1, $2)")
    ok, detail = findings(victim)["pgvector's functions"]
    assert not ok and "cosine_distance(public.vector,public.vector)" in detail


@pytest.mark.parametrize("tamper, what", [
    # pgvector's own library, another of its functions: the nearest neighbour becomes the farthest.
    ("CREATE OR REPLACE FUNCTION public.cosine_distance(public.vector, public.vector) RETURNS float8 LANGUAGE c"
     " IMMUTABLE STRICT PARALLEL SAFE AS '$libdir/vector', 'inner_product'", "pgvector operator <=> differs"),
    # Out of the extension, a function is no longer checked as pgvector's: its fingerprint still is.
    ("ALTER EXTENSION vector DROP FUNCTION public.vector_send(public.vector)", "pgvector type vector send differs"),
])
def test_pgvector_functions_pymem_uses_are_fingerprinted(victim, tamper, what):
    with psycopg.connect(victim, autocommit=True) as conn:
        conn.execute(tamper)
    ok, detail = findings(victim)["pgvector's functions"]
    assert not ok and what in detail


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
