"""Reranker latency: PyTorch vs ONNX Runtime fp32 vs ONNX Runtime int8, same weights.

Stands in for the seed's ``load_test.sh``: N queries x 24 candidates at 64, 128 and
256 tokens per (query, candidate) pair. Every candidate is long enough to be truncated
to exactly that length, so each call is the worst case for its length and length
bucketing cannot help: the numbers measure the model path, not padding luck.

The model is the random-weight TinyBERT-L2-shaped cross-encoder of
:mod:`pymem.tiny_reranker`, exported by the real :func:`pymem.onnx_export.export_reranker`
(latency depends only on the shapes). Per query the three backends run back to back in
a rotating order, so load from other processes hits them alike. Each timing covers
tokenization + inference, as a query pays it:

* ``torch``: transformers tokenizer + ``AutoModelForSequenceClassification`` under
  ``torch.inference_mode()``, default threads, padding to the longest pair;
* ``ort_fp32`` / ``ort_int8``: :class:`pymem.rerank.CrossEncoder` (Rust tokenizer, length
  buckets, [CLS]-only last layer, ``ORT_ENABLE_ALL``), forced to the fp32 or int8 variant.

GPU numbers are only reported when a CUDA session really ran (never on this machine).

``python -m pymem.benchmarks.bench_rerank [--scale tiny|quick|full]`` prints the markdown table.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import markdown_table, percentiles_ms, ratio

SCALES = {"tiny": 3, "quick": 40, "full": 100}
LENGTHS = (64, 128, 256)
CANDIDATES_PER_QUERY = 24
WARMUP_QUERIES = 3


def _texts(rng: random.Random, words: list[str], n_words: int) -> str:
    return " ".join(rng.choice(words) for _ in range(n_words))


def _workload(queries: int, length: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    from pymem.tiny_reranker import _WORDS

    rng = random.Random(seed + length)
    # Words of the local vocabulary are one token each, so `length` words always
    # overflow the pair and truncation makes every pair exactly `length` tokens.
    return [(_texts(rng, _WORDS, 6), [_texts(rng, _WORDS, length) for _ in range(CANDIDATES_PER_QUERY)])
            for _ in range(queries + WARMUP_QUERIES)]


def _torch_backend(checkpoint: Path, length: int):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()

    def score(query: str, candidates: list[str]) -> np.ndarray:
        enc = tokenizer([query] * len(candidates), candidates, padding=True, truncation=True,
                        max_length=length, return_tensors="pt")
        with torch.inference_mode():
            return model(**enc).logits[:, 0].numpy()

    return score


def _ort_backend(encoder):
    import onnxruntime as ort

    def score(query: str, candidates: list[str]) -> np.ndarray:
        return encoder.score(query, candidates, ort.RunOptions()).logits

    return score


def run(scale: str = "quick") -> dict:
    """Run the benchmark.

    Args:
        scale: ``tiny`` (a few queries; smoke test), ``quick`` (40 queries, < 1 min) or
            ``full`` (100 queries, as the seed's load test).

    Returns:
        ``{"name": "rerank", "results": {...}, "markdown": str}``; ``results`` holds the
        percentiles per backend and length, the p95 ratios to PyTorch, load times and
        the int8-vs-fp32 top-1 agreement.

    Raises:
        ValueError: unknown scale.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}")
    import onnxruntime as ort
    import torch

    from pymem.onnx_export import export_reranker
    from pymem.rerank import CrossEncoder
    from pymem.tiny_reranker import build_tiny_cross_encoder

    queries = SCALES[scale]
    results: dict = {"scale": scale, "queries": queries, "candidates_per_query": CANDIDATES_PER_QUERY,
                     "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                     "onnxruntime": ort.__version__, "providers_available": ort.get_available_providers(),
                     "load_average_before": [round(x, 2) for x in os.getloadavg()],
                     "lengths": {}, "load_seconds": {}}
    with tempfile.TemporaryDirectory(prefix="bench-rerank-") as tmp:
        checkpoint = build_tiny_cross_encoder(Path(tmp) / "checkpoint")
        export_reranker(str(checkpoint), Path(tmp) / "onnx", int8=True, progress=False)
        for length in LENGTHS:
            encoders = {}
            for variant in ("fp32", "int8"):
                encoders[variant] = CrossEncoder(Path(tmp) / "onnx", device="auto", max_length=length,
                                                 variant=variant)
                results["load_seconds"][f"ort_{variant}@{length}"] = round(encoders[variant].load_seconds, 3)
            results["device"] = encoders["int8"].device
            started = time.perf_counter()
            backends = {"torch": _torch_backend(checkpoint, length)}
            results["load_seconds"][f"torch@{length}"] = round(time.perf_counter() - started, 3)
            backends.update({f"ort_{v}": _ort_backend(e) for v, e in encoders.items()})
            timings = {name: [] for name in backends}
            top1 = []
            names = list(backends)
            for q, (query, candidates) in enumerate(_workload(queries, length)):
                outputs = {}
                for name in names[q % 3:] + names[:q % 3]:  # rotate who runs first
                    t0 = time.perf_counter()
                    outputs[name] = backends[name](query, candidates)
                    if q >= WARMUP_QUERIES:
                        timings[name].append(time.perf_counter() - t0)
                top1.append(outputs["ort_int8"].argmax() == outputs["ort_fp32"].argmax())
            stats = {name: percentiles_ms(samples) for name, samples in timings.items()}
            stats["ratio_p95_vs_torch"] = {name: ratio(stats[name]["p95"], stats["torch"]["p95"])
                                           for name in ("ort_fp32", "ort_int8")}
            stats["int8_fp32_top1_agreement"] = round(float(np.mean(top1)), 3)
            results["lengths"][str(length)] = stats
    # Other processes on these few cores inflate every backend; the load average says how much.
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    results["load_seconds_max_ort"] = max(v for k, v in results["load_seconds"].items() if k.startswith("ort"))
    return {"name": "rerank", "results": results, "markdown": _markdown(results)}


def _markdown(results: dict) -> str:
    rows = []
    for length, stats in results["lengths"].items():
        for name in ("torch", "ort_fp32", "ort_int8"):
            s = stats[name]
            rel = 1.0 if name == "torch" else stats["ratio_p95_vs_torch"][name]
            rows.append([length, name, *(round(s[k], 2) for k in ("p50", "p95", "p99", "max")), f"{rel:.2f}"])
    agreement = ", ".join(f"{k} tok {v['int8_fp32_top1_agreement']:.2f}" for k, v in results["lengths"].items())
    return "\n".join([
        f"### Reranker latency ({results['queries']} queries x {results['candidates_per_query']} candidates, "
        f"{results['cpu_count']} CPU cores, device {results['device']}, ms per query)",
        "",
        markdown_table(["tokens", "backend", "p50", "p95", "p99", "max", "p95 / torch"], rows),
        "",
        f"ORT session load incl. warm-up (max over variants and lengths): {results['load_seconds_max_ort']:.2f} s "
        f"(target < 5 s). int8-vs-fp32 top-1 agreement (random weights): {agreement}. "
        f"Load average before/after: {results['load_average_before'][0]} / {results['load_average_after'][0]}.",
        "GPU: not measured (no CUDA device on this machine)." if results["device"] == "cpu"
        else f"Device: {results['device']}.",
    ]) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=list(SCALES), default="quick")
    print(run(parser.parse_args(argv).scale)["markdown"])


if __name__ == "__main__":
    main()
