"""A chunk's lifetime (revision 0022): when it was created and updated, when it expires,
and time windows on both.

* **Expiry.** A chunk written with ``ChunkInput(..., expires_at=...)`` (an aware
  datetime) or ``ttl=`` (a ``timedelta`` or seconds) is returned by no read once that time
  has passed: the database leaves it out of every search, get and listing, and the client
  drops a row whose stated expiry has passed by its own clock too. A row's expiry is in its
  AAD (v3): changed in the table, the row no longer opens. :func:`purge_expired_chunks`
  (``pymem purge-expired``) deletes the expired rows after checking each one's sealed expiry,
  audited as ``purge`` with their ids. Until then they are still stored (sealed): a purge is
  what removes them.
* **Timestamps.** Reads return ``created_at`` (first written; an upsert or update keeps
  it), ``updated_at`` (last replaced, else ``created_at``) and ``expires_at``. They are the
  database's clock and the database's word: they are not sealed (see docs/threat-model.md).
* **Time windows.** Searches and listings take ``created_after`` / ``created_before`` /
  ``updated_after`` / ``updated_before`` (aware datetimes, each bound strict), evaluated in
  the database; the client checks that every row returned lies in the window by the
  timestamps it was given with, and raises :class:`~pymem.errors.TamperedRow` otherwise.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .connections import borrow
from .errors import TamperedRow
from .security import hmac_user
from .tenant import tenant_transaction

__all__ = ["TimeWindow", "purge_expired_chunks"]

_PURGE_SQL = ("SELECT pymem.purge_expired(%s::pg_catalog.bpchar, %b::pg_catalog.uuid[], %b::pg_catalog.bytea[],"
              " %b::pg_catalog.bytea[])")
PURGE_PAGE_ROWS = 1000  # expired rows read, opened and purged per round trip


# The latest expiry: a day before year 10000 in UTC, so that its local time in any time zone
# (the session's, in which psycopg reads timestamps) is still before year 10000.
LATEST_EXPIRY = dt.datetime(9999, 12, 30, tzinfo=dt.timezone.utc)


def _aware(name: str, value: Any) -> dt.datetime:
    """``value`` in UTC. Compared in UTC: two datetimes with the same tzinfo object compare by
    wall-clock time, so an hour that repeats when summer time ends would compare wrong."""
    if not isinstance(value, dt.datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    try:
        return value.astimezone(dt.timezone.utc)
    except OverflowError:
        raise ValueError(f"{name} is out of range") from None


def expiry_of(expires_at: Any, ttl: Any, *, now: dt.datetime | None = None) -> dt.datetime | None:
    """A chunk's expiry from ``expires_at`` or ``ttl`` (at most one), None for none.

    Raises:
        ValueError: both given, a naive datetime, a ttl that is not a positive
            ``timedelta`` or number of seconds, or an expiry that is not in the future.
    """
    if expires_at is not None and ttl is not None:
        raise ValueError("give expires_at or ttl, not both")
    now = now or dt.datetime.now(dt.timezone.utc)
    if ttl is not None:
        try:
            if isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
                ttl = dt.timedelta(seconds=ttl)  # NaN: ValueError; inf or huge: OverflowError
            if isinstance(ttl, dt.timedelta) and dt.timedelta(0) < ttl and now + ttl <= LATEST_EXPIRY:
                return now + ttl
        except (OverflowError, ValueError):
            pass
        raise ValueError("ttl must be a positive timedelta or number of seconds, ending before 9999-12-30")
    if expires_at is None:
        return None
    expires_at = _aware("expires_at", expires_at)
    if not now < expires_at <= LATEST_EXPIRY:
        raise ValueError("expires_at must be in the future, and before 9999-12-30")
    return expires_at


@dataclass(frozen=True)
class TimeWindow:
    """Bounds on when rows were created and last updated (each strict; None: no bound)."""

    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    updated_after: dt.datetime | None = None
    updated_before: dt.datetime | None = None

    def __post_init__(self) -> None:
        for name in ("created_after", "created_before", "updated_after", "updated_before"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _aware(name, getattr(self, name)))

    def bounds(self) -> list[dt.datetime | None]:
        """The SQL API's ``p_window``: the four bounds, or none at all for no window."""
        bounds = [self.created_after, self.created_before, self.updated_after, self.updated_before]
        return [] if all(b is None for b in bounds) else bounds

    def holds(self, created_at: dt.datetime, updated_at: dt.datetime) -> bool:
        """Whether a row with these timestamps (``updated_at``: last update, else creation) is in it."""
        return ((self.created_after is None or created_at > self.created_after)
                and (self.created_before is None or created_at < self.created_before)
                and (self.updated_after is None or updated_at > self.updated_after)
                and (self.updated_before is None or updated_at < self.updated_before))


@dataclass(frozen=True)
class RowTimes:
    """A read row's timestamps, as the database states them."""

    created_at: dt.datetime
    updated_at: dt.datetime
    expires_at: dt.datetime | None

    @classmethod
    def of(cls, row: Sequence) -> RowTimes:
        """From a v3 read's row, whose last three columns are created_at, updated_at, expires_at
        (in UTC here, whatever the session's time zone)."""
        created, updated, expires = (None if t is None else t.astimezone(dt.timezone.utc) for t in row[-3:])
        return cls(created, updated or created, expires)

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def current_rows(rows: Sequence[Sequence], window: TimeWindow) -> list[Sequence]:
    """The rows whose stated expiry has not passed by this client's clock (the database left
    out those expired by its own), after checking that each lies in ``window``.

    Raises:
        TamperedRow: a row the database returned lies outside the window by its own timestamps.
    """
    now = dt.datetime.now(dt.timezone.utc)
    kept = []
    for row in rows:
        times = RowTimes.of(row)
        if not window.holds(times.created_at, times.updated_at):
            raise TamperedRow("the database returned a row outside the time window asked for")
        if not times.expired(now):
            kept.append(row)
    return kept


async def purge_expired_chunks(conn, user_id: str) -> int:
    """Delete the tenant's expired chunks (and their keyword postings); return how many.

    The expired rows are read (an audited export of expired rows only) and opened: each
    one's AAD binds its expiry, so a row opens only with the expiry it was written with.
    Those whose sealed expiry has passed, by this client's clock too, are deleted, each only
    if it is still as read (``pymem.purge_expired``), audited in the tenant's chain as
    ``purge`` with their ids and their write records as read, which ``pymem verify-rows``
    checks against their latest audited writes (an older copy put back, whose sealed expiry
    has passed, is reported, not purged quietly). Whoever writes the tables cannot get a row
    purged by giving it a past ``expires_at``. Safe to run at any time and from a scheduler.

    Args:
        conn: a connection or pool of a role that has ``pymem_app``.
        user_id: the tenant's application user id.

    Raises:
        InvalidTag: an expired row does not open (its expiry, or another field, was changed in
            the table): nothing more is purged.
        TamperedRow: a row sealed before revision 0022, whose AAD binds no expiry, has one.
    """
    return await purge_expired_of(conn, hmac_user(user_id))


async def purge_expired_of(conn, user_hash: str) -> int:
    """:func:`purge_expired_chunks` for a tenant named by its hash (``pymem purge-expired --all``)."""
    # Imported here: pymem.chunks and pymem.repository import this module.
    from .chunks import chunk_digest, open_row
    from .reads import durable_read_with_keys
    from .repository import EXPORT_SQL, keys_of_rows
    from .security import keyring
    from .write_records import stored_record

    index = keyring().tenant_index(user_hash)

    purged, after = 0, None
    async with borrow(conn) as conn:
        while True:
            digest = (None, PURGE_PAGE_ROWS, [], "expired")
            rows, live = await durable_read_with_keys(conn, user_hash, "export_v3", digest, EXPORT_SQL,
                                                      (None, after, PURGE_PAGE_ROWS, [], "expired"))
            if not rows:
                return purged
            after = rows[-1][0]
            keys = await keys_of_rows(conn, user_hash, rows, live)
            now = dt.datetime.now(dt.timezone.utc)
            due = []
            for row in rows:
                if row[7] != 3:
                    raise TamperedRow("a row sealed without its expiry (AAD before v3) has one: it was set in the"
                                      " table; nothing more was purged")
                open_row(user_hash, row, keys)  # InvalidTag unless its expiry is the one sealed
                if RowTimes.of(row).expired(now):
                    due.append(row)
            if due:
                async with tenant_transaction(conn, user_hash):
                    cursor = await conn.execute(_PURGE_SQL, (user_hash, [r[0] for r in due],
                                                             [chunk_digest(r) for r in due],
                                                             [stored_record(index, r) for r in due]))
                    purged += (await cursor.fetchone())[0]
            if len(rows) < PURGE_PAGE_ROWS:
                return purged
