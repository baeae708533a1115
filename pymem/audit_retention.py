"""Audit retention and re-baselines: archive old chain segments, drop them behind a
signed anchor, and record a deliberate point-in-time restore (revision 0024).

The runbook (docs/operations.md, "Retiring old audit rows"):

1. ``pymem audit-archive --checkpoint OLD.json --out DIR`` (``pymem_auditor``, the
   signing key): the log must verify against ``OLD.json``; each chain's rows up to the
   head ``OLD.json`` signed go into an archive (:mod:`pymem.audit_archive`), checked as
   written, and the new start of each chain, its anchor, is signed.
2. Copy the archive to where the checkpoints are kept; ``pymem audit-verify-archive``.
3. ``pymem audit-retire --manifest DIR/….manifest.json`` (``pymem_maintainer``, the
   verify key only): the archive is checked again, then each chain's rows before its
   anchor are deleted (``pymem.audit_retire``), one chain per transaction, audited in the
   chain as ``audit_retire``. Run again, it deletes nothing more.
4. ``pymem audit-verify`` walks each retired chain from its anchor, and reports an
   anchor that the audit key did not sign; with ``--archive``, the archived rows too.

A re-baseline (``pymem audit-rebaseline``): after a deliberate point-in-time restore,
the checkpoints written after the restore's target name rows the database no longer
has. The log must verify against the last checkpoint before the target; the
re-baseline is then recorded in the log (``pymem.audit_rebaseline``, in the chain of
calls without a tenant, naming the digest of what it re-baselines from and why) and a
new checkpoint is signed that carries the same statement.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .audit import (as_auditor, checkpoint_problems, current_database, read_checkpoint, signing_key,
                    verify_audit_log, verify_key, walk_log, write_checkpoint, write_json)
from .audit_archive import (ARCHIVE_FORMAT, MANIFEST_SUFFIX, anchor_statement, canonical, read_archive,
                            segment_problem, write_rows)
from .audit_chain import V2_COLUMNS, ChainWalk, read_rows, v1_tails
from .extras import progress_iter

REBASELINE_FORMAT = "pymem-audit-rebaseline/1"
_SEGMENT = (V2_COLUMNS + " WHERE user_hash OPERATOR(pg_catalog.=) %s::pg_catalog.bpchar"
            " AND chain_pos OPERATOR(pg_catalog.>=) %s AND chain_pos OPERATOR(pg_catalog.<=) %s ORDER BY chain_pos")


@dataclass(frozen=True)
class ArchiveReport:
    """What :func:`archive_segments` wrote: the manifest, and how many chains and rows."""

    manifest: Path | None
    chains: int
    rows: int


def archive_segments(conn: psycopg.Connection, checkpoint: str | Path, out_dir: str | Path) -> ArchiveReport:
    """Archive each chain's rows up to the head a signed checkpoint names, and sign each
    chain's new start (its anchor) for :func:`retire_segments`.

    Args:
        conn: a connection whose role is, or may SET ROLE to, ``pymem_auditor``.
        checkpoint: a checkpoint of this database (``pymem audit-checkpoint``): the rows
            it signed, and those before them, are what may go.
        out_dir: where to write ``pymem-audit-<time>.jsonl`` and its ``.manifest.json``.

    Returns:
        The report; no manifest when no chain has rows to retire.

    Raises:
        ValueError: ``PYMEM_AUDIT_SIGNING_KEY`` is missing, the checkpoint is not one or is
            of another database, or the log does not verify against it (nothing is written).
    """
    key = signing_key()
    body = read_checkpoint(checkpoint)
    heads = body["heads"]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    out = Path(out_dir)
    rows_path = out / f"pymem-audit-{stamp}.jsonl"
    segments: list[list] = []
    # One snapshot: the walk that verifies the log against the checkpoint, and the segments
    # read after it, see the same rows (a change committed in between would otherwise be
    # archived and signed). The rows go to the file a chain at a time, as they are read.
    with as_auditor(conn):
        database = current_database(conn)
        if body.get("database", database) != database:
            raise ValueError(f"{checkpoint} is a checkpoint of database {body.get('database')!r}, not {database!r}")
        problems, walk = walk_log(conn, database, frozenset((h[0], h[1]) for h in heads))
        problems += checkpoint_problems(heads, walk)
        if problems:
            raise ValueError(f"the audit log does not verify against {checkpoint} ({len(problems)} problems):"
                             " pymem audit-verify names them; nothing was archived")
        try:
            rows_sha256, rows_bytes, row_count = write_rows(
                rows_path, _segments(conn, database, heads, walk, key, segments))
        except BaseException:
            rows_path.unlink(missing_ok=True)
            raise
    if not segments:
        rows_path.unlink()
        return ArchiveReport(None, 0, 0)
    body = {"format": ARCHIVE_FORMAT, "created_at": datetime.now(timezone.utc).isoformat(), "database": database,
            "rows": rows_path.name, "rows_bytes": rows_bytes, "rows_sha256": rows_sha256, "segments": segments}
    body["signature"] = base64.b64encode(key.sign(canonical(body))).decode()
    manifest = out / f"pymem-audit-{stamp}{MANIFEST_SUFFIX}"
    write_json(manifest, body)
    return ArchiveReport(manifest, len(segments), row_count)


def _segments(conn: psycopg.Connection, database: str, heads: list, walk: ChainWalk, key: Ed25519PrivateKey,
              segments: list[list]) -> Iterator[tuple]:
    """Each chain's rows from where it starts up to the head the checkpoint signed, checked;
    each chain's segment, with its signed anchor, appended to ``segments``."""
    tails = v1_tails(conn)
    for user_hash, chain_pos, row_hash in heads:
        start = walk.partial.get(user_hash, 0)  # its anchor; else its first row (walked whole)
        if chain_pos <= start:
            continue  # retired up to there, or further, already
        segment = list(read_rows(conn, _SEGMENT, (user_hash, start, chain_pos)))
        problem = segment_problem(segment, chain_pos, bytes.fromhex(row_hash))
        if problem:
            raise ValueError(f"chain {user_hash[:12]}…: {problem}; nothing was archived")
        if segment[0][1] == chain_pos:
            continue  # its head is its first row: nothing before it to retire
        tail = tails.get(user_hash)
        signature = key.sign(anchor_statement(database, user_hash, chain_pos, bytes.fromhex(row_hash), tail))
        segments.append([user_hash, segment[0][1], chain_pos, row_hash, base64.b64encode(signature).decode(),
                         None if tail is None else [tail[0], tail[1].hex()]])
        yield from segment


def retire_segments(conn: psycopg.Connection, manifest: str | Path, *, progress: bool = False) -> int:
    """Delete each archived chain's rows before its anchor (``pymem.audit_retire``).

    The archive is checked first (signatures, sha256, every segment): a damaged or
    forged one deletes nothing. One transaction per chain; a chain retired there
    already is left as it is, so a run cut short can be run again; a chain whose anchor
    the database refuses is named at the end, and the others are retired.

    Args:
        conn: a connection of a login with ``pymem_maintainer``.
        manifest: written by :func:`archive_segments`, for this database.
        progress: show a progress bar over the chains.

    Returns:
        The number of log rows deleted.

    Raises:
        ValueError: the archive does not verify under ``PYMEM_AUDIT_VERIFY_KEY``, or is of
            another database; or the database refused some chains' anchors.
    """
    archive = read_archive(manifest, verify_key(), keep_rows=False)
    if archive.problems:
        raise ValueError(f"{manifest}: {'; '.join(archive.problems)}; nothing was deleted")
    database = current_database(conn)
    if archive.database != database:
        raise ValueError(f"{manifest} is an archive of database {archive.database!r}, not {database!r}")
    deleted, refused = 0, []
    for user_hash, (chain_pos, row_hash, signature) in progress_iter(
            sorted(archive.anchors.items()), enabled=progress, desc="retiring audit segments", unit="chain"):
        try:
            with conn.transaction():
                deleted += conn.execute("SELECT pymem.audit_retire(%s::pg_catalog.bpchar, %s, %s, %s)",
                                        (user_hash, chain_pos, row_hash, signature)).fetchone()[0]
        except psycopg.errors.InvalidParameterValue:
            refused.append(user_hash[:12] + "…")  # retired further since, say; the others go on
    if refused:
        raise ValueError(f"retired {deleted} rows, but the database refused the anchors of {len(refused)} chains"
                         f" ({', '.join(refused[:5])}): pymem audit-verify shows where they start now")
    return deleted


def rebaseline(conn: psycopg.Connection, checkpoint: str | Path, out: str | Path, reason: str) -> int:
    """Re-baseline the checkpoints after a deliberate point-in-time restore, audited.

    Args:
        conn: a connection of a login with ``pymem_auditor`` and ``pymem_maintainer``.
        checkpoint: the last checkpoint written before the restore's target: the restored
            log must verify against it.
        out: the new checkpoint, which carries the re-baseline's statement, signed.
        reason: why (a change ticket, say); recorded as part of the digest, and in the
            new checkpoint. Not secret, not empty.

    Returns:
        The position of the re-baseline's row in the chain of calls without a tenant.

    Raises:
        ValueError: no reason, a missing signing key, or the log does not verify against
            ``checkpoint`` (nothing is recorded).
    """
    if not reason.strip():
        raise ValueError("say why the checkpoints are re-baselined (--reason)")
    signing_key()
    old = read_checkpoint(checkpoint)
    problems = verify_audit_log(conn, checkpoint)
    if problems:
        raise ValueError(f"the restored log does not verify against {checkpoint} ({len(problems)} problems):"
                         " re-baseline from the last checkpoint before the restore's target; nothing was recorded")
    statement = {"format": REBASELINE_FORMAT, "reason": reason, "from_created_at": old["created_at"],
                 "from_sha256": hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()}
    with conn.transaction():
        position = conn.execute("SELECT pymem.audit_rebaseline(%s)",
                                (hashlib.sha256(canonical(statement)).digest(),)).fetchone()[0]
    # Signed from a walk that checks the old checkpoint again: a change made since the check
    # above is refused, not signed.
    try:
        write_checkpoint(conn, out, rebaseline={**statement, "recorded_at": position}, against=old["heads"])
    except ValueError as error:
        raise ValueError(f"the re-baseline was recorded (no-tenant chain, position {position}), but {error}")
    return position

