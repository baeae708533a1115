"""The app's read/write path: seal before writing, open after reading, rerank last.

Every call runs in its own tenant transaction (:func:`pymem.tenant.set_rls_context`)
and reaches rows only through the SQL API (``pymem.put_chunks``, ``search_chunks``,
``get_chunk``, ``delete_document``, ``erase_tenant``), which audits every call.

Each sealed field's AAD is ``pymem:v1|<user_hash>|<chunk_id>|<field>`` (see
:func:`pymem.security.chunk_aad`), so a ciphertext moved to another tenant, row or
column fails to open with ``InvalidTag`` instead of returning someone else's data.

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
from .security import chunk_aad, keyring, open_sealed, seal
from .tenant import set_rls_context

MAX_LABEL_CHARS = 1024  # doc_id and source; mirrors the CHECK constraints in SQL
PUT_BATCH_ROWS = 1000  # rows per put_chunks call inside one transaction
EMBEDDING_DTYPE = np.dtype("<f4")  # the emb_cipher plaintext layout: little-endian float32

# %b: binary parameters. With %s, psycopg dumps each vector as text in Python
# (about 0.3 ms per 384-d vector, measured), which dominated the whole write path.
_PUT_SQL = (
    "SELECT pymem.put_chunks(%s::char(64), %b::uuid[], %b::text[], %b::text[], %b::bytea[], %b::bytea[],"
    " %b::bytea[], %b::integer[], %b::public.vector[])"
)
_SEARCH_SQL = (
    "SELECT id, doc_id, source, text_cipher, meta_cipher, key_id, distance"
    " FROM pymem.search_chunks(%b::public.vector, %s)"
)
_GET_SQL = "SELECT id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id FROM pymem.get_chunk(%s)"

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
    """A chunk as stored: labels, three sealed fields and the plaintext embedding for ANN."""

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
    if len(value) > MAX_LABEL_CHARS:
        raise ValueError(f"{name} is longer than {MAX_LABEL_CHARS} characters")
    if "\x00" in value:  # Postgres text cannot hold NUL; say so before anything is sent
        raise ValueError(f"{name} must not contain NUL characters")
    return value


def _check_text(text: Any, max_bytes: int) -> bytes:
    if not isinstance(text, str):
        raise ValueError("text must be a str")
    data = text.encode("utf-8")
    if len(data) > max_bytes:
        raise ValueError(f"text is {len(data)} bytes; the maximum is {max_bytes} (PYMEM_MAX_TEXT_BYTES)")
    return data


def _check_chunk_id(chunk_id: Any) -> str:
    try:
        return str(chunk_id if isinstance(chunk_id, uuid.UUID) else uuid.UUID(str(chunk_id)))
    except ValueError:
        raise ValueError("chunk_id must be a UUID") from None


def _check_metadata(metadata: Any) -> bytes:
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise ValueError("metadata must be a mapping (dict) or None")
    try:
        return json.dumps(dict(metadata), sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata is not JSON-serializable: {type(exc).__name__}") from None


def _check_embedding(embedding: Any, dim: int, name: str = "embedding") -> np.ndarray:
    try:
        vector = np.asarray(embedding, dtype=EMBEDDING_DTYPE)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of numbers") from None
    if vector.ndim != 1 or vector.shape[0] != dim:
        raise ValueError(f"{name} must have {dim} dimensions, got shape {vector.shape}")
    if not np.isfinite(vector).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return vector


async def _embedding_dim(conn: psycopg.AsyncConnection) -> int:
    """The deployment's dimension (fixed at migration time), cached per connection."""
    dim = _dims.get(conn)
    if dim is None:
        cursor = await conn.execute("SELECT pymem.embedding_dim()")
        dim = (await cursor.fetchone())[0]
        _dims[conn] = dim
    return dim


def _seal_chunk(user_hash: str, chunk: ChunkInput, dim: int, max_bytes: int, key_id: int) -> SealedRow:
    doc_id = _check_label("doc_id", chunk.doc_id, allow_empty=False)
    source = _check_label("source", chunk.source, allow_empty=True)
    text = _check_text(chunk.text, max_bytes)
    meta = _check_metadata(chunk.metadata)
    embedding = _check_embedding(chunk.embedding, dim)
    chunk_id = uuid.uuid4()
    cid = str(chunk_id)
    return SealedRow(
        id=chunk_id,
        doc_id=doc_id,
        source=source,
        text_cipher=seal(text, chunk_aad(user_hash, cid, "text"), key_id=key_id),
        meta_cipher=seal(meta, chunk_aad(user_hash, cid, "meta"), key_id=key_id),
        emb_cipher=seal(embedding.tobytes(), chunk_aad(user_hash, cid, "emb"), key_id=key_id),
        embedding=embedding,
    )


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
        psycopg.Error: the database refused the batch; nothing is written.
    """
    items = [_as_chunk(item) for item in chunks]
    if not items:
        raise ValueError("chunks must not be empty")
    max_bytes = get_settings().max_text_bytes
    key_id = keyring().active_key_id
    async with set_rls_context(conn, user_id) as user_hash:
        dim = await _embedding_dim(conn)
        rows = [_seal_chunk(user_hash, item, dim, max_bytes, key_id) for item in items]
        await put_sealed_rows(conn, user_hash, rows, key_id, progress=progress)
    return [r.id for r in rows]


async def put_sealed_rows(conn: psycopg.AsyncConnection, user_hash: str, rows: Sequence[SealedRow], key_id: int,
                          *, progress: bool = False) -> None:
    """Send already sealed rows through ``pymem.put_chunks``, inside the caller's tenant transaction."""
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
    async with set_rls_context(conn, user_id):
        cursor = await conn.execute("SELECT pymem.delete_document(%s)", (doc_id,))
        return (await cursor.fetchone())[0]


async def erase_user(conn: psycopg.AsyncConnection, user_id: str) -> int:
    """Delete every chunk of the tenant; return how many (audited)."""
    async with set_rls_context(conn, user_id):
        cursor = await conn.execute("SELECT pymem.erase_tenant()")
        return (await cursor.fetchone())[0]


# ---------------------------------------------------------------------------
# reads
# ---------------------------------------------------------------------------
def _open_fields(user_hash: str, chunk_id: uuid.UUID, text_cipher: bytes, meta_cipher: bytes,
                 key_id: int) -> tuple[str, dict[str, Any]]:
    cid = str(chunk_id)
    text = open_sealed(text_cipher, chunk_aad(user_hash, cid, "text"), key_id=key_id).decode("utf-8")
    meta = json.loads(open_sealed(meta_cipher, chunk_aad(user_hash, cid, "meta"), key_id=key_id))
    return text, meta


async def _fetch_chunk(conn: psycopg.AsyncConnection, user_id: str, chunk_id: Any) -> tuple[str, tuple | None]:
    """(user_hash, sealed row or None) through the audited ``pymem.get_chunk``."""
    chunk_id = _check_chunk_id(chunk_id)
    async with set_rls_context(conn, user_id) as user_hash:
        cursor = await conn.execute(_GET_SQL, (chunk_id,))
        return user_hash, await cursor.fetchone()


async def get_chunk(conn: psycopg.AsyncConnection, user_id: str, chunk_id: uuid.UUID | str) -> MemoryHit | None:
    """Open one of the tenant's chunks by id; None if it is not the tenant's (audited).

    Raises:
        InvalidTag: the stored ciphertext does not open under this tenant's AAD.
    """
    user_hash, row = await _fetch_chunk(conn, user_id, chunk_id)
    if row is None:
        return None
    cid, doc_id, source, text_cipher, meta_cipher, _emb_cipher, key_id = row
    text, meta = _open_fields(user_hash, cid, text_cipher, meta_cipher, key_id)
    return MemoryHit(id=cid, doc_id=doc_id, source=source, text=text, metadata=meta)


async def open_embedding(conn: psycopg.AsyncConnection, user_id: str, chunk_id: uuid.UUID | str) -> np.ndarray | None:
    """Open the sealed shadow copy of a chunk's embedding (for compliance export).

    Returns:
        The float32 vector, or None when the chunk is not the tenant's.
    """
    user_hash, row = await _fetch_chunk(conn, user_id, chunk_id)
    if row is None:
        return None
    cid, _doc, _src, _text, _meta, emb_cipher, key_id = row
    raw = open_sealed(emb_cipher, chunk_aad(user_hash, str(cid), "emb"), key_id=key_id)
    return np.frombuffer(raw, dtype=EMBEDDING_DTYPE).copy()


async def query_memory(
    conn: psycopg.AsyncConnection,
    user_id: str,
    query: str,
    query_embedding: Any,
    k: int = 8,
    *,
    candidates: int = 24,
    rerank: bool = True,
) -> list[MemoryHit]:
    """ANN search within the tenant, open the hits, rerank them, return the top ``k``.

    Args:
        conn: async connection of a role that has ``pymem_app``.
        user_id: the tenant's application user id.
        query: the query text (used by the reranker only; never stored or logged).
        query_embedding: vector of the deployment's dimension.
        k: results to return (1..1000).
        candidates: ANN candidates to fetch and rerank (at least ``k``; the seed uses 24).
        rerank: False skips the reranker (ANN order), whatever RERANK_ENABLED says.

    Returns:
        Up to ``k`` :class:`MemoryHit`, best first, each with its ANN distance and
        its rerank score (or the ANN-order fallback score when rerank was skipped).

    Raises:
        ValueError: bad ``k``/``candidates``/embedding.
        InvalidTag: a stored ciphertext failed to open (tampering): fail closed.
    """
    if not isinstance(k, int) or not 1 <= k <= 1000:
        raise ValueError("k must be an int between 1 and 1000")
    if not isinstance(candidates, int) or not 1 <= candidates <= 1000:
        raise ValueError("candidates must be an int between 1 and 1000")
    fetch = max(k, candidates)
    async with set_rls_context(conn, user_id) as user_hash:
        vector = _check_embedding(query_embedding, await _embedding_dim(conn), "query_embedding")
        cursor = await conn.execute(_SEARCH_SQL, (vector, fetch))
        rows = await cursor.fetchall()
    # Opening and reranking happen after COMMIT: the transaction stays short.
    opened = []
    for cid, doc_id, source, text_cipher, meta_cipher, key_id, distance in rows:
        text, meta = _open_fields(user_hash, cid, text_cipher, meta_cipher, key_id)
        opened.append((cid, doc_id, source, text, meta, distance))
    order = await _rerank_order(query, [hit[3] for hit in opened], rerank)
    hits = []
    for rank, (index, score) in enumerate(order[:k], start=1):
        cid, doc_id, source, text, meta, distance = opened[index]
        hits.append(MemoryHit(id=cid, doc_id=doc_id, source=source, text=text, metadata=meta,
                              distance=float(distance), score=score, rank=rank))
    return hits


async def _rerank_order(query: str, texts: Sequence[str], enabled: bool) -> list[tuple[int, float]]:
    """(candidate index, score) pairs, best first."""
    # Imported here so that a store used without reranking never loads ONNX Runtime.
    from .rerank import ann_order, maybe_rerank

    results = await maybe_rerank(query, list(texts)) if enabled else ann_order(texts)
    return [(r.index, r.score) for r in results]

