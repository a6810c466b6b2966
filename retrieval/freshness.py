"""A running process sees every change to the index: whoever wrote it, the next query uses it.

Embedded Chroma keeps the HNSW index in memory per client: vectors another process writes
(a `paperbot ingest` from cron, a second replica) stay invisible to a client opened before
them. BM25 and paper metadata follow the state on their own (BM25 is rebuilt per state
generation; papers are read from SQLite on every call); the vector store handle is what must
be reopened.

The state says when: its *index version* is (generation, index_dirty, index_epoch), three
values of its meta table. Every chunk change bumps the generation and marks the index dirty
until the vectors are written; every write section that touched the vector store bumps the
epoch at its end (a repair, a metadata-only update). So a version read before opening a
handle that equals the version read now means the handle shows everything: reading it costs
three SQLite lookups per query, and a reopen happens only after a change.

A process that wrote the index itself needs no reopen: its handle took the writes. While it
writes, its own queries do not reopen either (they see its writes as they happen).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from retrieval.state import StateStore
from retrieval.store import VectorStore

log = logging.getLogger(__name__)

EPOCH_KEY = "index_epoch"

Version = tuple[str | None, str | None, str | None]


def index_version(state: StateStore) -> Version:
    """The generation, dirty flag and epoch, read together (one query: on PostgreSQL one round
    trip per search instead of three, and the three values from one snapshot)."""
    found = state.get_metas(("generation", "index_dirty", EPOCH_KEY))
    return (found.get("generation"), found.get("index_dirty"), found.get(EPOCH_KEY))


class Freshness:
    """Which index version this process's vector-store handle shows; reopens it when stale.

    Thread-safe: a reopen retires the handle (calls running on it finish there) and the next
    call opens a fresh one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: Version | None = None
        self._writing = 0

    def opening(self, state: StateStore) -> None:
        """Call just before a store is opened: it will show at least this version."""
        version = index_version(state)
        with self._lock:
            self._seen = version

    def refresh(
        self, state: StateStore, store: VectorStore, version: Version | None = None
    ) -> bool:
        """Reopen ``store`` when the index changed since its handle was opened (by another
        process or host, or another corpus in this one). True when it did. ``version``: the
        index version the caller just read (else read here)."""
        # read before reopening: the new handle is as new
        version = version or index_version(state)
        with self._lock:
            if version == self._seen or self._writing:
                return False
            known = self._seen is not None
            self._seen = version
            if not known:  # an injected store: take it as current
                return False
            store.reopen()
            return True

    @contextmanager
    def writing(
        self, data_dir: Path, state: StateStore, store: VectorStore, *, wait: bool = True
    ) -> Iterator[bool]:
        """A write to the index, under the data dir's writer lock (yields False, without it,
        when ``wait`` is off and another writer holds it).

        Reopens first if someone else wrote since (never write into a stale view of an
        embedded index), keeps this process's queries from reopening while it writes, and at
        the end bumps the epoch when the vector store was written, so other processes reopen.
        """
        # the data dir's flock, and on PostgreSQL the state's lock across hosts
        with (
            writer_lock(data_dir, wait=wait) as locked,
            state.writer_lock(wait=wait) as shared,
        ):
            if not (locked and shared):
                yield False
                return
            self.refresh(state, store)
            writes = store.writes
            with self._lock:
                self._writing += 1
            try:
                yield True
            finally:
                version: Version | None = None
                try:
                    if store.writes != writes:
                        epoch = int(state.get_meta(EPOCH_KEY, "0") or 0)
                        state.set_meta(EPOCH_KEY, str(epoch + 1))
                    version = index_version(state)
                finally:
                    with self._lock:
                        self._writing -= 1
                        if version is not None:
                            self._seen = version  # this process wrote it: its view is current


@contextmanager
def writer_lock(data_dir: Path, *, wait: bool = True) -> Iterator[bool]:
    """One writer at a time per data dir (a second `paperbot ingest` waits for the first).
    Yields False, without the lock, when ``wait`` is off and another writer holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "ingest.lock"
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            log.info("another ingest holds %s; waiting", path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(str(os.getpid()))
        handle.flush()
        yield True
