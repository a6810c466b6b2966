"""The two BM25 fields of a data dir, kept in step with the state by what changed.

One document per chunk (``bm25/chunks``) and one per paper, title + abstract
(``bm25/papers``). When the state's generation differs from the fields' (`SegmentStore`),
the chunk ids of the state are compared with the index's live ids: a chunk id names its text
(`chunking.chunk_id` hashes it), so the ids only in the state are the new or changed chunks
and the ids only in the index the removed or replaced ones. The papers those chunks belong to
are the papers whose title or abstract changed (or that were deleted): their documents are
replaced in the paper field. Both become one new segment per field and tombstones in the
older ones; a field that is missing, or whose change is more than half the corpus, is
rebuilt from the state in parts of `SEGMENT_DOCS` documents (bounded memory).

The comparison reads every chunk id of the state once per generation (about 1 s at 10⁶
chunks); a state that logged its changes could answer "what changed since generation g"
directly. A data dir that cannot be written (read-only) gets both fields built in memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from retrieval.lexical import BM25Index, LexicalDoc
from retrieval.lexical_segments import as_bytes
from retrieval.lexical_store import SegmentStore, live_ids
from retrieval.state import StateStore

log = logging.getLogger(__name__)

FIELDS = ("chunks", "papers")
REBUILD_SHARE = 0.5  # a change to more than this share of the chunks rebuilds the fields
BATCH = 2000  # chunks or papers read from the state at once


class LexicalIndexes:
    """The BM25 fields under ``root`` (``data_dir/bm25``) for one state."""

    def __init__(self, root: Path, state: StateStore, *, legacy: Sequence[Path] = ()) -> None:
        self.root = root
        self.state = state
        self.stores = {f: SegmentStore(root / f) for f in FIELDS}
        self.legacy = legacy  # the whole-matrix files of earlier versions, removed once built
        self.last_update: dict[str, float | int | str] = {}

    def current(self, generation: int) -> dict[str, BM25Index]:
        """Both fields at ``generation`` (or newer content): mapped from disk when someone
        already brought them there, else updated now under the write lock."""
        opened = {f: self.stores[f].open() for f in FIELDS}
        if _at(opened, generation):
            return opened  # type: ignore[return-value]
        try:
            with self.stores["chunks"].lock():
                return self._update(generation)
        except OSError as exc:
            log.warning(
                "could not write the BM25 index in %s (%s); every process builds it in memory "
                "until it can (check that the data dir is writable)",
                self.root,
                exc,
            )
            return {
                "chunks": BM25Index.build(self._chunk_docs(self._all_chunk_ids()), generation),
                "papers": BM25Index.build(self._paper_docs(self._all_paper_ids()), generation),
            }

    def rebuild(self, generation: int) -> dict[str, BM25Index]:
        """Both fields rebuilt from the state, whatever the files hold (`paperbot state
        reindex`); other processes map the new files at their next generation check."""
        with self.stores["chunks"].lock():
            return {
                "chunks": self.stores["chunks"].rebuild(
                    generation, self._chunk_docs(self._all_chunk_ids())
                ),
                "papers": self.stores["papers"].rebuild(
                    generation, self._paper_docs(self._all_paper_ids())
                ),
            }

    def _update(self, generation: int) -> dict[str, BM25Index]:
        opened = {f: self.stores[f].open() for f in FIELDS}
        if _at(opened, generation):
            return opened  # type: ignore[return-value]
        started = time.perf_counter()
        chunks, papers = opened["chunks"], opened["papers"]
        state_ids = self._all_chunk_ids()
        diffed = time.perf_counter()
        if chunks is None:
            added, removed = state_ids, np.zeros(0, dtype="S1")
        else:
            live = live_ids(chunks)
            added = np.setdiff1d(state_ids, live, assume_unique=True)
            removed = np.setdiff1d(live, state_ids, assume_unique=True)
        diffed = time.perf_counter() - diffed
        rebuild = chunks is None or len(added) > REBUILD_SHARE * max(len(state_ids), 1)
        if rebuild or chunks is None:
            new_chunks = self.stores["chunks"].rebuild(generation, self._chunk_docs(state_ids))
        else:
            docs = self._chunk_docs(added)
            new_chunks = self.stores["chunks"].apply(chunks, generation, removed, docs)
        in_step = (
            chunks is not None and papers is not None and papers.generation == chunks.generation
        )
        if rebuild or not in_step or papers is None:
            new_papers = self.stores["papers"].rebuild(
                generation, self._paper_docs(self._all_paper_ids())
            )
        else:
            touched = sorted({_paper_of(c) for c in (*added.tolist(), *removed.tolist())})
            new_papers = self.stores["papers"].apply(
                papers, generation, as_bytes(touched), self._paper_docs(touched)
            )
        self.last_update = {
            "generation": generation,
            "kind": "rebuild" if rebuild else "segments",
            "added": len(added),
            "removed": len(removed),
            "diff_s": diffed,
            "total_s": time.perf_counter() - started,
        }
        log.info(
            "BM25 fields at generation %d: %s, %d chunks added, %d removed in %.2f s",
            generation,
            self.last_update["kind"],
            len(added),
            len(removed),
            self.last_update["total_s"],
        )
        for path in self.legacy:
            path.unlink(missing_ok=True)
        return {"chunks": new_chunks, "papers": new_papers}

    def _all_chunk_ids(self) -> np.ndarray:
        return np.sort(as_bytes(self.state.chunk_ids()))

    def _all_paper_ids(self) -> list[str]:
        return self.state.paper_ids_between(None, None)

    def _chunk_docs(self, ids: np.ndarray) -> Iterator[LexicalDoc]:
        """The chunks' documents, read from the state in batches (ids as bytes; in their
        order, so a segment is built the same way however the rows come back)."""
        for start in range(0, len(ids), BATCH):
            batch = [i.decode() for i in ids[start : start + BATCH].tolist()]
            rows = {
                chunk.chunk_id: (chunk, day, src)
                for chunk, day, src in self.state.chunk_texts(batch)
            }
            for cid in batch:
                if (row := rows.get(cid)) is not None:
                    yield LexicalDoc(cid, row[0].embed_text, row[1], row[2])

    def _paper_docs(self, paper_ids: Sequence[str]) -> Iterator[LexicalDoc]:
        for start in range(0, len(paper_ids), BATCH):
            for row in self.state.paper_texts(list(paper_ids[start : start + BATCH])):
                yield LexicalDoc(*row)


def _at(opened: dict[str, BM25Index | None], generation: int) -> bool:
    return all(i is not None and i.generation == generation for i in opened.values())


def _paper_of(chunk_id: bytes) -> str:
    return chunk_id.decode().rsplit("#", 1)[0]
