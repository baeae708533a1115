"""Reranker latency: pymem against its peers and against its floor, for two model shapes.

Stands in for the seed's ``load_test.sh``: N queries x 24 candidates at 64, 128 and 256
tokens per (query, candidate) pair, every pair truncated to exactly that length (see
:func:`rerank_backends.workload`). Each timing covers tokenization + inference.

* Shapes (:mod:`rerank_models`): TinyBERT-L2 (pymem's default reranker, random weights)
  and MiniLM-L6 (the most-used cross-encoder's shape, genuine encoder weights).
* Backends (:mod:`rerank_backends`): pymem int8 and fp32, PyTorch eager,
  sentence-transformers' qint8 ONNX backend and FlashRank (the peers), and OpenVINO bf16
  on pymem's graph (a reference runtime, never the best peer). Each runs alone in a fresh
  process, one after the other, with 60 ms between queries: no backend's thread pool
  competes with another's.
* Floor (:mod:`rerank_floor`): the query's matmul work at the rates ORT reaches here,
  plus the fastest tokenization, measured in the same run; and ORT's profile of one
  int8 run, which shows what the ops the floor counts as free cost on these kernels.
* Shared cores: pymem int8, quiet and while Postgres builds an HNSW index on one core,
  under each thread setting of :data:`THREAD_SETTINGS`.
* Budget: pymem's :class:`~pymem.rerank.Reranker` on the MiniLM-L6 shape at 256 tokens
  under the default 250 ms budget, showing what the breaker does when the model does not fit.

GPU numbers are only reported when a CUDA session really ran (never on this machine).

``python -m pymem_devtools.bench.bench_rerank [--scale tiny|quick|full]`` prints the tables.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import tempfile
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from pymem.model_files import VARIANTS

from . import rerank_backends, rerank_floor
from .common import markdown_table, percentiles_ms, ratio
from .rerank_backends import BACKENDS, CANDIDATES_PER_QUERY, Case
from .rerank_models import SHAPE_MODELS, SHAPES, prepare

# Queries per (shape, backend, length): MiniLM-L6 is ~40x the work of TinyBERT-L2.
SCALES = {"tiny": {"tinybert-l2": 2, "minilm-l6": 1},
          "quick": {"tinybert-l2": 30, "minilm-l6": 8},
          "full": {"tinybert-l2": 100, "minilm-l6": 30}}
LENGTHS = (64, 128, 256)
# The smoke test measures one length: each (shape, backend, length) is a fresh process.
SCALE_LENGTHS = {"tiny": (64,), "quick": LENGTHS, "full": LENGTHS}
BUDGET_LENGTH = 256  # where MiniLM-L6 does not fit the default budget on these cores
PEERS = ("torch", "st_onnx_qint8", "flashrank")
FLOOR_GOAL = 1.3
BEST_PEER_GOAL = 0.5
BUDGET_CALLS = 8


def in_child(fn, *args):
    """``fn(*args)`` in a fresh process (spawned: no thread pool or allocator state is
    inherited), so what one measurement leaves running cannot slow the next."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def run(scale: str = "quick") -> dict:
    """Run the benchmark.

    Args:
        scale: ``tiny`` (smoke test), ``quick`` or ``full`` (100 TinyBERT queries, as the
            seed's load test, and 30 MiniLM queries per backend and length).

    Returns:
        ``{"name": "rerank", "results": {...}, "markdown": str}``; ``results["shapes"]``
        holds, per shape and length, every backend's percentiles, pymem's tokenize /
        inference split, the floor, the ratios and the int8-vs-fp32 top-1 agreement.

    Raises:
        ValueError: unknown scale.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}")
    import onnxruntime as ort

    results: dict = {"scale": scale, "candidates_per_query": CANDIDATES_PER_QUERY,
                     "cpu_count": os.cpu_count(), "onnxruntime": ort.__version__,
                     "gpu": "CUDAExecutionProvider" in ort.get_available_providers(),
                     "load_average_before": [round(x, 2) for x in os.getloadavg()], "shapes": {}}
    with tempfile.TemporaryDirectory(prefix="bench-rerank-") as tmp:
        files = {}
        for shape in SHAPES:
            files[shape] = in_child(prepare, shape, Path(tmp) / shape)
            queries = SCALES[scale][shape]
            results["shapes"][shape] = {"model": SHAPE_MODELS[shape], "queries": queries,
                                        "lengths": {str(n): _length(files[shape], n, queries)
                                                    for n in SCALE_LENGTHS[scale]}}
        results["shared_cores"] = _shared_cores(files["tinybert-l2"], max(SCALE_LENGTHS[scale]),
                                                SCALES[scale]["tinybert-l2"])
        results["budget"] = in_child(_budget_run, files["minilm-l6"].pymem_export, BUDGET_LENGTH, BUDGET_CALLS)
    budget_ms = results["budget"]["budget_ms"]
    for info in results["shapes"].values():
        for s in info["lengths"].values():
            # Inference is linear in the number of pairs: what p95 says fits the budget.
            s["candidates_within_budget"] = int(CANDIDATES_PER_QUERY * budget_ms // s["backends"]["pymem_int8"]["p95"])
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return {"name": "rerank", "results": results, "markdown": _markdown(results)}


def _length(files, length: int, queries: int) -> dict:
    runs = {backend: in_child(rerank_backends.measure, Case(backend, files, length, queries))
            for backend in BACKENDS}
    stats = {backend: percentiles_ms(r["seconds"]) for backend, r in runs.items()}
    for backend in ("pymem_int8", "pymem_fp32", "openvino_bf16"):
        stats[backend]["tokenize_p50"] = percentiles_ms(runs[backend]["tokenize_seconds"])["p50"]
        stats[backend]["inference_p50"] = percentiles_ms(runs[backend]["inference_seconds"])["p50"]
    floor = in_child(rerank_floor.measure, files.config, files.pymem_export / "tokenizer.json",
                     rerank_backends.workload(queries, length), CANDIDATES_PER_QUERY, length, True)
    profile = in_child(rerank_floor.op_split, files.pymem_export / VARIANTS["int8"][0], CANDIDATES_PER_QUERY,
                       length)
    best_peer = min(PEERS, key=lambda b: stats[b]["p95"])
    int8 = stats["pymem_int8"]
    return {
        "backends": stats,
        "load_seconds": {backend: round(r["load_s"], 3) for backend, r in runs.items()},
        "floor": floor,
        "int8_op_profile": profile,
        "work_vs_full_graph": rerank_floor.work_vs_full_graph(files.config, CANDIDATES_PER_QUERY, length),
        "best_peer": best_peer,
        "ratios": {
            "int8_p95_vs_torch": ratio(int8["p95"], stats["torch"]["p95"]),
            "fp32_p95_vs_torch": ratio(stats["pymem_fp32"]["p95"], stats["torch"]["p95"]),
            "int8_p95_vs_best_peer": ratio(int8["p95"], stats[best_peer]["p95"]),
            "int8_p50_vs_floor": ratio(int8["p50"], floor["path_ms"]["int8"]),
            "int8_p95_vs_floor": ratio(int8["p95"], floor["path_ms"]["int8"]),
            "int8_inference_p50_vs_floor": ratio(int8["inference_p50"], floor["inference_ms"]["int8"]),
            # The matmul ops as ORT ran them against the floor's matmul time, and the
            # least path on ORT's kernels: the floor plus the ops it counts as free.
            "int8_matmul_ops_vs_floor": ratio(profile["matmul_ms"], floor["inference_ms"]["int8"]),
            "floor_plus_other_ops_vs_floor": ratio(floor["path_ms"]["int8"] + profile["other_ms"],
                                                   floor["path_ms"]["int8"]),
            # Another runtime's fused bf16 kernels on pymem's fp32 graph, against the same floor.
            "openvino_bf16_p50_vs_floor": ratio(stats["openvino_bf16"]["p50"], floor["path_ms"]["int8"]),
            "openvino_bf16_p95_vs_best_peer": ratio(stats["openvino_bf16"]["p95"], stats[best_peer]["p95"]),
        },
        "int8_fp32_top1_agreement": _agreement(runs["pymem_int8"]["top1"], runs["pymem_fp32"]["top1"]),
        "fp32_torch_top1_agreement": _agreement(runs["pymem_fp32"]["top1"], runs["torch"]["top1"]),
        "bf16_fp32_top1_agreement": _agreement(runs["openvino_bf16"]["top1"], runs["pymem_fp32"]["top1"]),
    }


def _agreement(a: list[int], b: list[int]) -> float:
    return round(float(np.mean(np.asarray(a) == np.asarray(b))), 3)


# pymem's CPU session settings compared with Postgres on the same cores:
# (intra-op threads, ORT session config entries, process environment).
THREAD_SETTINGS = {
    "threads = cores, no spinning (default)": (0, (), ()),
    "threads = cores, spin within a run": (0, (("session.intra_op.allow_spinning", "1"),
                                               ("session.force_spinning_stop", "1")), ()),
    "1 thread": (1, (), ()),
    # The tokenizers library's own, process-wide switch: no rayon pool, tokenization on
    # the calling threads (pymem cannot set it for one model without setting it for all).
    "threads = cores, TOKENIZERS_PARALLELISM=false": (0, (), (("TOKENIZERS_PARALLELISM", "false"),)),
}


def _shared_cores(files, length: int, queries: int) -> dict:
    """pymem int8 at ``length`` tokens under each of :data:`THREAD_SETTINGS`, quiet and
    while Postgres builds an HNSW index."""
    out: dict = {"length": length, "load": "CREATE INDEX ... USING hnsw (10,000 x 384-d, one core) in a loop",
                 "cases": {}}
    for label, loaded in (("quiet", False), ("database busy", True)):
        with _index_builds() if loaded else contextlib.nullcontext() as builds:
            for setting, (threads, config, environment) in THREAD_SETTINGS.items():
                run = in_child(rerank_backends.measure,
                               Case("pymem_int8", files, length, queries, threads, config, environment))
                out["cases"][f"{label}, {setting}"] = percentiles_ms(run["seconds"])
        if loaded:
            out["index_builds_during"] = builds["count"]
    return out


@contextlib.contextmanager
def _index_builds():
    """Keep one Postgres backend busy building (then dropping) an HNSW index."""
    import psycopg

    from .common import bench_cluster

    dsn = bench_cluster().fresh_database("pymem_bench_rerank_load", migrate=False)
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    conn.execute("CREATE TABLE public.load_vectors AS SELECT (SELECT array_agg(random())::vector(384) "
                 "FROM generate_series(1, 384) WHERE g > 0) AS v FROM generate_series(1, 10000) g")
    conn.execute("SET max_parallel_maintenance_workers = 0")  # one core, predictably
    stop = threading.Event()
    state = {"count": 0}

    def build() -> None:
        while not stop.is_set():
            try:
                conn.execute("CREATE INDEX load_hnsw ON public.load_vectors USING hnsw (v vector_l2_ops)")
            except psycopg.errors.QueryCanceled:
                return  # cancelled at the end of the measurement
            conn.execute("DROP INDEX public.load_hnsw")
            state["count"] += 1

    worker = threading.Thread(target=build, name="pymem-bench-db-load", daemon=True)
    worker.start()
    try:
        yield state
    finally:
        stop.set()
        conn.cancel_safe()
        worker.join()
        conn.close()


def _budget_run(model_dir: Path, length: int, calls: int) -> dict:
    """pymem's Reranker (default budget and breaker) on ``model_dir``, ``calls`` times."""
    import asyncio
    import dataclasses

    from pymem.config import get_settings
    from pymem.rerank import Reranker

    settings = dataclasses.replace(get_settings(), rerank_model_dir=model_dir, rerank_device="cpu",
                                   rerank_max_length=length)
    reranker = Reranker(settings)
    query, candidates = rerank_backends.workload(calls, length)[0]

    async def calls_in_a_row() -> None:
        for _ in range(calls):
            await reranker.rerank(query, candidates)

    asyncio.run(calls_in_a_row())
    metrics = reranker.metrics_json()
    reranker.close()
    return {"calls": calls, "budget_ms": settings.rerank_circuit_ms, "length": length,
            "breaker_threshold": settings.rerank_breaker_threshold, "metrics": metrics}


def _markdown(results: dict) -> str:
    parts = [f"Reranker latency ({results['candidates_per_query']} candidates per query, "
             f"{results['cpu_count']} CPU cores, ms per query; each backend alone in its own process)"]
    for shape, info in results["shapes"].items():
        rows, summary = [], []
        for length, s in info["lengths"].items():
            floor = s["floor"]
            for backend in BACKENDS:
                b = s["backends"][backend]
                split = (f"{b['tokenize_p50']} + {b['inference_p50']}" if "tokenize_p50" in b else "")
                rows.append([length, backend, round(b["p50"], 2), round(b["p95"], 2), split,
                             f"{ratio(b['p95'], s['backends']['torch']['p95']):.2f}"])
            rows.append([length, "floor (int8 / fp32)", f"{floor['path_ms']['int8']:.2f} / "
                         f"{floor['path_ms']['fp32']:.2f}", "", f"{floor['tokenize_ms']:.2f} + "
                         f"{floor['inference_ms']['int8']:.2f}", ""])
            r = s["ratios"]
            summary.append(
                f"{length} tok: int8 p95 {r['int8_p95_vs_torch']:.2f}x torch, {r['int8_p95_vs_best_peer']:.2f}x "
                f"the best peer ({s['best_peer']}); int8 p50 {r['int8_p50_vs_floor']:.2f}x / p95 "
                f"{r['int8_p95_vs_floor']:.2f}x the floor (inference alone {r['int8_inference_p50_vs_floor']:.2f}x); "
                f"top-1 int8 = fp32 {s['int8_fp32_top1_agreement']:.2f}, fp32 = torch "
                f"{s['fp32_torch_top1_agreement']:.2f}; about {s['candidates_within_budget']} candidates fit "
                f"the {results['budget']['budget_ms']:.0f} ms budget at int8's p95")
            profile = s["int8_op_profile"]
            largest = ", ".join(f"{op} {ms:.2f}" for op, ms in list(profile["other_by_op_ms"].items())[:4])
            summary.append(
                f"{length} tok, ORT's profile of one int8 run: matmul ops {profile['matmul_ms']:.2f} ms "
                f"({r['int8_matmul_ops_vs_floor']:.2f}x the floor's inference), the ops the floor counts as free "
                f"{profile['other_ms']:.2f} ms ({largest}, ...): the floor plus them is "
                f"{r['floor_plus_other_ops_vs_floor']:.2f}x the floor, the least a path on these kernels can "
                f"take; pymem's graph does {s['work_vs_full_graph']:.2f} of the arithmetic of the unpruned "
                "graph the ONNX peers run")
            summary.append(
                f"{length} tok, OpenVINO bf16 on pymem's fp32 graph (a reference, not a peer): p50 "
                f"{r['openvino_bf16_p50_vs_floor']:.2f}x the floor, p95 {r['openvino_bf16_p95_vs_best_peer']:.2f}x "
                f"the best peer; top-1 bf16 = fp32 {s['bf16_fp32_top1_agreement']:.2f}")
        longest = max(info["lengths"], key=int)
        floor = info["lengths"][longest]["floor"]
        parts += ["", f"#### {shape}: {info['model']}, {info['queries']} queries", "",
                  markdown_table(["tokens", "backend", "p50", "p95", "p50 tokenize + infer", "p95 / torch"], rows),
                  "", *[f"- {line}" for line in summary],
                  f"- floor at {longest} tokens: {floor['gflop_weight']} GFLOP in weight matmuls, "
                  f"{floor['gflop_attention']} in attention; rates here (G/s): "
                  + ", ".join(f"{k} {v}" for k, v in floor["rates_g_per_s"].items())]
    shared = results["shared_cores"]
    rows = [[label, round(v["p50"], 2), round(v["p95"], 2)] for label, v in shared["cases"].items()]
    parts += ["", f"#### Shared cores: pymem int8, TinyBERT-L2, {shared['length']} tokens, while Postgres "
              f"runs {shared['load']} ({shared['index_builds_during']} builds finished during the runs)", "",
              markdown_table(["case", "p50", "p95"], rows)]
    budget = results["budget"]
    metrics = budget["metrics"]
    parts += ["", f"#### Budget: MiniLM-L6 shape, {budget['length']} tokens, {budget['calls']} calls of "
              f"{results['candidates_per_query']} candidates under the default {budget['budget_ms']:.0f} ms budget",
              "", f"answered in ANN order: {metrics['rerank_skipped_total']} of {budget['calls']} "
              f"({metrics['rerank_skipped_by_reason']}); breaker state after: {metrics['breaker']['state']} "
              f"(opens after {budget['breaker_threshold']} consecutive failures)"]
    parts += ["", "GPU: not measured here (CPU backends only; no GPU figures exist; see docs/reranking.md)."
              if results["gpu"] else "GPU: not measured (no CUDA device on this machine)."]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=list(SCALES), default="quick")
    print(run(parser.parse_args(argv).scale)["markdown"])


if __name__ == "__main__":
    main()
