"""A chunk's lifetime and the filters of revision 0022, as the app role against the real
database: timestamps in every read, expiry that no read path returns, the audited purge,
time windows, and $ne / $nin / $exists each selecting exactly its rows."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import pytest
from cryptography.exceptions import InvalidTag

from pymem import repository as repo
from pymem.audit import verify_audit_log
from pymem.errors import TamperedRow
from pymem.freshness import verify_rows
from pymem.lifecycle import purge_expired_chunks
from pymem.partial_update import ChunkUpdate, update_memory_chunks
from pymem.reads import durable_read
from pymem.repository import ChunkInput
from pymem.security import hmac_user, keyring
from pymem.terms import query_terms
from tests.utils import vec

pytestmark = pytest.mark.citus

UTC = dt.timezone.utc


@pytest.fixture
def tenant() -> str:
    return f"tenant-{uuid.uuid4()}"


def row(i: int, **kwargs) -> ChunkInput:
    return ChunkInput(f"doc-{i}", "notes", kwargs.pop("text", f"note {i} about the quokka"), vec(i),
                      kwargs.pop("metadata", {"n": i}), id=kwargs.pop("id", f"c{i}"), **kwargs)


async def db_now(aconn) -> dt.datetime:
    """The database's clock (what created_at and updated_at are read from)."""
    async with aconn.transaction():
        return (await (await aconn.execute("SELECT pg_catalog.clock_timestamp()")).fetchone())[0]


async def ids_of(aconn, tenant, **options) -> set[str]:
    return {h.external_id for h in await repo.query_memory(aconn, tenant, "quokka", vec(0), k=50, candidates=50,
                                                           rerank=False, **options)}


async def test_every_read_says_when_a_chunk_was_created_updated_and_expires(aconn, tenant):
    before = await db_now(aconn)
    expires = dt.datetime.now(UTC) + dt.timedelta(days=3)
    await repo.upsert_memory_chunks(aconn, tenant, [row(1), row(2, expires_at=expires)])
    await update_memory_chunks(aconn, tenant, [ChunkUpdate("c2", text="edited about the quokka")])
    after = await db_now(aconn)
    hit = {h.external_id: h for h in await repo.query_memory(aconn, tenant, "quokka", vec(1), rerank=False)}
    [got] = await repo.get_memory_chunks(aconn, tenant, ["c2"])
    listed = {h.external_id: h for h in (await repo.list_memory_chunks(aconn, tenant)).hits}
    for c2 in (hit["c2"], got, listed["c2"]):
        assert before < c2.created_at < c2.updated_at < after
        assert c2.expires_at == expires  # kept through the update
    for c1 in (hit["c1"], listed["c1"]):
        assert before < c1.created_at == c1.updated_at < after and c1.expires_at is None


async def test_an_expired_chunk_is_returned_by_no_read_path(aconn, tenant):
    user_hash = hmac_user(tenant)
    await repo.upsert_memory_chunks(aconn, tenant, [row(1, ttl=1), row(2)])
    assert await ids_of(aconn, tenant) == {"c1", "c2"}
    await asyncio.sleep(1.2)
    assert await ids_of(aconn, tenant) == {"c2"}
    assert await ids_of(aconn, tenant, hybrid=True) == {"c2"}
    assert await ids_of(aconn, tenant, where={"n": {"$in": [1, 2]}}) == {"c2"}
    assert [h.external_id for h in await repo.get_memory_chunks(aconn, tenant, ["c1", "c2"])] == ["c2"]
    assert [h.external_id for h in (await repo.list_memory_chunks(aconn, tenant)).hits] == ["c2"]
    assert await repo.get_chunk(aconn, tenant, keyring().tenant_index(user_hash).row_id("c1")) is None
    # The database leaves it out (not only the client, which drops a row its clock says
    # expired), and so do the functions of older revisions, which apps not yet upgraded call.
    expired = keyring().tenant_index(user_hash).row_id("c1")
    terms, _ = query_terms(keyring().tenant_index(user_hash), "quokka", "english")
    for read, sql, params in [
        ("search_v3", "SELECT id FROM pymem.search_chunks_v3(%s, %s, %b, %s, %b, %b, %b, %b)",
         (vec(1), 10, [], [], [], None)),
        ("search_v3", "SELECT id FROM pymem.search_chunks_v3(%s, %s, %b, %s, %b, %b, %b, %b)",
         (vec(1), 10, [], [], [], terms)),
        ("get", "SELECT id FROM pymem.get_chunks_v3(%s, %s, %b)", ([expired],)),
        ("filtered_search", "SELECT id FROM pymem.search_chunks_v2(%s, %s, %b, %s, %b, %b)", (vec(1), 10, [], [])),
        ("hybrid_search", "SELECT id FROM pymem.search_hybrid_chunks(%s, %s, %b, %s, %b, %b, %b)",
         (vec(1), 10, [], [], terms)),
        ("search", "SELECT id FROM pymem.search_chunks(%s, %s, %b, %s)", (vec(1), 10)),
        ("get", "SELECT id FROM pymem.get_chunks_v2(%s, %s, %b)", ([expired],)),
        ("get", "SELECT id FROM pymem.get_chunks(%s, %s, %b)", ([expired],)),
    ]:
        rows = await durable_read(aconn, user_hash, read, params, sql, params)
        assert expired not in {r[0] for r in rows}, sql
    for sql in ("SELECT id FROM pymem.export_chunks_v2(%s, %s, %b, %s, %s)",
                "SELECT id FROM pymem.export_chunks(%s, %s, %b, %s, %s)"):
        rows = await durable_read(aconn, user_hash, "export", (None, 100), sql, (None, None, 100))
        assert expired not in {r[0] for r in rows} and rows, sql
    export = "SELECT id FROM pymem.export_chunks_v3(%s, %s, %b, %s, %s, %b, %s)"
    for which in ("live", "all", "expired"):  # only a maintenance export names expired rows
        rows = await durable_read(aconn, user_hash, "export_v3", (None, 100, [], which), export,
                                  (None, None, 100, [], which))
        assert (expired in {r[0] for r in rows}) == (which != "live")
        assert len(rows) == {"live": 1, "all": 2, "expired": 1}[which]


async def test_expired_chunks_are_purged_with_an_audit_row_and_nothing_else(aconn, admin_conn, tenant):
    user_hash = hmac_user(tenant)
    await repo.upsert_memory_chunks(aconn, tenant, [row(1, ttl=1), row(2, ttl=3600), row(3)])
    await asyncio.sleep(1.2)
    assert await purge_expired_chunks(aconn, tenant) == 1
    left = admin_conn.execute("SELECT id FROM pymem.memory_chunks WHERE user_hash = %s", (user_hash,)).fetchall()
    expired = keyring().tenant_index(user_hash).row_id("c1")
    assert expired not in {r[0] for r in left} and len(left) == 2
    assert admin_conn.execute("SELECT count(*) FROM pymem.memory_terms WHERE chunk_id = %s",
                              (expired,)).fetchone()[0] == 0
    audit = admin_conn.execute("SELECT operation, phase, chunk_ids FROM pymem.audit_log WHERE user_hash = %s"
                               " ORDER BY chain_pos DESC LIMIT 1", (user_hash,)).fetchone()
    assert audit == ("purge", "write", [expired])
    assert await purge_expired_chunks(aconn, tenant) == 0  # nothing more to purge
    assert verify_audit_log(admin_conn) == []
    assert not [p for p in verify_rows(admin_conn, user_hashes=[user_hash]).problems]


@pytest.mark.parametrize("expiry", [
    {"expires_at": dt.datetime(2030, 1, 1)},  # naive
    {"expires_at": dt.datetime(2020, 1, 1, tzinfo=UTC)},  # past
    {"ttl": 0}, {"ttl": -5}, {"ttl": True}, {"ttl": "60"},
    {"ttl": float("nan")}, {"ttl": float("inf")}, {"ttl": 1e20},  # past year 9999
    # UTC 10000-01-01 11:00: psycopg could not read it back, and every read of the tenant failed
    {"expires_at": dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(dt.timedelta(hours=-12)))},
    {"ttl": 60, "expires_at": dt.datetime(2030, 1, 1, tzinfo=UTC)},
])
async def test_a_bad_expiry_is_refused_before_anything_is_written(aconn, admin_conn, tenant, expiry):
    with pytest.raises(ValueError):
        await repo.upsert_memory_chunks(aconn, tenant, [row(1, **expiry)])
    assert admin_conn.execute("SELECT count(*) FROM pymem.memory_chunks WHERE user_hash = %s",
                              (hmac_user(tenant),)).fetchone()[0] == 0


async def test_an_update_can_give_a_new_expiry_and_an_upsert_without_one_removes_it(aconn, tenant):
    await repo.upsert_memory_chunks(aconn, tenant, [row(1, ttl=3600)])
    later = dt.datetime.now(UTC) + dt.timedelta(days=30)
    await update_memory_chunks(aconn, tenant, [ChunkUpdate("c1", expires_at=later)])
    assert (await repo.get_memory_chunks(aconn, tenant, ["c1"]))[0].expires_at == later
    await repo.upsert_memory_chunks(aconn, tenant, [row(1)])
    assert (await repo.get_memory_chunks(aconn, tenant, ["c1"]))[0].expires_at is None


async def test_time_windows_select_exactly_the_rows_created_or_updated_in_them(aconn, tenant):
    await repo.upsert_memory_chunks(aconn, tenant, [row(1), row(2)])
    t1 = await db_now(aconn)
    await repo.upsert_memory_chunks(aconn, tenant, [row(3)])
    t2 = await db_now(aconn)
    await update_memory_chunks(aconn, tenant, [ChunkUpdate("c1", metadata={"n": 10})])
    assert await ids_of(aconn, tenant, created_after=t1) == {"c3"}
    assert await ids_of(aconn, tenant, created_before=t1) == {"c1", "c2"}
    assert await ids_of(aconn, tenant, created_after=t1, created_before=t2) == {"c3"}
    assert await ids_of(aconn, tenant, updated_after=t2) == {"c1"}
    assert await ids_of(aconn, tenant, updated_before=t2) == {"c2", "c3"}
    assert await ids_of(aconn, tenant, updated_after=t2, hybrid=True) == {"c1"}
    assert await ids_of(aconn, tenant, created_before=t1, where={"n": {"$ne": 2}}) == {"c1"}
    listed = await repo.list_memory_chunks(aconn, tenant, created_after=t1)
    assert [h.external_id for h in listed.hits] == ["c3"]
    with pytest.raises(ValueError):
        await repo.query_memory(aconn, tenant, "q", vec(1), created_after=dt.datetime(2020, 1, 1))  # naive


# Each row's metadata, and for each filter the rows it selects (a list value holds each element).
ROWS = {"r0": {"color": "red", "n": 1}, "r1": {"color": "blue", "n": 2}, "r2": {"color": "green"}, "r3": {"n": 3},
        "r4": {"color": ["red", "blue"]}, "r5": {}}
CASES = [
    ({"color": {"$ne": "red"}}, {"r1", "r2", "r3", "r5"}),
    ({"color": {"$nin": ["red", "blue"]}}, {"r2", "r3", "r5"}),
    ({"color": {"$exists": True}}, {"r0", "r1", "r2", "r4"}),
    ({"color": {"$exists": False}}, {"r3", "r5"}),
    ({"$or": [{"color": "green"}, {"n": {"$exists": True}}]}, {"r0", "r1", "r2", "r3"}),
    ({"n": {"$exists": True}, "color": {"$ne": "blue"}}, {"r0", "r3"}),
    ({"color": {"$ne": "red"}, "n": {"$nin": [2]}}, {"r2", "r3", "r5"}),
    ({"$and": [{"color": {"$exists": False}}, {"n": {"$exists": False}}]}, {"r5"}),
    ({"color": {"$in": ["red", "green"]}, "n": {"$ne": 1}}, {"r2", "r4"}),
]


@pytest.mark.parametrize("hybrid", [False, True], ids=["vector", "hybrid"])
async def test_each_filter_operator_selects_exactly_its_rows(aconn, tenant, hybrid):
    await repo.upsert_memory_chunks(aconn, tenant, [ChunkInput("d", "s", f"the quokka {name}", vec(i), metadata,
                                                               id=name)
                                                    for i, (name, metadata) in enumerate(ROWS.items())])
    for where, expected in CASES:
        assert await ids_of(aconn, tenant, where=where, hybrid=hybrid) == expected, where


async def test_rows_written_without_key_tags_are_found_by_neither_exists_form(aconn, admin_conn, tenant):
    """A row written before 0022 has value tags only: $exists cannot tell, so it matches
    neither form (not the wrong one) until re-written; $ne still sees its values."""
    await repo.upsert_memory_chunks(aconn, tenant, [row(1, metadata={"color": "red"}), row(2, metadata={})])
    index = keyring().tenant_index(hmac_user(tenant))
    old = index.compile_filter({"color": "red"})[0][0]  # its value tag, as a 0021 client wrote it
    admin_conn.execute("UPDATE pymem.memory_chunks SET meta_tags = CASE WHEN meta_tags && %s THEN %s ELSE '{}' END"
                       " WHERE user_hash = %s", ([old], [old], hmac_user(tenant)))
    assert await ids_of(aconn, tenant, where={"color": {"$exists": True}}) == set()
    assert await ids_of(aconn, tenant, where={"color": {"$exists": False}}) == set()
    assert await ids_of(aconn, tenant, where={"color": {"$ne": "blue"}}) == {"c1", "c2"}
    await repo.upsert_memory_chunks(aconn, tenant, [row(1, metadata={"color": "red"})])
    assert await ids_of(aconn, tenant, where={"color": {"$exists": True}}) == {"c1"}


@pytest.mark.parametrize("where", [{"$or": [{"a": {"$ne": 1}}, {"b": 2}]}, {"a": {"$exists": 1}},
                                   {"a": {"$nin": []}}, {"a": {"$nin": "ab"}}, {"a": {"$ne": 1, "$eq": 2}}])
async def test_negations_it_cannot_evaluate_are_refused(aconn, tenant, where):
    with pytest.raises(ValueError):
        await repo.query_memory(aconn, tenant, "q", vec(1), rerank=False, where=where)


# -- what whoever writes the tables can and cannot do with expiry (the DBA review of 0022) --

def _set_expiry(admin_conn, tenant: str, external_id: str, sql_value: str) -> None:
    row_id = keyring().tenant_index(hmac_user(tenant)).row_id(external_id)
    with admin_conn.transaction():
        admin_conn.execute("SET LOCAL session_replication_role = replica")  # no trace in the audit
        admin_conn.execute(f"UPDATE pymem.memory_chunks SET expires_at = {sql_value} WHERE id = %s", (row_id,))


async def test_a_past_expiry_set_in_the_table_gets_no_row_purged(aconn, admin_conn, tenant):
    """The DBA gives a row that has no expiry a past one, hoping the app's scheduled purge
    deletes it under the app's name: the purge opens each expired row, whose AAD (v3) binds
    the expiry it was written with, and refuses; the row stays."""
    user_hash = hmac_user(tenant)
    await repo.upsert_memory_chunks(aconn, tenant, [row(1), row(2, ttl=3600)])
    _set_expiry(admin_conn, tenant, "c1", "now() - interval '1 second'")
    with pytest.raises(InvalidTag):
        await purge_expired_chunks(aconn, tenant)
    assert admin_conn.execute("SELECT count(*) FROM pymem.memory_chunks WHERE user_hash = %s",
                              (user_hash,)).fetchone()[0] == 2
    assert admin_conn.execute("SELECT count(*) FROM pymem.audit_log WHERE user_hash = %s AND operation = 'purge'",
                              (user_hash,)).fetchone()[0] == 0
    # A row sealed before 0022 (AAD v2) binds no expiry: one in the table was set there.
    admin_conn.execute("UPDATE pymem.memory_chunks SET aad_version = 2 WHERE user_hash = %s", (user_hash,))
    with pytest.raises(TamperedRow, match="sealed without its expiry"):
        await purge_expired_chunks(aconn, tenant)


async def test_an_expiry_changed_in_the_table_makes_the_row_fail_to_open(aconn, admin_conn, tenant):
    """Kept past its expiry (or shortened, or given one), a row no longer opens: its AAD binds it."""
    await repo.upsert_memory_chunks(aconn, tenant, [row(1, ttl=3600)])
    _set_expiry(admin_conn, tenant, "c1", "'2999-01-01 00:00:00+00'")  # a constant: Citus refuses expires_at + interval
    with pytest.raises(InvalidTag):
        await repo.get_memory_chunks(aconn, tenant, ["c1"])
    with pytest.raises(InvalidTag):
        await ids_of(aconn, tenant)


async def test_the_client_drops_expired_rows_and_checks_the_window_whatever_the_database_says(own_db):
    """A server whose row_in_window was replaced to pass every row: the client still returns
    no expired row, and a row outside the window by its own timestamps is TamperedRow."""
    aconn, admin_conn = own_db
    tenant = f"tenant-{uuid.uuid4()}"
    await repo.upsert_memory_chunks(aconn, tenant, [row(1, ttl=1), row(2)])
    await asyncio.sleep(1.2)
    admin_conn.execute("CREATE OR REPLACE FUNCTION pymem.row_in_window(p_created timestamptz, p_updated timestamptz,"
                       " p_expires timestamptz, p_window timestamptz[]) RETURNS boolean LANGUAGE sql STABLE"
                       " RETURN true")
    assert await ids_of(aconn, tenant) == {"c2"}
    assert [h.external_id for h in await repo.get_memory_chunks(aconn, tenant, ["c1", "c2"])] == ["c2"]
    assert [h.external_id for h in (await repo.list_memory_chunks(aconn, tenant)).hits] == ["c2"]
    future = dt.datetime.now(UTC) + dt.timedelta(days=1)
    with pytest.raises(TamperedRow, match="time window"):
        await ids_of(aconn, tenant, created_after=future)
    with pytest.raises(TamperedRow, match="time window"):
        await repo.list_memory_chunks(aconn, tenant, updated_after=future)


async def test_a_window_in_a_zone_whose_clock_repeats_an_hour_is_compared_in_utc(aconn, admin_conn, tenant):
    """The night summer time ends, 01:10 comes twice: a row created at the second one is after
    01:50 of the first, and the database's session speaks that zone (the review's false alarm)."""
    ny = ZoneInfo("America/New_York")
    await repo.upsert_memory_chunks(aconn, tenant, [row(1)])
    with admin_conn.transaction():
        admin_conn.execute("SET LOCAL session_replication_role = replica")
        admin_conn.execute("UPDATE pymem.memory_chunks SET created_at = '2024-11-03 06:10:00+00'"
                           " WHERE user_hash = %s", (hmac_user(tenant),))
    await aconn.execute("SET TimeZone = 'America/New_York'")
    try:
        bound = dt.datetime(2024, 11, 3, 1, 50, tzinfo=ny)  # 05:50Z
        assert await ids_of(aconn, tenant, created_after=bound) == {"c1"}
        listed = await repo.list_memory_chunks(aconn, tenant, created_before=bound + dt.timedelta(hours=1))
        assert [h.external_id for h in listed.hits] == ["c1"]
    finally:
        await aconn.execute("RESET TimeZone")


async def test_metadata_is_tagged_as_sealed_so_ne_on_a_tuple_value_is_no_false_alarm(aconn, tenant):
    """A tuple is sealed as a JSON list: its elements are tagged as a list's are, so the
    client's check of $ne agrees with the database (it raised TamperedRow)."""
    await repo.upsert_memory_chunks(aconn, tenant, [row(1, metadata={"tags": ("a", "b")}),
                                                    row(2, metadata={"tags": "c"}), row(3, metadata={7: "int key"})])
    assert await ids_of(aconn, tenant, where={"tags": "a"}) == {"c1"}
    assert await ids_of(aconn, tenant, where={"tags": {"$ne": "a"}}) == {"c2", "c3"}
    assert await ids_of(aconn, tenant, where={"7": "int key"}) == {"c3"}  # a key is sealed, and tagged, as a str


@pytest.mark.parametrize("tags, ends", [("[0:1]={A,B}", "{2}"), ("{A,B}", "[2:3]={2,-1}"), ("{A,B}", "{-2147483648}"),
                                        ("{A,B}", "{2,0}")])
def test_a_filter_whose_arrays_do_not_start_at_1_is_refused(admin_conn, tags, ends):
    """The searches slice p_filter[1:end] and read p_ends[i - 1]: arrays with other subscripts,
    or ends out of range, are refused, not read otherwise than they were checked (the keyless
    review found '[0:1]={A,B}' with ends '{2}' searched for B alone)."""
    import psycopg

    tag_a, tag_b = "\\\\x" + "aa" * 16, "\\\\x" + "bb" * 16  # a backslash, escaped in an array literal
    literal = tags.replace("A", f'"{tag_a}"').replace("B", f'"{tag_b}"')
    admin_conn.execute("SELECT pymem.check_filter_v2(%s::bytea[], '{1,2}')", ("{" + literal.split("{")[1],))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="a filter is up to 64 clauses"):
        admin_conn.execute("SELECT pymem.check_filter_v2(%s::bytea[], %s::int[])", (literal, ends))


async def test_an_expired_chunk_keeps_its_id_until_purged_and_an_upsert_makes_it_new(aconn, tenant):
    await repo.upsert_memory_chunks(aconn, tenant, [row(1, ttl=1)])
    await asyncio.sleep(1.2)
    with pytest.raises(repo.DuplicateId):
        await repo.index_memory_chunks(aconn, tenant, [row(1)])
    before = await db_now(aconn)
    await repo.upsert_memory_chunks(aconn, tenant, [row(1)])
    [again] = await repo.get_memory_chunks(aconn, tenant, ["c1"])
    assert again.created_at > before and again.expires_at is None  # a new chunk, not the expired one's date


# -- the second DBA review of 0022: copies put back, versions relabelled, moves, hidden rows --

_ALL_COLUMNS = ("id, user_hash, doc_id, source, text_cipher, meta_cipher, emb_cipher, ref_cipher, meta_tags, key_id,"
                " embedding, aad_version, created_at, updated_at, expires_at")


def _problems(admin_conn, tenant: str) -> set[str]:
    return {p.problem.split(" (")[0] for p in verify_rows(admin_conn, [hmac_user(tenant)]).problems}


async def test_an_older_copy_put_back_and_purged_as_expired_is_reported(aconn, admin_conn, tenant):
    """The app wrote c1 for a second, then kept it a day. The DBA puts back the first version
    (a genuine seal whose expiry has passed): the purge removes it, as it should not stay
    readable, and the purge's audit row names the record it read, which verify-rows finds is
    not the one the latest audited write left."""
    await repo.upsert_memory_chunks(aconn, tenant, [row(1, ttl=1), row(2)])
    old = admin_conn.execute(f"SELECT {_ALL_COLUMNS} FROM pymem.memory_chunks WHERE id = %s",
                             (keyring().tenant_index(hmac_user(tenant)).row_id("c1"),)).fetchone()
    await update_memory_chunks(aconn, tenant, [ChunkUpdate("c1", ttl=86_400)])
    await asyncio.sleep(1.2)
    with admin_conn.transaction():
        admin_conn.execute("SET LOCAL session_replication_role = replica")
        admin_conn.execute("DELETE FROM pymem.memory_chunks WHERE id = %s", (old[0],))
        admin_conn.execute(f"INSERT INTO pymem.memory_chunks ({_ALL_COLUMNS})"
                           f" VALUES ({', '.join(['%s'] * len(old))})", old)
    assert await purge_expired_chunks(aconn, tenant) == 1
    assert _problems(admin_conn, tenant) == {"purged as expired, but not what its latest audited write left"}


async def test_a_row_under_an_aad_version_no_layout_has_opens_nowhere_and_is_not_purged(own_db):
    """A v2 row relabelled 4 opened as v2 and passed the purge's check (the second review)."""
    aconn, admin_conn = own_db
    tenant = f"tenant-{uuid.uuid4()}"
    await repo.upsert_memory_chunks(aconn, tenant, [row(1)])
    admin_conn.execute("ALTER TABLE pymem.memory_chunks DROP CONSTRAINT memory_chunks_aad_version_check")
    with admin_conn.transaction():
        admin_conn.execute("SET LOCAL session_replication_role = replica")
        admin_conn.execute("UPDATE pymem.memory_chunks SET aad_version = 4, expires_at = now() - interval '1 s'"
                           " WHERE user_hash = %s", (hmac_user(tenant),))
    with pytest.raises(TamperedRow, match="sealed without its expiry"):
        await purge_expired_chunks(aconn, tenant)
    with admin_conn.transaction():
        admin_conn.execute("SET LOCAL session_replication_role = replica")
        admin_conn.execute("UPDATE pymem.memory_chunks SET expires_at = NULL WHERE user_hash = %s",
                           (hmac_user(tenant),))
    with pytest.raises(InvalidTag):
        await repo.get_memory_chunks(aconn, tenant, ["c1"])


async def test_a_row_hidden_by_a_past_expiry_set_in_the_table_is_reported_by_verify_rows(aconn, admin_conn, tenant):
    """No read returns it (its expiry says it passed), and none opens it: its write record,
    which covers the expiry a v3 row was sealed with, is what reports it."""
    await repo.upsert_memory_chunks(aconn, tenant, [row(1), row(2)])
    assert _problems(admin_conn, tenant) == set()
    _set_expiry(admin_conn, tenant, "c1", "now() - interval '1 second'")
    assert await ids_of(aconn, tenant) == {"c2"}
    assert _problems(admin_conn, tenant) == {"not what its latest audited write wrote"}


@pytest.mark.parametrize("value", ["'infinity'", "'-infinity'", "'10000-01-01 00:00:00+00'"])
def test_an_expiry_no_client_can_read_back_is_refused_by_the_table(admin_conn, value):
    """psycopg reads no infinity and nothing past year 9999: such a value, set in the table,
    made every read of the tenant and verify-rows fail (the second review)."""
    import psycopg

    with pytest.raises(psycopg.errors.CheckViolation, match="memory_chunks_expires_at_check"), \
            admin_conn.transaction():
        admin_conn.execute("SET LOCAL session_replication_role = replica")
        admin_conn.execute(f"UPDATE pymem.memory_chunks SET expires_at = {value}")
