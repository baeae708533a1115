"""The reranker's errors, defined in :mod:`pymem.errors` with the rest."""

from ..errors import DeviceUnavailableError, ModelUnavailableError, RerankCancelled, RerankError

__all__ = ["DeviceUnavailableError", "ModelUnavailableError", "RerankCancelled", "RerankError"]
