"""Ranked results, and the ANN order the reranker falls back to.

Apart from :mod:`pymem.rerank` so that a query with reranking off needs neither
ONNX Runtime nor prometheus-client (the ``rerank`` extra).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RerankedResult:
    """One candidate after reranking.

    Attributes:
        index: position of the candidate in the input list.
        text: the candidate itself.
        score: sigmoid of the cross-encoder logit in (0, 1), or the ANN fallback
            score ``1 - i/n`` when the call was skipped.
        rank: 1-based rank; results are returned sorted by it.
        reranked: True when the cross-encoder scored it; False for the ANN fallback
            (reranking off, skipped or failed), whose order is the search's.
    """

    index: int
    text: str
    score: float
    rank: int
    reranked: bool


def ann_order(candidates: Sequence[str]) -> list[RerankedResult]:
    """The seed's fail-open answer: ANN order, score ``1 - i/n``, rank ``i + 1``."""
    n = len(candidates)
    return [RerankedResult(i, text, 1.0 - i / n, i + 1, reranked=False) for i, text in enumerate(candidates)]
