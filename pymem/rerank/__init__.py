"""Cross-encoder reranking of ANN candidates, with a latency budget and a circuit breaker.

The model is an ONNX export (see :mod:`pymem.onnx_export`) in ``PYMEM_RERANK_MODEL``,
run by ONNX Runtime and tokenized by the Rust ``tokenizers``; torch and transformers
are never imported here. Reranking must never make a query slower than its budget or
make it fail: on a timeout, an error, an open breaker or a missing model, :func:`rerank`
returns the ANN order with the fallback scores (``1 - i/n``, rank ``i + 1``) and
counts a skip with the reason.

The package: ``session`` (the model on ONNX Runtime), ``cuda`` (can it run on CUDA, and
what is missing), ``breaker``, ``service`` (budget, switch, metrics, the process-wide
instance), ``metrics``, ``errors``; the manifest and
variant files are :mod:`pymem.model_files`, shared with the export code.

Public API (backed by one lazily built :class:`Reranker`):
:func:`get_cross_encoder`, :func:`rerank`, :func:`maybe_rerank`, :func:`get_rerank_metrics`,
:func:`get_rerank_prometheus`, :func:`reranker_status`, :func:`reset_reranker`.

Query and candidate text is never logged.
"""

from ..ranking import RerankedResult, ann_order
from .breaker import CircuitBreaker
from .errors import DeviceUnavailableError, ModelUnavailableError, RerankCancelled, RerankError
from .metrics import RerankMetrics
from .service import (
    Reranker,
    get_cross_encoder,
    get_rerank_metrics,
    get_rerank_prometheus,
    get_reranker,
    maybe_rerank,
    rerank,
    reranker_status,
    reset_reranker,
)
from .cuda import CUDA, cuda_problems, provider_options
from .session import CPU, CrossEncoder, Scorer, Scores, length_buckets, plan_batches

__all__ = [
    "CPU", "CUDA", "CircuitBreaker", "CrossEncoder", "DeviceUnavailableError",
    "ModelUnavailableError", "RerankCancelled", "RerankError", "RerankMetrics", "RerankedResult", "Reranker",
    "Scorer", "Scores", "ann_order", "get_cross_encoder", "get_rerank_metrics", "get_rerank_prometheus",
    "cuda_problems", "get_reranker", "length_buckets", "maybe_rerank", "plan_batches", "provider_options", "rerank",
    "reranker_status",
    "reset_reranker",
]
