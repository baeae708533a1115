"""Tamper-evident audit: a superuser who disables the append-only trigger and
rewrites history is caught by `pymem audit-verify`, which recomputes every chain in the client."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import numpy as np
import psycopg
import pytest

from pymem import repository as repo
from pymem.audit import verify_audit_log, verify_checkpoint, write_checkpoint
from pymem.db import aconnect, connect
from pymem.doctor import check_schema
from pymem.security import hmac_user
from tests.fixtures.fix_audit import chain_rows, more_activity, tamper, where
from tests.utils import ROOT

# Also run through a Citus coordinator (make test-citus).
pytestmark = pytest.mark.citus


def problems(admin: str):
    with connect(admin) as conn:
        return verify_audit_log(conn)


def test_intact_log_verifies(audited_db):
    assert problems(audited_db) == []
    # The first write's key load and data key (key_unwrap, key_create), 3 inserts, and 3
    # searches of two rows each (a committed intent, then the result)
    assert len(chain_rows(audited_db, "audit-a")) == 11


def test_modified_row_is_reported(audited_db):
    pos = chain_rows(audited_db, "audit-a")[2]
    tamper(audited_db, f"UPDATE pymem.audit_log SET row_count = 99 WHERE {where('audit-a', pos)}")
    found = problems(audited_db)
    assert [(p.chain_pos, p.problem) for p in found] == [(pos, "row hash does not match (modified)")]
    assert found[0].user_hash == hmac_user("audit-a")


def test_every_broken_segment_of_a_chain_is_reported(audited_db):
    first, second = chain_rows(audited_db, "audit-a")[1], chain_rows(audited_db, "audit-a")[6]
    tamper(audited_db, f"UPDATE pymem.audit_log SET row_count = 99 WHERE {where('audit-a', first)};"
                       f" UPDATE pymem.audit_log SET operation = 'get' WHERE {where('audit-a', second)}")
    assert [(p.chain_pos, p.problem) for p in problems(audited_db)] == [
        (first, "row hash does not match (modified)"), (second, "row hash does not match (modified)")]


def test_deleted_row_is_reported(audited_db):
    positions = chain_rows(audited_db, "audit-b")
    tamper(audited_db, f"DELETE FROM pymem.audit_log WHERE {where('audit-b', positions[3])}")
    assert [(p.chain_pos, p.problem) for p in problems(audited_db)] == [
        (positions[4], "missing row(s) before this one (deleted)")]


def test_reordered_rows_are_reported(audited_db):
    first, second = chain_rows(audited_db, "audit-a")[1:3]
    # Swap two rows' places in the chain; the primary key is dodged through a spare position.
    tamper(audited_db, f"UPDATE pymem.audit_log SET chain_pos = 999999 WHERE {where('audit-a', first)};"
                       f" UPDATE pymem.audit_log SET chain_pos = {first} WHERE {where('audit-a', second)};"
                       f" UPDATE pymem.audit_log SET chain_pos = {second} WHERE {where('audit-a', 999999)}")
    found = [(p.chain_pos, p.problem) for p in problems(audited_db)]
    assert (first, "previous hash does not match (a predecessor was altered, or rows were reordered)") in found


def test_rows_cut_from_the_end_of_a_chain_are_reported(audited_db):
    positions = chain_rows(audited_db, "audit-b")
    tamper(audited_db, f"DELETE FROM pymem.audit_log WHERE user_hash = '{hmac_user('audit-b')}'"
                       f" AND chain_pos > {positions[-3]}")
    assert [(p.chain_pos, p.problem) for p in problems(audited_db)] == [
        (positions[-1], f"rows missing at the end (head says {positions[-1]})")]


def test_whole_chain_deleted_with_its_head_is_caught_by_the_signed_checkpoint(audited_db, audit_keys, tmp_path,
                                                                             monkeypatch):
    checkpoint = tmp_path / "audit.checkpoint"
    with connect(audited_db) as conn:
        assert write_checkpoint(conn, checkpoint) == 2
    victim = hmac_user("audit-b")
    tamper(audited_db, f"DELETE FROM pymem.audit_log WHERE user_hash = '{victim}';"
                       f" DELETE FROM pymem.audit_chain_heads WHERE user_hash = '{victim}'")
    assert problems(audited_db) == []  # the database alone cannot tell
    # The verifier needs only the public key.
    monkeypatch.delenv("PYMEM_AUDIT_SIGNING_KEY")
    monkeypatch.setenv("PYMEM_AUDIT_VERIFY_KEY", audit_keys[1])
    with connect(audited_db) as conn:
        found = verify_checkpoint(conn, checkpoint)
    assert [(p.user_hash, p.problem) for p in found] == [(victim, "checkpointed row is gone (chain cut or deleted)")]


def test_tail_cut_and_head_rewritten_is_caught_by_the_signed_checkpoint(audited_db, audit_keys, tmp_path):
    checkpoint = tmp_path / "audit.checkpoint"
    with connect(audited_db) as conn:
        write_checkpoint(conn, checkpoint)
    victim = hmac_user("audit-a")
    last = chain_rows(audited_db, "audit-a")[-1]
    tamper(audited_db, f"DELETE FROM pymem.audit_log WHERE user_hash = '{victim}' AND chain_pos = {last};"
                       f" UPDATE pymem.audit_chain_heads h SET chain_pos = a.chain_pos, row_hash = a.row_hash"
                       f" FROM pymem.audit_log a WHERE h.user_hash = '{victim}' AND a.user_hash = h.user_hash"
                       f" AND a.chain_pos = {last - 1}")
    assert problems(audited_db) == []
    with connect(audited_db) as conn:
        assert [p.chain_pos for p in verify_checkpoint(conn, checkpoint)] == [last]


def test_a_forged_checkpoint_is_refused(audited_db, audit_keys, tmp_path, monkeypatch):
    checkpoint = tmp_path / "audit.checkpoint"
    with connect(audited_db) as conn:
        write_checkpoint(conn, checkpoint)
    body = json.loads(checkpoint.read_text())
    body["heads"] = body["heads"][:1]  # an attacker drops a chain from the checkpoint
    checkpoint.write_text(json.dumps(body))
    with connect(audited_db) as conn, pytest.raises(ValueError, match="signature does not verify"):
        verify_checkpoint(conn, checkpoint)


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
            # RLS gives the owner no UPDATE policy on the log: nothing qualifies.
            assert conn.execute("UPDATE pymem.audit_log SET row_count = 0").rowcount == 0
        # Its DELETE policy (0024) serves retention: the trigger lets a row go only before
        # its chain's signed anchor, and no chain has one.
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only: DELETE"):
            with conn.transaction():
                conn.execute("SET LOCAL ROLE pymem_owner")
                conn.execute("DELETE FROM pymem.audit_log")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only: TRUNCATE"):
            with conn.transaction():
                conn.execute("SET LOCAL ROLE pymem_owner")
                conn.execute("TRUNCATE pymem.audit_log")
        assert conn.execute("SELECT count(*), sum(row_count) FROM pymem.audit_log").fetchone() == before
    assert problems(audited_db) == []


def test_cli_exits_1_and_names_the_row(audited_db):
    pos = chain_rows(audited_db, "audit-b")[0]
    env = {**os.environ, "PYMEM_DATABASE_URL": audited_db}
    ok = subprocess.run([sys.executable, "-m", "pymem", "audit-verify"], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "verifies" in ok.stdout
    tamper(audited_db, f"UPDATE pymem.audit_log SET operation = 'get' WHERE {where('audit-b', pos)}")
    bad = subprocess.run([sys.executable, "-m", "pymem", "audit-verify"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and f"position {pos}:" in bad.stdout and "modified" in bad.stdout


# Shown against 0014 (A2): with these two in place, audit-verify --checkpoint said clean.
_REPLACED_VERIFIERS = """
CREATE OR REPLACE FUNCTION pymem.audit_verify()
    RETURNS TABLE (user_hash char(64), chain_pos bigint, problem text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT NULL::char(64), NULL::bigint, NULL::text WHERE false $$;
CREATE OR REPLACE FUNCTION pymem.audit_row_hash(p_user_hash char(64), p_chain_pos bigint) RETURNS bytea
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT decode('{forged}', 'hex') $$;
"""


def test_a_superuser_who_replaces_the_verifying_functions_does_not_change_the_answer(audited_db, audit_keys,
                                                                                     tmp_path, second_round):
    """A2: a whole chain deleted with its head, another tenant's row rewritten with a
    valid recomputed hash, and audit_verify()/audit_row_hash() replaced to say clean:
    the client recomputes every chain and the checkpointed rows itself."""
    checkpoint = tmp_path / "audit.checkpoint"
    with connect(audited_db) as conn:
        write_checkpoint(conn, checkpoint)
        checkpointed = {h[0]: h for h in json.loads(checkpoint.read_text())["heads"]}
    erased, rewritten = hmac_user("audit-b"), hmac_user("audit-a")
    last = chain_rows(audited_db, "audit-a")[-1]
    tamper(audited_db,
           f"DELETE FROM pymem.audit_log WHERE user_hash = '{erased}';"
           f" DELETE FROM pymem.audit_chain_heads WHERE user_hash = '{erased}';"
           f" UPDATE pymem.audit_log a SET chunk_ids = '{{}}', row_count = 0,"
           f" row_hash = pymem.audit_row_digest(a.prev_hash, a.user_hash, a.chain_pos, a.at, a.db_role, a.operation,"
           f" a.phase, a.ticket, a.params_digest, '{{}}', 0, a.txid) WHERE {where('audit-a', last)};"
           f" UPDATE pymem.audit_chain_heads h SET row_hash = a.row_hash FROM pymem.audit_log a"
           f" WHERE h.user_hash = '{rewritten}' AND a.user_hash = h.user_hash AND a.chain_pos = h.chain_pos")
    with psycopg.connect(audited_db, autocommit=True) as conn:
        conn.execute(_REPLACED_VERIFIERS.format(forged=checkpointed[rewritten][2]))
        assert conn.execute("SELECT count(*) FROM pymem.audit_verify()").fetchone()[0] == 0  # the server says clean
    with connect(audited_db) as conn:
        assert verify_audit_log(conn) == []  # a rewrite with valid hashes: only the checkpoint can tell
        found = {(p.user_hash, p.problem) for p in verify_checkpoint(conn, checkpoint)}
    assert found == {(erased, "checkpointed row is gone (chain cut or deleted)"),
                     (rewritten, "checkpointed row has changed")}
    with connect(audited_db) as conn:  # and audit-verify names the replaced functions (doctor's check)
        [functions] = [f for f in check_schema(conn) if f.check == "function definitions"]
    assert not functions.ok and "pymem.audit_verify()" in functions.detail and "pymem.audit_row_hash" in functions.detail
    second_round("A2: replaced verifying functions hide a deleted chain and a rewritten row")


def test_a_checkpoint_signs_the_chains_the_walk_found_not_what_the_server_lists(audited_db, audit_keys, tmp_path):
    """Replacing audit_heads() to leave a chain out of the checkpoint, then deleting it."""
    with psycopg.connect(audited_db, autocommit=True) as conn:
        conn.execute("CREATE OR REPLACE FUNCTION pymem.audit_heads()"
                     " RETURNS TABLE (user_hash char(64), chain_pos bigint, row_hash bytea)"
                     " LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
                     " AS $$ SELECT NULL::char(64), NULL::bigint, NULL::bytea WHERE false $$")
    checkpoint = tmp_path / "audit.checkpoint"
    with connect(audited_db) as conn:
        assert write_checkpoint(conn, checkpoint) == 2
    victim = hmac_user("audit-b")
    tamper(audited_db, f"DELETE FROM pymem.audit_log WHERE user_hash = '{victim}';"
                       f" DELETE FROM pymem.audit_chain_heads WHERE user_hash = '{victim}'")
    with connect(audited_db) as conn:
        assert [(p.user_hash, p.problem) for p in verify_checkpoint(conn, checkpoint)] == [
            (victim, "checkpointed row is gone (chain cut or deleted)")]


def test_a_log_that_does_not_verify_is_not_signed(audited_db, audit_keys, tmp_path):
    tamper(audited_db, f"UPDATE pymem.audit_log SET row_count = 99 WHERE {where('audit-a', 1)}")
    with connect(audited_db) as conn, pytest.raises(ValueError, match="does not verify"):
        write_checkpoint(conn, tmp_path / "audit.checkpoint")
    assert not (tmp_path / "audit.checkpoint").exists()


def test_impossible_and_future_times_are_reported_not_fatal(audited_db):
    """A row dated 'infinity' (which no pymem write makes) reads as modified; a chain head
    moved to the year 2999 dates every later row then, and those rows are reported."""
    tamper(audited_db, f"UPDATE pymem.audit_log SET at = 'infinity' WHERE {where('audit-a', 1)};"
                       f" UPDATE pymem.audit_chain_heads SET at = '2999-01-01' WHERE user_hash = '{hmac_user('audit-b')}'")

    async def write_one() -> None:
        conn = await aconnect(audited_db)
        try:
            await repo.index_memory_chunk(conn, "audit-b", "late", "s", "t", np.ones(8))
        finally:
            await conn.close()

    asyncio.run(write_one())
    found = {(p.user_hash, p.problem) for p in problems(audited_db)}
    assert (hmac_user("audit-a"), "row hash does not match (modified)") in found
    assert (hmac_user("audit-b"), "dated in the future") in found


def test_audit_verify_fails_when_a_policy_hides_rows_from_the_auditor(audited_db, monkeypatch, capsys):
    """A restrictive policy for the auditor hides a chain's later rows; the walk cannot
    see them, and audit-verify reports the changed policy (doctor's check)."""
    from pymem.cli import main

    with psycopg.connect(audited_db, autocommit=True) as conn:
        conn.execute("CREATE POLICY hide ON pymem.audit_log AS RESTRICTIVE FOR SELECT TO pymem_auditor"
                     f" USING (user_hash <> '{hmac_user('audit-a')}')")
    monkeypatch.setenv("PYMEM_DATABASE_URL", audited_db)
    assert main(["audit-verify"]) == 1
    assert "FAIL tables, policies, triggers and roles" in capsys.readouterr().out


async def test_an_incremental_verification_reads_only_what_came_after_the_checkpoint(audited_db, audit_keys,
                                                                                     tmp_path, monkeypatch,
                                                                                     cluster):
    """``audit-verify --checkpoint F --since-checkpoint``: the rows after each signed head must
    chain onto it; those before it are not read again (a full verification checks them)."""
    checkpoint = tmp_path / "audit.checkpoint"
    with connect(audited_db) as conn:
        write_checkpoint(conn, checkpoint)
    await more_activity(audited_db, cluster)
    monkeypatch.setenv("PYMEM_AUDIT_VERIFY_KEY", audit_keys[1])
    walked = []
    with connect(audited_db) as conn:
        assert verify_audit_log(conn, checkpoint, since_checkpoint=True, on_row=lambda *row: walked.append(row)) == []
        total = conn.execute("SELECT count(*) FROM pymem.audit_log").fetchone()[0]
    # Only audit-a's new rows and audit-c's new chain are read.
    assert 0 < len(walked) < total and {row[0] for row in walked} == {hmac_user("audit-a"), hmac_user("audit-c")}

    # A row after the checkpoint changed: reported. One before it: only the full walk sees it.
    after = chain_rows(audited_db, "audit-a")[-1]
    before = chain_rows(audited_db, "audit-b")[2]
    tamper(audited_db, f"UPDATE pymem.audit_log SET row_count = 99 WHERE {where('audit-a', after)};"
                       f" UPDATE pymem.audit_log SET row_count = 99 WHERE {where('audit-b', before)}")
    with connect(audited_db) as conn:
        assert [(p.user_hash, p.chain_pos) for p in verify_audit_log(conn, checkpoint, since_checkpoint=True)] == [
            (hmac_user("audit-a"), after)]
        assert {(p.user_hash, p.chain_pos) for p in verify_audit_log(conn)} == {
            (hmac_user("audit-a"), after), (hmac_user("audit-b"), before)}


def test_an_incremental_verification_reports_a_checkpointed_chain_deleted_with_its_head(audited_db, audit_keys,
                                                                                        tmp_path, monkeypatch):
    checkpoint = tmp_path / "audit.checkpoint"
    with connect(audited_db) as conn:
        write_checkpoint(conn, checkpoint)
    victim = hmac_user("audit-b")
    tamper(audited_db, f"DELETE FROM pymem.audit_log WHERE user_hash = '{victim}';"
                       f" DELETE FROM pymem.audit_chain_heads WHERE user_hash = '{victim}'")
    monkeypatch.setenv("PYMEM_AUDIT_VERIFY_KEY", audit_keys[1])
    with connect(audited_db) as conn:
        found = verify_audit_log(conn, checkpoint, since_checkpoint=True)
    assert [(p.user_hash, p.problem) for p in found] == [
        (victim, "checkpointed row is gone (chain cut or deleted)"),
        (victim, "the chain's head row is gone (the chain was deleted)")]


def test_an_incremental_verification_reports_a_chain_deleted_with_its_head_kept(audited_db, audit_keys, tmp_path,
                                                                                 monkeypatch):
    checkpoint = tmp_path / "audit.checkpoint"
    with connect(audited_db) as conn:
        write_checkpoint(conn, checkpoint)
    victim = hmac_user("audit-b")
    tamper(audited_db, f"DELETE FROM pymem.audit_log WHERE user_hash = '{victim}'")
    monkeypatch.setenv("PYMEM_AUDIT_VERIFY_KEY", audit_keys[1])
    with connect(audited_db) as conn:
        found = verify_audit_log(conn, checkpoint, since_checkpoint=True)
    assert [(p.user_hash, p.problem) for p in found] == [(victim, "checkpointed row is gone (chain cut or deleted)")]


async def test_an_incremental_verification_reports_new_rows_dated_before_the_checkpointed_one(
        audited_db, audit_keys, tmp_path, monkeypatch, cluster):
    """Rows appended since the checkpoint, redated to before it and rechained (the hash has no
    key): the checkpointed row is read too, and the first new row may not precede it."""
    from pymem.audit_chain import row_hash_v2

    checkpoint = tmp_path / "audit.checkpoint"
    with connect(audited_db) as conn:
        write_checkpoint(conn, checkpoint)
    await more_activity(audited_db, cluster)
    user_hash = hmac_user("audit-a")
    signed = {u: p for u, p, _ in json.loads(checkpoint.read_text())["heads"]}[user_hash]
    with psycopg.connect(audited_db, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("UPDATE pymem.audit_log SET at = '2001-01-01' WHERE user_hash = %s AND chain_pos > %s",
                     (user_hash, signed))
        prev = conn.execute("SELECT row_hash FROM pymem.audit_log WHERE user_hash = %s AND chain_pos = %s",
                            (user_hash, signed)).fetchone()[0]
        for row in conn.execute(
                "SELECT chain_pos, (pg_catalog.extract('epoch', at) * 1000000)::numeric::text, db_role, operation, phase, ticket,"
                " params_digest, chunk_ids, row_count, txid::text FROM pymem.audit_log"
                " WHERE user_hash = %s AND chain_pos > %s ORDER BY chain_pos", (user_hash, signed)).fetchall():
            new = row_hash_v2(prev, user_hash, row[0], *row[1:])
            conn.execute("UPDATE pymem.audit_log SET prev_hash = %s, row_hash = %s WHERE user_hash = %s"
                         " AND chain_pos = %s", (prev, new, user_hash, row[0]))
            conn.execute("UPDATE pymem.audit_chain_heads SET row_hash = %s WHERE user_hash = %s", (new, user_hash))
            prev = new
    monkeypatch.setenv("PYMEM_AUDIT_VERIFY_KEY", audit_keys[1])
    with connect(audited_db) as conn:
        found = verify_audit_log(conn, checkpoint, since_checkpoint=True)
    assert [(p.user_hash, p.chain_pos, p.problem) for p in found] == [
        (user_hash, signed + 1, "earlier than its predecessor (reordered)")]
