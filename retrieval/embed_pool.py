"""Embedding throughput for a bulk ingest: the resources given, used at once.

Two embedders with the `Embedder` protocol, built by `bulk_embedder(settings)`:

- `ProcessPoolEmbedder` (local model, ``PAPERBOT_EMBEDDING_WORKERS`` > 1): N worker processes,
  each with its own onnxruntime session of ``cores / N`` threads (one session's threads stop
  scaling well past a couple of cores, and the tokenizer and pooling run outside them); each
  `embed` call is split into pieces the workers embed side by side. The vectors come back to
  the calling process, which alone writes the embedding cache and the indexes.
- `ConcurrentEmbedder` (an OpenAI-compatible endpoint): ``PAPERBOT_EMBEDDING_CONCURRENCY``
  batched requests in flight at once, through the one `OpenAIEmbedder` (its client is
  thread-safe). A 429 is retried by the openai client, which waits what the server's
  ``Retry-After`` / ``retry-after-ms`` says (up to 60 s; else exponential backoff), up to
  ``PAPERBOT_MAX_RETRIES`` times per request; a batch that still fails stops the ingest with
  the endpoint's one-line error, and a resumable ingest continues from its last window.

Both give exactly the vectors the single embedder gives (same model id, so the same cache and
collection); queries are embedded in the calling process, never through the pool.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.embeddings import (
    LOCAL_DIM,
    LOCAL_MODEL_ID,
    Embedder,
    LocalMiniLMEmbedder,
    Matrix,
    build_embedder,
)
from retrieval.errors import EmbeddingError
from retrieval.worker_processes import check_started, start_worker, starting_workers

if TYPE_CHECKING:
    from retrieval.settings import RetrievalSettings

_worker: LocalMiniLMEmbedder | None = None  # the model of a pool worker process


def _start_worker(threads: int, batch_size: int, max_length: int) -> None:
    def load() -> None:
        global _worker
        _worker = LocalMiniLMEmbedder(threads=threads, batch_size=batch_size, max_length=max_length)
        _worker.embed(["warm up"])  # load the model now, not inside the first timed call

    start_worker(load, "a local embedding worker could not load the model", EmbeddingError)


def _embed_in_worker(texts: list[str]) -> Matrix:
    check_started()
    assert _worker is not None, "pool worker not initialised"
    return _worker.embed(texts)


class ProcessPoolEmbedder:
    """The local model in ``workers`` processes (started on first use; `close` stops them)."""

    model_id = LOCAL_MODEL_ID

    def __init__(
        self,
        workers: int,
        *,
        threads: int | None = None,
        batch_size: int = 32,
        max_length: int = 256,
    ) -> None:
        self.workers = max(1, workers)
        cores = os.cpu_count() or 1
        self.threads = threads if threads else max(1, cores // self.workers)
        self.batch_size = batch_size
        self.max_length = max_length
        self._pool: ProcessPoolExecutor | None = None
        self._local: LocalMiniLMEmbedder | None = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return LOCAL_DIM

    @property
    def loaded(self) -> bool:
        return self._pool is not None

    def embed(self, texts: Sequence[str]) -> Matrix:
        if len(texts) == 0:
            return np.zeros((0, LOCAL_DIM), dtype=np.float32)
        pool = self._started()
        # Two pieces per worker (at least a model batch each), so one slow piece does not
        # leave the others idle at the end.
        size = max(self.batch_size, math.ceil(len(texts) / (2 * self.workers)))
        pieces = [list(texts[i : i + size]) for i in range(0, len(texts), size)]
        try:
            with starting_workers(pool, self.workers):  # map submits every piece at once
                results = pool.map(_embed_in_worker, pieces)
            return np.concatenate(list(results), axis=0)
        except BrokenProcessPool:
            self.close()
            raise EmbeddingError(
                f"a local embedding worker process died (out of memory?); run again with fewer "
                f"PAPERBOT_EMBEDDING_WORKERS (now {self.workers}): the ingest continues where "
                "it stopped"
            ) from None

    def embed_query(self, text: str) -> Matrix:
        with self._lock:
            if self._local is None:
                self._local = LocalMiniLMEmbedder(
                    threads=self.threads, batch_size=self.batch_size, max_length=self.max_length
                )
        return self._local.embed_query(text)

    def _started(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # spawn: the parent holds threads (SQLite, Chroma) that a fork would copy
                # mid-operation; each worker imports and loads the model itself. A worker that
                # dies breaks the pool (an error), where multiprocessing.Pool would hang.
                self._pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_worker,
                    initargs=(self.threads, self.batch_size, self.max_length),
                )
            return self._pool

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class ConcurrentEmbedder:
    """An endpoint embedder with ``concurrency`` batched requests in flight."""

    def __init__(self, inner: Any, concurrency: int, *, batch_size: int | None = None) -> None:
        self.inner = inner
        self.model_id: str = inner.model_id
        self.concurrency = max(1, concurrency)
        self.batch_size = batch_size or int(getattr(inner, "batch_size", 256))
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    def embed(self, texts: Sequence[str]) -> Matrix:
        if len(texts) <= self.batch_size or self.concurrency == 1:
            return self.inner.embed(texts)
        pieces = [
            list(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)
        ]
        parts = list(self._pool().map(self.inner.embed, pieces))
        return np.concatenate(parts, axis=0)

    def embed_query(self, text: str) -> Matrix:
        return self.inner.embed_query(text)

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self.concurrency, thread_name_prefix="paperbot-embed"
                )
            return self._executor

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)


def bulk_embedder(settings: RetrievalSettings) -> Embedder:
    """The embedder a bulk ingest uses: the settings' model, with ``embedding_workers``
    processes (local) or ``embedding_concurrency`` requests in flight (endpoint)."""
    if settings.embedding_provider == "local":
        single = build_embedder(settings)  # checks the model name
        if settings.embedding_workers <= 1:
            return single
        return ProcessPoolEmbedder(
            settings.embedding_workers,
            threads=settings.embedding_threads or None,
            batch_size=settings.embedding_batch_size,
        )
    return ConcurrentEmbedder(build_embedder(settings), settings.embedding_concurrency)


def close_embedder(embedder: object) -> None:
    """Stop an embedder's workers, if it has any."""
    close = getattr(embedder, "close", None)
    if callable(close):
        close()
