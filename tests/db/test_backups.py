"""Backups as DBAs take them (docs/operations.md, "Backups"): ``pg_dump`` by a backup login,
restored into a fresh server with pymem's roles first; and a restore without the roles,
which ``pymem migrate`` refuses and ``pymem doctor`` names."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import psycopg
import pytest
from psycopg import sql
from pymem_devtools.clusters import Cluster

from pymem import migrations
from pymem import repository as repo
from pymem.audit import verify_audit_log
from pymem.db import aconnect, connect
from pymem.doctor import check_schema
from pymem.errors import MigrationRefused
from tests.utils import vec

pytestmark = pytest.mark.single_node  # pg_dump and a second embedded server of the same major

DB, APP, BACKUP = "pymem_backup_src", "pymem_backup_app", "pymem_backup_login"
USERS = [f"backup-{n}-{uuid.uuid4()}" for n in range(2)]


@pytest.fixture(scope="module")
def source(cluster, tmp_path_factory):
    """A database with two tenants' rows, the searches' answers, and a dump of it taken by
    the backup login: (cluster, dump path, {user: [ids of each query's hits]})."""
    if cluster.bin_dir is None:
        pytest.fail("the backup suite needs the embedded server's pg_dump")
    admin = cluster.fresh_database(DB, embedding_dim=384)
    cluster.login_role(APP, ["pymem_app"])
    # The backup login: reads every table (pg_read_all_data) past row security (BYPASSRLS).
    cluster.login_role(BACKUP, ["pg_read_all_data"])
    with connect(cluster.admin_url) as su:
        su.execute(sql.SQL("ALTER ROLE {} BYPASSRLS").format(sql.Identifier(BACKUP)))
    answers = {}

    async def fill():
        conn = await aconnect(cluster.url(DB, user=APP))
        try:
            for n, user in enumerate(USERS):
                await repo.index_memory_chunks(conn, user, [
                    repo.ChunkInput("doc", "src", f"text {n}-{i}", vec(100 * n + i), {"i": i}) for i in range(20)])
                answers[user] = [[h.id for h in await repo.query_memory(conn, user, "q", vec(100 * n + q), k=5,
                                                                        rerank=False)] for q in range(3)]
        finally:
            await conn.close()

    asyncio.run(fill())
    dump = tmp_path_factory.mktemp("backup") / "pymem.dump"
    subprocess.run([str(cluster.bin_dir / "pg_dump"), "-Fc", "--create", "-f", str(dump),
                    "-d", cluster.url(DB, user=BACKUP)], check=True, capture_output=True)
    yield cluster, dump, answers, admin
    with connect(cluster.admin_url) as su:
        su.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(BACKUP)))


@pytest.fixture
def fresh_server(cluster):
    """A second, empty server of the same major version: no pymem roles on it."""
    server = Cluster(cluster.pg_version)
    yield server
    server.close()


def test_a_backup_login_without_bypassrls_cannot_dump_pymem(source):
    cluster, _, _, _ = source
    cluster.login_role("pymem_backup_norls", ["pg_read_all_data"])
    dumped = subprocess.run([str(cluster.bin_dir / "pg_dump"), "-Fc", "-f", "/dev/null",
                             "-d", cluster.url(DB, user="pymem_backup_norls")], capture_output=True, text=True)
    assert dumped.returncode != 0 and "row-level security" in dumped.stderr


async def test_a_dump_restored_with_the_roles_first_opens_searches_and_audits_as_before(source, fresh_server):
    cluster, dump, answers, _ = source
    roles = subprocess.run([str(cluster.bin_dir / "pg_dumpall"), "--roles-only", "-d", cluster.admin_url],
                           check=True, capture_output=True, text=True).stdout
    # The roles first; "role postgres already exists" and the like are expected.
    subprocess.run([fresh_server.psql(), "-q", "-d", fresh_server.admin_url, "-f", "-"], input=roles,
                   capture_output=True, text=True)
    restored = subprocess.run([str(cluster.bin_dir / "pg_restore"), "--create", "--exit-on-error", "-d",
                               fresh_server.admin_url, str(dump)], capture_output=True, text=True)
    assert restored.returncode == 0, restored.stderr
    admin = fresh_server.url(DB)
    with connect(admin) as conn:
        assert [f for f in check_schema(conn) if not f.ok] == []
        assert verify_audit_log(conn) == []
        audit_rows = conn.execute("SELECT count(*) FROM pymem.audit_log").fetchone()[0]
    conn = await aconnect(fresh_server.url(DB, user=APP))
    try:
        for n, user in enumerate(USERS):
            page = await repo.list_memory_chunks(conn, user, limit=100)
            assert sorted(h.text for h in page.hits) == sorted(f"text {n}-{i}" for i in range(20))
            assert [[h.id for h in await repo.query_memory(conn, user, "q", vec(100 * n + q), k=5, rerank=False)]
                    for q in range(3)] == answers[user]
        await repo.index_memory_chunk(conn, USERS[0], "doc", "src", "after the restore", vec(7))
    finally:
        await conn.close()
    with connect(admin) as conn:
        assert conn.execute("SELECT count(*) FROM pymem.audit_log").fetchone()[0] > audit_rows
        assert verify_audit_log(conn) == []


def test_a_restore_without_pymems_roles_is_refused_by_migrate_and_named_by_doctor(source, fresh_server):
    cluster, dump, _, _ = source
    with psycopg.connect(fresh_server.admin_url, autocommit=True) as su:
        su.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    # Without the roles, the owners and grants fail; pg_restore goes on and reports them.
    restored = subprocess.run([str(cluster.bin_dir / "pg_restore"), "-d", fresh_server.url(DB), str(dump)],
                              capture_output=True, text=True)
    assert restored.returncode != 0 and "pymem_owner" in restored.stderr
    with pytest.raises(MigrationRefused, match="restore without pymem's roles") as refused:
        migrations.upgrade(fresh_server.url(DB))
    assert "roles missing: pymem_owner, pymem_app, pymem_auditor" in str(refused.value)
    with connect(fresh_server.url(DB)) as conn:
        [finding] = check_schema(conn)
        public = conn.execute(
            "SELECT count(*) FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a"
            " WHERE p.pronamespace = 'pymem'::regnamespace AND a.grantee = 0"
            " AND a.privilege_type = 'EXECUTE'").fetchone()[0]
    assert not finding.ok and "owned by" in finding.detail and "create the roles first" in finding.detail
    if public:  # what such a restore leaves open, and the finding says
        assert f"{public} functions of schema pymem executable by PUBLIC" in finding.detail


def test_a_checkpoint_of_another_database_is_reported_not_compared(source, tmp_path, monkeypatch):
    from pymem.audit import generate_signing_key, write_checkpoint

    cluster, _, _, admin = source
    signing, verify = generate_signing_key()
    monkeypatch.setenv("PYMEM_AUDIT_SIGNING_KEY", signing)
    monkeypatch.setenv("PYMEM_AUDIT_VERIFY_KEY", verify)
    with connect(admin) as conn:
        write_checkpoint(conn, tmp_path / "cp.json")
        assert verify_audit_log(conn, tmp_path / "cp.json") == []
    other = cluster.fresh_database("pymem_backup_other", embedding_dim=384)
    with connect(other) as conn:
        [problem] = verify_audit_log(conn, tmp_path / "cp.json")
        assert "checkpoint is of database 'pymem_backup_src'" in problem.problem
        assert verify_audit_log(conn, tmp_path / "cp.json", database=DB)  # compared: its rows are not here


async def test_a_deliberate_point_in_time_restore_is_re_baselined_and_the_re_baseline_audited(cluster, tmp_path,
                                                                                            monkeypatch):
    """The database goes back to a moment T (a copy taken at T replaces it, as a PITR
    would): checkpoints written after T name rows it no longer has; ``pymem
    audit-rebaseline`` from the last checkpoint before T records the re-baseline in the
    log and signs a new checkpoint that carries it."""
    import hashlib
    import json

    from pymem.audit import generate_signing_key, write_checkpoint
    from pymem.audit_archive import canonical
    from pymem.audit_retention import rebaseline

    monkeypatch.setenv("PYMEM_AUDIT_SIGNING_KEY", generate_signing_key()[0])
    monkeypatch.delenv("PYMEM_AUDIT_VERIFY_KEY", raising=False)
    name, at_t = "pymem_rebaseline", "pymem_rebaseline_at_t"
    admin = cluster.fresh_database(name, embedding_dim=8)
    cluster.login_role(APP, ["pymem_app"])

    async def write(text: str) -> None:
        conn = await aconnect(cluster.url(name, user=APP))
        try:
            await repo.index_memory_chunk(conn, USERS[0], "doc", "src", text, vec(1, 8))
        finally:
            await conn.close()

    await write("before T")
    with connect(admin) as conn:
        write_checkpoint(conn, tmp_path / "before-t.json")
    with psycopg.connect(cluster.admin_url, autocommit=True) as su:
        su.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(at_t), sql.Identifier(name)))
    await write("after T")
    with connect(admin) as conn:
        write_checkpoint(conn, tmp_path / "after-t.json")
    with psycopg.connect(cluster.admin_url, autocommit=True) as su:  # the restore to T
        su.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
        su.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(at_t), sql.Identifier(name)))

    with connect(admin) as conn:
        assert "checkpointed row is gone" in verify_audit_log(conn, tmp_path / "after-t.json")[0].problem
        with pytest.raises(ValueError, match="nothing was recorded"):
            rebaseline(conn, tmp_path / "after-t.json", tmp_path / "new.json", "PITR, change 42")
        position = rebaseline(conn, tmp_path / "before-t.json", tmp_path / "new.json", "PITR, change 42")
        assert verify_audit_log(conn, tmp_path / "new.json") == []
        operation, digest = conn.execute(
            "SELECT operation, params_digest FROM pymem.audit_log WHERE user_hash = repeat('0', 64)"
            " AND chain_pos = %s", (position,)).fetchone()
        assert conn.execute("SELECT count(*) FROM pymem.audit_log WHERE operation = 'audit_rebaseline'"
                            ).fetchone()[0] == 1
    statement = json.loads((tmp_path / "new.json").read_text())["rebaseline"]
    assert statement.pop("recorded_at") == position and statement["reason"] == "PITR, change 42"
    assert statement["from_sha256"] == hashlib.sha256((tmp_path / "before-t.json").read_bytes()).hexdigest()
    assert (operation, bytes(digest)) == ("audit_rebaseline", hashlib.sha256(canonical(statement)).digest())
