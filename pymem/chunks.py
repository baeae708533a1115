"""Chunks in and out of their sealed form: validation, sealing, opening.

A stored chunk is its labels (``doc_id``, ``source``) in plaintext, three sealed
fields (text, metadata as canonical JSON, the embedding as little-endian float32),
the caller's id sealed when it is not a UUID (field ``ref``), blind-index tags of
its metadata (:mod:`pymem.blind_index`) and the plaintext embedding for ANN.
Each sealed field's AAD binds tenant, row id, field, ``doc_id`` and ``source``
(AAD v2, :func:`pymem.security.chunk_aad`), so a ciphertext moved to another
tenant, row or column, or a relabelled row, fails to open with ``InvalidTag``.
Reads also check that the searchable embedding equals its sealed copy, or its
float16 rounding where the schema stores halfvec (``EmbeddingMismatch``).

Rows as the read functions return them (v3 adds created_at, updated_at and
expires_at, last)::

    (id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version,
     embedding, ref_cipher, ...)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .blind_index import TenantIndex, check_external_id
from .errors import TamperedRow
from .lifecycle import expiry_of
from .security import AAD_VERSION, EmbeddingMismatch, InvalidTag, chunk_aad, expiry_label
from .tenant_keys import TenantKeys
from .terms import row_terms

# doc_id and source, in UTF-8 bytes: the SQL CHECK allows 1024 characters, and the
# (user_hash, doc_id) btree takes at most about 2.7 KB per entry.
MAX_LABEL_BYTES = 1024
EMBEDDING_DTYPE = np.dtype("<f4")  # the emb_cipher plaintext layout: little-endian float32


@dataclass(frozen=True)
class ChunkInput:
    """One chunk to store (``index_memory_chunk``'s arguments, minus conn and user).

    ``id``: the caller's id for the chunk (any str up to 256 UTF-8 bytes, unique per
    tenant); None lets pymem generate a UUID.
    ``expires_at`` (a timezone-aware datetime) or ``ttl`` (a ``timedelta`` or seconds from
    now): when no read returns the chunk any more (:mod:`pymem.lifecycle`); None: never.
    """

    doc_id: str
    source: str
    text: str
    embedding: Any
    metadata: Mapping[str, Any] | None = None
    id: str | None = None
    expires_at: dt.datetime | None = None
    ttl: dt.timedelta | float | None = None


@dataclass(frozen=True)
class SealedRow:
    """A chunk as stored (see the module docstring)."""

    id: uuid.UUID
    doc_id: str
    source: str
    text_cipher: bytes
    meta_cipher: bytes
    emb_cipher: bytes
    ref_cipher: bytes | None
    tags: bytes
    embedding: np.ndarray
    external_id: str
    terms: bytes | None = None  # keyword postings (pymem.terms); None: written without
    expires_at: dt.datetime | None = None


@dataclass(frozen=True)
class OpenedRow:
    """A read row's fields, opened and checked."""

    id: uuid.UUID
    external_id: str
    doc_id: str
    source: str
    text: str
    metadata: dict[str, Any]
    embedding: np.ndarray
    aad_version: int  # 3: its expiry is bound, and its key tags were written (pymem.blind_index)


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------
def check_label(name: str, value: Any, *, allow_empty: bool) -> str:
    """Return a valid ``doc_id``/``source`` label, else raise ValueError (without the value)."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a str")
    if not allow_empty and value == "":
        raise ValueError(f"{name} must not be empty")
    if "\x00" in value:  # Postgres text cannot hold NUL; say so before anything is sent
        raise ValueError(f"{name} must not contain NUL characters")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"{name} is not valid Unicode (lone surrogates)") from None
    if size > MAX_LABEL_BYTES:
        raise ValueError(f"{name} is longer than {MAX_LABEL_BYTES} bytes in UTF-8")
    return value


def check_text(text: Any, max_bytes: int, name: str = "text") -> bytes:
    """``text`` as UTF-8, at most ``max_bytes`` (``PYMEM_MAX_TEXT_BYTES``).

    Raises:
        ValueError: not a str, not valid Unicode, or too long (the message names ``name``).
    """
    if not isinstance(text, str):
        raise ValueError(f"{name} must be a str")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} is not valid Unicode (lone surrogates)") from None
    if len(data) > max_bytes:
        raise ValueError(f"{name} is {len(data)} bytes; the maximum is {max_bytes} (PYMEM_MAX_TEXT_BYTES)")
    return data


def check_metadata(metadata: Any, max_bytes: int) -> tuple[dict[str, Any], bytes]:
    """Return (``metadata`` as sealed: its JSON read back, and that JSON) if it is a
    JSON-serializable mapping of at most ``max_bytes`` as JSON (None: empty).

    Raises:
        ValueError: it is not (the message never contains a value).
    """
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise ValueError("metadata must be a mapping (dict) or None")
    metadata = dict(metadata)
    try:
        data = json.dumps(metadata, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    except RecursionError:
        raise ValueError("metadata is nested too deeply") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata is not JSON-serializable: {type(exc).__name__}") from None
    if len(data) > max_bytes:
        raise ValueError(f"metadata is {len(data)} bytes as JSON; the maximum is {max_bytes} (PYMEM_MAX_TEXT_BYTES)")
    # As sealed, and so as every read opens it: a tuple is a list, a key a str. Its tags
    # are made from this, so that the client's check of a filter sees what the tags say.
    return json.loads(data), data


HALF_MAX = 65504.0  # the largest float16


def check_embedding(embedding: Any, dim: int, name: str = "embedding", *, half: bool = False) -> np.ndarray:
    """Return ``embedding`` as float32 of ``dim`` finite, not all zero values, else raise ValueError.

    ``half``: the schema stores the searchable copy as halfvec (revision 0023): every value must
    be within float16's range, and not all of them may round to zero in it.
    """
    try:
        raw = np.asarray(embedding)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be a sequence of real numbers") from None
    # Integers and floats only: complex values would lose their imaginary part,
    # and huge Python ints (object arrays) or strings are not embeddings.
    if raw.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be a sequence of real numbers")
    if raw.ndim != 1 or raw.shape[0] != dim:
        raise ValueError(f"{name} must have {dim} dimensions, got shape {raw.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        vector = raw.astype(EMBEDDING_DTYPE)
    if not np.isfinite(vector).all():
        raise ValueError(f"{name} contains NaN or infinity, or values beyond float32")
    if not vector.any():
        raise ValueError(f"{name} is all zeros: cosine distance is undefined for it")
    if half and (np.abs(vector).max() > HALF_MAX or not vector.astype(np.float16).any()):
        raise ValueError(f"{name} does not fit this schema's halfvec embeddings: values beyond ±65504,"
                         " or so small that all round to zero")
    return vector


def as_chunk(item: ChunkInput | Mapping[str, Any]) -> ChunkInput:
    """A ``ChunkInput`` from itself or a mapping with the same keys."""
    if isinstance(item, ChunkInput):
        return item
    if isinstance(item, Mapping):
        try:
            return ChunkInput(**item)
        except TypeError:
            raise ValueError("each chunk needs doc_id, source, text, embedding and optional metadata, id,"
                             " expires_at or ttl") from None
    raise ValueError("chunks must be ChunkInput objects or mappings")


def as_written(chunk: ChunkInput, row: SealedRow) -> ChunkInput:
    """``chunk`` as ``row`` stored it: with the id it was written under (pymem's generated
    one too) and its expiry as an absolute time, so that writing it again names the same
    chunk (:class:`pymem.errors.CommitUnknown`)."""
    return replace(chunk, id=row.external_id, expires_at=row.expires_at, ttl=None)


# ---------------------------------------------------------------------------
# sealing and opening
# ---------------------------------------------------------------------------
def _field_aad(user_hash: str, row_id: uuid.UUID, field: str, doc_id: str, source: str, aad_version: int,
              expires_at: dt.datetime | None) -> bytes:
    if aad_version not in (1, 2, 3):  # a version no layout has: nothing opens under it
        raise InvalidTag()
    labels = None if aad_version == 1 else (doc_id, source)
    return chunk_aad(user_hash, str(row_id), field, labels, expiry_label(expires_at) if aad_version == 3 else None)


def seal_row(user_hash: str, index: TenantIndex, chunk: ChunkInput, dim: int, max_bytes: int,
             keys: TenantKeys, key_id: int, *, keep_row_id: uuid.UUID | None = None,
             term_language: str | None = None, aad_version: int = AAD_VERSION,
             stored_expiry: bool = False, half: bool = False) -> SealedRow:
    """Validate a chunk and seal it for the tenant under ``key_id`` (one of ``keys``): AAD v3,
    which binds its expiry, or v2 (``aad_version``: re-keying a row written before 0022
    keeps its layout, and so what its tags say; it has no expiry).

    ``term_language``: also compute the text's keyword postings (:func:`pymem.terms.row_terms`).

    ``keep_row_id``: re-seal a row that has no caller id (``chunk.id`` is None) under
    the row id it has (a random one pymem generated, or a UUID caller id stored
    before revision 0015), instead of a new random one.

    ``stored_expiry``: ``chunk.expires_at`` is the row's own, as read (re-keying, moving a
    tenant): sealed as it is, passed or not.

    ``half``: the schema stores embeddings as halfvec (:func:`check_embedding`).

    Raises:
        ValueError: any field is invalid (the message never contains its value).
    """
    doc_id = check_label("doc_id", chunk.doc_id, allow_empty=False)
    source = check_label("source", chunk.source, allow_empty=True)
    text = check_text(chunk.text, max_bytes)
    metadata, meta = check_metadata(chunk.metadata, max_bytes)
    embedding = check_embedding(chunk.embedding, dim, half=half)
    expires_at = chunk.expires_at if stored_expiry else expiry_of(chunk.expires_at, chunk.ttl)
    if aad_version not in (2, 3) or (aad_version == 2 and expires_at is not None):
        raise ValueError("rows are sealed with AAD v3, or v2 without an expiry")
    if chunk.id is None:  # random: nothing to hide, nothing to seal
        row_id = keep_row_id or uuid.uuid4()
        external_id, ref = str(row_id), None
    else:
        external_id = check_external_id(chunk.id)
        row_id, ref = index.row_id(external_id), external_id.encode("utf-8")

    def sealed(data: bytes, field: str) -> bytes:
        return keys.seal(key_id, data, _field_aad(user_hash, row_id, field, doc_id, source, aad_version, expires_at))

    return SealedRow(id=row_id, doc_id=doc_id, source=source, text_cipher=sealed(text, "text"),
                     meta_cipher=sealed(meta, "meta"), emb_cipher=sealed(embedding.tobytes(), "emb"),
                     ref_cipher=None if ref is None else sealed(ref, "ref"),
                     tags=index.metadata_tags(metadata, key_tags=aad_version >= 3),
                     embedding=embedding, external_id=external_id, expires_at=expires_at,
                     terms=None if term_language is None else row_terms(index, chunk.text, term_language))


def searchable_copy_of(sealed: np.ndarray, searchable: np.ndarray) -> bool:
    """Whether ``searchable`` (as read) is the searchable copy of ``sealed``: equal, or, in a
    schema that stores embeddings at half precision (revision 0023, ``PYMEM_EMBEDDING_TYPE=halfvec``),
    equal to it rounded to float16 as pgvector rounds (to nearest, ties to even)."""
    if np.array_equal(sealed, searchable):
        return True
    with np.errstate(over="ignore"):
        return np.array_equal(sealed.astype(np.float16).astype(EMBEDDING_DTYPE), searchable)


def as_float32(embedding: Any) -> np.ndarray:
    """A vector as read from Postgres (pgvector's binary format loads as ``Vector``) as float32."""
    if hasattr(embedding, "to_numpy"):
        embedding = embedding.to_numpy()
    return np.asarray(embedding, dtype=EMBEDDING_DTYPE)


def chunk_digest(row: tuple) -> bytes:
    """A read row's version, as ``pymem.chunk_digest`` computes it: sha256 of its text,
    metadata and embedding ciphertexts, length-prefixed. Every write and re-key seals
    them anew, so an update names the row it read by it (:mod:`pymem.partial_update`)."""
    text_cipher, meta_cipher, emb_cipher = row[3], row[4], row[5]
    return hashlib.sha256(len(text_cipher).to_bytes(4, "big") + text_cipher + len(meta_cipher).to_bytes(4, "big")
                          + meta_cipher + emb_cipher).digest()


def open_row(user_hash: str, row: tuple, keys: TenantKeys) -> OpenedRow:
    """Open a read row's sealed fields under the tenant's ``keys`` and check its plaintext embedding.

    Raises:
        KeyDestroyed: the row is sealed under a data key erasure destroyed (an InvalidTag).
        InvalidTag: a field does not open (moved, relabelled or modified).
        EmbeddingMismatch: the searchable embedding was changed in the table.
        TamperedRow: a row with a keyed id lost its sealed caller id (``ref``).
        UnknownKeyId: the row's key id is not in the key ring.
    """
    row_id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding, ref_cipher = row[:10]
    # A v3 row's expiry is in its AAD: read rows end with it (:class:`pymem.lifecycle.RowTimes`).
    expires_at = row[-1] if aad_version == 3 else None

    def opened(blob: bytes, field: str) -> bytes:
        return keys.open(key_id, blob, _field_aad(user_hash, row_id, field, doc_id, source, aad_version, expires_at))

    sealed_embedding = np.frombuffer(opened(emb_cipher, "emb"), dtype=EMBEDDING_DTYPE)
    if not searchable_copy_of(sealed_embedding, as_float32(embedding)):
        raise EmbeddingMismatch("a stored embedding differs from its sealed copy")
    if ref_cipher is None and row_id.version == 8:
        # A keyed id (UUIDv8) is only ever stored with its caller id sealed beside it.
        raise TamperedRow("a row with a keyed id has no sealed caller id")
    external_id = str(row_id) if ref_cipher is None else opened(ref_cipher, "ref").decode("utf-8")
    return OpenedRow(id=row_id, external_id=external_id, doc_id=doc_id, source=source,
                     text=opened(text_cipher, "text").decode("utf-8"), metadata=json.loads(opened(meta_cipher, "meta")),
                     embedding=sealed_embedding.copy(), aad_version=aad_version)
