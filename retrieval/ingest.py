"""The ingest pipeline: records -> dedupe -> diff against the state -> chunk -> embed -> store.

Idempotent and crash-safe. The state store (SQLite) is the source of truth and is written
first, in one transaction per batch that also marks the vector index dirty; the vector store is
then brought in step, on a thread of its own while the next batches are prepared
(retrieval/ingest_writes.py), and the index is marked clean once every write is done. If the
process dies in between, `reconcile` repairs the vector store from the state (using the
embedding cache, so nothing is embedded twice).

Records stream through in windows of ``window_papers``: memory is bounded by a window, not by
the input (an arXiv snapshot is millions of records). A `Resumable` stream (the snapshot
reader) is resumed from the position stored in the state's meta table, and its new position is
stored after every window the state holds (the vectors may lag: the next run repairs them
from the state first), so a run killed at any point continues from its last whole window; the
records after it are read again and, already stored, cost one comparison each.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import islice
from typing import Protocol, runtime_checkable

import numpy as np

from retrieval.chunking import TokenCodec, chunk_paper
from retrieval.embeddings import Embedder
from retrieval.ingest_writes import VectorWrites
from retrieval.models import MANUAL_FEED, Chunk, IngestReport, Paper, RecordError
from retrieval.normalize import title_hash_id
from retrieval.state import Change, StateStore, StoredVersion
from retrieval.store import ChunkMeta, VectorStore

log = logging.getLogger(__name__)

# (phase, done, total): "embedding", 40, 120
ProgressFn = Callable[[str, int, int], None]
BATCH_PAPERS = 64
WINDOW_PAPERS = 512  # records planned together; a resumable stream's cursor moves per window
_MERGEABLE = (
    "authors",
    "published",
    "updated",
    "url",
    "pdf_url",
    "upvotes",
    "comments",
    "categories",
)


@dataclass(frozen=True, slots=True)
class _Planned:
    paper: Paper
    outcome: str  # "new" | "updated" | "metadata_updated"
    replaces: tuple[str, ...] = ()


@runtime_checkable
class Resumable(Protocol):
    """A record stream that can continue where an earlier run stopped.

    Before the first record the ingester calls ``resume`` with what it stored under
    ``cursor_key`` (None the first time); after every committed window it stores
    ``position()`` there. The position must cover exactly the records handed out so far.
    """

    @property
    def cursor_key(self) -> str: ...

    def resume(self, saved: str | None) -> None: ...

    def position(self) -> str: ...


@runtime_checkable
class PreparedChunks(Protocol):
    """A record stream that may already hold a paper's chunks (parse workers chunk what they
    read): ``prepared_chunks`` returns them only when they are what `chunk_paper` would make
    of this paper with this codec and these sizes, else None (the ingester chunks it)."""

    def prepared_chunks(
        self, paper: Paper, codec: object, chunk_tokens: int, chunk_overlap: int
    ) -> list[Chunk] | None: ...


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Ingester:
    def __init__(
        self,
        state: StateStore,
        store: VectorStore,
        embedder: Embedder,
        codec: TokenCodec,
        *,
        chunk_tokens: int,
        chunk_overlap: int,
        batch_papers: int = BATCH_PAPERS,
        window_papers: int = WINDOW_PAPERS,
        background_writes: bool = True,
    ) -> None:
        self.state = state
        self.store = store
        self.embedder = embedder
        self.codec = codec
        self.chunk_tokens = chunk_tokens
        self.chunk_overlap = chunk_overlap
        self.batch_papers = batch_papers
        self.window_papers = window_papers
        self.background_writes = background_writes
        self._writes = VectorWrites(store, background=background_writes)
        self._prepared: PreparedChunks | None = None

    def run(
        self,
        records: Iterable[Paper | RecordError],
        progress: ProgressFn | None = None,
        *,
        feed: str | None = None,
        listed: date | None = None,
    ) -> IngestReport:
        """Ingest the records; every paper seen gets a listing under ``feed`` (default
        "manual") on the record's own listing day, else ``listed``, else none.

        Read window by window; a `Resumable` stream starts at its stored position and its
        position is stored after each window (see the module's docstring)."""
        report = IngestReport()
        resumable = records if isinstance(records, Resumable) else None
        self._prepared = records if isinstance(records, PreparedChunks) else None
        if resumable is not None:
            resumable.resume(self.state.get_meta(resumable.cursor_key))
        stream = iter(records)
        done = 0
        self._writes = VectorWrites(self.store, background=self.background_writes)
        try:
            while window := list(islice(stream, self.window_papers)):
                done = self._run_window(window, report, progress, done, feed=feed, listed=listed)
                if resumable is not None:  # the state holds the window; vectors may lag
                    self.state.set_meta(resumable.cursor_key, resumable.position())
                if progress:  # a window of unchanged papers indexes nothing, yet it was read
                    progress("window", done, done)
            if resumable is not None:  # lines after the last paper (filtered out) are read too
                self.state.set_meta(resumable.cursor_key, resumable.position())
            if self._writes.drain():
                self.state.mark_index_clean()
        except BaseException:
            self._writes.abandon()  # the state is ahead: the next write repairs the vectors
            raise
        return report

    def _run_window(
        self,
        records: Sequence[Paper | RecordError],
        report: IngestReport,
        progress: ProgressFn | None,
        done: int,
        *,
        feed: str | None,
        listed: date | None,
    ) -> int:
        """Ingest one window of records; returns the papers indexed so far (``done`` + this
        window's changed papers)."""
        days: dict[str, set[date]] = {}
        papers = _dedupe(_note_days(records, days, listed), report)
        redirects: dict[str, str] = {}  # a title-only record's id -> the stored arXiv twin
        # Similar lengths in one batch: the embedder pads each call to its longest text, so
        # length-sorted batches feed the model ~12% fewer tokens than arrival order.
        plan = sorted(self._plan(papers, report, redirects), key=lambda i: len(i.paper.abstract))
        listings: dict[str, list[tuple[str, str, date]]] = {}
        for paper_id, seen_days in days.items():
            target = redirects.get(paper_id, paper_id)
            rows = listings.setdefault(target, [])
            rows.extend((target, feed or MANUAL_FEED, day) for day in sorted(seen_days))
        total = done + len(plan)
        for start in range(0, len(plan), self.batch_papers):
            batch = plan[start : start + self.batch_papers]
            batch_listings = [
                row for item in batch for row in listings.pop(item.paper.paper_id, [])
            ]
            self._apply(batch, report, batch_listings)
            done += len(batch)
            if progress:
                progress("indexing", done, total)
        # Papers seen but not changed (unchanged, an older version, a title-only twin): only
        # their listings are new, which changes no chunk (the generation stays).
        report.listings_added += self.state.add_listings(
            row for rows in listings.values() for row in rows
        )
        for item in plan:
            getattr(report, item.outcome).append(item.paper.paper_id)
        return done

    # --- planning: what changes, without touching any store ---
    def _plan(
        self, papers: list[Paper], report: IngestReport, redirects: dict[str, str]
    ) -> list[_Planned]:
        stored = self.state.stored_versions(p.paper_id for p in papers)
        title_twins = self.state.stored_versions(
            title_hash_id(p.title) for p in papers if p.arxiv_id
        )
        plan: list[_Planned] = []
        for paper in papers:
            item = self._plan_one(paper, stored.get(paper.paper_id), title_twins, report, redirects)
            if item:
                plan.append(item)
        return plan

    def _plan_one(
        self,
        paper: Paper,
        old: StoredVersion | None,
        title_twins: dict[str, StoredVersion],
        report: IngestReport,
        redirects: dict[str, str],
    ) -> _Planned | None:
        if old is None:
            if not paper.arxiv_id and (twin := self._arxiv_twin(paper)):
                redirects[paper.paper_id] = twin  # its listing is the twin's
                report.skipped.append(
                    RecordError(paper.source, paper.title, f"already stored as arXiv {twin}")
                )
                return None
            twin_id = title_hash_id(paper.title)
            replaces = (twin_id,) if paper.arxiv_id and twin_id in title_twins else ()
            return _Planned(paper, "new", replaces)
        if paper.version and old.version and paper.version < old.version:
            report.skipped.append(
                RecordError(
                    paper.source,
                    paper.paper_id,
                    f"v{paper.version} is older than the stored v{old.version}",
                )
            )
            return None
        # The stored first listing day is the listings' business, not the record's.
        merged = _merge(old.paper, paper).model_copy(update={"listed": old.paper.listed})
        if merged.content_hash != old.content_hash:
            return _Planned(merged, "updated")
        if merged != old.paper:
            return _Planned(merged, "metadata_updated")
        report.unchanged.append(paper.paper_id)
        return None

    def _arxiv_twin(self, paper: Paper) -> str | None:
        """A title-only record of a paper we already hold under its arXiv id."""
        ids = [i for i in self.state.paper_ids_by_title(paper.title) if not i.startswith("t:")]
        return ids[0] if ids else None

    # --- applying one batch: state first, then the vector store ---
    def _apply(
        self,
        batch: Sequence[_Planned],
        report: IngestReport,
        listings: Sequence[tuple[str, str, date]] = (),
    ) -> None:
        chunks_by_paper = {item.paper.paper_id: self._chunks_for(item) for item in batch}
        all_chunks = [c for chunks in chunks_by_paper.values() for c in chunks]
        vectors, new_vectors = self._vectors(all_chunks)
        report.chunks_embedded += len(new_vectors)
        old_ids = self.state.chunk_ids_for(chunks_by_paper)
        replaced_ids = self.state.chunk_ids_for(r for item in batch for r in item.replaces)
        changes = [
            Change(item.paper, chunks_by_paper[item.paper.paper_id], item.replaces)
            for item in batch
        ]
        report.listings_added += self.state.apply(
            changes, new_vectors, self.embedder.model_id, listings
        )
        keep = {c.chunk_id for c in all_chunks}
        stale = [cid for ids in (*old_ids.values(), *replaced_ids.values()) for cid in ids]
        stale = [cid for cid in stale if cid not in keep]
        report.chunks_deleted += len(stale)
        papers = {item.paper.paper_id: item.paper for item in batch}
        self._sync_store(all_chunks, vectors, papers, stale)

    def _chunks_for(self, item: _Planned) -> list[Chunk]:
        if self._prepared is not None:
            ready = self._prepared.prepared_chunks(
                item.paper, self.codec, self.chunk_tokens, self.chunk_overlap
            )
            if ready is not None:
                return ready
        return chunk_paper(item.paper, self.codec, self.chunk_tokens, self.chunk_overlap)

    def _vectors(
        self, chunks: Sequence[Chunk]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """All vectors by text hash, and those that had to be embedded now (for the cache)."""
        return embed_with_cache(self.state, self.embedder, [c.embed_text for c in chunks])

    def _sync_store(
        self,
        chunks: Sequence[Chunk],
        vectors: dict[str, np.ndarray],
        papers: dict[str, Paper],
        stale: Sequence[str],
    ) -> None:
        if chunks:
            matrix = np.stack([vectors[text_hash(c.embed_text)] for c in chunks])
            metas = [_meta(papers[c.paper_id]) for c in chunks]
            self._writes.upsert([c.chunk_id for c in chunks], matrix, metas)
        if stale:
            self._writes.delete(stale)


def embed_with_cache(
    state: StateStore, embedder: Embedder, texts: Sequence[str]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Vectors for texts keyed by text hash; only texts missing from the cache are embedded."""
    hashes = [text_hash(t) for t in texts]
    vectors = state.cached_vectors(embedder.model_id, list(dict.fromkeys(hashes)))
    todo = {h: t for h, t in zip(hashes, texts, strict=True) if h not in vectors}
    fresh: dict[str, np.ndarray] = {}
    if todo:
        matrix = embedder.embed(list(todo.values()))
        fresh = dict(zip(todo, matrix, strict=True))
        vectors.update(fresh)
    return vectors, fresh


def reconcile(state: StateStore, store: VectorStore, embedder: Embedder) -> tuple[int, int]:
    """Make the vector store hold the state's chunks. Returns (added, removed).

    Repair never deletes vectors it did not write: a vector whose id the state does not know
    is removed only when it carries this state's stamp (`store.writer`) or none at all (it
    predates stamps, in a collection this state owns: see retrieval/ownership.py). A vector
    another state wrote is left where it is, and logged.
    """
    wanted = state.chunk_ids()
    present = store.ids()
    extra = sorted(present - wanted)
    missing = sorted(wanted - present)
    if extra:
        mine = store.writer.state_id if store.writer else None
        stamps = store.stamps(extra)
        foreign = [i for i in extra if stamps.get(i) not in (None, mine)]
        if foreign:
            log.warning(
                "vector index repair left %d vectors written by other states alone "
                "(e.g. %s, stamped %s)",
                len(foreign),
                foreign[0],
                stamps[foreign[0]],
            )
        extra = [i for i in extra if stamps.get(i) in (None, mine)]
        store.delete(extra)
    if missing:
        chunks = list(state.get_chunks(missing).values())
        vectors, fresh = embed_with_cache(state, embedder, [c.embed_text for c in chunks])
        if fresh:
            state.put_vectors(fresh, embedder.model_id)
        papers = state.get_papers(list({c.paper_id for c in chunks}))
        matrix = np.stack([vectors[text_hash(c.embed_text)] for c in chunks])
        store.upsert(
            [c.chunk_id for c in chunks], matrix, [_meta(papers[c.paper_id]) for c in chunks]
        )
    state.mark_index_clean()
    if extra or missing:
        log.warning("vector index repaired: %d chunks added, %d removed", len(missing), len(extra))
    return len(missing), len(extra)


def _meta(paper: Paper) -> ChunkMeta:
    return ChunkMeta(paper.paper_id, paper.published, paper.source)


def _merge(old: Paper, new: Paper) -> Paper:
    """The new record wins, but fields it lacks keep what we knew (a feed without categories
    must not erase them). Text from a versionless record never overrides a versioned one."""
    update = {f: getattr(old, f) for f in _MERGEABLE if getattr(new, f) in (None, ())}
    if old.version and not new.version:
        update.update(title=old.title, abstract=old.abstract, version=old.version)
    return new.model_copy(update=update)


def _note_days(
    records: Iterable[Paper | RecordError], days: dict[str, set[date]], default: date | None
) -> Iterator[Paper | RecordError]:
    """Pass the records through, noting each paper's listing days (duplicates included)."""
    for record in records:
        if isinstance(record, Paper) and (day := record.listed or default) is not None:
            days.setdefault(record.paper_id, set()).add(day)
        yield record


def _dedupe(records: Iterable[Paper | RecordError], report: IngestReport) -> list[Paper]:
    """One record per paper id in a batch: the highest version wins, a repeat is reported."""
    chosen: dict[str, Paper] = {}
    for record in records:
        if isinstance(record, RecordError):
            report.failed.append(record)
            continue
        seen = chosen.get(record.paper_id)
        if seen is None:
            chosen[record.paper_id] = record
            continue
        if (record.version or 0) > (seen.version or 0):
            chosen[record.paper_id] = record
            seen, record = record, seen
        report.skipped.append(
            RecordError(
                record.source,
                record.paper_id,
                "duplicate in this batch; the first is kept"
                if record.version == seen.version
                else f"duplicate in this batch; v{seen.version} is kept",
            )
        )
    return list(chosen.values())
