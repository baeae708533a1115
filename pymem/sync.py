"""pymem for sync code: :mod:`pymem.repository`'s API (and :mod:`pymem.rotation`'s and
:mod:`pymem.root_rotation`'s) as plain functions.

Each function here runs the async implementation of the same name to completion,
so there is one implementation of every rule. Pass a ``psycopg.Connection`` or a
``psycopg_pool.ConnectionPool`` (async ones work too). On a sync connection the
database calls block as sync psycopg does, inside a private event loop of the
calling thread; the reranker's latency budget is kept by that loop. Called from a
thread that is running an event loop (sync code inside async code), the call runs
on a helper thread instead, and blocks the caller until it is done.

Pools: ``ConnectionPool(..., configure=pymem.sync.configure, check=pymem.sync.check, reset=pymem.sync.reset)``.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from . import lifecycle, partial_update, repository, root_rotation, rotation, term_backfill
from .connections import check_sync as check
from .connections import configure_sync as configure
from .connections import reset_sync as reset
from .repository import ChunkInput, DuplicateId, MemoryHit, MemoryPage

T = TypeVar("T")

__all__ = [
    "ChunkInput", "DuplicateId", "MemoryHit", "MemoryPage", "check", "configure", "delete_document", "delete_memory_chunks",
    "erase_user", "get_chunk", "get_memory_chunks", "index_memory_chunk", "index_memory_chunks", "index_memory_terms",
    "key_usage",
    "list_memory_chunks", "open_embedding", "purge_expired_chunks", "query_memory", "reset", "retire_root_key",
    "root_key_usage",
    "rotate_encryption_key", "rotate_root_key", "rotate_tenant_key", "run", "update_memory_chunks",
    "upsert_memory_chunks",
]

_local = threading.local()
_helper: ThreadPoolExecutor | None = None
_helper_lock = threading.Lock()
_runners: list[asyncio.Runner] = []  # every thread's loop, closed at exit


def _thread_runner() -> asyncio.Runner:
    # One loop per thread, kept: a reranker run that outlives its budget finishes
    # on a worker thread and reports to the loop that started it.
    runner = getattr(_local, "runner", None)
    if runner is None:
        runner = _local.runner = asyncio.Runner()
        with _helper_lock:
            _runners.append(runner)
    return runner


@atexit.register
def _close_runners() -> None:
    """Close every thread's loop (an unclosed loop warns at exit: ResourceWarning)."""
    with _helper_lock:
        runners, _runners[:] = list(_runners), []
        helper = _helper
    if helper is not None:
        helper.shutdown(wait=True)
    for runner in runners:
        runner.close()


def _helper_thread() -> ThreadPoolExecutor:
    global _helper
    with _helper_lock:
        if _helper is None:
            _helper = ThreadPoolExecutor(max_workers=4, thread_name_prefix="pymem-sync")
        return _helper


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one of pymem's coroutines to completion from sync code; return its result."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _thread_runner().run(coroutine)
    return _helper_thread().submit(lambda: _thread_runner().run(coroutine)).result()


def _blocking(implementation: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    @functools.wraps(implementation)
    def call(*args: Any, **kwargs: Any) -> T:
        return run(implementation(*args, **kwargs))

    return call


index_memory_chunk = _blocking(repository.index_memory_chunk)
index_memory_chunks = _blocking(repository.index_memory_chunks)
upsert_memory_chunks = _blocking(repository.upsert_memory_chunks)
get_memory_chunks = _blocking(repository.get_memory_chunks)
list_memory_chunks = _blocking(repository.list_memory_chunks)
get_chunk = _blocking(repository.get_chunk)
open_embedding = _blocking(repository.open_embedding)
query_memory = _blocking(repository.query_memory)
delete_memory_chunks = _blocking(repository.delete_memory_chunks)
delete_document = _blocking(repository.delete_document)
erase_user = _blocking(repository.erase_user)
index_memory_terms = _blocking(term_backfill.index_memory_terms)
update_memory_chunks = _blocking(partial_update.update_memory_chunks)
purge_expired_chunks = _blocking(lifecycle.purge_expired_chunks)
key_usage = _blocking(rotation.key_usage)
rotate_encryption_key = _blocking(rotation.rotate_encryption_key)
rotate_tenant_key = _blocking(rotation.rotate_tenant_key)
rotate_root_key = _blocking(root_rotation.rotate_root_key)
root_key_usage = _blocking(root_rotation.root_key_usage)
retire_root_key = _blocking(root_rotation.retire_root_key)
