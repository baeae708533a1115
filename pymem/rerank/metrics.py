"""Reranker metrics: Prometheus (prometheus-client) and the JSON shape of get_rerank_metrics().

Every :class:`RerankMetrics` owns a private ``CollectorRegistry`` rather than the
process-global one, so two rerankers (or two tests) never share counters and a
re-created reranker does not hit "Duplicated timeseries" errors.

Following TEI, end-to-end latency is split into tokenize and inference histograms.
The end-to-end histogram covers every call that tried the cross-encoder (success,
timeout or error); calls skipped without trying it (open breaker, no model) only
count as skips, so they cannot make the latency look better than it is.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

import numpy as np

from ..extras import require

require("prometheus_client", "rerank", "pymem's reranker and its metrics")
from prometheus_client import (  # noqa: E402 (after the check above)
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily  # noqa: E402

from ..tenant_keys import key_metrics  # noqa: E402

log = logging.getLogger(__name__)

#: Why a rerank call returned the ANN order instead of cross-encoder scores.
SKIP_REASONS = ("timeout", "error", "circuit_open", "model_unavailable")
BREAKER_STATES = ("closed", "open", "half_open")

# 0.05 = the original p50 target, 0.15 = its p95 target, 0.25 = the circuit budget.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0, 2.5)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

# Enough recent calls for a stable p95 without unbounded memory.
_WINDOW = 2048


class DataKeyMetrics:
    """The tenant data-key cache's counters (:func:`pymem.tenant_keys.key_metrics`) as
    Prometheus counters ``pymem_data_key_{hits,misses,unwraps,creates,provider_errors}_total``,
    read when scraped; served beside the reranker's (``pymem serve-metrics``, :mod:`pymem.metrics_app`)."""

    def collect(self):
        for name, value in key_metrics().items():
            yield CounterMetricFamily(f"pymem_data_key_{name}",
                                      f"Tenant data keys in this process: {name.replace('_', ' ')}.", value=value)


class RerankMetrics:
    """Counters and latency histograms of one reranker (thread-safe).

    Args:
        window: how many recent end-to-end latencies the JSON percentiles use.
    """

    def __init__(self, window: int = _WINDOW) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(DataKeyMetrics())
        self._latency = Histogram("rerank_latency_seconds", "End-to-end rerank call latency "
                                  "(calls that tried the cross-encoder).",
                                  buckets=LATENCY_BUCKETS, registry=self.registry)
        self._tokenize = Histogram("rerank_tokenize_seconds", "Tokenization time per rerank call.",
                                   buckets=STAGE_BUCKETS, registry=self.registry)
        self._inference = Histogram("rerank_inference_seconds", "ONNX Runtime time per rerank call.",
                                    buckets=STAGE_BUCKETS, registry=self.registry)
        self._skipped = Counter("rerank_skipped", "Rerank calls answered in ANN order, by reason.",
                                ["reason"], registry=self.registry)
        self._breaker = Enum("rerank_breaker_state", "Circuit breaker state.",
                             states=list(BREAKER_STATES), registry=self.registry)
        self._model = Info("rerank_model", "Loaded cross-encoder.", registry=self.registry)
        self._enabled = Gauge("rerank_enabled", "1 while RERANK_ENABLED is on (read on every call).",
                              registry=self.registry)
        self._enabled_changes = Counter("rerank_enabled_changes", "Times RERANK_ENABLED was seen to change "
                                        "in this process.", registry=self.registry)
        for reason in SKIP_REASONS:  # export zeros, so rate() works from the start
            self._skipped.labels(reason=reason)
        self._lock = threading.Lock()
        self._recent_ms: deque[float] = deque(maxlen=window)
        self._skips = dict.fromkeys(SKIP_REASONS, 0)
        self._model_info: dict[str, str] = {}
        self._enabled_seen: bool | None = None
        self._enabled_changed = 0

    def set_enabled(self, enabled: bool) -> None:
        """Publish the kill switch's current value; count it when it changed."""
        self._enabled.set(1 if enabled else 0)
        with self._lock:
            changed = self._enabled_seen is not None and self._enabled_seen != enabled
            self._enabled_seen = enabled
            self._enabled_changed += changed
        if changed:
            self._enabled_changes.inc()
            log.info("RERANK_ENABLED is now %s", "on" if enabled else "off")

    def observe_call(self, seconds: float) -> None:
        """Record the end-to-end latency of a call that tried the cross-encoder."""
        self._latency.observe(seconds)
        with self._lock:
            self._recent_ms.append(seconds * 1000.0)

    def observe_stages(self, tokenize_s: float, inference_s: float) -> None:
        """Record the tokenize and inference time of a completed scoring."""
        self._tokenize.observe(tokenize_s)
        self._inference.observe(inference_s)

    def count_skip(self, reason: str) -> None:
        """Count one call answered in ANN order.

        Raises:
            ValueError: ``reason`` is not one of :data:`SKIP_REASONS`.
        """
        if reason not in self._skips:
            raise ValueError(f"unknown skip reason {reason!r}")
        self._skipped.labels(reason=reason).inc()
        with self._lock:
            self._skips[reason] += 1

    def set_breaker_state(self, state: str) -> None:
        """Publish the circuit breaker state (one of :data:`BREAKER_STATES`)."""
        self._breaker.state(state)

    def set_model(self, **info: str) -> None:
        """Publish what was loaded (device, variant, load time ...); values become strings."""
        info = {k: str(v) for k, v in info.items()}
        self._model.info(info)
        with self._lock:
            self._model_info = info

    def prometheus_text(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)

    def snapshot(self) -> dict:
        """The seed's JSON shape plus skips by reason and model info.

        Returns:
            ``{"rerank_skipped_total": int, "rerank_skipped_by_reason": {reason: int},
            "rerank_latency_ms": {"p50", "p95", "max", "count"}, "device": str | None,
            "model": {...}, "enabled": bool | None, "enabled_changes": int}``. Percentiles are ``None`` before
            the first call.
        """
        with self._lock:
            recent = np.fromiter(self._recent_ms, dtype=float)
            skips = dict(self._skips)
            model = dict(self._model_info)
            enabled, changes = self._enabled_seen, self._enabled_changed
        if recent.size:
            latency = {"p50": round(float(np.percentile(recent, 50)), 3),
                       "p95": round(float(np.percentile(recent, 95)), 3),
                       "max": round(float(recent.max()), 3)}
        else:
            latency = {"p50": None, "p95": None, "max": None}
        latency["count"] = int(recent.size)
        return {
            "rerank_skipped_total": sum(skips.values()),
            "rerank_skipped_by_reason": skips,
            "rerank_latency_ms": latency,
            "device": model.get("device"),
            "model": model,
            "enabled": enabled,
            "enabled_changes": changes,
        }
