"""Vector-store writes of an ingest, off its critical path (see `VectorWrites`)."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from retrieval.store import ChunkMeta, VectorStore

log = logging.getLogger(__name__)


class VectorWrites:
    """The vector store's writes of one ingest, off its critical path: one background thread
    writes them in order while the ingest parses, chunks and commits the next batches. That
    overlaps with a Chroma server (the thread waits on HTTP without the GIL); embedded Chroma
    (1.5) holds the GIL through an insert, so there the two take turns (docs/benchmarks.md
    §6, bulk backfill). Upserts of consecutive batches are joined
    into calls of about `FLUSH_VECTORS` (fewer, larger inserts); a delete first sends what is
    waiting, so the store sees every write in the order the state made them. At most two
    calls are in flight, so memory stays bounded. The state is always ahead: a crash leaves
    the index dirty and the next write repairs it (`reconcile`)."""

    FLUSH_VECTORS = 1024

    def __init__(self, store: VectorStore, *, background: bool = True) -> None:
        self.store = store
        self.background = background  # False: each batch written at once, in the caller
        self._ids: list[str] = []
        self._rows: list[np.ndarray] = []
        self._metas: list[ChunkMeta] = []
        self._executor: ThreadPoolExecutor | None = None
        self._calls: deque[Future[None]] = deque()
        self.wrote = False

    def upsert(self, ids: list[str], matrix: np.ndarray, metas: list[ChunkMeta]) -> None:
        if not self.background:
            self.wrote = True
            self.store.upsert(ids, matrix, metas)
            return
        self._ids += ids
        self._rows.append(matrix)
        self._metas += metas
        if len(self._ids) >= self.FLUSH_VECTORS:
            self._flush()

    def delete(self, ids: Sequence[str]) -> None:
        if not self.background:
            self.wrote = True
            self.store.delete(ids)
            return
        self._flush()
        self._submit(self.store.delete, list(ids))

    def drain(self) -> bool:
        """Send what waits, wait for every call (raising the first failure); True when
        anything was written."""
        self._flush()
        try:
            while self._calls:
                self._calls.popleft().result()
        finally:
            self._stop()
        return self.wrote

    def abandon(self) -> None:
        """On a failed ingest: let the calls already running finish, drop what waits."""
        for call in self._calls:
            call.cancel()
        for call in self._calls:
            if not call.cancelled():
                try:
                    call.result()
                except Exception:  # already failing: the ingest's own error is the one to show
                    log.debug("vector write failed during an ingest that failed", exc_info=True)
        self._calls.clear()
        self._stop()

    def _flush(self) -> None:
        if self._ids:
            ids, rows, metas = self._ids, np.concatenate(self._rows), self._metas
            self._ids, self._rows, self._metas = [], [], []
            self._submit(self.store.upsert, ids, rows, metas)

    def _submit(self, write: Callable[..., None], *args: object) -> None:
        while len(self._calls) >= 2:
            self._calls.popleft().result()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="paperbot-vectors")
        self.wrote = True
        self._calls.append(self._executor.submit(write, *args))

    def _stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
