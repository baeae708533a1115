"""The app's read/write path: seal before writing, open after reading, rerank last.

Every call runs in its own tenant transaction (:func:`pymem.tenant.set_rls_context`)
and reaches rows only through the SQL API (``pymem.write_chunks_v3``,
``search_chunks_v3``, ``get_chunks_v3``, ``export_chunks_v3``, ``delete_chunk_ids``,
``delete_document``, ``erase_tenant``), which audits every call. Reads first
commit a read intent (:mod:`pymem.reads`), so they stay on record even if their
own transaction is rolled back. What is sealed and how: :mod:`pymem.chunks`;
ids and filters: :mod:`pymem.blind_index`.

Every function takes ``conn``: an async or sync psycopg connection, or an async
or sync psycopg_pool pool (:mod:`pymem.connections`). These functions are
coroutines; :mod:`pymem.sync` has the same API for sync code.

Input is validated completely before anything is sent, and a call is one
transaction: bad input raises ``ValueError`` and writes nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
import weakref
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg

from .blind_index import TenantIndex, check_external_id
from .chunks import (ChunkInput, OpenedRow, SealedRow, as_chunk, as_written, check_embedding, check_label, check_text,
                     chunk_digest, open_row, seal_row)
from .config import get_settings, rerank_enabled_now
from .connections import borrow, connection_key
from .extras import progress_bar
from .lifecycle import RowTimes, TimeWindow, current_rows
from .ranking import RerankedResult, ann_order
from .reads import durable_read_with_keys, read_on_standby
from .security import AAD_VERSION, hmac_user, keyring
from .pins import pinned_transaction
from .tenant import set_rls_context, tenant_transaction
from .errors import CommitUnknown, DuplicateId, TamperedRow
from .tenant_keys import TenantKeys, data_key_id, forget, keys_for_writing, tenant_keys
from .terms import claims_hold, query_terms, term_language
from .write_records import sealed_record, stored_record

__all__ = [
    "ChunkInput", "DuplicateId", "MemoryHit", "MemoryPage", "delete_document", "delete_memory_chunks", "erase_user",
    "get_chunk", "get_memory_chunks", "index_memory_chunk", "index_memory_chunks", "list_memory_chunks",
    "open_embedding", "query_memory", "upsert_memory_chunks",
]

WRITE_BATCH_ROWS = 1000  # rows per write_chunks call inside one transaction
MAX_IDS = 10_000  # ids per get or delete call (the SQL API's limit)

# Every type and function is schema-qualified: a session may have left a
# temporary type named uuid, text or bytea in pg_temp, which Postgres would
# otherwise resolve first. %b: binary parameters; with %s, psycopg dumps each
# vector as text in Python (about 0.3 ms per 384-d vector, measured).
_WRITE_SQL = (
    "SELECT pymem.write_chunks_v3(%s::pg_catalog.bpchar, %s::pg_catalog.bool, %b::pg_catalog.uuid[],"
    " %b::pg_catalog.text[], %b::pg_catalog.text[], %b::pg_catalog.bytea[], %b::pg_catalog.bytea[],"
    " %b::pg_catalog.bytea[], %b::pg_catalog.bytea[], %b::pg_catalog.bytea[], %b::pg_catalog.int4[],"
    " %b::public.vector[], %s::pg_catalog.int2, %b::pg_catalog.bytea[], %b::pg_catalog.bytea[],"
    " %b::pg_catalog.bytea[], %b::pg_catalog.bytea[], %b::pg_catalog.timestamptz[])"
)
_ROW_COLUMNS = "id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, embedding"
_TIMES = "created_at, updated_at, expires_at"
# One search for vector and hybrid (terms NULL: vector alone). Row layout: the sealed row,
# then [10] distance, [11] keyword score, [12] term positions, and the timestamps last.
_SEARCH_TEMPLATE = (
    f"SELECT {_ROW_COLUMNS}, ref_cipher, distance, keyword_score, term_positions, {_TIMES}"
    " FROM pymem.{}(%s::pg_catalog.bpchar, %s::pg_catalog.uuid, %b::public.vector, %s::pg_catalog.int4,"
    " %b::pg_catalog.bytea[], %b::pg_catalog.int4[], %b::pg_catalog.timestamptz[], %b::pg_catalog.bytea[])"
)
_SEARCH_SQL = _SEARCH_TEMPLATE.format("search_chunks_v3")
_STANDBY_SEARCH_SQL = _SEARCH_TEMPLATE.format("search_chunks_on_standby_v3")
_GET_SQL = (
    f"SELECT {_ROW_COLUMNS}, ref_cipher, {_TIMES}"
    " FROM pymem.get_chunks_v3(%s::pg_catalog.bpchar, %s::pg_catalog.uuid, %b::pg_catalog.uuid[])"
)
# Parameters: key ids, after, page size, time window, which rows ('live': unexpired, as
# listings read; 'all': re-keying and verification; 'expired': the purge). The intent names
# all but after (export_digest_v3).
EXPORT_SQL = (
    f"SELECT {_ROW_COLUMNS}, ref_cipher, {_TIMES} FROM pymem.export_chunks_v3(%s::pg_catalog.bpchar,"
    " %s::pg_catalog.uuid, %b::pg_catalog.int4[], %s::pg_catalog.uuid, %s::pg_catalog.int4,"
    " %b::pg_catalog.timestamptz[], %s::pg_catalog.text)"
)
_DELETE_IDS_SQL = "SELECT pymem.delete_chunk_ids(%s::pg_catalog.bpchar, %b::pg_catalog.uuid[])"

_shapes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class MemoryHit:
    """One opened chunk.

    Attributes:
        id: the row id (a UUID; the audit log names rows by it).
        external_id: the caller's id (``str(id)`` for generated ids).
        distance: the cosine distance from the ANN search (None for gets).
        reranked: where the order and ``score`` of a search's hits come from: True,
            the cross-encoder; False, the ANN search (``rerank=False``, RERANK_ENABLED
            false, or a call skipped on a timeout, an error, an open breaker or no
            exported model: ``get_rerank_metrics()`` counts skips by reason).
            Always False for gets and lists.
        score: with ``reranked``, the cross-encoder's relevance (the sigmoid of its
            logit, in (0, 1)); without, ``1 - i/n`` for the i-th of n candidates in
            the search's order (ANN, or fused for ``hybrid=True``), a rank, not a
            relevance. None for gets and lists.
        keyword_score: a hybrid search's keyword score of the hit (the sum of the idf of
            the query terms it holds), when it is among the keyword side's candidates; else None.
        rank: 1-based, in the returned order.
        embedding: the opened float32 embedding when asked for
            (``include_embedding=True``), else None.
        created_at: when the chunk was first written (an upsert or update keeps it).
        updated_at: when it was last replaced; ``created_at`` if never.
        expires_at: when it stops being returned (:mod:`pymem.lifecycle`); None: never.
            Its AAD binds it (v3), so a changed one does not open; created_at and updated_at
            are the database's clock and word.
        aad_version: the AAD layout the chunk was sealed with: 3 since revision 0022 (its
            expiry bound, its key tags written: :mod:`pymem.blind_index`), 2 or 1 before.
    """

    id: uuid.UUID
    doc_id: str
    source: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    distance: float | None = None
    score: float | None = None
    rank: int | None = None
    external_id: str = ""
    reranked: bool = False
    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)
    keyword_score: float | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    aad_version: int = 0


@dataclass(frozen=True)
class MemoryPage:
    """One page of :func:`list_memory_chunks`; ``next_cursor`` is None on the last page."""

    hits: list[MemoryHit]
    next_cursor: str | None


def _hit(opened: OpenedRow, row: Sequence, *, include_embedding: bool = True, **scores: Any) -> MemoryHit:
    times = RowTimes.of(row)
    return MemoryHit(id=opened.id, external_id=opened.external_id, doc_id=opened.doc_id, source=opened.source,
                     text=opened.text, metadata=opened.metadata,
                     embedding=opened.embedding if include_embedding else None, created_at=times.created_at,
                     updated_at=times.updated_at, expires_at=times.expires_at, aad_version=opened.aad_version,
                     **scores)


def _check_count(name: str, value: Any, maximum: int = 1000) -> int:
    # bool is an int subclass; k=True is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValueError(f"{name} must be an int between 1 and {maximum}")
    return value


def _check_ids(ids: Any) -> list[str]:
    if isinstance(ids, str) or not isinstance(ids, Iterable):
        raise ValueError("ids must be a list of str")
    checked = [check_external_id(i) for i in ids]
    if not 1 <= len(checked) <= MAX_IDS:
        raise ValueError(f"give between 1 and {MAX_IDS} ids")
    return checked


async def _embedding_shape(conn) -> tuple[int, bool]:
    """The deployment's dimension and whether it stores halfvec (both fixed at migration time),
    cached per connection."""
    key = connection_key(conn)
    shape = _shapes.get(key)
    if shape is None:
        # Outside a transaction, its own one: a connection that is not in
        # autocommit mode must not be left inside an implicit transaction.
        async with pinned_transaction(conn, [("SELECT pymem.embedding_dim(), pymem.embedding_type()", None)]) as (
                cursor,):
            dim, kind = await cursor.fetchone()
        shape = _shapes[key] = (dim, kind == "halfvec")
    return shape


# ---------------------------------------------------------------------------
# writes
# ---------------------------------------------------------------------------
async def _write(conn, user_id: str, chunks: Iterable[ChunkInput | Mapping[str, Any]], *, upsert: bool,
                 progress: bool) -> list[SealedRow]:
    items = [as_chunk(item) for item in chunks]
    if not items:
        raise ValueError("chunks must not be empty")
    settings = get_settings()
    max_bytes, language = settings.max_text_bytes, term_language(settings)
    async with borrow(conn) as conn:
        dim, half = await _embedding_shape(conn)
        user_hash = hmac_user(user_id)
        index = keyring().tenant_index(user_hash)
        for attempt in (1, 2):
            keys = await keys_for_writing(conn, user_hash)
            key_id = data_key_id(keys.current)
            rows = [seal_row(user_hash, index, item, dim, max_bytes, keys, key_id, term_language=language, half=half)
                    for item in items]
            if len({r.id for r in rows}) != len(rows):
                raise ValueError("an id appears twice in one call")
            # Rows stored before 0015 under a caller's UUID as it was: an upsert replaces them too.
            legacy = [r for row in rows if upsert and row.ref_cipher is not None
                      for r in index.row_ids(row.external_id)[1:]]
            committing = False
            try:
                async with tenant_transaction(conn, user_hash):
                    if legacy:
                        await conn.execute(_DELETE_IDS_SQL, (user_hash, legacy))
                    await write_sealed_rows(conn, user_hash, index, rows, key_id, upsert=upsert, progress=progress)
                    committing = True
                return rows
            except psycopg.errors.UniqueViolation:
                raise DuplicateId("an id of this call already exists for this tenant (upsert replaces it);"
                                  " nothing was written") from None
            except psycopg.errors.ObjectNotInPrerequisiteState:
                # The cached key was destroyed (the tenant was erased by another process) or
                # belongs to another copy of the database: load the keys again, once.
                forget(user_hash)
                if attempt == 2:
                    raise
            except psycopg.OperationalError as error:  # after its subclass above
                # No SQLSTATE: no answer came. An error the server sent in answer to COMMIT
                # (an idle-in-transaction timeout that ended the session, say) says it failed.
                if committing and error.sqlstate is None and conn.info.status != psycopg.pq.ConnStatus.OK:
                    raise CommitUnknown("the connection failed after COMMIT was sent: the batch is stored whole"
                                        " or not at all; retry with upsert_memory_chunks(..., error.chunks)",
                                        [as_written(item, row) for item, row in zip(items, rows)]) from error
                raise


def every_row_export(key_ids: list[int] | None, page_size: int) -> tuple:
    """The digest parameters of a maintenance export: every row (expired ones too, for
    re-keying and verification), no time window."""
    return key_ids, page_size, [], "all"


async def export_pages(conn, user_hash: str, ticket, page_size: int) -> AsyncIterator[list[tuple]]:
    """Every row of the tenant, expired ones too, sealed, in id order, a page of ``page_size``
    at a time (``export_chunks_v3``), inside the caller's tenant transaction and under the
    export intent ``ticket`` (``commit_read_intent(..., "export_v3", every_row_export(None, page_size))``)."""
    after = None
    while True:
        cursor = await conn.execute(EXPORT_SQL, (user_hash, ticket, None, after, page_size, [], "all"))
        page = await cursor.fetchall()
        if page:
            yield page
        if len(page) < page_size:
            return
        after = page[-1][0]


async def write_sealed_rows(conn, user_hash: str, index: TenantIndex, rows: Sequence[SealedRow], key_id: int, *,
                            upsert: bool = False, progress: bool = False,
                            read: Sequence[tuple] | None = None) -> None:
    """Send sealed rows through ``pymem.write_chunks_v3``, with their write records under
    the tenant's ``index`` (:mod:`pymem.write_records`), their keyword terms (none if a
    row of the batch has none) and their expiries, inside the caller's tenant transaction.

    ``read`` (with ``upsert``): an update: the rows as read, parallel to ``rows``. The
    database replaces them only if every one is still so (:func:`pymem.chunks.chunk_digest`),
    and audits their write records as read (``update_from``), which ``pymem verify-rows``
    checks against their latest audited writes.
    """
    bar = progress_bar(len(rows), enabled=progress, unit="chunk", desc="indexing")
    for start in range(0, len(rows), WRITE_BATCH_ROWS):
        part = rows[start:start + WRITE_BATCH_ROWS]
        await conn.execute(_WRITE_SQL, (
            user_hash,
            upsert,
            [r.id for r in part],
            [r.doc_id for r in part],
            [r.source for r in part],
            [r.text_cipher for r in part],
            [r.meta_cipher for r in part],
            [r.emb_cipher for r in part],
            [r.ref_cipher for r in part],
            [r.tags for r in part],
            [key_id] * len(part),
            [r.embedding for r in part],
            AAD_VERSION,
            [sealed_record(index, r, key_id, AAD_VERSION) for r in part],
            None if any(r.terms is None for r in part) else [r.terms for r in part],
            None if read is None else [chunk_digest(row) for row in read[start:start + WRITE_BATCH_ROWS]],
            None if read is None else [stored_record(index, row) for row in read[start:start + WRITE_BATCH_ROWS]],
            None if all(r.expires_at is None for r in part) else [r.expires_at for r in part],
        ))
        bar.update(len(part))
    bar.close()


async def index_memory_chunks(
    conn,
    user_id: str,
    chunks: Iterable[ChunkInput | Mapping[str, Any]],
    *,
    progress: bool = False,
) -> list[uuid.UUID]:
    """Seal and store many chunks for one tenant, all or nothing.

    Args:
        conn: a connection or pool (:mod:`pymem.connections`) of a role with ``pymem_app``.
        user_id: the tenant's application user id.
        chunks: ``ChunkInput`` objects or mappings with the same keys. A chunk's
            ``id`` must not exist yet for the tenant (see :func:`upsert_memory_chunks`).
        progress: show a progress bar (for large imports).

    Returns:
        The new rows' ids (UUIDs), in input order.

    Raises:
        ValueError: any chunk is invalid (empty doc_id, wrong embedding dimension,
            NaN/inf, text over the limit, metadata not JSON, a bad id); nothing is written.
        DuplicateId: an id already exists for the tenant, or appears twice; nothing is written.
        RootKeyUnavailable: the tenant's data key must be made or unwrapped and the root key
            cannot be used (:mod:`pymem.tenant_keys`); nothing is written.
        psycopg.Error: the database refused the batch; nothing is written.
    """
    return [r.id for r in await _write(conn, user_id, chunks, upsert=False, progress=progress)]


async def upsert_memory_chunks(
    conn,
    user_id: str,
    chunks: Iterable[ChunkInput | Mapping[str, Any]],
    *,
    progress: bool = False,
) -> list[str]:
    """Store chunks, replacing the tenant's chunks with the same ids, atomically.

    Chunks without an ``id`` get a generated one. Replaced rows are audited as
    updates, new ones as inserts, in the same transaction.

    Returns:
        The chunks' ids (the caller's, or the generated ones), in input order.

    Raises:
        ValueError, DuplicateId, RootKeyUnavailable, psycopg.Error: as :func:`index_memory_chunks`.
    """
    return [r.external_id for r in await _write(conn, user_id, chunks, upsert=True, progress=progress)]


async def index_memory_chunk(
    conn,
    user_id: str,
    doc_id: str,
    source: str,
    text: str,
    embedding: Any,
    metadata: Mapping[str, Any] | None = None,
) -> uuid.UUID:
    """Seal and store one chunk; return its id.

    The text, the metadata (as canonical JSON) and the embedding (little-endian
    float32) are each sealed with an AAD that binds tenant, chunk id and field;
    the plaintext embedding is also stored for ANN search.

    Raises:
        ValueError: invalid input; nothing is written.
    """
    ids = await index_memory_chunks(conn, user_id, [ChunkInput(doc_id, source, text, embedding, metadata)])
    return ids[0]


async def _tenant_call(conn, user_id: str, statement: str, argument: Any) -> int:
    async with borrow(conn) as conn, set_rls_context(conn, user_id) as user_hash:
        cursor = await conn.execute(statement, (user_hash, argument))
        return (await cursor.fetchone())[0]


async def delete_memory_chunks(conn, user_id: str, ids: Sequence[str]) -> int:
    """Delete the tenant's chunks with these ids (others are ignored); return how many (audited).

    Raises:
        ValueError: no ids, more than 10,000, or a malformed one.
    """
    checked = _check_ids(ids)
    index = keyring().tenant_index(hmac_user(user_id))
    return await _tenant_call(conn, user_id, _DELETE_IDS_SQL, [r for i in checked for r in index.row_ids(i)])


async def delete_document(conn, user_id: str, doc_id: str) -> int:
    """Delete every chunk of one of the tenant's documents; return how many (audited)."""
    check_label("doc_id", doc_id, allow_empty=False)
    return await _tenant_call(conn, user_id, "SELECT pymem.delete_document(%s::pg_catalog.bpchar, %s::pg_catalog.text)",
                              doc_id)


async def erase_user(conn, user_id: str) -> int:
    """Delete every chunk of the tenant and destroy its data keys, in one transaction; return
    how many chunks (audited).

    Any copy of the tenant's rows taken before (a dump, a backup, a standby) and put
    back afterwards no longer opens: :class:`~pymem.errors.KeyDestroyed`. A full
    restore of an older backup, which also holds the wrapped keys, stops opening once
    the root key that wrapped them is retired (docs/keys.md).
    """
    async with borrow(conn) as conn, set_rls_context(conn, user_id) as user_hash:
        cursor = await conn.execute("SELECT pymem.erase_tenant(%s::pg_catalog.bpchar)", (user_hash,))
        erased = (await cursor.fetchone())[0]
    forget(user_hash)
    return erased


# ---------------------------------------------------------------------------
# reads
# ---------------------------------------------------------------------------
async def _get_rows(conn, user_hash: str, row_ids: list[uuid.UUID]) -> tuple[list[tuple], TenantKeys]:
    async with borrow(conn) as conn:
        rows, live = await durable_read_with_keys(conn, user_hash, "get", (row_ids,), _GET_SQL, (row_ids,))
        rows = current_rows(rows, TimeWindow())
        return rows, await keys_of_rows(conn, user_hash, rows, live)


async def keys_of_rows(conn, user_hash: str, rows: Sequence[tuple], live: Mapping[int, bytes]) -> TenantKeys:
    """The tenant's keys, enough to open ``rows`` (read rows: ``key_id`` is their 7th
    column), given the data keys the database has ``live`` (version -> sha256 of the wrapped
    bytes, read with the rows); from this process's cache when it has them, else one round
    trip on ``conn``."""
    return await tenant_keys(conn, user_hash, {row[6] for row in rows}, live=live)


async def get_memory_chunks(conn, user_id: str, ids: Sequence[str], *,
                            include_embedding: bool = False) -> list[MemoryHit]:
    """Open the tenant's chunks with these ids, in the order of ``ids`` (audited).

    Ids the tenant does not have are left out; an id given twice is returned once.

    Raises:
        ValueError: no ids, more than 10,000, or a malformed one.
        InvalidTag, EmbeddingMismatch: a stored row was tampered with: fail closed.
    """
    user_hash = hmac_user(user_id)
    index = keyring().tenant_index(user_hash)
    candidates = {external_id: index.row_ids(external_id) for external_id in _check_ids(ids)}  # first seen, once
    rows, keys = await _get_rows(conn, user_hash, [r for c in candidates.values() for r in c])
    by_row = {row[0]: row for row in rows}
    hits = []
    for external_id, row_ids in candidates.items():
        found = next((by_row[r] for r in row_ids if r in by_row), None)
        if found is not None:
            hit = _hit(open_row(user_hash, found, keys), found, include_embedding=include_embedding)
            if hit.external_id == external_id:  # a row is returned for the id it was stored under
                hits.append(hit)
    return hits


async def list_memory_chunks(conn, user_id: str, *, after: str | None = None, limit: int = 100,
                             include_embedding: bool = False, created_after: dt.datetime | None = None,
                             created_before: dt.datetime | None = None, updated_after: dt.datetime | None = None,
                             updated_before: dt.datetime | None = None) -> MemoryPage:
    """One page of the tenant's unexpired chunks, in a stable order (by row id), audited as an export.

    Args:
        after: the previous page's ``next_cursor`` (None: the first page).
        limit: chunks per page (1..10,000); a page may hold fewer and still have a next one.
        created_after, created_before, updated_after, updated_before: a time window
            (:class:`pymem.lifecycle.TimeWindow`; aware datetimes, strict bounds).

    Raises:
        ValueError: a bad cursor, limit or bound.
        TamperedRow: the database returned a row outside the window by its own timestamps.
    """
    window = TimeWindow(created_after, created_before, updated_after, updated_before)
    _check_count("limit", limit, MAX_IDS)
    try:
        start = None if after is None else uuid.UUID(after)
    except (TypeError, ValueError, AttributeError):
        raise ValueError("after must be a next_cursor from list_memory_chunks") from None
    user_hash = hmac_user(user_id)
    async with borrow(conn) as conn:
        listing = (None, limit, window.bounds(), "live")
        page = await durable_read_with_keys(conn, user_hash, "export_v3", listing, EXPORT_SQL,
                                            (None, start, limit, window.bounds(), "live"))
        rows = current_rows(page[0], window)
        keys = await keys_of_rows(conn, user_hash, rows, page[1])
    hits = [_hit(open_row(user_hash, row, keys), row, include_embedding=include_embedding) for row in rows]
    return MemoryPage(hits, str(page[0][-1][0]) if len(page[0]) == limit else None)


async def get_chunk(conn, user_id: str, chunk_id: uuid.UUID | str) -> MemoryHit | None:
    """Open one of the tenant's chunks by its row id; None if it is not the tenant's (audited).

    Raises:
        ValueError: ``chunk_id`` is not a UUID.
        InvalidTag: the stored ciphertext does not open under this tenant's AAD.
        EmbeddingMismatch: the stored plaintext embedding was changed.
    """
    row_id = _check_chunk_id(chunk_id)
    user_hash = hmac_user(user_id)
    rows, keys = await _get_rows(conn, user_hash, [row_id])
    return _hit(open_row(user_hash, rows[0], keys), rows[0], include_embedding=False) if rows else None


def _check_chunk_id(chunk_id: Any) -> uuid.UUID:
    try:
        return chunk_id if isinstance(chunk_id, uuid.UUID) else uuid.UUID(str(chunk_id))
    except ValueError:
        raise ValueError("chunk_id must be a UUID") from None


async def open_embedding(conn, user_id: str, chunk_id: uuid.UUID | str) -> np.ndarray | None:
    """Open the sealed shadow copy of a chunk's embedding (for compliance export).

    Returns:
        The float32 vector, or None when the chunk is not the tenant's.
    """
    row_id = _check_chunk_id(chunk_id)
    user_hash = hmac_user(user_id)
    rows, keys = await _get_rows(conn, user_hash, [row_id])
    return open_row(user_hash, rows[0], keys).embedding if rows else None


async def query_memory(
    conn,
    user_id: str,
    query: str,
    query_embedding: Any,
    k: int = 8,
    *,
    candidates: int = 24,
    rerank: bool = True,
    where: Mapping[str, Any] | None = None,
    max_distance: float | None = None,
    include_embedding: bool = False,
    standby: Any = None,
    hybrid: bool = False,
    created_after: dt.datetime | None = None,
    created_before: dt.datetime | None = None,
    updated_after: dt.datetime | None = None,
    updated_before: dt.datetime | None = None,
) -> list[MemoryHit]:
    """Search the tenant's memory, open the hits, rerank them, return the top ``k``.

    The search is a durable read: its intent is committed first (see :mod:`pymem.reads`).

    Args:
        conn: a connection or pool of a role that has ``pymem_app``.
        user_id: the tenant's application user id.
        query: the query text (used by the reranker and, with ``hybrid``, for its keyword
            terms; never stored or logged).
        query_embedding: vector of the deployment's dimension.
        k: results to return (1..1000).
        candidates: ANN candidates to fetch and rerank (at least ``k``; 24 by default).
        rerank: False skips the reranker (the search's order), whatever RERANK_ENABLED says.
        where: a metadata filter (``$eq``, ``$ne``, ``$in``, ``$nin``, ``$exists``, ``$and``,
            ``$or``; see :mod:`pymem.blind_index`), evaluated in the database on blind-index tags.
        max_distance: drop candidates whose cosine distance exceeds it (0..2),
            before reranking.
        include_embedding: put each hit's opened embedding in ``MemoryHit.embedding`` (for MMR).
        standby: a connection to a hot standby of ``conn``'s server (same login)
            to run the search on; the intent and the result row go to ``conn``.
        hybrid: rank by keyword relevance and vector similarity together: the
            ``candidates`` best of the vector search and of a keyword search over the query's
            keyword terms (:mod:`pymem.terms`), fused by reciprocal rank in the database.
            Rows written without terms are found by the vector side only. A query with
            no words searches by vector alone.
        created_after, created_before, updated_after, updated_before: only chunks created
            (last updated) strictly after / before these aware datetimes
            (:class:`pymem.lifecycle.TimeWindow`). Expired chunks are never returned.

    Returns:
        Up to ``k`` :class:`MemoryHit`, best first, each with its cosine distance (and,
        for ``hybrid``, its ``keyword_score``); its ``reranked`` says whether the order
        and ``score`` are the cross-encoder's or the search's.

    Raises:
        ValueError: bad ``k``/``candidates``/embedding/filter/``max_distance``, a query that is
            not a str or is longer than ``PYMEM_MAX_TEXT_BYTES``, or ``hybrid`` with
            ``PYMEM_TERM_TAGS`` false.
        InvalidTag: a stored ciphertext failed to open, or (``EmbeddingMismatch``)
            a stored embedding was changed, or (``TamperedRow``) a returned row does
            not meet ``where`` once opened, does not hold the query terms the
            database said it holds, or lies outside the time window: fail closed.
        pymem.reads.StandbyBehind: the standby had not replayed the intent in time.
    """
    _check_count("k", k)
    _check_count("candidates", candidates)
    # The reranker tokenizes the query with every candidate, and no budget interrupts that.
    settings = get_settings()
    check_text(query, settings.max_text_bytes, "query")
    if max_distance is not None and (isinstance(max_distance, bool) or not isinstance(max_distance, (int, float))
                                     or not 0 <= max_distance <= 2):
        raise ValueError("max_distance must be a number between 0 and 2 (cosine distance)")
    if not isinstance(hybrid, bool):
        raise ValueError("hybrid must be a bool")
    language = term_language(settings) if hybrid else None
    if hybrid and language is None:
        raise ValueError("hybrid search needs keyword terms, and PYMEM_TERM_TAGS is false")
    fetch = max(k, candidates)
    user_hash = hmac_user(user_id)
    index = keyring().tenant_index(user_hash)
    term_tags, words = query_terms(index, query, language) if language else ([], [])
    tags, ends = index.compile_filter(where)
    window = TimeWindow(created_after, created_before, updated_after, updated_before)
    async with borrow(conn) as conn:
        dim, half = await _embedding_shape(conn)
        vector = check_embedding(query_embedding, dim, "query_embedding", half=half)
        params = (vector, fetch, tags, ends, window.bounds(), term_tags if words else None)
        if standby is None:
            rows, live = await durable_read_with_keys(conn, user_hash, "search_v3", params, _SEARCH_SQL, params)
        else:
            async with borrow(standby) as standby:
                rows, live = await read_on_standby(conn, standby, user_hash, "search_v3", params,
                                                   _STANDBY_SEARCH_SQL, params)
        rows = current_rows(rows, window)
        keys = await keys_of_rows(conn, user_hash, rows, live)
    # Opening and reranking happen after COMMIT: the transaction stays short.
    if len(rows) > fetch:
        raise TamperedRow("the database returned more rows than the search asked for")
    # Every candidate is opened and checked, also those a search without reranking does not
    # return: a row changed in the database fails the call whether or not it would have been
    # among the top k (checking only those would let a changed embedding push a row out of
    # them unnoticed).
    opened = [(open_row(user_hash, row, keys), row) for row in rows
              if max_distance is None or row[10] <= max_distance]
    if tags and not all(index.satisfies(hit.metadata, tags, ends, key_tags=hit.aad_version >= 3)
                        for hit, _ in opened):
        raise TamperedRow("the database returned a row that does not meet the filter (its tags were changed)")
    if words and not all(claims_hold(hit.text, language, words, row[11], row[12]) for hit, row in opened):
        raise TamperedRow("the database returned a row that does not hold the query terms it said it holds"
                          " (its keyword postings were changed)")
    order = await _rerank_order(query, [hit.text for hit, _ in opened], rerank, user_hash)
    return [_hit(opened[r.index][0], opened[r.index][1], include_embedding=include_embedding,
                 distance=float(opened[r.index][1][10]),
                 keyword_score=None if not words or opened[r.index][1][11] is None else float(opened[r.index][1][11]),
                 score=r.score, rank=rank, reranked=r.reranked)
            for rank, r in enumerate(order[:k], start=1)]


async def _rerank_order(query: str, texts: Sequence[str], enabled: bool, tenant: str) -> list[RerankedResult]:
    """The candidates, best first: the reranker's order, or the ANN order."""
    if not texts:
        return []
    if enabled:
        try:
            # Imported here so that a store used without reranking needs no rerank extra.
            from .rerank import maybe_rerank
        except ImportError:
            if rerank_enabled_now(get_settings().rerank_enabled):
                raise
            enabled = False  # switched off (RERANK_ENABLED=false), and not installed either
    if enabled:
        return await maybe_rerank(query, list(texts), tenant=tenant)
    return ann_order(texts)
