"""Partial updates: change a chunk's text, metadata, embedding or labels without sending the rest.

:func:`update_memory_chunks` reads the chunks (an audited get), opens them, applies what
each :class:`ChunkUpdate` gives, seals the result and replaces the rows in one
transaction through ``pymem.write_chunks_v3`` with each row's digest as read
(``pymem.chunk_digest``): the database replaces them only if every one is still as read,
else nothing. A row changed by another writer in between is read again, up to
:data:`ATTEMPTS` times. The replacement is audited as an update, with its write records,
after the write records of the rows as read (``update_from``): ``pymem verify-rows``
reports an update that read an older copy of a row put back in place of its latest
audited write (which the update would otherwise make current). The row keeps its id,
its ``created_at`` and its expiry (unless the update gives another), and its keyword terms
follow the new text. An expired chunk is not found.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from .chunks import ChunkInput, open_row, seal_row
from .config import get_settings
from .connections import borrow
from .errors import ChunkNotFound
from .lifecycle import RowTimes, expiry_of
from .repository import MAX_IDS, _embedding_shape, _get_rows, write_sealed_rows
from .security import hmac_user, keyring
from .tenant import tenant_transaction
from .tenant_keys import data_key_id, forget, keys_for_writing
from .terms import term_language

__all__ = ["ChunkUpdate", "update_memory_chunks"]

ATTEMPTS = 3  # reads of rows another writer keeps changing, before giving up


@dataclass(frozen=True)
class ChunkUpdate:
    """What to change in one chunk; a field left None is kept as it is.

    ``id``: the chunk's id as the caller knows it (``MemoryHit.external_id``).
    ``metadata``: the whole new mapping (``{}`` clears it), not a merge.
    ``expires_at`` or ``ttl``: a new expiry (as :class:`~pymem.chunks.ChunkInput`); left
    None, the chunk keeps its own (an upsert without one removes it).
    """

    id: str
    text: str | None = None
    metadata: Mapping[str, Any] | None = None
    embedding: Any = None
    doc_id: str | None = None
    source: str | None = None
    expires_at: dt.datetime | None = None
    ttl: dt.timedelta | float | None = None


async def update_memory_chunks(conn, user_id: str, updates: Sequence[ChunkUpdate]) -> int:
    """Apply partial updates to the tenant's chunks, all or nothing; return how many.

    Args:
        conn: a connection or pool of a role that has ``pymem_app``.
        user_id: the tenant's application user id.
        updates: one :class:`ChunkUpdate` per chunk (at most 10,000; each id once).

    Raises:
        ValueError: no updates, an id twice, an update that changes nothing, or a new
            value that is invalid (nothing is read or written then).
        ChunkNotFound: an id the tenant has no chunk for (nothing written).
        psycopg.errors.SerializationFailure: the chunks kept changing under other
            writers for :data:`ATTEMPTS` reads (nothing written).
        InvalidTag: a stored chunk does not open: fail closed.
    """
    items = _checked(updates)
    user_hash = hmac_user(user_id)
    index = keyring().tenant_index(user_hash)
    settings = get_settings()
    language = term_language(settings)
    async with borrow(conn) as conn:
        dim, half = await _embedding_shape(conn)
        for attempt in range(1, ATTEMPTS + 1):
            wanted = {u.id: index.row_ids(u.id) for u in items}
            rows, keys = await _get_rows(conn, user_hash, [r for ids in wanted.values() for r in ids])
            by_row = {row[0]: row for row in rows}
            current = []
            for update in items:
                row = next((by_row[r] for r in wanted[update.id] if r in by_row), None)
                opened = None if row is None else open_row(user_hash, row, keys)
                if opened is None or opened.external_id != update.id:
                    raise ChunkNotFound("an id of this update is not one of the tenant's chunks; nothing was written")
                if row[0] != index.row_id(update.id) and row[9] is not None:
                    raise ValueError("a chunk stored before revision 0015 under its UUID: upsert it once, then update")
                current.append((update, row, opened))
            write_keys = await keys_for_writing(conn, user_hash)
            key_id = data_key_id(write_keys.current)
            sealed = [seal_row(user_hash, index, _merged(update, opened, row), dim,
                               settings.max_text_bytes, write_keys, key_id, keep_row_id=opened.id,
                               term_language=language, half=half)
                      for update, row, opened in current]
            try:
                async with tenant_transaction(conn, user_hash):
                    await write_sealed_rows(conn, user_hash, index, sealed, key_id, upsert=True,
                                            read=[row for _, row, _ in current])
                return len(sealed)
            except psycopg.errors.SerializationFailure:
                if attempt == ATTEMPTS:
                    raise
            except psycopg.errors.ObjectNotInPrerequisiteState:
                forget(user_hash)  # the cached write key was destroyed meanwhile (see repository._write)
                if attempt == ATTEMPTS:
                    raise
    raise AssertionError("unreachable")


def _checked(updates: Sequence[ChunkUpdate]) -> list[ChunkUpdate]:
    if isinstance(updates, (str, bytes, ChunkUpdate)) or not isinstance(updates, Sequence):
        raise ValueError("updates must be a list of ChunkUpdate")
    items = list(updates)
    if not 1 <= len(items) <= MAX_IDS:
        raise ValueError(f"give between 1 and {MAX_IDS} updates")
    if not all(isinstance(u, ChunkUpdate) for u in items):
        raise ValueError("updates must be ChunkUpdate objects")
    if any(not isinstance(u.id, str) or not u.id for u in items):
        raise ValueError("each update names a chunk by its id (a non-empty str)")
    if len({u.id for u in items}) != len(items):
        raise ValueError("an id appears twice in one update")
    if any(u.text is None and u.metadata is None and u.embedding is None and u.doc_id is None and u.source is None
           and u.expires_at is None and u.ttl is None for u in items):
        raise ValueError("an update must change at least one field")
    for update in items:  # before anything is read
        expiry_of(update.expires_at, update.ttl)
    return items


def _merged(update: ChunkUpdate, opened, row) -> ChunkInput:
    """The chunk as it will be: the update's fields where given, the opened row's elsewhere.
    A row without a caller id (``ref_cipher``) keeps its generated id (``keep_row_id``)."""
    has_caller_id = row[9] is not None
    new_expiry = update.expires_at is not None or update.ttl is not None
    return ChunkInput(
        doc_id=opened.doc_id if update.doc_id is None else update.doc_id,
        source=opened.source if update.source is None else update.source,
        text=opened.text if update.text is None else update.text,
        embedding=opened.embedding if update.embedding is None else update.embedding,
        metadata=opened.metadata if update.metadata is None else update.metadata,
        id=opened.external_id if has_caller_id else None,
        # Its own expiry is the one its AAD (v3) bound; a v2 row has none, whatever the table says.
        expires_at=update.expires_at if new_expiry else RowTimes.of(row).expires_at if row[7] == 3 else None,
        ttl=update.ttl)
