"""Keep the BM25 weights of a field's frequent terms computed (a long-running process).

A query's cost at 10⁶ chunks is mostly computing the weights of its terms' postings
(`BM25Index.column`: one pass per posting over tf, the length norm and the idf), ~4× the cost
of adding them up once computed: a question with a few frequent words new to the process
spent ~40 ms in BM25 where one whose columns were kept spent ~11 (docs/benchmarks.md §6).
The weights depend on the corpus-wide statistics, which change with every ingest, so an index
of a new generation starts with none kept; `ColumnWarmer` computes the longest columns of
each new index in a background thread, longest first, until a byte budget per field, through
the same `column` a query calls, so a warmed column holds the same float32 weights and every
score stays bit-identical. A query arriving before its columns are warm computes them itself,
as before.

`paperbot serve` (and the ASGI app) warm; one-shot CLI commands do not (a process that
answers one question would spend more on warming than it saves).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from retrieval.lexical import COLUMN_CACHE_BYTES, BM25Index

log = logging.getLogger(__name__)

# a column shorter than this costs a query microseconds to compute: not worth the memory
MIN_POSTINGS = 4096
# the warmed columns take at most this share of the column cache: the columns queries compute
# themselves (rarer terms) have the rest before they evict any. Past that the cache is an LRU
# like before: a warmed column no query has used since goes first (the longest, warmed first)
CACHE_SHARE = 0.75


@dataclass(frozen=True, slots=True)
class Warmed:
    """What one field's warm-up computed."""

    generation: int
    columns: int
    postings: int
    nbytes: int
    seconds: float
    complete: bool  # False: stopped early (a newer index arrived, or the process is closing)


def warm_columns(
    index: BM25Index, budget_bytes: int, stop: threading.Event | None = None
) -> Warmed:
    """Compute ``index``'s longest columns (every segment's, longest first) until their
    weights take ``budget_bytes`` (capped at `CACHE_SHARE` of the column cache); columns
    under `MIN_POSTINGS` postings are left to the queries that need them."""
    started = time.perf_counter()
    budget = min(budget_bytes, int(COLUMN_CACHE_BYTES * CACHE_SHARE))
    lengths = [np.diff(np.asarray(seg.ptr)) for seg in index.segments]
    found = [
        (int(size[col]), s, int(col))
        for s, size in enumerate(lengths)
        for col in np.flatnonzero(size >= MIN_POSTINGS)
    ]
    found.sort(key=lambda t: (-t[0], t[1], t[2]))
    columns = postings = nbytes = 0
    for length, s, col in found:
        weight_bytes = length * np.dtype(np.float32).itemsize
        if (stop is not None and stop.is_set()) or nbytes + weight_bytes > budget:
            break
        seg = index.segments[s]
        index.column(seg, col, index.idf(seg.terms[col].decode()))
        columns += 1
        postings += length
        nbytes += weight_bytes
    stopped = stop is not None and stop.is_set()
    elapsed = time.perf_counter() - started
    return Warmed(index.generation, columns, postings, nbytes, elapsed, not stopped)


class ColumnWarmer:
    """Warms each new set of BM25 fields in one background thread; a newer set stops the
    warm-up of the previous one (its columns would be dropped with it)."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.last: dict[str, Warmed] = {}  # field -> what its latest finished warm-up did
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # the indexes of the latest `warm` (held until the next: they are the corpus's)
        self._fields: tuple[BM25Index, ...] = ()
        self._closed = False

    def warm(self, fields: Iterable[tuple[str, BM25Index]]) -> None:
        """Start warming these fields (name, index) in the background."""
        if self.budget_bytes <= 0:
            return
        todo = list(fields)
        with self._lock:
            if self._closed:
                return
            indexes = tuple(i for _, i in todo)
            if len(indexes) == len(self._fields) and all(
                a is b for a, b in zip(indexes, self._fields, strict=True)
            ):
                return  # these very indexes are warm or being warmed
            self._fields = indexes
            self._stop.set()  # the previous run's indexes are being replaced
            self._stop = stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(todo, stop), name="paperbot-bm25-warm", daemon=True
            )
            self._thread.start()

    def status(self) -> dict[str, Any]:
        """For /readyz: the budget, whether a warm-up is running, each field's last one."""
        with self._lock:  # `_run` adds to `last` under the same lock
            running = self._thread is not None and self._thread.is_alive()
            last = dict(self.last)
        return {
            "budget_mib": self.budget_bytes / 2**20,
            "running": running,
            "fields": {
                name: {
                    "generation": w.generation,
                    "columns": w.columns,
                    "mib": round(w.nbytes / 2**20, 1),
                    "seconds": round(w.seconds, 3),
                }
                for name, w in last.items()
            },
        }

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the current warm-up to end; False on timeout."""
        with self._lock:
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def close(self) -> None:
        """Stop warming for good (the column being computed finishes first)."""
        with self._lock:
            self._closed = True
            self._stop.set()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self, fields: list[tuple[str, BM25Index]], stop: threading.Event) -> None:
        for name, index in fields:
            try:
                done = warm_columns(index, self.budget_bytes, stop)
            except Exception as exc:  # a damaged segment: the query that needs it says so
                log.warning("BM25 warm-up of the %s field stopped: %s", name, exc)
                return
            if not done.complete:
                return
            with self._lock:
                self.last[name] = done
            log.info(
                "BM25 %s field at generation %d: %d frequent columns kept (%d postings, "
                "%.0f MiB) in %.2f s",
                name,
                index.generation,
                done.columns,
                done.postings,
                done.nbytes / 2**20,
                done.seconds,
            )
