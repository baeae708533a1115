"""The adoptable API: any connection or pool, caller ids, upsert, batch get/delete,
listing, filters on sealed metadata, embeddings and a distance threshold in results.

All as a login role with pymem_app, against the real database; raw rows are
inspected on a superuser connection, the strongest reader the design survives.
"""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pymem import repository as repo
from pymem import sync
from pymem.chunks import seal_row
from pymem.connections import configure, reset
from pymem.repository import ChunkInput, DuplicateId
from pymem.security import hmac_user, keyring
from pymem.tenant import enter_tenant_call
from pymem.tenant_keys import TenantKeys
from tests.utils import DIM, vec

# Also run through a Citus coordinator (make test-citus).
pytestmark = pytest.mark.citus


def near(base: np.ndarray, seed: int, spread: float = 0.05) -> np.ndarray:
    v = base + spread * vec(seed)
    return v / np.linalg.norm(v)


@pytest.fixture
def tenant() -> str:
    return f"tenant-{uuid.uuid4()}"


def chunk(i: int, **kwargs) -> ChunkInput:
    return ChunkInput(kwargs.pop("doc_id", f"doc-{i}"), "notes", kwargs.pop("text", f"note {i}"),
                      kwargs.pop("embedding", vec(i)), **kwargs)


# ---------------------------------------------------------------------------
# connections and pools
# ---------------------------------------------------------------------------
async def test_a_plain_async_connection_works_as_the_app_made_it(app_url, tenant):
    # Not made by pymem: no autocommit, no pgvector types, a dict row factory.
    async with await psycopg.AsyncConnection.connect(app_url, row_factory=dict_row) as conn:
        ids = await repo.index_memory_chunks(conn, tenant, [chunk(1), chunk(2)])
        hits = await repo.query_memory(conn, tenant, "q", vec(1), k=2, rerank=False)
        assert [h.id for h in hits] == [ids[0], ids[1]]
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE and conn.autocommit is False
        assert (await (await conn.execute("SELECT 1 AS one")).fetchone()) == {"one": 1}  # the app's factory is back


def test_a_plain_sync_connection_works_through_the_sync_api(app_url, tenant):
    with psycopg.connect(app_url) as conn:
        sync.upsert_memory_chunks(conn, tenant, [chunk(1, id="first"), chunk(2, id="second")])
        hits = sync.query_memory(conn, tenant, "q", vec(2), k=1, rerank=False)
        assert [h.external_id for h in hits] == ["second"]
        assert [h.text for h in sync.get_memory_chunks(conn, tenant, ["first"])] == ["note 1"]
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


async def test_an_async_pool_with_pymem_configure_and_reset(app_url, tenant):
    async with AsyncConnectionPool(app_url, min_size=1, max_size=2, configure=configure, reset=reset,
                                   open=False) as pool:
        await repo.upsert_memory_chunks(pool, tenant, [chunk(i, id=f"p{i}") for i in range(6)])
        results = await asyncio.gather(*(repo.query_memory(pool, tenant, "q", vec(i), k=1, rerank=False)
                                         for i in range(6)))
        assert [r[0].external_id for r in results] == [f"p{i}" for i in range(6)]


def test_a_sync_pool_with_pymem_configure_and_reset(app_url, tenant):
    with ConnectionPool(app_url, min_size=1, max_size=2, configure=sync.configure, reset=sync.reset,
                        open=True) as pool:
        assert sync.upsert_memory_chunks(pool, tenant, [chunk(1, id="a"), chunk(2, id="b")]) == ["a", "b"]
        assert sync.delete_memory_chunks(pool, tenant, ["a", "missing"]) == 1
        assert [h.external_id for h in sync.list_memory_chunks(pool, tenant).hits] == ["b"]


def test_reset_lets_psycopg_prepare_again_after_every_discard(app_url):
    # psycopg prepares a statement on its fifth run and DISCARD ALL drops it on the
    # server; psycopg 3.3.9 forgets it by itself only after the first DISCARD ALL.
    with psycopg.connect(app_url, autocommit=True) as conn:
        for _ in range(3):
            sync.reset(conn)
            for _ in range(conn.prepare_threshold + 2):
                assert conn.execute("SELECT 1").fetchone() == (1,)


async def test_one_pooled_connection_serves_many_reads_across_resets(app_url, tenant):
    # Each read sends the same statements, which psycopg prepares on their fifth run.
    async with AsyncConnectionPool(app_url, min_size=1, max_size=1, configure=configure, reset=reset,
                                   open=False) as pool:
        await repo.upsert_memory_chunks(pool, tenant, [chunk(i, id=f"r{i}") for i in range(3)])
        for round_number in range(12):
            hits = await repo.query_memory(pool, tenant, "q", vec(round_number % 3), k=1, rerank=False)
            assert [h.external_id for h in hits] == [f"r{round_number % 3}"]


async def test_the_sync_api_also_runs_from_inside_an_event_loop(app_url, tenant):
    with psycopg.connect(app_url) as conn:
        assert sync.upsert_memory_chunks(conn, tenant, [chunk(1, id="x")]) == ["x"]


async def test_a_connection_inside_a_transaction_is_refused(app_url, tenant):
    async with await psycopg.AsyncConnection.connect(app_url) as conn:
        await conn.execute("SELECT 1")  # opens the implicit transaction
        with pytest.raises(RuntimeError, match="already in one"):
            await repo.index_memory_chunks(conn, tenant, [chunk(1)])


async def test_something_else_than_a_connection_is_refused(tenant):
    with pytest.raises(TypeError, match="psycopg connection"):
        await repo.erase_user("postgresql://nowhere", tenant)


# ---------------------------------------------------------------------------
# ids, upsert, get, delete, list
# ---------------------------------------------------------------------------
async def test_caller_ids_are_never_stored_in_plaintext(aconn, admin_conn, tenant):
    secret_id = "invoice-2024-ACME-Corp-jane.doe@example.com"
    await repo.upsert_memory_chunks(aconn, tenant, [chunk(1, id=secret_id)])
    row = admin_conn.execute("SELECT * FROM pymem.memory_chunks WHERE user_hash = %s", (hmac_user(tenant),)).fetchone()
    raw = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row)
    for needle in (secret_id, "jane.doe@example.com", "invoice-2024"):
        assert needle.encode() not in raw
    [hit] = await repo.get_memory_chunks(aconn, tenant, [secret_id])
    assert hit.external_id == secret_id and hit.text == "note 1"


async def test_no_caller_id_reaches_the_database_as_given_uuids_included(aconn, admin_conn, tenant, second_round):
    """A6: a uuid5 of the content would confirm a guessed plaintext, a uuid1 shows a MAC
    address and a time; every caller id is keyed, and round-trips through ref."""
    given = [str(uuid.uuid5(uuid.NAMESPACE_URL, "guessable content")), str(uuid.uuid1()), "plain-id"]
    ids = await repo.upsert_memory_chunks(aconn, tenant, [chunk(i + 1, id=g) for i, g in enumerate(given)]
                                          + [chunk(9)])
    assert ids[:3] == given and str(uuid.UUID(ids[3])) == ids[3]
    stored = {str(r[0]) for r in admin_conn.execute("SELECT id FROM pymem.memory_chunks WHERE user_hash = %s",
                                                    (hmac_user(tenant),))}
    assert not stored & set(given) and ids[3] in stored  # a generated id is random: stored as it is
    raw = b"".join(bytes(r[0]) for r in admin_conn.execute(
        "SELECT convert_to(t::text, 'UTF8') FROM pymem.memory_chunks t WHERE user_hash = %s", (hmac_user(tenant),)))
    assert not any(g.encode() in raw for g in given) and not any(uuid.UUID(g).hex.encode() in raw for g in given[:2])
    hits = await repo.get_memory_chunks(aconn, tenant, ids)
    assert [h.external_id for h in hits] == ids
    assert await repo.delete_memory_chunks(aconn, tenant, ids) == 4
    second_round("A6: a uuid5 or uuid1 caller id stored as given")


async def test_a_row_stored_under_a_uuid_caller_id_before_0015_keeps_working(aconn, admin_conn, tenant):
    """How such rows migrate: reads and deletes find them under the old id, and an
    upsert moves the row to its keyed id (nothing is stored twice)."""
    given = str(uuid.uuid4())
    [row_id] = await repo.index_memory_chunks(aconn, tenant, [chunk(1)])  # a row without a caller id...
    user_hash = hmac_user(tenant)
    with admin_conn.transaction():  # ...re-stored under the caller's UUID as 0014 did (sealed for that id)
        index = keyring().tenant_index(user_hash)
        legacy = seal_row(user_hash, index, chunk(1), DIM, 65536, TenantKeys(user_hash, None, 0),
                          keyring().active_key_id, keep_row_id=uuid.UUID(given), aad_version=2)
        admin_conn.execute("DELETE FROM pymem.memory_chunks WHERE user_hash = %s AND id = %s", (user_hash, row_id))
        admin_conn.execute("INSERT INTO pymem.memory_chunks (id, user_hash, doc_id, source, text_cipher, meta_cipher,"
                           " emb_cipher, key_id, embedding, aad_version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 2)",
                           (legacy.id, user_hash, legacy.doc_id, legacy.source, legacy.text_cipher,
                            legacy.meta_cipher, legacy.emb_cipher, keyring().active_key_id, legacy.embedding))
    [hit] = await repo.get_memory_chunks(aconn, tenant, [given])
    assert (str(hit.id), hit.external_id) == (given, given)
    await repo.upsert_memory_chunks(aconn, tenant, [chunk(1, id=given, text="moved")])
    hits = await repo.get_memory_chunks(aconn, tenant, [given])
    assert [(h.external_id, h.text) for h in hits] == [(given, "moved")] and str(hits[0].id) != given
    assert admin_conn.execute("SELECT count(*) FROM pymem.memory_chunks WHERE user_hash = %s",
                              (user_hash,)).fetchone()[0] == 1
    assert await repo.delete_memory_chunks(aconn, tenant, [given]) == 1


async def test_upsert_replaces_atomically_and_is_audited_as_an_update(aconn, admin_conn, tenant):
    await repo.upsert_memory_chunks(aconn, tenant, [chunk(1, id="k1"), chunk(2, id="k2")])
    ids = await repo.upsert_memory_chunks(aconn, tenant, [chunk(1, id="k1", text="changed"), chunk(3, id="k3")])
    assert ids == ["k1", "k3"]
    page = await repo.list_memory_chunks(aconn, tenant)
    assert sorted((h.external_id, h.text) for h in page.hits) == [("k1", "changed"), ("k2", "note 2"), ("k3", "note 3")]
    user_hash = hmac_user(tenant)
    operations = admin_conn.execute(
        "SELECT operation, row_count FROM pymem.audit_log WHERE user_hash = %s AND phase = 'write'"
        " AND operation NOT LIKE 'key%%' ORDER BY chain_pos", (user_hash,)).fetchall()
    assert operations == [("insert", 2), ("insert", 1), ("update", 1)]
    live = admin_conn.execute("SELECT sum(live_rows) FROM pymem.key_stats WHERE user_hash = %s",
                              (user_hash,)).fetchone()[0]
    assert live == 3


async def test_insert_of_an_existing_id_writes_nothing(aconn, tenant):
    await repo.upsert_memory_chunks(aconn, tenant, [chunk(1, id="same")])
    with pytest.raises(DuplicateId):
        await repo.index_memory_chunks(aconn, tenant, [chunk(2, id="new"), chunk(3, id="same")])
    with pytest.raises(ValueError, match="twice"):
        await repo.upsert_memory_chunks(aconn, tenant, [chunk(4, id="dup"), chunk(5, id="dup")])
    assert [h.external_id for h in (await repo.list_memory_chunks(aconn, tenant)).hits] == ["same"]


async def test_batch_get_keeps_the_callers_order_and_leaves_out_missing_ids(aconn, tenant):
    await repo.upsert_memory_chunks(aconn, tenant, [chunk(i, id=f"id-{i}") for i in range(5)])
    hits = await repo.get_memory_chunks(aconn, tenant, ["id-3", "nope", "id-0", "id-3"])
    assert [h.external_id for h in hits] == ["id-3", "id-0"]


async def test_ids_are_per_tenant(aconn, tenant):
    other = f"other-{uuid.uuid4()}"
    await repo.upsert_memory_chunks(aconn, tenant, [chunk(1, id="shared-name")])
    await repo.upsert_memory_chunks(aconn, other, [chunk(2, id="shared-name", text="other's")])
    assert [h.text for h in await repo.get_memory_chunks(aconn, tenant, ["shared-name"])] == ["note 1"]
    assert await repo.delete_memory_chunks(aconn, other, ["shared-name"]) == 1
    assert [h.text for h in await repo.get_memory_chunks(aconn, tenant, ["shared-name"])] == ["note 1"]


async def test_list_pages_through_every_chunk_once(aconn, tenant):
    ids = await repo.upsert_memory_chunks(aconn, tenant, [chunk(i, id=f"n{i}") for i in range(7)])
    seen, cursor = [], None
    while True:
        page = await repo.list_memory_chunks(aconn, tenant, after=cursor, limit=3)
        seen += [h.external_id for h in page.hits]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == sorted(ids) and len(seen) == 7
    with pytest.raises(ValueError, match="next_cursor"):
        await repo.list_memory_chunks(aconn, tenant, after="not-a-cursor")


@pytest.mark.parametrize("bad", [[""], ["x" * 257], ["a\x00b"], "a-string", [], [1]])
async def test_bad_ids_are_refused_before_anything_is_sent(aconn, tenant, bad):
    with pytest.raises(ValueError):
        await repo.get_memory_chunks(aconn, tenant, bad)


# ---------------------------------------------------------------------------
# filters, embeddings, threshold
# ---------------------------------------------------------------------------
async def test_filters_eq_in_and_select_exactly_the_matching_rows(aconn, tenant):
    base = vec(7)
    colours = ["red", "green", "blue"]
    await repo.upsert_memory_chunks(aconn, tenant, [
        chunk(i, id=f"c{i}", embedding=near(base, i), metadata={"colour": colours[i % 3], "n": i % 2,
                                                               "tags": ["x", "y"] if i < 3 else ["z"]})
        for i in range(12)])

    async def found(where) -> set[str]:
        return {h.external_id for h in await repo.query_memory(aconn, tenant, "q", base, k=50, rerank=False,
                                                               where=where)}

    assert await found({"colour": "red"}) == {"c0", "c3", "c6", "c9"}
    assert await found({"colour": {"$eq": "red"}, "n": 1}) == {"c3", "c9"}
    assert await found({"colour": {"$in": ["red", "blue"]}}) == {f"c{i}" for i in range(12) if i % 3 != 1}
    assert await found({"$and": [{"n": 1.0}, {"tags": "y"}]}) == {"c1"}
    assert await found({"colour": "purple"}) == set()
    assert await found({"n": True}) == set()  # True is not 1
    # $or: one clause holding the tags of every alternative, on one key or several.
    assert await found({"$or": [{"colour": "red"}, {"colour": "blue"}]}) == await found(
        {"colour": {"$in": ["red", "blue"]}})
    assert await found({"$or": [{"colour": "green"}, {"tags": "z"}]}) == {
        f"c{i}" for i in range(12) if i % 3 == 1 or i >= 3}
    assert await found({"$or": [{"tags": "x"}, {"$or": [{"colour": "blue"}]}], "n": 0}) == {"c0", "c2", "c8"}
    assert await found({"$and": [{"$or": [{"colour": "red"}, {"n": 1}]}, {"tags": "y"}]}) == {"c0", "c1"}


async def test_filter_values_never_reach_the_database(aconn, admin_conn, tenant):
    await repo.upsert_memory_chunks(aconn, tenant, [chunk(1, metadata={"project": "Operation-Nightjar"})])
    raw = admin_conn.execute("SELECT meta_tags::text FROM pymem.memory_chunks WHERE user_hash = %s",
                             (hmac_user(tenant),)).fetchone()[0]
    # Three tags: the key's value, the key (for $exists) and the key-tag marker (0022).
    assert "Nightjar" not in raw and "project" not in raw and raw.count("\\\\x") == 3
    hits = await repo.query_memory(aconn, tenant, "q", vec(1), rerank=False, where={"project": "Operation-Nightjar"})
    assert len(hits) == 1


async def test_another_tenants_identical_metadata_never_matches(aconn, tenant):
    other = f"other-{uuid.uuid4()}"
    await repo.upsert_memory_chunks(aconn, other, [chunk(1, metadata={"team": "a"})])
    await repo.upsert_memory_chunks(aconn, tenant, [chunk(2, metadata={"team": "b"})])
    assert await repo.query_memory(aconn, tenant, "q", vec(1), rerank=False, where={"team": "a"}) == []


@pytest.mark.parametrize("where", [{"a": {"$gt": 1}}, {"a": {"$in": []}}, {"a": {"x": 1}}, {"a": [1, 2]},
                                   {"$and": []}, {"$or": []}, {"$or": {"a": 1}}, {"$or": [{"a": 1, "b": 2}]},
                                   {"$or": [{}]}, {"$or": [{"$and": [{"a": 1}]}]}, {"a": float("nan")}])
async def test_unsupported_filters_are_refused(aconn, tenant, where):
    with pytest.raises(ValueError):
        await repo.query_memory(aconn, tenant, "q", vec(1), rerank=False, where=where)


async def test_a_query_longer_than_the_text_limit_is_refused_before_any_work(aconn, tenant):
    """The reranker tokenizes the query with every candidate, and no latency budget stops
    that: an unbounded query was minutes of its one worker (this session's MCP review)."""
    with pytest.raises(ValueError, match="query is 65537 bytes"):
        await repo.query_memory(aconn, tenant, "q" * 65537, vec(1), rerank=True)


async def test_results_carry_the_opened_embedding_and_respect_max_distance(aconn, tenant):
    base = vec(11)
    await repo.upsert_memory_chunks(aconn, tenant, [chunk(1, id="near", embedding=near(base, 1, 0.01)),
                                                    chunk(2, id="far", embedding=-base)])
    hits = await repo.query_memory(aconn, tenant, "q", base, k=5, rerank=False, include_embedding=True)
    assert [h.external_id for h in hits] == ["near", "far"]
    assert np.array_equal(hits[0].embedding, near(base, 1, 0.01).astype(np.float32))
    close = await repo.query_memory(aconn, tenant, "q", base, k=5, rerank=False, max_distance=0.5)
    assert [h.external_id for h in close] == ["near"] and close[0].embedding is None
    with pytest.raises(ValueError, match="max_distance"):
        await repo.query_memory(aconn, tenant, "q", base, max_distance=3)


async def test_a_selective_filter_on_a_large_tenant_is_exact(aconn, tenant):
    # More rows than the exact-search limit (3000), so an unfiltered search walks
    # HNSW; 1% of them match the filter and all of those are found exactly.
    base = vec(21)
    rows = [chunk(i, id=f"r{i}", embedding=near(base, 1000 + i, 0.5), metadata={"bucket": i % 100})
            for i in range(3200)]
    await repo.upsert_memory_chunks(aconn, tenant, rows)
    matching = [r for r in rows if r.metadata["bucket"] == 7]
    exact = sorted(matching, key=lambda r: -float(np.dot(r.embedding, base)))[:10]
    hits = await repo.query_memory(aconn, tenant, "q", base, k=10, rerank=False, where={"bucket": 7})
    assert [h.external_id for h in hits] == [r.id for r in exact]


async def test_an_exact_search_returns_the_true_top_k_each_as_its_own_whole_row(aconn, tenant):
    # 0011 picks the top k among (ctid, distance) pairs, then reads those k rows back
    # by ctid: each hit must be the row it was ranked as (its own text and
    # metadata, sealed under its own id), filtered or not, in distance order.
    base = vec(41)
    rows = [chunk(i, id=f"w{i}", text=f"whole row {i}", embedding=near(base, 3000 + i, 0.5),
                  metadata={"third": i % 3, "n": i}) for i in range(300)]
    await repo.upsert_memory_chunks(aconn, tenant, rows)
    for where in (None, {"third": 1}):
        matching = [r for r in rows if where is None or r.metadata["third"] == 1]
        exact = sorted(matching, key=lambda r: -float(np.dot(r.embedding, base)))[:10]
        hits = await repo.query_memory(aconn, tenant, "q", base, k=10, rerank=False, where=where)
        assert [h.external_id for h in hits] == [r.id for r in exact]
        assert [(h.text, h.metadata) for h in hits] == [(r.text, r.metadata) for r in exact]
        assert [h.distance for h in hits] == pytest.approx([1 - float(np.dot(r.embedding, base)) for r in exact],
                                                           abs=1e-5)


async def test_a_broad_filter_walks_the_hnsw_index_and_keeps_recall(aconn, admin_conn, tenant):
    # Down to a limit of 50 matches, so these 200 take the filtered HNSW path.
    base = vec(31)
    rows = [chunk(i, id=f"h{i}", embedding=near(base, 2000 + i, 0.5), metadata={"half": i % 2}) for i in range(400)]
    await repo.upsert_memory_chunks(aconn, tenant, rows)
    exact = sorted((r for r in rows if r.metadata["half"] == 1), key=lambda r: -float(np.dot(r.embedding, base)))
    admin_conn.execute("UPDATE pymem.tuning SET filtered_exact_max_rows = 50")
    try:
        hits = await repo.query_memory(aconn, tenant, "q", base, k=10, rerank=False, where={"half": 1})
    finally:
        admin_conn.execute("UPDATE pymem.tuning SET filtered_exact_max_rows = DEFAULT")
    assert [h.external_id for h in hits] == [r.id for r in exact[:10]]


def test_operator_functions_take_a_sync_pool_too(cluster, admin_url, app_url, tenant):
    with psycopg.connect(app_url) as conn:
        sync.upsert_memory_chunks(conn, tenant, [chunk(1)])
    cluster.login_role("pymem_test_maintainer", ["pymem_maintainer"])
    maintainer = cluster.url("pymem_test", user="pymem_test_maintainer")
    with ConnectionPool(maintainer, min_size=1, configure=sync.configure, reset=sync.reset) as pool:
        usage = {u.key_id: u for u in sync.key_usage(pool)}
    assert usage[-1].live_rows >= 1  # version 1 of each tenant's data key


@pytest.mark.parametrize("internal", [
    "pymem.search_rows_v2(%s::bpchar, %s::public.vector, 3, '{}'::bytea[], '{}'::int[])",
    "pymem.filter_match('{}'::bytea[], '{}'::bytea[], '{}'::int[])",
    "pymem.search_rows_v3(%s::bpchar, %s::public.vector, 3, '{}'::bytea[], '{}'::int[], '{}'::timestamptz[])",
])
def test_the_app_cannot_call_the_internal_search_and_skip_its_audit(conn, tenant, internal):
    user_hash = hmac_user(tenant)
    params = (user_hash, vec(1)) if "search_rows" in internal else ()
    with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
        conn.execute(*enter_tenant_call(user_hash))
        conn.execute(f"SELECT * FROM {internal}", params)


async def test_a_lookup_sends_no_uuid_caller_id_but_a_random_one_as_it_is(aconn, tenant):
    """A log of the statements would show what is sent: a uuid5 or uuid1 caller id is
    sent only keyed; the UUID itself only for a random (v4) one, which pymem's own
    generated ids are. And a keyed row id given back as a caller id names no row."""
    index = keyring().tenant_index(hmac_user(tenant))
    for given in (str(uuid.uuid5(uuid.NAMESPACE_URL, "doc")), str(uuid.uuid1())):
        assert index.row_ids(given) == [index.row_id(given)]
    random_id = str(uuid.uuid4())
    assert index.row_ids(random_id) == [index.row_id(random_id), uuid.UUID(random_id)]
    [kept] = await repo.upsert_memory_chunks(aconn, tenant, [chunk(1, id="kept")])
    [hit] = await repo.get_memory_chunks(aconn, tenant, [kept])
    await repo.upsert_memory_chunks(aconn, tenant, [chunk(2, id=str(hit.id))])  # the row id, misused as an id
    assert await repo.delete_memory_chunks(aconn, tenant, [str(hit.id)]) == 1  # only the row of that id
    assert [h.text for h in await repo.get_memory_chunks(aconn, tenant, ["kept"])] == ["note 1"]
