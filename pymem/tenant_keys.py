"""Tenant data keys: each tenant's rows sealed under keys of its own (revision 0019).

A tenant's data keys are AES-256 keys made in the app (32 bytes from the OS), stored
in ``pymem.data_keys`` only wrapped by a root key (:mod:`pymem.root_keys`), under row
security and the tenant's proof, bound to the tenant and the version. A row names
the data key that sealed it in ``memory_chunks.key_id`` as ``-version``; a positive
key id is a key of the environment's ring (rows written before 0019, which keep
opening; ``pymem rotate-key`` moves them under the tenant's key).

One key per tenant seals its new rows (its *current* key). Rotating a tenant's data
key (``pymem rotate-key --tenant HASH --new-data-key``) makes a new current one and
re-seals that tenant's rows only. Erasing a tenant (``erase_user``) destroys its
wrapped keys in the same transaction as its rows: any copy of its rows put back
afterwards does not open (:class:`~pymem.errors.KeyDestroyed`).

Each process keeps unwrapped keys in a cache bounded in tenants
(``PYMEM_DATA_KEY_CACHE_SIZE``) and in time (``PYMEM_DATA_KEY_CACHE_TTL_S``): a warm
tenant costs no round trip and no root-key call; a cold one costs one round trip
(``pymem.data_keys_of``, recorded in its chain as a ``key_unwrap``) and one unwrap per
live key. While the root-key provider is down, cached tenants keep working and
the others fail closed with :class:`~pymem.errors.RootKeyUnavailable`.

The cache's counters (:func:`key_metrics`) are hits, misses, unwraps, creations and
provider errors. Key bytes are never logged, put in a message or left in a
traceback's frames.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import traceback
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import psycopg
from cachetools import TTLCache
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .config import get_settings
from .connections import connection_key
from .errors import KeyDestroyed, RootKeyUnavailable, WrappedKeyInvalid
from .root_keys import DATA_KEY_BYTES, KeyContext, new_data_key, provider, provider_of
from .security import NONCE_BYTES, keyring, seal_with
from .pins import pinned_transaction
from .tenant import tenant_transaction

__all__ = ["TenantKeys", "data_key_id", "forget", "forget_all", "key_metrics", "keys_for_writing",
           "new_current_key", "run_provider", "tenant_keys"]

_KEYS_SQL = "SELECT version, root_key, wrapped, current FROM pymem.data_keys_of(%s::pg_catalog.bpchar)"
_CREATE_SQL = ("SELECT version, root_key, wrapped FROM pymem.create_data_key(%s::pg_catalog.bpchar,"
               " %s::pg_catalog.int4, %s::pg_catalog.text, %s::pg_catalog.bytea, %s::pg_catalog.bool)")
_CREATE_ATTEMPTS = 3
_DATABASE_SQL = "SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()"
_databases: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def data_key_id(version: int) -> int:
    """The ``key_id`` of rows sealed under a tenant's data key ``version``."""
    return -version


@dataclass(frozen=True, repr=False, slots=True)
class TenantKeys:
    """One tenant's unwrapped data keys, as one load found them.

    ``current`` is the version sealing new rows (None: the tenant has none yet);
    ``destroyed`` the versions erasure destroyed; ``known`` every version the
    database had. The keys are by the rows' ``key_id`` (``-version``): opening a field
    finds its key with one dict lookup. ``repr`` shows versions only.
    """

    user_hash: str
    current: int | None
    known: int
    destroyed: frozenset[int] = frozenset()
    _aeads: Mapping[int, AESGCM] = field(default_factory=dict)
    # version -> sha256 of the wrapped bytes each key was unwrapped from: its identity.
    _digests: Mapping[int, bytes] = field(default_factory=dict)

    def seal(self, key_id: int, plaintext: bytes, aad: bytes) -> bytes:
        """Seal ``plaintext`` under the key ``key_id`` names, in :func:`pymem.security.seal`'s layout.

        Raises:
            KeyDestroyed, UnknownKeyId: as :meth:`aead`.
        """
        try:
            aead = self._aeads[key_id]
        except KeyError:  # a ring key (rows before 0019), or a version that raises
            aead = self.aead(key_id)
        return seal_with(aead, plaintext, aad)

    def open(self, key_id: int, blob: bytes, aad: bytes) -> bytes:
        """Open a blob sealed under the key ``key_id`` names (:func:`pymem.security.open_with`).

        Raises:
            InvalidTag: as :func:`pymem.security.open_sealed`.
            KeyDestroyed, UnknownKeyId: as :meth:`aead`.
        """
        try:
            aead = self._aeads[key_id]
        except KeyError:  # a ring key (rows before 0019), or a version that raises
            aead = self.aead(key_id)
        # open_with's body, inlined: this runs for every sealed field of every row read, and
        # one more Python call is a tenth of the time AES-GCM takes to open 1 KiB.
        try:
            return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except ValueError:  # shorter than a nonce: a truncated blob, which fails like any other
            raise InvalidTag() from None

    def aead(self, key_id: int) -> AESGCM:
        """The AES-GCM key a row's ``key_id`` names: a ring key (> 0) or a data key (< 0).

        Raises:
            KeyDestroyed: a data key erasure destroyed, or one the database has no record of.
            UnknownKeyId: a ring key id the ring does not hold.
        """
        if key_id > 0:
            return keyring().aead(key_id)
        found = self._aeads.get(key_id)
        if found is not None:
            return found
        if -key_id in self.destroyed:
            raise KeyDestroyed("this row is sealed under a data key of its tenant that was destroyed when the"
                               " tenant was erased: it cannot be opened")
        raise KeyDestroyed("this row is sealed under a data key its tenant has no record of (rows put back"
                           " from a copy taken before the tenant was erased): it cannot be opened")

    def covers(self, key_ids: Iterable[int], live: Mapping[int, bytes] | None = None) -> bool:
        """Whether every data key id among ``key_ids`` was known when these keys were loaded,
        and whether they are still the live ones: ``live`` is what the database has live now
        (None: not read, as for a write, which the database checks), each version with the
        sha256 of its wrapped bytes (a key destroyed or made since, or a row put back in a
        destroyed key's place with other bytes, differs)."""
        return all(k > 0 or -k <= self.known for k in key_ids) and (live is None or live == self._digests)

    def __repr__(self) -> str:
        versions = sorted(-key_id for key_id in self._aeads)
        return f"TenantKeys(current={self.current}, versions={versions}, destroyed={sorted(self.destroyed)})"


class _Cache:
    """Unwrapped keys per (database, tenant), bounded in size and age, safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: TTLCache | None = None
        self.counts = dict.fromkeys(("hits", "misses", "unwraps", "creates", "provider_errors"), 0)

    def _table(self) -> TTLCache:
        if self._entries is None:
            settings = get_settings()
            self._entries = TTLCache(maxsize=settings.data_key_cache_size, ttl=settings.data_key_cache_ttl_s)
        return self._entries

    def get(self, database: tuple, user_hash: str) -> TenantKeys | None:
        with self._lock:
            found = self._table().get((database, user_hash))
            self.counts["hits" if found is not None else "misses"] += 1
            return found

    def put(self, database: tuple, keys: TenantKeys) -> None:
        with self._lock:
            self._table()[(database, keys.user_hash)] = keys

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def forget(self, user_hash: str | None) -> None:
        with self._lock:
            if user_hash is None:
                self._entries = None  # the settings are read again on next use
            elif self._entries is not None:
                for key in [key for key in self._entries if key[1] == user_hash]:
                    self._entries.pop(key, None)


_cache = _Cache()


def key_metrics() -> dict[str, int]:
    """This process's counters: cache hits and misses, unwraps, keys created, provider errors."""
    with _cache._lock:
        return dict(_cache.counts)


async def _database(conn: psycopg.AsyncConnection) -> tuple:
    """What tells databases apart in the cache: one process may use several, and a tenant's
    hash is the same in each (a restored copy, a staging database, one dropped and made
    again under its name). Read once per connection."""
    key = connection_key(conn)
    found = _databases.get(key)
    if found is None:
        async with pinned_transaction(conn, [(_DATABASE_SQL, None)]) as (cursor,):
            oid = (await cursor.fetchone())[0]
        info = conn.info
        found = _databases[key] = (info.host, info.port, info.dbname, oid)
    return found


def forget(user_hash: str) -> None:
    """Drop a tenant's unwrapped keys (in every database) from this process's cache."""
    _cache.forget(user_hash)


def forget_all() -> None:
    """Drop every cached key, and read the cache's settings again on next use."""
    _cache.forget(None)


def _unwrap_all(user_hash: str, rows: list[tuple]) -> TenantKeys:
    """Unwrap a tenant's live keys (a thread's work: providers block)."""
    aeads, digests, destroyed, current = {}, {}, set(), None
    for version, root_key, wrapped, is_current in rows:
        if wrapped is None or root_key is None:
            destroyed.add(version)
            continue
        context = KeyContext(user_hash, version)
        data_key = provider_of(root_key).unwrap(root_key, bytes(wrapped), context)
        if len(data_key) != DATA_KEY_BYTES:
            raise context.not_authentic()
        aeads[data_key_id(version)], digests[version] = AESGCM(data_key), hashlib.sha256(wrapped).digest()
        if is_current:
            current = version
    return TenantKeys(user_hash, current, max((r[0] for r in rows), default=0), frozenset(destroyed), aeads, digests)


async def run_provider(call, *args):
    """Run root-key provider work in a thread (providers block); count its failures; leave no
    key in the traceback, whatever was raised (error reporters capture frames' locals)."""
    try:
        return await asyncio.to_thread(call, *args)
    except BaseException as error:
        if isinstance(error, (RootKeyUnavailable, WrappedKeyInvalid)):
            _cache.count("provider_errors")
        traceback.clear_frames(error.__traceback__)
        raise


async def _load(conn: psycopg.AsyncConnection, user_hash: str, proof: bytes | None) -> TenantKeys:
    async with tenant_transaction(conn, user_hash, proof=proof):
        cursor = await conn.execute(_KEYS_SQL, (user_hash,))
        rows = await cursor.fetchall()
    keys = await run_provider(_unwrap_all, user_hash, rows)
    _cache.count("unwraps", len(keys._aeads))
    _cache.put(await _database(conn), keys)
    return keys


async def tenant_keys(conn: psycopg.AsyncConnection, user_hash: str, key_ids: Iterable[int] = (), *,
                      proof: bytes | None = None, live: Mapping[int, bytes] | None = None) -> TenantKeys:
    """The tenant's unwrapped keys, from the cache when it knows every key in ``key_ids``.

    Args:
        conn: an async connection not inside a transaction (a cold tenant's keys are
            read in a tenant transaction of their own).
        user_hash: the tenant.
        key_ids: the ``key_id`` of rows about to be opened: a data key newer than the
            cached ones (another process rotated it) makes it load again.
        proof: the tenant's proof when not the key ring's (:func:`pymem.tenant.enter_tenant_call`).
        live: the tenant's data keys the database has live, each version with the sha256 of
            its wrapped bytes, read with the rows (:func:`pymem.reads.durable_read_with_keys`):
            cached keys that differ (one destroyed or made since, or other bytes under a
            cached version) are loaded again.

    Raises:
        RootKeyUnavailable: a key must be unwrapped and its root key cannot be used.
        WrappedKeyInvalid: a wrapped key was changed in the database.
    """
    keys = _cache.get(await _database(conn), user_hash)
    if keys is not None and keys.covers(key_ids, live):
        return keys
    return await _load(conn, user_hash, proof)


async def keys_for_writing(conn: psycopg.AsyncConnection, user_hash: str, *,
                           proof: bytes | None = None) -> TenantKeys:
    """The tenant's keys with a current one, made (and stored) if the tenant has none.

    Raises:
        RootKeyUnavailable, WrappedKeyInvalid: as :func:`tenant_keys`.
    """
    keys = await tenant_keys(conn, user_hash, proof=proof)
    if keys.current is not None:
        return keys
    return await _create(conn, keys, replace=False, proof=proof)


async def new_current_key(conn: psycopg.AsyncConnection, user_hash: str, *,
                          proof: bytes | None = None) -> TenantKeys:
    """Make a new data key the tenant's current one; the one before keeps opening its rows
    until they are re-sealed (``pymem rotate-key --tenant``).

    Raises:
        RootKeyUnavailable, WrappedKeyInvalid: as :func:`tenant_keys`.
    """
    return await _create(conn, await _load(conn, user_hash, proof), replace=True, proof=proof)


async def _create(conn: psycopg.AsyncConnection, keys: TenantKeys, *, replace: bool,
                  proof: bytes | None) -> TenantKeys:
    try:
        return await _make(conn, keys, replace=replace, proof=proof)
    except BaseException as error:
        traceback.clear_frames(error.__traceback__)  # _make's frame holds the new key's bytes
        raise


async def _make(conn: psycopg.AsyncConnection, keys: TenantKeys, *, replace: bool,
                proof: bytes | None) -> TenantKeys:
    user_hash = keys.user_hash
    for _ in range(_CREATE_ATTEMPTS):
        root = provider()
        root_key, version = root.current(), keys.known + 1
        data_key = new_data_key()
        wrapped = await run_provider(root.wrap, root_key, data_key, KeyContext(user_hash, version))
        try:
            async with tenant_transaction(conn, user_hash, proof=proof):
                cursor = await conn.execute(_CREATE_SQL, (user_hash, version, root_key, wrapped, replace))
                stored = await cursor.fetchone()
        except psycopg.errors.SerializationFailure:
            stored = None  # another process made one first: load what it made
        except psycopg.errors.ObjectNotInPrerequisiteState:
            raise RootKeyUnavailable(f"root key {root_key!r} is retired: configure the current one") from None
        if stored is not None and stored[0] == version and bytes(stored[2]) == wrapped:
            _cache.count("creates")
            made = TenantKeys(user_hash, version, version, keys.destroyed,
                              {**keys._aeads, data_key_id(version): AESGCM(data_key)},
                              {**keys._digests, version: hashlib.sha256(wrapped).digest()})
            _cache.put(await _database(conn), made)
            return made
        keys = await _load(conn, user_hash, proof)
        if keys.current is not None and not replace:
            return keys
    raise RootKeyUnavailable("the tenant's data keys changed under every attempt to make one: try again")
