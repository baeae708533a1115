"""Root-key rotation and retirement: O(tenants) re-wrapping, and destroying on purpose.

Rotating the root key (``pymem rotate-root-key``)
    Configure the new root key as the current one (a new ``MEMORY_ENCRYPTION_KEY`` and
    ``MEMORY_ENCRYPTION_KEY_ID`` with the old key kept in ``MEMORY_ENCRYPTION_OLD_KEYS``;
    a new ``PYMEM_PKCS11_KEY`` label; a new ``PYMEM_KMS_KEY_ID``), keeping the old one
    usable. New data keys are wrapped under the new root at once. The command then
    unwraps every data key still under another root and wraps it under the new one,
    a batch per transaction: no row is read or re-sealed. Each re-wrap carries its
    tenant's proof, so the command needs ``MEMORY_TENANT_HMAC_KEY`` beside the root
    keys (a maintainer login without the keys cannot overwrite a tenant's data key).
    Killing it loses nothing
    (a key is only replaced while it is still under the root it was read under), and
    running it again resumes. Every re-wrap is recorded in its tenant's chain.

Retiring the old root key (``pymem retire-root-key REF``)
    Once no data key is under it, destroying it is a decision with one consequence
    that the command states before it acts: every backup taken before the rotation
    moved the last data key off it (``last_used_at``) holds data keys wrapped only
    under it, and stops opening. Erasure reaches those backups at that moment. The
    retirement is recorded (``pymem.root_keys.retired_at``, and in the audit chain of
    no tenant); destroying the key where it is kept is the operator's next step.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

from .audit import verify_audit_log
from .connections import borrowing
from .doctor import check_schema
from .errors import KeyDestroyed
from .extras import progress_bar
from .pins import autocommit
from .root_keys import KeyContext, provider, provider_of
from .rotation import RateLimit
from .security import keyring
from .tenant_keys import run_provider

_TO_REWRAP_SQL = ("SELECT user_hash, version, root_key, wrapped"
                  " FROM pymem.data_keys_to_rewrap(%s::pg_catalog.text, %s::pg_catalog.int4)")
_REWRAP_SQL = ("SELECT pymem.rewrap_data_keys(%b::pg_catalog.bpchar[], %b::pg_catalog.bytea[], %b::pg_catalog.int4[],"
               " %b::pg_catalog.text[], %s::pg_catalog.text, %b::pg_catalog.bytea[])")


@dataclass(frozen=True)
class RootKeyUsage:
    """One root key: live data keys and tenants under it, when one last was, when retired."""

    root_key: str
    data_keys: int
    tenants: int
    last_used_at: datetime | None
    retired_at: datetime | None


@dataclass(frozen=True)
class RootRotationReport:
    """What a root rotation did: data keys re-wrapped, batches, and the root now current."""

    root_key: str
    rewrapped: int
    batches: int


@borrowing
async def root_key_usage(conn: psycopg.AsyncConnection) -> list[RootKeyUsage]:
    """Every root key the database knows (needs pymem_maintainer or pymem_auditor)."""
    cursor = await conn.execute("SELECT root_key, data_keys, tenants, last_used_at, retired_at"
                                " FROM pymem.root_key_usage()")
    return [RootKeyUsage(*row) for row in await cursor.fetchall()]


def _rewrapped(keys: list[tuple[KeyContext, str, bytes]], new_root: str) -> list[bytes]:
    """Each data key unwrapped under its root and wrapped under ``new_root`` (a thread's work)."""
    current = provider()
    return [current.wrap(new_root, provider_of(root_key).unwrap(root_key, bytes(wrapped), context), context)
            for context, root_key, wrapped in keys]


def destroyed_data_keys(conn: psycopg.Connection, checkpoint: str | Path) -> dict[str, set[int]]:
    """The data key versions erasure destroyed, per tenant, from the audit chains
    recomputed here and checked against a signed checkpoint (revision 0019's
    ``key_destroy`` rows name them): what the database cannot make live again unseen.

    Args:
        conn: a connection whose role is, or may SET ROLE to, ``pymem_auditor``.
        checkpoint: a file written by ``pymem audit-checkpoint``, taken after the
            erasures it is to protect (``PYMEM_AUDIT_VERIFY_KEY`` verifies it).

    Raises:
        ValueError: no checkpoint named; the database is not at this pymem's revision or
            runs functions other than the ones it ships (the list of keys to re-wrap comes
            from one); the log does not verify against the checkpoint, or the checkpoint
            is not one. Nothing may be re-wrapped then.
    """
    if not checkpoint:
        raise ValueError("a checkpoint file is needed (pymem audit-checkpoint --out FILE)")
    for finding in check_schema(conn):
        if finding.check in ("schema revision", "function definitions") and not finding.ok:
            raise ValueError(f"{finding.check}: {finding.detail}; no data key is re-wrapped on such a database")
    destroyed: dict[str, set[int]] = {}

    def on_row(user_hash, operation, phase, chunk_ids, params_digest, row_count) -> None:
        if operation == "key_destroy":
            destroyed.setdefault(user_hash, set()).update(uuid.UUID(str(i)).int for i in chunk_ids or ())

    problems = verify_audit_log(conn, checkpoint, on_row=on_row)
    if problems:
        raise ValueError(f"the audit log does not verify against the checkpoint ({len(problems)} problems;"
                         " pymem audit-verify names them): no data key is re-wrapped on it")
    return destroyed


@borrowing
async def rotate_root_key(conn: psycopg.AsyncConnection, *, batch_size: int = 500, progress: bool = False,
                          max_batches: int | None = None, max_keys_per_second: float | None = None,
                          destroyed: Mapping[str, set[int]] | None = None) -> RootRotationReport:
    """Re-wrap every data key not under the current root key with it.

    Args:
        conn: a connection or pool (:mod:`pymem.connections`) of a role with pymem_maintainer.
        batch_size: data keys per transaction (1..10000).
        progress: show a progress bar.
        max_batches: stop after this many batches (None: when none is left); a later
            run resumes.
        max_keys_per_second: rate limit, to stay inside a KMS's request quota (None: unlimited).
        destroyed: :func:`destroyed_data_keys`: a data key listed there that the database has
            live again (put back from a backup) stops the run before it is re-wrapped.

    Raises:
        RootKeyUnavailable: the old or the new root key cannot be used; what was done stays.
        WrappedKeyInvalid: a wrapped key was changed in the database; the run stops there.
        KeyDestroyed: a key ``destroyed`` lists is live in the database; the run stops there.
    """
    if not 1 <= batch_size <= 10_000:
        raise ValueError("batch_size must be between 1 and 10000")
    throttle = RateLimit(max_keys_per_second)
    async with autocommit(conn):  # each batch commits on its own, whatever the connection's mode
        return await _rotate(conn, batch_size, progress, max_batches, throttle, destroyed or {})


async def _rotate(conn: psycopg.AsyncConnection, batch_size: int, progress: bool, max_batches: int | None,
                  throttle: RateLimit, destroyed: Mapping[str, set[int]]) -> RootRotationReport:
    new_root = provider().current()
    total = sum(u.data_keys for u in await root_key_usage(conn) if u.root_key != new_root)
    bar = progress_bar(total, enabled=progress, unit="key", desc="re-wrapping")
    rewrapped = batches = 0
    while max_batches is None or batches < max_batches:
        cursor = await conn.execute(_TO_REWRAP_SQL, (new_root, batch_size))
        rows = await cursor.fetchall()
        if not rows:
            break
        # What the database listed is checked once (KeyContext: a hash, an int version), and
        # the checked values are what is compared, unwrapped, wrapped and sent back.
        keys = [(KeyContext(h.strip() if isinstance(h, str) else h, v), root_key, wrapped)
                for h, v, root_key, wrapped in rows]
        revived = [c for c, _, _ in keys if c.version in destroyed.get(c.user_hash, ())]
        if revived:
            raise KeyDestroyed(f"{len(revived)} data keys the audit chain records as destroyed are live in the"
                               f" database (tenant {revived[0].user_hash[:12]}..., version {revived[0].version}): put"
                               " back from a copy; nothing was re-wrapped in this batch")
        wrapped = await run_provider(_rewrapped, keys, new_root)
        async with conn.transaction():
            contexts = [c for c, _, _ in keys]
            proofs = [keyring().tenant_proof(c.user_hash) for c in contexts]  # only the keys make them
            cursor = await conn.execute(_REWRAP_SQL, ([c.user_hash for c in contexts], proofs,
                                                      [c.version for c in contexts], [r for _, r, _ in keys],
                                                      new_root, wrapped))
            done = (await cursor.fetchone())[0]
        rewrapped += done
        batches += 1
        bar.update(done)
        await throttle.add(len(rows))
    bar.close()
    return RootRotationReport(new_root, rewrapped, batches)


@borrowing
async def retire_root_key(conn: psycopg.AsyncConnection, root_key: str,
                          confirm: Callable[[str], bool]) -> datetime | None:
    """Retire ``root_key`` once no data key is under it, after ``confirm`` agreed.

    ``confirm`` is shown what retiring makes unreadable (backups taken before the
    root key's last use) and returns whether to go on.

    Returns:
        When a data key was last under the root key; None when ``confirm`` declined.

    Raises:
        ValueError: it is the current root key, data keys are still under it (or, for a
            ``local:`` root, rows under the ring key it is made from), or no data key was
            ever moved off it (the database's checks, made before ``confirm`` is asked).
    """
    if root_key == provider().current():
        raise ValueError(f"{root_key!r} is the current root key: rotate to another one first")
    agreed = False
    async with autocommit(conn):
        try:
            async with conn.transaction():
                # pymem.retire_root_key makes every check and returns the date confirm needs;
                # the retirement commits only once confirm agreed.
                cursor = await conn.execute("SELECT pymem.retire_root_key(%s::pg_catalog.text)", (root_key,))
                last_used = (await cursor.fetchone())[0]
                agreed = confirm(f"Retiring {root_key} makes every backup taken before {last_used.isoformat()}"
                                 " unreadable once the key is destroyed where it is kept: their data keys are"
                                 " wrapped under it alone. Keep it as long as you must be able to restore those"
                                 " backups.")
                if not agreed:
                    raise psycopg.Rollback()
        except (psycopg.errors.ObjectInUse, psycopg.errors.UndefinedObject) as refused:
            raise ValueError(f"{root_key!r} is not retired: {refused.diag.message_primary}"
                             f" ({refused.diag.message_hint or 'pymem root-keys lists the root keys'})") from None
    return last_used if agreed else None
