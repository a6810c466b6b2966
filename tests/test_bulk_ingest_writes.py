"""The ingest's vector writes off its critical path: joined into larger calls, in the state's
order (a delete never overtakes an upsert), failures raised, nothing left running."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import date

import numpy as np
import pytest

from retrieval.ingest_writes import VectorWrites
from retrieval.store import ChunkMeta


class RecordingStore:
    """Records each call with the thread that made it; fails the upsert of ``fail_on``."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, metas: Sequence[ChunkMeta]) -> None:
        assert len(ids) == len(vectors) == len(metas)
        self.threads.add(threading.current_thread().name)
        if self.fail_on in ids:
            raise RuntimeError("chroma is down")
        self.calls.append(("upsert", list(ids)))

    def delete(self, ids: Sequence[str]) -> None:
        self.threads.add(threading.current_thread().name)
        self.calls.append(("delete", list(ids)))


def _batch(prefix: str, n: int) -> tuple[list[str], np.ndarray, list[ChunkMeta]]:
    ids = [f"{prefix}{i}" for i in range(n)]
    return (
        ids,
        np.ones((n, 4), dtype=np.float32),
        [ChunkMeta(i, date(2023, 1, 2), "arxiv") for i in ids],
    )


def test_batches_are_joined_and_a_delete_keeps_its_place() -> None:
    store = RecordingStore()
    writes = VectorWrites(store)  # type: ignore[arg-type]
    writes.upsert(*_batch("a", 600))
    writes.upsert(*_batch("b", 600))  # 1,200 waiting: sent as one call
    writes.upsert(*_batch("c", 10))
    writes.delete(["a1"])  # after c's upsert, which is sent first
    writes.upsert(*_batch("d", 5))
    assert writes.drain() is True
    kinds = [(kind, len(ids)) for kind, ids in store.calls]
    assert kinds == [("upsert", 1200), ("upsert", 10), ("delete", 1), ("upsert", 5)]
    assert store.threads == {"paperbot-vectors_0"}  # off the ingest's own thread


def test_a_failed_write_is_raised_by_drain() -> None:
    store = RecordingStore(fail_on="b0")
    writes = VectorWrites(store)  # type: ignore[arg-type]
    writes.upsert(*_batch("a", 1100))
    writes.upsert(*_batch("b", 1100))
    with pytest.raises(RuntimeError, match="chroma is down"):
        writes.drain()


def test_inline_writes_go_one_batch_at_a_time() -> None:
    store = RecordingStore()
    writes = VectorWrites(store, background=False)  # type: ignore[arg-type]
    writes.upsert(*_batch("a", 3))
    writes.delete(["x"])
    assert store.calls == [("upsert", ["a0", "a1", "a2"]), ("delete", ["x"])]
    assert writes.drain() is True
    assert VectorWrites(store).drain() is False  # type: ignore[arg-type]  # nothing written: the index stays as it was
