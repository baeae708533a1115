"""Every exception pymem raises on purpose, under one base class.

Catch :class:`PymemError` for "pymem refused or could not do this". Each class also
derives from the built-in exception it has always been (``ValueError`` for bad
input and configuration, ``RuntimeError`` for state, ``ImportError`` for a missing
extra), so existing ``except ValueError`` code keeps working.

Errors from elsewhere pass through unchanged: psycopg's ``psycopg.Error`` for what
the database refused (its ``sqlstate`` says why: ``42501`` insufficient privilege
for a tenant or intent check, ``22023`` a bad argument), and
``cryptography.exceptions.InvalidTag`` for a blob that does not open (a wrong key,
a wrong AAD or tampering look the same, on purpose), except where pymem knows
more: :class:`KeyDestroyed` (the tenant's key was destroyed) and
:class:`WrappedKeyInvalid` (a wrapped data key was changed) are InvalidTags too.

No message carries a key, a plaintext, a raw user id or a parameter value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from cryptography.exceptions import InvalidTag


class PymemError(Exception):
    """Base class of the errors pymem raises itself."""


class ConfigurationError(PymemError, ValueError):
    """A setting or key is missing or malformed; the message names the variable, never its value."""


class MissingExtra(PymemError, ImportError):
    """A feature was used without the extra that installs it; the message names the extra."""


class ChecksumMismatch(PymemError, RuntimeError):
    """A SQL file a database would run differs from its recorded sha256, or has none."""


class MigrationRefused(PymemError, RuntimeError):
    """A migration was asked for something the database cannot become (another embedding dimension)."""


class PgvectorMissing(PymemError, RuntimeError):
    """The database has no pgvector: it has not been migrated."""


class NotReady(PymemError, RuntimeError):
    """The database is not ready for the operation: it cannot be distributed yet (no
    Citus, no workers, old schema), or another run of the command holds its lock."""


class StandbyBehind(PymemError, RuntimeError):
    """The standby had not replayed the read intent within the wait."""


class DuplicateId(PymemError, ValueError):
    """An insert named an id the tenant already has (upsert replaces it instead)."""


class UnknownKeyId(PymemError, ValueError):
    """A blob names a key id that is neither active nor among the old keys."""


class EmbeddingMismatch(PymemError, InvalidTag):
    """A row's searchable plaintext embedding differs from its sealed copy (tampering).

    A subclass of :class:`InvalidTag`, so code that fails closed on tampering
    catches both.
    """


class TamperedRow(PymemError, InvalidTag):
    """A row the database returned is not what was asked for: it fails the filter the
    search was for once opened, does not hold the query terms the database said it holds
    (hybrid search), or a row with a keyed id lost its sealed caller id.

    A subclass of :class:`InvalidTag`, like :class:`EmbeddingMismatch`: fail closed.
    """


class ChunkNotFound(PymemError, LookupError):
    """An update named a chunk the tenant does not have; nothing was written."""


class ModelFileError(PymemError, RuntimeError):
    """An export directory is unusable (unreadable JSON, missing or changed files)."""


class ExportError(PymemError, RuntimeError):
    """A model export cannot proceed; the message says why and what to do."""


class RerankError(PymemError, RuntimeError):
    """Base class of reranker errors."""


class ModelUnavailableError(RerankError, ModelFileError):
    """No usable exported model (missing files, bad manifest, checksum mismatch)."""


class DeviceUnavailableError(RerankError):
    """``PYMEM_RERANK_DEVICE=cuda`` but ONNX Runtime cannot run on CUDA here."""


class RerankCancelled(RerankError):
    """The run was stopped through ``RunOptions.terminate`` (its deadline passed)."""


class KeyDestroyed(PymemError, InvalidTag):
    """A row is sealed under a tenant data key that was destroyed (``erase_user``), or
    that the database has no record of: a copy of an erased tenant's rows put back.

    A subclass of :class:`InvalidTag`: such a row never opens, and fails closed.
    """


class WrappedKeyInvalid(PymemError, InvalidTag):
    """A wrapped data key does not unwrap for its tenant and version under its root
    key: it was changed or moved from another tenant in the database. Fails closed."""


class RootKeyUnavailable(PymemError, RuntimeError):
    """The root key a data key is wrapped under cannot be used: its provider is down
    or unreachable, or the key is not (or no longer) configured there. Tenants whose
    data keys are cached keep working; the message names the root key, never a key."""


class CommitUnknown(PymemError, psycopg.OperationalError):
    """The connection failed after a write's ``COMMIT`` was sent: the batch may be stored
    whole, or not at all (never in part).

    ``chunks`` holds the batch as it was written: every chunk with the id it was
    written under (pymem's generated ids included) and its expiry as an absolute
    time. Retrying with :func:`pymem.upsert_memory_chunks` (``chunks=error.chunks``) is
    safe whichever happened: a chunk that was stored is replaced by the same chunk, one
    that was not is written, and nothing is stored twice. Retry at once: the retry writes
    the batch again, so a chunk deleted in between (``delete_document``, ``erase_user``)
    would be stored again. Retrying the original
    ``index_memory_chunks`` call instead would raise ``DuplicateId`` for a batch that
    was stored, or store a second copy of chunks that had no id.

    A subclass of ``psycopg.OperationalError``, as the connection error it replaces.
    """

    def __init__(self, message: str, chunks: Sequence[Any]):
        super().__init__(message)
        self.chunks = list(chunks)
