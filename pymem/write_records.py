"""Write records: the 32-byte MAC of each row as written (revision 0016).

A write record is HMAC-SHA256 under the tenant's blind-index key
(:meth:`pymem.blind_index.TenantIndex.write_record`, domain ``b"write\x00"``) of
:func:`row_bytes`: every stored field a read opens or checks, length-prefixed.
``write_chunks`` and ``rekey_chunks_v2`` keep the records in the write's audit
row; :mod:`pymem.freshness` checks live rows against them.
"""

from __future__ import annotations

import datetime as dt
import struct
import uuid

from .blind_index import TenantIndex
from .chunks import SealedRow
from .security import expiry_label

RECORD_BYTES = 32
DIRECT_DML_RECORD = bytes(RECORD_BYTES)  # what audit_direct_write records


def row_bytes(row_id: uuid.UUID, doc_id: str, source: str, text_cipher: bytes, meta_cipher: bytes,
              emb_cipher: bytes, ref_cipher: bytes | None, key_id: int, aad_version: int,
              expires_at: dt.datetime | None = None) -> bytes:
    """A written row as its write record covers it: every stored field a read opens or
    checks, each length-prefixed (so no two rows encode alike); ``ref_cipher`` absent
    and empty differ. A row sealed with AAD v3 (revision 0022) adds its expiry
    (:func:`pymem.security.expiry_label`), so that one changed in the table, which hides the
    row from every read once past, is reported by ``pymem verify-rows``."""
    parts = [row_id.bytes, doc_id.encode("utf-8"), source.encode("utf-8"), bytes(text_cipher),
             bytes(meta_cipher), bytes(emb_cipher),
             b"\x00" if ref_cipher is None else b"\x01" + bytes(ref_cipher),
             struct.pack(">iH", key_id, aad_version)]
    if aad_version == 3:
        parts.append(expiry_label(expires_at).encode("ascii"))
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def sealed_record(index: TenantIndex, row: SealedRow, key_id: int, aad_version: int) -> bytes:
    """The write record of a row about to be written."""
    return index.write_record(row_bytes(row.id, row.doc_id, row.source, row.text_cipher, row.meta_cipher,
                                        row.emb_cipher, row.ref_cipher, key_id, aad_version, row.expires_at))


def stored_record(index: TenantIndex, row: tuple) -> bytes:
    """The write record a row read back (a v3 read's columns, :mod:`pymem.chunks`: its expiry
    last) should have."""
    row_id, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id, aad_version, _, ref_cipher = row[:10]
    return index.write_record(row_bytes(row_id, doc_id, source, text_cipher, meta_cipher, emb_cipher, ref_cipher,
                                        key_id, aad_version, row[-1] if aad_version == 3 else None))
