"""The reranker backends the benchmark compares, each timed alone in its own process.

Every backend scores the same (query, 24 candidates) workload and each timing covers
tokenization + inference, as a query pays it:

* ``pymem_int8`` / ``pymem_fp32``: :class:`pymem.rerank.CrossEncoder` on the int8 or fp32
  variant of pymem's export;
* ``torch``: transformers' tokenizer + ``AutoModelForSequenceClassification`` under
  ``torch.inference_mode()`` (PyTorch eager, default threads);
* ``st_onnx_qint8``: sentence-transformers' ``CrossEncoder(backend="onnx")`` on its own
  ``avx512_vnni`` qint8 export;
* ``flashrank``: FlashRank's ``Ranker.rerank`` (its tokenizer and session) on the same qint8 graph;
* ``openvino_bf16``: not a peer and not a path pymem runs: pymem's own fp32 export compiled by
  OpenVINO's CPU plugin with bf16 inference (fused kernels of another runtime), after the
  same ``encode_batch_fast`` tokenization, to show where a second runtime would put the path.

:func:`measure` runs in a fresh process per backend (see ``bench_rerank``): a backend's
thread pool then never competes with another backend's, which in one process (ORT's
spinning threads, torch's OpenMP pool) would slow whichever ran next.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass

import numpy as np

BACKENDS = ("pymem_int8", "pymem_fp32", "torch", "st_onnx_qint8", "flashrank", "openvino_bf16")
CANDIDATES_PER_QUERY = 24
WARMUP_QUERIES = 3
# A pause between queries, as between requests: without it, back-to-back calls keep
# thread pools hot and caches warm in a way a server's query stream does not.
PAUSE_S = 0.06


@dataclass(frozen=True)
class Case:
    """One measurement: a backend of one shape at one truncation length."""

    backend: str
    files: object  # rerank_models.ModelFiles
    length: int
    queries: int
    threads: int = 0  # pymem backends only: intra-op threads (0 = one per core)
    session_config: tuple[tuple[str, str], ...] = ()  # pymem backends only: ORT config entries
    environment: tuple[tuple[str, str], ...] = ()  # variables set in the child before the backend loads


def workload(queries: int, length: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """(query, candidates) pairs; every pair overflows ``length`` tokens.

    Words of :mod:`pymem_devtools.tiny_reranker`'s vocabulary are common English words, one
    token each in both shapes' tokenizers, so ``length`` words always overflow the pair
    and truncation makes every pair exactly ``length`` tokens: each call is the worst
    case for its length and length bucketing cannot help.
    """
    from pymem_devtools.tiny_reranker import _WORDS

    rng = random.Random(seed + length)

    def text(n_words: int) -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(n_words))

    return [(text(6), [text(length) for _ in range(CANDIDATES_PER_QUERY)])
            for _ in range(queries + WARMUP_QUERIES)]


def measure(case: Case) -> dict:
    """Time ``case`` (run in a child process).

    Returns:
        ``{"seconds": [...], "top1": [...], "load_s": float}`` plus, for pymem's
        backends, ``tokenize_seconds`` and ``inference_seconds``; ``top1`` is each
        query's best candidate index, for agreement between backends.
    """
    os.environ.update(case.environment)
    started = time.perf_counter()
    score = _BUILDERS[case.backend](case)
    load_s = time.perf_counter() - started
    seconds, top1, split = [], [], []
    for q, (query, candidates) in enumerate(workload(case.queries, case.length)):
        time.sleep(PAUSE_S)
        t0 = time.perf_counter()
        logits, parts = score(query, candidates)
        elapsed = time.perf_counter() - t0
        if q >= WARMUP_QUERIES:
            seconds.append(elapsed)
            top1.append(int(np.argmax(logits)))
            split.append(parts)
    out = {"seconds": seconds, "top1": top1, "load_s": load_s}
    if split[0] is not None:
        out["tokenize_seconds"] = [p[0] for p in split]
        out["inference_seconds"] = [p[1] for p in split]
    return out


def _pymem(case: Case):
    import onnxruntime as ort

    from pymem.rerank import CrossEncoder

    encoder = CrossEncoder(case.files.pymem_export, device="cpu", threads=case.threads,
                           max_length=case.length, variant=case.backend.removeprefix("pymem_"),
                           session_config=dict(case.session_config))

    def score(query, candidates):
        scores = encoder.score(query, candidates, ort.RunOptions())
        return scores.logits, (scores.tokenize_s, scores.inference_s)

    return score


def _torch(case: Case):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(case.files.checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(case.files.checkpoint).eval()

    def score(query, candidates):
        enc = tokenizer([query] * len(candidates), candidates, padding=True, truncation=True,
                        max_length=case.length, return_tensors="pt")
        with torch.inference_mode():
            return model(**enc).logits[:, 0].numpy(), None

    return score


def _sentence_transformers(case: Case):
    import torch
    from sentence_transformers import CrossEncoder

    from .rerank_models import ST_QINT8_FILE

    model = CrossEncoder(str(case.files.checkpoint), backend="onnx", device="cpu",
                         max_length=case.length, model_kwargs={"file_name": ST_QINT8_FILE})

    def score(query, candidates):
        # activation_fn=Identity: raw logits, as the other backends return
        logits = model.predict([(query, c) for c in candidates], batch_size=CANDIDATES_PER_QUERY,
                               show_progress_bar=False, activation_fn=torch.nn.Identity())
        return np.asarray(logits), None

    return score


def _flashrank(case: Case):
    import importlib

    # the module (flashrank/__init__ rebinds the package attribute to the class of that name)
    flashrank_module = importlib.import_module("flashrank.Ranker")

    from .rerank_models import FLASHRANK_MODEL_FILE, FLASHRANK_MODEL_NAME

    # FlashRank finds a model's file by name in a fixed table: register the local export.
    # Its directory exists already, so FlashRank downloads nothing.
    flashrank_module.model_file_map[FLASHRANK_MODEL_NAME] = FLASHRANK_MODEL_FILE
    ranker = flashrank_module.Ranker(model_name=FLASHRANK_MODEL_NAME, max_length=case.length,
                                     cache_dir=str(case.files.flashrank_cache), log_level="WARNING")

    def score(query, candidates):
        passages = [{"id": i, "text": c} for i, c in enumerate(candidates)]
        ranked = ranker.rerank(flashrank_module.RerankRequest(query=query, passages=passages))
        logits = np.empty(len(candidates), dtype=np.float32)
        for passage in ranked:  # sorted by score: put each back at its input position
            logits[passage["id"]] = passage["score"]
        return logits, None

    return score


def _openvino(case: Case):
    import openvino

    from pymem.model_files import VARIANTS
    from pymem.rerank.session import pad_encodings

    from .rerank_floor import pair_tokenizer

    export = case.files.pymem_export
    tokenizer = pair_tokenizer(export / "tokenizer.json", case.length)
    pad_id = int(case.files.config.get("pad_token_id") or 0)  # as CrossEncoder reads it
    # LATENCY: one stream using every core for each request, as pymem's ORT session does.
    model = openvino.Core().compile_model(str(export / VARIANTS["fp32"][0]), "CPU",
                                          {"INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": "LATENCY"})
    request = model.create_infer_request()
    names = {port.get_any_name() for port in model.inputs}

    def score(query, candidates):
        started = time.perf_counter()
        encodings = tokenizer.encode_batch_fast([(query, c) for c in candidates])
        arrays = pad_encodings(encodings, max(len(e.ids) for e in encodings), pad_id)
        feed = dict(zip(("input_ids", "attention_mask", "token_type_ids"), arrays))
        tokenized = time.perf_counter()
        logits = request.infer({name: feed[name] for name in names})[model.outputs[0]]
        return logits[:, 0].copy(), (tokenized - started, time.perf_counter() - tokenized)

    return score


_BUILDERS = {"pymem_int8": _pymem, "pymem_fp32": _pymem, "torch": _torch,
             "st_onnx_qint8": _sentence_transformers, "flashrank": _flashrank, "openvino_bf16": _openvino}

