"""Migrations: every upgrade path ends in the catalog a fresh install makes, each
downgrade restores its revision's catalog exactly, 0014 changes no function's code,
every file a database can run is frozen, each function has one editable
definition, and the generated docs and fingerprints match the SQL."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import psycopg
import pytest
from alembic.script import ScriptDirectory
from pymem_devtools.clusters import Cluster
from pymem_devtools.search_arms import BUCKETS, with_generated_arms
from pymem_devtools.sql_docs import api_reference, defining_files, schema_dump
from pymem_devtools.sql_release import Checkout, problems
from sqlalchemy import create_engine

from pymem import fingerprints, migrations
from pymem.db import sqlalchemy_url
from pymem.doctor import check_schema
from pymem.errors import ChecksumMismatch, MigrationRefused
from tests.utils import ROOT, external_database

# Everything the security model rests on, in a form independent of OIDs.
SNAPSHOT_QUERIES = {
    "tables": """SELECT c.relname, pg_get_userbyid(c.relowner), c.relrowsecurity, c.relforcerowsecurity,
                        coalesce(c.relacl::text, ''), coalesce(c.reloptions::text, '')
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = 'pymem' AND c.relkind IN ('r', 'p', 'v', 'S') ORDER BY 1""",
    "columns": """SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attstorage
                    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                    JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'pymem' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
                   ORDER BY 1, 2""",
    "policies": """SELECT tablename, policyname, permissive, roles::text, cmd, qual, with_check
                     FROM pg_policies WHERE schemaname = 'pymem' ORDER BY 1, 2""",
    "triggers": """SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
                     FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = 'pymem' AND NOT t.tgisinternal ORDER BY 1, 2""",
    "functions": """SELECT p.proname, pg_get_function_identity_arguments(p.oid), p.prosecdef,
                           coalesce(p.proconfig::text, ''), coalesce(p.proacl::text, ''),
                           pg_get_userbyid(p.proowner), md5(pg_get_functiondef(p.oid))
                      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE n.nspname = 'pymem' ORDER BY 1, 2""",
    "descriptions": """SELECT d.classoid::regclass::text, d.objoid::text, d.objsubid, d.description
                         FROM pg_description d
                        WHERE (d.classoid = 'pg_proc'::regclass
                               AND d.objoid IN (SELECT oid FROM pg_proc WHERE pronamespace = to_regnamespace('pymem')))
                           OR (d.classoid = 'pg_class'::regclass
                               AND d.objoid IN (SELECT oid FROM pg_class WHERE relnamespace = to_regnamespace('pymem')))
                        ORDER BY 1, 2, 3""",
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'pymem' ORDER BY 1",
    "schema": """SELECT nspname, pg_get_userbyid(nspowner), coalesce(nspacl::text, '')
                   FROM pg_namespace WHERE nspname = 'pymem'""",
    "default_privileges": """SELECT pg_get_userbyid(defaclrole), defaclobjtype, defaclacl::text
                               FROM pg_default_acl ORDER BY 1, 2""",
    "roles": """SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolbypassrls
                  FROM pg_roles WHERE rolname LIKE 'pymem\\_%' AND rolname IN
                       ('pymem_owner', 'pymem_app', 'pymem_auditor', 'pymem_maintainer') ORDER BY 1""",
}
# Description rows name objects by OID, which differ between databases: compare
# the functions' by signature instead.
_FUNCTION_DESCRIPTIONS = """SELECT p.oid::regprocedure::text, obj_description(p.oid, 'pg_proc')
                              FROM pg_proc p WHERE p.pronamespace = to_regnamespace('pymem') ORDER BY 1"""


def snapshot(url: str) -> dict[str, list[tuple]]:
    """The catalog of schema pymem, comparable between databases."""
    with psycopg.connect(url) as conn:
        shot = {name: conn.execute(query).fetchall() for name, query in SNAPSHOT_QUERIES.items()}
        # Sorted without the OID: a function a downgrade re-creates gets a new one.
        shot["descriptions"] = sorted((kind, sub, text) for kind, _, sub, text in shot["descriptions"])
        shot["function_descriptions"] = conn.execute(_FUNCTION_DESCRIPTIONS).fetchall()
    return shot


def revisions() -> list[str]:
    script = ScriptDirectory.from_config(migrations.alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


@pytest.fixture(scope="module")
def scratch_cluster():
    """A cluster of its own, so that downgrading to base really drops the roles."""
    cluster = Cluster(None if external_database() else 18)
    yield cluster
    cluster.close()


def test_each_downgrade_restores_the_catalog_its_revision_made(scratch_cluster):
    """One alembic run per step, up and down, as DBAs upgrading release by release do.

    A fresh session has not loaded pgvector's library; a step that relied on an
    earlier step's session state would fail here.
    """
    url = scratch_cluster.fresh_database("pymem_steps", embedding_dim=384, migrate=False)
    seen = {}
    for revision in revisions():
        migrations.upgrade(url, revision)
        seen[revision] = snapshot(url)
    assert seen[revisions()[-1]]["functions"] and seen[revisions()[-1]]["policies"]
    for revision in reversed(revisions()[:-1]):
        migrations.downgrade(url, revision)
        assert snapshot(url) == seen[revision], f"downgrading to {revision} left another catalog"
    migrations.downgrade(url, "base")
    gone = snapshot(url)
    assert all(not rows for name, rows in gone.items() if name not in ("roles", "default_privileges"))
    if not external_database():  # a shared external cluster may legitimately keep roles in use elsewhere
        assert gone["roles"] == []


def test_an_upgrade_from_every_revision_ends_where_a_fresh_install_does(scratch_cluster):
    fresh = snapshot(scratch_cluster.fresh_database("pymem_fresh", embedding_dim=384))
    for revision in revisions()[:-1]:
        url = scratch_cluster.fresh_database(f"pymem_from_{revision}", embedding_dim=384, migrate=False)
        migrations.upgrade(url, revision)
        migrations.upgrade(url, "head")
        assert snapshot(url) == fresh, f"upgrading from {revision} ends in another catalog"


# Every attribute of a function that changes what it does; bodies without comments
# or layout. Atomic SQL bodies (RETURN ...) are compared as the parse tree deparses.
_FUNCTION_CODE = """
SELECT p.oid::regprocedure::text, p.prosecdef, p.provolatile, p.proparallel, p.proleakproof, p.proisstrict,
       p.procost, p.prorows, p.proretset, p.prokind, coalesce(p.proconfig::text, ''),
       pg_get_function_result(p.oid), pg_get_function_arguments(p.oid), l.lanname, p.prosrc,
       coalesce(pg_get_function_sqlbody(p.oid), ''), coalesce(p.proacl::text, ''), pg_get_userbyid(p.proowner)
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = to_regnamespace('pymem') ORDER BY 1"""


def _code_only(source: str) -> str:
    """A function body without ``--`` comments (outside string literals) and without layout."""
    kept = []
    for line in source.split("\n"):
        quoted, cut = False, len(line)
        for i, char in enumerate(line):
            if char == "'":
                quoted = not quoted
            elif not quoted and line.startswith("--", i):
                cut = i
                break
        kept.append(line[:cut])
    return " ".join(" ".join(kept).split())


def _function_code(url: str) -> dict[str, tuple]:
    with psycopg.connect(url) as conn:
        conn.execute("SET search_path = pg_catalog")
        return {row[0]: (*row[1:14], _code_only(row[14]), *row[15:]) for row in conn.execute(_FUNCTION_CODE)}


def test_0014_moves_the_definitions_without_changing_any_functions_code(scratch_cluster):
    url = scratch_cluster.fresh_database("pymem_0014", embedding_dim=384, migrate=False)
    migrations.upgrade(url, "0013")
    before = _function_code(url)
    migrations.upgrade(url, "0014")
    after = _function_code(url)
    assert len(after) == 57
    assert after == before
    with psycopg.connect(url) as conn:  # what did change: the comments, now on every function
        undocumented = conn.execute("SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'pymem'::regnamespace"
                                    " AND obj_description(p.oid, 'pg_proc') IS NULL").fetchall()
    assert undocumented == []


def test_every_file_a_database_can_run_is_checksummed():
    recorded = migrations.recorded_checksums()
    on_disk = {f"{folder}/{path.name}" for folder in migrations.FROZEN_DIRS
               for path in (migrations.SQL_DIR / folder).iterdir() if path.name.endswith(".sql")}
    assert set(recorded) == on_disk
    for relative, digest in recorded.items():
        assert migrations.file_checksum(migrations.SQL_DIR / relative) == digest, f"{relative} was edited"


def test_each_revision_has_sql_to_run():
    for revision in revisions():
        name = next(p.stem for p in (ROOT / "pymem" / "alembic" / "versions").glob(f"{revision}_*.py"))
        history = [(migrations.SQL_DIR / "history" / f"{name}.{d}.sql").is_file() for d in ("up", "down")]
        if revision <= "0013":
            assert history == [True, True], name
        else:
            assert history == [False, False], f"{name} is after 0013: its SQL belongs in schema/ and released/"
            schema = (migrations.SQL_DIR / "schema" / f"{name}.up.sql").is_file()
            assert schema or revision in migrations.released_bundles(), f"{name} runs nothing"


def _frozen_copy(tmp_path, monkeypatch, relative: str, text: str, recorded: str | None) -> None:
    (tmp_path / relative).parent.mkdir(parents=True)
    (tmp_path / relative).write_text(text)
    (tmp_path / "checksums.sha256").write_text("" if recorded is None else f"{recorded}  {relative}\n")
    monkeypatch.setattr(migrations, "SQL_DIR", tmp_path)


def test_an_edited_file_is_refused(tmp_path, monkeypatch):
    _frozen_copy(tmp_path, monkeypatch, "history/0001_x.up.sql", "SELECT 1;", "0" * 64)
    with pytest.raises(ChecksumMismatch, match="changed after release"):
        migrations.frozen_sql("history/0001_x.up.sql")


def test_a_file_without_a_checksum_is_refused(tmp_path, monkeypatch):
    _frozen_copy(tmp_path, monkeypatch, "released/0099.sql", "SELECT 1;", None)
    with pytest.raises(ChecksumMismatch, match="not listed"):
        migrations.frozen_sql("released/0099.sql")


def test_the_editable_functions_are_the_released_head():
    """Editing functions/ without cutting a revision fails here, naming the fix."""
    assert problems(Checkout(ROOT)) == []


def test_the_generated_search_arms_match_the_bucket_0_arm():
    text = (migrations.SQL_DIR / "functions" / "61_search_rows.sql").read_text()
    assert with_generated_arms(text) == text
    for bucket in range(BUCKETS):
        assert text.count(f"WHEN {bucket} THEN") == 1
        assert text.count(f"pymem.search_bucket(c.user_hash) OPERATOR(pg_catalog.=) {bucket}\n") == 1


def test_a_stale_arm_is_found(tmp_path):
    text = (migrations.SQL_DIR / "functions" / "61_search_rows.sql").read_text()
    edited = text.replace("OPERATOR(pg_catalog.=) 17\n", "OPERATOR(pg_catalog.=) 18\n")
    assert edited != text and with_generated_arms(edited) == text


def test_each_function_has_exactly_one_editable_definition(admin_url):
    defined = re.compile(r"^CREATE OR REPLACE FUNCTION pymem\.(\w+)\(", re.M)
    named = [name for path in Checkout(ROOT).function_files() for name in defined.findall(path.read_text())]
    with psycopg.connect(admin_url) as conn:
        catalog = [r[0] for r in conn.execute("SELECT proname FROM pg_proc"
                                              " WHERE pronamespace = 'pymem'::regnamespace ORDER BY 1")]
    assert len(set(catalog)) == len(catalog), "overloaded names: match definitions by signature instead"
    assert sorted(named) == catalog
    assert set(defining_files(Checkout(ROOT))) == set(catalog)


def test_the_generated_docs_and_fingerprints_match_a_fresh_database(scratch_cluster):
    if scratch_cluster.bin_dir is None:
        pytest.skip("needs the embedded server's pg_dump; CI runs embedded")
    url = scratch_cluster.fresh_database("pymem_docs", embedding_dim=384)
    checkout = Checkout(ROOT)
    with psycopg.connect(url) as conn:
        assert api_reference(conn, checkout) == (ROOT / "docs" / "sql-api.md").read_text(), "pymem-dev sql docs"
        shipped = fingerprints.file_text(fingerprints.on_server(conn))
    head = migrations.head_revision()
    assert shipped == (migrations.SQL_DIR / "released" / f"{head}.fingerprints").read_text(), "pymem-dev sql docs"
    assert schema_dump(scratch_cluster.bin_dir / "pg_dump", url) == (ROOT / "docs" / "schema.sql").read_text()


def test_doctor_and_reapply_want_the_head_revision(scratch_cluster):
    url = scratch_cluster.fresh_database("pymem_old", embedding_dim=384, migrate=False)
    migrations.upgrade(url, "0013")
    with psycopg.connect(url, autocommit=True) as conn:
        (finding,) = check_schema(conn)
    assert not finding.ok and "at revision 0013" in finding.detail and "pymem migrate" in finding.detail
    with pytest.raises(MigrationRefused, match="at 0013"):
        migrations.reapply_functions(url)


def test_a_migration_to_another_embedding_dimension_is_refused(scratch_cluster):
    url = scratch_cluster.fresh_database("pymem_dim", embedding_dim=16)
    with pytest.raises(MigrationRefused, match="16-dimensional embeddings; it cannot be migrated to 32"):
        migrations.upgrade(url, embedding_dim=32)
    migrations.upgrade(url, embedding_dim=16)  # the same dimension, or none, is fine
    migrations.upgrade(url)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT pymem.embedding_dim()").fetchone()[0] == 16


class _AlembicOp:
    """Just what run_sql uses of alembic.op: the bound SQLAlchemy connection."""

    def __init__(self, connection):
        self._connection = connection

    def get_bind(self):
        return self._connection


GUARD_SQL = """CREATE TABLE guard (v text);
INSERT INTO guard VALUES ('100%'), ('%s'), ('%(name)s'), (':name'), ('a::text'), ($$dollar; quoted$$);
DO $$ BEGIN RAISE NOTICE 'percent % survives', 1; END $$;
"""


def test_percent_and_colon_name_survive_run_sql(scratch_cluster):
    url = scratch_cluster.fresh_database("pymem_guard", migrate=False)
    engine = create_engine(sqlalchemy_url(url))
    with engine.begin() as connection:
        migrations.run_sql(_AlembicOp(connection), GUARD_SQL, settings={"pymem.guard": "50%"})
        assert connection.exec_driver_sql("SELECT current_setting('pymem.guard')").scalar() == "50%"
    engine.dispose()
    with psycopg.connect(url) as conn:
        values = [r[0] for r in conn.execute("SELECT v FROM guard")]
    assert values == ["100%", "%s", "%(name)s", ":name", "a::text", "dollar; quoted"]


def test_migrated_functions_keep_their_percent_signs(admin_url):
    with psycopg.connect(admin_url) as conn:
        body = conn.execute("SELECT pg_get_functiondef('pymem.audit_reject_change'::regproc)").fetchone()[0]
    assert "append-only: % is not allowed" in body


def test_alembic_cli_against_a_separate_server(scratch_cluster):
    """What a DBA runs: PYMEM_DATABASE_URL=... alembic -x embedding_dim=16 upgrade head."""
    url = scratch_cluster.fresh_database("pymem_cli", migrate=False)
    env = {**os.environ, "PYMEM_DATABASE_URL": url}
    alembic = [sys.executable, "-m", "alembic"]
    up = subprocess.run([*alembic, "-x", "embedding_dim=16", "upgrade", "head"], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    current = subprocess.run([*alembic, "current"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "(head)" in current.stdout
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT pymem.embedding_dim()").fetchone()[0] == 16
    bad = subprocess.run([*alembic, "-x", "embedding_dim=4096", "upgrade", "head"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "between 1 and 2000" in bad.stderr


def test_single_head_and_linear_history():
    script = ScriptDirectory.from_config(migrations.alembic_config())
    assert len(script.get_heads()) == 1
    assert revisions() == sorted(revisions())
