"""A LangChain ``VectorStore`` over one pymem tenant (extra ``langchain``).

Usage::

    from psycopg_pool import AsyncConnectionPool, ConnectionPool
    import pymem.connections, pymem.sync
    from pymem.integrations.langchain import PymemVectorStore

    pool = ConnectionPool(url, configure=pymem.sync.configure, reset=pymem.sync.reset)
    apool = AsyncConnectionPool(url, configure=pymem.connections.configure, reset=pymem.connections.reset)
    store = PymemVectorStore(embeddings, user_id="user-42", connection=pool, async_connection=apool)
    store.add_documents(docs, ids=["a", "b"])          # upsert by id
    store.similarity_search("query", k=4, filter={"topic": {"$in": ["billing", "refunds"]}})

Everything goes through pymem's API: texts, metadata, embeddings and the caller's
ids are sealed; ids and metadata filters use per-tenant blind indexes; every call
is audited; the store keeps no state of its own, so ids survive a restart.

``Document.id`` is the caller's id (pymem's ``external_id``); ``metadata`` is
stored sealed and returned as given. Filters take ``$eq``, ``$ne``, ``$in``, ``$nin``,
``$exists``, ``$and`` and ``$or`` (:mod:`pymem.blind_index`). Scores from ``similarity_search_with_score`` are
cosine distances (lower is closer); relevance scores are ``1 - distance``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..extras import require

require("langchain_core", "langchain", "pymem.integrations.langchain")
from langchain_core.documents import Document  # noqa: E402 (after the check above)
from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.vectorstores import VectorStore  # noqa: E402
from langchain_core.vectorstores.utils import maximal_marginal_relevance  # noqa: E402

from .. import repository, sync  # noqa: E402
from ..chunks import ChunkInput  # noqa: E402
from ..repository import MemoryHit  # noqa: E402

DEFAULT_DOC_ID = "langchain"


class PymemVectorStore(VectorStore):
    """LangChain's ``VectorStore`` interface over one pymem tenant.

    Args:
        embedding: the LangChain embeddings model; its dimension must be the
            deployment's (fixed at migration time).
        user_id: the tenant (hashed by pymem; never stored).
        connection: a sync ``psycopg.Connection`` or ``psycopg_pool.ConnectionPool``
            for the sync methods.
        async_connection: an ``AsyncConnection`` or ``AsyncConnectionPool`` for the
            async methods. Without it they run the sync methods on a worker thread.
        doc_id: the pymem document label of every chunk this store writes
            (plaintext in the database, so never user data).
        source: the pymem source label (plaintext too).
        rerank: rerank search results with pymem's cross-encoder (off: the search's order).
        hybrid: searches by text rank by keyword relevance and vector similarity together
            (``query_memory(..., hybrid=True)``: exact ids, names and codes are found
            where embeddings miss them); searches by vector are vector searches.

    Raises:
        ValueError: neither connection is given.
    """

    def __init__(self, embedding: Embeddings, user_id: str, *, connection: Any = None, async_connection: Any = None,
                 doc_id: str = DEFAULT_DOC_ID, source: str = "", rerank: bool = False, hybrid: bool = False):
        if connection is None and async_connection is None:
            raise ValueError("pass connection= (sync calls) and/or async_connection= (async calls)")
        self._embedding = embedding
        self._user_id = user_id
        self._connection = connection
        self._async_connection = async_connection
        self._doc_id = doc_id
        self._source = source
        self._rerank = rerank
        self._hybrid = hybrid

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    def _sync_source(self) -> Any:
        if self._connection is None:
            raise ValueError("this store has only an async connection: use the async methods, or pass connection=")
        return self._connection

    # -- writes --------------------------------------------------------------
    def _chunks(self, texts: Sequence[str], embeddings: Sequence[Sequence[float]],
                metadatas: Sequence[dict] | None, ids: Sequence[str | None] | None) -> list[ChunkInput]:
        count = len(texts)
        if metadatas is not None and len(metadatas) != count or ids is not None and len(ids) != count:
            raise ValueError("texts, metadatas and ids differ in length")
        return [ChunkInput(self._doc_id, self._source, text, embedding,
                           metadatas[i] if metadatas is not None else None, ids[i] if ids is not None else None)
                for i, (text, embedding) in enumerate(zip(texts, embeddings, strict=True))]

    def add_texts(self, texts: Iterable[str], metadatas: list[dict] | None = None, *,
                  ids: list[str | None] | None = None, **kwargs: Any) -> list[str]:
        """Embed and upsert texts (a text whose id exists replaces it); return their ids."""
        texts = list(texts)
        if not texts:
            return []
        chunks = self._chunks(texts, self._embedding.embed_documents(texts), metadatas, ids)
        return sync.upsert_memory_chunks(self._sync_source(), self._user_id, chunks)

    async def aadd_texts(self, texts: Iterable[str], metadatas: list[dict] | None = None, *,
                         ids: list[str | None] | None = None, **kwargs: Any) -> list[str]:
        if self._async_connection is None:
            return await asyncio.to_thread(self.add_texts, list(texts), metadatas, ids=ids)
        texts = list(texts)
        if not texts:
            return []
        chunks = self._chunks(texts, await self._embedding.aembed_documents(texts), metadatas, ids)
        return await repository.upsert_memory_chunks(self._async_connection, self._user_id, chunks)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Delete these ids (missing ones are ignored), or with None every chunk of the tenant."""
        if ids is None:
            sync.erase_user(self._sync_source(), self._user_id)
        elif ids:
            sync.delete_memory_chunks(self._sync_source(), self._user_id, ids)
        return True

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        if self._async_connection is None:
            return await asyncio.to_thread(self.delete, ids)
        if ids is None:
            await repository.erase_user(self._async_connection, self._user_id)
        elif ids:
            await repository.delete_memory_chunks(self._async_connection, self._user_id, ids)
        return True

    # -- reads ---------------------------------------------------------------
    @staticmethod
    def _document(hit: MemoryHit) -> Document:
        return Document(id=hit.external_id, page_content=hit.text, metadata=hit.metadata)

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The documents with these ids, in the order given; missing ids are left out."""
        if not ids:
            return []
        return [self._document(h) for h in sync.get_memory_chunks(self._sync_source(), self._user_id, list(ids))]

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        if self._async_connection is None:
            return await asyncio.to_thread(self.get_by_ids, ids)
        if not ids:
            return []
        hits = await repository.get_memory_chunks(self._async_connection, self._user_id, list(ids))
        return [self._document(h) for h in hits]

    def _query_args(self, query: str, embedding: Sequence[float], k: int, filter: dict | None,
                    fetch: int | None = None, include_embedding: bool = False) -> dict[str, Any]:
        return dict(query=query, query_embedding=embedding, k=fetch or k, candidates=fetch or k,
                    rerank=self._rerank, where=filter, include_embedding=include_embedding, hybrid=self._hybrid)

    def _search(self, query: str, embedding: Sequence[float], k: int, filter: dict | None, **extra) -> list[MemoryHit]:
        return sync.query_memory(self._sync_source(), self._user_id,
                                 **self._query_args(query, embedding, k, filter, **extra))

    async def _asearch(self, query: str, embedding: Sequence[float], k: int, filter: dict | None,
                       **extra) -> list[MemoryHit]:
        if self._async_connection is None:
            return await asyncio.to_thread(self._search, query, embedding, k, filter, **extra)
        return await repository.query_memory(self._async_connection, self._user_id,
                                             **self._query_args(query, embedding, k, filter, **extra))

    def similarity_search_with_score(self, query: str, k: int = 4, filter: dict | None = None,
                                     **kwargs: Any) -> list[tuple[Document, float]]:
        """(document, cosine distance) pairs, closest first."""
        hits = self._search(query, self._embedding.embed_query(query), k, filter)
        return [(self._document(h), h.distance) for h in hits]

    async def asimilarity_search_with_score(self, query: str, k: int = 4, filter: dict | None = None,
                                            **kwargs: Any) -> list[tuple[Document, float]]:
        hits = await self._asearch(query, await self._embedding.aembed_query(query), k, filter)
        return [(self._document(h), h.distance) for h in hits]

    def similarity_search(self, query: str, k: int = 4, filter: dict | None = None, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter)]

    async def asimilarity_search(self, query: str, k: int = 4, filter: dict | None = None,
                                 **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in await self.asimilarity_search_with_score(query, k, filter)]

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, filter: dict | None = None,
                                    **kwargs: Any) -> list[Document]:
        return [self._document(h) for h in self._search("", embedding, k, filter)]

    async def asimilarity_search_by_vector(self, embedding: list[float], k: int = 4, filter: dict | None = None,
                                           **kwargs: Any) -> list[Document]:
        return [self._document(h) for h in await self._asearch("", embedding, k, filter)]

    def _select_relevance_score_fn(self):
        return self._cosine_relevance_score_fn

    @classmethod
    def _mmr(cls, embedding: Sequence[float], hits: list[MemoryHit], k: int, lambda_mult: float) -> list[Document]:
        picked = maximal_marginal_relevance(np.asarray(embedding, dtype=np.float32), [h.embedding for h in hits],
                                            k=k, lambda_mult=lambda_mult)
        return [cls._document(hits[i]) for i in picked]

    def max_marginal_relevance_search_by_vector(self, embedding: list[float], k: int = 4, fetch_k: int = 20,
                                                lambda_mult: float = 0.5, filter: dict | None = None,
                                                **kwargs: Any) -> list[Document]:
        """Fetch ``fetch_k`` nearest (with their opened embeddings), keep ``k`` by MMR."""
        hits = self._search("", embedding, k, filter, fetch=max(k, fetch_k), include_embedding=True)
        return self._mmr(embedding, hits, k, lambda_mult)

    async def amax_marginal_relevance_search_by_vector(self, embedding: list[float], k: int = 4, fetch_k: int = 20,
                                                       lambda_mult: float = 0.5, filter: dict | None = None,
                                                       **kwargs: Any) -> list[Document]:
        hits = await self._asearch("", embedding, k, filter, fetch=max(k, fetch_k), include_embedding=True)
        return self._mmr(embedding, hits, k, lambda_mult)

    def max_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5,
                                      filter: dict | None = None, **kwargs: Any) -> list[Document]:
        return self.max_marginal_relevance_search_by_vector(self._embedding.embed_query(query), k, fetch_k,
                                                            lambda_mult, filter)

    async def amax_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20,
                                             lambda_mult: float = 0.5, filter: dict | None = None,
                                             **kwargs: Any) -> list[Document]:
        return await self.amax_marginal_relevance_search_by_vector(await self._embedding.aembed_query(query), k,
                                                                   fetch_k, lambda_mult, filter)

    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings, metadatas: list[dict] | None = None, *,
                   ids: list[str] | None = None, **kwargs: Any) -> PymemVectorStore:
        """A store (``user_id`` and ``connection`` etc. in ``kwargs``) with these texts added."""
        store = cls(embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    @classmethod
    async def afrom_texts(cls, texts: list[str], embedding: Embeddings, metadatas: list[dict] | None = None, *,
                          ids: list[str] | None = None, **kwargs: Any) -> PymemVectorStore:
        store = cls(embedding, **kwargs)
        await store.aadd_texts(texts, metadatas, ids=ids)
        return store
