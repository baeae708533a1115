"""The cross-encoder session: an ONNX export on ONNX Runtime (CUDA first, CPU fallback),
tokenized by the Rust ``tokenizers`` in length buckets; torch is never imported here."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..model_files import MANIFEST_NAME, ModelFileError, pick_variant, read_json
from ..ranking import RerankedResult
from .cuda import CUDA, cuda_problems, provider_options
from .errors import DeviceUnavailableError, ModelUnavailableError, RerankCancelled

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
# Preferred variants: int8 is the fast CPU path; int8 ops have no CUDA kernels, so CUDA
# takes fp16 (fused attention, half the memory traffic) and falls back to fp32.
_CPU_PREFERENCE = ("int8", "fp32")
_CUDA_PREFERENCE = ("fp16", "fp32")
_fallback_warned = False  # the auto -> CPU warning is logged once per process

#: Fewest pairs per half when a query's tokenization is split across two threads; below
#: twice this, one call is cheaper than the hand-off.
TOKENIZE_SPLIT_MIN_PAIRS = 8


@dataclass(frozen=True)
class Scores:
    """Raw logits in input order, and where the time went."""

    logits: np.ndarray
    tokenize_s: float
    inference_s: float


class Scorer(Protocol):
    """What :class:`Reranker` needs from a model; :class:`CrossEncoder` is the real one."""

    device: str

    def score(self, query: str, candidates: Sequence[str], run_options) -> Scores: ...


def _ranked(candidates: Sequence[str], logits: np.ndarray) -> list[RerankedResult]:
    # Rank on the logits (a stable sort keeps ANN order among ties), report sigmoid
    # scores: sigmoid saturates to 1.0 for large logits and would lose the order.
    order = np.argsort(-logits, kind="stable")
    scores = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    return [RerankedResult(int(i), candidates[i], float(scores[i]), rank, reranked=True)
            for rank, i in enumerate(order, start=1)]


#: ONNX Runtime session config entries of pymem's CPU sessions (reranker and embedder).
#: Intra-op threads do not spin: a spinning thread holds a core while it waits, for the
#: other thread or for the next run. While Postgres built an index on one of 2 cores, the
#: reranker's int8 p95 (TinyBERT-L2, 256 tokens) was 89.6 ms spinning within each run
#: (``session.force_spinning_stop``) and 55.6 ms without spinning; on a quiet machine 48.0
#: and 47.3 ms (``pymem-dev bench --only rerank``, "Shared cores").
CPU_SESSION_CONFIG = {"session.intra_op.allow_spinning": "0"}


def cpu_session_options(ort, threads: int, session_config: Mapping[str, str] | None = None):
    """ONNX Runtime options for a CPU session of pymem's models (reranker and embedder).

    Args:
        ort: the ``onnxruntime`` module.
        threads: intra-op threads; 0 lets ONNX Runtime use one per physical core.
        session_config: config entries that replace or add to :data:`CPU_SESSION_CONFIG`,
            e.g. ``{"session.intra_op.allow_spinning": "1"}`` on a host where the model
            owns its cores.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # a linear graph: inter-op threads only contend
    for key, value in {**CPU_SESSION_CONFIG, **(session_config or {})}.items():
        options.add_session_config_entry(key, value)
    return options


def length_buckets(max_length: int) -> tuple[int, ...]:
    """Padded lengths a batch may have: powers of two from 32, capped by ``max_length``."""
    buckets, size = [], 32
    while size < max_length:
        buckets.append(size)
        size *= 2
    return (*buckets, max_length)


def plan_batches(lengths: Sequence[int], batch_size: int,
                 buckets: Sequence[int]) -> list[tuple[np.ndarray, int]]:
    """Group inputs of similar length so that little padding is computed.

    Inputs are sorted by length; a batch ends when it holds ``batch_size`` inputs or
    when the next input needs a larger bucket. Each batch is padded to its bucket.

    Returns:
        ``[(indices into lengths, padded length), ...]``; every index appears once.
    """
    order = np.argsort(np.asarray(lengths), kind="stable")
    plan: list[tuple[list[int], int]] = []
    for i in order:
        bucket = next(b for b in buckets if b >= lengths[i])
        if plan and plan[-1][1] == bucket and len(plan[-1][0]) < batch_size:
            plan[-1][0].append(int(i))
        else:
            plan.append(([int(i)], bucket))
    return [(np.asarray(idx), bucket) for idx, bucket in plan]


def pad_encodings(encodings: Sequence, length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask, token_type_ids)`` of ``encodings``, each row padded to
    ``length`` (int64, the dtype pymem's exports take)."""
    ids = np.full((len(encodings), length), pad_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for row, enc in enumerate(encodings):
        n = len(enc.ids)
        ids[row, :n] = enc.ids
        mask[row, :n] = enc.attention_mask
        types[row, :n] = enc.type_ids
    return ids, mask, types


class CrossEncoder:
    """An ONNX Runtime session plus its Rust tokenizer, placed on CUDA or CPU.

    Args:
        model_dir: an export made by :func:`pymem.onnx_export.export_reranker` (or a dir
            with ``model.onnx`` + ``tokenizer.json``).
        device: ``auto`` (CUDA if a session really gets it, else CPU with one warning
            naming what is missing), ``cuda`` or ``cpu``.
        cuda_device: the GPU's device id (``PYMEM_RERANK_CUDA_DEVICE``).
        threads: CPU intra-op threads; 0 lets ONNX Runtime use one per physical core.
        max_length: token truncation length of a (query, candidate) pair.
        batch_size: largest number of pairs per ONNX Runtime run.
        variant: force one manifest variant (``int8``, ``fp32``, ``fp16``) instead of the
            device's preference, e.g. to compare them.
        session_config: ONNX Runtime config entries for the CPU session, over
            :data:`CPU_SESSION_CONFIG`.

    Attributes:
        device: ``"cuda:0"`` or ``"cpu"``: what the session really runs on.
        variant: the manifest variant in use (``int8``, ``fp16`` or ``fp32``).
        load_seconds: time to build the session, tokenizer and warm up.

    Raises:
        ModelUnavailableError: missing files, unreadable manifest, checksum mismatch.
        DeviceUnavailableError: ``device="cuda"`` but CUDA is not usable; the message
            names what is missing (the gpu extra, the CUDA libraries, a driver).
    """

    def __init__(self, model_dir: str | Path, *, device: str = "auto", cuda_device: int = 0, threads: int = 0,
                 max_length: int = 256, batch_size: int = 32, variant: str | None = None,
                 session_config: Mapping[str, str] | None = None) -> None:
        started = time.perf_counter()
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir).absolute()
        manifest = _read_manifest(self.model_dir)
        config = _read_json(self.model_dir / "config.json") or {}
        tokenizer_file = self.model_dir / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise ModelUnavailableError(f"{tokenizer_file} is missing; re-run pymem export-reranker")
        self.max_length = min(max_length, int(config.get("max_position_embeddings", max_length)))
        self.batch_size = batch_size
        self.buckets = length_buckets(self.max_length)
        self._pad_id = int(config.get("pad_token_id") or 0)
        self._forced = (variant,) if variant else None

        self._session = None
        if device in ("auto", "cuda"):
            self._session = self._cuda_session(ort, manifest, cuda_device, strict=device == "cuda")
        if self._session is None:
            self._session = self._cpu_session(ort, manifest, threads, session_config)
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._output_name = self._session.get_outputs()[0].name

        # A second thread for half of each query's pairs (see _encode_pairs); its thread
        # starts on first use.
        self._tokenize_helper = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="pymem-tokenize")
                                 if (os.cpu_count() or 1) > 1 else None)
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.no_padding()  # padding is per batch, to its length bucket
        # longest_first is what transformers' truncation=True does for pairs, so the
        # scores match the PyTorch model's.
        self._tokenizer.enable_truncation(self.max_length, strategy="longest_first")
        self._warm_up(ort)
        self.load_seconds = time.perf_counter() - started

    def _cuda_session(self, ort, manifest: dict | None, device_id: int, strict: bool):
        problems = cuda_problems(ort)
        if not problems:
            session = self._open_cuda_session(ort, manifest, device_id)
            if session is not None:
                return session
            problems = [f"the ONNX Runtime session did not get CUDA device {device_id} (see ONNX Runtime's log)"]
        if strict:
            raise DeviceUnavailableError("PYMEM_RERANK_DEVICE=cuda, but CUDA cannot run here: " + "; ".join(problems)
                                         + ". Or set PYMEM_RERANK_DEVICE=auto or cpu.")
        _warn_cpu_fallback(problems)
        return None

    # Needs onnxruntime-gpu and an NVIDIA GPU: excluded from coverage on machines without one.
    def _open_cuda_session(self, ort, manifest: dict | None, device_id: int):  # pragma: no cover
        self.variant, path = _pick_variant(self.model_dir, manifest, self._forced or _CUDA_PREFERENCE)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=[(CUDA, provider_options(device_id)), CPU])
        # ORT falls back to CPU silently when the device does not come up.
        if session.get_providers()[0] == CUDA:
            self.device = f"cuda:{device_id}"
            return session
        return None

    def _cpu_session(self, ort, manifest: dict | None, threads: int, session_config: Mapping[str, str] | None):
        self.variant, path = _pick_variant(self.model_dir, manifest, self._forced or _CPU_PREFERENCE)
        self.device = "cpu"
        return ort.InferenceSession(str(path), cpu_session_options(ort, threads, session_config),
                                    providers=[CPU])

    def _warm_up(self, ort) -> None:
        # One full-size batch per bucket: first runs allocate buffers and (on CUDA) pick
        # kernels and grow the arena; do it at load, not in a query's budget.
        for bucket in self.buckets:
            ids = np.full((self.batch_size, bucket), self._pad_id, dtype=np.int64)
            self._run(self._feed(ids, np.ones_like(ids), np.zeros_like(ids)), ort.RunOptions())

    def _feed(self, ids, mask, types) -> dict[str, np.ndarray]:
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {k: v for k, v in feed.items() if k in self._input_names}

    def _run(self, feed: dict[str, np.ndarray], run_options) -> np.ndarray:
        if self.device == "cpu":
            return self._session.run([self._output_name], feed, run_options)[0]
        return self._run_cuda(feed, run_options)

    def _run_cuda(self, feed: dict[str, np.ndarray], run_options) -> np.ndarray:  # pragma: no cover - CUDA only
        # I/O binding on CUDA: inputs are copied once to the device and the (tiny)
        # logits come back to host memory, without ORT's per-run staging copies.
        binding = self._session.io_binding()
        for name, array in feed.items():
            binding.bind_cpu_input(name, array)
        binding.bind_output(self._output_name)
        self._session.run_with_iobinding(binding, run_options)
        return binding.copy_outputs_to_cpu()[0]

    def _encode_pairs(self, pairs: list[tuple[str, str]]) -> list:
        # Two concurrent encode_batch_fast calls (each releases the GIL) put both of the
        # tokenizers' rayon workers to work at once; one call does not, after a pause.
        # TinyBERT-L2's tokenizer, 24 pairs, 256 tokens, 60 ms between queries, 2 cores:
        # 10.4 ms in one call, 7.7 ms in two (interleaved, 150 queries each).
        # encode_batch_fast skips the character offsets, which scoring never reads.
        if self._tokenize_helper is None or len(pairs) < 2 * TOKENIZE_SPLIT_MIN_PAIRS:
            return self._tokenizer.encode_batch_fast(pairs)
        half = len(pairs) // 2
        second = self._tokenize_helper.submit(self._tokenizer.encode_batch_fast, pairs[half:])
        return self._tokenizer.encode_batch_fast(pairs[:half]) + second.result()

    def close(self) -> None:
        """Stop the tokenizer helper thread; the session is freed with the object."""
        if self._tokenize_helper is not None:
            self._tokenize_helper.shutdown(wait=False)

    def score(self, query: str, candidates: Sequence[str], run_options) -> Scores:
        """Cross-encoder logits of (query, candidate) pairs, in input order.

        Args:
            query: the search query.
            candidates: candidate texts; each pair is truncated to ``max_length`` tokens.
            run_options: an ``onnxruntime.RunOptions``; setting its ``terminate`` flag from
                another thread stops the work between and inside runs.

        Returns:
            :class:`Scores` with one float32 logit per candidate.

        Raises:
            RerankCancelled: ``run_options.terminate`` was set.
        """
        started = time.perf_counter()
        # Before tokenizing too, which nothing interrupts: a call queued behind a slow one
        # whose deadline passed meanwhile does none of its work.
        if run_options.terminate:
            raise RerankCancelled("deadline passed")
        encodings = self._encode_pairs([(query, c) for c in candidates])
        batches = []
        for indices, bucket in plan_batches([len(e.ids) for e in encodings], self.batch_size,
                                            self.buckets):
            arrays = pad_encodings([encodings[i] for i in indices], bucket, self._pad_id)
            batches.append((indices, self._feed(*arrays)))
        tokenized = time.perf_counter()

        logits = np.empty(len(candidates), dtype=np.float32)
        for indices, feed in batches:
            if run_options.terminate:
                raise RerankCancelled("deadline passed")
            try:
                out = self._run(feed, run_options)
            except Exception as exc:
                if run_options.terminate:
                    raise RerankCancelled("deadline passed") from exc
                raise
            logits[indices] = out[:, 0]  # restores input order after the length sort
        return Scores(logits, tokenized - started, time.perf_counter() - tokenized)


def _warn_cpu_fallback(problems: list[str]) -> None:
    global _fallback_warned
    if not _fallback_warned:
        _fallback_warned = True
        log.warning("reranker: PYMEM_RERANK_DEVICE=auto, running on CPU: %s", "; ".join(problems))


def _read_json(path: Path) -> dict | None:
    try:
        return read_json(path)
    except ModelFileError as exc:
        raise ModelUnavailableError(str(exc)) from exc


def _read_manifest(model_dir: Path) -> dict | None:
    if not model_dir.is_dir():
        raise ModelUnavailableError(
            f"no exported reranker at {model_dir}: run `pymem export-reranker "
            f"cross-encoder/ms-marco-TinyBERT-L2-v2 --out {model_dir} --int8` (see docs/reranking.md)")
    return _read_json(model_dir / MANIFEST_NAME)


def _pick_variant(model_dir: Path, manifest: dict | None, preference: Sequence[str]) -> tuple[str, Path]:
    try:
        return pick_variant(model_dir, manifest, preference)
    except ModelFileError as exc:
        raise ModelUnavailableError(str(exc)) from exc
