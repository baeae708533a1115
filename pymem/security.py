"""Sealing (AES-256-GCM), tenant hashing (HMAC-SHA256) and the key ring.

Blob layout produced by :func:`seal`::

    nonce (12 bytes, random) || ciphertext (len(plaintext) bytes) || tag (16 bytes)

The key that sealed a blob is not in the blob: callers store its id next to it
(``memory_chunks.key_id``) and pass it back to :func:`open_sealed`.

Never reuse a nonce with the same key. :func:`seal` draws a fresh random 96-bit
nonce per call, which stays safe for well under 2**32 seals per key; rotate keys
long before that (``pymem rotate-key``).

A wrong key, a wrong AAD, a wrong nonce, a truncated or a modified blob all raise
the same :class:`cryptography.exceptions.InvalidTag`, and nothing else is returned:
there is no plaintext fallback.

Keys come from the environment (see :mod:`pymem.config`)::

    MEMORY_ENCRYPTION_KEY=<base64 of 32 bytes>      active AES-256 key
    MEMORY_ENCRYPTION_KEY_ID=<int, default 1>        its id, stored per row
    MEMORY_ENCRYPTION_OLD_KEYS="1:<b64>,2:<b64>"     keys kept for opening only
    MEMORY_TENANT_HMAC_KEY=<base64 of 32 bytes>      HMAC key for user ids

The ring is read once and cached; call :func:`reload_keys` after changing them.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import os
import threading
import traceback

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .blind_index import TenantIndex, index_master_key
from .config import KeyMaterial, key_material
from .errors import EmbeddingMismatch, UnknownKeyId

__all__ = [
    "AAD_VERSION", "EmbeddingMismatch", "InvalidTag", "KeyRing", "UnknownKeyId", "chunk_aad", "expiry_label",
    "generate_key",
    "hmac_user", "keyring", "local_root_key", "open_sealed", "open_with", "reload_keys", "seal", "seal_with",
    "tenant_proof", "tenant_proof_key",
]

KEY_BYTES = 32
NONCE_BYTES = 12
AAD_VERSION = 3  # what new rows are sealed with; rows store theirs (memory_chunks.aad_version)


def generate_key() -> str:
    """A fresh 32-byte key, base64-encoded (base64 of os.urandom(32))."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def _decode_key(variable: str, raw: str | None) -> bytes:
    """Decode one base64 key; messages name the variable, never the value."""
    if raw is None or raw.strip() == "":
        raise ValueError(f"{variable} is not set; generate one with `pymem keygen`")
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{variable} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"{variable} must decode to exactly {KEY_BYTES} bytes, got {len(key)}")
    return key


def _parse_key_id(variable: str, raw: str) -> int:
    try:
        key_id = int(raw.strip())
    except ValueError:
        raise ValueError(f"{variable} must be a positive integer key id") from None
    if not 1 <= key_id <= 2**31 - 1:
        raise ValueError(f"{variable} must be a positive integer key id")
    return key_id


def _parse_old_keys(raw: str | None) -> dict[int, bytes]:
    """Parse ``"ID:BASE64,ID:BASE64"``; errors say which entry, not what it held."""
    variable = "MEMORY_ENCRYPTION_OLD_KEYS"
    keys: dict[int, bytes] = {}
    if not raw or not raw.strip():
        return keys
    for position, entry in enumerate(raw.split(","), start=1):
        key_id_text, sep, key_text = entry.partition(":")
        if not sep:
            raise ValueError(f"{variable} entry {position} is malformed (expected ID:BASE64)")
        key_id = _parse_key_id(f"{variable} entry {position} id", key_id_text)
        if key_id in keys:
            raise ValueError(f"{variable} lists key id {key_id} twice")
        keys[key_id] = _decode_key(f"{variable} entry {position}", key_text)
    return keys


def local_root_key(key: bytes) -> bytes:
    """The local provider's root key made from one ring key: HKDF-SHA256(key, no salt,
    info ``pymem root key v1``, 32 bytes), so that rows sealed under the ring key
    (before revision 0019) and data keys wrapped under its root key never share a key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"pymem root key v1").derive(key)


def tenant_proof_key(hmac_key: bytes) -> bytes:
    """The key of tenant proofs: HKDF-SHA256(``MEMORY_TENANT_HMAC_KEY``, no salt, info
    ``pymem tenant proof v1``, 32 bytes), independent of the tenant hashes and the
    blind-index keys made from the same key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"pymem tenant proof v1").derive(hmac_key)


def tenant_proof(proof_key: bytes, user_hash: str) -> bytes:
    """HMAC-SHA256(proof key, the ASCII of ``user_hash``): what ``pymem.enter_tenant``
    asks for to make a transaction the tenant's. The database keeps its sha256 only,
    so neither the database nor a copy of it can produce a proof."""
    return hmac.new(proof_key, user_hash.encode("ascii"), hashlib.sha256).digest()


class KeyRing:
    """The active AES key (by id), the old keys still accepted for opening, and the HMAC key.

    ``repr`` shows key ids only. Construct with :meth:`from_material`, or use
    :func:`keyring` for the process-wide ring built from the environment.
    """

    __slots__ = ("active_key_id", "active_aead", "_aead", "_root_aead", "_hmac", "_index_master", "_proof_key")

    def __init__(self, active_key_id: int, aes_keys: dict[int, bytes], hmac_key: bytes):
        if active_key_id not in aes_keys:
            raise ValueError("the active key id has no key")
        if any(key == hmac_key for key in aes_keys.values()):
            raise ValueError("MEMORY_TENANT_HMAC_KEY must differ from every encryption key")
        self.active_key_id = active_key_id
        self._aead = {key_id: AESGCM(key) for key_id, key in aes_keys.items()}
        self.active_aead = self._aead[active_key_id]  # the hot path skips the dict lookup
        # The local root keys (pymem.root_keys.LocalRootKeys): one per ring key, derived,
        # so that no data key is ever wrapped under a key that also seals rows.
        self._root_aead = {key_id: AESGCM(local_root_key(key)) for key_id, key in aes_keys.items()}
        self._hmac = hmac.new(hmac_key, digestmod=hashlib.sha256)
        self._index_master = index_master_key(hmac_key)
        self._proof_key = tenant_proof_key(hmac_key)

    @classmethod
    def from_material(cls, material: KeyMaterial) -> KeyRing:
        """Validate raw key variables and build a ring.

        Raises:
            ValueError: a key is missing, not base64, not exactly 32 bytes, an id
                is malformed or duplicated, an old key id clashes with the active
                one under a different key, or the HMAC key equals an AES key. The
                error's traceback holds no key: the frames that decoded keys are
                cleared (error reporters capture frames' local variables).
        """
        try:
            return cls._from_material(material)
        except ValueError as error:
            traceback.clear_frames(error.__traceback__)
            raise

    @classmethod
    def _from_material(cls, material: KeyMaterial) -> KeyRing:
        active = _decode_key("MEMORY_ENCRYPTION_KEY", material.encryption_key)
        active_id = _parse_key_id("MEMORY_ENCRYPTION_KEY_ID", material.encryption_key_id or "1")
        keys = _parse_old_keys(material.old_encryption_keys)
        if keys.get(active_id, active) != active:
            raise ValueError(f"MEMORY_ENCRYPTION_OLD_KEYS gives key id {active_id} a different key than the active one")
        keys[active_id] = active
        hmac_key = _decode_key("MEMORY_TENANT_HMAC_KEY", material.tenant_hmac_key)
        return cls(active_id, keys, hmac_key)

    @property
    def key_ids(self) -> list[int]:
        """Every key id this ring can open, sorted."""
        return sorted(self._aead)

    def aead(self, key_id: int | None = None) -> AESGCM:
        """The AES-GCM primitive for ``key_id`` (default: the active key).

        Raises:
            UnknownKeyId: no such key in the ring.
        """
        try:
            return self._aead[self.active_key_id if key_id is None else key_id]
        except KeyError:
            raise UnknownKeyId(f"key id {key_id} is not in the key ring (add it to MEMORY_ENCRYPTION_OLD_KEYS)") from None

    def root_aead(self, key_id: int | None = None) -> AESGCM:
        """The local root key derived from ring key ``key_id`` (default: the active key).

        Raises:
            UnknownKeyId: no such key in the ring.
        """
        try:
            return self._root_aead[self.active_key_id if key_id is None else key_id]
        except KeyError:
            raise UnknownKeyId(f"key id {key_id} is not in the key ring") from None

    def hmac_hex(self, data: bytes) -> str:
        mac = self._hmac.copy()
        mac.update(data)
        return mac.hexdigest()

    def tenant_proof(self, user_hash: str) -> bytes:
        """The tenant's proof for ``pymem.enter_tenant`` (see :func:`tenant_proof`)."""
        return tenant_proof(self._proof_key, user_hash)

    def tenant_index(self, user_hash: str) -> TenantIndex:
        """The tenant's blind index (row ids for caller ids, metadata tags); see :mod:`pymem.blind_index`."""
        return TenantIndex(self._index_master, user_hash)

    def __repr__(self) -> str:
        return f"KeyRing(active_key_id={self.active_key_id}, key_ids={self.key_ids})"


_ring: KeyRing | None = None
_ring_lock = threading.Lock()


def keyring() -> KeyRing:
    """The process-wide key ring, built from the environment on first use.

    Raises:
        ValueError: see :meth:`KeyRing.from_material`. Nothing is cached on error,
            so a fixed environment is picked up by the next call.
    """
    ring = _ring
    if ring is None:
        ring = _load_ring()
    return ring


def _load_ring() -> KeyRing:
    global _ring
    with _ring_lock:
        if _ring is None:
            _ring = KeyRing.from_material(key_material())
        return _ring


def reload_keys() -> KeyRing:
    """Drop the cached ring and read the key variables again."""
    global _ring
    with _ring_lock:
        _ring = None
    return keyring()


def hmac_user(user_id: str) -> str:
    """Deterministic tenant id: HMAC-SHA256(MEMORY_TENANT_HMAC_KEY, user_id) as 64 hex chars.

    Args:
        user_id: the application's user id; a non-empty ``str``.

    Raises:
        ValueError: ``user_id`` is empty or not a ``str`` (the message never
            contains it), or the HMAC key is missing or malformed.
    """
    if not isinstance(user_id, str) or user_id == "":
        raise ValueError("user_id must be a non-empty str")
    return keyring().hmac_hex(user_id.encode("utf-8"))


# Module-level alias: one attribute lookup less per seal, and the one seam where
# the known-answer test injects a fixed nonce.
_urandom = os.urandom


def seal(plaintext: bytes, aad: bytes = b"", *, key_id: int | None = None) -> bytes:
    """Encrypt and authenticate ``plaintext``, binding it to ``aad``.

    Args:
        plaintext: bytes to seal (may be empty).
        aad: associated data that must be given again, byte for byte, to open.
        key_id: seal with this key of the ring instead of the active one.

    Returns:
        ``nonce(12) || ciphertext || tag(16)``, i.e. ``len(plaintext) + 28`` bytes.

    Raises:
        ValueError: keys missing or malformed; :class:`UnknownKeyId` for key_id.
        TypeError: plaintext or aad is not bytes-like.
    """
    ring = _ring or keyring()
    return seal_with(ring.active_aead if key_id is None else ring.aead(key_id), plaintext, aad)


def seal_with(aead: AESGCM, plaintext: bytes, aad: bytes = b"") -> bytes:
    """:func:`seal` under a given AES-GCM key (a tenant's data key): the same layout."""
    nonce = _urandom(NONCE_BYTES)
    return nonce + aead.encrypt(nonce, plaintext, aad)


def open_sealed(blob: bytes, aad: bytes = b"", *, key_id: int | None = None) -> bytes:
    """Verify and decrypt a blob made by :func:`seal`.

    Args:
        blob: ``nonce(12) || ciphertext || tag(16)``.
        aad: the exact associated data given to :func:`seal`.
        key_id: the key that sealed it (default: the active key).

    Returns:
        The plaintext.

    Raises:
        InvalidTag: wrong key, wrong AAD, or a truncated, extended or modified
            blob. All of these look the same on purpose.
        UnknownKeyId: ``key_id`` is not in the ring (a ValueError).
        ValueError: keys missing or malformed.
    """
    ring = _ring or keyring()
    return open_with(ring.active_aead if key_id is None else ring.aead(key_id), blob, aad)


def open_with(aead: AESGCM, blob: bytes, aad: bytes = b"") -> bytes:
    """:func:`open_sealed` under a given AES-GCM key (a tenant's data key).

    Raises:
        InvalidTag: as :func:`open_sealed`.
    """
    try:
        return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except ValueError:  # shorter than a nonce; a blob too short for its tag raises InvalidTag itself
        raise InvalidTag() from None


def chunk_aad(user_hash: str, chunk_id: str, field: str, labels: tuple[str, str] | None = None,
              expiry: str | None = None) -> bytes:
    """AAD for one sealed field of one chunk.

    Layouts (``|`` separated; v2 and v3 prefix each label with its UTF-8 byte length,
    so no choice of labels can produce another's bytes)::

        v1 (labels None):                pymem:v1|<user_hash>|<chunk_id>|<field>
        v2 (labels=(doc_id, source)):    pymem:v2|<user_hash>|<chunk_id>|<field>|<n>:<doc_id>|<m>:<source>
        v3 (labels, expiry):             pymem:v3|<user_hash>|<chunk_id>|<field>|<n>:<doc_id>|<m>:<source>|<k>:<expiry>

    Binding tenant, row and column means a ciphertext copied to another tenant,
    row or column no longer opens (InvalidTag); v2 also fails when the row's
    ``doc_id`` or ``source`` was changed in the table, and v3 (revision 0022) when its
    ``expires_at`` was (``expiry``: :func:`expiry_label`, empty for none). New rows use
    v3; v1 and v2 rows keep opening until re-sealed.
    """
    version = b"pymem:v1" if labels is None else b"pymem:v2" if expiry is None else b"pymem:v3"
    head = [version, user_hash.encode(), chunk_id.encode(), field.encode()]
    for label in [] if labels is None else [*labels] if expiry is None else [*labels, expiry]:
        data = label.encode("utf-8")
        head.append(b"%d:%s" % (len(data), data))
    return b"|".join(head)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def expiry_label(expires_at: dt.datetime | None) -> str:
    """A row's expiry as AAD v3 binds it: whole microseconds since 1970-01-01 UTC, in decimal
    (PostgreSQL's timestamptz keeps microseconds: the value read back is the one sealed); empty
    for none."""
    return "" if expires_at is None else str((expires_at - _EPOCH) // dt.timedelta(microseconds=1))
