"""Hybrid search over sealed text (revision 0021): keyword terms as keyed tags, BM25 in the
database, fused with the vector search; as the app role against the real database. Raw
rows and dumps are read on a superuser connection, the strongest reader the design survives.
"""

from __future__ import annotations

import subprocess
import uuid

import numpy as np
import pytest

from pymem import repository as repo
from pymem.audit import verify_audit_log
from pymem.errors import TamperedRow
from pymem.freshness import verify_rows
from pymem.repository import ChunkInput
from pymem.security import hmac_user
from pymem.term_backfill import index_memory_terms
from tests.utils import vec

pytestmark = pytest.mark.citus

RARE = "ORD-58213"


@pytest.fixture
def tenant() -> str:
    return f"tenant-{uuid.uuid4()}"


def crowd(n: int, *, seed: int = 0, extra: dict[int, str] | None = None) -> list[ChunkInput]:
    """n rows about the same order process, with embeddings all near one point; row i's text
    is ``extra[i]`` where given."""
    base = vec(1000 + seed)
    rows = []
    for i in range(n):
        v = base + 0.05 * vec(seed * 1000 + i)
        text = (extra or {}).get(i, f"Order ORD-{10000 + i} was shipped to the warehouse on Tuesday.")
        rows.append(ChunkInput(f"doc-{i}", "notes", text, v / np.linalg.norm(v), {"kind": "order" if i % 2 else "memo"},
                               id=f"r{i}"))
    return rows


async def test_hybrid_finds_a_row_by_an_exact_term_that_vector_search_misses(aconn, tenant):
    await repo.upsert_memory_chunks(aconn, tenant, crowd(60, extra={37: f"Order {RARE} was shipped to the"
                                                                        " warehouse on Tuesday."}))
    query = vec(5)  # far from every row: the vector side cannot tell them apart
    vector = await repo.query_memory(aconn, tenant, f"where is {RARE}?", query, k=5, rerank=False)
    hybrid = await repo.query_memory(aconn, tenant, f"where is {RARE}?", query, k=5, rerank=False, hybrid=True)
    assert "r37" not in [h.external_id for h in vector]
    found = {h.external_id: h for h in hybrid}
    assert "r37" in found and found["r37"].keyword_score > 0
    assert [h.external_id for h in hybrid if h.keyword_score] == ["r37"]
    # Its parts are terms too, and case does not matter.
    by_number = await repo.query_memory(aconn, tenant, "58213", query, k=5, rerank=False, hybrid=True)
    assert [h.external_id for h in by_number if h.keyword_score] == ["r37"]


async def test_stemming_matches_other_forms_of_a_word(aconn, tenant):
    await repo.upsert_memory_chunks(aconn, tenant, crowd(20, extra={4: "She prefers aisle seats on long flights."}))
    hits = await repo.query_memory(aconn, tenant, "preferred flight seating", vec(5), k=3, rerank=False, hybrid=True)
    assert hits[0].external_id == "r4"


async def test_another_tenants_identical_term_never_matches(aconn, admin_conn, tenant):
    other = f"other-{uuid.uuid4()}"
    await repo.upsert_memory_chunks(aconn, other, crowd(5, extra={0: f"Refund {RARE} approved."}))
    await repo.upsert_memory_chunks(aconn, tenant, crowd(5, seed=1))
    hits = await repo.query_memory(aconn, tenant, f"refund {RARE}", vec(5), k=5, rerank=False, hybrid=True)
    assert all(h.keyword_score is None or "58213" not in h.text for h in hits)
    # The same word is another tag in each tenant: nothing links the two.
    tags = [{bytes(t) for (t,) in admin_conn.execute(
        "SELECT term FROM pymem.memory_terms WHERE user_hash = %s", (hmac_user(who),))}
        for who in (tenant, other)]
    assert tags[0] and tags[1] and not tags[0] & tags[1]


async def test_the_database_holds_no_term_in_plaintext(aconn, cluster, admin_url, tenant):
    # Words with letters beyond a-f: a hex dump of random bytes cannot hold them by chance.
    secret_words = ["Okonkwo", "Zanzibar", "XK-4012"]
    await repo.upsert_memory_chunks(aconn, tenant, crowd(
        3, extra={0: "Mr Okonkwo flew to Zanzibar", 1: "error XK-4012 again"}))
    await repo.query_memory(aconn, tenant, "Okonkwo Zanzibar XK-4012", vec(1), rerank=False, hybrid=True)
    dump = subprocess.run([str(cluster.bin_dir / "pg_dump"), "--data-only", "--schema=pymem", admin_url],
                          check=True, capture_output=True).stdout.lower()
    assert b"pymem.memory_terms" in dump
    for word in secret_words + ["flew", "zanzibar"]:
        assert word.lower().encode() not in dump, word


async def test_filters_apply_to_the_keyword_side(aconn, tenant):
    await repo.upsert_memory_chunks(aconn, tenant, crowd(30, extra={3: f"Invoice {RARE} is overdue.",
                                                                      4: f"Invoice {RARE} was paid."}))
    hits = await repo.query_memory(aconn, tenant, f"invoice {RARE}", vec(5), k=2, rerank=False, hybrid=True,
                                   where={"kind": "memo"})
    assert [h.external_id for h in hits if h.keyword_score] == ["r4"]
    assert all(h.metadata["kind"] == "memo" for h in hits)


async def test_a_changed_posting_that_promotes_a_row_is_caught(aconn, admin_conn, tenant):
    """The postings are not bound to the sealed text: a database that copies the rare
    term's posting onto another row gets it into the keyword results, and the client,
    checking the opened text, refuses the answer."""
    await repo.upsert_memory_chunks(aconn, tenant, crowd(40, extra={2: f"Ticket {RARE} closed."}))
    user_hash = hmac_user(tenant)
    admin_conn.execute(
        "INSERT INTO pymem.memory_terms (user_hash, term, chunk_id)"
        " SELECT t.user_hash, t.term, c.id FROM pymem.memory_terms t, pymem.memory_chunks c"
        " WHERE t.user_hash = %s AND c.user_hash = t.user_hash AND c.id <> t.chunk_id"
        "   AND t.chunk_id = (SELECT id FROM pymem.memory_chunks WHERE user_hash = %s AND doc_id = 'doc-2')"
        "   AND c.doc_id = 'doc-7' ON CONFLICT DO NOTHING",
        (user_hash, user_hash))
    with pytest.raises(TamperedRow, match="query terms"):
        await repo.query_memory(aconn, tenant, f"ticket {RARE}", vec(5), k=3, rerank=False, hybrid=True)


async def test_deleting_rows_removes_their_postings(aconn, admin_conn, tenant):
    await repo.upsert_memory_chunks(aconn, tenant, crowd(4))
    user_hash = hmac_user(tenant)

    def postings() -> int:
        return admin_conn.execute("SELECT count(*) FROM pymem.memory_terms WHERE user_hash = %s",
                                  (user_hash,)).fetchone()[0]
    before = postings()
    await repo.delete_memory_chunks(aconn, tenant, ["r0"])
    assert 0 < postings() < before
    # An upsert replaces a row's postings with the new text's.
    await repo.upsert_memory_chunks(aconn, tenant, [ChunkInput("doc-1", "notes", "quokka", vec(1), id="r1")])
    hits = await repo.query_memory(aconn, tenant, "quokka", vec(9), k=1, rerank=False, hybrid=True)
    assert hits[0].external_id == "r1" and hits[0].keyword_score > 0
    await repo.erase_user(aconn, tenant)
    assert postings() == 0


async def test_hybrid_reads_are_audited_like_searches(aconn, admin_conn, tenant):
    await repo.upsert_memory_chunks(aconn, tenant, crowd(3))
    hits = await repo.query_memory(aconn, tenant, "shipped", vec(1), k=3, rerank=False, hybrid=True)
    rows = admin_conn.execute(
        "SELECT operation, phase, chunk_ids FROM pymem.audit_log WHERE user_hash = %s ORDER BY chain_pos DESC"
        " LIMIT 2", (hmac_user(tenant),)).fetchall()
    assert [(op, phase) for op, phase, _ in rows] == [("search", "result"), ("search", "intent")]
    assert sorted(rows[0][2]) == sorted(h.id for h in hits)
    assert verify_audit_log(admin_conn) == []


async def test_rows_written_without_terms_are_found_by_vector_then_back_filled(aconn, admin_conn, app_url,
                                                                               tenant, monkeypatch):
    monkeypatch.setenv("PYMEM_TERM_TAGS", "false")
    await repo.upsert_memory_chunks(aconn, tenant, crowd(20, extra={11: f"Parcel {RARE} lost."}))
    with pytest.raises(ValueError, match="PYMEM_TERM_TAGS"):
        await repo.query_memory(aconn, tenant, RARE, vec(5), rerank=False, hybrid=True)
    monkeypatch.delenv("PYMEM_TERM_TAGS")
    before = await repo.query_memory(aconn, tenant, f"parcel {RARE}", vec(5), k=3, rerank=False, hybrid=True)
    assert all(h.keyword_score is None for h in before)
    assert await index_memory_terms(aconn, tenant) == 20
    assert await index_memory_terms(aconn, tenant) == 0  # nothing left to do
    after = await repo.query_memory(aconn, tenant, f"parcel {RARE}", vec(5), k=3, rerank=False, hybrid=True)
    assert after[0].external_id == "r11"
    assert verify_audit_log(admin_conn) == []
    # The back-fill is audited as an update with the rows' unchanged write records.
    assert verify_rows(admin_conn, [hmac_user(tenant)]).problems == []


async def test_query_terms_are_bounded_and_a_query_without_words_is_a_vector_search(aconn, tenant):
    await repo.upsert_memory_chunks(aconn, tenant, crowd(3))
    long_query = " ".join(f"word{i}" for i in range(500))
    assert len(await repo.query_memory(aconn, tenant, long_query, vec(1), k=3, rerank=False, hybrid=True)) == 3
    hits = await repo.query_memory(aconn, tenant, "?!", vec(1), k=3, rerank=False, hybrid=True)
    assert len(hits) == 3 and all(h.keyword_score is None for h in hits)


async def test_a_hybrid_search_of_k_0_is_refused_not_audited_as_empty(aconn, tenant):
    """The keyless-login review: with k = 0 the fused query's LIMITs skipped the vector search
    and its check of k, and an empty result was audited. Sent as the app would, with an intent."""
    import psycopg

    from pymem.reads import durable_read
    from pymem.repository import _SEARCH_SQL

    hybrid_0021 = "SELECT id FROM pymem.search_hybrid_chunks(%s, %s, %b, %s, %b, %b, %b)"
    await repo.upsert_memory_chunks(aconn, tenant, crowd(3))
    for k in (0, -1, 1001):
        params = (vec(1), k, [], [], [b"\x00" * 16])
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="k must be between"):
            await durable_read(aconn, hmac_user(tenant), "hybrid_search", params, hybrid_0021, params)
        params = (vec(1), k, [], [], [], [b"\x00" * 16])  # revision 0022's search
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="k must be between"):
            await durable_read(aconn, hmac_user(tenant), "search_v3", params, _SEARCH_SQL, params)


async def test_after_a_stemmer_upgrade_old_postings_miss_until_rebuilt_never_a_false_alarm(aconn, tenant,
                                                                                              monkeypatch):
    """Another PyStemmer release may stem a word otherwise: a row's postings would name terms
    its text no longer gives, which the client check would take for tampering. Tags name the
    release, so old postings match nothing instead, until pymem index-terms --rebuild (this
    revision's neighbour review)."""
    from pymem import terms

    await repo.upsert_memory_chunks(aconn, tenant, crowd(20, extra={5: f"Parcel {RARE} lost."}))
    monkeypatch.setattr(terms, "SCHEME_VERSION", "1/pystemmer-99.0")
    stale = await repo.query_memory(aconn, tenant, f"parcel {RARE}", vec(5), k=3, rerank=False, hybrid=True)
    assert all(h.keyword_score is None for h in stale)
    assert await index_memory_terms(aconn, tenant) == 0  # every row has postings: a back-fill passes them over
    assert await index_memory_terms(aconn, tenant, rebuild=True) == 20
    rebuilt = await repo.query_memory(aconn, tenant, f"parcel {RARE}", vec(5), k=3, rerank=False, hybrid=True)
    assert rebuilt[0].external_id == "r5" and rebuilt[0].keyword_score
