"""The repository against the real embedded Postgres, as a login role that has pymem_app.

Raw-row inspection and ciphertext swaps are done on a superuser connection
(``admin_conn``), the strongest attacker with database access the design has to
survive: it can read and move bytes, but cannot open them.
"""

from __future__ import annotations

import json
import uuid

import numpy as np
import psycopg
import pytest
from cryptography.exceptions import InvalidTag
from psycopg import sql

from pymem import repository as repo
from pymem.reads import commit_read_intent
from pymem.repository import ChunkInput
from pymem.security import hmac_user
from pymem.tenant import set_rls_context
from tests.utils import DIM, SEARCH_COUNT_SQL, vec

# Also run through a Citus coordinator (make test-citus).
pytestmark = pytest.mark.citus


@pytest.fixture
def alice() -> str:
    return f"alice-{uuid.uuid4()}"


@pytest.fixture
def bob() -> str:
    return f"bob-{uuid.uuid4()}"


def row_count(admin_conn) -> int:
    return admin_conn.execute("SELECT count(*) FROM pymem.memory_chunks").fetchone()[0]


async def test_index_then_get_round_trip(aconn, alice):
    chunk_id = await repo.index_memory_chunk(aconn, alice, "doc-1", "notes", "the cat sat", vec(1), {"page": 3})
    hit = await repo.get_chunk(aconn, alice, chunk_id)
    assert (hit.id, hit.doc_id, hit.source, hit.text, hit.metadata) == (chunk_id, "doc-1", "notes", "the cat sat", {"page": 3})


async def test_raw_row_holds_no_plaintext(aconn, admin_conn, alice):
    # Every needle holds characters outside [0-9a-f] (so none can occur in the hex
    # user_hash) and is at least 13 bytes long (a random ciphertext byte string of
    # this row's length contains a given 13-byte string with probability < 2**-90).
    text = "Project Nightingale launch code is 7734-XQZ"
    metadata = {"secret_label": "codename-osprey"}
    chunk_id = await repo.index_memory_chunk(aconn, alice, "doc-x", "chat", text, vec(2), metadata)
    row = admin_conn.execute(
        "SELECT user_hash, doc_id, source, text_cipher, meta_cipher, emb_cipher, key_id FROM pymem.memory_chunks"
        " WHERE id = %s", (chunk_id,)).fetchone()
    raw = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row)
    for needle in (text, "Project Nightingale", "launch code is 7734-XQZ", json.dumps(metadata), "codename-osprey",
                   "secret_label\":", alice):
        assert needle.encode() not in raw
    assert row[0] == hmac_user(alice)


async def test_tenant_b_never_sees_a(aconn, alice, bob):
    a_ids = set(await repo.index_memory_chunks(aconn, alice, [
        ChunkInput(f"a{i}", "s", f"alice text {i}", vec(100 + i)) for i in range(5)]))
    await repo.index_memory_chunk(aconn, bob, "b0", "s", "bob text", vec(999))
    hits = await repo.query_memory(aconn, bob, "alice text", vec(100), k=10, rerank=False)
    assert hits and not a_ids & {h.id for h in hits}
    assert all(h.text == "bob text" for h in hits)
    for chunk_id in a_ids:
        assert await repo.get_chunk(aconn, bob, chunk_id) is None
        assert await repo.open_embedding(aconn, bob, chunk_id) is None


async def test_query_returns_typed_hits_nearest_first(aconn, alice):
    ids = await repo.index_memory_chunks(aconn, alice, [
        ChunkInput("d", "s", f"text {i}", vec(200 + i), {"i": i}) for i in range(6)])
    hits = await repo.query_memory(aconn, alice, "q", vec(203), k=3, rerank=False)
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].id == ids[3] and hits[0].text == "text 3" and hits[0].metadata == {"i": 3}
    assert hits[0].distance == pytest.approx(0.0, abs=1e-5)
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)
    assert [h.score for h in hits] == pytest.approx([1.0, 1 - 1 / 6, 1 - 2 / 6])


async def test_open_embedding_returns_the_sealed_vector(aconn, alice):
    v = vec(7)
    chunk_id = await repo.index_memory_chunk(aconn, alice, "d", "s", "t", v)
    opened = await repo.open_embedding(aconn, alice, chunk_id)
    assert opened.dtype == np.float32 and np.array_equal(opened, v)


async def _two_rows(aconn, user):
    return await repo.index_memory_chunks(aconn, user, [
        ChunkInput("d1", "s", "first row text", vec(11), {"n": 1}),
        ChunkInput("d2", "s", "second row text", vec(12), {"n": 2})])


async def test_swapping_text_cipher_between_rows_fails(aconn, admin_conn, alice):
    first, second = await _two_rows(aconn, alice)
    # Row by row (a self-join UPDATE is not routable on Citus).
    ciphers = dict(admin_conn.execute("SELECT id, text_cipher FROM pymem.memory_chunks WHERE id IN (%s, %s)",
                                      (first, second)).fetchall())
    for target, donor in ((first, second), (second, first)):
        admin_conn.execute("UPDATE pymem.memory_chunks SET text_cipher = %s WHERE user_hash = %s AND id = %s",
                           (ciphers[donor], hmac_user(alice), target))
    for chunk_id in (first, second):
        with pytest.raises(InvalidTag):
            await repo.get_chunk(aconn, alice, chunk_id)


async def test_swapping_text_and_meta_cipher_fails(aconn, admin_conn, alice):
    first, _ = await _two_rows(aconn, alice)
    admin_conn.execute("UPDATE pymem.memory_chunks SET text_cipher = meta_cipher, meta_cipher = text_cipher"
                       " WHERE id = %s", (first,))
    with pytest.raises(InvalidTag):
        await repo.get_chunk(aconn, alice, first)


async def test_moving_a_row_to_another_tenant_fails(aconn, admin_conn, alice, bob):
    first, _ = await _two_rows(aconn, alice)
    # Re-insert under bob and delete alice's copy (Citus cannot UPDATE the
    # distribution column); the same rows, bytes and id, under another tenant.
    with admin_conn.transaction():
        admin_conn.execute(
            "INSERT INTO pymem.memory_chunks (id, user_hash, doc_id, source, text_cipher, meta_cipher, emb_cipher,"
            " key_id, embedding, aad_version) SELECT id, %s, doc_id, source, text_cipher, meta_cipher, emb_cipher,"
            " key_id, embedding, aad_version FROM pymem.memory_chunks WHERE user_hash = %s AND id = %s",
            (hmac_user(bob), hmac_user(alice), first))
        admin_conn.execute("DELETE FROM pymem.memory_chunks WHERE user_hash = %s AND id = %s",
                           (hmac_user(alice), first))
    with pytest.raises(InvalidTag):
        await repo.get_chunk(aconn, bob, first)


def _bad_inputs(alice):
    good = dict(doc_id="d", source="s", text="t", embedding=vec(1), metadata={"a": 1})
    return {
        "empty user id": ("", good),
        "non-str user id": (12345, good),
        "wrong dimension": (alice, {**good, "embedding": np.ones(DIM - 1)}),
        "nan embedding": (alice, {**good, "embedding": np.full(DIM, np.nan)}),
        "inf embedding": (alice, {**good, "embedding": np.full(DIM, np.inf)}),
        "2-d embedding": (alice, {**good, "embedding": np.ones((2, DIM))}),
        "text over limit": (alice, {**good, "text": "x" * (64 * 1024 + 1)}),
        "non-str text": (alice, {**good, "text": b"bytes"}),
        "metadata not serializable": (alice, {**good, "metadata": {"when": object()}}),
        "metadata with nan": (alice, {**good, "metadata": {"x": float("nan")}}),
        "metadata not a mapping": (alice, {**good, "metadata": [1, 2]}),
        "empty doc_id": (alice, {**good, "doc_id": ""}),
        "doc_id too long": (alice, {**good, "doc_id": "d" * 1025}),
    }


@pytest.mark.parametrize("case", list(_bad_inputs("x")))
async def test_bad_input_raises_and_writes_nothing(aconn, admin_conn, alice, case):
    user, kwargs = _bad_inputs(alice)[case]
    before = row_count(admin_conn)
    with pytest.raises(ValueError) as info:
        await repo.index_memory_chunk(aconn, user, **kwargs)
    assert "x" * 100 not in str(info.value)  # never echoes the payload
    assert row_count(admin_conn) == before


async def test_a_failing_batch_writes_nothing(aconn, admin_conn, alice):
    before = row_count(admin_conn)
    chunks = [ChunkInput(f"d{i}", "s", f"t{i}", vec(i)) for i in range(50)]
    chunks.append(ChunkInput("bad", "s", "t", np.full(DIM, np.nan)))
    with pytest.raises(ValueError, match="NaN"):
        await repo.index_memory_chunks(aconn, alice, chunks)
    assert row_count(admin_conn) == before


async def test_batch_keeps_input_order(aconn, alice):
    ids = await repo.index_memory_chunks(aconn, alice, [
        {"doc_id": f"d{i}", "source": "s", "text": f"text {i}", "embedding": vec(300 + i)} for i in range(30)])
    assert len(set(ids)) == 30
    assert (await repo.get_chunk(aconn, alice, ids[17])).text == "text 17"


async def test_delete_document_and_erase_user(aconn, admin_conn, alice, bob):
    await repo.index_memory_chunks(aconn, alice, [ChunkInput("keep", "s", "k", vec(1)),
                                                  ChunkInput("drop", "s", "d1", vec(2)),
                                                  ChunkInput("drop", "s", "d2", vec(3))])
    await repo.index_memory_chunk(aconn, bob, "drop", "s", "bob's", vec(4))
    assert await repo.delete_document(aconn, alice, "drop") == 2
    assert await repo.erase_user(aconn, alice) == 1
    count = admin_conn.execute("SELECT count(*) FROM pymem.memory_chunks WHERE user_hash = %s",
                               (hmac_user(alice),)).fetchone()[0]
    assert count == 0
    assert len(await repo.query_memory(aconn, bob, "q", vec(4), k=5, rerank=False)) == 1


async def test_query_rejects_bad_arguments(aconn, alice):
    with pytest.raises(ValueError, match="k must be"):
        await repo.query_memory(aconn, alice, "q", vec(1), k=0)
    with pytest.raises(ValueError, match="dimensions"):
        await repo.query_memory(aconn, alice, "q", np.ones(3), k=1)


async def test_set_rls_context_refuses_an_open_transaction(aconn, alice):
    async with aconn.transaction():
        with pytest.raises(RuntimeError, match="own transaction"):
            async with set_rls_context(aconn, alice):
                pass


async def test_context_does_not_survive_the_transaction(aconn, alice):
    await repo.index_memory_chunk(aconn, alice, "d", "s", "t", vec(5))
    ticket = await commit_read_intent(aconn, hmac_user(alice), "search", (vec(5), 10))
    async with set_rls_context(aconn, alice) as user_hash:
        cur = await aconn.execute(SEARCH_COUNT_SQL, (user_hash, ticket, vec(5), 10))
        assert (await cur.fetchone())[0] >= 1
    cur = await aconn.execute("SELECT current_setting('app.user_hash', true)")
    assert (await cur.fetchone())[0] in (None, "")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not the tenant context"):
        async with aconn.transaction():
            await aconn.execute(SEARCH_COUNT_SQL, (user_hash, ticket, vec(5), 10))


def test_login_role_with_pymem_app_cannot_select_the_table(conn):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM pymem.memory_chunks")


@pytest.mark.single_node
def test_hnsw_index_is_used_under_rls(admin_conn):
    """The owner (bound by FORCE RLS) plans the search through the HNSW index."""
    with admin_conn.transaction():
        admin_conn.execute("SET LOCAL ROLE pymem_owner")
        admin_conn.execute("SET LOCAL app.user_hash = '%s'" % ("a" * 64))
        # Without these the planner may (rightly) prefer the user_hash btree + sort.
        admin_conn.execute("SET LOCAL enable_seqscan = off")
        admin_conn.execute("SET LOCAL enable_sort = off")
        bucket = admin_conn.execute("SELECT pymem.search_bucket(%s)", ("a" * 64,)).fetchone()[0]
        # The bucket as a literal, as search_rows_v2 sends it: that is what lets the
        # planner prove the tenant's partial index applies.
        plan = "\n".join(r[0] for r in admin_conn.execute(
            sql.SQL("EXPLAIN SELECT id FROM pymem.memory_chunks WHERE pymem.search_bucket(user_hash) = {}"
                    " ORDER BY embedding <=> %s::vector LIMIT 10").format(sql.Literal(bucket)), (vec(1),)))
    assert f"memory_chunks_embedding_hnsw_{bucket} " in plan
