"""Audit verification that does not ask the server: every chain recomputed in the client.

``pymem.audit_verify()`` and ``pymem.audit_row_hash()`` are answered by the
database, so a superuser who replaces them (``CREATE OR REPLACE FUNCTION``) chooses
the answer. Here the auditor reads the raw rows of ``pymem.audit_log``,
``pymem.audit_log_v1`` and ``pymem.audit_chain_heads`` (it has SELECT on all
three) and recomputes each row hash with the documented layout, in Python:

    v2 row:  sha256(prev_hash || UTF-8 of 'v2|user_hash|chain_pos|epoch_us|db_role|operation|phase|'
                                          'ticket|params_digest_hex|chunk_ids|row_count|txid')
    v1 row:  sha256(prev_hash || UTF-8 of 'seq|epoch_us|db_role|user_hash|operation|chunk_ids|'
                                          'row_count|txid|chain_pos')

(``ticket`` and ``params_digest_hex`` are ``-`` when absent, as is a v1 row's
``user_hash``; ``chunk_ids`` is PostgreSQL's array text, ``{id,id}``; ``epoch_us``
the row time in microseconds since 1970.) What this still trusts of the server:
that ``pymem.audit_log`` is the table (``pymem doctor`` fingerprints it) and
PostgreSQL's own output of the column values; a superuser who rewrites a whole
chain's tail with valid hashes is caught only against a signed checkpoint.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import re
import time
from decimal import Decimal
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import psycopg

NO_TENANT = "0" * 64
_TENANT = re.compile("[0-9a-f]{64}")
#: A row dated later than this after the verification's start is reported: the chain's
#: time order rests on the head row's time, which no hash covers.
FUTURE_SLACK_US = 300 * 1_000_000
# Times as PostgreSQL's exact epoch microseconds (numeric: 'infinity' or a year past 9999
# reads as a value that does not hash, not as an error that stops the walk).
_EPOCH_US = "(pg_catalog.extract('epoch', at) * 1000000)::pg_catalog.numeric::pg_catalog.text"
V2_COLUMNS = (f"SELECT user_hash::pg_catalog.text, chain_pos, {_EPOCH_US}, db_role, operation, phase, ticket,"
               " params_digest, chunk_ids, row_count, txid::pg_catalog.text, prev_hash, row_hash FROM pymem.audit_log")
_V2_ROWS = V2_COLUMNS + " ORDER BY user_hash, chain_pos"
# Only each chain's checkpointed row and the rows after it: its position looked up in a JSON
# object (a binary search per row; the server skips the rest, the client hashes what is new).
_V2_ROWS_AFTER = (V2_COLUMNS + " WHERE chain_pos OPERATOR(pg_catalog.>=) COALESCE((%s::pg_catalog.jsonb"
                  " OPERATOR(pg_catalog.->>) user_hash::pg_catalog.text)::pg_catalog.int8, 0)"
                  " ORDER BY user_hash, chain_pos")
_V1_ROWS = (f"SELECT user_hash::pg_catalog.text, seq, {_EPOCH_US}, db_role, operation, chunk_ids, row_count,"
            " txid::pg_catalog.text, chain_pos, prev_hash, row_hash FROM pymem.audit_log_v1"
            " ORDER BY user_hash NULLS FIRST, chain_pos")
# Each chain's last row in the first log (no tenant: NULL there), which a retired chain's signed
# anchor names, since the walk from the anchor no longer links the chain to it.
_V1_TAILS = ("SELECT DISTINCT ON (COALESCE(user_hash::pg_catalog.text, pg_catalog.repeat('0', 64)))"
             " COALESCE(user_hash::pg_catalog.text, pg_catalog.repeat('0', 64)), chain_pos, row_hash"
             " FROM pymem.audit_log_v1 ORDER BY 1, chain_pos DESC")
# Rows a retired chain still has before its anchor: pymem.audit_retire deletes them all.
_V2_BELOW = ("SELECT user_hash::pg_catalog.text, pg_catalog.count(*) FROM pymem.audit_log"
             " WHERE chain_pos OPERATOR(pg_catalog.<) COALESCE((%s::pg_catalog.jsonb"
             " OPERATOR(pg_catalog.->>) user_hash::pg_catalog.text)::pg_catalog.int8, 0) GROUP BY 1 ORDER BY 1")
_HEADS = ("SELECT user_hash::pg_catalog.text, chain_pos, row_hash FROM pymem.audit_chain_heads"
          " ORDER BY user_hash")


OnRow = Callable[[str, str, "str | None", "list | None", "bytes | None", int], None]


@dataclass(frozen=True)
class ChainProblem:
    """One place where a chain does not verify."""

    user_hash: str
    chain_pos: int
    problem: str


def _epoch_us(at: str) -> str:
    """The row time as the hash writes it: an integer of microseconds. (A value with a
    fraction, or infinite, cannot have been written by pymem: kept as it is, it will not hash.)"""
    value = Decimal(at)
    return str(int(value)) if value.is_finite() and value == value.to_integral_value() else at


def _array_text(ids) -> str | None:
    return None if ids is None else "{" + ",".join(str(i) for i in ids) + "}"


def _digest(prev_hash: bytes, parts: Iterable) -> bytes:
    # concat_ws('|', ...) leaves NULL arguments out, and so does this.
    text = "|".join(str(p) for p in parts if p is not None)
    return hashlib.sha256(bytes(prev_hash) + text.encode("utf-8")).digest()


def row_hash_v2(prev_hash: bytes, user_hash: str, chain_pos: int, at: str, db_role: str, operation: str,
                phase: str, ticket, params_digest: bytes | None, chunk_ids, row_count, txid: str) -> bytes:
    """The hash of a ``pymem.audit_log`` row (``pymem.audit_row_digest``), computed here."""
    return _digest(prev_hash, ("v2", user_hash, chain_pos, _epoch_us(at), db_role, operation, phase,
                               "-" if ticket is None else str(ticket),
                               "-" if params_digest is None else bytes(params_digest).hex(),
                               _array_text(chunk_ids), row_count, txid))


def row_hash_v1(prev_hash: bytes, seq: int, at: str, db_role: str, user_hash: str | None, operation: str,
                chunk_ids, row_count, txid: str, chain_pos: int) -> bytes:
    """The hash of a ``pymem.audit_log_v1`` row (``pymem.audit_row_digest_v1``), computed here."""
    return _digest(prev_hash, (seq, _epoch_us(at), db_role, "-" if user_hash is None else user_hash, operation,
                               _array_text(chunk_ids), row_count, txid, chain_pos))


def _without_repeats(rows: Iterator[tuple], problems: list[ChainProblem]) -> Iterator[tuple]:
    """Rows in chain order, each position once: where an archive and the log (or two
    archives) both hold a row, it must be the same row."""
    last = None
    for row in rows:
        if last is not None and row[:2] == last[:2]:
            if row != last:
                problems.append(ChainProblem(row[0], row[1], "the archived row differs from the log's"))
            continue
        last = row
        yield row


def v1_tails(conn: psycopg.Connection) -> dict[str, tuple[int, bytes]]:
    """Each chain's last row in the first-generation log: (position, hash). (A NULL hash,
    possible only with the table's constraints dropped, reads as empty: no anchor's matches.)"""
    return {chain: (pos, bytes(row_hash or b"")) for chain, pos, row_hash in conn.execute(_V1_TAILS)}


@dataclass
class ChainEnd:
    """Where a chain's last verified row is: its position and hash."""

    chain_pos: int
    row_hash: bytes


def read_rows(conn: psycopg.Connection, query: str, params: tuple | None = None) -> Iterator[tuple]:
    # A server-side cursor: the log may not fit in memory.
    with conn.cursor(name="pymem_audit_rows") as cursor:
        cursor.itersize = 5000
        cursor.execute(query, params)
        yield from cursor


def _v1_chains(conn: psycopg.Connection, problems: list[ChainProblem], wanted: frozenset[tuple[str, int]],
               hashes: dict[tuple[str, int], bytes], on_row: OnRow | None) -> dict[str, ChainEnd]:
    """Verify the read-only first-generation log; return each chain's last row."""
    ends: dict[str, ChainEnd] = {}
    broken: set[str] = set()
    seqs: dict[str, int] = {}
    for user_hash, seq, at, db_role, operation, chunk_ids, row_count, txid, chain_pos, prev, row in read_rows(
            conn, _V1_ROWS):
        chain = NO_TENANT if user_hash is None else user_hash  # as v1_tails keys it
        if chain in broken:
            continue
        if user_hash is not None and not _TENANT.fullmatch(user_hash):
            problems.append(ChainProblem(chain, chain_pos, "v1: a row that names no well-formed tenant (forged)"))
            broken.add(chain)
            continue
        end = ends.get(chain, ChainEnd(0, b""))
        problem = None
        if chain_pos != end.chain_pos + 1:
            problem = "missing row(s) before this one (deleted)"
        elif seq <= seqs.get(chain, -1):
            problem = "out of order (reordered)"
        elif bytes(prev) != end.row_hash:
            problem = "previous hash does not match (predecessor altered)"
        elif bytes(row) != row_hash_v1(prev, seq, at, db_role, user_hash, operation, chunk_ids, row_count, txid,
                                       chain_pos):
            problem = "row hash does not match (modified)"
        if problem:
            problems.append(ChainProblem(chain, chain_pos, "v1: " + problem))
            broken.add(chain)  # like audit_verify_v1: the first problem of each chain
            continue
        seqs[chain] = seq
        ends[chain] = ChainEnd(chain_pos, bytes(row))
        if on_row is not None:
            on_row(chain, operation, None, chunk_ids, None, row_count)
        if (chain, chain_pos) in wanted:
            hashes[(chain, chain_pos)] = bytes(row)
    return ends


@dataclass
class ChainWalk:
    """What :func:`verify_chains` found.

    ``problems``: what ``pymem.audit_verify()`` reports (deleted, altered or reordered
    rows; a head that disagrees with its chain's last row; v1 problems prefixed
    ``v1: ``), plus rows dated in the future; [] when intact. ``hashes``: for each
    position of ``wanted`` the walk reached with its chain intact up to it, the hash
    it computed there. ``ends``: each chain's last row (position, hash), as walked.
    ``partial``: the chains walked from a later row than their first (a checkpointed or
    anchored one, or where the archives given begin), and that row's position: their
    earlier rows were not read.
    """

    problems: list[ChainProblem]
    hashes: dict[tuple[str, int], bytes]
    ends: dict[str, tuple[int, bytes]]
    partial: dict[str, int]


def verify_chains(conn: psycopg.Connection, wanted: frozenset[tuple[str, int]] = frozenset(), *,
                  on_row: OnRow | None = None, after: dict[str, tuple[int, bytes]] | None = None,
                  anchors: dict[str, tuple[int, bytes]] | None = None, archived: Iterable[tuple] = ()) -> ChainWalk:
    """Walk every audit chain once, recomputing it here.

    A signed checkpoint is compared with ``hashes`` from this same pass, so that a
    server cannot show one log to the walk and another to the checkpoint check; a
    checkpoint is written from ``ends``. Calls no function of pymem's.

    Args:
        conn: a connection whose role can read the audit tables (``pymem_auditor``),
            inside one transaction (the rows are read through named cursors).
        wanted: (user_hash, chain_pos) of the rows a checkpoint names.
        on_row: called with (user_hash, operation, phase, chunk_ids, params_digest,
            row_count) of every row, in chain order (v1 rows first, phase None),
            e.g. to follow each chunk's audited writes (:mod:`pymem.freshness`).
        after: an incremental walk: for each chain a signed checkpoint names, its
            (position, hash) there. Only that row and the rows after it are read: it must
            still hash to the signed hash, and the next must chain onto it and not precede
            it in time; the rows before it are taken as verified before (a full walk checks
            them again). A named chain whose checkpointed row or head row is gone is reported.
        anchors: for each chain whose old rows were retired (revision 0024), where it starts
            now: (position, hash), authenticated by the caller (:mod:`pymem.audit_retention`).
            The chain is walked from that row, as from a checkpointed one; the first log is
            walked too.
        archived: rows of retired segments, read back from their archives and authenticated
            by the caller, as the log's rows (``V2_COLUMNS``), ordered by chain and position.
            Only an anchored chain's rows up to its anchor are used: walked ahead of the log's
            own rows, which must still hold the anchor row (a row both hold must be the same
            row). A chain they reach back to its first row is walked whole; else from where
            they begin. Not with ``after``.
    """
    problems: list[ChainProblem] = []
    hashes: dict[tuple[str, int], bytes] = {}
    broken: set[str] = set()
    anchors = anchors or {}
    starts = dict(anchors)
    # A chain starts at the later of its anchor and its checkpointed row.
    starts.update((chain, start) for chain, start in (after or {}).items()
                  if chain not in starts or start[0] > starts[chain][0])
    v1_ends = {} if after is not None else _v1_chains(conn, problems, wanted, hashes, on_row)
    # (The first-generation log was frozen at revision 0005, before any checkpoint.)
    db_rows = read_rows(conn, _V2_ROWS_AFTER, (json.dumps({chain: pos for chain, (pos, _) in starts.items()}),)
                    ) if starts else read_rows(conn, _V2_ROWS)
    # Archived rows fill only what a signed anchor retired (a chain's positions up to its anchor):
    # never rows the log must still hold, so a row deleted from the log is not hidden by its copy.
    archived = [row for row in archived if row[0] in anchors and row[1] <= anchors[row[0]][0]]
    firsts: dict[str, tuple] = {}
    for row in archived:
        firsts.setdefault(row[0], row)
    for chain, row in firsts.items():
        genesis = v1_ends.get(chain, ChainEnd(0, b""))
        if row[1] <= genesis.chain_pos + 1:
            del starts[chain]  # the archives reach back to the chain's first row: walked whole, linked
        else:
            starts[chain] = (row[1], bytes(row[12]))  # from where the archives begin, as they vouch
    kinds = {chain: "archived" if chain in firsts else
             "checkpointed" if after and after.get(chain) == start else "anchored" for chain, start in starts.items()}
    # Where archives fill a retired segment, the log must still hold the anchor row, unchanged.
    anchor_rows_seen: set[str] = set()

    def noting_anchor_rows(rows: Iterator[tuple]) -> Iterator[tuple]:
        for row in rows:
            if row[0] in firsts and row[1] == anchors[row[0]][0]:
                anchor_rows_seen.add(row[0])
                if bytes(row[12]) != anchors[row[0]][1]:
                    problems.append(ChainProblem(row[0], row[1], "anchored row has changed"))
            yield row

    db_rows = noting_anchor_rows(db_rows)
    rows = _without_repeats(heapq.merge(archived, db_rows, key=lambda row: (row[0], row[1])), problems)
    v1_ends.update((chain, ChainEnd(pos, row_hash)) for chain, (pos, row_hash) in starts.items())
    ends: dict[str, ChainEnd] = {}
    times: dict[str, Decimal] = {}
    future = Decimal(int(time.time() * 1_000_000) + FUTURE_SLACK_US)
    retirements: set[str] = set()  # anchored chains whose audit_retire row the walk read
    unread = set(starts)  # chains whose first row (checkpointed, anchored or archived) the walk has yet to read
    for (user_hash, chain_pos, at, db_role, operation, phase, ticket, params_digest, chunk_ids, row_count, txid,
         prev, row) in rows:
        if user_hash in unread and chain_pos == starts[user_hash][0]:
            # The starting row itself: still the signed one, and the time the next must not precede.
            unread.discard(user_hash)
            signed = starts[user_hash][1]
            if bytes(row) != signed or row_hash_v2(prev, user_hash, chain_pos, at, db_role, operation, phase, ticket,
                                                   params_digest, chunk_ids, row_count, txid) != signed:
                problems.append(ChainProblem(user_hash, chain_pos, f"{kinds[user_hash]} row has changed"))
                broken.add(user_hash)
            if (user_hash, chain_pos) in wanted and user_hash not in broken:
                hashes[(user_hash, chain_pos)] = signed
            times[user_hash] = Decimal(at)
            if on_row is not None and kinds[user_hash] != "checkpointed":  # an incremental walk: seen before
                on_row(user_hash, operation, phase, chunk_ids, params_digest, row_count)
            continue
        if user_hash not in ends:
            ends[user_hash] = v1_ends.get(user_hash, ChainEnd(0, b""))
            if any(p.user_hash == user_hash for p in problems):
                broken.add(user_hash)
        end = ends[user_hash]
        problem = None
        if chain_pos != end.chain_pos + 1:
            problem = "missing row(s) before this one (deleted)"
        elif bytes(prev) != end.row_hash:
            problem = "previous hash does not match (a predecessor was altered, or rows were reordered)"
        if problem:
            problems.append(ChainProblem(user_hash, chain_pos, problem))
        computed = row_hash_v2(prev, user_hash, chain_pos, at, db_role, operation, phase, ticket, params_digest,
                               chunk_ids, row_count, txid)
        when = Decimal(at)
        if bytes(row) != computed:
            problems.append(ChainProblem(user_hash, chain_pos, "row hash does not match (modified)"))
            problem = problem or "modified"
        elif user_hash in times and when < times[user_hash]:
            problems.append(ChainProblem(user_hash, chain_pos, "earlier than its predecessor (reordered)"))
        elif when > future:
            problems.append(ChainProblem(user_hash, chain_pos, "dated in the future"))
        if problem:
            broken.add(user_hash)
        if (user_hash, chain_pos) in wanted and user_hash not in broken:
            hashes[(user_hash, chain_pos)] = computed
        ends[user_hash] = ChainEnd(chain_pos, bytes(row))  # re-anchor: a later break is reported too
        times[user_hash] = when
        if on_row is not None:
            on_row(user_hash, operation, phase, chunk_ids, params_digest, row_count)
        if operation == "audit_retire" and user_hash in anchors and chain_pos > anchors[user_hash][0] \
                and params_digest is not None and bytes(params_digest) == anchors[user_hash][1]:
            retirements.add(user_hash)
    if anchors:
        below = json.dumps({chain: pos for chain, (pos, _) in anchors.items()})
        problems += [ChainProblem(chain, anchors[chain][0], f"{count} row(s) before the chain's anchor (retired"
                                                            " rows put back, or forged)")
                     for chain, count in read_rows(conn, _V2_BELOW, (below,))]
    # pymem.audit_retire appends its row after the anchor it sets; an anchor written into the
    # table directly has none. (An incremental walk from a later row does not read that far back.)
    problems += [ChainProblem(chain, anchors[chain][0], "the chain was retired without its audit_retire row"
                                                        " (the anchors table was written directly)")
                 for chain in sorted(set(anchors) - retirements)
                 if not (after and chain in after and after[chain][0] > anchors[chain][0])]
    headless = set(starts) | set(anchors) | set(ends)  # every chain the walk read has a head row
    for user_hash, chain_pos, row_hash in read_rows(conn, _HEADS):
        headless.discard(user_hash)
        end = ends.get(user_hash) or v1_ends.get(user_hash) or ChainEnd(0, b"")
        if chain_pos == 0 and end.chain_pos == 0:
            continue  # a head created for a chain that has no row yet
        if end.chain_pos == 0:
            problem = f"all rows of the chain are missing (head says {chain_pos})"
        elif end.chain_pos < chain_pos:
            problem = f"rows missing at the end (head says {chain_pos})"
        elif end.chain_pos > chain_pos:
            problem = f"rows beyond the head (head says {chain_pos})"
        elif end.row_hash != bytes(row_hash):
            problem = "the last row's hash differs from the head"
        else:
            continue
        problems.append(ChainProblem(user_hash, chain_pos, problem))
    problems += [ChainProblem(chain, starts[chain][0], f"{kinds[chain]} row is gone (chain cut or deleted)")
                 for chain in sorted(unread)]
    problems += [ChainProblem(chain, anchors[chain][0], "anchored row is gone (chain cut or deleted)")
                 for chain in sorted(set(firsts) - anchor_rows_seen)]
    problems += [ChainProblem(chain, starts[chain][0], "the chain's head row is gone (the chain was deleted)")
                 if chain in starts else
                 ChainProblem(chain, ends[chain].chain_pos if chain in ends else anchors[chain][0],
                              "the chain has no head row (its head deleted, or its rows forged)")
                 for chain in sorted(headless)]
    walked = {chain: (end.chain_pos, end.row_hash) for chain, end in {**v1_ends, **ends}.items()}
    return ChainWalk(problems, hashes, walked, {chain: pos for chain, (pos, _) in starts.items()})
