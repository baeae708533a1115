"""The reranking service: a cross-encoder behind a latency budget, a circuit breaker,
the ``RERANK_ENABLED`` switch and metrics, and the process-wide instance."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..config import Settings, get_settings, rerank_enabled_now
from ..model_files import VARIANTS
from ..ranking import RerankedResult, ann_order
from .breaker import CircuitBreaker
from .errors import RerankError
from .metrics import RerankMetrics
from .session import CrossEncoder, Scorer, _ranked

log = logging.getLogger(__name__)

TENANT_BREAKERS_KEPT = 4096  # per-tenant breakers kept in memory (least recently used go first)


def _cross_encoder_from_settings(settings: Settings) -> CrossEncoder:
    return CrossEncoder(settings.rerank_model_dir, device=settings.rerank_device,
                        cuda_device=settings.rerank_cuda_device, threads=settings.rerank_threads, max_length=settings.rerank_max_length,
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
                                "see docs/reranking.md)")
        else:
            status["available"] = True
        if not enabled:
            status["reason"] = "RERANK_ENABLED is false"
        return status

    def close(self) -> None:
        """Stop the worker thread (queued work is cancelled) and the model's helper thread."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        close_scorer = getattr(self._scorer, "close", None)
        if close_scorer is not None:
            close_scorer()


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
