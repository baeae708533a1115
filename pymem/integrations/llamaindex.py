"""A LlamaIndex vector store over one pymem tenant (extra ``llamaindex``).

Usage::

    from llama_index.core import VectorStoreIndex
    from psycopg_pool import AsyncConnectionPool, ConnectionPool
    import pymem.connections, pymem.sync
    from pymem.integrations.llamaindex import PymemVectorStore

    pool = ConnectionPool(url, configure=pymem.sync.configure, reset=pymem.sync.reset)
    apool = AsyncConnectionPool(url, configure=pymem.connections.configure, reset=pymem.connections.reset)
    store = PymemVectorStore("user-42", connection=pool, async_connection=apool)
    index = VectorStoreIndex.from_vector_store(store, embed_model=embed_model)
    index.insert(document)
    index.as_retriever(similarity_top_k=4, filters=MetadataFilters(filters=[MetadataFilter(key="topic",
                                                                   value="billing")])).retrieve("refunds")

One store is one tenant: ``user_id`` is fixed when the store is made, and nothing a node,
a query or a keyword argument carries can change it (a ``user_id`` keyword is refused).

How a node is stored: one pymem chunk, whose id is ``node.node_id`` (an upsert: adding a
node again replaces it), whose text is the node's text and whose embedding is the node's.
The node's metadata is the chunk's sealed metadata, and must be flat (str, int, float,
bool, None, or lists of those) since LlamaIndex filters reach top-level values only. Two
reserved keys sit beside it, sealed like the rest: ``_ref_doc_id`` (the node's
``ref_doc_id``, top level so that filters and deletions can select by it) and ``_node``
(the rest of the node: relationships, templates, excluded keys, its class; nested, so not
filterable and given no blind-index tag). pymem's ``doc_id`` and ``source`` are stored in
plaintext, so they are fixed labels of the store (``doc_id="llamaindex"`` by default) and
never the caller's document ids.

Filters (``MetadataFilters``) become pymem ``where`` filters, evaluated in the database on
blind-index tags: ``EQ`` and ``IN``, joined by ``AND`` or ``OR``, nested as pymem allows (no
``AND`` of several conditions inside an ``OR``). Anything else is refused with a
``ValueError`` naming it. Query modes: ``DEFAULT`` (vector search) and ``HYBRID`` (pymem's
keyword + vector search fused by reciprocal rank); others raise ``NotImplementedError``.
Similarities are ``1 - cosine distance``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..extras import require

require("llama_index.core", "llamaindex", "pymem.integrations.llamaindex")
from llama_index.core.bridge.pydantic import PrivateAttr  # noqa: E402 (after the check above)
from llama_index.core.schema import BaseNode, MetadataMode, TextNode  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node  # noqa: E402

from .. import repository, sync  # noqa: E402
from ..blind_index import MAX_FILTER_DEPTH  # noqa: E402
from ..chunks import ChunkInput  # noqa: E402
from ..repository import MAX_IDS, MemoryHit  # noqa: E402
from ..security import hmac_user, keyring  # noqa: E402

DEFAULT_DOC_ID = "llamaindex"
#: Sealed metadata keys this store writes beside a node's own metadata (refused in it).
REF_DOC_KEY = "_ref_doc_id"
NODE_KEY = "_node"
RESERVED_KEYS = frozenset({REF_DOC_KEY, NODE_KEY})
DEFAULT_SCAN_PAGE = 1000

#: LlamaIndex filter operators -> a pymem condition on one key. An operator missing here is
#: refused (ranges: pymem filters sealed values by equality only). IS_EMPTY: the key is absent.
_OPERATORS: dict[FilterOperator, Callable[[Any], Any]] = {
    FilterOperator.EQ: lambda value: value,
    FilterOperator.NE: lambda value: {"$ne": value},
    FilterOperator.IN: lambda value: {"$in": list(value) if isinstance(value, (list, tuple)) else [value]},
    FilterOperator.NIN: lambda value: {"$nin": list(value) if isinstance(value, (list, tuple)) else [value]},
    FilterOperator.IS_EMPTY: lambda value: {"$exists": False},
}
#: LlamaIndex conditions -> pymem's combinators (NOT has none).
_CONDITIONS: dict[FilterCondition, str] = {FilterCondition.AND: "$and", FilterCondition.OR: "$or"}
_MODES = (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.HYBRID)
_SCALARS = (str, int, float, bool, type(None))


def _condition(item: MetadataFilter) -> dict[str, Any]:
    to_pymem = _OPERATORS.get(item.operator)
    if to_pymem is None:
        supported = ", ".join(op.name for op in _OPERATORS)
        raise ValueError(f"pymem's LlamaIndex store does not support the {item.operator.name} filter operator"
                         f" ({item.operator.value!r}); supported: {supported}")
    return {item.key: to_pymem(item.value)}


def _group(filters: MetadataFilters, depth: int = 1) -> dict[str, Any] | None:
    # Counted here: pymem's own limit would be checked only after this recursion (a filter
    # nested 600 deep raised RecursionError, this revision's review).
    if depth > MAX_FILTER_DEPTH:
        raise ValueError(f"a filter nests groups at most {MAX_FILTER_DEPTH} deep")
    condition = filters.condition or FilterCondition.AND
    combinator = _CONDITIONS.get(condition)
    if combinator is None:
        supported = ", ".join(c.name for c in _CONDITIONS)
        raise ValueError(f"pymem's LlamaIndex store does not support the {condition.name} filter condition;"
                         f" supported: {supported}")
    parts = [part for part in (_group(f, depth + 1) if isinstance(f, MetadataFilters) else _condition(f)
                               for f in filters.filters) if part is not None]
    if not parts:
        return None
    # A group of one is that condition: an OR may then hold it where pymem refuses an $and.
    return parts[0] if len(parts) == 1 else {combinator: parts}


def to_where(filters: MetadataFilters | None, doc_ids: Sequence[str] | None = None) -> dict[str, Any] | None:
    """A pymem ``where`` filter for LlamaIndex ``filters`` and ``doc_ids`` (ref_doc_ids).

    ``EQ`` -> ``{"k": v}``, ``NE`` -> ``{"k": {"$ne": v}}``, ``IN`` -> ``{"k": {"$in": [...]}}``,
    ``NIN`` -> ``{"k": {"$nin": [...]}}``, ``IS_EMPTY`` -> ``{"k": {"$exists": False}}``,
    ``AND`` -> ``{"$and": [...]}``,
    ``OR`` -> ``{"$or": [...]}``; nested groups recurse, empty ones drop out, and a group of
    one condition is that condition. ``doc_ids`` (when not empty) add
    ``{"_ref_doc_id": {"$in": doc_ids}}`` under an ``$and``.

    Returns:
        The filter, or None when there is nothing to filter on.

    Raises:
        ValueError: an operator or condition other than EQ, NE, IN, NIN, IS_EMPTY, AND, OR (the
            message names it).
            pymem's own checks (an ``$and`` inside an ``$or``, values that are not scalars,
            limits) raise ``ValueError`` when the filter is used.
    """
    where = _group(filters) if filters is not None else None
    if doc_ids:  # LlamaIndex's convention: None or empty, no restriction
        by_doc = {REF_DOC_KEY: {"$in": list(doc_ids)}}
        where = by_doc if where is None else {"$and": [where, by_doc]}
    return where


def _refuse_tenant(kwargs: Mapping[str, Any]) -> None:
    if "user_id" in kwargs:
        raise ValueError("this store's tenant is fixed when it is made: make one PymemVectorStore per user")


class PymemVectorStore(BasePydanticVectorStore):
    """LlamaIndex's vector store interface over one pymem tenant (``stores_text=True``).

    Args:
        user_id: the tenant (hashed by pymem; never stored, never in ``repr`` or a dump of
            the store). Fixed for the store's life.
        connection: a sync ``psycopg.Connection`` or ``psycopg_pool.ConnectionPool`` for the
            sync methods.
        async_connection: an ``AsyncConnection`` or ``AsyncConnectionPool`` for the async
            methods. Without it they run the sync methods on a worker thread.
        doc_id: the pymem document label of every chunk this store writes (plaintext in the
            database, so never user data; a node's ``ref_doc_id`` is sealed instead).
        source: the pymem source label (plaintext too).
        rerank: rerank search results with pymem's cross-encoder (off: the search's order).
        candidates: rows fetched from each side of the search (and reranked) when more than
            the query's top k; None: as many as the query asks for.
        scan_page_size: chunks per page when a call must scan the tenant (1..10,000).

    Raises:
        ValueError: no connection, or an empty ``user_id``.
    """

    stores_text: bool = True
    is_embedding_query: bool = True
    doc_id: str = DEFAULT_DOC_ID
    source: str = ""
    rerank: bool = False
    candidates: int | None = None
    scan_page_size: int = DEFAULT_SCAN_PAGE

    _user_id: str = PrivateAttr()
    _connection: Any = PrivateAttr(default=None)
    _async_connection: Any = PrivateAttr(default=None)

    def __init__(self, user_id: str, *, connection: Any = None, async_connection: Any = None,
                 doc_id: str = DEFAULT_DOC_ID, source: str = "", rerank: bool = False, candidates: int | None = None,
                 scan_page_size: int = DEFAULT_SCAN_PAGE, **kwargs: Any):
        if connection is None and async_connection is None:
            raise ValueError("pass connection= (sync calls) and/or async_connection= (async calls)")
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("user_id must be a non-empty str")
        super().__init__(doc_id=doc_id, source=source, rerank=rerank, candidates=candidates,
                         scan_page_size=scan_page_size, **kwargs)
        self._user_id = user_id
        self._connection = connection
        self._async_connection = async_connection

    @classmethod
    def class_name(cls) -> str:
        return "PymemVectorStore"

    @property
    def client(self) -> Any:
        """The connection or pool the sync methods use (else the async one)."""
        return self._connection if self._connection is not None else self._async_connection

    def _sync_source(self) -> Any:
        if self._connection is None:
            raise ValueError("this store has only an async connection: use the async methods, or pass connection=")
        return self._connection

    # -- nodes <-> chunks -----------------------------------------------------
    def _chunk(self, node: BaseNode, position: int) -> ChunkInput:
        # Messages name the node's position, never its id, text or metadata.
        embedding = node.embedding
        if embedding is None:
            raise ValueError(f"node {position} of the batch has no embedding (VectorStoreIndex embeds nodes first)")
        metadata = dict(node.metadata)
        for key, value in metadata.items():
            if key in RESERVED_KEYS:
                raise ValueError(f"node {position}: metadata key {key!r} is reserved by the pymem LlamaIndex store")
            if not (isinstance(value, _SCALARS)
                    or isinstance(value, list) and all(isinstance(v, _SCALARS) for v in value)):
                raise ValueError(f"node {position}: metadata values must be str, int, float, bool, None or lists"
                                 " of those (filters reach top-level values only)")
        # What LlamaIndex needs to rebuild the node, less what the chunk holds already (as
        # LlamaIndex's node_to_metadata_dict(remove_text=True) does): sealed, nested.
        content = node.model_dump(mode="json", exclude={"embedding", "metadata", "text", "text_resource"})
        metadata[NODE_KEY] = {"type": node.class_name(), "content": content}
        if node.ref_doc_id is not None:
            metadata[REF_DOC_KEY] = node.ref_doc_id
        return ChunkInput(self.doc_id, self.source, node.get_content(metadata_mode=MetadataMode.NONE), embedding,
                          metadata, id=node.node_id)

    def _own(self, hit: MemoryHit) -> bool:
        """Whether this store (or another of its label) wrote the chunk: its ``doc_id`` is the
        store's label. The label is in every sealed field's AAD, so the database cannot move a
        chunk under it; another writer of the same user (pymem's API, the MCP server) can put
        the reserved keys in metadata, and is not trusted with them."""
        return hit.doc_id == self.doc_id

    def _node(self, hit: MemoryHit) -> BaseNode:
        metadata = dict(hit.metadata)
        stored = metadata.pop(NODE_KEY, None)
        metadata.pop(REF_DOC_KEY, None)
        if self._own(hit) and isinstance(stored, Mapping) and isinstance(stored.get("content"), Mapping):
            node = metadata_dict_to_node({"_node_content": json.dumps(stored["content"]),
                                          "_node_type": stored.get("type")}, text=hit.text)
            node.metadata = metadata
        else:  # a chunk written through pymem's own API or another integration
            node = TextNode(text=hit.text, metadata=metadata)
        node.id_ = hit.external_id  # the chunk's id is authoritative
        return node

    def _matcher(self, where: Mapping[str, Any] | None) -> Callable[[MemoryHit], bool]:
        """``where`` evaluated on a chunk's opened metadata, exactly as the database evaluates
        it (the same compiled blind-index tags), for calls that scan instead of searching."""
        if where is None:
            return lambda hit: True
        index = keyring().tenant_index(hmac_user(self._user_id))
        tags, ends = index.compile_filter(where)
        return lambda hit: index.satisfies(hit.metadata, tags, ends, key_tags=hit.aad_version >= 3)

    # -- the shared implementations (async; sync methods run them on a sync connection) --
    async def _scan(self, conn: Any, keep: Callable[[MemoryHit], bool]) -> list[MemoryHit]:
        # pymem has no filtered listing: page through the tenant (each page audited as an
        # export) and keep the matches. Linear in the tenant's size; memory holds one page
        # and the matches.
        found, after = [], None
        while True:
            page = await repository.list_memory_chunks(conn, self._user_id, after=after, limit=self.scan_page_size)
            found.extend(hit for hit in page.hits if keep(hit))
            if page.next_cursor is None:
                return found
            after = page.next_cursor

    async def _get(self, conn: Any, node_ids: Sequence[str] | None,
                   filters: MetadataFilters | None) -> list[MemoryHit]:
        keep = self._matcher(to_where(filters))
        if node_ids is None:
            return await self._scan(conn, keep)
        hits = []
        for start in range(0, len(node_ids), MAX_IDS):
            batch = list(node_ids[start:start + MAX_IDS])
            hits.extend(h for h in await repository.get_memory_chunks(conn, self._user_id, batch) if keep(h))
        return hits

    async def _delete_ids(self, conn: Any, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), MAX_IDS):
            await repository.delete_memory_chunks(conn, self._user_id, list(ids[start:start + MAX_IDS]))

    async def _delete_ref_doc(self, conn: Any, ref_doc_id: str) -> None:
        matches = self._matcher({REF_DOC_KEY: ref_doc_id})
        # Only the store's own chunks belong to a document: another writer can set the key.
        hits = await self._scan(conn, lambda hit: self._own(hit) and matches(hit))
        await self._delete_ids(conn, [h.external_id for h in hits])

    async def _delete_nodes(self, conn: Any, node_ids: Sequence[str] | None, filters: MetadataFilters | None) -> None:
        where = to_where(filters)
        if node_ids is None and where is None:
            return  # nothing selected (an empty filter too): clear() is how to empty the store
        if where is None:
            await self._delete_ids(conn, list(node_ids))
        else:
            await self._delete_ids(conn, [h.external_id for h in await self._get(conn, node_ids, filters)])

    def _query_args(self, query: VectorStoreQuery) -> dict[str, Any]:
        if query.mode not in _MODES:
            raise NotImplementedError(f"pymem's LlamaIndex store does not support the {query.mode.value!r} query"
                                      " mode; supported: default, hybrid")
        # VectorStoreIndex passes its (for a store that keeps text, empty) list of node ids.
        if query.node_ids:
            raise NotImplementedError("pymem's LlamaIndex store cannot restrict a search to node_ids;"
                                      " use filters or doc_ids")
        if query.query_embedding is None:
            raise ValueError("the query has no embedding (the store searches by vector: is_embedding_query)")
        text = query.query_str or ""
        # Without words there is nothing for the keyword side: a vector search.
        hybrid = query.mode is VectorStoreQueryMode.HYBRID and bool(text.strip())
        k = query.similarity_top_k
        fetch = k
        if hybrid:
            # pymem takes the same number of candidates from each side, so the larger of
            # the dense (similarity_top_k) and sparse (sparse_top_k) sizes; hybrid_top_k
            # is how many fused results come back.
            k = query.hybrid_top_k or k
            fetch = max(k, query.similarity_top_k, query.sparse_top_k or 0)
        return {"query": text, "query_embedding": query.query_embedding, "k": k,
                "candidates": max(fetch, self.candidates or 0), "rerank": self.rerank,
                "where": to_where(query.filters, query.doc_ids), "hybrid": hybrid}

    def _result(self, query: VectorStoreQuery, hits: list[MemoryHit]) -> VectorStoreQueryResult:
        if query.doc_ids:  # documents are the store's own chunks (see _own)
            hits = [h for h in hits if self._own(h)]
        return VectorStoreQueryResult(nodes=[self._node(h) for h in hits],
                                      similarities=[1.0 - h.distance for h in hits],
                                      ids=[h.external_id for h in hits])

    # -- writes --------------------------------------------------------------
    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Upsert embedded nodes (a node whose id exists replaces it), all or nothing; return their ids.

        Raises:
            ValueError: a node without an embedding, with metadata that is not flat, with a
                reserved key (``_ref_doc_id``, ``_node``), or that pymem refuses (wrong
                dimension, text over ``PYMEM_MAX_TEXT_BYTES``, a bad id); nothing is written.
                A ``user_id`` keyword (the tenant is the store's).
        """
        _refuse_tenant(add_kwargs)
        if not nodes:
            return []
        chunks = [self._chunk(node, i) for i, node in enumerate(nodes)]
        return sync.upsert_memory_chunks(self._sync_source(), self._user_id, chunks)

    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        """Async :meth:`add`."""
        _refuse_tenant(kwargs)
        if self._async_connection is None:
            return await asyncio.to_thread(self.add, nodes)
        if not nodes:
            return []
        chunks = [self._chunk(node, i) for i, node in enumerate(nodes)]
        return await repository.upsert_memory_chunks(self._async_connection, self._user_id, chunks)

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node whose ``ref_doc_id`` is this one.

        The ref_doc_id is sealed, so this pages through the tenant's chunks
        (``list_memory_chunks``, ``scan_page_size`` a page, each page audited as an export),
        keeps those whose sealed ``_ref_doc_id`` matches, and deletes them by id: linear in
        the tenant's size, and not atomic (a node added meanwhile may stay).
        """
        _refuse_tenant(delete_kwargs)
        sync.run(self._delete_ref_doc(self._sync_source(), ref_doc_id))

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Async :meth:`delete`."""
        _refuse_tenant(delete_kwargs)
        if self._async_connection is None:
            return await asyncio.to_thread(self.delete, ref_doc_id)
        await self._delete_ref_doc(self._async_connection, ref_doc_id)

    def delete_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None,
                     **delete_kwargs: Any) -> None:
        """Delete nodes by id, by filter (a scan, as :meth:`delete`), or by both (ids that match).

        Neither deletes nothing (:meth:`clear` empties the store). Missing ids are ignored.

        Raises:
            ValueError: an unsupported filter (see :func:`to_where`).
        """
        _refuse_tenant(delete_kwargs)
        sync.run(self._delete_nodes(self._sync_source(), node_ids, filters))

    async def adelete_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None,
                            **delete_kwargs: Any) -> None:
        """Async :meth:`delete_nodes`."""
        _refuse_tenant(delete_kwargs)
        if self._async_connection is None:
            return await asyncio.to_thread(self.delete_nodes, node_ids, filters)
        await self._delete_nodes(self._async_connection, node_ids, filters)

    def clear(self) -> None:
        """Erase the tenant: every chunk, whoever wrote it, and its data keys (``erase_user``)."""
        sync.erase_user(self._sync_source(), self._user_id)

    async def aclear(self) -> None:
        """Async :meth:`clear`."""
        if self._async_connection is None:
            return await asyncio.to_thread(self.clear)
        await repository.erase_user(self._async_connection, self._user_id)

    # -- reads ---------------------------------------------------------------
    def get_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None) -> list[BaseNode]:
        """Nodes by id (in the order given; missing ones left out), filtered by ``filters``
        when given; with no ids, every node that meets ``filters`` (a scan, as :meth:`delete`).

        Raises:
            ValueError: an unsupported filter (see :func:`to_where`).
        """
        return [self._node(h) for h in sync.run(self._get(self._sync_source(), node_ids, filters))]

    async def aget_nodes(self, node_ids: list[str] | None = None,
                         filters: MetadataFilters | None = None) -> list[BaseNode]:
        """Async :meth:`get_nodes`."""
        if self._async_connection is None:
            return await asyncio.to_thread(self.get_nodes, node_ids, filters)
        return [self._node(h) for h in await self._get(self._async_connection, node_ids, filters)]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Search the tenant: ``similarity_top_k`` nodes, closest first, with ``1 - cosine
        distance`` as similarity.

        ``DEFAULT`` mode is a vector search; ``HYBRID`` ranks by keyword relevance of
        ``query_str`` and vector similarity together (reciprocal rank fusion; ``alpha`` is not
        used), returning ``hybrid_top_k`` (else ``similarity_top_k``) nodes from
        ``max(similarity_top_k, sparse_top_k)`` candidates a side; without ``query_str`` it is
        a vector search. ``filters`` and ``doc_ids`` (ref_doc_ids) are evaluated in the database.

        Raises:
            NotImplementedError: another mode, or ``node_ids`` (an empty list is no restriction).
            ValueError: no query embedding, an unsupported filter (see :func:`to_where`), a
                ``user_id`` keyword, or what ``query_memory`` refuses (``k`` over 1000, ...).
        """
        _refuse_tenant(kwargs)
        return self._result(query, sync.query_memory(self._sync_source(), self._user_id, **self._query_args(query)))

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Async :meth:`query`."""
        _refuse_tenant(kwargs)
        if self._async_connection is None:
            return await asyncio.to_thread(self.query, query)
        return self._result(query, await repository.query_memory(self._async_connection, self._user_id,
                                                          **self._query_args(query)))
