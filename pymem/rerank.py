"""Cross-encoder reranking of ANN candidates, with a latency budget and a circuit breaker.

The model is an ONNX export (see :mod:`pymem.onnx_export`) in ``PYMEM_RERANK_MODEL``,
run by ONNX Runtime and tokenized by the Rust ``tokenizers``; torch and transformers
are never imported here. Reranking must never make a query slower than its budget or
make it fail: on a timeout, an error, an open breaker or a missing model, :func:`rerank`
returns the ANN order with the seed's fallback scores (``1 - i/n``, rank ``i + 1``) and
counts a skip with the reason.

Public API (module level, backed by one lazily built :class:`Reranker`):
:func:`get_cross_encoder`, :func:`rerank`, :func:`maybe_rerank`, :func:`get_rerank_metrics`,
:func:`get_rerank_prometheus`, :func:`reranker_status`, :func:`reset_reranker`.

Query and candidate text is never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from .config import Settings, get_settings, rerank_enabled_now
from .onnx_export import MANIFEST_NAME, VARIANTS, sha256_file
from .ranking import RerankedResult, ann_order
from .rerank_metrics import RerankMetrics

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
TENANT_BREAKERS_KEPT = 4096  # per-tenant breakers kept in memory (least recently used go first)
# Preferred variants: int8 is the fast CPU path; int8 ops have no CUDA kernels, so CUDA
# takes fp16 (fused attention, half the memory traffic) and falls back to fp32.
_CPU_PREFERENCE = ("int8", "fp32")
_CUDA_PREFERENCE = ("fp16", "fp32")
# Arena growth by exactly what is requested (not doubling): with the length buckets
# warmed up at load, the arena reaches its steady size then and does not over-reserve
# VRAM that other processes on the GPU need.
CUDA_PROVIDER_OPTIONS = {
    "device_id": 0,
    "arena_extend_strategy": "kSameAsRequested",
    "cudnn_conv_algo_search": "HEURISTIC",
    "do_copy_in_default_stream": True,
}

_fallback_warned = False  # the auto -> CPU warning is logged once per process


class RerankError(RuntimeError):
    """Base class of reranker errors."""


class ModelUnavailableError(RerankError):
    """No usable exported model (missing files, bad manifest, checksum mismatch)."""


class DeviceUnavailableError(RerankError):
    """``PYMEM_RERANK_DEVICE=cuda`` but ONNX Runtime cannot run on CUDA here."""


class RerankCancelled(RerankError):
    """The run was stopped through ``RunOptions.terminate`` (its deadline passed)."""


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
    return [RerankedResult(int(i), candidates[i], float(scores[i]), rank)
            for rank, i in enumerate(order, start=1)]


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


class CrossEncoder:
    """An ONNX Runtime session plus its Rust tokenizer, placed on CUDA or CPU.

    Args:
        model_dir: an export made by :func:`pymem.onnx_export.export_reranker` (or a dir
            with ``model.onnx`` + ``tokenizer.json``).
        device: ``auto`` (CUDA if a session really gets it, else CPU with one warning),
            ``cuda`` or ``cpu``.
        threads: CPU intra-op threads; 0 lets ONNX Runtime use one per physical core.
        max_length: token truncation length of a (query, candidate) pair.
        batch_size: largest number of pairs per ONNX Runtime run.
        variant: force one manifest variant (``int8``, ``fp32``, ``fp16``) instead of the
            device's preference, e.g. to compare them.

    Attributes:
        device: ``"cuda:0"`` or ``"cpu"``: what the session really runs on.
        variant: the manifest variant in use (``int8``, ``fp16`` or ``fp32``).
        load_seconds: time to build the session, tokenizer and warm up.

    Raises:
        ModelUnavailableError: missing files, unreadable manifest, checksum mismatch.
        DeviceUnavailableError: ``device="cuda"`` but CUDA is not usable.
    """

    def __init__(self, model_dir: str | Path, *, device: str = "auto", threads: int = 0,
                 max_length: int = 256, batch_size: int = 32, variant: str | None = None) -> None:
        started = time.perf_counter()
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir)
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
            self._session = self._cuda_session(ort, manifest, strict=device == "cuda")
        if self._session is None:
            _warn_cpu_fallback(device)
            self._session = self._cpu_session(ort, manifest, threads)
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._output_name = self._session.get_outputs()[0].name

        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.no_padding()  # padding is per batch, to its length bucket
        # longest_first is what transformers' truncation=True does for pairs, so the
        # scores match the PyTorch model's.
        self._tokenizer.enable_truncation(self.max_length, strategy="longest_first")
        self._warm_up(ort)
        self.load_seconds = time.perf_counter() - started

    def _cuda_session(self, ort, manifest: dict | None, strict: bool):
        if CUDA not in ort.get_available_providers():
            if strict:
                raise DeviceUnavailableError(
                    "PYMEM_RERANK_DEVICE=cuda, but this onnxruntime build has no CUDA execution "
                    f"provider (available: {', '.join(ort.get_available_providers())}). Install "
                    "onnxruntime-gpu with matching CUDA/cuDNN libraries, or set "
                    "PYMEM_RERANK_DEVICE=auto or cpu.")
            return None
        return self._open_cuda_session(ort, manifest, strict)

    # Needs onnxruntime-gpu and an NVIDIA GPU: excluded from coverage on machines without one.
    def _open_cuda_session(self, ort, manifest: dict | None, strict: bool):  # pragma: no cover
        self.variant, path = _pick_variant(self.model_dir, manifest, self._forced or _CUDA_PREFERENCE)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options,
                                       providers=[(CUDA, CUDA_PROVIDER_OPTIONS), CPU])
        # ORT falls back to CPU silently when the CUDA libraries fail to load.
        if session.get_providers()[0] == CUDA:
            self.device = f"cuda:{CUDA_PROVIDER_OPTIONS['device_id']}"
            return session
        if strict:
            raise DeviceUnavailableError(
                "PYMEM_RERANK_DEVICE=cuda, but the ONNX Runtime session did not get the CUDA "
                "provider (CUDA/cuDNN libraries missing or incompatible; see ONNX Runtime's log).")
        return None

    def _cpu_session(self, ort, manifest: dict | None, threads: int):
        self.variant, path = _pick_variant(self.model_dir, manifest, self._forced or _CPU_PREFERENCE)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1  # a linear graph: inter-op threads only contend
        self.device = "cpu"
        return ort.InferenceSession(str(path), options, providers=[CPU])

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
        encodings = self._tokenizer.encode_batch([(query, c) for c in candidates])
        batches = []
        for indices, bucket in plan_batches([len(e.ids) for e in encodings], self.batch_size,
                                            self.buckets):
            ids = np.full((len(indices), bucket), self._pad_id, dtype=np.int64)
            mask = np.zeros_like(ids)
            types = np.zeros_like(ids)
            for row, i in enumerate(indices):
                enc = encodings[i]
                n = len(enc.ids)
                ids[row, :n] = enc.ids
                mask[row, :n] = enc.attention_mask
                types[row, :n] = enc.type_ids
            batches.append((indices, self._feed(ids, mask, types)))
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


def _warn_cpu_fallback(device: str) -> None:
    global _fallback_warned
    if device == "auto" and not _fallback_warned:
        _fallback_warned = True
        log.warning("reranker: PYMEM_RERANK_DEVICE=auto found no usable CUDA execution provider; "
                    "running on CPU")


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(f"{path} is not readable JSON: {exc}") from exc


def _read_manifest(model_dir: Path) -> dict | None:
    if not model_dir.is_dir():
        raise ModelUnavailableError(
            f"no exported reranker at {model_dir}: run `pymem export-reranker "
            f"cross-encoder/ms-marco-TinyBERT-L2-v2 --out {model_dir} --int8` (see onnx_models/README.md)")
    return _read_json(model_dir / MANIFEST_NAME)


def _pick_variant(model_dir: Path, manifest: dict | None, preference: Sequence[str]) -> tuple[str, Path]:
    """The first preferred variant present; its sha256 is checked against the manifest."""
    if manifest is None:  # a hand-made export: plain model.onnx, nothing to verify
        path = model_dir / VARIANTS["fp32"][0]
        if not path.is_file():
            raise ModelUnavailableError(f"{model_dir} has neither {MANIFEST_NAME} nor model.onnx")
        return "fp32", path
    variants = manifest.get("variants", {})
    for name in preference:
        if name in variants:
            path = model_dir / variants[name]["file"]
            if not path.is_file():
                raise ModelUnavailableError(f"{path} is listed in the manifest but missing")
            if sha256_file(path) != variants[name]["sha256"]:
                raise ModelUnavailableError(f"{path} does not match its sha256 in the manifest; re-export")
            return name, path
    raise ModelUnavailableError(f"{model_dir}/{MANIFEST_NAME} lists none of {', '.join(preference)}")


class CircuitBreaker:
    """Closed -> open after ``threshold`` consecutive failures -> half-open after
    ``cooldown_s`` (one trial call) -> closed on its success, open again on failure.

    Args:
        threshold: consecutive failures (budget breaches or errors) that open it.
        cooldown_s: how long it stays open before admitting a trial call.
        clock: monotonic clock in seconds (injectable for tests).
        on_change: called with the new state name on every transition.
    """

    def __init__(self, threshold: int, cooldown_s: float, *, clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[str], None] = lambda state: None) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._opened_total = 0
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open``."""
        with self._lock:
            return self._state

    def _set(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self._on_change(state)

    def allow(self) -> bool:
        """May a call use the cross-encoder now? Admits one trial after the cooldown."""
        with self._lock:
            if self._state == "open" and self._clock() - self._opened_at >= self.cooldown_s:
                self._set("half_open")
            if self._state == "closed":
                return True
            if self._state == "half_open" and not self._trial_in_flight:
                self._trial_in_flight = True
                return True
            return False

    def record_success(self) -> None:
        """A call finished within budget. Closes a half-open breaker."""
        with self._lock:
            if self._state == "open":
                return  # a straggler admitted before opening; the cooldown still runs
            self._failures = 0
            self._trial_in_flight = False
            self._set("closed")

    def record_failure(self) -> None:
        """A call breached its budget or failed. May open the breaker."""
        with self._lock:
            self._failures += 1
            if self._state == "half_open" or (self._state == "closed" and self._failures >= self.threshold):
                self._opened_at = self._clock()
                self._opened_total += 1
                self._trial_in_flight = False
                self._set("open")

    def snapshot(self) -> dict:
        """State, consecutive failures, times opened, threshold and cooldown."""
        with self._lock:
            return {"state": self._state, "consecutive_failures": self._failures,
                    "opened_total": self._opened_total, "threshold": self.threshold,
                    "cooldown_s": self.cooldown_s}


def _cross_encoder_from_settings(settings: Settings) -> CrossEncoder:
    return CrossEncoder(settings.rerank_model_dir, device=settings.rerank_device,
                        threads=settings.rerank_threads, max_length=settings.rerank_max_length,
                        batch_size=settings.rerank_batch_size)


class Reranker:
    """A cross-encoder behind a latency budget, a circuit breaker and metrics.

    Args:
        settings: defaults to :func:`pymem.config.get_settings` at construction.
        scorer_factory: builds the model from the settings (default: :class:`CrossEncoder`);
            tests inject slow or failing scorers here.
        clock: monotonic clock for the breaker's cooldown.
    """

    def __init__(self, settings: Settings | None = None, *,
                 scorer_factory: Callable[[Settings], Scorer] = _cross_encoder_from_settings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings or get_settings()
        self.metrics = RerankMetrics()
        self.breaker = CircuitBreaker(self.settings.rerank_breaker_threshold,
                                      self.settings.rerank_breaker_cooldown_s, clock=clock,
                                      on_change=self.metrics.set_breaker_state)
        # One breaker per tenant as well: a tenant whose own calls keep breaching
        # the budget (say, 1000 candidates each) opens only its own breaker, and
        # other tenants keep their reranking. Bounded, least recently used first out.
        self._tenant_breakers: OrderedDict[str, CircuitBreaker] = OrderedDict()
        self._tenant_breakers_lock = threading.Lock()
        self._factory = scorer_factory
        self._clock = clock
        self._scorer: Scorer | None = None
        self._load_error: tuple[float, RerankError] | None = None
        self._load_lock = threading.Lock()
        # One worker: concurrent calls queue instead of oversubscribing the cores, and
        # work whose deadline passed is terminated rather than left to pile up.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pymem-rerank")

    @property
    def loaded(self) -> bool:
        """Whether the model has been built."""
        return self._scorer is not None

    def cross_encoder(self) -> Scorer:
        """The model, built on first use (thread-safe).

        A load failure is remembered for the breaker cooldown, so a broken setup costs
        one load attempt per cooldown rather than one per query.

        Raises:
            ModelUnavailableError, DeviceUnavailableError: see :class:`CrossEncoder`.
        """
        if self._scorer is not None:
            return self._scorer
        with self._load_lock:
            if self._scorer is None:
                if self._load_error and self._clock() - self._load_error[0] < self.breaker.cooldown_s:
                    raise self._load_error[1]
                try:
                    scorer = self._factory(self.settings)
                except RerankError as exc:
                    self._load_error = (self._clock(), exc)
                    log.warning("reranker unavailable (%s): answering in ANN order", exc)
                    raise
                self._load_error = None
                load_ms = round(getattr(scorer, "load_seconds", 0.0) * 1000, 1)
                self.metrics.set_model(device=scorer.device, variant=getattr(scorer, "variant", ""),
                                       load_ms=load_ms)
                log.info("reranker loaded on %s (%s variant) in %.0f ms", scorer.device,
                         getattr(scorer, "variant", "?"), load_ms)
                self._scorer = scorer
        return self._scorer

    def breaker_for(self, tenant: str | None) -> CircuitBreaker:
        """The breaker that guards calls for ``tenant`` (the process-wide one for None)."""
        if tenant is None:
            return self.breaker
        with self._tenant_breakers_lock:
            breaker = self._tenant_breakers.pop(tenant, None)
            if breaker is None:
                breaker = CircuitBreaker(self.breaker.threshold, self.breaker.cooldown_s, clock=self._clock)
            self._tenant_breakers[tenant] = breaker
            while len(self._tenant_breakers) > TENANT_BREAKERS_KEPT:
                self._tenant_breakers.popitem(last=False)
            return breaker

    async def rerank(self, query: str, candidates: Sequence[str],
                     timeout_ms: float | None = None, *, tenant: str | None = None) -> list[RerankedResult]:
        """Reorder ``candidates`` by cross-encoder relevance to ``query``, within a budget.

        Args:
            query: the search query.
            candidates: texts in ANN order.
            timeout_ms: the budget; ``None`` uses ``RERANK_CIRCUIT_MS`` (default 250).
                The first call also waits for the model to load, outside the budget.
            tenant: whose call this is (a user_hash); its failures open only that
                tenant's breaker. None uses the process-wide breaker.

        Returns:
            One :class:`RerankedResult` per candidate, sorted by rank. On a timeout, an
            error, an open breaker or an unavailable model: the ANN order with scores
            ``1 - i/n`` (see :func:`ann_order`), and a skip is counted with the reason.
        """
        candidates = list(candidates)
        if not candidates:
            return []
        loop = asyncio.get_running_loop()
        try:
            scorer = self._scorer or await loop.run_in_executor(self._executor, self.cross_encoder)
        except RerankError:
            # Logged once per load attempt (in cross_encoder), not once per query.
            return self._skip(candidates, "model_unavailable")
        breaker = self.breaker_for(tenant)
        if not breaker.allow():
            return self._skip(candidates, "circuit_open")

        import onnxruntime as ort

        budget_s = (self.settings.rerank_circuit_ms if timeout_ms is None else timeout_ms) / 1000.0
        run_options = ort.RunOptions()
        started = time.perf_counter()
        future = loop.run_in_executor(self._executor, scorer.score, query, candidates, run_options)
        try:
            done, _ = await asyncio.wait({future}, timeout=budget_s)
        except asyncio.CancelledError:
            run_options.terminate = True
            raise
        self.metrics.observe_call(time.perf_counter() - started)
        if not done:
            run_options.terminate = True  # ORT stops between nodes; queued work never starts
            future.add_done_callback(_drain)
            breaker.record_failure()
            return self._skip(candidates, "timeout")
        try:
            scores = future.result()
            if scores.logits.shape != (len(candidates),) or not np.isfinite(scores.logits).all():
                raise RerankError("the model returned malformed scores")
        except Exception as exc:
            log.warning("rerank failed (%s): answering in ANN order", type(exc).__name__)
            breaker.record_failure()
            return self._skip(candidates, "error")
        breaker.record_success()
        self.metrics.observe_stages(scores.tokenize_s, scores.inference_s)
        return _ranked(candidates, scores.logits)

    @property
    def enabled(self) -> bool:
        """Whether ``RERANK_ENABLED`` is on right now (this reranker's setting when the
        variable is unset). Read on each call; the metrics publish it and count changes."""
        enabled = rerank_enabled_now(self.settings.rerank_enabled)
        self.metrics.set_enabled(enabled)
        return enabled

    async def maybe_rerank(self, query: str, candidates: Sequence[str], *,
                           tenant: str | None = None) -> list[RerankedResult]:
        """:meth:`rerank` if ``RERANK_ENABLED``, else the ANN order without loading a model.

        A disabled reranker is a configuration, not a failure: it counts no skip.
        """
        if not self.enabled:
            return ann_order(list(candidates))
        return await self.rerank(query, candidates, tenant=tenant)

    def _skip(self, candidates: list[str], reason: str) -> list[RerankedResult]:
        self.metrics.count_skip(reason)
        return ann_order(candidates)

    def metrics_json(self) -> dict:
        """The seed's JSON metrics plus skips by reason, breaker and model details."""
        return {**self.metrics.snapshot(), "breaker": self.breaker.snapshot()}

    def status(self) -> dict:
        """Is reranking on, can it run, where, and if not, why (never loads the model).

        Returns:
            ``{"enabled", "available", "reason", "device", "variant", "model_dir", "loaded"}``;
            ``device``/``variant`` are ``None`` until the model is loaded.
        """
        model_dir = self.settings.rerank_model_dir
        enabled = self.enabled
        status = {"enabled": enabled, "available": False, "reason": None,
                  "device": None, "variant": None, "model_dir": str(model_dir), "loaded": self.loaded}
        if self._scorer is not None:
            status.update(available=True, device=self._scorer.device,
                          variant=getattr(self._scorer, "variant", None))
        elif self._load_error is not None:
            status["reason"] = str(self._load_error[1])
        elif not (model_dir / "tokenizer.json").is_file() or not any(
                (model_dir / f).is_file() for f, _, _ in VARIANTS.values()):
            status["reason"] = (f"no exported reranker at {model_dir} (run pymem export-reranker; "
                                "see onnx_models/README.md)")
        else:
            status["available"] = True
        if not enabled:
            status["reason"] = "RERANK_ENABLED is false"
        return status

    def close(self) -> None:
        """Stop the worker thread (queued work is cancelled)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def _drain(future) -> None:
    # Retrieve the outcome of abandoned work so asyncio does not log it as unhandled.
    if not future.cancelled():
        future.exception()


_default: Reranker | None = None
_default_lock = threading.Lock()


def get_reranker() -> Reranker:
    """The process-wide :class:`Reranker`, built from the settings on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Reranker()
        return _default


def reset_reranker() -> None:
    """Drop the process-wide reranker (model, breaker, metrics); the next call rebuilds
    it from the current settings. Use after re-exporting a model, and in tests."""
    global _default
    with _default_lock:
        old, _default = _default, None
    if old is not None:
        old.close()


def get_cross_encoder() -> Scorer:
    """The loaded cross-encoder (lazy, thread-safe); see :meth:`Reranker.cross_encoder`.

    Raises:
        ModelUnavailableError: no usable export at ``PYMEM_RERANK_MODEL``.
        DeviceUnavailableError: ``PYMEM_RERANK_DEVICE=cuda`` on a machine without CUDA.
    """
    return get_reranker().cross_encoder()


async def rerank(query: str, candidates: Sequence[str], timeout_ms: float | None = None, *,
                 tenant: str | None = None) -> list[RerankedResult]:
    """Rerank within ``timeout_ms`` (default ``RERANK_CIRCUIT_MS``); see :meth:`Reranker.rerank`."""
    return await get_reranker().rerank(query, candidates, timeout_ms, tenant=tenant)


async def maybe_rerank(query: str, candidates: Sequence[str], *, tenant: str | None = None) -> list[RerankedResult]:
    """Rerank if ``RERANK_ENABLED`` (default true), else ANN order; never raises for
    model, device or timeout problems. See :meth:`Reranker.maybe_rerank`."""
    return await get_reranker().maybe_rerank(query, candidates, tenant=tenant)


def get_rerank_metrics() -> dict:
    """JSON metrics: ``rerank_skipped_total``, ``rerank_latency_ms`` {p50, p95, max},
    ``device``, plus skips by reason, breaker state and model details."""
    return get_reranker().metrics_json()


def get_rerank_prometheus() -> bytes:
    """The reranker's metrics in the Prometheus text format."""
    return get_reranker().metrics.prometheus_text()


def reranker_status() -> dict:
    """Whether reranking is enabled and available, and why not; see :meth:`Reranker.status`."""
    return get_reranker().status()
