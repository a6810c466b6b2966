"""`ChromaEmbeddingFunction`: an `Embedder` as a chromadb (1.x) embedding function.

Attached to every collection paperbot opens, so that anyone who opens the collection through
Chroma's own API embeds queries with the same model. Implemented structurally, so importing
this module does not import chromadb (only its types, for mypy).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from retrieval.embeddings import LOCAL_MODEL_ID, Embedder, LocalMiniLMEmbedder, Matrix
from retrieval.errors import EmbeddingError

if TYPE_CHECKING:
    from chromadb.api.types import Embeddable, Embeddings


class _UnboundEmbedder:
    """Stands in for an embedder Chroma rebuilt from a stored config but cannot reconstruct.

    Chroma rebuilds a collection's embedding function from its stored config whenever it
    reads the collection's configuration; that must not need an API key. Calling it means
    the collection was opened without paperbot's embedding function.
    """

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    @property
    def dim(self) -> int:
        raise self._error()

    def embed(self, texts: Sequence[str]) -> Matrix:
        raise self._error()

    def embed_query(self, text: str) -> Matrix:
        raise self._error()

    def _error(self) -> EmbeddingError:
        return EmbeddingError(
            f"the Chroma collection embeds with {self.model_id!r}, which was not given; "
            "open it with embedding_function=ChromaEmbeddingFunction(build_embedder(settings))"
        )


@functools.lru_cache(maxsize=1)
def _shared_local_embedder() -> LocalMiniLMEmbedder:
    return LocalMiniLMEmbedder()


def _embedder_from_config(config: dict[str, Any]) -> Embedder:
    model_id = str(config.get("model_id", ""))
    if model_id == LOCAL_MODEL_ID:
        # Chroma rebuilds the function on every configuration read: share one lazy instance
        # so the model is loaded at most once.
        return _shared_local_embedder()
    return _UnboundEmbedder(model_id)


Space = Literal["cosine", "l2", "ip"]


class ChromaEmbeddingFunction:
    """An `Embedder` as a chromadb (1.x) EmbeddingFunction.

    Implements chromadb's EmbeddingFunction protocol structurally rather than by subclassing,
    so importing this module does not import chromadb (~0.8 s). Chroma stores
    ``{"name": "paperbot", "config": {"model_id": ...}}`` in the collection configuration and
    only compares the name when a collection is reopened, so one collection per model_id is
    the caller's job (put ``model_slug(model_id)`` in the collection name).
    """

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    # Chroma checks that the parameter is literally named `input`. The types are chromadb's
    # (Embeddable covers images too) so that mypy accepts this class where chroma wants one.
    def __call__(self, input: Embeddable) -> Embeddings:
        texts = [t for t in input if isinstance(t, str)]
        if len(texts) != len(input):
            raise EmbeddingError("paperbot's embedding function embeds text only")
        return list(self.embedder.embed(texts))

    def embed_query(self, input: Embeddable) -> Embeddings:
        return self(input)

    def embed_with_retries(self, input: Embeddable, **_: Any) -> Embeddings:
        return self(input)  # our embedders retry inside the client already

    @staticmethod
    def name() -> str:
        return "paperbot"

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        # Unit vectors: cosine, inner product and L2 rank identically.
        return ["cosine", "ip", "l2"]

    def get_config(self) -> dict[str, Any]:
        return {"model_id": self.embedder.model_id}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> ChromaEmbeddingFunction:
        return ChromaEmbeddingFunction(_embedder_from_config(config))

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        if not config.get("model_id"):
            raise ValueError(f"paperbot embedding config without model_id: {config}")

    def validate_config_update(
        self, old_config: dict[str, Any], new_config: dict[str, Any]
    ) -> None:
        if old_config.get("model_id") != new_config.get("model_id"):
            raise ValueError(
                f"cannot switch a collection from {old_config.get('model_id')!r} to "
                f"{new_config.get('model_id')!r}: vectors of different models do not mix"
            )

    def is_legacy(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ChromaEmbeddingFunction)
            and other.embedder.model_id == self.embedder.model_id
        )

    def __hash__(self) -> int:
        return hash(("paperbot", self.embedder.model_id))

    def __repr__(self) -> str:
        return f"ChromaEmbeddingFunction({self.embedder.model_id!r})"
