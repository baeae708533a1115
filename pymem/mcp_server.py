"""An MCP memory server over one tenant: ``pymem mcp`` (extra ``mcp``, the official SDK).

Tools, for an agent to keep and find what it learns about its user:

- ``remember(text, metadata=None, id=None, ttl_s=0)``: store a memory (with ``id``, replace the
  memory of that id; with ``ttl_s``, forget it that many seconds from now); returns its id.
- ``recall(query, k=5, where=None)``: the memories that best match the query, best first: by
  keyword and meaning together (hybrid search) unless ``PYMEM_TERM_TAGS`` is false, then by
  meaning; with a metadata filter (``$eq``, ``$ne``, ``$in``, ``$nin``, ``$exists``, ``$and``,
  ``$or``, as :func:`pymem.repository.query_memory`). Each memory says when it was created and
  last updated (and when it expires, if it does).
- ``update(id, text=None, metadata=None)``: change a memory's text (embedded again) or its
  metadata (replaced whole), keeping the rest; returns how many were updated.
- ``forget(ids)``: delete memories; returns how many there were.
- ``list_memories(limit=20, after=None)``: a page of memories in a stable order, with the
  cursor of the next page.

Optional text arguments (``remember``'s ``id``, ``update``'s ``text``) are plain strings, empty
when not given: the SDK reads a string given for a ``str | None`` argument as JSON first, so an
id ``"null"`` would have become no id at all.

**The tenant is the server's, never a tool's argument.** It is fixed when the server starts
(``--user-id`` or ``PYMEM_MCP_USER_ID``). No tool takes a user, and arguments a tool does not
declare are dropped before it runs, so a model told by a prompt injection to read or change
another user's memories has nothing to name that user with. Run one server per user (an MCP
client starts one per session over stdio).

Embeddings are the deployment's: ``--embedder module:attribute`` (or ``PYMEM_MCP_EMBEDDER``)
names an object with ``embed(texts) -> array`` (one row per text, of the database's
dimension), or a class or function that makes one without arguments, such as
``pymem_devtools.minilm:MiniLMEmbedder`` (all-MiniLM-L6-v2 on ONNX Runtime, 384-d).

Every call goes through pymem's API: row security under the tenant's proof, sealed fields,
the durable read audit. Texts and queries are sized before the embedder runs, and a call
returns at most :data:`MAX_RESULTS` memories. The server logs at WARNING, so no tool's
arguments or results reach its log. A refused call's error is pymem's one-line message or the
SDK's argument check, which may quote what the model sent, never anything else.
"""

# No `from __future__ import annotations`: the SDK reads the tools' annotations (the
# Context parameter among them) as objects, and mcp is imported only when a server is built.
import asyncio
import functools
import importlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from psycopg_pool import AsyncConnectionPool

from . import connections
from . import repository as repo
from .chunks import ChunkInput, check_metadata, check_text
from .config import get_settings
from .db import database_url
from .extras import require
from .failures import expected_failure
from .lifecycle import expiry_of
from .partial_update import ChunkUpdate, update_memory_chunks
from .terms import term_language

__all__ = ["DOC_ID", "MAX_RESULTS", "build_server", "load_embedder", "serve"]

#: The ``doc_id`` (and ``source``) of what the server stores.
DOC_ID = "mcp"
#: The most memories one ``recall`` or ``list_memories`` returns.
MAX_RESULTS = 100

_INSTRUCTIONS = ("Long-term memory for one user, fixed when this server started. remember stores a fact, recall"
                 " finds the facts that best match a question (exact names and ids included), update changes a"
                 " fact, forget deletes by id, list_memories pages through them.")


def load_embedder(spec: str) -> Any:
    """The embedder ``module:attribute`` names: the attribute itself when it has ``embed``,
    else what calling it without arguments returns.

    Raises:
        ValueError: ``spec`` is not ``module:attribute``, or names nothing with ``embed``.
        ImportError: the module cannot be imported.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError("the embedder must be given as module:attribute (e.g. pymem_devtools.minilm:MiniLMEmbedder)")
    found = getattr(importlib.import_module(module_name), attribute, None)
    if found is None:
        raise ValueError(f"{module_name} has no attribute {attribute!r}")
    embedder = found if hasattr(found, "embed") and not isinstance(found, type) else found()
    if not callable(getattr(embedder, "embed", None)):
        raise ValueError(f"{spec} makes no object with an embed(texts) method")
    return embedder


def _model_errors(tool_error: type[Exception]):
    """Turn what a call got wrong (a bad argument, a refusal: pymem's expected failures) into a
    ``tool_error``, which the model sees with its one-line message: never a value it passed,
    nor a database's message, which may quote one. Anything else is a bug, which the SDK
    reports to the model as a bare failure and logs on the server."""
    def wrap(tool):
        @functools.wraps(tool)
        async def call(*args, **kwargs):
            try:
                return await tool(*args, **kwargs)
            except Exception as exc:
                message = expected_failure(exc, "mcp")
                if message is None:
                    raise
                raise tool_error(message) from None
        return call
    return wrap


def _check_at_most(name: str, value: int) -> None:
    # Everything returned goes into the model's context: a page of 1,000 memories of 64 KiB
    # each is no answer for a model, and a large reply for the server to build.
    if isinstance(value, int) and value > MAX_RESULTS:
        raise ValueError(f"{name} is at most {MAX_RESULTS} here")


def _memory(hit: repo.MemoryHit) -> dict[str, Any]:
    memory = {"id": hit.external_id, "text": hit.text, "metadata": hit.metadata,
              "created_at": hit.created_at.isoformat(), "updated_at": hit.updated_at.isoformat()}
    if hit.expires_at is not None:
        memory["expires_at"] = hit.expires_at.isoformat()
    if hit.distance is not None:
        memory["distance"] = round(hit.distance, 6)
    return memory


def build_server(user_id: str, embedder: Any, *, dsn: str | None = None, pool_size: int = 4):
    """The MCP server (an ``mcp.server.mcpserver.MCPServer``) for the tenant ``user_id``.

    Args:
        user_id: the tenant every tool acts for (the application's user id, as in every
            pymem call); it never comes from a tool call.
        embedder: an object with ``embed(texts) -> array`` of the database's dimension.
        dsn: the database (default: :func:`pymem.db.database_url`), as a login with pymem_app.
        pool_size: connections the server keeps (tool calls may run concurrently).

    Raises:
        ValueError: ``user_id`` is empty or not a str.
        MissingExtra: the ``mcp`` extra is not installed.
    """
    if not isinstance(user_id, str) or not user_id:
        raise ValueError("the MCP server needs the user id it serves (a non-empty str)")
    mcpserver = require("mcp.server.mcpserver", "mcp", "pymem mcp")

    @asynccontextmanager
    async def lifespan(_server) -> AsyncIterator[Any]:
        pool = AsyncConnectionPool(dsn or database_url(), min_size=1, max_size=pool_size, open=False,
                                   configure=connections.configure, reset=connections.reset)
        await pool.open()
        try:
            yield pool
        finally:
            await pool.close()

    # The SDK logs each request at INFO; nothing but warnings, which carry no arguments.
    server = mcpserver.MCPServer("pymem", instructions=_INSTRUCTIONS, lifespan=lifespan, log_level="WARNING")
    errors = _model_errors(require("mcp.server.mcpserver.exceptions", "mcp", "pymem mcp").ToolError)

    def pool_of(ctx) -> Any:
        return ctx.request_context.lifespan_context

    async def embedding(text: str, name: str) -> np.ndarray:
        # Sized first: the model tokenizes the whole text before it truncates. In a thread: a
        # forward pass would hold up every other call on the loop.
        check_text(text, get_settings().max_text_bytes, name)
        return np.asarray(await asyncio.to_thread(embedder.embed, [text]), dtype=np.float32)[0]

    @server.tool(description="Store a memory about the user. With id, replace the memory of that id."
                             " With ttl_s, forget it that many seconds from now. Returns the memory's id.")
    @errors
    async def remember(ctx: mcpserver.Context, text: str, metadata: dict[str, str | int | float | bool] | None = None,
                       id: str = "", ttl_s: float = 0) -> dict[str, str]:
        check_metadata(metadata, get_settings().max_text_bytes)  # before the embedder runs, as the text is
        expiry_of(None, ttl_s or None)  # checked before the embedder runs too
        chunk = ChunkInput(DOC_ID, DOC_ID, text, await embedding(text, "text"), metadata=metadata, id=id or None,
                           ttl=ttl_s or None)
        if not id:
            (row_id,) = await repo.index_memory_chunks(pool_of(ctx), user_id, [chunk])
            return {"id": str(row_id)}
        await repo.upsert_memory_chunks(pool_of(ctx), user_id, [chunk])
        return {"id": id}

    @server.tool(description="The user's memories that best match a question (by words and meaning), best first."
                             ' where filters on metadata: {"key": value}, {"key": {"$in": [...]}},'
                             ' {"key": {"$ne": value}}, {"key": {"$nin": [...]}}, {"key": {"$exists": true}},'
                             ' {"$and": [...]}, {"$or": [...]}.')
    @errors
    async def recall(ctx: mcpserver.Context, query: str, k: int = 5,
                     where: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        _check_at_most("k", k)
        hybrid = term_language(get_settings()) is not None
        hits = await repo.query_memory(pool_of(ctx), user_id, query, await embedding(query, "query"), k=k,
                                       where=where, hybrid=hybrid)
        return [_memory(hit) for hit in hits]

    @server.tool(description="Change the user's memory of this id: its text, or its metadata (replaced whole)."
                             " Returns how many memories were updated.")
    @errors
    async def update(ctx: mcpserver.Context, id: str, text: str = "",
                     metadata: dict[str, str | int | float | bool] | None = None) -> dict[str, int]:
        check_metadata(metadata, get_settings().max_text_bytes)
        vector = await embedding(text, "text") if text else None
        change = ChunkUpdate(id, text=text or None, metadata=metadata, embedding=vector)
        return {"updated": await update_memory_chunks(pool_of(ctx), user_id, [change])}

    @server.tool(description="Delete the user's memories with these ids. Returns how many there were.")
    @errors
    async def forget(ctx: mcpserver.Context, ids: list[str]) -> dict[str, int]:
        return {"deleted": await repo.delete_memory_chunks(pool_of(ctx), user_id, ids)}

    @server.tool(description="A page of the user's memories in a stable order; pass next as after for the next"
                             " page (null on the last).")
    @errors
    async def list_memories(ctx: mcpserver.Context, limit: int = 20, after: str | None = None) -> dict[str, Any]:
        _check_at_most("limit", limit)
        page = await repo.list_memory_chunks(pool_of(ctx), user_id, limit=limit, after=after)
        return {"memories": [_memory(hit) for hit in page.hits], "next": page.next_cursor}

    return server


def serve(user_id: str | None, embedder_spec: str | None) -> None:
    """Run the server over stdio until the client closes it (``pymem mcp``).

    Raises:
        ValueError: no user id or embedder (argument or environment), or a bad embedder.
        MissingExtra: the ``mcp`` extra is not installed.
    """
    user_id = user_id or os.environ.get("PYMEM_MCP_USER_ID") or ""
    embedder_spec = embedder_spec or os.environ.get("PYMEM_MCP_EMBEDDER") or ""
    if not user_id:
        raise ValueError("the MCP server needs the user id it serves (--user-id or PYMEM_MCP_USER_ID)")
    if not embedder_spec:
        raise ValueError("the MCP server needs an embedder: --embedder module:attribute or PYMEM_MCP_EMBEDDER")
    build_server(user_id, load_embedder(embedder_spec)).run("stdio")

