"""Freshness: every live row is the one its latest audited write left (revision 0016).

A sealed field's AAD binds it to its tenant, row, field and labels, not to a time,
so an older copy of a row opens as well as the current one: a row restored from a
dump over its newer version, rows an ``erase_user`` removed put back, metadata
re-keyed back to an old ciphertext. Since revision 0016 every write records, per
row, a **write record**: HMAC under the tenant's blind-index key (the database never
holds it) of the row as written (:mod:`pymem.write_records`). ``write_chunks`` and
``rekey_chunks_v2`` put the records in the write's audit row (``params_digest``, in
the order of its ``chunk_ids``), so they are in the tenant's hash chain. A row
written or deleted by direct DML is audited with 32 zero bytes, which no row
matches, and a TRUNCATE appends a row to every tenant's chain.

:func:`verify_rows` (``pymem verify-rows``), run with the keys, walks every chain
as ``audit-verify`` does (recomputed here, trusting no function of the server's),
keeps each row id's latest audited event, then reads every tenant's live rows
(an audited export) and reports:

* a live row that differs from what its latest audited write wrote: rolled back to
  an older copy, or changed without an audited write;
* a live row whose latest audited event removed it (a delete, an erase, a
  TRUNCATE): a removed row put back;
* a live row with no audited event at all: inserted with the audit triggers off;
* a row last written or deleted by direct DML (the zero record);
* a record that appears twice in one chain: an old write replayed into the log
  (every seal has a fresh random nonce, so no honest write repeats a record);
* a write without records after the chain's first record: since 0016 every write
  has them, so such an audit row was forged to make a row look as if it predated them;
* a write's audit row that no pymem function writes (an id twice, a row count or
  records that do not match its ids);
* a row its latest audited write left live that is missing: removed without an
  audited delete, or a restore from before that write;
* an update (``update_memory_chunks``, 0021) that read a row other than the one its
  latest audited write left: an older copy put back, which the update would otherwise
  make current (its ``update_from`` audit row names the records it read);
* a purge (0022) that removed such a row: an older copy put back whose sealed expiry had
  passed (the ``purge`` audit row names the records it read).

What it does not see: a key holder can seal any content afresh (and so combine a
row's current fields with an older field's ciphertext through a re-key): that is
an audited write under its login, like any other, not a replay.

Rows last written before revision 0016 have no record and are counted as
``unbound``: their freshness cannot be checked until they are written again
(``pymem rotate-key --all`` re-seals every row, binding it). A superuser who cuts a
chain's tail is caught only against a signed checkpoint (``audit-verify``): verify
both. The rows, expired ones too, are read through ``export_chunks_v3``; the server's function
definitions are compared with the shipped ones first (as ``pymem doctor`` does), and
any difference is a problem.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from . import sync
from .audit import as_auditor, current_database, read_archives, walk_log
from .audit_chain import NO_TENANT
from .blind_index import TenantIndex
from .connections import SyncConnectionAsAsync
from .doctor import check_schema
from .extras import progress_iter
from .reads import commit_read_intent
from .repository import every_row_export, export_pages
from .security import keyring
from .tenant import tenant_transaction
from .write_records import DIRECT_DML_RECORD, RECORD_BYTES, stored_record

_WRITES = ("insert", "update")
_REMOVALS = ("delete", "purge")  # purge: expired rows (0022), with their records as read
_UPDATE_FROM = "update_from"  # an update's records of the rows it read (0021)
_PAGE = 1000


@dataclass(frozen=True)
class FreshnessProblem:
    """A live row (or a chain) that is not as the audited writes left it."""

    user_hash: str
    row_id: uuid.UUID | None
    problem: str


@dataclass
class FreshnessReport:
    """What :func:`verify_rows` found. ``problems`` include the audit chains' own."""

    problems: list[FreshnessProblem] = field(default_factory=list)
    tenants: int = 0
    rows_checked: int = 0
    unbound: int = 0
    retired: int = 0  # tenants not checked: their old audit rows were retired, and no archive was given


@dataclass(frozen=True)
class _Event:
    """A row id's latest audited event in its chain."""

    removed: bool
    record: bytes  # a write's record: b"" none (before 0016); DIRECT_DML_RECORD by direct DML


_TRUNCATED = _Event(True, b"")


class _Ledger:
    """Each row id's latest audited event per chain, fed by the chain walk, and what
    the walk showed that no honest writer leaves in a chain."""

    def __init__(self) -> None:
        self.latest: dict[str, dict[uuid.UUID, _Event]] = {}
        self.problems: list[FreshnessProblem] = []
        self._seen: dict[str, set[bytes]] = {}
        self._recorded: set[str] = set()  # chains with a write that had records

    def _report(self, user_hash: str, ids, problem: str) -> None:
        self.problems += [FreshnessProblem(user_hash, i if isinstance(i, uuid.UUID) else None, problem) for i in ids]

    def _check_read(self, user_hash: str, rows: dict, chunk_ids, params_digest, operation: str) -> bool:
        """The records of the rows an update (0021) or a purge (0022) read: each must be the one
        its latest audited write left; else it read an older copy put back in its place. A purge
        removes only rows sealed with their expiry, all written with records: one whose latest
        write has none is reported too. Whether the audit row is well formed."""
        ids, records = list(chunk_ids or []), bytes(params_digest or b"")
        if len(records) != RECORD_BYTES * len(ids):
            self._report(user_hash, ids or [None], "an audit row of a write that no pymem function writes"
                         " (ids repeated, a count or records that do not match its ids)")
            return False
        for n, row_id in enumerate(ids):
            event, read = rows.get(row_id), records[n * RECORD_BYTES:(n + 1) * RECORD_BYTES]
            if operation == _UPDATE_FROM and event is not None and _bound(event) and read != event.record:
                self._report(user_hash, [row_id], "updated from a copy that is not what its latest audited write"
                             " left (put back from a copy, or changed outside pymem's API)")
            elif operation == "purge" and (event is None or not _bound(event) or read != event.record):
                self._report(user_hash, [row_id], "purged as expired, but not what its latest audited write left"
                             " (an older copy put back, or changed outside pymem's API)")
        return True

    def add(self, user_hash: str, operation: str, phase: str | None, chunk_ids, params_digest,
            row_count: int) -> None:
        if phase not in ("write", None) or operation not in _WRITES + _REMOVALS + ("truncate", _UPDATE_FROM):
            return  # reads; quarantine and index_terms, which leave the row as it is
        rows = self.latest.setdefault(user_hash, {})
        if operation == _UPDATE_FROM:
            self._check_read(user_hash, rows, chunk_ids, params_digest, operation)
            return
        if operation == "purge" and not self._check_read(user_hash, rows, chunk_ids, params_digest, operation):
            return
        seen = self._seen.setdefault(user_hash, set())
        if operation == "truncate":
            # 0016 appends one to every tenant's chain; before, only the no-tenant
            # chain had it, and rows it removed were written without records.
            rows.update((row_id, _TRUNCATED) for row_id in rows)
            return
        ids = list(chunk_ids or [])
        records = None if params_digest is None else bytes(params_digest)
        malformed = (len(set(ids)) != len(ids) or not all(isinstance(i, uuid.UUID) for i in ids)
                     or row_count != len(ids) or (records is not None and len(records) != RECORD_BYTES * len(ids)))
        if malformed and phase is not None:
            # write_chunks and the others never write such a row: it was forged. (The
            # first log's rows, phase None, are taken as they are.)
            self._report(user_hash, ids or [None], "an audit row of a write that no pymem function writes"
                         " (ids repeated, a count or records that do not match its ids)")
            return
        if records is not None:
            self._recorded.add(user_hash)
        elif user_hash in self._recorded and operation in _WRITES:
            # Since 0016 every write carries records (direct DML and the v1 functions
            # zero ones): a write without any, after the chain's first, is forged.
            self._report(user_hash, ids, "a write without a write record after the chain had records (an audit"
                         " row forged to make the row look older)")
        for n, row_id in enumerate(ids):
            record = b"" if records is None else records[n * RECORD_BYTES:(n + 1) * RECORD_BYTES]
            if operation in _REMOVALS:
                if record == DIRECT_DML_RECORD:
                    self._report(user_hash, [row_id], "deleted by direct DML, outside pymem's API")
                rows[row_id] = _Event(True, record)
                continue
            if record and record != DIRECT_DML_RECORD:
                if record in seen:
                    self._report(user_hash, [row_id], "a write record appears twice in the chain (an old write"
                                 " replayed into the log)")
                seen.add(record)
            rows[row_id] = _Event(False, record)


def _check_row(record: bytes, event: _Event | None) -> str | None:
    """What is wrong with a live row (its write record as it is now) given its latest
    audited event (None: nothing)."""
    if event is None:
        return "no audited write (inserted with the audit triggers off)"
    if event is _TRUNCATED:
        return "live, although a TRUNCATE was audited after its latest write"
    if event.removed:
        return "removed by an audited delete or erase, yet live (put back from a copy)"
    if event.record == DIRECT_DML_RECORD:
        return "last written by direct DML, outside pymem's API"
    if event.record and record != event.record:
        return "not what its latest audited write wrote (an older copy, or changed without an audited write)"
    return None


def _bound(event: _Event) -> bool:
    """Whether the row's latest write has a record a live row must match."""
    return not event.removed and event.record not in (b"", DIRECT_DML_RECORD)


async def _live_records(conn, user_hash: str, index: TenantIndex) -> dict[uuid.UUID, bytes]:
    """Each live row's write record as the row is now, page by page (an audited export)."""
    ticket = await commit_read_intent(conn, user_hash, "export_v3", every_row_export(None, _PAGE))
    async with tenant_transaction(conn, user_hash):
        return {row[0]: stored_record(index, row) async for page in export_pages(conn, user_hash, ticket, _PAGE)
                for row in page}


def _verify_tenant(conn: psycopg.Connection, user_hash: str, events: dict[uuid.UUID, _Event],
                   report: FreshnessReport) -> None:
    try:
        live = sync.run(_live_records(SyncConnectionAsAsync(conn), user_hash, keyring().tenant_index(user_hash)))
    except psycopg.errors.InsufficientPrivilege:
        report.problems.append(FreshnessProblem(user_hash, None, "cannot enter the tenant with these keys (another"
                                                " HMAC key, or a tenant from before 0015 not registered yet)"))
        return
    for row_id, record in live.items():
        event = events.get(row_id)
        problem = _check_row(record, event)
        if problem:
            report.problems.append(FreshnessProblem(user_hash, row_id, problem))
        elif event is not None and event.record == b"":
            report.unbound += 1
    report.rows_checked += len(live)
    report.problems += [FreshnessProblem(user_hash, row_id, "written and never deleted, yet missing (removed"
                                         " without an audited delete, or a restore from before it)")
                        for row_id, event in events.items() if _bound(event) and row_id not in live]


def verify_rows(conn: psycopg.Connection, user_hashes: Iterable[str] | None = None, *,
                progress: bool = False, archives: Sequence[str | Path] = ()) -> FreshnessReport:
    """Check every live row against its latest audited write; see the module docstring.

    Args:
        conn: a sync connection of a login that has (or may SET ROLE to)
            ``pymem_auditor``, for the chains, and may export rows (``pymem_maintainer``
            or ``pymem_app``), with the app's keys loaded (``MEMORY_TENANT_HMAC_KEY``).
        user_hashes: the tenants to check (default: every tenant with a chain, and
            every chain's problems).
        progress: show a progress bar over the tenants.
        archives: manifests of the retired segments (``pymem audit-archive``): a tenant
            whose old audit rows were retired (revision 0024) is checked only when those that
            verify reach back to its chain's first row, since its rows' earlier writes are
            there; else it is counted in ``retired``, not checked.

    Returns:
        The report; no ``problems`` means every live row is what its latest audited
        write left and every chain verifies. ``unbound`` rows predate write records.

    Raises:
        ValueError: the keys are missing or malformed.
    """
    ledger = _Ledger()
    archived = read_archives(archives)
    with as_auditor(conn):
        database = current_database(conn)
        walked, walk = walk_log(conn, database, on_row=ledger.add, archives=archived)
    # A chain walked from a later row than its first (retired, and the archives given do not
    # reach back to its start) lacks its rows' earlier writes: its tenant is not checked.
    retired = (set(walk.partial) if user_hashes is None else set(walk.partial) & set(user_hashes)) - {NO_TENANT}
    wanted = sorted((set(ledger.latest) if user_hashes is None else set(user_hashes)) - {NO_TENANT} - retired)
    chains = [FreshnessProblem(p.user_hash, None, f"audit chain, position {p.chain_pos}: {p.problem}")
              for p in walked]
    # The rows are read through export_chunks_v3, a function of the server's: one a
    # superuser replaced could leave rows out. Its definition is checked as doctor
    # checks it, and any difference fails the verification.
    schema = [FreshnessProblem(NO_TENANT, None, f"schema: {f.check}: {f.detail}")
              for f in check_schema(conn) if not f.ok]
    # The no-tenant chain's problems (an archive that does not verify among them) are always reported.
    report = FreshnessReport(schema + [p for p in chains + ledger.problems
                                       if user_hashes is None or p.user_hash in wanted or p.user_hash == NO_TENANT],
                             retired=len(retired))
    for user_hash in progress_iter(wanted, enabled=progress, unit="tenant", desc="verifying rows"):
        _verify_tenant(conn, user_hash, ledger.latest.get(user_hash, {}), report)
        report.tenants += 1
    return report
