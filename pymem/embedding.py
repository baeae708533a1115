"""A local, deterministic text embedder for the demo and benchmarks.

It is feature hashing (word unigrams and bigrams, signed, L2-normalised), not a
neural model: similar wording gives similar vectors, meaning does not. It needs no
download, which is the point here; real deployments pass their own embeddings.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

_TOKEN = re.compile(r"[a-z0-9]+")


class HashingEmbedder:
    """``embed(text) -> float32 unit vector`` of ``dim`` dimensions."""

    name = "local feature-hashing embedder (deterministic, not a neural model)"

    def __init__(self, dim: int = 384):
        if dim < 1:
            raise ValueError("dim must be positive")
        self.dim = dim

    def embed(self, text: str) -> np.ndarray:
        words = _TOKEN.findall(text.lower())
        features = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
        vector = np.zeros(self.dim, dtype=np.float32)
        for feature in features:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            slot = int.from_bytes(digest[:4], "little") % self.dim
            vector[slot] += 1.0 if digest[4] & 1 else -1.0
        norm = np.linalg.norm(vector)
        if norm == 0:
            vector[0] = 1.0  # an empty text still needs a valid (non-zero) vector for cosine
            return vector
        return vector / norm
