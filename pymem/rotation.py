"""Key rotation: re-seal rows under the active AES key; move users to a new HMAC key.

Rows under tenant data keys (revision 0019; :mod:`pymem.tenant_keys`)
    ``pymem rotate-key`` moves rows still sealed under a key of the environment's ring
    (written before 0019) under their tenant's data key, tenant by tenant, one batch
    per transaction. ``pymem rotate-key --tenant HASH --new-data-key`` rotates one
    tenant's data key: a new one seals its new rows at once, and its rows are
    re-sealed under it; no other tenant's row is touched. Killing either at any point
    loses nothing (a batch commits whole or not at all), and running it again resumes
    where it stopped. Rotating the root key re-wraps data keys only
    (:mod:`pymem.root_rotation`).

HMAC rotation (yearly; a full re-index)
    ``user_hash`` is HMAC(key, user_id), so a new HMAC key moves every tenant.
    :func:`rotate_tenant_key` moves the given users one transaction each: it exports
    the rows under the old hash, erases them, and re-inserts them under the new hash
    with every field re-sealed under the new AAD. Both sides are audited (delete in
    the old hash's chain, insert in the new one). pymem cannot list user ids (it only
    ever stores hashes): the caller supplies them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import hmac
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import psycopg
from cryptography.exceptions import InvalidTag

from .reads import commit_read_intent
from .blind_index import TenantIndex, index_master_key
from .chunks import ChunkInput, SealedRow, open_row, seal_row
from .connections import borrowing
from .extras import progress_bar, progress_iter
from .lifecycle import RowTimes
from .repository import EXPORT_SQL, every_row_export, export_pages, write_sealed_rows
from .errors import KeyDestroyed
from .security import UnknownKeyId, keyring, tenant_proof, tenant_proof_key
from .tenant import check_user_hash, enter_tenant_call, tenant_transaction
from .tenant_keys import TenantKeys, data_key_id, forget, keys_for_writing, new_current_key, tenant_keys
from .terms import term_language
from .config import get_settings
from .write_records import sealed_record

_REKEY_SQL = ("SELECT pymem.rekey_chunks_v2(%s::pg_catalog.bpchar, %b::pg_catalog.uuid[], %b::pg_catalog.int4[],"
              " %b::pg_catalog.bytea[], %b::pg_catalog.bytea[], %b::pg_catalog.bytea[], %b::pg_catalog.bytea[],"
              " %s::pg_catalog.int4, %s::pg_catalog.int2, %b::pg_catalog.bytea[])")
_QUARANTINE_SQL = ("SELECT pymem.quarantine_chunks(%s::pg_catalog.bpchar, %b::pg_catalog.uuid[],"
                   " %s::pg_catalog.text)")
_ERASE_SQL = "SELECT pymem.erase_tenant(%s::pg_catalog.bpchar)"


@dataclass(frozen=True)
class KeyUsage:
    """One key's counters from ``pymem.key_usage()``."""

    key_id: int
    live_rows: int
    seals: int
    tenants: int


@dataclass(frozen=True)
class RotationReport:
    """What a rotation run did, and what it left under old keys.

    ``quarantined`` rows did not open (tampered ciphertext, or a key id the ring
    does not hold); they are listed by ``pymem.quarantined()`` and stay under
    their old key. ``rows_left`` counts every live row still under an old key
    after the run, so an old key can be retired only when it is 0.
    """

    rows_resealed: int
    tenants: int
    batches: int
    quarantined: int = 0
    rows_left: int = 0


@borrowing
async def key_usage(conn: psycopg.AsyncConnection) -> list[KeyUsage]:
    """Live rows, seals so far and tenants, per key id (needs pymem_maintainer or pymem_auditor)."""
    cursor = await conn.execute("SELECT key_id, live_rows, seals, tenants FROM pymem.key_usage()")
    return [KeyUsage(*row) for row in await cursor.fetchall()]


def _resealed(row: tuple, old_hash: str, new_hash: str, index: TenantIndex, old_keys: TenantKeys,
              new_keys: TenantKeys, *, upgrade: bool = False) -> SealedRow:
    """Open an exported row under ``old_keys`` and seal it again under the current data key
    of ``new_keys`` for ``new_hash``.

    Re-keying passes the same hash (and keys) twice; moving a user to a new HMAC key
    passes the old and new hash and the new key's blind index, so the AAD, the hashed
    caller ids and the metadata tags change with it.
    """
    opened = open_row(old_hash, row, old_keys)
    has_caller_id = row[9] is not None  # ref_cipher
    # Re-keyed in place, a row keeps its AAD layout (v1 becomes v2) and so what its tags say
    # (they are not rewritten); ``upgrade`` (a move, which writes its tags anew) seals it as v3.
    # Either way it keeps its expiry, which v3 binds and a v2 row cannot have.
    version = 3 if upgrade or opened.aad_version == 3 else 2
    chunk = ChunkInput(opened.doc_id, opened.source, opened.text, opened.embedding, opened.metadata,
                       id=opened.external_id if has_caller_id else None,
                       expires_at=RowTimes.of(row).expires_at if opened.aad_version == 3 else None)
    # No size limit: the row was accepted when it was written. A row without a caller
    # id keeps its row id; a caller id is keyed again under ``index``.
    # Keyword terms are tagged under the new blind index too, as a write would.
    return seal_row(new_hash, index, chunk, len(opened.embedding), sys.maxsize, new_keys,
                    data_key_id(new_keys.current), keep_row_id=None if has_caller_id else opened.id,
                    term_language=term_language(get_settings()), aad_version=version, stored_expiry=True)


class RateLimit:
    """Sleeps so that ``done`` rows take at least ``done / rate`` seconds."""

    def __init__(self, rate: float | None):
        if rate is not None and rate <= 0:
            raise ValueError("the rate limit must be positive")
        self.rate, self.start, self.done = rate, time.monotonic(), 0

    async def add(self, rows: int) -> None:
        self.done += rows
        if self.rate:
            ahead = self.done / self.rate - (time.monotonic() - self.start)
            if ahead > 0:
                await asyncio.sleep(ahead)


@borrowing
async def rotate_encryption_key(conn: psycopg.AsyncConnection, *, batch_size: int = 500,
                                max_rows_per_second: float | None = None, progress: bool = False,
                                every_row: bool = False, user_hashes: Sequence[str] | None = None,
                                new_data_key: bool = False) -> RotationReport:
    """Re-seal rows under each tenant's current data key (and AAD v2).

    Without ``user_hashes``: every row still under a key of the environment's ring
    (written before revision 0019) moves under its tenant's data key, made if the
    tenant has none. With them: those tenants' rows under any other key (an older
    data key, a ring key) move under their current data key; with ``new_data_key``,
    each first gets a new current data key (a tenant's key rotation: only its rows
    are re-sealed).

    Rows that do not open (a tampered ciphertext, a key id the ring does not hold, a
    destroyed data key) are quarantined and skipped, and the run finishes everything
    else: one bad row can no longer stop a rotation. The report says what is left.
    Killing it at any point loses nothing (a batch commits whole or not at all), and
    running it again resumes where it stopped (with ``new_data_key``, run it again
    without: a second new key would start over).

    Args:
        conn: a connection or pool (:mod:`pymem.connections`) of a role with pymem_maintainer.
        batch_size: rows per transaction (1..10000).
        max_rows_per_second: rate limit, to spare a busy primary (None: unlimited).
        progress: show a progress bar.
        every_row: re-seal the rows under the current data key too, which gives rows last
            written before revision 0016 their write record (:mod:`pymem.freshness`).
            Such a run is not resumable: run again, it starts over.
        user_hashes: the tenants to re-seal (None: every tenant with rows under a ring key).
        new_data_key: give each of ``user_hashes`` a new current data key first.

    Raises:
        ValueError: a bad batch size or rate, or ``new_data_key`` without ``user_hashes``.
        RootKeyUnavailable: a tenant's data key cannot be made or unwrapped.
    """
    if not 1 <= batch_size <= 10_000:
        raise ValueError("batch_size must be between 1 and 10000")
    if new_data_key and not user_hashes:
        raise ValueError("new_data_key needs the tenants whose data key to rotate (user_hashes)")
    usage = [u.key_id for u in await key_usage(conn) if u.live_rows > 0]
    ring_ids = [k for k in usage if k > 0]
    if user_hashes is None:
        if not ring_ids and not every_row:
            return RotationReport(0, 0, 0)
        cursor = await conn.execute("SELECT user_hash, live_rows FROM pymem.tenants_with_keys(%b::pg_catalog.int4[])",
                                    (usage if every_row else ring_ids,))
        tenants = [(h.strip(), n) for h, n in await cursor.fetchall()]
    else:
        tenants = [(check_user_hash(h), 0) for h in user_hashes]
    bar = progress_bar(sum(n for _, n in tenants) or None, enabled=progress, unit="row", desc="re-sealing")
    throttle = RateLimit(max_rows_per_second)
    resealed = batches = quarantined = 0
    for user_hash, _ in tenants:
        keys = await tenant_keys(conn, user_hash)
        if keys.current is None and keys.destroyed and not new_data_key:
            # Erased, and not back since: its rows here were put back from a copy. A new
            # data key would make them live again; they are quarantined instead.
            target = None
        else:
            keys = await (new_current_key if new_data_key else keys_for_writing)(conn, user_hash)
            target = data_key_id(keys.current)
        old_ids = usage if every_row else [k for k in (ring_ids if user_hashes is None else usage) if k != target]
        after = None  # keyset paging: quarantined rows are passed over, not read again
        while old_ids:
            ticket = await commit_read_intent(conn, user_hash, "export_v3", every_row_export(old_ids, batch_size))
            async with tenant_transaction(conn, user_hash):
                cursor = await conn.execute(EXPORT_SQL, (user_hash, ticket, old_ids, after, batch_size, [], "all"))
                rows = await cursor.fetchall()
                if not rows:
                    break
                after = rows[-1][0]
                changed, bad = await _reseal_batch(conn, user_hash, rows, keys)
            resealed += changed
            quarantined += bad
            batches += 1
            bar.update(changed + bad)
            await throttle.add(changed)
    bar.close()
    left = sum(u.live_rows for u in await key_usage(conn) if u.key_id > 0)
    return RotationReport(resealed, len(tenants), batches, quarantined, left)


async def _reseal_batch(conn: psycopg.AsyncConnection, user_hash: str, rows: list[tuple],
                        keys: TenantKeys) -> tuple[int, int]:
    """Re-seal the rows that open, quarantine the rest; return (re-sealed, quarantined).
    A tenant that was erased (``keys`` has no current key) has every row quarantined."""
    fresh, bad = [], {"does not open": [], "key not in the ring": [], "data key destroyed": [], "tenant erased": []}
    index = keyring().tenant_index(user_hash)
    if keys.current is None:
        bad["tenant erased"] = [row[0] for row in rows]
        rows = []
    target = None if keys.current is None else data_key_id(keys.current)
    for row in rows:
        try:
            fresh.append((row, _resealed(row, user_hash, user_hash, index, keys, keys)))
        except UnknownKeyId:
            bad["key not in the ring"].append(row[0])
        except KeyDestroyed:
            bad["data key destroyed"].append(row[0])
        except InvalidTag:  # EmbeddingMismatch included
            bad["does not open"].append(row[0])
    changed = 0
    for version in (2, 3):  # rekey_chunks_v2 takes one AAD version a call
        group = [(r, f) for r, f in fresh if (r[7] == 3) == (version == 3)]
        if group:
            cursor = await conn.execute(_REKEY_SQL, (
                user_hash, [f.id for _, f in group], [r[6] for r, _ in group], [f.text_cipher for _, f in group],
                [f.meta_cipher for _, f in group], [f.emb_cipher for _, f in group], [f.ref_cipher for _, f in group],
                target, version, [sealed_record(index, f, target, version) for _, f in group]))
            changed += (await cursor.fetchone())[0]
    for reason, ids in bad.items():
        if ids:
            await conn.execute(_QUARANTINE_SQL, (user_hash, ids, reason))
    return changed, sum(len(ids) for ids in bad.values())


def _hmac_key(value: str | bytes, name: str) -> bytes:
    if isinstance(value, str):
        try:
            value = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{name} is not valid base64") from None
    if not isinstance(value, bytes) or len(value) != 32:
        raise ValueError(f"{name} must be 32 bytes")
    return value


@borrowing
async def rotate_tenant_key(conn: psycopg.AsyncConnection, user_ids: Iterable[str], old_hmac_key: str | bytes,
                            new_hmac_key: str | bytes, *, page_size: int = 1000, progress: bool = False) -> int:
    """Move users' rows from HMAC(old key) to HMAC(new key), re-sealing every field.

    One transaction per user: export, erase, re-insert under the new user_hash and
    AAD (active AES key). Rows keep their ids where the caller's id is a UUID; a
    hashed caller id is hashed again under the new key's blind index. A failure rolls that user back whole.
    ``created_at`` restarts at the move (the rows are re-inserted).

    Args:
        conn: a connection or pool (:mod:`pymem.connections`) of a role with pymem_app.
        user_ids: the application's user ids (pymem stores only their hashes).
        old_hmac_key, new_hmac_key: 32-byte keys, raw or base64.

    Returns:
        Rows moved.

    Raises:
        ValueError: bad keys (equal, or not 32 bytes) or a bad user id.
    """
    old_key, new_key = _hmac_key(old_hmac_key, "old_hmac_key"), _hmac_key(new_hmac_key, "new_hmac_key")
    if old_key == new_key:
        raise ValueError("the new HMAC key must differ from the old one")
    users = list(user_ids)
    if any(not isinstance(u, str) or u == "" for u in users):
        raise ValueError("user ids must be non-empty str")
    new_index_master = index_master_key(new_key)
    old_proof_key, new_proof_key = tenant_proof_key(old_key), tenant_proof_key(new_key)
    moved = 0
    for user_id in progress_iter(users, enabled=progress, unit="user", desc="re-tenanting"):
        old_hash = hmac.new(old_key, user_id.encode(), hashlib.sha256).hexdigest()
        new_hash = hmac.new(new_key, user_id.encode(), hashlib.sha256).hexdigest()
        old_proof, new_proof = tenant_proof(old_proof_key, old_hash), tenant_proof(new_proof_key, new_hash)
        old_keys = await tenant_keys(conn, old_hash, proof=old_proof)
        new_keys = await keys_for_writing(conn, new_hash, proof=new_proof)
        ticket = await commit_read_intent(conn, old_hash, "export_v3", every_row_export(None, page_size),
                                          proof=old_proof)
        async with tenant_transaction(conn, old_hash, proof=old_proof):
            rows = [row async for page in export_pages(conn, old_hash, ticket, page_size) for row in page]
            cursor = await conn.execute(_ERASE_SQL, (old_hash,))
            if (await cursor.fetchone())[0] != len(rows):
                raise RuntimeError("rows changed during the move; nothing was moved for this user")
            await conn.execute(*enter_tenant_call(new_hash, new_proof))
            index = TenantIndex(new_index_master, new_hash)
            # A row keeps its expiry (its AAD binds it: a changed one does not open); an expired
            # one is erased with the rest and not moved.
            # (Only a v3 row has an expiry: one the table gives a v2 row is not its own.)
            # Every row is opened first (a v3 row only with the expiry it was sealed with).
            now = dt.datetime.now(dt.timezone.utc)
            moving = [sealed for row, sealed in
                      ((row, _resealed(row, old_hash, new_hash, index, old_keys, new_keys, upgrade=True))
                       for row in rows)
                      if not (row[7] == 3 and RowTimes.of(row).expired(now))]
            if moving:
                await write_sealed_rows(conn, new_hash, index, moving, data_key_id(new_keys.current))
        forget(old_hash)  # erase_tenant destroyed its data keys
        moved += len(moving)
    return moved
