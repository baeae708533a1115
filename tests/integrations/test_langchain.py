"""The LangChain store: langchain-tests' standard VectorStoreIntegrationTests (sync and
async), plus filters, MMR and ids that outlive the store object.

The store runs as a login role with pymem_app on a database migrated with the
suite's 6-dimensional embeddings; each test gets a fresh tenant, so an empty store.
"""

from __future__ import annotations

import uuid

import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests.vectorstores import (
    EMBEDDING_SIZE,
    VectorStoreIntegrationTests,
)
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pymem import connections, sync
from pymem.integrations.langchain import PymemVectorStore
from pymem.repository import ChunkInput

# Also run through a Citus coordinator (make test-citus).
pytestmark = pytest.mark.citus


@pytest.fixture(scope="module")
def langchain_url(cluster) -> str:
    cluster.fresh_database("pymem_langchain", embedding_dim=EMBEDDING_SIZE)
    cluster.login_role("pymem_test_langchain", ["pymem_app"])
    return cluster.url("pymem_langchain", user="pymem_test_langchain")


@pytest.fixture(scope="module")
def sync_pool(langchain_url):
    with ConnectionPool(langchain_url, min_size=1, max_size=2, configure=sync.configure, reset=sync.reset) as pool:
        yield pool


@pytest.fixture(scope="module")
async def async_pool(langchain_url):
    async with AsyncConnectionPool(langchain_url, min_size=1, max_size=2, configure=connections.configure,
                                   reset=connections.reset) as pool:
        yield pool


def new_store(sync_pool, async_pool, user_id: str | None = None) -> PymemVectorStore:
    return PymemVectorStore(VectorStoreIntegrationTests.get_embeddings(), user_id or f"lc-{uuid.uuid4()}",
                            connection=sync_pool, async_connection=async_pool)


class TestPymemVectorStoreStandard(VectorStoreIntegrationTests):
    """LangChain's own suite, unchanged: 25 tests, sync and async."""

    @pytest.fixture()
    def vectorstore(self, sync_pool, async_pool):  # type: ignore[override]
        store = new_store(sync_pool, async_pool)
        try:
            yield store
        finally:
            store.delete()  # every chunk of the test's tenant


def test_ids_survive_a_new_store_object_and_new_connections(langchain_url, sync_pool, async_pool):
    user = f"lc-{uuid.uuid4()}"
    new_store(sync_pool, async_pool, user).add_documents([Document("kept", metadata={"n": 1})], ids=["doc-1"])
    with ConnectionPool(langchain_url, min_size=1, configure=sync.configure, reset=sync.reset) as fresh:
        later = PymemVectorStore(VectorStoreIntegrationTests.get_embeddings(), user, connection=fresh)
        assert later.get_by_ids(["doc-1"]) == [Document("kept", metadata={"n": 1}, id="doc-1")]


async def test_filters_select_by_sealed_metadata_sync_and_async(sync_pool, async_pool):
    store = new_store(sync_pool, async_pool)
    docs = [Document(f"text {i}", metadata={"topic": ["billing", "refunds", "shipping"][i % 3], "year": 2020 + i % 2})
            for i in range(9)]
    ids = store.add_documents(docs)
    billing = {ids[i] for i in range(9) if i % 3 == 0}
    found = store.similarity_search("text 0", k=9, filter={"topic": "billing"})
    assert {d.id for d in found} == billing
    found = await store.asimilarity_search("text 0", k=9, filter={"$and": [{"topic": {"$in": ["billing", "refunds"]}},
                                                                            {"year": 2021}]})
    assert {d.id for d in found} == {ids[i] for i in range(9) if i % 3 != 2 and i % 2 == 1}


async def test_mmr_prefers_diverse_results_sync_and_async(sync_pool, async_pool):
    store = new_store(sync_pool, async_pool)
    near = store.embeddings.embed_query("apple")
    store.add_texts(["apple", "pear"], ids=["a", "c"])
    # A near duplicate of "apple": its vector is put in directly (the fake model's
    # vectors of different texts are unrelated).
    sync.upsert_memory_chunks(sync_pool, store._user_id,
                              [ChunkInput("langchain", "", "apple twin", [x + 1e-4 for x in near], None, "b")])
    assert [d.id for d in store.similarity_search_by_vector(near, k=2)] == ["a", "b"]
    for diverse in (store.max_marginal_relevance_search("apple", k=2, fetch_k=3, lambda_mult=0.1),
                    await store.amax_marginal_relevance_search("apple", k=2, fetch_k=3, lambda_mult=0.1)):
        assert [d.id for d in diverse] == ["a", "c"]


def test_relevance_scores_are_one_minus_cosine_distance(sync_pool, async_pool):
    store = new_store(sync_pool, async_pool)
    store.add_texts(["exact"], ids=["x"])
    [(doc, score)] = store.similarity_search_with_relevance_scores("exact", k=1)
    assert doc.id == "x" and score == pytest.approx(1.0, abs=1e-6)


async def test_a_hybrid_store_finds_an_exact_id_sync_and_async(sync_pool, async_pool):
    """The fake model's vectors of different texts are unrelated: only the keyword side can
    tie the query to the note that holds its ticket id."""
    user = f"lc-{uuid.uuid4()}"
    plain = new_store(sync_pool, async_pool, user)
    hybrid = PymemVectorStore(VectorStoreIntegrationTests.get_embeddings(), user, connection=sync_pool,
                              async_connection=async_pool, hybrid=True)
    plain.add_texts([f"ticket INC-{20000 + i} was escalated" for i in range(30)], ids=[f"t{i}" for i in range(30)])
    assert "t17" in [d.id for d in hybrid.similarity_search("what happened to INC-20017?", k=2)]
    assert "t17" in [d.id for d in await hybrid.asimilarity_search("INC-20017", k=2)]
    assert "t17" not in [d.id for d in plain.similarity_search("what happened to INC-20017?", k=2)]
