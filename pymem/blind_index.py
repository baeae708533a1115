"""Blind indexes: caller ids and metadata filters the database evaluates without reading them.

Each tenant gets its own index key, derived in the client: the deployment's master
key is HKDF-SHA256(``MEMORY_TENANT_HMAC_KEY``, no salt, info ``pymem blind index
v1``, 32 bytes), independent of the tenant hashes made from the same key, and a
tenant's key is HMAC-SHA256(master key, the ASCII of its ``user_hash``). The
database never holds either. ``tests/data/formats_kat.json`` has known answers.

Ids
    A caller id, whatever it looks like, becomes the UUID made of the first 16 bytes
    of HMAC(tenant index key, ``b"id\\x00"`` + the id's UTF-8), with the version
    bits of a UUIDv8; the id itself is stored sealed (field ``ref``) so that reads
    return it. Equal ids of one tenant map to equal row ids, and two tenants' rows for
    the same id are unrelated; nothing the caller chose (a uuid1's MAC address and
    time, a uuid5 of the content) reaches the database. An id pymem generates is a
    random UUID stored as it is. Rows written before revision 0015 with a caller id
    that was a random (version 4) UUID keep it as their row id; lookups by such an id
    try both (:meth:`TenantIndex.row_ids`), and an upsert moves the row to its keyed
    id. Rows stored then under another version of UUID are found by searches and
    listings, not by their id (see docs/threat-model.md, A6).

Metadata tags
    Each top-level metadata key whose value is a scalar (str, int, float, bool,
    None), or a list of scalars (one tag per element), gets a 16-byte tag: the first
    16 bytes of HMAC(tenant index key, ``b"meta\\x00"`` + the UTF-8 of the compact
    JSON of ``[key, value]``). Integral floats are tagged as ints (``1.0`` matches
    ``1``); ``True`` does not match ``1``.
    Nested objects are stored (sealed) but not filterable.

Key tags (revision 0022)
    Each top-level metadata key, whatever its value, also gets a tag: the first 16 bytes
    of HMAC(tenant index key, ``b"key\x00"`` + the key's UTF-8), and every row written
    since carries the tenant's tag of ``b"keys\x00v1"``, which says that its key tags are
    there. Rows written before have neither until re-written.

Filters
    ``{"k": v}`` or ``{"k": {"$eq": v}}``: the key has the value (or, for a list, the
    value among its elements). ``{"k": {"$in": [v, ...]}}``: any of them.
    ``{"k": {"$ne": v}}``, ``{"k": {"$nin": [v, ...]}}``: none of them (a row without the
    key matches, ``$ne: None`` included). ``{"k": {"$exists": True}}``: the row has the key (any
    value); ``False``: it does not. ``{"$and": [f, ...]}`` and several keys in one
    mapping: all of them; ``{"$or": [f, ...]}``: any of them (each a positive condition).
    A filter compiles to clauses, each a set of tags of which a row must carry one, or,
    negated, none. ``$exists`` matches only rows that carry key tags (written since
    revision 0022): an older row is neither found by ``$exists: True`` nor by
    ``$exists: False`` until it is re-written.

Keyword terms
    The tag of a term of a row's text (hybrid search, :mod:`pymem.terms`): the first 16
    bytes of HMAC(tenant index key, ``b"term\\x00"`` + the scheme (the stemmer's language and
    release) + ``b"\\x00"`` + the term's UTF-8).

Write records
    Each row written gets a 32-byte record, HMAC(tenant index key, ``b"write\x00"`` +
    the row as written, :func:`pymem.write_records.row_bytes`), kept in the write's audit
    row; see :mod:`pymem.freshness`.

What the database can learn: which of one tenant's rows share a key-value pair
(equality patterns within a tenant), which share a key, how many filterable values and
keys each row has, and which rows a filter matched. Not the keys, the values, or
anything across tenants.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TAG_BYTES = 16
MAX_ID_BYTES = 256  # a caller id, in UTF-8
MAX_FILTER_CLAUSES = 64
MAX_FILTER_TAGS = 1024
MAX_FILTER_DEPTH = 8  # nested $and and $or


class _Budget:
    """The key conditions and values a filter has used of its limits, counted before any
    value is hashed."""

    def __init__(self) -> None:
        self.conditions = self.values = 0

    def add(self, values: int) -> None:
        self.conditions += 1
        self.values += values
        if self.conditions > MAX_FILTER_CLAUSES or self.values > MAX_FILTER_TAGS:
            raise ValueError(f"a filter has at most {MAX_FILTER_CLAUSES} conditions and {MAX_FILTER_TAGS} values")
_KEY_OPERATORS = "$eq, $ne, $in, $nin or $exists"
_OPERATORS = _KEY_OPERATORS + ", $and or $or"
_ANY = object()  # a clause value: the key itself ($exists)
_MARKER = object()  # a clause value: the key-tag marker, which rows written since 0022 carry
MAX_ROW_TAGS = 4096  # a row's tags: values, keys and the key-tag marker (meta_tags holds at most this many)
_SCALARS = (str, int, float, bool, type(None))


def index_master_key(hmac_key: bytes) -> bytes:
    """The deployment's blind-index master key, derived from the tenant HMAC key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"pymem blind index v1").derive(hmac_key)


def _canonical(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def check_external_id(external_id: Any) -> str:
    """Return a valid caller id (a non-empty str of at most MAX_ID_BYTES UTF-8 bytes, no NUL).

    Raises:
        ValueError: it is not (the message never contains the id).
    """
    if not isinstance(external_id, str) or external_id == "":
        raise ValueError("an id must be a non-empty str")
    if "\x00" in external_id:
        raise ValueError("an id must not contain NUL characters")
    try:
        size = len(external_id.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("an id is not valid Unicode (lone surrogates)") from None
    if size > MAX_ID_BYTES:
        raise ValueError(f"an id is longer than {MAX_ID_BYTES} bytes in UTF-8")
    return external_id


def uuid_id(external_id: str) -> uuid.UUID | None:
    """The UUID a canonical UUID string stands for, else None."""
    try:
        parsed = uuid.UUID(external_id)
    except ValueError:
        return None
    return parsed if str(parsed) == external_id else None


class TenantIndex:
    """One tenant's blind index: row ids for caller ids, tags for metadata and filters."""

    __slots__ = ("_mac",)

    def __init__(self, master_key: bytes, user_hash: str):
        key = hmac.new(master_key, user_hash.encode("ascii"), hashlib.sha256).digest()
        self._mac = hmac.new(key, digestmod=hashlib.sha256)

    def _digest(self, data: bytes) -> bytes:
        mac = self._mac.copy()
        mac.update(data)
        return mac.digest()

    def row_id(self, external_id: str) -> uuid.UUID:
        """The row id of a (checked) caller id: its keyed hash, whatever the id looks like."""
        raw = bytearray(self._digest(b"id\x00" + external_id.encode("utf-8"))[:16])
        raw[6] = (raw[6] & 0x0F) | 0x80  # version 8: custom
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 9562 variant
        return uuid.UUID(bytes=bytes(raw))

    def row_ids(self, external_id: str) -> list[uuid.UUID]:
        """Every row id a (checked) caller id may be stored under: the keyed one, and for
        a random (version 4) UUID string also the UUID itself: the ids pymem generates,
        and random caller ids stored before revision 0015. The UUID itself is sent to
        the database only then: a version 1, 3, 5 or 8 UUID would tell whoever reads
        the statements (a log, the server) what a keyed id hides."""
        as_uuid = uuid_id(external_id)
        legacy = [as_uuid] if as_uuid is not None and as_uuid.version == 4 else []
        return [self.row_id(external_id)] + legacy

    def write_record(self, row: bytes) -> bytes:
        """The tenant's 32-byte MAC of a written row, encoded by :func:`pymem.write_records.row_bytes`."""
        return self._digest(b"write\x00" + row)

    def _tag(self, key: str, value: Any) -> bytes:
        pair = json.dumps([key, _canonical(value)], separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return self._digest(b"meta\x00" + pair.encode("utf-8"))[:TAG_BYTES]

    def _key_tag(self, key: str) -> bytes:
        return self._digest(b"key\x00" + key.encode("utf-8"))[:TAG_BYTES]

    def _keys_marker(self) -> bytes:
        return self._digest(b"keys\x00v1")[:TAG_BYTES]

    def term_tag(self, scheme: str, term: str) -> bytes:
        """The tag of a keyword term (:mod:`pymem.terms`) made under ``scheme`` (its language
        and stemmer release, :func:`pymem.terms.scheme`)."""
        return self._digest(b"term\x00" + scheme.encode("ascii") + b"\x00" + term.encode("utf-8"))[:TAG_BYTES]

    def metadata_tags(self, metadata: Mapping[str, Any], *, key_tags: bool = True) -> bytes:
        """The tags of a metadata mapping (as sealed: :func:`pymem.chunks.check_metadata`),
        concatenated and sorted (so their order says nothing).

        ``key_tags``: also each key's tag and the marker (rows sealed with AAD v3, since
        revision 0022), unless values, keys and the marker together would pass MAX_ROW_TAGS:
        such a row has its value tags only, and ``$exists`` finds it in neither form, as a
        row written before 0022.

        Raises:
            ValueError: more than MAX_ROW_TAGS filterable values (counted before any is hashed).
        """
        values = [(key, v) for key, value in metadata.items()
                  for v in (value if isinstance(value, list) else [value]) if isinstance(v, _SCALARS)]
        if len(values) > MAX_ROW_TAGS:
            raise ValueError(f"metadata has at most {MAX_ROW_TAGS} filterable values (scalars and list elements)")
        tags = {self._tag(key, v) for key, v in values}
        if key_tags and len(values) + len(metadata) + 1 <= MAX_ROW_TAGS:
            tags |= {self._key_tag(key) for key in metadata} | {self._keys_marker()}
        return b"".join(sorted(tags))

    def satisfies(self, metadata: Mapping[str, Any], tags: Sequence[bytes], ends: Sequence[int], *,
                  key_tags: bool = True) -> bool:
        """Whether opened ``metadata`` meets a compiled filter (:meth:`compile_filter`).

        The database evaluated the filter on stored tags, which nothing binds to the
        sealed metadata; this re-evaluates it on the plaintext, with the tags the row was
        written with (``key_tags``: sealed with AAD v3, :meth:`metadata_tags`), so a row
        whose tags were changed to match is caught.
        """
        have = self.metadata_tags(metadata, key_tags=key_tags)
        held = {have[i:i + TAG_BYTES] for i in range(0, len(have), TAG_BYTES)}
        start = 0
        for end in ends:
            if bool(held.intersection(tags[start:abs(end)])) == (end < 0):  # negated: none may be held
                return False
            start = abs(end)
        return True

    def compile_filter(self, where: Mapping[str, Any] | None) -> tuple[list[bytes], list[int]]:
        """Compile a filter to (tags, clause ends) for the SQL API (both empty: no filter).

        The database evaluates a conjunction of clauses, each met by a row that holds any of
        its tags, or, for a negated clause (its end given as ``-end``), none of them. A key's
        condition is one clause (``$eq``, ``$in``, ``$exists: True``; negated: ``$ne``,
        ``$nin``; ``$exists: False`` is a negated clause and the key-tag marker); ``$and``
        joins clauses; ``$or`` of positive key conditions (and of further ``$or``) is one
        clause holding all their tags. An ``$and``, or a negated condition, inside an ``$or``
        is refused: it would not be one clause. Positive clauses come first, so that the
        database can test the first with an index-friendly ``&&``.

        Every limit is checked before any value is hashed: at most MAX_FILTER_DEPTH nested
        ``$and``/``$or``, MAX_FILTER_CLAUSES key conditions and MAX_FILTER_TAGS values in
        all. ``$and``, ``$or`` and ``$in`` take lists (or tuples) only, so a str or bytes
        operand is refused rather than read as a sequence.

        Raises:
            ValueError: an unsupported operator or value, or a filter beyond the limits.
        """
        if where is None:
            return [], []
        clauses: list[tuple[bool, list[tuple[str, Any]]]] = []
        self._collect(where, clauses, 1, _Budget())
        tags, ends = [], []
        for negated, clause in sorted(clauses, key=lambda c: c[0]):  # stable: positive clauses first
            clause_tags = set()
            for key, value in clause:
                try:
                    clause_tags.add(self._key_tag(key) if value is _ANY else
                                    self._keys_marker() if value is _MARKER else self._tag(key, value))
                except ValueError:
                    raise ValueError(f"filter values for {key!r} must be finite numbers") from None
            tags.extend(sorted(clause_tags))
            ends.append(-len(tags) if negated else len(tags))
        return tags, ends

    def _collect(self, where: Any, clauses: list[tuple[bool, list[tuple[str, Any]]]], depth: int, budget: _Budget,
                 either: list[tuple[str, Any]] | None = None) -> None:
        """Add ``where``'s clauses to ``clauses``; inside an ``$or``, its alternatives to ``either``."""
        if not isinstance(where, Mapping):
            raise ValueError("a filter is a mapping of metadata keys to conditions")
        if depth > MAX_FILTER_DEPTH:
            raise ValueError(f"a filter nests $and and $or at most {MAX_FILTER_DEPTH} deep")
        if either is not None and len(where) != 1:  # several keys are an $and; none is nothing to meet
            raise ValueError("each alternative of an $or is one condition on a key, or an $or")
        for key, condition in where.items():
            if key in ("$and", "$or"):
                if not isinstance(condition, (list, tuple)) or not condition:
                    raise ValueError(f"{key} takes a non-empty list of filters")
                if key == "$and":
                    if either is not None:
                        raise ValueError("an $and inside an $or is not supported: put the $and outside the $or")
                    for part in condition:
                        self._collect(part, clauses, depth + 1, budget)
                    continue
                # An $or is one clause: its alternatives, and those of any $or inside it.
                alternatives = [] if either is None else either
                for part in condition:
                    self._collect(part, clauses, depth + 1, budget, alternatives)
                if either is None:
                    clauses.append((False, alternatives))
            elif not isinstance(key, str) or key.startswith("$"):
                raise ValueError(f"unsupported filter operator {key!r}: use {_OPERATORS}")
            else:
                negated, values = self._values(key, condition)
                pairs = [(key, value) for value in values]
                budget.add(len(pairs))
                if either is not None and negated:
                    raise ValueError("$ne, $nin and $exists: False are not supported inside an $or:"
                                     " put them outside the $or")
                if either is not None:
                    either.extend(pairs)
                    continue
                clauses.append((negated, pairs))
                if negated and values == [_ANY] and not any(v is _MARKER for _, c in clauses for _, v in c):
                    budget.add(1)  # $exists: False, among the rows that carry key tags (once)
                    clauses.append((False, [("", _MARKER)]))

    @staticmethod
    def _values(key: str, condition: Any) -> tuple[bool, list[Any]]:
        """Whether the key's condition is negated, and its values (``_ANY``: the key itself)."""
        if not isinstance(condition, Mapping):
            condition = {"$eq": condition}
        if len(condition) != 1:
            raise ValueError(f"the condition on {key!r} needs exactly one operator ({_KEY_OPERATORS})")
        (operator, operand), = condition.items()
        if operator == "$exists":
            if not isinstance(operand, bool):
                raise ValueError(f"$exists on {key!r} takes True or False")
            return not operand, [_ANY]
        if operator in ("$eq", "$ne"):
            values = [operand]
        elif operator in ("$in", "$nin"):
            if not isinstance(operand, (list, tuple)) or not operand:
                raise ValueError(f"{operator} on {key!r} takes a non-empty list of values")
            if len(operand) > MAX_FILTER_TAGS:
                raise ValueError(f"a filter has at most {MAX_FILTER_TAGS} values")
            values = list(operand)
        else:
            raise ValueError(f"unsupported filter operator {operator!r}: use {_OPERATORS}")
        if not all(isinstance(v, _SCALARS) for v in values):
            raise ValueError(f"filter values for {key!r} must be str, int, float, bool or None")
        return operator in ("$ne", "$nin"), values
