"""The ``pymem`` command in-process, against fresh databases on the embedded server."""

from __future__ import annotations

import asyncio
import base64
import re

import numpy as np
import psycopg
import pytest

from pymem import migrations
from pymem import repository as repo
from pymem.cli import main
from pymem.db import aconnect
from pymem.security import keyring
from tests.utils import write_ring_rows

HEAD = migrations.released_bundles()[-1]


@pytest.fixture
def cli_db(cluster, monkeypatch, request) -> str:
    """A fresh database as PYMEM_DATABASE_URL (superuser: it may act as every pymem role)."""
    admin = cluster.fresh_database(f"pymem_cli_{request.node.name[:20].lower()}", embedding_dim=8)
    monkeypatch.setenv("PYMEM_DATABASE_URL", admin)
    return admin


def _lines(capsys) -> list[str]:
    return capsys.readouterr().out.strip().splitlines()


@pytest.mark.parametrize("extra, names", [([], ["MEMORY_ENCRYPTION_KEY", "MEMORY_TENANT_HMAC_KEY"]),
                                          (["--audit"], ["PYMEM_AUDIT_SIGNING_KEY", "PYMEM_AUDIT_VERIFY_KEY"])])
def test_keygen_prints_fresh_32_byte_keys(capsys, extra, names):
    assert main(["keygen", *extra]) == 0
    first = dict(line.split("=", 1) for line in _lines(capsys))
    assert main(["keygen", *extra]) == 0
    second = dict(line.split("=", 1) for line in _lines(capsys))
    assert sorted(first) == sorted(names)
    assert all(len(base64.b64decode(v)) == 32 for v in first.values())
    assert first != second


def test_migrate_register_key_and_key_usage(cli_db, capsys):
    assert main(["migrate"]) == 0 and "migrated to head" in capsys.readouterr().out
    assert main(["register-key", "7"]) == 0 and "key id 7 registered" in capsys.readouterr().out
    assert main(["register-key", "7"]) == 0 and "already registered" in capsys.readouterr().out
    assert main(["key-usage"]) == 0


def test_doctor_fails_on_a_login_that_may_create_temp_objects(cluster, cli_db, capsys):
    cluster.login_role("pymem_cli_app", ["pymem_app"])
    assert main(["doctor", "--role", "pymem_cli_app"]) == 1
    out = capsys.readouterr().out
    assert "FAIL no temporary objects: REVOKE TEMPORARY ON DATABASE" in out and "ok   app role" in out
    assert re.search(rf"ok   function definitions: all \d+ functions are the ones revision {HEAD} ships", out)
    assert main(["doctor", "--role", "no_such_role"]) == 2
    assert capsys.readouterr().err.strip() == "pymem doctor: no such role"


def test_doctor_without_a_role_checks_the_schema(cli_db, capsys):
    assert main(["doctor"]) == 0
    lines = [re.sub(r"all \d+ ", "all N ", line) for line in capsys.readouterr().out.splitlines()]
    keys, lines = lines[-3:], lines[:-3]  # the root-key checks (0019) come last
    assert keys == [f"ok   root-key provider: new data keys are wrapped under local:{keyring().active_key_id}",
                    "ok   data keys under the current root key: all of them",
                    "ok   rows under tenant data keys: all of them"]
    assert lines[:-3] == [
        f"ok   schema revision: at {HEAD}", f"ok   function definitions: all N functions are the ones revision {HEAD} ships",
        f"ok   tables, policies, triggers and roles: all N are as revision {HEAD} made them",
        "ok   pgvector's functions: the extension's own",
        "ok   nothing reaches in from outside the schema: nothing added to pg_catalog, no trigger or object of"
        " pymem's elsewhere, no stored setting that reaches pymem"]
    assert lines[-3].startswith("ok   who can get past row security: ") and "confirm each" in lines[-3]
    assert lines[-2].startswith("ok   who can act as a maintainer or the auditor: ")
    assert lines[-1] == "ok   large tenants have solo graphs: 0 solo graphs, one per tenant of 2000+ rows"
    with psycopg.connect(cli_db, autocommit=True) as conn:
        conn.execute("CREATE OR REPLACE FUNCTION pymem.no_tenant() RETURNS char(64) LANGUAGE sql IMMUTABLE"
                     " RETURN repeat('1', 64)::char(64)")
    assert main(["doctor"]) == 1
    assert "FAIL function definitions: function pymem.no_tenant() differs from the shipped one" in \
        capsys.readouterr().out
    assert main(["migrate", "--reapply-functions"]) == 0
    assert f"re-applied the function definitions and grants of revision {HEAD}" in capsys.readouterr().out
    assert main(["doctor"]) == 0


def test_migrate_refuses_another_embedding_dimension(cli_db, capsys):
    assert main(["migrate", "--embedding-dim", "768"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stores 8-dimensional embeddings; it cannot be migrated to 768" in err
    assert main(["migrate", "--embedding-dim", "8"]) == 0


def test_a_malformed_database_url_is_one_line_that_never_shows_it(monkeypatch, capsys):
    monkeypatch.setenv("PYMEM_DATABASE_URL", "host=db password=hunter2-secret dbname")
    assert main(["doctor"]) == 2
    err = capsys.readouterr().err
    assert err == "pymem doctor: PYMEM_DATABASE_URL is not a libpq URL (postgresql://...) or key=value string\n"


def test_an_unreachable_database_is_one_line_with_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYMEM_DATABASE_URL", f"postgresql://nobody:hunter2-secret@/pymem?host={tmp_path}")
    assert main(["key-usage"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pymem key-usage: cannot reach the database:") and "check PYMEM_DATABASE_URL" in err
    assert err.count("\n") == 1 and "hunter2" not in err


def test_audit_verify_as_a_login_without_the_auditor_role_names_the_grant(cluster, cli_db, monkeypatch, capsys):
    cluster.login_role("pymem_cli_nobody", [])
    dbname = psycopg.conninfo.conninfo_to_dict(cli_db)["dbname"]
    monkeypatch.setenv("PYMEM_DATABASE_URL", cluster.url(dbname, user="pymem_cli_nobody"))
    assert main(["audit-verify"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pymem audit-verify: the database refused:") and "GRANT pymem_auditor TO" in err
    assert err.count("\n") == 1


def test_audit_verify_runs_as_an_auditor_login_whatever_its_stored_datestyle(cluster, cli_db, monkeypatch, capsys):
    """A plain pymem_auditor login: the walk and doctor's schema check both run; a
    DateStyle stored for it (which once stopped the verifier) changes nothing."""
    cluster.login_role("pymem_cli_auditor", ["pymem_auditor"])
    dbname = psycopg.conninfo.conninfo_to_dict(cli_db)["dbname"]
    with psycopg.connect(cli_db, autocommit=True) as conn:
        conn.execute("ALTER ROLE pymem_cli_auditor SET DateStyle = 'SQL, DMY'")
    try:
        monkeypatch.setenv("PYMEM_DATABASE_URL", cluster.url(dbname, user="pymem_cli_auditor"))
        assert main(["audit-verify"]) == 0
        out = capsys.readouterr().out
        assert "every hash chain verifies, recomputed here" in out and "are the ones shipped" in out
    finally:
        with psycopg.connect(cli_db, autocommit=True) as conn:
            conn.execute("ALTER ROLE pymem_cli_auditor RESET ALL")


async def _index_one(dsn: str, *, ring: bool = False) -> None:
    conn = await aconnect(dsn)
    await conn.execute("SET ROLE pymem_app")
    try:
        if ring:
            await write_ring_rows(conn, "cli-user", [repo.ChunkInput("d", "s", "t", np.ones(8, dtype=np.float32))])
        else:
            await repo.index_memory_chunk(conn, "cli-user", "d", "s", "t", np.ones(8))
    finally:
        await conn.close()


def test_rotate_key_checkpoint_and_verify(cli_db, capsys, monkeypatch, tmp_path):
    asyncio.run(_index_one(cli_db))  # the CLI runs its own event loop: this test is sync
    assert main(["rotate-key", "--no-progress"]) == 0
    assert "rows left under keys of the environment's ring: 0" in capsys.readouterr().out  # a no-op
    checkpoint = tmp_path / "audit.checkpoint"
    assert main(["audit-checkpoint", "--out", str(checkpoint)]) == 2  # no signing key yet
    assert "PYMEM_AUDIT_SIGNING_KEY is not set" in capsys.readouterr().err
    main(["keygen", "--audit"])
    keys = dict(line.split("=", 1) for line in _lines(capsys))
    monkeypatch.setenv("PYMEM_AUDIT_SIGNING_KEY", keys["PYMEM_AUDIT_SIGNING_KEY"])
    assert main(["audit-checkpoint", "--out", str(checkpoint)]) == 0
    assert "signed the heads of" in capsys.readouterr().out
    monkeypatch.delenv("PYMEM_AUDIT_SIGNING_KEY")
    monkeypatch.setenv("PYMEM_AUDIT_VERIFY_KEY", keys["PYMEM_AUDIT_VERIFY_KEY"])
    assert main(["audit-verify", "--checkpoint", str(checkpoint)]) == 0
    assert "matches the checkpoint" in capsys.readouterr().out
    checkpoint.write_text("{}")
    assert main(["audit-verify", "--checkpoint", str(checkpoint)]) == 2
    assert "not a readable pymem audit checkpoint" in capsys.readouterr().err


def test_rotate_tenant_key_needs_both_hmac_keys(cli_db, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("MEMORY_TENANT_HMAC_KEY_NEW", raising=False)
    users = tmp_path / "users.txt"
    users.write_text("u1\n")
    assert main(["rotate-tenant-key", "--user-ids-file", str(users)]) == 2
    assert "MEMORY_TENANT_HMAC_KEY_NEW" in capsys.readouterr().err


def test_export_reranker_reports_a_missing_model(capsys, tmp_path):
    assert main(["export-reranker", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    assert "pymem export-reranker:" in capsys.readouterr().err


def test_rotate_tenant_key_moves_the_listed_users(cli_db, capsys, keys, tmp_path):
    from pymem.security import generate_key

    keys.set(MEMORY_TENANT_HMAC_KEY=generate_key(), MEMORY_TENANT_HMAC_KEY_NEW=generate_key())
    asyncio.run(_index_one(cli_db))
    users = tmp_path / "users.txt"
    users.write_text("cli-user\n")
    assert main(["rotate-tenant-key", "--user-ids-file", str(users)]) == 0
    assert "moved 1 rows of 1 users" in capsys.readouterr().out


def test_rotate_key_exits_3_while_rows_are_left_under_an_old_key(cli_db, capsys, keys):
    from pymem.security import generate_key

    keys.set(MEMORY_ENCRYPTION_KEY=generate_key(), MEMORY_ENCRYPTION_KEY_ID="1", MEMORY_ENCRYPTION_OLD_KEYS="")
    asyncio.run(_index_one(cli_db, ring=True))  # a row written before revision 0019, under ring key 1
    keys.set(MEMORY_ENCRYPTION_KEY=generate_key(), MEMORY_ENCRYPTION_KEY_ID="2")  # key 1 lost
    assert main(["rotate-key", "--no-progress"]) == 3
    out = capsys.readouterr().out
    assert "quarantined 1 rows" in out and "rows left under keys of the environment's ring: 1" in out


def test_distribute_refuses_a_database_without_citus(cli_db, capsys):
    assert main(["distribute"]) == 2
    assert "citus extension is not installed" in capsys.readouterr().err


def test_distribute_refuses_a_login_that_is_no_superuser(cluster, cli_db, monkeypatch, capsys):
    cluster.login_role("pymem_cli_app", ["pymem_app"])
    dbname = psycopg.conninfo.conninfo_to_dict(cli_db)["dbname"]
    monkeypatch.setenv("PYMEM_DATABASE_URL", cluster.url(dbname, user="pymem_cli_app"))
    assert main(["distribute"]) == 2
    assert "needs a superuser" in capsys.readouterr().err


def test_rotate_root_key_refuses_to_trust_the_table_unless_told(cli_db, capsys):
    """Threat model E2: a rotation re-wraps every live data key the table lists, a destroyed one
    a superuser put back included, unless a signed checkpoint says which were destroyed. The
    operator chooses, by name; nothing is connected to or re-wrapped before."""
    with pytest.raises(SystemExit) as exit_:
        main(["rotate-root-key"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--checkpoint" in err and "--unverified" in err
    with pytest.raises(SystemExit):
        main(["rotate-root-key", "--checkpoint", "c.json", "--unverified"])
    # An empty path (a script's unset variable) is refused, never taken for no checkpoint.
    assert main(["rotate-root-key", "--checkpoint", ""]) == 2
    assert "a checkpoint file is needed" in capsys.readouterr().err


def test_distribute_checks_the_shard_count():
    from pymem.distribute import distribute

    with pytest.raises(ValueError, match="shard_count"):
        distribute("dbname=unused", shard_count=0)


def test_local_db_gives_an_app_login_that_passes_doctor(tmp_path, monkeypatch, capsys):
    """What getting-started's first steps rely on: two DSNs, the app login hardened, a server left running."""
    monkeypatch.setenv("PYMEM_HOME", str(tmp_path))
    monkeypatch.delenv("PYMEM_DATABASE_URL", raising=False)
    try:
        assert main(["local-db", "--embedding-dim", "8"]) == 0
        lines = capsys.readouterr().out.splitlines()
        exports = dict(line.split(" ", 1)[1].split("  #")[0].split("=", 1) for line in lines[:2])
        assert sorted(exports) == ["APP_DATABASE_URL", "PYMEM_DATABASE_URL"]
        assert all(line.startswith("# ok") for line in lines[2:-1]) and len(lines) == 18
        assert lines[-1].startswith("# development only: local connections are trusted")
        with psycopg.connect(exports["APP_DATABASE_URL"].strip("'")) as conn:
            assert conn.execute("SELECT current_user, pymem.embedding_dim()").fetchone() == ("pymem_local_app", 8)
        assert main(["local-db", "--embedding-dim", "16"]) == 2  # the database keeps its dimension
        assert "stores 8-dimensional embeddings" in capsys.readouterr().err
    finally:
        assert main(["local-db", "--stop"]) == 0
    assert capsys.readouterr().out == "stopped the embedded server\n"
    assert main(["local-db", "--stop"]) == 0 and "was not running" in capsys.readouterr().out


def test_a_password_with_an_unencoded_at_sign_is_refused_without_showing_it(monkeypatch, capsys):
    monkeypatch.setenv("PYMEM_DATABASE_URL", "postgresql://app:S3C@RETpw@127.0.0.1:1/db")
    assert main(["doctor"]) == 2
    err = capsys.readouterr().err
    assert "write it as %40" in err and "RETpw" not in err and "S3C" not in err


def test_local_db_refuses_a_home_too_long_for_its_socket(tmp_path, monkeypatch, capsys):
    home = tmp_path / ("h" * 100)
    monkeypatch.setenv("PYMEM_HOME", str(home))
    assert main(["local-db"]) == 2
    err = capsys.readouterr().err
    assert "set PYMEM_HOME to a shorter directory" in err and not (home / "pg18").exists()


def test_verify_rows_and_rotate_key_all(cli_db, capsys):
    asyncio.run(_index_one(cli_db))
    assert main(["verify-rows", "--no-progress"]) == 0
    assert "checked 1 live rows of 1 tenants: 0 problems" in capsys.readouterr().out
    assert main(["rotate-key", "--all", "--no-progress"]) == 0
    assert "re-sealed 1 rows of 1 tenants" in capsys.readouterr().out
    with psycopg.connect(cli_db, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("UPDATE pymem.memory_chunks SET source = 'moved'")  # a change no audited write made
    assert main(["verify-rows", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "not what its latest audited write wrote" in out and "1 problems" in out


def test_index_terms_back_fills_every_tenant_and_a_listed_one(cli_db, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PYMEM_TERM_TAGS", "false")
    asyncio.run(_index_one(cli_db))  # written without keyword terms
    monkeypatch.delenv("PYMEM_TERM_TAGS")
    users = tmp_path / "users.txt"
    users.write_text("someone-else\n")
    assert main(["index-terms", "--user-ids-file", str(users), "--no-progress"]) == 0
    assert "gave keyword terms to 0 rows of 1 tenants" in capsys.readouterr().out
    assert main(["index-terms", "--all", "--no-progress"]) == 0
    assert "gave keyword terms to 1 rows of 1 tenants" in capsys.readouterr().out
    assert main(["index-terms", "--all", "--no-progress"]) == 0  # a re-run finds nothing left
    assert "gave keyword terms to 0 rows of 1 tenants" in capsys.readouterr().out


def test_index_terms_rebuild_gives_every_row_its_terms_anew(cli_db, capsys):
    asyncio.run(_index_one(cli_db))  # written with terms
    assert main(["index-terms", "--all", "--no-progress"]) == 0
    assert "gave keyword terms to 0 rows of 1 tenants" in capsys.readouterr().out
    assert main(["index-terms", "--all", "--rebuild", "--no-progress"]) == 0
    assert "gave keyword terms to 1 rows of 1 tenants" in capsys.readouterr().out


def test_purge_expired_removes_expired_chunks_of_every_tenant_or_a_listed_one(cli_db, capsys, tmp_path):
    async def write() -> None:
        conn = await aconnect(cli_db)
        await conn.execute("SET ROLE pymem_app")
        try:
            await repo.upsert_memory_chunks(conn, "cli-user", [repo.ChunkInput("d", "s", "brief", np.ones(8), ttl=1),
                                                               repo.ChunkInput("d", "s", "kept", np.ones(8))])
        finally:
            await conn.close()

    asyncio.run(write())
    asyncio.run(asyncio.sleep(1.2))
    users = tmp_path / "users.txt"
    users.write_text("someone-else\n")
    assert main(["purge-expired", "--user-ids-file", str(users), "--no-progress"]) == 0
    assert "purged 0 expired chunks of 1 tenants" in capsys.readouterr().out
    assert main(["purge-expired", "--all", "--no-progress"]) == 0
    assert "purged 1 expired chunks of 1 tenants" in capsys.readouterr().out
    with psycopg.connect(cli_db) as conn:
        assert conn.execute("SELECT count(*) FROM pymem.audit_log WHERE operation = 'purge'").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM pymem.memory_chunks").fetchone()[0] == 1
