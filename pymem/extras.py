"""Optional features and the extras that install them, and progress bars.

The core (store, crypto, migrations) needs none of the extras. A feature used
without its extra raises :class:`pymem.errors.MissingExtra` (an ``ImportError``)
naming the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

from .errors import MissingExtra

#: The distribution that installs ``import pymem``. PyPI's ``pymem`` is another
#: project (a Windows process-memory library): never ``pip install pymem``.
DISTRIBUTION = "pymem-store"


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``.

    Raises:
        MissingExtra: it is not installed; the message names ``pymem-store[extra]``.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{feature} needs the {extra!r} extra: pip install '{DISTRIBUTION}[{extra}]'") from None


def progress_available() -> bool:
    """Whether the ``progress`` extra (tqdm) is installed, for tools that show a bar only then."""
    return importlib.util.find_spec("tqdm") is not None


class _Silent:
    """What a disabled progress bar does: nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int | None, *, enabled: bool, **options: Any):
    """A tqdm bar when ``enabled`` (needs the ``progress`` extra), else a silent one."""
    if not enabled:
        return _Silent()
    return require("tqdm", "progress", "progress=True").tqdm(total=total, **options)


def progress_iter(items: Iterable, *, enabled: bool, **options: Any) -> Iterator:
    """``items`` under a tqdm bar when ``enabled`` (needs the ``progress`` extra)."""
    if not enabled:
        return iter(items)
    return iter(require("tqdm", "progress", "progress=True").tqdm(items, **options))
