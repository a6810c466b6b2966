"""Corpus: the service the CLI and the Slack bot call for ingest, search and paper lookups.

Built from settings; every dependency (state, vector store, embedder, tokenizer) may be
injected instead, which is how tests swap in local servers.

The answering layer (answers/) uses only the public methods: `search`, `relevance`,
`papers_about`, `papers`, `chunks_of`, `vectors` (every embedding it needs, through the
embedding cache), `embed_query`, `embedding_model`, `count_tokens`, and `cached` / `cache`
for recomputable results. `state`, `embedder`, `codec` and `store` are for ingest, the CLI's
diagnostics and tests.

`search` first calls `refresh`: the vector store is reopened when another process wrote the
index (retrieval/freshness.py). Writes first claim the collection for this state, refusing one
another state owns (retrieval/ownership.py).

Size: the one door into the corpus (ingest, the two BM25 fields, search, lookups, caches); the
work itself is in the modules it composes, each method here a few lines of wiring.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import date
from typing import Any

import numpy as np

from retrieval.chunking import TokenCodec
from retrieval.embeddings import Embedder
from retrieval.errors import NotFoundError, PaperbotError, StateFileError
from retrieval.freshness import Freshness, Version, index_version
from retrieval.ingest import Ingester, ProgressFn, embed_with_cache, reconcile, text_hash
from retrieval.lexical import BM25Index
from retrieval.lexical_sync import LexicalIndexes
from retrieval.lexical_warm import ColumnWarmer
from retrieval.models import Chunk, DateField, Hit, IngestReport, Listing, Paper, RecordError
from retrieval.normalize import parse_arxiv_id, title_hash_id
from retrieval.ownership import (
    Ownership,
    claim,
    inspect,
    refuse_lost_state,
    state_owner,
    warn_if_foreign,
)
from retrieval.search import HybridSearcher, Mode, Relevance, SearchFilters, overlap_by_default
from retrieval.settings import RetrievalSettings
from retrieval.state import StateStore
from retrieval.store import Owner, VectorStore

log = logging.getLogger(__name__)


class Corpus:
    def __init__(
        self,
        settings: RetrievalSettings,
        *,
        state: StateStore | None = None,
        embedder: Embedder | None = None,
        store: VectorStore | None = None,
        codec: TokenCodec | None = None,
    ) -> None:
        self.settings = settings
        self._state = state
        self._embedder = embedder
        self._store = store
        self._codec = codec
        self._lexical: dict[str, BM25Index] = {}  # field ("chunks", "papers") -> index
        self._lexical_indexes: LexicalIndexes | None = None
        self._warmer: ColumnWarmer | None = None  # set by `keep_lexical_warm` (serve)
        self._searcher: HybridSearcher | None = None
        self._lock = threading.RLock()
        self._freshness = Freshness()
        self._view = threading.local()  # the generation a search in this thread runs at
        self._owner: Owner | None = None
        self._foreign_noted = False
        self.relevance = Relevance.from_settings(settings)

    # --- lazily built dependencies (nothing heavy at construction) ---
    @property
    def state(self) -> StateStore:
        with self._lock:
            if self._state is None:
                self._state = StateStore.from_settings(self.settings)
            return self._state

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                from retrieval.embeddings import build_embedder

                self._embedder = build_embedder(self.settings)
            return self._embedder

    def model_loaded(self) -> bool:
        """The query embedder is built and, for a local model, in memory (/readyz). A remote
        embedder (an API) counts as loaded once built."""
        with self._lock:
            embedder = self._embedder
        return embedder is not None and bool(getattr(embedder, "loaded", True))

    @property
    def store(self) -> VectorStore:
        with self._lock:
            if self._store is None:
                from retrieval.store import ChromaEmbeddingFunction

                self._freshness.opening(self.state)  # the store shows at least this version
                self._store = VectorStore.from_settings(
                    self.settings, self.embedder.model_id, ChromaEmbeddingFunction(self.embedder)
                )
            return self._store

    @property
    def owner(self) -> Owner:
        """This data dir's state as a collection owner (its id and where it lives)."""
        with self._lock:
            if self._owner is None:
                self._owner = state_owner(self.state, self.settings.data_dir)
            return self._owner

    @property
    def codec(self) -> TokenCodec:
        with self._lock:
            if self._codec is None:
                from retrieval.tokens import TextCodec, get_encoding

                self._codec = TextCodec(
                    get_encoding(self.settings.tiktoken_encoding, self.settings.tiktoken_dir)
                )
            return self._codec

    def close(self) -> None:
        if self._warmer is not None:
            self._warmer.close()
        if self._searcher is not None:
            self._searcher.close()
        if self._store is not None:
            self._store.close()
        if self._state is not None:
            self._state.close()

    # --- ingest ---
    def ingest(
        self,
        records: Iterable[Paper | RecordError],
        progress: ProgressFn | None = None,
        *,
        feed: str | None = None,
        listed: date | None = None,
        force: bool = False,
    ) -> IngestReport:
        """Ingest records under the data dir's writer lock.

        Every paper seen (new, updated or unchanged) gets a listing: the day `feed` listed it.
        The day is the record's own (`Paper.listed`, e.g. the HF entry date) when its source
        carries one, else `listed`, else none is recorded. `feed=None` is a manual ingest,
        recorded under the feed name "manual".

        An empty state next to a vector index that holds vectors is refused (the state was
        lost, see `_refuse_empty_state`); ``force`` drops that index and starts afresh.
        """
        with self._writing():
            self._refuse_empty_state(force)
            self._claim()  # before any write: another state's collection refuses here
            self._repair_if_needed()
            ingester = Ingester(
                self.state,
                self.store,
                self.embedder,
                self.codec,
                chunk_tokens=self.settings.chunk_tokens,
                chunk_overlap=self.settings.chunk_overlap,
            )
            report = ingester.run(records, progress, feed=feed, listed=listed)
            self.lexical_index()  # rebuild and save now, not on the first search
            self.paper_lexical_index()
            return report

    def delete(self, refs: Sequence[str]) -> list[str]:
        """Delete papers (ids, arXiv ids or titles); returns the ids deleted."""
        ids = [self.paper(ref).paper_id for ref in refs]
        with self._writing():
            self._claim()
            chunk_ids = [c for cs in self.state.chunk_ids_for(ids).values() for c in cs]
            self.state.delete_papers(ids)
            self.store.delete(chunk_ids)
            self.state.mark_index_clean()
            self.lexical_index()
        return ids

    def repair_if_needed(self) -> tuple[int, int]:
        """After a crash the vector store may lag the state: bring it back in step. Returns
        (vectors added, removed); (0, 0) at once when another process is writing (an ingest,
        which repairs first). Refuses on a collection another state owns."""
        if not self._needs_repair():
            return (0, 0)
        with self._writing(wait=False) as locked:
            if not locked:
                log.info("another process is writing the index; it repairs it first")
                return (0, 0)
            return self._repair_if_needed()

    def _needs_repair(self) -> bool:
        return self.state.index_dirty or self.store.count() != self.state.count_chunks()

    def _repair_if_needed(self) -> tuple[int, int]:
        if not self._needs_repair():
            return (0, 0)
        self._refuse_empty_state(force=False)
        self._claim()
        return reconcile(self.state, self.store, self.embedder)

    def _refuse_empty_state(self, force: bool) -> None:
        """An empty state next to a collection with vectors: refused (retrieval/ownership.py)."""
        if not self.state.count_papers():
            refuse_lost_state(self.state, self.store, self.owner, force=force)

    def _claim(self) -> None:
        """Make sure this data dir may write the collection (see retrieval/ownership.py)."""
        claim(self.store, self.owner, self.state.chunk_ids, self.settings.chroma_collection)

    def ownership(self) -> Ownership:
        """Who owns the vector store's collection, as seen from this data dir."""
        return inspect(self.store, self.owner)

    def _writing(self, *, wait: bool = True) -> AbstractContextManager[bool]:
        """Write the index under the writer lock, from a fresh view (retrieval/freshness.py)."""
        if self.state.read_only:
            raise StateFileError(
                f"{self.state.path} is read-only for this user, so nothing can be ingested, "
                "deleted or repaired. Fix: run this as a user who may write "
                f"{self.settings.data_dir}; reading commands (stats, search, ask, papers) work."
            )
        return self._freshness.writing(self.settings.data_dir, self.state, self.store, wait=wait)

    # --- freshness: the next query sees what anyone wrote ---
    def refresh(self, version: Version | None = None) -> bool:
        """Reopen the vector store if the index changed since this process opened it (an
        ingest in another process or on another host sharing this data dir). Called before
        every search; cheap when nothing changed. True when it reopened. ``version``: the
        index version just read (`freshness.index_version`), else read here."""
        if self._store is None:
            return False  # opened on first use, as it is then
        if not self._freshness.refresh(self.state, self._store, version):
            return False
        with self._lock:
            self._searcher = None  # its per-generation caches start afresh
        return True

    # --- search ---
    def lexical_index(self) -> BM25Index:
        """The chunk BM25 index for the current generation of the state (rebuilt when stale)."""
        return self._bm25("chunks")

    def paper_lexical_index(self) -> BM25Index:
        """The whole-paper BM25 field (title + abstract per paper), likewise."""
        return self._bm25("papers")

    def rebuild_lexical_index(self) -> int:
        """Rebuild both BM25 fields from the state (they are derived data); returns how many
        chunks the chunk field holds."""
        with self._lock:
            self._lexical = self._lexical_fields().rebuild(self.state.generation)
            self._warm()
            return len(self._lexical["chunks"])

    def keep_lexical_warm(self) -> ColumnWarmer:
        """From now on, compute the frequent terms' BM25 weights of each new index in the
        background (`retrieval/lexical_warm.py`; PAPERBOT_BM25_WARM_MB per field): for a
        long-running process, which re-weights its indexes after every ingest."""
        with self._lock:
            if self._warmer is None:
                self._warmer = ColumnWarmer(self.settings.bm25_warm_mb * 2**20)
            self._bm25("chunks")  # opens the fields if stale (and warms them), else:
            self._warm()  # (a no-op for fields already being warmed)
            return self._warmer

    def lexical_warmth(self) -> dict[str, Any] | None:
        """The BM25 warm-up's status (`ColumnWarmer.status`), None when this process does
        not warm."""
        warmer = self._warmer
        return warmer.status() if warmer is not None else None

    def _warm(self) -> None:
        if self._warmer is not None and self._lexical:
            self._warmer.warm(self._lexical.items())

    def _lexical_fields(self) -> LexicalIndexes:
        if self._lexical_indexes is None:
            root = self.settings.lexical_path.with_suffix("")  # data_dir/bm25
            legacy = (self.settings.lexical_path, self.settings.paper_lexical_path)
            self._lexical_indexes = LexicalIndexes(root, self.state, legacy=legacy)
        return self._lexical_indexes

    def _bm25(self, field: str) -> BM25Index:
        """A BM25 field at the state's generation: mapped from the data dir's segments, which
        follow the state by what changed (retrieval/lexical_sync.py)."""
        with self._lock:
            index = self._lexical.get(field)
            if index is not None and index.generation == self._generation():
                return index
            # changing the fields: to the state's latest generation, never back to an older
            # one a search read a moment before another thread opened a newer one
            generation = self.state.generation
            if index is not None and index.generation == generation:
                return index
            self._lexical = self._lexical_fields().current(generation)
            self._warm()
            return self._lexical[field]

    def searcher(self, version: Version | None = None) -> HybridSearcher:
        """One searcher per corpus, so its per-generation caches survive between queries;
        first brought up to date with whatever anyone wrote (`refresh`)."""
        self.refresh(version)
        with self._lock:
            if self._searcher is None:
                self._searcher = self._new_searcher()
                if self.settings.uses_chroma_server and not self._foreign_noted:
                    self._foreign_noted = True
                    warn_if_foreign(self.store, self.owner)
            return self._searcher

    def _new_searcher(self) -> HybridSearcher:
        return HybridSearcher(
            self.state,
            self.store,
            self.lexical_index,
            self.embedder.embed_query,
            vectors_of=self._chunk_vectors,
            paper_lexical=self.paper_lexical_index,
            candidates=self.settings.candidates,
            rrf_k=self.settings.rrf_k,
            fusion=self.settings.fusion,
            dense_weight=self.settings.dense_weight,
            paper_weight=self.settings.paper_lexical_weight,
            distinctive_max_df=self.settings.refusal_distinctive_df,
            topic_max_dense=self.settings.refusal_topic_max_dense,
            overlap=overlap_by_default(self.settings.embedding_threads),
            generation=self._generation,
        )

    def _generation(self) -> int:
        """The state's generation: within a search, the one its index version was read at
        (one `meta` read per search, one round trip on PostgreSQL), else read now."""
        seen = getattr(self._view, "generation", None)
        return self.state.generation if seen is None else int(seen)

    def _chunk_vectors(self, chunks: Sequence[Chunk]) -> dict[str, np.ndarray]:
        """Stored vectors of chunks, from the embedding cache only: no model call at query
        time (a chunk without a cached vector is simply left out)."""
        hashes = {c.chunk_id: text_hash(c.embed_text) for c in chunks}
        cached = self.state.cached_vectors(self.embedder.model_id, list(hashes.values()))
        return {cid: cached[h] for cid, h in hashes.items() if h in cached}

    def search(
        self,
        query: str,
        k: int | None = None,
        *,
        mode: Mode = "hybrid",
        filters: SearchFilters | None = None,
    ) -> list[Hit]:
        if len(query) > 2000:
            raise PaperbotError(
                f"The query is {len(query):,} characters; keep it under 2,000 "
                "(a few keywords work best)."
            )
        version = index_version(self.state)  # the whole search runs at this version
        self._view.generation = int(version[0] or 0)
        try:
            return self.searcher(version).search(
                query, k or self.settings.retrieval_k, mode=mode, filters=filters
            )
        finally:
            self._view.generation = None

    def papers_about(
        self, topic: str, papers: Sequence[Paper], relevance: Relevance | None = None
    ) -> list[Paper]:
        """The papers relevant to ``topic`` by ``relevance`` (default: the corpus's rule),
        scored over every chunk of these papers: a search's candidate list would cap what a
        long window can return."""
        relevance = relevance or self.relevance
        chunk_ids = self.state.chunk_ids_for(p.paper_id for p in papers)
        all_ids = [cid for ids in chunk_ids.values() for cid in ids]
        if not all_ids:
            return []
        index = self.lexical_index()
        ceiling = index.query_ceiling(topic)
        lexical = index.score_ids(topic, all_ids)
        vectors = self._chunk_vectors(list(self.state.get_chunks(all_ids).values()))
        query = self.embedder.embed_query(topic)

        def relevant(paper_id: str) -> bool:
            ids = chunk_ids.get(paper_id, [])
            coverage = max((lexical.get(c, 0.0) for c in ids), default=0.0)
            coverage = min(1.0, coverage / ceiling) if ceiling > 0 else 0.0
            dense = max((float(vectors[c] @ query) for c in ids if c in vectors), default=-1.0)
            return relevance.accepts(coverage, dense)

        return [p for p in papers if relevant(p.paper_id)]

    # --- papers ---
    def paper(self, ref: str) -> Paper:
        """Find a paper by id, arXiv id (any version), arXiv/HF URL or exact title."""
        ref = ref.strip()
        if not ref:
            raise NotFoundError("No paper id given.")
        parsed = parse_arxiv_id(ref.rstrip("/").rsplit("/papers/", 1)[-1])
        candidates = [ref, parsed[0] if parsed else None, title_hash_id(ref)]
        for candidate in candidates:
            if candidate and (paper := self.state.get_paper(candidate)):
                return paper
        raise NotFoundError(
            f"No paper {ref!r} in the index. Use an arXiv id (e.g. 2410.17243), a title, "
            "or `paperbot papers list` / `paperbot search` to find one."
        )

    def papers(
        self,
        *,
        since: date | None = None,
        until: date | None = None,
        source: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        by: DateField = "listed",
    ) -> list[Paper]:
        """Papers of a day range, newest day first.

        ``by="listed"`` (the default) dates a paper by the first day a feed listed it, and a
        paper no feed ever listed by its publication date; ``by="published"`` by its
        publication date only.
        """
        return self.state.list_papers(
            since=since, until=until, source=source, limit=limit, offset=offset, by=by
        )

    def latest_day(self, by: DateField = "listed") -> date | None:
        """The most recent day of any paper (as `papers` dates them); None when empty."""
        return self.state.latest_day(by)

    def listings(
        self,
        *,
        paper_ids: Sequence[str] | None = None,
        feed: str | None = None,
        since: date | None = None,
        until: date | None = None,
    ) -> list[Listing]:
        """When which feed listed which paper: filtered by papers, feed and day range."""
        return self.state.listings(paper_ids=paper_ids, feed=feed, since=since, until=until)

    def papers_arrived_since(self, since: float, *, day_from: date | None = None) -> list[Paper]:
        """Papers that arrived after a UNIX time, oldest first: first listed by a feed then
        (or, never listed, first ingested then); with ``day_from``, only those of that day or
        later (listing, else publication day). What subscriptions notify about."""
        return self.state.papers_arrived_since(since, day_from=day_from)

    def papers_by_id(self, paper_ids: Sequence[str]) -> dict[str, Paper]:
        return self.state.get_papers(paper_ids)

    def papers_ingested_since(self, since: float) -> list[Paper]:
        """Papers first ingested after a UNIX time, oldest first (what is new since then)."""
        return self.state.papers_ingested_since(since)

    def count_papers(self) -> int:
        return self.state.count_papers()

    def chunks_of(self, paper_ids: Iterable[str]) -> dict[str, list[Chunk]]:
        """Each paper's chunks in reading order (papers without chunks are left out)."""
        chunk_ids = self.state.chunk_ids_for(paper_ids)
        found = self.state.get_chunks([c for ids in chunk_ids.values() for c in ids])
        return {
            paper_id: [found[c] for c in ids if c in found] for paper_id, ids in chunk_ids.items()
        }

    # --- text and vectors (for the answering layer) ---
    def count_tokens(self, text: str) -> int:
        return len(self.codec.encode(text))

    def embed_query(self, text: str) -> np.ndarray:
        return self.embedder.embed_query(text)

    def vectors(self, texts: Sequence[str], *, cache: bool = True) -> np.ndarray:
        """Embeddings of ``texts``, one L2-normalised row per text, in order.

        With ``cache`` (the default) through the embedding cache: rows cached for this model
        are read from the state, the missing texts are embedded in one batch and stored, so
        chunk texts and abstract sentences are embedded once. ``cache=False`` embeds every
        text now and neither reads nor writes the cache: for one-off texts (an answer's
        sentences), which would only grow it.
        """
        if not texts or not cache:
            return self.embedder.embed(list(texts))  # no rows: no model call, no probe
        vectors, fresh = embed_with_cache(self.state, self.embedder, texts)
        if fresh:
            self.state.put_vectors(fresh, self.embedder.model_id)
        return np.stack([vectors[text_hash(t)] for t in texts])

    @property
    def embedding_model(self) -> str:
        return self.embedder.model_id

    # --- recomputable results (TL;DRs, topic names) ---
    def cached(self, namespace: str, key: str) -> Any | None:
        """A value stored with `cache`, or None. Keys should name everything the value
        depends on (content hash, prompt version, model), so a stale value is never found."""
        return self.state.cache_get(namespace, key)

    def cache(self, namespace: str, key: str, value: Any) -> None:
        """Store a JSON-serialisable value that can always be recomputed (replaces any)."""
        self.state.cache_put(namespace, key, value)

    def store_status(self) -> tuple[str, str, int]:
        """Where the vector store is, its collection and how many vectors it holds (opens it)."""
        self.refresh()
        return self.store.where, self.store.name, self.store.count()

    def hnsw_status(self) -> str:
        """The vector index's HNSW parameters, as built and as queried (one line)."""
        return self.store.hnsw_status().describe()

    def stats(self) -> dict[str, Any]:
        self.refresh()
        stats = self.state.stats()
        stats["vectors"] = self.store.count()
        stats["vector_store"] = self.store.where
        stats["collection"] = self.store.name
        stats["hnsw"] = self.hnsw_status()
        stats["embedding_model"] = self.embedder.model_id
        stats["in_step"] = stats["vectors"] == stats["chunks"] and not self.state.index_dirty
        owned = self.ownership()
        stats["collection_owner"] = owned.owner_label
        stats["collection_writable"] = not owned.foreign
        return stats
