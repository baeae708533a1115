"""Reading, verifying and checkpointing the audit log (as ``pymem_auditor``).

Each tenant's audit rows form a hash chain: a row's ``row_hash`` covers its
predecessor's hash and its own canonical fields. :func:`verify_audit_log` reads the
raw rows and recomputes every chain in the client (:mod:`pymem.audit_chain`), so a
superuser who replaces ``pymem.audit_verify()`` or ``pymem.audit_row_hash()`` does
not change the answer; it reports every broken segment: rows modified, missing,
reordered, or cut from the end (the per-chain head row disagrees).

What the database alone cannot show is a chain deleted *with* its head, or a tail
cut and the head rewritten by a superuser. For that, :func:`write_checkpoint`
signs every chain head with an Ed25519 key that never reaches the database
(``PYMEM_AUDIT_SIGNING_KEY``), into a file kept wherever the operator chooses;
:func:`verify_checkpoint` later checks that every checkpointed row is still there,
unchanged, using only the public key (``PYMEM_AUDIT_VERIFY_KEY``).

Checkpoint file (JSON)::

    {"format": "pymem-audit-checkpoint/1", "created_at": "<ISO 8601>",
     "database": "<name>", "heads": [["<user_hash>", <chain_pos>, "<row_hash hex>"], ...],
     "signature": "<base64 Ed25519 signature of the other fields as canonical JSON>"}
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .audit_archive import Archive, anchor_statement, canonical, read_archive
from .audit_chain import ChainWalk, OnRow, v1_tails, verify_chains
from .config import key_material

CHECKPOINT_FORMAT = "pymem-audit-checkpoint/1"
NO_TENANT = "0" * 64  # the chain of rows that name no tenant


@dataclass(frozen=True)
class AuditProblem:
    """One place where a chain does not verify."""

    user_hash: str
    chain_pos: int
    problem: str

    @property
    def chain_label(self) -> str:
        return "(no tenant)" if self.user_hash == NO_TENANT else f"{self.user_hash[:12]}…"


class AuditFindings(list):
    """The problems (a list of :class:`AuditProblem`; empty: the log verifies), and
    ``partial``: each chain verified only from a later row than its first (position), its
    older rows retired and in no archive given."""

    def __init__(self, problems=(), partial: dict[str, int] | None = None) -> None:
        super().__init__(problems)
        self.partial = partial or {}


def current_database(conn: psycopg.Connection) -> str:
    """The name checkpoints, archives and anchors are bound to (the server's, which a pooler's
    alias in the connection string may differ from)."""
    return conn.execute("SELECT pg_catalog.current_database()").fetchone()[0]


@contextmanager
def as_auditor(conn: psycopg.Connection) -> Iterator[None]:
    """One READ ONLY, REPEATABLE READ transaction as pymem_auditor, with the output
    settings the verifier reads values in pinned (a DateStyle stored for the login
    would otherwise stop it)."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        for setting in ("SET LOCAL DateStyle = 'ISO, YMD'", "SET LOCAL TimeZone = 'UTC'",
                        "SET LOCAL extra_float_digits = 1", "SET LOCAL bytea_output = 'hex'"):
            conn.execute(setting)
        # Only a login that does not inherit pymem_auditor switches to it. (On Citus
        # a SET LOCAL ROLE is forwarded to the workers, where the definer's own
        # connections could not take it.)
        if not conn.execute("SELECT pg_catalog.pg_has_role('pymem_auditor', 'USAGE')").fetchone()[0]:
            conn.execute("SET LOCAL ROLE pymem_auditor")
        yield


def signed_anchors(conn: psycopg.Connection, database: str) -> tuple[dict[str, tuple[int, bytes]],
                                                                      list[AuditProblem]]:
    """Where each chain whose old rows were retired starts now (revision 0024), for each
    anchor whose signature verifies under ``PYMEM_AUDIT_VERIFY_KEY``; and a problem for each
    one that does not (rows deleted without a signed archive). In the caller's transaction.

    Raises:
        ValueError: there are anchors and no key to check them with.
    """
    if conn.execute("SELECT pg_catalog.to_regclass('pymem.audit_anchors') IS NULL").fetchone()[0]:
        return {}, []  # a schema before 0024
    rows = conn.execute("SELECT user_hash::pg_catalog.text, chain_pos, row_hash, signature"
                        " FROM pymem.audit_anchors ORDER BY user_hash").fetchall()
    if not rows:
        return {}, []
    try:
        key = verify_key()
    except ValueError as error:
        raise ValueError(f"the log has retired segments, whose anchors are signed: {error}") from None
    anchors, problems, tails = {}, [], v1_tails(conn)
    for user_hash, chain_pos, row_hash, signature in rows:
        try:
            key.verify(bytes(signature), anchor_statement(database, user_hash, chain_pos, bytes(row_hash),
                                                          tails.get(user_hash)))
        except (InvalidSignature, TypeError, ValueError):  # (NULLs where the constraints were dropped)
            problems.append(AuditProblem(user_hash or NO_TENANT, chain_pos or 0,
                                         "the chain's anchor is not signed by the audit key (rows were deleted"
                                         " without a signed archive, or its first-log rows changed)"))
            continue
        anchors[user_hash] = (chain_pos, bytes(row_hash))
    return anchors, problems


def read_archives(paths: Sequence[str | Path]) -> list[Archive]:
    """Archives read back and checked (:func:`pymem.audit_archive.read_archive`), before any
    transaction is opened: their files are the operator's, and may be slow to read."""
    return [read_archive(path, verify_key()) for path in paths]


def walk_log(conn: psycopg.Connection, database: str, wanted: frozenset[tuple[str, int]] = frozenset(), *,
             on_row: OnRow | None = None, after: dict[str, tuple[int, bytes]] | None = None,
             archives: Sequence[Archive] = ()) -> tuple[list[AuditProblem], ChainWalk]:
    """Walk every chain (:func:`pymem.audit_chain.verify_chains`) from where it starts: its
    signed anchor (:func:`signed_anchors`), or the archives given that verify
    (:func:`read_archives`), or ``after``. In the caller's auditor transaction.

    Returns:
        The problems (anchors' and archives' first), and the walk.
    """
    anchors, problems = signed_anchors(conn, database)
    archived, archive_problems = _archived_rows(archives, database)
    walk = verify_chains(conn, wanted, on_row=on_row, after=after, anchors=anchors, archived=archived)
    return problems + archive_problems + [AuditProblem(p.user_hash, p.chain_pos, p.problem)
                                          for p in walk.problems], walk


def _archived_rows(archives: Sequence[Archive], database: str) -> tuple[list[tuple], list[AuditProblem]]:
    """The rows of this database's archives that verify, in chain order; a problem for
    each archive that does not."""
    rows, problems = [], []
    for archive in archives:
        found = archive.problems + ([f"it is of database {archive.database!r}, not {database!r}"]
                                    if archive.database not in (None, database) else [])
        problems += [AuditProblem(NO_TENANT, 0, f"archive {archive.manifest.name}: {p}") for p in found]
        rows += [] if found else archive.rows
    return sorted(rows, key=lambda row: (row[0], row[1])), problems


def verify_audit_log(conn: psycopg.Connection, checkpoint: str | Path | None = None, *,
                     on_row: OnRow | None = None, database: str | None = None,
                     since_checkpoint: bool = False, archives: Sequence[str | Path] = ()) -> AuditFindings:
    """Recompute every audit chain from its raw rows, here; an empty list means intact.

    One pass over the log, in one transaction, calling no function of pymem's (see
    :mod:`pymem.audit_chain`). With ``checkpoint``, the rows a signed checkpoint names
    are checked in the same pass: each must be where the walk reached it, its chain
    intact up to it, with the hash the checkpoint signed.

    Args:
        conn: a connection whose role is, or may SET ROLE to, ``pymem_auditor``.
        checkpoint: a file written by :func:`write_checkpoint`. It names the database it was
            taken of; a checkpoint of another database is reported, not compared.
        on_row: called with each row the walk recomputes (see :func:`pymem.audit_chain.verify_chains`).
        database: the database name the checkpoint must name, when this one was restored
            under another (default: this database's name).
        since_checkpoint: verify only what was appended since ``checkpoint``: each chain's
            checkpointed row must still hash to the signed hash, and the rows after it must
            chain onto it (:func:`pymem.audit_chain.verify_chains`, ``after``). The rows
            before it were verified when the checkpoint was written and are not read again:
            a full verification, now and then, checks them again.
        archives: manifests of retired segments (``pymem audit-archive``): their rows are
            walked ahead of the log's, so that the chains they reach back into are verified
            whole (and ``on_row`` sees them). Without them, a chain whose old rows were retired
            is walked from its signed anchor, and checkpointed rows before it are not looked for.

    Returns:
        The problems; their ``partial`` names the chains verified only from a later row than
        their first (retired, and in no archive given), with that row's position.

    Raises:
        ValueError: the checkpoint is not one, or its signature does not verify under
            ``PYMEM_AUDIT_VERIFY_KEY`` (a forged or edited checkpoint); ``since_checkpoint``
            without a checkpoint; there are retired segments and no key to check their anchors.
    """
    if since_checkpoint and checkpoint is None:
        raise ValueError("an incremental verification starts from a checkpoint: give one")
    if since_checkpoint and archives:
        raise ValueError("archives are walked by a full verification, not an incremental one")
    body = read_checkpoint(checkpoint) if checkpoint is not None else {"heads": []}
    heads = body["heads"]
    archived = read_archives(archives)
    with as_auditor(conn):
        expected = database or current_database(conn)
        # A checkpoint without the field (written before it existed) is compared as it is.
        if checkpoint is not None and body.get("database", expected) != expected:
            return AuditFindings([AuditProblem(NO_TENANT, 0, f"the checkpoint is of database"
                                               f" {body.get('database')!r}, not {expected!r}: use that database's"
                                               " checkpoints")])
        if since_checkpoint:
            return AuditFindings(walk_log(conn, expected, on_row=on_row,
                                          after={u: (p, bytes.fromhex(h)) for u, p, h in heads})[0])
        problems, walk = walk_log(conn, expected, frozenset((h[0], h[1]) for h in heads), on_row=on_row,
                                  archives=archived)
    return AuditFindings(problems + checkpoint_problems(heads, walk), walk.partial)


def checkpoint_problems(heads: list, walk: ChainWalk) -> list[AuditProblem]:
    """Each row a checkpoint signed (``heads``) that the walk did not reach with its chain
    intact, or reached with another hash. A row before where the walk of its chain began
    (retired behind a signed anchor, and in no archive given) is not looked for."""
    problems = []
    for user_hash, chain_pos, row_hash in heads:
        now = walk.hashes.get((user_hash, chain_pos))
        if now is None and chain_pos < walk.partial.get(user_hash, 0):
            continue
        if now is None:
            # Absent, or its chain broken before it (the walk names the break).
            problems.append(AuditProblem(user_hash, chain_pos, "checkpointed row is gone (chain cut or deleted)"))
        elif now.hex() != row_hash:
            problems.append(AuditProblem(user_hash, chain_pos, "checkpointed row has changed"))
    return problems


def _decode_key(variable: str, raw: str | None) -> bytes:
    if not raw or not raw.strip():
        raise ValueError(f"{variable} is not set; generate a pair with `pymem keygen --audit`")
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{variable} is not valid base64") from None
    if len(key) != 32:
        raise ValueError(f"{variable} must decode to exactly 32 bytes")
    return key


def generate_signing_key() -> tuple[str, str]:
    """A fresh Ed25519 pair as base64: (``PYMEM_AUDIT_SIGNING_KEY``, ``PYMEM_AUDIT_VERIFY_KEY``)."""
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(seed).decode(), base64.b64encode(public).decode()


def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(
        _decode_key("PYMEM_AUDIT_SIGNING_KEY", key_material().audit_signing_key))


def verify_key() -> Ed25519PublicKey:
    """PYMEM_AUDIT_VERIFY_KEY, else the public half of PYMEM_AUDIT_SIGNING_KEY."""
    raw = key_material().audit_verify_key
    if raw:
        return Ed25519PublicKey.from_public_bytes(_decode_key("PYMEM_AUDIT_VERIFY_KEY", raw))
    return signing_key().public_key()


def write_checkpoint(conn: psycopg.Connection, path: str | Path, *, rebaseline: dict | None = None,
                     against: list | None = None) -> int:
    """Walk every chain here and sign each chain's last row into ``path`` (atomically).

    The heads signed are those the walk computed, not what the server says they are;
    a log that does not verify is not signed.

    Args:
        conn: a connection whose role is, or may SET ROLE to, ``pymem_auditor``.
        path: where the operator keeps checkpoints (not the database).
        rebaseline: what this checkpoint re-baselines from, signed with it
            (:func:`pymem.audit_retention.rebaseline`).
        against: the heads of an earlier checkpoint that the log must still verify against,
            in the same walk as the one signed.

    Returns:
        The number of chains checkpointed.

    Raises:
        ValueError: ``PYMEM_AUDIT_SIGNING_KEY`` is missing or malformed, or the log does
            not verify (run ``pymem audit-verify``).
    """
    key = signing_key()
    with as_auditor(conn):
        database = current_database(conn)
        problems, walk = walk_log(conn, database, frozenset((h[0], h[1]) for h in against or ()))
        problems += checkpoint_problems(against or [], walk)
    if problems:
        raise ValueError(f"the audit log does not verify ({len(problems)} problems):"
                         " pymem audit-verify names them; nothing was signed")
    body = {"format": CHECKPOINT_FORMAT, "created_at": datetime.now(timezone.utc).isoformat(),
            "database": database,
            "heads": [[u, int(p), h.hex()] for u, (p, h) in sorted(walk.ends.items()) if p > 0]}
    if rebaseline is not None:
        body["rebaseline"] = rebaseline
    body["signature"] = base64.b64encode(key.sign(canonical(body))).decode()
    write_json(Path(path), body)
    return len(body["heads"])


def write_json(target: Path, body: dict) -> None:
    """Write a signed file whole or not at all (a temporary file, renamed over ``target``)."""
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(body, out, indent=1)
    os.replace(tmp, target)


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint's body, its signature verified under ``PYMEM_AUDIT_VERIFY_KEY``.

    Raises:
        ValueError: the file is not a checkpoint, or its signature does not verify.
    """
    try:
        body = json.loads(Path(path).read_text(encoding="utf-8"))
        signature = base64.b64decode(body.pop("signature"), validate=True)
        if body.get("format") != CHECKPOINT_FORMAT:
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError, binascii.Error):
        raise ValueError(f"{path} is not a readable pymem audit checkpoint") from None
    try:
        verify_key().verify(signature, canonical(body))
    except InvalidSignature:
        raise ValueError(f"{path}: the checkpoint's signature does not verify (forged or edited)") from None
    return body


def verify_checkpoint(conn: psycopg.Connection, path: str | Path) -> list[AuditProblem]:
    """The problems of the log and of a signed checkpoint, in one pass (:func:`verify_audit_log`).

    A chain cut at its end, or deleted whole (head included), no longer has the
    checkpointed row: that is reported here even when the chains verify. Each row's
    hash is recomputed here from its fields, in the walk of its chain, so a rewritten
    row does not pass because its stored ``row_hash`` was rewritten too.

    Raises:
        ValueError: as :func:`verify_audit_log`.
    """
    return verify_audit_log(conn, path)
