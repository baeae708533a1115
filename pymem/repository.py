"""The app's read/write path: seal before writing, open after reading, rerank last.

Every call runs in its own tenant transaction (:func:`pymem.tenant.set_rls_context`)
and reaches rows only through the SQL API (``pymem.put_chunks``, ``search_chunks``,
``get_chunks``, ``delete_document``, ``erase_tenant``), which audits every call.
Reads first commit a read intent (:mod:`pymem.reads`), so they stay on record even
if their own transaction is rolled back.

Each sealed field's AAD binds tenant, chunk id, field, ``doc_id`` and ``source``
(AAD v2, see :func:`pymem.security.chunk_aad`), so a ciphertext moved to another
tenant, row or column, or a row relabelled in the table, fails to open with
``InvalidTag`` instead of returning someone else's data. Reads also check that the
searchable plaintext embedding equals its sealed copy (``EmbeddingMismatch``).

Input is validated completely before anything is sent, and a batch is one
transaction: bad input raises ``ValueError`` and writes nothing.
"""

from __future__ import annotations

import json
import uuid
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg

from .config import get_settings
from .reads import commit_read_intent, read_on_standby
from .security import AAD_VERSION, EmbeddingMismatch, UnknownKeyId, chunk_aad, hmac_user, keyring, open_sealed, seal
from .tenant import set_rls_context, tenant_transaction

# doc_id and source, in UTF-8 bytes: the SQL CHECK allows 1024 characters, and the
# (user_hash, doc_id) btree takes at most about 2.7 KB per entry.
MAX_LABEL_BYTES = 1024
PUT_BATCH_ROWS = 1000  # rows per put_chunks call inside one transaction
EMBEDDING_DTYPE = np.dtype("<f4")  # the emb_cipher plaintext layout: little-endian float32

# Every type and function is schema-qualified: a session may have left a
# temporary type named uuid, text or bytea in pg_temp, which Postgres would
# otherwise resolve first. %b: binary parameters; with %s, psycopg dumps each
# vector as text in Python (about 0.3 ms per 384-d vector, measured).
_PUT_SQL = (
    "SELECT pymem.put_chunks(%s::pg_catalog.bpchar, %b::pg_catalog.uuid[], %b::pg_catalog.text[],"
    " %b::pg_catalog.text[], %b::pg_catalog.bytea[], %b::pg_catalog.bytea[], %b::pg_catalog.bytea[],"
    " %b::pg_catalog.int4[], %b::public.vector[], %s::pg_catalog.int2)"
)
_SEARCH_TEMPLATE = (
    "SELECT id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding, distance"
    " FROM pymem.{}(%s::pg_catalog.bpchar, %s::pg_catalog.uuid, %b::public.vector, %s::pg_catalog.int4)"
)
_SEARCH_SQL = _SEARCH_TEMPLATE.format("search_chunks")
_STANDBY_SEARCH_SQL = _SEARCH_TEMPLATE.format("search_chunks_on_standby")
_GET_SQL = (
    "SELECT id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding"
    " FROM pymem.get_chunks(%s::pg_catalog.bpchar, %s::pg_catalog.uuid, %b::pg_catalog.uuid[])"
)

_dims: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class ChunkInput:
    """One chunk to index (the seed's ``index_memory_chunk`` arguments, minus conn and user)."""

    doc_id: str
    source: str
    text: str
    embedding: Any
    metadata: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class MemoryHit:
    """One opened chunk.

    ``distance`` is the cosine distance from the ANN search (None for ``get_chunk``);
    ``score`` is the rerank score, or the ANN-order fallback score when reranking
    was skipped; ``rank`` is 1-based in the returned order.
    """

    id: uuid.UUID
    doc_id: str
    source: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    distance: float | None = None
    score: float | None = None
    rank: int | None = None


@dataclass(frozen=True)
class SealedRow:
    """A chunk as stored: labels, three sealed fields (AAD v2) and the plaintext embedding for ANN."""

    id: uuid.UUID
    doc_id: str
    source: str
    text_cipher: bytes
    meta_cipher: bytes
    emb_cipher: bytes
    embedding: np.ndarray


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------
def _check_label(name: str, value: Any, *, allow_empty: bool) -> str:
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


def _check_text(text: Any, max_bytes: int) -> bytes:
    if not isinstance(text, str):
        raise ValueError("text must be a str")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid Unicode (lone surrogates)") from None
    if len(data) > max_bytes:
        raise ValueError(f"text is {len(data)} bytes; the maximum is {max_bytes} (PYMEM_MAX_TEXT_BYTES)")
    return data


def _check_chunk_id(chunk_id: Any) -> str:
    try:
        return str(chunk_id if isinstance(chunk_id, uuid.UUID) else uuid.UUID(str(chunk_id)))
    except ValueError:
        raise ValueError("chunk_id must be a UUID") from None


def _check_metadata(metadata: Any, max_bytes: int) -> bytes:
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise ValueError("metadata must be a mapping (dict) or None")
    try:
        data = json.dumps(dict(metadata), sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    except RecursionError:
        raise ValueError("metadata is nested too deeply") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata is not JSON-serializable: {type(exc).__name__}") from None
    if len(data) > max_bytes:
        raise ValueError(f"metadata is {len(data)} bytes as JSON; the maximum is {max_bytes} (PYMEM_MAX_TEXT_BYTES)")
    return data


def _check_embedding(embedding: Any, dim: int, name: str = "embedding") -> np.ndarray:
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
    return vector


def _check_count(name: str, value: Any, maximum: int = 1000) -> int:
    # bool is an int subclass; k=True is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValueError(f"{name} must be an int between 1 and {maximum}")
    return value


async def _embedding_dim(conn: psycopg.AsyncConnection) -> int:
    """The deployment's dimension (fixed at migration time), cached per connection."""
    dim = _dims.get(conn)
    if dim is None:
        # Outside a transaction, its own one: a connection that is not in
        # autocommit mode must not be left inside an implicit transaction.
        async with conn.transaction():
            cursor = await conn.execute("SELECT pymem.embedding_dim()")
            dim = (await cursor.fetchone())[0]
        _dims[conn] = dim
    return dim


def seal_fields(user_hash: str, chunk_id: str, doc_id: str, source: str, text: bytes, meta: bytes,
                embedding: np.ndarray, key_id: int) -> tuple[bytes, bytes, bytes]:
    """Seal a chunk's three fields with AAD v2 (tenant, id, field, labels)."""
    labels = (doc_id, source)
    return tuple(seal(data, chunk_aad(user_hash, chunk_id, field, labels), key_id=key_id)
                 for data, field in ((text, "text"), (meta, "meta"), (embedding.tobytes(), "emb")))


def _seal_chunk(user_hash: str, chunk: ChunkInput, dim: int, max_bytes: int, key_id: int) -> SealedRow:
    doc_id = _check_label("doc_id", chunk.doc_id, allow_empty=False)
    source = _check_label("source", chunk.source, allow_empty=True)
    text = _check_text(chunk.text, max_bytes)
    meta = _check_metadata(chunk.metadata, max_bytes)
    embedding = _check_embedding(chunk.embedding, dim)
    chunk_id = uuid.uuid4()
    text_cipher, meta_cipher, emb_cipher = seal_fields(user_hash, str(chunk_id), doc_id, source, text, meta,
                                                   embedding, key_id)
    return SealedRow(id=chunk_id, doc_id=doc_id, source=source, text_cipher=text_cipher,
                     meta_cipher=meta_cipher, emb_cipher=emb_cipher, embedding=embedding)


def _as_chunk(item: ChunkInput | Mapping[str, Any]) -> ChunkInput:
    if isinstance(item, ChunkInput):
        return item
    if isinstance(item, Mapping):
        try:
            return ChunkInput(**item)
        except TypeError:
            raise ValueError("each chunk needs doc_id, source, text, embedding and optional metadata") from None
    raise ValueError("chunks must be ChunkInput objects or mappings")


# ---------------------------------------------------------------------------
# writes
# ---------------------------------------------------------------------------
async def index_memory_chunks(
    conn: psycopg.AsyncConnection,
    user_id: str,
    chunks: Iterable[ChunkInput | Mapping[str, Any]],
    *,
    progress: bool = False,
) -> list[uuid.UUID]:
    """Seal and store many chunks for one tenant, all or nothing.

    Args:
        conn: async connection of a role that has ``pymem_app``.
        user_id: the tenant's application user id.
        chunks: ``ChunkInput`` objects or mappings with the same keys.
        progress: show a progress bar (for large imports).

    Returns:
        The new chunk ids, in input order.

    Raises:
        ValueError: any chunk is invalid (empty doc_id, wrong embedding dimension,
            NaN/inf, text over the limit, metadata not JSON); nothing is written.
        UnknownKeyId: the active key id is not registered in the database.
        psycopg.Error: the database refused the batch; nothing is written.
    """
    items = [_as_chunk(item) for item in chunks]
    if not items:
        raise ValueError("chunks must not be empty")
    max_bytes = get_settings().max_text_bytes
    key_id = keyring().active_key_id
    try:
        async with set_rls_context(conn, user_id) as user_hash:
            dim = await _embedding_dim(conn)
            rows = [_seal_chunk(user_hash, item, dim, max_bytes, key_id) for item in items]
            await put_sealed_rows(conn, user_hash, rows, key_id, progress=progress)
    except psycopg.errors.ForeignKeyViolation:
        raise UnknownKeyId(f"key id {key_id} is not registered in the database: an operator runs"
                           f" `pymem register-key {key_id}` before the app writes with it") from None
    return [r.id for r in rows]


async def put_sealed_rows(conn: psycopg.AsyncConnection, user_hash: str, rows: Sequence[SealedRow], key_id: int,
                          *, progress: bool = False) -> None:
    """Send already sealed (AAD v2) rows through ``pymem.put_chunks``, inside the caller's tenant transaction."""
    bar = _progress_bar(len(rows), progress)
    for start in range(0, len(rows), PUT_BATCH_ROWS):
        part = rows[start:start + PUT_BATCH_ROWS]
        await conn.execute(_PUT_SQL, (
            user_hash,
            [r.id for r in part],
            [r.doc_id for r in part],
            [r.source for r in part],
            [r.text_cipher for r in part],
            [r.meta_cipher for r in part],
            [r.emb_cipher for r in part],
            [key_id] * len(part),
            [r.embedding for r in part],
            AAD_VERSION,
        ))
        bar.update(len(part))
    bar.close()


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="chunk", desc="indexing", disable=not enabled)


async def index_memory_chunk(
    conn: psycopg.AsyncConnection,
    user_id: str,
    doc_id: str,
    source: str,
    text: str,
    embedding: Any,
    metadata: Mapping[str, Any] | None = None,
) -> uuid.UUID:
    """Seal and store one chunk (the seed's signature); return its id.

    The text, the metadata (as canonical JSON) and the embedding (little-endian
    float32) are each sealed with an AAD that binds tenant, chunk id and field;
    the plaintext embedding is also stored for ANN search.

    Raises:
        ValueError: invalid input; nothing is written.
    """
    ids = await index_memory_chunks(conn, user_id, [ChunkInput(doc_id, source, text, embedding, metadata)])
    return ids[0]


async def delete_document(conn: psycopg.AsyncConnection, user_id: str, doc_id: str) -> int:
    """Delete every chunk of one of the tenant's documents; return how many (audited)."""
    _check_label("doc_id", doc_id, allow_empty=False)
    async with set_rls_context(conn, user_id) as user_hash:
        cursor = await conn.execute("SELECT pymem.delete_document(%s::pg_catalog.bpchar, %s::pg_catalog.text)",
                                    (user_hash, doc_id))
        return (await cursor.fetchone())[0]


async def erase_user(conn: psycopg.AsyncConnection, user_id: str) -> int:
    """Delete every chunk of the tenant; return how many (audited)."""
    async with set_rls_context(conn, user_id) as user_hash:
        cursor = await conn.execute("SELECT pymem.erase_tenant(%s::pg_catalog.bpchar)", (user_hash,))
        return (await cursor.fetchone())[0]


# ---------------------------------------------------------------------------
# reads
# ---------------------------------------------------------------------------
def _row_aad(user_hash: str, chunk_id: uuid.UUID, field: str, doc_id: str, source: str, aad_version: int) -> bytes:
    return chunk_aad(user_hash, str(chunk_id), field, (doc_id, source) if aad_version == 2 else None)


def as_float32(embedding: Any) -> np.ndarray:
    """A vector as read from Postgres (pgvector's binary format loads as ``Vector``) as float32."""
    if hasattr(embedding, "to_numpy"):
        embedding = embedding.to_numpy()
    return np.asarray(embedding, dtype=EMBEDDING_DTYPE)


def open_row_fields(user_hash: str, row: tuple) -> tuple[bytes, bytes, np.ndarray]:
    """Open a read row's three sealed fields and check its plaintext embedding.

    ``row`` is ``(id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id,
    aad_version, embedding, ...)``, as ``get_chunks``, ``search_chunks`` and
    ``export_chunks`` return it.

    Returns:
        (text bytes, metadata JSON bytes, the sealed float32 embedding).

    Raises:
        InvalidTag: a field does not open (moved, relabelled or modified).
        EmbeddingMismatch: the searchable embedding was changed in the table.
        UnknownKeyId: the row's key id is not in the key ring.
    """
    cid, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding = row[:9]
    text, meta, emb = (open_sealed(blob, _row_aad(user_hash, cid, field, doc_id, source, aad_version), key_id=key_id)
                       for blob, field in ((text_cipher, "text"), (meta_cipher, "meta"), (emb_cipher, "emb")))
    sealed = np.frombuffer(emb, dtype=EMBEDDING_DTYPE)
    if not np.array_equal(sealed, as_float32(embedding)):
        raise EmbeddingMismatch("a stored embedding differs from its sealed copy")
    return text, meta, sealed.copy()


def _open_row(user_hash: str, row: tuple) -> tuple[str, dict[str, Any], np.ndarray]:
    text, meta, embedding = open_row_fields(user_hash, row)
    return text.decode("utf-8"), json.loads(meta), embedding


async def _read(conn: psycopg.AsyncConnection, user_hash: str, operation: str, digest_params: Sequence,
                read_sql: str, read_params: Sequence) -> list[tuple]:
    """A durable, audited read: commit the intent, then read in a second transaction."""
    ticket = await commit_read_intent(conn, user_hash, operation, digest_params)
    async with tenant_transaction(conn, user_hash):
        cursor = await conn.execute(read_sql, (user_hash, ticket, *read_params), binary=True)
        return await cursor.fetchall()


async def _fetch_chunk(conn: psycopg.AsyncConnection, user_id: str, chunk_id: Any) -> tuple[str, tuple | None]:
    """(user_hash, the sealed row or None) through the audited ``pymem.get_chunks``."""
    ids = [uuid.UUID(_check_chunk_id(chunk_id))]
    user_hash = hmac_user(user_id)
    rows = await _read(conn, user_hash, "get", (ids,), _GET_SQL, (ids,))
    return user_hash, rows[0] if rows else None


async def get_chunk(conn: psycopg.AsyncConnection, user_id: str, chunk_id: uuid.UUID | str) -> MemoryHit | None:
    """Open one of the tenant's chunks by id; None if it is not the tenant's (audited).

    Raises:
        InvalidTag: the stored ciphertext does not open under this tenant's AAD.
        EmbeddingMismatch: the stored plaintext embedding was changed.
    """
    user_hash, row = await _fetch_chunk(conn, user_id, chunk_id)
    if row is None:
        return None
    text, meta, _ = _open_row(user_hash, row)
    return MemoryHit(id=row[0], doc_id=row[1], source=row[2], text=text, metadata=meta)


async def open_embedding(conn: psycopg.AsyncConnection, user_id: str, chunk_id: uuid.UUID | str) -> np.ndarray | None:
    """Open the sealed shadow copy of a chunk's embedding (for compliance export).

    Returns:
        The float32 vector, or None when the chunk is not the tenant's.
    """
    user_hash, row = await _fetch_chunk(conn, user_id, chunk_id)
    if row is None:
        return None
    return _open_row(user_hash, row)[2]


async def query_memory(
    conn: psycopg.AsyncConnection,
    user_id: str,
    query: str,
    query_embedding: Any,
    k: int = 8,
    *,
    candidates: int = 24,
    rerank: bool = True,
    standby: psycopg.AsyncConnection | None = None,
) -> list[MemoryHit]:
    """ANN search within the tenant, open the hits, rerank them, return the top ``k``.

    The search is a durable read: its intent is committed first (see :mod:`pymem.reads`).

    Args:
        conn: async connection of a role that has ``pymem_app``.
        user_id: the tenant's application user id.
        query: the query text (used by the reranker only; never stored or logged).
        query_embedding: vector of the deployment's dimension.
        k: results to return (1..1000).
        candidates: ANN candidates to fetch and rerank (at least ``k``; the seed uses 24).
        rerank: False skips the reranker (ANN order), whatever RERANK_ENABLED says.
        standby: a connection to a hot standby of ``conn``'s server (same login) to
            run the search on; the intent and the result row go to ``conn``.

    Returns:
        Up to ``k`` :class:`MemoryHit`, best first, each with its ANN distance and
        its rerank score (or the ANN-order fallback score when rerank was skipped).

    Raises:
        ValueError: bad ``k``/``candidates``/embedding.
        InvalidTag: a stored ciphertext failed to open, or (``EmbeddingMismatch``)
            a stored embedding was changed: fail closed.
        pymem.reads.StandbyBehind: the standby had not replayed the intent in time.
    """
    _check_count("k", k)
    _check_count("candidates", candidates)
    fetch = max(k, candidates)
    user_hash = hmac_user(user_id)
    vector = _check_embedding(query_embedding, await _embedding_dim(conn), "query_embedding")
    if standby is None:
        rows = await _read(conn, user_hash, "search", (vector, fetch), _SEARCH_SQL, (vector, fetch))
    else:
        rows = await read_on_standby(conn, standby, user_hash, "search", (vector, fetch), _STANDBY_SEARCH_SQL,
                                     (vector, fetch))
    # Opening and reranking happen after COMMIT: the transaction stays short.
    opened = []
    for row in rows:
        text, meta, _ = _open_row(user_hash, row)
        opened.append((row[0], row[1], row[2], text, meta, row[9]))
    order = await _rerank_order(query, [hit[3] for hit in opened], rerank, user_hash)
    hits = []
    for rank, (index, score) in enumerate(order[:k], start=1):
        cid, doc_id, source, text, meta, distance = opened[index]
        hits.append(MemoryHit(id=cid, doc_id=doc_id, source=source, text=text, metadata=meta,
                              distance=float(distance), score=score, rank=rank))
    return hits


async def _rerank_order(query: str, texts: Sequence[str], enabled: bool, tenant: str) -> list[tuple[int, float]]:
    """(candidate index, score) pairs, best first."""
    # Imported here so that a store used without reranking never loads ONNX Runtime.
    from .rerank import ann_order, maybe_rerank

    results = await maybe_rerank(query, list(texts), tenant=tenant) if enabled else ann_order(texts)
    return [(r.index, r.score) for r in results]

