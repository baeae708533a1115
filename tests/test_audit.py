"""Tamper-evident audit: a superuser who disables the append-only trigger and
rewrites history is caught by pymem.audit_verify() and `pymem audit-verify`."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import psycopg
import pytest

from pymem import repository as repo
from pymem.audit import verify_audit_log
from pymem.db import aconnect, connect
from pymem.migrations import PROJECT_ROOT
from pymem.security import hmac_user


@pytest.fixture
async def audited_db(cluster, request):
    """A fresh database with some audited activity by two tenants; yields its admin DSN."""
    name = f"pymem_audit_{request.node.name[:24].lower()}"
    admin = cluster.fresh_database(name, embedding_dim=8)
    conn = await aconnect(admin)
    await conn.execute("SET ROLE pymem_app")
    try:
        for user in ("audit-a", "audit-b"):
            for i in range(3):
                await repo.index_memory_chunk(conn, user, f"d{i}", "s", "t", np.ones(8) + i)
                await repo.query_memory(conn, user, "q", np.ones(8), k=2, rerank=False)
    finally:
        await conn.close()
    return admin


def tamper(admin: str, statement: str) -> None:
    """Rewrite the log as a superuser would: with the append-only trigger disabled."""
    with psycopg.connect(admin, autocommit=True) as conn, conn.transaction():
        conn.execute("ALTER TABLE pymem.audit_log DISABLE TRIGGER audit_log_append_only")
        conn.execute(statement)
        conn.execute("ALTER TABLE pymem.audit_log ENABLE TRIGGER audit_log_append_only")


def chain_rows(admin: str, user: str) -> list[int]:
    with psycopg.connect(admin) as conn:
        return [r[0] for r in conn.execute("SELECT seq FROM pymem.audit_log WHERE user_hash = %s ORDER BY chain_pos",
                                           (hmac_user(user),))]


def problems(admin: str):
    with connect(admin) as conn:
        return verify_audit_log(conn)


def test_intact_log_verifies(audited_db):
    assert problems(audited_db) == []
    assert len(chain_rows(audited_db, "audit-a")) == 6  # 3 inserts + 3 searches


def test_modified_row_is_reported(audited_db):
    seq = chain_rows(audited_db, "audit-a")[2]
    tamper(audited_db, f"UPDATE pymem.audit_log SET row_count = 99 WHERE seq = {seq}")
    found = problems(audited_db)
    assert [(p.seq, p.problem) for p in found] == [(seq, "row hash does not match (modified)")]
    assert found[0].user_hash == hmac_user("audit-a")


def test_deleted_row_is_reported(audited_db):
    seqs = chain_rows(audited_db, "audit-b")
    tamper(audited_db, f"DELETE FROM pymem.audit_log WHERE seq = {seqs[3]}")
    assert [(p.seq, p.problem) for p in problems(audited_db)] == [
        (seqs[4], "missing row(s) before this one (deleted)")]


def test_reordered_rows_are_reported(audited_db):
    first, second = chain_rows(audited_db, "audit-a")[1:3]
    # Swap two rows' places in the chain (positions 2 and 3); the unique
    # (user_hash, chain_pos) constraint is deferred by going through position 0.
    tamper(audited_db, f"UPDATE pymem.audit_log SET chain_pos = 0 WHERE seq = {first};"
                       f" UPDATE pymem.audit_log SET chain_pos = 2 WHERE seq = {second};"
                       f" UPDATE pymem.audit_log SET chain_pos = 3 WHERE seq = {first}")
    assert [(p.seq, p.problem) for p in problems(audited_db)] == [(second, "out of order (reordered)")]


def test_superuser_delete_hits_the_append_only_trigger(audited_db):
    with psycopg.connect(audited_db, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only: DELETE"):
            conn.execute("DELETE FROM pymem.audit_log")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only: UPDATE"):
            conn.execute("UPDATE pymem.audit_log SET row_count = 0")


def test_owner_can_neither_rewrite_nor_truncate(audited_db):
    with psycopg.connect(audited_db, autocommit=True) as conn:
        before = conn.execute("SELECT count(*), sum(row_count) FROM pymem.audit_log").fetchone()
        with conn.transaction():
            conn.execute("SET LOCAL ROLE pymem_owner")
            # RLS gives the owner no UPDATE/DELETE policy on the log: nothing qualifies.
            assert conn.execute("DELETE FROM pymem.audit_log").rowcount == 0
            assert conn.execute("UPDATE pymem.audit_log SET row_count = 0").rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only: TRUNCATE"):
            with conn.transaction():
                conn.execute("SET LOCAL ROLE pymem_owner")
                conn.execute("TRUNCATE pymem.audit_log")
        assert conn.execute("SELECT count(*), sum(row_count) FROM pymem.audit_log").fetchone() == before
    assert problems(audited_db) == []


def test_cli_exits_1_and_names_the_row(audited_db):
    seq = chain_rows(audited_db, "audit-b")[0]
    env = {**os.environ, "PYMEM_DATABASE_URL": audited_db}
    ok = subprocess.run([sys.executable, "-m", "pymem", "audit-verify"], env=env, cwd=PROJECT_ROOT,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "verifies" in ok.stdout
    tamper(audited_db, f"UPDATE pymem.audit_log SET operation = 'get' WHERE seq = {seq}")
    bad = subprocess.run([sys.executable, "-m", "pymem", "audit-verify"], env=env, cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and f"seq {seq}" in bad.stdout and "modified" in bad.stdout
