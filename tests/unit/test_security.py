"""pymem.security: sealing, AAD binding, tamper detection, keys, HMAC, known answers.

Real cryptography throughout; keys are generated per test, never fixed in the repo
(the known-answer vector's key is a published test constant, not a deployment key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from pymem import security
from pymem.security import (
    KeyRing,
    UnknownKeyId,
    chunk_aad,
    generate_key,
    hmac_user,
    open_sealed,
    reload_keys,
    seal,
)
from tests.utils import DATA_DIR


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.fixture
def ring(keys):
    """A fresh ring: active key id 2, old key id 1, and an HMAC key (their values in keys.variables)."""
    return keys.ring(2, {1: generate_key(), 2: generate_key()}, hmac_key=generate_key())


class TestSealRoundTrip:
    def test_round_trip(self, ring, keys):
        assert open_sealed(seal(b"hello", b"aad"), b"aad") == b"hello"

    def test_empty_plaintext(self, ring, keys):
        blob = seal(b"")
        assert len(blob) == 28
        assert open_sealed(blob) == b""

    def test_one_mebibyte(self, ring, keys):
        payload = os.urandom(1 << 20)
        assert open_sealed(seal(payload, b"big"), b"big") == payload

    def test_layout_is_nonce_ciphertext_tag(self, ring, keys):
        blob = seal(b"x" * 100, b"a")
        assert len(blob) == 12 + 100 + 16
        aead = AESGCM(base64.b64decode(keys.variables["MEMORY_ENCRYPTION_KEY"]))
        assert aead.decrypt(blob[:12], blob[12:], b"a") == b"x" * 100

    def test_nonces_are_fresh(self, ring, keys):
        blobs = {seal(b"same", b"same")[:12] for _ in range(1000)}
        assert len(blobs) == 1000

    def test_old_key_still_opens(self, ring, keys):
        blob = seal(b"sealed under key 1", key_id=1)
        assert open_sealed(blob, key_id=1) == b"sealed under key 1"
        with pytest.raises(InvalidTag):
            open_sealed(blob)  # the active key (2) is a different key

    @settings(max_examples=200, deadline=None)
    @given(plaintext=st.binary(max_size=4096), aad=st.binary(max_size=256))
    def test_property_round_trip(self, plaintext, aad):
        # keys come from conftest's session environment; the property needs no fixture
        assert open_sealed(seal(plaintext, aad), aad) == plaintext


class TestAADBinding:
    def test_seal_aad_binding(self, ring, keys):
        """The seed's critical test: AAD mismatch prevents cross-tenant decryption."""
        encrypted = seal(b"tenant A secret", aad=b"user_hash_a")
        with pytest.raises(InvalidTag):
            open_sealed(encrypted, aad=b"user_hash_b")

    def test_missing_aad_fails(self, ring, keys):
        with pytest.raises(InvalidTag):
            open_sealed(seal(b"x", b"bound"))

    def test_unexpected_aad_fails(self, ring, keys):
        with pytest.raises(InvalidTag):
            open_sealed(seal(b"x"), b"bound")

    @pytest.mark.parametrize("other", [
        ("b" * 64, "00000000-0000-0000-0000-000000000001", "text"),  # other tenant
        ("a" * 64, "00000000-0000-0000-0000-000000000002", "text"),  # other row
        ("a" * 64, "00000000-0000-0000-0000-000000000001", "meta"),  # other field
    ], ids=["tenant", "row", "field"])
    def test_chunk_aad_binds_tenant_row_and_field(self, ring, keys, other):
        blob = seal(b"x", chunk_aad("a" * 64, "00000000-0000-0000-0000-000000000001", "text"))
        with pytest.raises(InvalidTag):
            open_sealed(blob, chunk_aad(*other))

    def test_chunk_aad_layout(self):
        assert chunk_aad("ab", "id", "text") == b"pymem:v1|ab|id|text"
        assert chunk_aad("ab", "id", "text", ("d|1", "sé")) == b"pymem:v2|ab|id|text|3:d|1|3:s\xc3\xa9"

    def test_chunk_aad_v2_labels_cannot_be_shifted(self):
        # Length prefixes: moving a separator between doc_id and source changes the AAD.
        assert chunk_aad("ab", "id", "text", ("a|1:b", "")) != chunk_aad("ab", "id", "text", ("a", "b"))

    def test_relabelled_v2_blob_fails(self, ring, keys):
        blob = seal(b"x", chunk_aad("a" * 64, "id", "text", ("doc", "src")))
        with pytest.raises(InvalidTag):
            open_sealed(blob, chunk_aad("a" * 64, "id", "text", ("other-doc", "src")))


class TestTamperDetection:
    def test_every_single_bit_flip_fails(self, ring, keys):
        blob = seal(b"sample plaintext", b"aad")
        for bit in range(len(blob) * 8):
            flipped = bytearray(blob)
            flipped[bit // 8] ^= 1 << (bit % 8)
            with pytest.raises(InvalidTag):
                open_sealed(bytes(flipped), b"aad")

    def test_truncated_blob_fails(self, ring, keys):
        blob = seal(b"sample plaintext", b"aad")
        for length in range(len(blob)):
            with pytest.raises(InvalidTag):
                open_sealed(blob[:length], b"aad")

    @pytest.mark.parametrize("suffix", [b"\x00", b"\xff" * 16])
    def test_extended_blob_fails(self, ring, keys, suffix):
        with pytest.raises(InvalidTag):
            open_sealed(seal(b"sample", b"aad") + suffix, b"aad")

    def test_wrong_key_fails(self, ring, keys):
        blob = seal(b"x")
        with pytest.raises(InvalidTag):
            AESGCM(AESGCM.generate_key(256)).decrypt(blob[:12], blob[12:], b"")

    def test_unknown_key_id_fails(self, ring, keys):
        with pytest.raises(UnknownKeyId, match="key id 7"):
            open_sealed(seal(b"x"), key_id=7)


class TestKeys:
    def test_missing_key_raises(self, keys):
        keys.only(MEMORY_TENANT_HMAC_KEY=generate_key())
        with pytest.raises(ValueError, match="MEMORY_ENCRYPTION_KEY is not set"):
            reload_keys()

    def test_missing_hmac_key_raises(self, keys):
        keys.only(MEMORY_ENCRYPTION_KEY=generate_key())
        with pytest.raises(ValueError, match="MEMORY_TENANT_HMAC_KEY is not set"):
            reload_keys()

    @pytest.mark.parametrize("value,message", [
        ("not base64 at all!", "not valid base64"),
        (b64(os.urandom(16)), "exactly 32 bytes, got 16"),
        (b64(os.urandom(31)), "exactly 32 bytes, got 31"),
        (b64(os.urandom(64)), "exactly 32 bytes, got 64"),
        ("   ", "is not set"),
    ], ids=["malformed", "short16", "short31", "long", "blank"])
    def test_bad_keys_fail_closed(self, keys, value, message):
        keys.only(MEMORY_ENCRYPTION_KEY=value, MEMORY_TENANT_HMAC_KEY=generate_key())
        with pytest.raises(ValueError, match=message) as info:
            reload_keys()
        assert value.strip() == "" or value not in str(info.value)

    def test_failed_load_leaves_nothing_usable(self, keys):
        keys.only()
        with pytest.raises(ValueError):
            reload_keys()
        with pytest.raises(ValueError):
            seal(b"no plaintext fallback")
        with pytest.raises(ValueError):
            hmac_user("someone")

    def test_errors_never_contain_key_material(self, keys):
        secret = generate_key()
        keys.only(MEMORY_ENCRYPTION_KEY=generate_key(),
                 MEMORY_ENCRYPTION_OLD_KEYS=f"3:{secret[:-4]}", MEMORY_TENANT_HMAC_KEY=generate_key())
        with pytest.raises(ValueError) as info:
            reload_keys()
        assert secret[:10] not in str(info.value) and "entry 1" in str(info.value)

    def test_old_keys_format(self, ring, keys):
        ring = security.keyring()
        assert ring.active_key_id == 2 and ring.key_ids == [1, 2]

    @pytest.mark.parametrize("old,message", [
        ("1", "malformed"),
        ("x:" + generate_key(), "positive integer"),
        ("0:" + generate_key(), "positive integer"),
        (f"4:{generate_key()},4:{generate_key()}", "twice"),
    ], ids=["no-colon", "bad-id", "zero-id", "duplicate"])
    def test_bad_old_keys(self, keys, old, message):
        keys.only(MEMORY_ENCRYPTION_KEY=generate_key(), MEMORY_ENCRYPTION_OLD_KEYS=old,
                 MEMORY_TENANT_HMAC_KEY=generate_key())
        with pytest.raises(ValueError, match=message):
            reload_keys()

    def test_hmac_key_must_differ_from_encryption_key(self, keys):
        same = generate_key()
        keys.only(MEMORY_ENCRYPTION_KEY=same, MEMORY_TENANT_HMAC_KEY=same)
        with pytest.raises(ValueError, match="must differ"):
            reload_keys()

    def test_repr_shows_ids_only(self, ring, keys):
        text = repr(security.keyring())
        assert text == "KeyRing(active_key_id=2, key_ids=[1, 2])"
        for value in keys.variables.values():
            assert len(value) < 40 or value not in text

    def test_generate_key_is_32_random_bytes(self):
        first, second = generate_key(), generate_key()
        assert len(base64.b64decode(first, validate=True)) == 32 and first != second

    def test_ring_rejects_active_id_without_key(self):
        with pytest.raises(ValueError):
            KeyRing(5, {1: os.urandom(32)}, os.urandom(32))


class TestHmacUser:
    def test_is_64_lowercase_hex(self, ring, keys):
        value = hmac_user("user-1")
        assert len(value) == 64 and int(value, 16) >= 0 and value == value.lower()

    def test_matches_reference_hmac(self, ring, keys):
        key = base64.b64decode(keys.variables["MEMORY_TENANT_HMAC_KEY"])
        assert hmac_user("ünïcode") == hmac.new(key, "ünïcode".encode(), hashlib.sha256).hexdigest()

    def test_deterministic_and_distinct(self, ring, keys):
        assert hmac_user("a") == hmac_user("a") != hmac_user("b")

    @pytest.mark.parametrize("bad", ["", None, 42, b"bytes"])
    def test_bad_user_id(self, ring, keys, bad):
        with pytest.raises(ValueError, match="non-empty str"):
            hmac_user(bad)


class TestKnownAnswers:
    @pytest.mark.parametrize("vector", json.loads((DATA_DIR / "gcm_vectors.json").read_text())["vectors"],
                             ids=lambda v: v["name"])
    def test_nist_gcm_vector_through_the_primitive(self, vector):
        aead = AESGCM(bytes.fromhex(vector["key"]))
        out = aead.encrypt(bytes.fromhex(vector["iv"]), bytes.fromhex(vector["pt"]), bytes.fromhex(vector["aad"]))
        assert out.hex() == vector["ct"] + vector["tag"]

    def test_seal_format_known_answer(self, keys, monkeypatch):
        """The real seal() with the published test key and the nonce injected here only."""
        kat = json.loads((DATA_DIR / "seal_kat.json").read_text())
        keys.only(MEMORY_ENCRYPTION_KEY=kat["key_b64"], MEMORY_TENANT_HMAC_KEY=generate_key())
        reload_keys()
        monkeypatch.setattr(security, "_urandom", lambda n: bytes.fromhex(kat["nonce"]))
        blob = seal(bytes.fromhex(kat["plaintext"]), bytes.fromhex(kat["aad"]))
        assert blob.hex() == kat["blob"]
        assert open_sealed(blob, bytes.fromhex(kat["aad"])) == bytes.fromhex(kat["plaintext"])
        monkeypatch.undo()
        reload_keys()


def test_a_tenants_data_key_opens_only_whole_blobs_under_its_own_version():
    """TenantKeys.open inlines open_with (it runs for every sealed field): the same failures."""
    from pymem.errors import KeyDestroyed
    from pymem.tenant_keys import TenantKeys

    keys = TenantKeys("a" * 64, 2, 3, frozenset({1}), {-2: AESGCM(os.urandom(32)), -3: AESGCM(os.urandom(32))})
    blob = keys.seal(-2, b"sample plaintext", b"aad")
    assert keys.open(-2, blob, b"aad") == b"sample plaintext"
    for length in range(len(blob)):
        with pytest.raises(InvalidTag):
            keys.open(-2, blob[:length], b"aad")
    with pytest.raises(InvalidTag):
        keys.open(-3, blob, b"aad")  # another live version of the same tenant
    with pytest.raises(KeyDestroyed, match="destroyed"):
        keys.open(-1, blob, b"aad")
    with pytest.raises(KeyDestroyed, match="no record"):
        keys.open(-4, blob, b"aad")
