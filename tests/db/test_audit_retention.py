"""Audit retention (revision 0024): archive each chain's old rows behind a signed
checkpoint, retire them from the log behind a signed anchor, and verify: the log from
its anchors, the archive on its own, and both together. Then the attacks: a changed
archive, an unsigned anchor, and each role's reach (docs/threat-model.md)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys

import psycopg
import pytest

from pymem.audit import verify_audit_log, verify_key, write_checkpoint
from pymem.audit_archive import read_archive
from pymem.audit_retention import archive_segments, retire_segments
from pymem.db import connect
from pymem.freshness import verify_rows
from pymem.security import hmac_user
from tests.fixtures.fix_audit import chain_rows, more_activity, tamper
from tests.utils import ROOT

pytestmark = pytest.mark.citus

MAINTAINER = "pymem_test_retention_maintainer"


@pytest.fixture
def maintainer_url(cluster, audited_db):
    cluster.login_role(MAINTAINER, ["pymem_maintainer"])
    return cluster.url(psycopg.conninfo.conninfo_to_dict(audited_db)["dbname"], user=MAINTAINER)


@pytest.fixture
async def archived(audited_db, audit_keys, tmp_path, cluster):
    """A checkpoint, more activity after it, and an archive of every chain up to the
    checkpoint's heads: (checkpoint path, archive report, {user: positions before})."""
    checkpoint = tmp_path / "old.checkpoint"
    with connect(audited_db) as conn:
        write_checkpoint(conn, checkpoint)
    await more_activity(audited_db, cluster)
    before = {user: chain_rows(audited_db, user) for user in ("audit-a", "audit-b", "audit-c")}
    with connect(audited_db) as conn:
        report = archive_segments(conn, checkpoint, tmp_path)
    return checkpoint, report, before


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pymem", *args], env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_retired_rows_leave_the_log_and_every_verification_still_holds(audited_db, archived, maintainer_url,
                                                                       tmp_path):
    checkpoint, report, before = archived
    heads = {u: p for u, p, _ in json.loads(checkpoint.read_text())["heads"]}
    a, b = hmac_user("audit-a"), hmac_user("audit-b")
    # audit-c's chain began after the checkpoint: nothing of it is archived.
    assert report.chains == 2 and report.rows == heads[a] + heads[b]
    assert read_archive(report.manifest, verify_key()).problems == []
    checked = _cli("audit-verify-archive", str(report.manifest))
    assert checked.returncode == 0 and f"{report.rows} rows of 2 chains verify" in checked.stdout

    with connect(maintainer_url) as conn:
        assert retire_segments(conn, report.manifest) == heads[a] - 1 + heads[b] - 1
        assert retire_segments(conn, report.manifest) == 0  # run again: nothing more
    for user, user_hash in (("audit-a", a), ("audit-b", b)):
        # Each chain now starts at the checkpointed row, and records its retirement.
        assert chain_rows(audited_db, user)[0] == heads[user_hash]
        assert chain_rows(audited_db, user)[-1] == before[user][-1] + 1
    with connect(audited_db) as conn:
        assert conn.execute("SELECT count(*) FROM pymem.audit_log WHERE operation = 'audit_retire'").fetchone()[0] == 2
        assert verify_audit_log(conn) == []
        assert verify_audit_log(conn, checkpoint) == []
        assert verify_audit_log(conn, checkpoint, since_checkpoint=True) == []
        # With the archive, every chain is walked whole again, from its first row.
        walked = []
        assert verify_audit_log(conn, archives=[report.manifest], on_row=lambda *row: walked.append(row)) == []
        live = conn.execute("SELECT count(*) FROM pymem.audit_log").fetchone()[0]
        assert len(walked) == live + report.rows - report.chains
        # A checkpoint written now signs the retired chains from their anchors.
        write_checkpoint(conn, tmp_path / "new.checkpoint")
        assert verify_audit_log(conn, tmp_path / "new.checkpoint") == []
    verified = _cli("audit-verify", "--archive", str(report.manifest), PYMEM_DATABASE_URL=audited_db)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_changed_archive_is_reported_and_retires_nothing(audited_db, archived, maintainer_url):
    _, report, before = archived
    rows_file = report.manifest.with_name(report.manifest.name.replace(".manifest.json", ".jsonl"))
    lines = rows_file.read_text().splitlines()
    row = json.loads(lines[1])
    row[3] = row[3][:-1] + ("x" if row[3][-1] != "x" else "y")  # db_role, the file's size kept
    lines[1] = json.dumps(row, separators=(",", ":"))
    rows_file.write_text("\n".join(lines) + "\n")
    assert read_archive(report.manifest, verify_key()).problems == [
        f"its rows file {rows_file.name} was changed (sha256 differs)"]
    # Its sha256 in the manifest changed to match: the manifest's signature no longer verifies.
    manifest = json.loads(report.manifest.read_text())
    manifest["rows_sha256"] = hashlib.sha256(rows_file.read_bytes()).hexdigest()
    report.manifest.write_text(json.dumps(manifest))
    assert read_archive(report.manifest, verify_key()).problems == [
        "the manifest's signature does not verify (forged or edited)"]
    with connect(maintainer_url) as conn, pytest.raises(ValueError, match="nothing was deleted"):
        retire_segments(conn, report.manifest)
    assert chain_rows(audited_db, "audit-a") == before["audit-a"]
    assert _cli("audit-verify-archive", str(report.manifest)).returncode == 1
    with connect(audited_db) as conn:
        found = verify_audit_log(conn, archives=[report.manifest])
    assert [p.problem for p in found] == [f"archive {report.manifest.name}: the manifest's signature does not verify"
                                          " (forged or edited)"]


def test_a_retired_segment_rewritten_in_the_archive_and_resigned_by_another_key_is_refused(audited_db, archived,
                                                                                           monkeypatch):
    """Whoever holds the archive but not the audit key signs a rewritten one: it does not
    verify under the operator's key."""
    from pymem.audit import generate_signing_key

    _, report, _ = archived
    real_verify_key = verify_key()
    monkeypatch.setenv("PYMEM_AUDIT_SIGNING_KEY", generate_signing_key()[0])
    with connect(audited_db) as conn:
        forged = archive_segments(conn, _resigned_checkpoint(conn, report), report.manifest.parent / "forged")
    assert read_archive(forged.manifest, real_verify_key).problems == [
        "the manifest's signature does not verify (forged or edited)"]


def _resigned_checkpoint(conn, report):
    target = report.manifest.parent / "forged.checkpoint"
    (report.manifest.parent / "forged").mkdir()
    write_checkpoint(conn, target)
    return target


def test_rows_deleted_behind_an_unsigned_anchor_are_reported(audited_db, audit_keys, maintainer_url):
    """The maintainer login (or anyone who can call audit_retire) deletes rows with an anchor
    no audit key signed: the database lets it (it cannot check Ed25519), the verifier
    reports it."""
    a = hmac_user("audit-a")
    target = chain_rows(audited_db, "audit-a")[5]
    with psycopg.connect(audited_db) as su:
        row_hash = su.execute("SELECT row_hash FROM pymem.audit_log WHERE user_hash = %s AND chain_pos = %s",
                              (a, target)).fetchone()[0]
    with connect(maintainer_url) as conn:
        assert conn.execute("SELECT pymem.audit_retire(%s, %s, %s, %s)",
                            (a, target, row_hash, b"\x00" * 64)).fetchone()[0] == target - 1
    with connect(audited_db) as conn:
        found = verify_audit_log(conn)
    assert [(p.user_hash, p.chain_pos, p.problem) for p in found] == [
        (a, target, "the chain's anchor is not signed by the audit key (rows were deleted without a signed archive,"
                    " or its first-log rows changed)"),
        (a, target, "missing row(s) before this one (deleted)")]


def test_the_maintainer_can_move_a_chain_start_only_forward_to_a_row_that_is_there(audited_db, archived,
                                                                                  maintainer_url):
    _, report, before = archived
    a = hmac_user("audit-a")
    with connect(maintainer_url) as conn:
        retire_segments(conn, report.manifest)
        anchor = chain_rows(audited_db, "audit-a")[0]
        attempts = {"back to an earlier row": (anchor - 1, b"\x01" * 32),
                    "past the head": (before["audit-a"][-1] + 5, b"\x01" * 32),
                    "to a row that is not there": (anchor + 1, b"\x01" * 32)}
        refusals = set()
        for what, (position, row_hash) in attempts.items():
            with pytest.raises(psycopg.errors.InvalidParameterValue) as refused, conn.transaction():
                conn.execute("SELECT pymem.audit_retire(%s, %s, %s, %s)", (a, position, row_hash, b"\x00" * 64))
            refusals.add(refused.value.diag.message_primary)
    assert chain_rows(audited_db, "audit-a")[0] == anchor
    # One message for every refusal: it shows nothing of where the chain starts or ends.
    [message] = refusals
    assert not any(str(n) in message for n in (anchor, before["audit-a"][-1]))


async def test_a_retirement_that_changes_nothing_does_not_hold_the_tenants_chain(audited_db, archived,
                                                                                 maintainer_url, cluster):
    """A maintainer who repeats a chain's current anchor inside a transaction it keeps open
    would hold the chain's lock, and every write and read of the tenant with it: it does not."""
    _, report, _ = archived
    a = hmac_user("audit-a")
    with connect(maintainer_url) as conn:
        retire_segments(conn, report.manifest)
        anchor, row_hash, signature = read_archive(report.manifest, verify_key()).anchors[a]
        with conn.transaction():
            assert conn.execute("SELECT pymem.audit_retire(%s, %s, %s, %s)",
                                (a, anchor, row_hash, b"\x00" * 64)).fetchone()[0] == 0
            await asyncio.wait_for(more_activity(audited_db, cluster), timeout=30)
    assert chain_rows(audited_db, "audit-a")[0] == anchor


@pytest.mark.parametrize("role", ["pymem_app", "pymem_auditor"])
def test_only_the_maintainer_may_retire(audited_db, cluster, role):
    login = f"pymem_test_retention_{role}"
    cluster.login_role(login, [role])
    url = cluster.url(psycopg.conninfo.conninfo_to_dict(audited_db)["dbname"], user=login)
    a = hmac_user("audit-a")
    with connect(url) as conn:
        for call, params in (("pymem.audit_retire(%s, 2, %s, %s)", (a, b"\x01" * 32, b"\x00" * 64)),
                             ("pymem.audit_rebaseline(%s)", (b"\x01" * 32,))):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(f"SELECT {call}", params)
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute("DELETE FROM pymem.audit_log")
    assert len(chain_rows(audited_db, "audit-a")) == 11


def test_the_owner_can_delete_no_row_at_or_after_a_chain_start(audited_db, archived, maintainer_url):
    _, report, _ = archived
    with connect(maintainer_url) as conn:
        retire_segments(conn, report.manifest)
    rows = chain_rows(audited_db, "audit-a")
    with psycopg.connect(audited_db, autocommit=True) as su:
        for statement in ("DELETE FROM pymem.audit_log", "TRUNCATE pymem.audit_log"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"), su.transaction():
                su.execute("SET LOCAL ROLE pymem_owner")
                su.execute(statement)
    assert chain_rows(audited_db, "audit-a") == rows


def test_a_changed_anchor_row_is_reported_with_or_without_the_archive(audited_db, archived, maintainer_url):
    """A superuser changes the row a retired chain starts at: the walk from the anchor reports
    it, and the walk with the archive finds that the log and the archive disagree."""
    _, report, _ = archived
    with connect(maintainer_url) as conn:
        retire_segments(conn, report.manifest)
    a = hmac_user("audit-a")
    anchor = chain_rows(audited_db, "audit-a")[0]
    tamper(audited_db, f"UPDATE pymem.audit_log SET row_count = 99 WHERE user_hash = '{a}'"
                       f" AND chain_pos = {anchor}")
    with connect(audited_db) as conn:
        assert (a, anchor) in {(p.user_hash, p.chain_pos) for p in verify_audit_log(conn)}
        assert (a, anchor, "the archived row differs from the log's") in {
            (p.user_hash, p.chain_pos, p.problem) for p in verify_audit_log(conn, archives=[report.manifest])}


def test_verify_rows_checks_a_retired_tenant_only_with_its_archive(audited_db, archived, maintainer_url):
    _, report, _ = archived
    with connect(maintainer_url) as conn:
        retire_segments(conn, report.manifest)
    with connect(audited_db) as conn:
        without = verify_rows(conn)
        with_archive = verify_rows(conn, archives=[report.manifest])
    # audit-a and audit-b were retired: not checked without their archive (audit-c is).
    assert (without.problems, without.retired, without.tenants, without.rows_checked) == ([], 2, 1, 1)
    assert (with_archive.problems, with_archive.retired, with_archive.tenants, with_archive.rows_checked) == (
        [], 0, 3, 8)


@pytest.fixture
async def retired_twice(audited_db, archived, maintainer_url, cluster, tmp_path):
    """The archive of ``archived`` retired, more activity, a second checkpoint, its archive
    (audit-c's chain whole; audit-a's and audit-b's from their anchors on), retired too:
    (first checkpoint, first archive, second archive)."""
    checkpoint, first, _ = archived
    with connect(maintainer_url) as conn:
        retire_segments(conn, first.manifest)
    await more_activity(audited_db, cluster)
    (tmp_path / "second").mkdir()
    with connect(audited_db) as conn:
        write_checkpoint(conn, tmp_path / "second.checkpoint")
        second = archive_segments(conn, tmp_path / "second.checkpoint", tmp_path / "second")
    with connect(maintainer_url) as conn:
        retire_segments(conn, second.manifest)
    return checkpoint, first, second


def test_two_retirements_verify_with_both_archives_either_the_latest_or_none(audited_db, retired_twice):
    checkpoint, first, second = retired_twice
    assert second.chains == 3
    with connect(audited_db) as conn:
        assert verify_audit_log(conn) == []
        assert verify_audit_log(conn, checkpoint) == []
        assert verify_audit_log(conn, archives=[first.manifest, second.manifest]) == []
        assert verify_audit_log(conn, archives=[second.manifest]) == []
        # Only the first: audit-a's rows between its two anchors are in neither the log nor the
        # archive. (audit-b's second segment was its anchor and its retirement's row: the log
        # still holds the latter.)
        gaps = verify_audit_log(conn, archives=[first.manifest])
        assert [(p.user_hash, p.problem) for p in gaps] == [
            (hmac_user("audit-a"), "missing row(s) before this one (deleted)")]
        assert verify_rows(conn, archives=[first.manifest, second.manifest]).problems == []


def test_verify_rows_checks_a_tenant_only_with_archives_that_reach_back_to_its_first_row(
        audited_db, retired_twice, tmp_path):
    """Two retirements; only the later archive given: the walk starts where it begins, the
    earlier writes are not at hand, and both tenants retired twice are counted as not
    checked, audit-b, which wrote nothing since the first, too."""
    _, first, second = retired_twice
    with connect(audited_db) as conn:
        partial = verify_rows(conn, archives=[second.manifest])
        whole = verify_rows(conn, archives=[first.manifest, second.manifest])
        # Given a tenant list and an archive that does not verify, the archive's problem stays.
        junk = tmp_path / "junk.manifest.json"
        junk.write_text(json.dumps({"segments": [[hmac_user("audit-a")]]}))
        filtered = verify_rows(conn, [hmac_user("audit-a")], archives=[junk])
    # audit-c's chain began after the first retirement: the second archive holds it whole.
    assert (partial.problems, partial.retired, partial.tenants) == ([], 2, 1)
    assert (whole.problems, whole.retired, whole.tenants) == ([], 0, 3)
    assert [p.problem for p in filtered.problems] == [
        "audit chain, position 0: archive junk.manifest.json: not a readable pymem audit archive manifest"]
    assert filtered.retired == 1 and filtered.tenants == 0


def test_archives_fill_only_what_a_signed_anchor_retired(audited_db, archived, maintainer_url):
    """Rows a superuser deletes from the log are not hidden by their archived copies: before
    the retirement (no anchor yet), and the anchor row itself after it."""
    _, report, before = archived
    a = hmac_user("audit-a")
    tamper(audited_db, f"DELETE FROM pymem.audit_log WHERE user_hash = '{a}' AND chain_pos < {before['audit-a'][3]}")
    with connect(audited_db) as conn:
        assert "missing row(s) before this one (deleted)" in {
            p.problem for p in verify_audit_log(conn, archives=[report.manifest])}
        with pytest.raises(ValueError, match="not an incremental one"):
            verify_audit_log(conn, report.manifest, since_checkpoint=True, archives=[report.manifest])


def test_a_deleted_anchor_row_is_reported_with_the_archive_too(audited_db, archived, maintainer_url):
    _, report, _ = archived
    with connect(maintainer_url) as conn:
        retire_segments(conn, report.manifest)
    a = hmac_user("audit-a")
    anchor = chain_rows(audited_db, "audit-a")[0]
    tamper(audited_db, f"DELETE FROM pymem.audit_log WHERE user_hash = '{a}' AND chain_pos = {anchor}")
    with connect(audited_db) as conn:
        for archives in ([], [report.manifest]):
            assert (a, anchor, "anchored row is gone (chain cut or deleted)") in {
                (p.user_hash, p.chain_pos, p.problem) for p in verify_audit_log(conn, archives=archives)}


def test_hostile_archive_files_are_reported_not_crashed_on(tmp_path):
    nested = tmp_path / "nested.manifest.json"
    nested.write_text("[" * 100000 + "]" * 100000)
    assert read_archive(nested, _verify_key_of_a_fresh_pair()).problems == [
        "not a readable pymem audit archive manifest"]


def _verify_key_of_a_fresh_pair():
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from pymem.audit import generate_signing_key

    return Ed25519PublicKey.from_public_bytes(base64.b64decode(generate_signing_key()[1]))


def test_a_rows_file_that_is_not_a_file_is_reported_not_waited_on(archived):
    _, report, _ = archived
    rows = report.manifest.with_name(report.manifest.name.replace(".manifest.json", ".jsonl"))
    rows.unlink()
    os.mkfifo(rows)  # reading a pipe nobody writes to would never end
    assert read_archive(report.manifest, verify_key()).problems == [
        f"its rows file {rows.name} is missing, not a file or not the size the manifest says"]


def test_anchors_written_into_the_table_directly_are_reported(audited_db, archived):
    """Whoever can act as pymem_owner copies an archive's signed anchors into the table and
    deletes the rows before them itself: no audit_retire row says a retirement ran."""
    _, report, _ = archived
    for user_hash, _, last, last_hash, signature, _ in json.loads(report.manifest.read_text())["segments"]:
        with psycopg.connect(audited_db, autocommit=True) as su, su.transaction():
            su.execute("SET LOCAL ROLE pymem_owner")
            su.execute("INSERT INTO pymem.audit_anchors VALUES (%s, %s, %s, %s, now())",
                       (user_hash, last, bytes.fromhex(last_hash), base64.b64decode(signature)))
            su.execute("DELETE FROM pymem.audit_log WHERE user_hash = %s AND chain_pos < %s", (user_hash, last))
    with connect(audited_db) as conn:
        found = verify_audit_log(conn, archives=[report.manifest])
    assert {p.problem for p in found} == {
        "the chain was retired without its audit_retire row (the anchors table was written directly)"}
    assert len(found) == 2


def test_rows_put_back_before_an_anchor_are_reported(audited_db, archived, maintainer_url):
    _, report, _ = archived
    with connect(maintainer_url) as conn:
        retire_segments(conn, report.manifest)
    a = hmac_user("audit-a")
    anchor = chain_rows(audited_db, "audit-a")[0]
    tamper(audited_db, f"INSERT INTO pymem.audit_log SELECT user_hash, 1, at, 'forger', operation, phase, ticket,"
                       f" params_digest, chunk_ids, row_count, txid, prev_hash, row_hash FROM pymem.audit_log"
                       f" WHERE user_hash = '{a}' AND chain_pos = {anchor}")
    with connect(audited_db) as conn:
        for archives in ([], [report.manifest]):
            assert [(p.user_hash, p.problem) for p in verify_audit_log(conn, archives=archives)] == [
                (a, "1 row(s) before the chain's anchor (retired rows put back, or forged)")]


def test_a_null_anchor_is_reported_not_crashed_on(audited_db, audit_keys):
    tamper(audited_db, "ALTER TABLE pymem.audit_anchors ALTER COLUMN signature DROP NOT NULL")
    tamper(audited_db, f"INSERT INTO pymem.audit_anchors VALUES ('{hmac_user('audit-a')}', 3, '\\x{'00' * 32}',"
                       " NULL, now())")
    run = _cli("audit-verify", PYMEM_DATABASE_URL=audited_db)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "anchor is not signed by the audit key" in run.stdout


def test_a_checkpoint_is_signed_only_from_a_walk_that_still_verifies_against_the_old_one(audited_db, audit_keys,
                                                                                        tmp_path):
    """A re-baseline signs its new checkpoint from a walk that checks the old checkpoint again:
    a chain deleted after the re-baseline's first check is refused, not signed."""
    old = tmp_path / "old.checkpoint"
    with connect(audited_db) as conn:
        write_checkpoint(conn, old)
    b = hmac_user("audit-b")
    tamper(audited_db, f"DELETE FROM pymem.audit_log WHERE user_hash = '{b}';"
                       f" DELETE FROM pymem.audit_chain_heads WHERE user_hash = '{b}'")
    with connect(audited_db) as conn, pytest.raises(ValueError, match="nothing was signed"):
        write_checkpoint(conn, tmp_path / "new.checkpoint", against=json.loads(old.read_text())["heads"])
    assert not (tmp_path / "new.checkpoint").exists()


async def test_the_first_log_of_a_retired_chain_stays_bound_to_it(audited_db, audit_keys, tmp_path, cluster,
                                                                   maintainer_url):
    """A tenant whose chain began in the first-generation log (before revision 0005): once it
    is retired, the walk no longer reaches its first-log rows, and the signed anchor names
    their last row instead. Deleting them is reported."""
    import numpy as np

    from pymem import repository as repo
    from pymem.db import aconnect

    v = hmac_user("audit-v1")
    with psycopg.connect(audited_db, autocommit=True) as su, su.transaction():
        su.execute("SET LOCAL session_replication_role = replica")
        prev = b""
        for pos in (1, 2, 3):  # three first-log rows, as revision 0005 left such a chain
            at, txid = su.execute("SELECT now() - interval '2 years' + %s * interval '1 s', pg_current_xact_id()",
                                  (pos,)).fetchone()
            prev_hash, prev = prev, su.execute(
                "SELECT pymem.audit_row_digest_v1(%s, %s, %s, 'legacy_app', %s, 'insert', '{}'::uuid[], 0, %s, %s)",
                (prev, 1000 + pos, at, v, txid, pos)).fetchone()[0]
            su.execute("INSERT INTO pymem.audit_log_v1 (seq, at, db_role, user_hash, operation, chunk_ids, row_count,"
                       " txid, chain_pos, prev_hash, row_hash) OVERRIDING SYSTEM VALUE VALUES (%s, %s, 'legacy_app',"
                       " %s, 'insert', '{}', 0, %s, %s, %s, %s)", (1000 + pos, at, v, txid, pos, prev_hash, prev))
        su.execute("INSERT INTO pymem.audit_chain_heads (user_hash, chain_pos, row_hash, at) VALUES (%s, 3, %s, %s)",
                   (v, prev, at))
    app = await aconnect(cluster.url(psycopg.conninfo.conninfo_to_dict(audited_db)["dbname"],
                                     user="pymem_test_audit_app"))
    try:
        await repo.index_memory_chunk(app, "audit-v1", "v", "s", "t", np.ones(8))
    finally:
        await app.close()
    checkpoint = tmp_path / "c.checkpoint"
    with connect(audited_db) as conn:
        write_checkpoint(conn, checkpoint)
    await more_activity(audited_db, cluster)
    with connect(audited_db) as conn:
        report = archive_segments(conn, checkpoint, tmp_path)
    with connect(maintainer_url) as conn:
        retire_segments(conn, report.manifest)
    with connect(audited_db) as conn:
        assert verify_audit_log(conn) == [] and verify_audit_log(conn, archives=[report.manifest]) == []
    tamper(audited_db, f"DELETE FROM pymem.audit_log_v1 WHERE user_hash = '{v}'")
    with connect(audited_db) as conn:
        for archives in ([], [report.manifest]):
            assert (v, "the chain's anchor is not signed by the audit key (rows were deleted without a signed"
                       " archive, or its first-log rows changed)") in {
                (p.user_hash, p.problem) for p in verify_audit_log(conn, archives=archives)}


def test_audit_verify_says_which_chains_it_verified_from_their_anchors_only(audited_db, archived, maintainer_url,
                                                                           tmp_path):
    """Without their archives, retired chains are verified from their signed anchors on, and
    the command says so; asked to verify them whole (--archive) without every archive, it
    exits 3, not 0."""
    checkpoint, report, _ = archived
    with connect(maintainer_url) as conn:
        retire_segments(conn, report.manifest)
    plain = _cli("audit-verify", "--checkpoint", str(checkpoint), PYMEM_DATABASE_URL=audited_db)
    assert plain.returncode == 0 and "2 chains verified from their signed anchors on" in plain.stdout
    other = tmp_path / "other"
    other.mkdir()
    with connect(audited_db) as conn:
        write_checkpoint(conn, other / "c.json")
        later = archive_segments(conn, other / "c.json", other)  # from the anchors on: the older rows not in it
    partial = _cli("audit-verify", "--archive", str(later.manifest), PYMEM_DATABASE_URL=audited_db)
    assert partial.returncode == 3 and "they are in no archive given" in partial.stdout
    whole = _cli("audit-verify", "--archive", str(report.manifest), PYMEM_DATABASE_URL=audited_db)
    assert whole.returncode == 0 and "signed anchors" not in whole.stdout


def test_a_pipe_or_a_huge_file_in_an_archive_is_reported_not_read(archived):
    _, report, _ = archived
    rows = report.manifest.with_name(report.manifest.name.replace(".manifest.json", ".jsonl"))
    with rows.open("r+b") as handle:
        handle.truncate(1 << 40)  # sparse: a terabyte the signed manifest did not state
    assert read_archive(report.manifest, verify_key()).problems == [
        f"its rows file {rows.name} is missing, not a file or not the size the manifest says"]
    report.manifest.unlink()
    os.mkfifo(report.manifest)
    assert read_archive(report.manifest, verify_key()).problems == ["not a readable pymem audit archive manifest"]


def test_a_chain_whose_head_is_its_first_row_does_not_stop_a_retirement(audited_db, audit_keys, maintainer_url,
                                                                        tmp_path):
    with connect(maintainer_url) as conn:  # the no-tenant chain gets one row
        conn.execute("SELECT pymem.audit_rebaseline(%s)", (b"\x01" * 32,))
    with connect(audited_db) as conn:
        write_checkpoint(conn, tmp_path / "c.json")
        report = archive_segments(conn, tmp_path / "c.json", tmp_path)
    assert report.chains == 2  # audit-a and audit-b: nothing precedes the no-tenant chain's head
    with connect(maintainer_url) as conn:
        assert retire_segments(conn, report.manifest) > 0


def test_first_log_rows_and_heads_a_superuser_forges_are_reported(audited_db, audit_keys):
    """Rows put in the first log under a blank tenant (which the walk once took for the
    no-tenant chain), a first-log row without its hash, and a chain whose head row is gone."""
    tamper(audited_db, "ALTER TABLE pymem.audit_log_v1 ALTER COLUMN row_hash DROP NOT NULL;"
                       " INSERT INTO pymem.audit_log_v1 (seq, at, db_role, user_hash, operation, chunk_ids, row_count,"
                       " txid, chain_pos, prev_hash, row_hash) OVERRIDING SYSTEM VALUE VALUES"
                       " (9001, now(), 'forger', '', 'insert', '{}', 0, '1', 1, '\\x', NULL)")
    tamper(audited_db, f"DELETE FROM pymem.audit_chain_heads WHERE user_hash = '{hmac_user('audit-a')}'")
    with connect(audited_db) as conn:
        found = {p.problem for p in verify_audit_log(conn)}
    assert "v1: a row that names no well-formed tenant (forged)" in found
    assert "the chain has no head row (its head deleted, or its rows forged)" in found


@pytest.mark.single_node  # on Citus the tenant is the distribution column: it cannot be NULL
def test_an_anchor_without_a_tenant_is_reported_not_crashed_on(audited_db, audit_keys):
    tamper(audited_db, "ALTER TABLE pymem.audit_anchors DROP CONSTRAINT audit_anchors_pkey,"
                       " ALTER COLUMN user_hash DROP NOT NULL;"
                       f" INSERT INTO pymem.audit_anchors VALUES (NULL, 3, '\\x{'00' * 32}', '\\x{'00' * 64}', now())")
    run = _cli("audit-verify", PYMEM_DATABASE_URL=audited_db)
    assert run.returncode == 1 and "Traceback" not in run.stderr and "anchor is not signed" in run.stdout
