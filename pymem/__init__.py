"""pymem: an encrypted, multi-tenant memory store for AI applications, built around Postgres.

Installed as the ``pymem-store`` distribution (PyPI's ``pymem`` is another project).

The store (coroutines; :mod:`pymem.sync` has the same functions for sync code)::

    index_memory_chunk, index_memory_chunks, upsert_memory_chunks, query_memory,
    get_memory_chunks, get_chunk, list_memory_chunks, open_embedding,
    delete_memory_chunks, delete_document, erase_user

Keys and sealing: :func:`hmac_user`, :func:`seal`, :func:`open_sealed`,
:func:`generate_key`, :class:`KeyRing`; each tenant's rows are sealed under data keys
of its own (:mod:`pymem.tenant_keys`), wrapped by a root key (:mod:`pymem.root_keys`). Tenant transactions: :func:`set_rls_context`.
Connections and pool hooks: :func:`connect`, :func:`aconnect`, :func:`configure`,
:func:`check`, :func:`reset`. Errors: :mod:`pymem.errors` (every class is here too). Reranking:
:mod:`pymem.rerank` (needs the ``rerank`` or ``gpu`` extra).

The docs, by reader, are in the repository's ``docs/``.
"""

__version__ = "0.1.0"

from .chunks import ChunkInput
from .connections import check, configure, reset
from .db import aconnect, connect
from .errors import (
    ChecksumMismatch,
    ChunkNotFound,
    CommitUnknown,
    ConfigurationError,
    DeviceUnavailableError,
    DuplicateId,
    EmbeddingMismatch,
    ExportError,
    KeyDestroyed,
    MigrationRefused,
    MissingExtra,
    ModelFileError,
    ModelUnavailableError,
    NotReady,
    PgvectorMissing,
    PymemError,
    RerankCancelled,
    RerankError,
    RootKeyUnavailable,
    StandbyBehind,
    TamperedRow,
    UnknownKeyId,
    WrappedKeyInvalid,
)
from .repository import (
    MemoryHit,
    MemoryPage,
    delete_document,
    delete_memory_chunks,
    erase_user,
    get_chunk,
    get_memory_chunks,
    index_memory_chunk,
    index_memory_chunks,
    list_memory_chunks,
    open_embedding,
    query_memory,
    upsert_memory_chunks,
)
from .security import KeyRing, generate_key, hmac_user, open_sealed, seal
from .partial_update import ChunkUpdate, update_memory_chunks
from .lifecycle import TimeWindow, purge_expired_chunks
from .term_backfill import index_memory_terms
from .tenant import set_rls_context

__all__ = [
    "ChecksumMismatch", "ChunkInput", "ChunkNotFound", "ChunkUpdate", "CommitUnknown", "ConfigurationError",
    "DeviceUnavailableError", "DuplicateId", "EmbeddingMismatch", "ExportError", "KeyDestroyed", "KeyRing",
    "MemoryHit", "MemoryPage", "MigrationRefused", "MissingExtra", "ModelFileError", "ModelUnavailableError",
    "NotReady", "PgvectorMissing", "PymemError", "RerankCancelled", "RerankError", "RootKeyUnavailable",
    "StandbyBehind", "TamperedRow", "TimeWindow", "UnknownKeyId", "WrappedKeyInvalid", "__version__", "aconnect", "check", "configure",
    "connect", "delete_document", "delete_memory_chunks", "erase_user", "generate_key", "get_chunk",
    "get_memory_chunks", "hmac_user", "index_memory_chunk", "index_memory_chunks", "index_memory_terms",
    "list_memory_chunks", "open_embedding", "open_sealed", "purge_expired_chunks", "query_memory", "reset", "seal",
    "set_rls_context", "update_memory_chunks", "upsert_memory_chunks",
]
