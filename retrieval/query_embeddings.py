"""Query embeddings off the critical path: an LRU cache and a micro-batcher around an embedder.

`QueryEmbedder` wraps any `Embedder` (`build_embedder` applies it); only `embed_query`
changes, `embed` (the ingest path, which batches already) passes straight through.

- **Cache.** Questions repeat (a digest's topics, the same question asked twice, `/papers`
  retried): a vector is kept per *normalised* text (NFKC, casefolded, whitespace collapsed),
  at most ``cache_size`` of them (least recently used out first; 0 = no cache). The model
  embeds the normalised text itself, so a vector is a function of its key alone: which
  spelling came first never matters, in any process or replica. (all-MiniLM-L6-v2 lower-cases
  and splits on whitespace anyway: for the local model only what NFKC and casefolding rewrite
  beyond that, ligatures like "ﬁ" or "ß", embeds differently, as the plain letters.)
- **Micro-batching** (``batch=True``). Answer workers embed their questions at the same
  time. The first caller runs the model; whoever arrives while it is busy waits, and the next
  free caller takes every waiting text (up to ``max_batch``) into ONE model call, each caller
  getting its own row. A lone caller never waits (``window`` = 0: batches are "whatever
  arrived while the model was busy"); the same text asked twice at once is embedded once.
  `build_embedder` batches for an API embedder (one request instead of several) but lets
  the local ONNX model run concurrent calls: on 2 CPU cores a batch of questions cost more
  CPU per question than single calls, and 8 threads' concurrent calls were 2.4x faster than
  their batches (benchmarks/bench_query_embed.py).

Thread-safe; no thread of its own, nothing at import.
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["QueryCache", "QueryEmbedder", "normalise_query"]

_SPACES = re.compile(r"\s+")

Matrix = npt.NDArray[np.float32]


class Embedder(Protocol):
    """What this module needs of `retrieval.embeddings.Embedder` (structural: that module
    imports this one, so this one does not import it)."""

    model_id: str

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Matrix: ...

    def embed_query(self, text: str) -> Matrix: ...


def normalise_query(text: str) -> str:
    """The cache key of a question: NFKC, casefolded, runs of whitespace as one space."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


class QueryCache:
    """A thread-safe LRU of query vectors (read-only arrays, so no caller can alter one)."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"query cache size must be >= 0, got {size}")
        self.size = size
        self._rows: OrderedDict[str, Matrix] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Matrix | None:
        if not self.size:
            return None
        with self._lock:
            row = self._rows.get(key)
            if row is None:
                self.misses += 1
                return None
            self._rows.move_to_end(key)
            self.hits += 1
            return row

    def put(self, key: str, row: Matrix) -> None:
        if not self.size:
            return
        with self._lock:
            self._rows[key] = row
            self._rows.move_to_end(key)
            while len(self._rows) > self.size:
                self._rows.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)


@dataclass(eq=False, slots=True)
class _Job:
    text: str
    done: bool = False
    row: Matrix | None = None
    error: BaseException | None = None

    def result(self) -> Matrix:
        if self.error is not None:
            raise self.error
        assert self.row is not None
        return self.row


def _frozen(row: Matrix) -> Matrix:
    """A read-only float32 copy (it may be handed to several callers and kept in the cache)."""
    out = np.array(row, dtype=np.float32)
    out.flags.writeable = False
    return out


class _MicroBatcher:
    """Runs concurrent single-text requests as one `embed` call (see the module docstring)."""

    def __init__(self, embedder: Embedder, max_batch: int, window: float) -> None:
        if max_batch < 1 or window < 0:
            raise ValueError(f"invalid micro-batch settings max_batch={max_batch}, window={window}")
        self.embedder = embedder
        self.max_batch = max_batch
        self.window = window
        self._cond = threading.Condition()
        self._waiting: dict[str, _Job] = {}  # insertion order = arrival order
        self._running: dict[str, _Job] = {}
        self._busy = False
        self._blocked = 0  # callers waiting for a batch (several may share one text)
        self.calls = 0  # model calls made (batches)
        self.texts = 0  # texts embedded

    @property
    def queued(self) -> tuple[int, int]:
        """(texts, callers) waiting for the model now."""
        with self._cond:
            return len(self._waiting), self._blocked

    def embed(self, text: str) -> Matrix:
        with self._cond:
            job = self._waiting.get(text) or self._running.get(text)
            if job is None:
                job = self._waiting[text] = _Job(text)
            self._blocked += 1
            try:
                while not job.done and self._busy:
                    self._cond.wait()
            finally:
                self._blocked -= 1
            if job.done:
                return job.result()
            # Not busy and not done: the job is still waiting, and this caller runs the model.
            self._busy = True
        try:
            if self.window:
                time.sleep(self.window)  # let concurrent callers join this batch
            with self._cond:
                batch = [self._waiting.pop(text)]
                while self._waiting and len(batch) < self.max_batch:
                    batch.append(self._waiting.pop(next(iter(self._waiting))))
                self._running = {j.text: j for j in batch}
            self._run(batch)
        finally:
            with self._cond:
                for j in self._running.values():
                    if not j.done:  # interrupted before the model returned
                        j.error = j.error or RuntimeError("query embedding was interrupted")
                        j.done = True
                self._running = {}
                self._busy = False
                self._cond.notify_all()
        return job.result()

    def _run(self, batch: list[_Job]) -> None:
        try:
            rows = np.asarray(self.embedder.embed([j.text for j in batch]), dtype=np.float32)
        except BaseException as exc:  # every caller of this batch gets the model's error
            with self._cond:
                for j in batch:
                    j.error, j.done = exc, True
            raise
        with self._cond:
            self.calls += 1
            self.texts += len(batch)
            for j, row in zip(batch, rows, strict=True):
                j.row, j.done = _frozen(row), True


class QueryEmbedder:
    """An `Embedder` whose `embed_query` is cached and micro-batched; `embed` passes through.

    Other attributes (``threads``, ``batch_size``, ``loaded`` …) are the wrapped embedder's.
    """

    def __init__(
        self,
        inner: Embedder,
        cache_size: int = 2048,
        *,
        batch: bool = True,
        max_batch: int = 32,
        window: float = 0.0,
    ) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.cache = QueryCache(cache_size)
        self.batch = batch  # False: concurrent callers call the model concurrently
        self._batcher = _MicroBatcher(inner, max_batch, window)

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def loaded(self) -> bool:
        return bool(getattr(self.inner, "loaded", True))

    @property
    def model_calls(self) -> int:
        """Model calls made for queries (each one a batch of one or more texts)."""
        return self._batcher.calls

    @property
    def queued(self) -> tuple[int, int]:
        """(distinct questions, callers) waiting for the model now: it is busy with an earlier
        batch."""
        return self._batcher.queued

    def embed(self, texts: Sequence[str]) -> Matrix:
        return self.inner.embed(texts)

    def embed_query(self, text: str) -> Matrix:
        """The question's vector, shape (dim,), read-only (it may be shared with the cache)."""
        key = normalise_query(text)
        row = self.cache.get(key)
        if row is None:
            row = self._batcher.embed(key) if self.batch else _frozen(self.inner.embed([key])[0])
            self.cache.put(key, row)
        return row

    def __getattr__(self, name: str) -> Any:
        # Only reached for names this class does not define: the wrapped embedder's own.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"QueryEmbedder({self.inner!r}, cache_size={self.cache.size})"
