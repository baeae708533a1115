"""The reranker's errors."""

from __future__ import annotations

from ..model_files import ModelFileError


class RerankError(RuntimeError):
    """Base class of reranker errors."""


class ModelUnavailableError(RerankError, ModelFileError):
    """No usable exported model (missing files, bad manifest, checksum mismatch)."""


class DeviceUnavailableError(RerankError):
    """``PYMEM_RERANK_DEVICE=cuda`` but ONNX Runtime cannot run on CUDA here."""


class RerankCancelled(RerankError):
    """The run was stopped through ``RunOptions.terminate`` (its deadline passed)."""
