"""A12 and A13 of the second attack round: bad input from the app's own caller is
refused with ValueError before any work, and key bytes do not outlive an error.

Each limit is checked by counting, before a single value is hashed: the tests count
the hashes made (by wrapping the real HMAC helper, whose results are unchanged).
"""

from __future__ import annotations

import base64
import os

import pytest

from pymem.blind_index import MAX_FILTER_DEPTH, MAX_FILTER_TAGS, MAX_ROW_TAGS, TenantIndex, index_master_key
from pymem.config import KeyMaterial
from pymem.security import KeyRing


@pytest.fixture
def index() -> TenantIndex:
    return TenantIndex(index_master_key(os.urandom(32)), "a" * 64)


@pytest.fixture
def hashes(monkeypatch) -> list[int]:
    """How many tags were computed (the real computation, counted)."""
    made = [0]
    real = TenantIndex._tag

    def counted(self, key, value):
        made[0] += 1
        return real(self, key, value)

    monkeypatch.setattr(TenantIndex, "_tag", counted)
    return made


def _nested(depth: int) -> dict:
    where: dict = {"k": 1}
    for _ in range(depth - 1):
        where = {"$and": [where]}
    return where


def test_a_filter_nested_3000_deep_is_refused_with_value_error(index, hashes, second_round):
    with pytest.raises(ValueError, match="nests \\$and and \\$or at most"):
        index.compile_filter(_nested(3000))
    assert hashes[0] == 0
    assert index.compile_filter(_nested(MAX_FILTER_DEPTH))[1] == [1]  # the limit itself is allowed
    second_round("A12: a filter nested 3,000 deep")


def test_an_in_list_over_the_limit_is_refused_before_any_value_is_hashed(index, hashes, second_round):
    with pytest.raises(ValueError, match="at most"):
        index.compile_filter({"k": {"$in": list(range(300_000))}})
    with pytest.raises(ValueError, match="at most"):
        index.compile_filter({"$and": [{f"k{i}": {"$in": list(range(MAX_FILTER_TAGS // 2 + 1))}} for i in range(2)]})
    assert hashes[0] == 0
    second_round("A12: 300,000 values hashed before the limit")


@pytest.mark.parametrize("operand", [b"\x01", "ab", bytearray(b"\x01"), range(3), {1: 2}.keys()])
def test_an_in_operand_that_is_not_a_list_is_refused(index, operand):
    with pytest.raises(ValueError, match="\\$in on 'k' takes a non-empty list"):
        index.compile_filter({"k": {"$in": operand}})


def test_and_takes_a_list_only(index):
    with pytest.raises(ValueError, match="\\$and takes a non-empty list"):
        index.compile_filter({"$and": b"\x01"})


def test_metadata_with_more_filterable_values_than_a_row_holds_is_refused_before_hashing(index, hashes):
    with pytest.raises(ValueError, match=f"at most {MAX_ROW_TAGS} filterable values"):
        index.metadata_tags({"tags": list(range(5_000))})
    assert hashes[0] == 0
    # With its key tag and the key-tag marker (0022), a row holds MAX_ROW_TAGS tags at most ...
    assert len(index.metadata_tags({"tags": list(range(MAX_ROW_TAGS - 2))})) == 16 * MAX_ROW_TAGS
    # ... and one whose values alone reach it, as revision 0021 allowed, gets its value tags only:
    # it is still written, filtered, updated and re-keyed, and $exists finds it in neither form.
    assert len(index.metadata_tags({"tags": list(range(MAX_ROW_TAGS))})) == 16 * MAX_ROW_TAGS
    tags, ends = index.compile_filter({"tags": {"$exists": False}})
    assert not index.satisfies({"tags": list(range(MAX_ROW_TAGS))}, tags, ends)
    assert not index.satisfies({"other": 1}, tags, ends, key_tags=False)  # sealed before 0022: no marker
    assert index.satisfies({"other": 1}, tags, ends)


def test_a_malformed_old_key_leaves_no_key_bytes_in_the_errors_frames(second_round):
    """A13: error reporters capture frames' local variables; the active key must not be among them."""
    key = os.urandom(32)
    material = KeyMaterial(encryption_key=base64.b64encode(key).decode(), encryption_key_id="1",
                           old_encryption_keys="2:not base64!", tenant_hmac_key=base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(ValueError, match="entry 1 is not valid base64") as caught:
        KeyRing.from_material(material)
    frames, tb = [], caught.value.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    pymem_frames = [frame for frame in frames if "/pymem/" in frame.f_code.co_filename]
    assert len(pymem_frames) >= 3  # the frames are there, only emptied
    held = [(frame.f_code.co_name, name) for frame in pymem_frames
            for name, value in list(frame.f_locals.items())
            if isinstance(value, (bytes, bytearray)) and key in bytes(value)
            or isinstance(value, dict) and key in value.values()]
    assert held == []
    second_round("A13: key bytes in a traceback's frames")
