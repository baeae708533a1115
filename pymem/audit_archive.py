"""The archive of retired audit segments: its files, and checking one (revision 0024).

``pymem audit-archive`` (:mod:`pymem.audit_retention`) copies each chain's rows up to
a signed checkpoint's head into two files, kept wherever the operator keeps
checkpoints:

* ``<name>.jsonl``: one row per line, in chain order, as the verifier reads it
  (:data:`pymem.audit_chain._V2_COLUMNS`): ``[user_hash, chain_pos, epoch_us, db_role,
  operation, phase, ticket, params_digest_hex, [chunk_id, ...], row_count, txid,
  prev_hash_hex, row_hash_hex]``;
* ``<name>.manifest.json``: the rows file's name, size and sha256, one segment per chain
  (``[user_hash, first_pos, last_pos, last_row_hash_hex, anchor_signature_b64,
  first_log_tail]``, the last: ``[position, hash_hex]`` of the chain's last row in the
  first-generation log, or null), the database's name, and an Ed25519 signature of all
  that under the audit signing key.

Each segment's last row is the chain's new start, its **anchor**: the signature of
:func:`anchor_statement` travels to the database with it (``pymem.audit_anchors``),
where the verifier checks it, the database being unable to. A row of an archive
is trusted because its segment hashes, link by link, to the signed anchor.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .audit_chain import row_hash_v2

ARCHIVE_FORMAT = "pymem-audit-archive/1"
ANCHOR_FORMAT = "pymem-audit-anchor/1"
MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_LIMIT = 1 << 30  # bytes: about four million segments


def canonical(body: dict) -> bytes:
    """The bytes a signature covers: the JSON with sorted keys and no spaces."""
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def anchor_statement(database: str, user_hash: str, chain_pos: int, row_hash: bytes,
                     first_log_tail: tuple[int, bytes] | None) -> bytes:
    """What an anchor's signature covers: this chain of this database starts at this row, and
    its rows in the first-generation log end at ``first_log_tail`` (position, hash; None:
    none), which a walk from the anchor no longer reaches."""
    tail = None if first_log_tail is None else [int(first_log_tail[0]), bytes(first_log_tail[1]).hex()]
    return canonical({"format": ANCHOR_FORMAT, "database": database, "user_hash": user_hash,
                      "chain_pos": int(chain_pos), "row_hash": bytes(row_hash).hex(), "first_log_tail": tail})


def row_to_json(row: tuple) -> list:
    """A log row as read by the verifier, as one line of the rows file."""
    (user_hash, chain_pos, at, db_role, operation, phase, ticket, params_digest, chunk_ids, row_count, txid,
     prev, row_hash) = row
    return [user_hash, chain_pos, at, db_role, operation, phase, None if ticket is None else str(ticket),
            None if params_digest is None else bytes(params_digest).hex(),
            None if chunk_ids is None else [str(i) for i in chunk_ids], row_count, txid,
            bytes(prev).hex(), bytes(row_hash).hex()]


def row_from_json(line: list) -> tuple:
    """One line of the rows file, as the verifier reads a log row (so both compare equal)."""
    (user_hash, chain_pos, at, db_role, operation, phase, ticket, params_digest, chunk_ids, row_count, txid,
     prev, row_hash) = line
    return (user_hash, int(chain_pos), at, db_role, operation, phase, None if ticket is None else uuid.UUID(ticket),
            None if params_digest is None else bytes.fromhex(params_digest),
            None if chunk_ids is None else [uuid.UUID(i) for i in chunk_ids], row_count, txid,
            bytes.fromhex(prev), bytes.fromhex(row_hash))


def segment_problem(rows: list[tuple], last_pos: int, last_hash: bytes) -> str | None:
    """Why one chain's archived rows are not a segment ending at (``last_pos``, ``last_hash``),
    or None: each row hashes as it says, links to the one before, and the positions run on."""
    if not rows:
        return "the segment has no rows"
    for n, row in enumerate(rows):
        if row_hash_v2(row[11], *row[:11]) != row[12]:
            return f"row {row[1]} does not hash as it says (changed)"
        if n and (row[1] != rows[n - 1][1] + 1 or row[11] != rows[n - 1][12]):
            return f"row {row[1]} does not follow row {rows[n - 1][1]} (missing, reordered or changed)"
    if rows[-1][1] != last_pos or rows[-1][12] != last_hash:
        return "the segment does not end at its signed anchor"
    return None


@dataclass
class Archive:
    """An archive read back and checked: its rows (chain order; only when asked for, and
    empty when anything does not verify: none of it is used then), how many it holds, the
    chains' anchors, and what does not verify."""

    manifest: Path
    database: str | None
    rows: list[tuple]
    anchors: dict[str, tuple[int, bytes, bytes]]
    problems: list[str]
    row_count: int = 0


def read_archive(manifest: str | Path, verify_key: Ed25519PublicKey, *, keep_rows: bool = True) -> Archive:
    """Read and check an archive: the manifest's signature, the rows file's size and sha256,
    and each segment (:func:`segment_problem`) with its anchor's signature.

    The rows file is read line by line, one chain's segment at a time: only ``keep_rows``
    holds every row in memory (to walk them with the log's, :mod:`pymem.audit`).

    Never raises for a bad archive: what is wrong is in ``problems``.
    """
    path = Path(manifest)
    try:
        with _open_regular(path, MANIFEST_LIMIT, exact=False) as handle:
            body = json.loads(handle.read(MANIFEST_LIMIT).decode("utf-8"))
        signature = base64.b64decode(body.pop("signature"), validate=True)
        if body.get("format") != ARCHIVE_FORMAT:
            raise ValueError
        verify_key.verify(signature, canonical(body))
        segments = {segment[0]: segment for segment in body["segments"]}
    except InvalidSignature:
        return Archive(path, None, [], {}, ["the manifest's signature does not verify (forged or edited)"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError, MemoryError,
            binascii.Error):
        return Archive(path, None, [], {}, ["not a readable pymem audit archive manifest"])
    database = body["database"]
    rows_path = path.parent / Path(body["rows"]).name
    try:
        handle = _open_regular(rows_path, body["rows_bytes"], exact=True)
    except (OSError, ValueError, TypeError):
        return Archive(path, database, [], {}, [f"its rows file {rows_path.name} is missing, not a file or not"
                                                " the size the manifest says"])
    archive = Archive(path, database, [], {}, [])
    digest, malformed = hashlib.sha256(), False
    with handle:
        try:
            _check_segments(archive, handle, digest, segments, verify_key, keep_rows)
        except (ValueError, TypeError, KeyError, IndexError, RecursionError, binascii.Error):
            malformed = True  # signed as it is: only the key's holder could have written it so
        for line in handle:  # the rest, for the digest
            digest.update(line)
    if digest.hexdigest() != body["rows_sha256"]:
        return Archive(path, database, [], {}, [f"its rows file {rows_path.name} was changed (sha256 differs)"])
    if malformed:
        return Archive(path, database, [], {}, ["its rows or segments are malformed"])
    if archive.problems:
        archive.rows = []
    return archive


def _check_segments(archive: Archive, lines, digest, segments: dict, verify_key: Ed25519PublicKey,
                    keep_rows: bool) -> None:
    """Read the rows file's lines into ``archive``, checking each chain's segment as it ends."""
    done: set[str] = set()

    def check(chain: str, segment: list[tuple]) -> None:
        done.add(chain)
        if chain not in segments:
            archive.problems.append(f"chain {chain[:12]}…: rows that no segment names")
            return
        _, first_pos, last_pos, last_hash, anchor_signature, first_log_tail = segments[chain]
        problem = segment_problem(segment, last_pos, bytes.fromhex(last_hash))
        if problem is None and segment[0][1] != first_pos:
            problem = "the segment does not start where the manifest says"
        signature = base64.b64decode(anchor_signature)
        tail = None if first_log_tail is None else (first_log_tail[0], bytes.fromhex(first_log_tail[1]))
        try:
            verify_key.verify(signature, anchor_statement(archive.database, chain, last_pos,
                                                          bytes.fromhex(last_hash), tail))
        except InvalidSignature:
            problem = problem or "its anchor's signature does not verify"
        if problem:
            archive.problems.append(f"chain {chain[:12]}…: {problem}")
        archive.anchors[chain] = (last_pos, bytes.fromhex(last_hash), signature)

    chain, segment = None, []
    for line in lines:
        digest.update(line)
        row = row_from_json(json.loads(line))
        archive.row_count += 1
        if keep_rows:
            archive.rows.append(row)
        if row[0] != chain:
            if chain is not None:
                check(chain, segment)
            if row[0] in done:
                archive.problems.append(f"chain {row[0][:12]}…: its rows are not together (reordered)")
            chain, segment = row[0], []
        segment.append(row)
    if chain is not None:
        check(chain, segment)
    archive.problems += [f"chain {chain[:12]}…: the segment has no rows" for chain in segments if chain not in done]


def _open_regular(path: Path, size: int, *, exact: bool):
    """A regular file of at most ``size`` bytes (a manifest), or of exactly ``size`` (a rows
    file, whose size the signed manifest states), opened for reading. Opened without
    blocking and checked on the descriptor read from: a pipe or a device put in its place
    would never end, and a huge or sparse file would take the memory or the time.

    Raises:
        OSError: missing or unreadable. ValueError: not a regular file, or not that size.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    handle = os.fdopen(fd, "rb")
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > size or (exact and info.st_size != size):
        handle.close()
        raise ValueError("not a regular file of the expected size")
    return handle


def write_rows(path: Path, rows: Iterable[tuple]) -> tuple[str, int, int]:
    """Write the rows file as ``rows`` come; return its sha256 (hex), its size in bytes and
    how many rows it holds."""
    digest, size, count = hashlib.sha256(), 0, 0
    with path.open("wb") as out:
        for row in rows:
            line = (json.dumps(row_to_json(row), separators=(",", ":")) + "\n").encode("utf-8")
            digest.update(line)
            size += out.write(line)
            count += 1
    return digest.hexdigest(), size, count
