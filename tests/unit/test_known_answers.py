"""Known answers for every format pymem persists (tests/data/formats_kat.json).

The vectors come from tests/data/generate_kats.py, which computes them from the
documented layouts without pymem's code. Each test feeds the same inputs to pymem
and expects the same bytes: a changed HKDF info, prefix, separator or JSON form
would orphan every stored tenant hash, row id and tag, and fails here first.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime

import numpy as np
import pytest

from pymem.blind_index import TenantIndex, index_master_key
from pymem.chunks import ChunkInput, seal_row
from pymem.tenant_keys import TenantKeys
from pymem.security import chunk_aad, expiry_label, generate_key, hmac_user, open_sealed
from pymem.write_records import row_bytes
from tests.data import generate_kats
from tests.utils import DATA_DIR

KAT = json.loads((DATA_DIR / "formats_kat.json").read_text())
HMAC_KEY = bytes.fromhex(KAT["hmac_key_hex"])
INDEX = KAT["blind_index"]


@pytest.fixture
def kat_keys(keys):
    """The vectors' published HMAC key (and a random AES key) as this test's ring."""
    return keys.set(MEMORY_TENANT_HMAC_KEY=base64.b64encode(HMAC_KEY).decode(), MEMORY_ENCRYPTION_KEY=generate_key(),
                    MEMORY_ENCRYPTION_KEY_ID="1")


def test_the_generator_reproduces_the_committed_vectors():
    assert generate_kats.render() == (DATA_DIR / "formats_kat.json").read_text()


@pytest.mark.parametrize("case", KAT["hmac_user"], ids=lambda c: c["user_id"][:12])
def test_hmac_user_matches_its_known_answer(kat_keys, case):
    assert hmac_user(case["user_id"]) == case["user_hash"]


@pytest.mark.parametrize("case", KAT["aad"], ids=lambda c: f"{c['field']}-{'v2' if c['labels'] else 'v1'}")
def test_chunk_aad_matches_its_known_answer(case):
    labels = tuple(case["labels"]) if case["labels"] else None
    assert chunk_aad(case["user_hash"], case["chunk_id"], case["field"], labels).hex() == case["aad_hex"]


@pytest.mark.parametrize("case", KAT["aad_v3"], ids=lambda c: f"{c['field']}-v3-{c['expiry_label'] or 'none'}")
def test_aad_v3_binds_the_expiry_as_its_known_answer(case):
    at = None if case["expires_at"] is None else datetime.fromisoformat(case["expires_at"])
    assert expiry_label(at) == case["expiry_label"]
    aad = chunk_aad(case["user_hash"], case["chunk_id"], case["field"], tuple(case["labels"]), expiry_label(at))
    assert aad.hex() == case["aad_hex"]


def test_the_blind_index_master_key_matches_its_known_answer():
    assert index_master_key(HMAC_KEY).hex() == INDEX["master_key_hex"]


@pytest.mark.parametrize("case", INDEX["row_ids_v2"], ids=lambda c: c["external_id"][:16])
def test_row_ids_match_their_known_answers(case):
    """Since revision 0015 every caller id, a UUID too, is keyed."""
    index = TenantIndex(index_master_key(HMAC_KEY), case["user_hash"])
    assert str(index.row_id(case["external_id"])) == case["row_id"]


@pytest.mark.parametrize("case", INDEX["row_ids"], ids=lambda c: c["external_id"][:16])
def test_row_ids_stored_before_0015_are_still_looked_up(case):
    """A row stored under a released id is still found by it: a keyed one, or a caller's
    UUID as it was when that UUID is random (version 4); other UUIDs are not sent."""
    index = TenantIndex(index_master_key(HMAC_KEY), case["user_hash"])
    stored = uuid.UUID(case["row_id"])
    looked_up = case["row_id"] in [str(r) for r in index.row_ids(case["external_id"])]
    assert looked_up == (stored.version in (4, 8))


@pytest.mark.parametrize("case", INDEX["tags"], ids=lambda c: f"{c['key']}={c['value']!r}")
def test_metadata_tags_match_their_known_answers(case):
    """One key's row tags: its value's tag, its key tag and the marker (revision 0022)."""
    index = TenantIndex(index_master_key(HMAC_KEY), case["user_hash"])
    tags = index.metadata_tags({case["key"]: case["value"]})
    assert tags.hex() == case["row_tags_hex"]
    assert bytes.fromhex(case["tag_hex"]) in {tags[i:i + 16] for i in range(0, len(tags), 16)}


def test_a_rows_tags_are_sorted_and_concatenated():
    index = TenantIndex(index_master_key(HMAC_KEY), INDEX["tags"][0]["user_hash"])
    assert index.metadata_tags(INDEX["metadata"]).hex() == INDEX["metadata_tags_hex"]


def test_sealed_fields_hold_the_documented_plaintexts(kat_keys):
    """seal_row's blobs open (with their AAD v2) to exactly the documented plaintexts."""
    plain = KAT["sealed_plaintexts"]
    user_hash = KAT["hmac_user"][0]["user_hash"]
    index = kat_keys.tenant_index(user_hash)
    row = seal_row(user_hash, index, ChunkInput("doc-7", "chat", "ünï text", plain["embedding"], plain["metadata"],
                                                id="note-17"), dim=3, max_bytes=65536,
                   keys=TenantKeys(user_hash, None, 0), key_id=1)
    assert str(row.id) == next(c["row_id"] for c in INDEX["row_ids"] if c["external_id"] == "note-17")

    def opened(blob: bytes, field: str) -> bytes:  # AAD v3, no expiry
        return open_sealed(blob, chunk_aad(user_hash, str(row.id), field, ("doc-7", "chat"), ""), key_id=1)

    assert opened(row.text_cipher, "text") == "ünï text".encode("utf-8")
    assert opened(row.meta_cipher, "meta") == plain["metadata_json"].encode("ascii")
    assert opened(row.emb_cipher, "emb").hex() == plain["embedding_hex"]
    assert opened(row.ref_cipher, "ref") == b"note-17"
    assert np.array_equal(row.embedding, np.array(plain["embedding"], dtype="<f4"))
    assert isinstance(row.id, uuid.UUID) and row.tags.hex() == INDEX["metadata_tags_hex"]


@pytest.mark.parametrize("case", KAT["write_records"], ids=lambda c: f"{c['row']['id'][-4:]}-{c['row']['ref_hex']}")
def test_write_records_match_their_known_answers(case):
    """Since revision 0016: an absent and an empty caller-id ciphertext differ."""
    row = case["row"]
    index = TenantIndex(index_master_key(HMAC_KEY), case["user_hash"])
    encoded = row_bytes(uuid.UUID(row["id"]), row["doc_id"], row["source"], bytes.fromhex(row["text_hex"]),
                        bytes.fromhex(row["meta_hex"]), bytes.fromhex(row["emb_hex"]),
                        None if row["ref_hex"] is None else bytes.fromhex(row["ref_hex"]), row["key_id"],
                        row["aad_version"],
                        None if row.get("expires_at") is None else datetime.fromisoformat(row["expires_at"]))
    assert index.write_record(encoded).hex() == case["record_hex"]
