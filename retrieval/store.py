"""The vector store: Chroma, embedded (PersistentClient) or a server (`chroma run`).

The only module that imports chromadb, and the home of everything Chroma-specific: the
collection wrapper and `ChromaEmbeddingFunction`, the adapter that lets Chroma call our
embedder. Vectors are computed by our embedder (with its cache) and passed in; the embedding
function is still attached to the collection so that anyone who opens it through Chroma's own
API embeds queries with the same model.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from retrieval.embeddings import LOCAL_MODEL_ID, Embedder, LocalMiniLMEmbedder, Matrix
from retrieval.errors import EmbeddingError, StoreUnavailableError
from retrieval.settings import RetrievalSettings

if TYPE_CHECKING:
    from chromadb.api.types import Embeddable, Embeddings

log = logging.getLogger(__name__)

_ID_PAGE = 5000


@dataclass(frozen=True, slots=True)
class ChunkMeta:
    """What the vector index keeps beside each vector, for filtering."""

    paper_id: str
    published: date | None
    source: str

    def as_metadata(self) -> dict[str, str | int]:
        stamp = int(self.published.strftime("%Y%m%d")) if self.published else 0
        return {"paper_id": self.paper_id, "published": stamp, "source": self.source}


def collection_name(prefix: str, model_id: str) -> str:
    """One collection per embedding model: vectors of different models never mix."""
    slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", model_id).strip("-._")
    return f"{prefix}__{slug}"[:63]


class VectorStore:
    """A Chroma collection of chunk vectors with paper metadata."""

    def __init__(self, client: Any, name: str, embedding_function: Any, where: str) -> None:
        self._client = client
        self.name = name
        self.where = where  # human-readable location, for messages
        self._ef = embedding_function
        self._collection: Any | None = None

    @classmethod
    def from_settings(
        cls, settings: RetrievalSettings, model_id: str, embedding_function: Any
    ) -> VectorStore:
        client, where = _make_client(settings)
        return cls(
            client, collection_name(settings.chroma_collection, model_id), embedding_function, where
        )

    @property
    def collection(self) -> Any:
        if self._collection is None:
            self._collection = self._call(
                "open the collection",
                self._client.get_or_create_collection,
                name=self.name,
                embedding_function=self._ef,
                configuration={"hnsw": {"space": "cosine"}},
            )
        return self._collection

    def count(self) -> int:
        return int(self._call("count vectors", self.collection.count))

    def ids(self) -> set[str]:
        return set(self.iter_ids())

    def iter_ids(self) -> Iterator[str]:
        offset = 0
        while True:
            page = self._call(
                "list ids", self.collection.get, include=[], limit=_ID_PAGE, offset=offset
            )
            yield from page["ids"]
            if len(page["ids"]) < _ID_PAGE:
                return
            offset += _ID_PAGE

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, metas: Sequence[ChunkMeta]) -> None:
        if not ids:
            return
        step = self._batch_size()
        for start in range(0, len(ids), step):
            end = start + step
            self._call(
                "write vectors",
                self.collection.upsert,
                ids=list(ids[start:end]),
                embeddings=vectors[start:end],
                metadatas=[m.as_metadata() for m in metas[start:end]],
            )

    def delete(self, ids: Sequence[str]) -> None:
        step = self._batch_size()
        for start in range(0, len(ids), step):
            self._call(
                "delete vectors", self.collection.delete, ids=list(ids[start : start + step])
            )

    def query(
        self,
        vector: np.ndarray,
        n: int,
        *,
        since: date | None = None,
        until: date | None = None,
        sources: Sequence[str] | None = None,
    ) -> list[tuple[str, float]]:
        """Nearest chunks as (chunk id, cosine similarity), best first."""
        result = self._call(
            "search vectors",
            self.collection.query,
            query_embeddings=[np.asarray(vector, dtype=np.float32)],
            n_results=n,
            where=_where(since, until, sources),
            include=["distances"],
        )
        ids = result["ids"][0] if result["ids"] else []
        distances = result["distances"][0] if result["distances"] else []
        return [(i, 1.0 - float(d)) for i, d in zip(ids, distances, strict=True)]

    def drop(self) -> None:
        self._call("drop the collection", self._client.delete_collection, self.name)
        self._collection = None

    def _batch_size(self) -> int:
        try:
            return max(1, min(int(self._client.get_max_batch_size()), 4000))
        except Exception:  # older servers do not report it
            return 1000

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StoreUnavailableError:
            raise
        except Exception as exc:
            if _is_connection_error(exc):
                self._collection = None  # reopen after the server comes back
                raise StoreUnavailableError(
                    f"Could not {what}: the Chroma server at {self.where} is not reachable "
                    f"({exc}). "
                    "Start it (`chroma run`) or check PAPERBOT_CHROMA_HOST/PAPERBOT_CHROMA_PORT."
                ) from exc
            raise


def _make_client(settings: RetrievalSettings) -> tuple[Any, str]:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_host:
        where = f"{'https' if settings.chroma_ssl else 'http'}://{settings.chroma_host}:{settings.chroma_port}"
        try:
            client = chromadb.HttpClient(
                host=settings.chroma_host,
                port=settings.chroma_port,
                ssl=settings.chroma_ssl,
                settings=chroma_settings,
            )
        except Exception as exc:
            raise StoreUnavailableError(
                f"Could not connect to the Chroma server at {where}: {exc}. Start it with "
                "`chroma run --path DIR --port PORT` or unset PAPERBOT_CHROMA_HOST for "
                "embedded mode."
            ) from exc
        return client, where
    settings.chroma_path.mkdir(parents=True, exist_ok=True)
    try:
        client = chromadb.PersistentClient(path=str(settings.chroma_path), settings=chroma_settings)
    except Exception as exc:
        raise StoreUnavailableError(
            f"Could not open the embedded Chroma index at {settings.chroma_path}: {exc}"
        ) from exc
    return client, str(settings.chroma_path)


def _where(
    since: date | None, until: date | None, sources: Sequence[str] | None
) -> dict[str, Any] | None:
    clauses: list[dict[str, Any]] = []
    if since:
        clauses.append({"published": {"$gte": int(since.strftime("%Y%m%d"))}})
    if until:
        clauses.append({"published": {"$lte": int(until.strftime("%Y%m%d"))}})
    if sources:
        clauses.append({"source": {"$in": list(sources)}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _is_connection_error(exc: BaseException) -> bool:
    import httpx

    names = {type(e).__name__ for e in _chain(exc)}
    return (
        any(isinstance(e, (httpx.TransportError, ConnectionError)) for e in _chain(exc))
        or bool(names & {"ConnectError", "ConnectTimeout", "ReadTimeout", "RemoteProtocolError"})
        or "Could not connect to tenant" in str(exc)
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


# --------------------------------------------------------------------------------------------
# Chroma adapter
# --------------------------------------------------------------------------------------------


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
