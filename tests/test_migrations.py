"""Migration tests: base -> head -> base -> head with equal catalog snapshots,
frozen SQL files, SQL text surviving alembic untouched, and a DBA-style CLI run."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest
from sqlalchemy import create_engine

from pymem import migrations
from pymem.citus_cluster import CHECKOUT
from pymem.db import sqlalchemy_url
from pymem.scratch import Cluster
from tests.conftest import external_database

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
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'pymem' ORDER BY 1",
    "schema": """SELECT nspname, pg_get_userbyid(nspowner), coalesce(nspacl::text, '')
                   FROM pg_namespace WHERE nspname = 'pymem'""",
    "roles": """SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolbypassrls
                  FROM pg_roles WHERE rolname LIKE 'pymem\\_%' AND rolname IN
                       ('pymem_owner', 'pymem_app', 'pymem_auditor') ORDER BY 1""",
}


def snapshot(url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(url) as conn:
        return {name: conn.execute(query).fetchall() for name, query in SNAPSHOT_QUERIES.items()}


@pytest.fixture(scope="module")
def scratch_cluster():
    """A cluster of its own, so that downgrading to base really drops the roles."""
    cluster = Cluster(None if external_database() else 18)
    yield cluster
    cluster.close()


def test_round_trip_restores_the_same_catalog(scratch_cluster):
    url = scratch_cluster.fresh_database("pymem_roundtrip", embedding_dim=384)
    first = snapshot(url)
    assert first["policies"] and first["triggers"] and first["functions"] and first["indexes"]

    migrations.downgrade(url, "base")
    gone = snapshot(url)
    assert all(not rows for name, rows in gone.items() if name != "roles")
    if not external_database():  # a shared external cluster may legitimately keep roles in use elsewhere
        assert gone["roles"] == []

    migrations.upgrade(url, embedding_dim=384)
    assert snapshot(url) == first
    migrations.downgrade(url, "base")
    migrations.upgrade(url, embedding_dim=384)
    assert snapshot(url) == first


def test_single_head_and_linear_history():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrations.alembic_config())
    assert len(script.get_heads()) == 1
    revisions = list(script.walk_revisions())
    assert [r.revision for r in reversed(revisions)] == sorted(r.revision for r in revisions)


def test_every_revision_has_a_checksummed_sql_pair():
    sums = migrations.recorded_checksums()
    for path in sorted(p for p in (migrations.SQL_DIR.parent / "alembic" / "versions").iterdir()
                       if p.name[0].isdigit() and p.name.endswith(".py")):
        stem = path.name[:-3]
        for direction in ("up", "down"):
            name = f"{stem}.{direction}.sql"
            assert name in sums, f"{name} has no checksum"


def test_released_sql_files_are_unchanged():
    for name, digest in migrations.recorded_checksums().items():
        assert migrations.file_checksum(migrations.SQL_DIR / name) == digest, f"{name} was edited after release"


def test_an_edited_file_is_refused(tmp_path, monkeypatch):
    (tmp_path / "0001_x.up.sql").write_text("SELECT 1;")
    (tmp_path / "checksums.sha256").write_text("0" * 64 + "  0001_x.up.sql\n")
    monkeypatch.setattr(migrations, "SQL_DIR", tmp_path)
    with pytest.raises(migrations.ChecksumMismatch, match="changed after release"):
        migrations.read_sql("0001_x", "up")


class _AlembicOp:
    """Just what apply_sql uses of alembic.op: the bound SQLAlchemy connection."""

    def __init__(self, connection):
        self._connection = connection

    def get_bind(self):
        return self._connection


GUARD_SQL = """CREATE TABLE guard (v text);
INSERT INTO guard VALUES ('100%'), ('%s'), ('%(name)s'), (':name'), ('a::text'), ($$dollar; quoted$$);
DO $$ BEGIN RAISE NOTICE 'percent % survives', 1; END $$;
"""


def test_percent_and_colon_name_survive_apply_sql(scratch_cluster, tmp_path, monkeypatch):
    url = scratch_cluster.fresh_database("pymem_guard", migrate=False)
    path = tmp_path / "9999_guard.up.sql"
    path.write_text(GUARD_SQL)
    (tmp_path / "checksums.sha256").write_text(f"{migrations.file_checksum(path)}  {path.name}\n")
    monkeypatch.setattr(migrations, "SQL_DIR", tmp_path)
    engine = create_engine(sqlalchemy_url(url))
    with engine.begin() as connection:
        migrations.apply_sql(_AlembicOp(connection), "9999_guard", "up", settings={"pymem.guard": "50%"})
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
    cwd = CHECKOUT
    up = subprocess.run([*alembic, "-x", "embedding_dim=16", "upgrade", "head"], env=env, cwd=cwd,
                        capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    current = subprocess.run([*alembic, "current"], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert "(head)" in current.stdout
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT pymem.embedding_dim()").fetchone()[0] == 16
    bad = subprocess.run([*alembic, "-x", "embedding_dim=4096", "upgrade", "head"], env=env, cwd=cwd,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "between 1 and 2000" in bad.stderr


def test_each_revision_applies_in_its_own_session(scratch_cluster):
    """One alembic run per step, up and down, as DBAs upgrading release by release do.

    A fresh session has not loaded pgvector's library; a step that relied on an
    earlier step's session state would fail here.
    """
    from alembic.script import ScriptDirectory

    url = scratch_cluster.fresh_database("pymem_steps", embedding_dim=384, migrate=False)
    script = ScriptDirectory.from_config(migrations.alembic_config())
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    for revision in revisions:
        migrations.upgrade(url, revision)
    full = snapshot(url)
    for revision in reversed(["base", *revisions[:-1]]):
        migrations.downgrade(url, revision)
    migrations.upgrade(url, "head")
    assert snapshot(url) == full
