"""Write ``formats_kat.json``: known answers for every format pymem persists.

Run from the repository root: ``python -m tests.data.generate_kats``. The vectors
are computed here from the documented layouts with the standard library and
``cryptography``'s HKDF only, never with pymem's own functions, so that a silent
change to pymem's formats (an HKDF ``info``, a JSON separator, a prefix byte) fails
``tests/unit/test_known_answers.py`` instead of orphaning every stored id and tag.
A format that changes on purpose needs a new version of it (and a migration of the
stored data), not a regenerated file: released vectors never change.

Layouts (``docs/security.md`` has them for readers):

* ``hmac_user(user_id)``: hex of HMAC-SHA256(tenant HMAC key, UTF-8 of user_id).
* AAD v1: ``pymem:v1|<user_hash>|<chunk_id>|<field>``; v2 adds
  ``|<n>:<doc_id>|<m>:<source>``, n and m the labels' UTF-8 byte lengths.
* AAD v3 (revision 0022): v2's layout with a third label, the row's expiry: whole
  microseconds since 1970-01-01 UTC in decimal (negative before it), empty for none.
* Blind index: master key = HKDF-SHA256(tenant HMAC key, salt none, info
  ``pymem blind index v1``, 32 bytes); a tenant's key = HMAC-SHA256(master, ASCII
  of user_hash); a row id = the first 16 bytes of HMAC-SHA256(tenant key,
  ``id\\x00`` + UTF-8 of the caller id) with the UUID version set to 8 and the
  RFC 9562 variant; before revision 0015 (``row_ids``), a caller id that was a
  canonical UUID was the id itself; since (``row_ids_v2``) every caller id is keyed;
  a tag = the first 16 bytes of HMAC-SHA256(tenant key, ``meta\\x00`` + UTF-8 of
  the compact JSON ``[key, value]``, integral floats written as ints, non-ASCII
  kept); since revision 0022 also a key tag per top-level key = the first 16 bytes of
  HMAC-SHA256(tenant key, ``key\x00`` + UTF-8 of the key) and the marker = the first 16
  bytes of HMAC-SHA256(tenant key, ``keys\x00v1``); a row's tags (values, keys and the
  marker) are sorted and concatenated.
* Write record (revision 0016): HMAC-SHA256(tenant key, ``write\x00`` + the row's
  fields, each as a 4-byte big-endian length and its bytes: the row id's 16 bytes,
  doc_id and source in UTF-8, text, meta and emb ciphertexts, ``\x00`` for no
  ref ciphertext or ``\x01`` + it, then key id (int32) and AAD version (uint16),
  big-endian); for AAD v3 (revision 0022) then the expiry's label, as AAD v3 has it.
* Sealed fields' plaintexts: text as UTF-8; metadata as JSON with sorted keys and
  compact separators; the embedding as little-endian float32; a caller id as UTF-8.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from datetime import datetime, timezone
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

OUT = Path(__file__).with_name("formats_kat.json")
# A published test key (bytes 0x20..0x3f), never a deployment's.
HMAC_KEY = bytes(range(32, 64))


def hmac_user(user_id: str) -> str:
    return hmac.new(HMAC_KEY, user_id.encode("utf-8"), hashlib.sha256).hexdigest()


def aad(user_hash: str, chunk_id: str, field: str, labels: tuple[str, str] | None, expiry: str | None = None) -> bytes:
    version = b"pymem:v1" if labels is None else b"pymem:v2" if expiry is None else b"pymem:v3"
    parts = [version, user_hash.encode(), chunk_id.encode(), field.encode()]
    for label in [*(labels or ()), *([] if expiry is None else [expiry])]:
        data = label.encode("utf-8")
        parts.append(str(len(data)).encode() + b":" + data)
    return b"|".join(parts)


def expiry_label(expires_at: datetime | None) -> str:
    """Whole microseconds since 1970-01-01 UTC, in decimal; empty for none."""
    if expires_at is None:
        return ""
    delta = expires_at - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return str((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)


def master_key() -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"pymem blind index v1").derive(HMAC_KEY)


def tenant_key(user_hash: str) -> bytes:
    return hmac.new(master_key(), user_hash.encode("ascii"), hashlib.sha256).digest()


def row_id(user_hash: str, external_id: str) -> str:
    """The row id before revision 0015: a canonical UUID caller id as it is."""
    try:
        if str(uuid.UUID(external_id)) == external_id:
            return external_id
    except ValueError:
        pass
    return row_id_v2(user_hash, external_id)


def row_id_v2(user_hash: str, external_id: str) -> str:
    """The row id since revision 0015: every caller id keyed."""
    raw = bytearray(hmac.new(tenant_key(user_hash), b"id\x00" + external_id.encode("utf-8"), hashlib.sha256)
                    .digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80
    raw[8] = (raw[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(raw)))


def tag(user_hash: str, key: str, value) -> bytes:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    pair = json.dumps([key, value], separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hmac.new(tenant_key(user_hash), b"meta\x00" + pair.encode("utf-8"), hashlib.sha256).digest()[:16]


def key_tag(user_hash: str, key: str) -> bytes:
    return hmac.new(tenant_key(user_hash), b"key\x00" + key.encode("utf-8"), hashlib.sha256).digest()[:16]


def keys_marker(user_hash: str) -> bytes:
    return hmac.new(tenant_key(user_hash), b"keys\x00v1", hashlib.sha256).digest()[:16]


def row_tags(user_hash: str, metadata: dict, pairs) -> str:
    tags = {tag(user_hash, k, v) for k, v in pairs} | {key_tag(user_hash, k) for k in metadata}
    return b"".join(sorted(tags | {keys_marker(user_hash)})).hex()


def write_record(user_hash: str, row: dict) -> str:
    ref = b"\x00" if row["ref_hex"] is None else b"\x01" + bytes.fromhex(row["ref_hex"])
    parts = [uuid.UUID(row["id"]).bytes, row["doc_id"].encode("utf-8"), row["source"].encode("utf-8"),
             bytes.fromhex(row["text_hex"]), bytes.fromhex(row["meta_hex"]), bytes.fromhex(row["emb_hex"]), ref,
             struct.pack(">iH", row["key_id"], row["aad_version"])]
    if row["aad_version"] == 3:  # 0022: the expiry AAD v3 binds, as its label
        expires = row.get("expires_at")
        parts.append(expiry_label(None if expires is None else datetime.fromisoformat(expires)).encode("ascii"))
    encoded = b"".join(struct.pack(">I", len(p)) + p for p in parts)
    return hmac.new(tenant_key(user_hash), b"write\x00" + encoded, hashlib.sha256).hexdigest()


WRITTEN_ROWS = [
    {"id": "00000000-0000-0000-0000-000000000001", "doc_id": "doc-7", "source": "chat", "text_hex": "0102",
     "meta_hex": "03", "emb_hex": "0405", "ref_hex": None, "key_id": 1, "aad_version": 2},
    {"id": "00000000-0000-0000-0000-000000000001", "doc_id": "doc-7", "source": "chat", "text_hex": "0102",
     "meta_hex": "03", "emb_hex": "0405", "ref_hex": "", "key_id": 1, "aad_version": 2},
    {"id": "8f0e2d4c-6b1a-8c3e-9d5f-7a2b4c6d8e0f", "doc_id": "ünï", "source": "", "text_hex": "ff" * 40,
     "meta_hex": "", "emb_hex": "00", "ref_hex": "0a0b", "key_id": 70000, "aad_version": 1},
    {"id": "00000000-0000-0000-0000-000000000001", "doc_id": "doc-7", "source": "chat", "text_hex": "0102",
     "meta_hex": "03", "emb_hex": "0405", "ref_hex": None, "key_id": -1, "aad_version": 3,
     "expires_at": "2031-05-06T07:08:09.123456+00:00"},
    {"id": "00000000-0000-0000-0000-000000000001", "doc_id": "doc-7", "source": "chat", "text_hex": "0102",
     "meta_hex": "03", "emb_hex": "0405", "ref_hex": None, "key_id": -1, "aad_version": 3, "expires_at": None},
]


def vectors() -> dict:
    users = ["user-42", "ünïcode-ユーザー", "x" * 200]
    hashes_ = {u: hmac_user(u) for u in users}
    tenant = hashes_["user-42"]
    chunk = "00000000-0000-0000-0000-000000000001"
    metadata = {"project": "osprey", "page": 1.0, "draft": True, "owner": None, "tags": ["a", "b", 2],
                "nested": {"not": "tagged"}, "título": "ñ"}
    scalar_pairs = [(k, v) for k, value in metadata.items() if not isinstance(value, dict)
                    for v in (value if isinstance(value, list) else [value])]
    return {
        "note": "Generated by tests/data/generate_kats.py from the documented layouts; never edited.",
        "hmac_key_hex": HMAC_KEY.hex(),
        "hmac_user": [{"user_id": u, "user_hash": h} for u, h in hashes_.items()],
        "aad": [
            {"user_hash": tenant, "chunk_id": chunk, "field": field, "labels": labels,
             "aad_hex": aad(tenant, chunk, field, tuple(labels) if labels else None).hex()}
            for field, labels in [("text", None), ("meta", None), ("text", ["doc-7", "chat"]),
                                  ("emb", ["doc|7", "só|urce"]), ("ref", ["", ""]), ("meta", ["1:2", "3"])]
        ],
        "aad_v3": [
            {"user_hash": tenant, "chunk_id": chunk, "field": field, "labels": labels,
             "expires_at": None if at is None else at.isoformat(), "expiry_label": expiry_label(at),
             "aad_hex": aad(tenant, chunk, field, tuple(labels), expiry_label(at)).hex()}
            for field, labels, at in [("text", ["doc-7", "chat"], None),
                                      ("meta", ["doc-7", "chat"], datetime(2031, 5, 6, 7, 8, 9, 123456,
                                                                           tzinfo=timezone.utc)),
                                      ("ref", ["", ""], datetime(1969, 12, 31, 23, 59, 59, tzinfo=timezone.utc))]
        ],
        "blind_index": {
            "master_key_hex": master_key().hex(),
            "row_ids": [{"user_hash": tenant, "external_id": e, "row_id": row_id(tenant, e)}
                        for e in ["note-17", "ünï-id", "00000000-0000-0000-0000-00000000002a",
                                  "00000000-0000-0000-0000-00000000002A", "{00000000-0000-0000-0000-00000000002a}"]],
            "row_ids_v2": [{"user_hash": tenant, "external_id": e, "row_id": row_id_v2(tenant, e)}
                           for e in ["note-17", "00000000-0000-0000-0000-00000000002a",
                                     "c9b0e1c2-7a3f-5d3e-9a1b-2f4c6d8e0a1b"]],
            "tags": [{"user_hash": tenant, "key": k, "value": v, "tag_hex": tag(tenant, k, v).hex(),
                      "row_tags_hex": row_tags(tenant, {k: v}, [(k, v)])}
                     for k, v in scalar_pairs],
            "key_tags": [{"user_hash": tenant, "key": k, "tag_hex": key_tag(tenant, k).hex()} for k in metadata],
            "keys_marker_hex": keys_marker(tenant).hex(),
            "metadata": metadata,
            "metadata_tags_hex": row_tags(tenant, metadata, scalar_pairs),
        },
        "write_records": [{"user_hash": tenant, "row": row, "record_hex": write_record(tenant, row)}
                          for row in WRITTEN_ROWS],
        "sealed_plaintexts": {
            "metadata": metadata,
            "metadata_json": json.dumps(metadata, sort_keys=True, separators=(",", ":"), allow_nan=False),
            "embedding": [0.5, -1.25, 3.0],
            "embedding_hex": struct.pack("<3f", 0.5, -1.25, 3.0).hex(),
        },
    }


def render() -> str:
    return json.dumps(vectors(), indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
