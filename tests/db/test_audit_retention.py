"""Audit retention (revision 0024): archive each chain's old rows behind a signed
checkpoint, retire them from the log behind a signed anchor, and verify: the log from
its anchors, the archive on its own, and both together. Then the attacks: a changed
archive, an unsigned anchor, and each role's reach (docs/threat-model.md)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import psycopg
import pytest

from pymem.audit import verify_audit_log, write_checkpoint
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
    assert read_archive(report.manifest, _verify_key()).problems == []

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
    row[9] = 99  # row_count
    lines[1] = json.dumps(row, separators=(",", ":"))
    rows_file.write_text("\n".join(lines) + "\n")
    assert read_archive(report.manifest, _verify_key()).problems == [
        f"its rows file {rows_file.name} was changed (sha256 differs)"]
    # Its sha256 in the manifest changed to match: the manifest's signature no longer verifies.
    manifest = json.loads(report.manifest.read_text())
    manifest["rows_sha256"] = hashlib.sha256(rows_file.read_bytes()).hexdigest()
    report.manifest.write_text(json.dumps(manifest))
    assert read_archive(report.manifest, _verify_key()).problems == [
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
    real_verify_key = _verify_key()
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
        (a, target, "the chain's anchor is not signed by the audit key (rows were deleted without a signed archive)"),
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
        for what, (position, row_hash) in attempts.items():
            with pytest.raises(psycopg.errors.InvalidParameterValue), conn.transaction():
                conn.execute("SELECT pymem.audit_retire(%s, %s, %s, %s)", (a, position, row_hash, b"\x00" * 64))
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


def _verify_key():
    from pymem.audit import verify_key

    return verify_key()
