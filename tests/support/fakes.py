"""Small fakes that record what they were asked (in the spirit of simonw/llm's MockModel)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np


class FakeEmbedder:
    """Deterministic bag-of-words vectors: texts sharing words are close. Records every call."""

    def __init__(self, dim: int = 64, model_id: str = "fake-bow-64") -> None:
        self.dim = dim
        self.model_id = model_id
        self.calls: list[list[str]] = []

    @property
    def texts_embedded(self) -> int:
        return sum(len(c) for c in self.calls)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        matrix = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                bucket = int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim
                matrix[row, bucket] += 1.0
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return matrix / norms

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


class WordCodec:
    """A stand-in for tiktoken in pure chunking tests: one token per whitespace word."""

    def encode(self, text: str) -> list[int]:
        return [hash(w) % 50_000 for w in text.split()]

    def decode(self, tokens: Sequence[int]) -> str:
        raise NotImplementedError("WordCodec cannot decode; keep sentences short in tests")
