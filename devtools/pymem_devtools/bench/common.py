"""Shared helpers for the benchmark suite: timing, percentiles, markdown tables."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np


def percentiles_ms(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max of latencies given in seconds, in milliseconds."""
    arr = np.asarray(samples_s, dtype=np.float64) * 1000.0
    return {
        "p50": round(float(np.percentile(arr, 50)), 4),
        "p95": round(float(np.percentile(arr, 95)), 4),
        "p99": round(float(np.percentile(arr, 99)), 4),
        "max": round(float(arr.max()), 4),
    }


def time_each(fn: Callable[[], object], n: int) -> list[float]:
    """Call ``fn`` n times; return each call's duration in seconds."""
    samples = []
    clock = time.perf_counter
    for _ in range(n):
        start = clock()
        fn()
        samples.append(clock() - start)
    return samples


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator rounded to 3 places (0 when the denominator is 0)."""
    return round(numerator / denominator, 3) if denominator else 0.0


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# The peers' "plain HNSW + filter": pgvector's usual setup, one graph over every tenant's
# rows (pymem's graphs are per bucket since 0008). Built after pymem's paths are measured.
PEER_INDEX_SQL = "CREATE INDEX bench_plain_hnsw ON pymem.memory_chunks USING hnsw (embedding public.vector_cosine_ops)"

_cluster = None
_cluster_settings: dict[str, str] = {}
# Scales whose server is sized as docs/dba.md ("Sizing") asks (shared_buffers at least
# the indexes' size), with the usual quarter of the machine's memory: the graphs and the
# rows a query touches stay in memory, as they would on a server sized for its data.
# The test suite's tiny and quick scales keep the server's defaults (no restart).
SIZED_SCALES = ("full", "xl")


def sized_server_settings() -> dict[str, str]:
    """The settings a benchmark server of a sized scale runs with: a quarter of RAM as shared_buffers."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"shared_buffers": f"{ram // 4 // 2**20}MB"}


def bench_cluster(scale: str | None = None):
    """One throw-away Postgres for the whole benchmark run (embedded, or PYMEM_DATABASE_URL).

    Asked for with a scale in :data:`SIZED_SCALES`, it is restarted once with
    :func:`sized_server_settings` (:func:`server_settings` reports them); without
    a scale it is left as it is. It is deleted when the process exits.
    """
    global _cluster
    if _cluster is None:
        import atexit

        from pymem.config import get_settings
        from pymem_devtools.clusters import Cluster

        settings = get_settings()
        _cluster = Cluster(None if settings.database_url else settings.pg_version)
        atexit.register(_cluster.close)
    if scale in SIZED_SCALES and not _cluster_settings:
        _cluster_settings.update(_cluster.restart_with(sized_server_settings()))
    return _cluster


def server_settings() -> dict[str, str]:
    """The settings the benchmark server was restarted with, as in effect; empty on its defaults."""
    return dict(_cluster_settings)


def app_dsn(cluster, dbname: str) -> str:
    """DSN of a login role with pymem_app on ``dbname`` (benchmarks measure the app's path)."""
    cluster.login_role("pymem_bench_app", ["pymem_app"])
    return cluster.url(dbname, user="pymem_bench_app")


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """n random unit vectors (float32)."""
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def build_solo_graphs(admin_dsn: str, progress: bool = True) -> dict:
    """What a DBA runs after a bulk load, ``pymem solo-graphs``: a graph of its own for
    every tenant of ``pymem.tuning.solo_graph_min_rows`` rows or more. Returns the
    threshold, the graphs built and the seconds it took."""
    import psycopg

    from pymem.solo_graphs import apply_solo_graphs, plan_solo_graphs

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        start = time.perf_counter()
        plan = plan_solo_graphs(conn)
        report = apply_solo_graphs(conn, plan, progress=progress)
        return {"min_rows": plan.min_rows, "built": report.built, "build_s": round(time.perf_counter() - start, 1)}


def drop_solo_graphs(admin_dsn: str) -> None:
    """Drop every solo graph (searches then walk the bucket graphs, as before 0017)."""
    import psycopg

    from pymem.solo_graphs import SoloGraphPlan, apply_solo_graphs

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        names = [name for (name,) in conn.execute(
            "SELECT indexname FROM pg_catalog.pg_indexes WHERE schemaname = 'pymem'"
            " AND indexname LIKE 'memory\\_chunks\\_solo\\_%'").fetchall()]
        apply_solo_graphs(conn, SoloGraphPlan(0, 0, [], names, 0), progress=False)


@contextlib.contextmanager
def tiny_reranker() -> Iterator[None]:
    """Rerank with the tiny random-weight cross-encoder (TinyBERT-L2's shape, exported by the
    real code, int8) for the block: the reranker's cost without a model download. The
    settings it changes are put back after."""
    from pymem import rerank
    from pymem.onnx_export import export_reranker
    from pymem_devtools.tiny_reranker import build_tiny_cross_encoder

    with tempfile.TemporaryDirectory(prefix="bench-reranker-") as tmp:
        checkpoint = build_tiny_cross_encoder(Path(tmp) / "checkpoint")
        export_reranker(str(checkpoint), Path(tmp) / "onnx", int8=True, progress=False)
        saved = {k: os.environ.get(k) for k in ("PYMEM_RERANK_MODEL", "PYMEM_RERANK_DEVICE", "RERANK_ENABLED")}
        os.environ.update(PYMEM_RERANK_MODEL=str(Path(tmp) / "onnx"), PYMEM_RERANK_DEVICE="auto", RERANK_ENABLED="true")
        rerank.reset_reranker()
        try:
            yield
        finally:
            for key, value in saved.items():
                os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
            rerank.reset_reranker()
