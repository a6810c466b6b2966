"""Hybrid retrieval: dense (Chroma), chunk BM25 and whole-paper BM25 fused, grouped by paper.

Candidates come from three retrievers: the nearest chunks, the best BM25 chunks, and the
chunks of the best whole-paper BM25 matches (title + abstract as one document, so a question's
terms spread over two chunks still add up). Every candidate is scored on every scale before
fusion. Each returned hit also says which distinctive query terms none of the returned papers
contains (`SearchHit.unfound`), which `Relevance` refuses.

Date filters pick papers by their listing day by default (`SearchFilters.by`). That day lives
in the state only (a listing changes no chunk, so neither index is rewritten for it): the
searcher asks the state which chunks are in the window, masks BM25 to them and scores them
exactly from the embedding cache (or, for a very large window, filters Chroma's nearest
neighbours). Filters by publication date are applied inside the indexes.

Size: one query's whole path (candidates, completion, fusion, grouping) with its pure fusion
functions and the one relevance rule that reads its result; each part is short and they change
together.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Literal

import numpy as np

from retrieval.absent_topics import absent_topics, compounds
from retrieval.lexical import BM25Index, LexicalScores, distinctive_terms, name_terms, tokenize
from retrieval.models import Chunk, DateField, Hit
from retrieval.settings import RetrievalSettings
from retrieval.state import StateStore
from retrieval.store import VectorStore

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "dense", "lexical"]
Fusion = Literal["convex", "minmax", "rrf"]
MODES: tuple[Mode, ...] = ("lexical", "dense", "hybrid")
DATE_FIELDS: tuple[DateField, ...] = ("listed", "published")
# A listing-day window of at most this many chunks is scored exactly from the embedding
# cache; a larger one filters an over-fetched Chroma result.
EXACT_DENSE_LIMIT = 10_000
# threads that run searches' dense sides (embedding + nearest neighbours) beside their BM25
# (at most one per core beyond the first, so that a burst of searches does not add a second
# busy thread per search on a small machine: the others run their dense side in turn)
DENSE_WORKERS = max(1, min(4, (os.cpu_count() or 1) - 1))
# Overlapping the two sides pays when a core is left for BM25 while the query is embedded. At
# 10⁶ chunks on 2 cores (docs/benchmarks.md §6): an embedding on one thread (as `serve` runs it
# with 2 cores and 4 answer workers) overlapped with BM25, hybrid p50 46 / p95 56 ms, against
# 53 / 68 ms for an embedding on both cores and the sides one after the other, and 76 / 72.5 ms
# p95 for both cores overlapped against not. 4+ cores: not measured.
OVERLAP_MIN_CPUS = 4


def overlap_by_default(embedding_threads: int, cpus: int | None = None) -> bool:
    """Whether a search overlaps its dense side with BM25 unless told: with 4+ cores, or when
    the embedding may use fewer threads than there are cores (``embedding_threads`` 0: ONNX's
    default, every core)."""
    cpus = cpus or os.cpu_count() or 1
    return cpus >= OVERLAP_MIN_CPUS or 0 < embedding_threads < cpus


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """Which papers a search may return: a day range, sources.

    ``by="listed"`` (the default) dates a paper by the first day a feed listed it (a paper
    never listed: by its publication date), ``by="published"`` by its publication date.
    """

    since: date | None = None
    until: date | None = None
    sources: tuple[str, ...] = ()
    by: DateField = "listed"

    def __post_init__(self) -> None:
        if self.since and self.until and self.since > self.until:
            raise ValueError(f"--since {self.since} is after --until {self.until}")
        if self.by not in DATE_FIELDS:
            raise ValueError(f"by must be one of {', '.join(DATE_FIELDS)}, not {self.by!r}")

    @property
    def by_listing(self) -> bool:
        """A day range on listing days: resolved through the state, not the indexes."""
        return self.by == "listed" and bool(self.since or self.until)


@dataclass(frozen=True, slots=True)
class _Candidate:
    chunk_id: str
    fused: float
    dense: float | None
    lexical: float | None


@dataclass(frozen=True, slots=True)
class SearchHit(Hit):
    """A hit with what the search learned about the whole query.

    ``unfound``: the query's distinctive terms (`lexical.distinctive_terms`) that none of the
    returned papers contains, the same for every hit of one search. A question about a
    benchmark or method no retrieved paper mentions is not answered from merely related
    papers (`Relevance`).
    """

    unfound: tuple[str, ...] = ()
    # the query's distinctive terms this hit's paper contains: the question names this paper
    # (or its method), e.g. "Explain the idea behind GVGEN."
    named: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _PaperField:
    """The whole-paper BM25 field for one query: coverage per paper id, and the index."""

    index: BM25Index
    scores: LexicalScores
    ceiling: float

    def coverage(self, paper_ids: Sequence[str]) -> dict[str, float]:
        if self.ceiling <= 0:
            return dict.fromkeys(paper_ids, 0.0)
        raw = self.scores.of(paper_ids)
        return {pid: min(1.0, score / self.ceiling) for pid, score in raw.items()}


def convex_fuse(
    dense: dict[str, float],
    lexical: dict[str, float],
    ceiling: float,
    dense_weight: float,
    paper: dict[str, float] | None = None,
    paper_weight: float = 0.0,
) -> dict[str, float]:
    """w * cosine + (1 - w) * lexical coverage, both on absolute [0, 1] scales.

    Coverage is the BM25 score over the query's idf ceiling (see BM25Index.query_ceiling), so a
    chunk that contains every rare term of the query scores near 1 whatever the corpus size;
    unlike min-max or rank fusion, a strong result keeps its margin over weak ones. With
    ``paper`` (each chunk's paper's whole-paper coverage), the lexical part is
    (1 - p) * chunk coverage + p * paper coverage, p = ``paper_weight``.
    """
    fused: dict[str, float] = {}
    for cid in dense.keys() | lexical.keys():
        cosine = max(0.0, dense.get(cid, 0.0))
        coverage = min(1.0, lexical.get(cid, 0.0) / ceiling) if ceiling > 0 else 0.0
        if paper is not None:
            coverage = (1.0 - paper_weight) * coverage + paper_weight * paper.get(cid, 0.0)
        fused[cid] = dense_weight * cosine + (1.0 - dense_weight) * coverage
    return fused


def score_fuse(
    runs: Sequence[Sequence[tuple[str, float]]], weights: Sequence[float]
) -> dict[str, float]:
    """Relative score fusion: min-max normalise each run's scores, then a weighted sum.

    Unlike rank fusion it keeps how far ahead a result is: a BM25 hit that scores 2.5x the
    runner-up on rare query terms is not flattened to "rank 1, just like any rank 1".
    """
    fused: dict[str, float] = {}
    for run, weight in zip(runs, weights, strict=True):
        if not run:
            continue
        scores = [score for _, score in run]
        low, high = min(scores), max(scores)
        span = high - low
        for item, score in run:
            norm = (score - low) / span if span > 0 else 1.0
            fused[item] = fused.get(item, 0.0) + weight * norm
    return fused


def rrf_fuse(
    rankings: Sequence[Sequence[str]], rrf_k: int, weights: Sequence[float] | None = None
) -> dict[str, float]:
    """Reciprocal rank fusion: score(id) = sum over rankings of w / (rrf_k + rank)."""
    fused: dict[str, float] = {}
    for i, ranking in enumerate(rankings):
        weight = weights[i] if weights else 1.0
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (rrf_k + rank)
    return fused


class HybridSearcher:
    """Ask the retrievers for candidates (dense chunks, BM25 chunks, BM25 whole papers), score
    every candidate chunk on every scale, fuse, keep each paper's best chunk."""

    def __init__(
        self,
        state: StateStore,
        store: VectorStore,
        lexical: Callable[[], BM25Index],
        embed_query: Callable[[str], np.ndarray],
        *,
        vectors_of: Callable[[Sequence[Chunk]], dict[str, np.ndarray]] | None = None,
        paper_lexical: Callable[[], BM25Index] | None = None,
        candidates: int = 50,
        rrf_k: int = 60,
        fusion: Fusion = "convex",
        dense_weight: float = 0.5,
        paper_weight: float = 0.5,
        distinctive_max_df: float = 0.0,
        topic_max_dense: float = 0.0,
        overlap: bool | None = None,
        generation: Callable[[], int] | None = None,
    ) -> None:
        self._state = state
        # the state's generation (a corpus gives the one its search runs at: no extra read)
        self._generation = generation or (lambda: state.generation)
        self._store = store
        self._lexical = lexical
        self._paper_lexical = paper_lexical
        self._embed_query = embed_query
        self._vectors_of = vectors_of
        self.candidates = candidates
        self.rrf_k = rrf_k
        self.fusion = fusion
        self.dense_weight = dense_weight
        self.paper_weight = paper_weight
        self.distinctive_max_df = distinctive_max_df
        self.topic_max_dense = topic_max_dense
        self._count: tuple[int, int] | None = None  # (state generation, chunk count)
        # None: overlap the dense side with BM25 when the machine has cores to spare
        self.overlap = overlap_by_default(0) if overlap is None else overlap
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._busy = 0  # dense sides submitted and not yet done

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        mode: Mode = "hybrid",
        filters: SearchFilters | None = None,
    ) -> list[Hit]:
        query = query.strip()
        if not query:
            return []
        flt = filters or SearchFilters()
        window = self._window(flt)
        allowed = window[1] if window is not None else None
        if allowed is not None and not allowed:
            return []
        # hybrid with `overlap`: the query embedding and the nearest neighbours (ONNX and
        # Chroma let go of the GIL) run in a worker thread while this one scores BM25, so a
        # query costs the longer of the two sides rather than their sum
        total = self._vector_count() if mode != "lexical" else 0  # read in this thread
        dense_side = self._submit_dense(query, flt, allowed, total) if mode == "hybrid" else None
        query_vec: np.ndarray | None = None
        dense: list[tuple[str, float]] = []
        if mode == "dense" or (mode == "hybrid" and dense_side is None):
            query_vec, dense = self._dense_side(query, flt, allowed, total)
        try:
            index = self._lexical() if mode != "dense" else None
            scored = None
            if index is not None and allowed is not None:
                scored = index.query(query, only=allowed)
            elif index is not None:
                srcs = flt.sources or None
                scored = index.query(query, since=flt.since, until=flt.until, sources=srcs)
            lexical = scored.top(self.candidates) if scored is not None else []
            ceiling = index.query_ceiling(query) if index is not None else 0.0
            papers = self._paper_field(query, flt, window) if index is not None else None
            if papers is not None and scored is not None and index is not None:
                lexical += self._paper_candidates(papers, lexical, scored, index)
            # BM25's candidates' rows, stored vectors and paper coverage, beside the dense side
            # (each row read once: at 10⁶ chunks one costs ~50 µs of random reads)
            chunks = self._state.get_chunks([cid for cid, _ in lexical])
            vectors = (
                self._vectors_of(list(chunks.values()))
                if mode == "hybrid" and chunks and self._vectors_of is not None
                else {}
            )
            paper_cov = _coverage(papers, chunks, {})
        except BaseException:
            if dense_side is not None and not dense_side.cancel():
                with contextlib.suppress(Exception):  # this side's error is the one to raise
                    dense_side.result()
            raise
        if dense_side is not None:
            query_vec, dense = dense_side.result()
        chunks |= self._state.get_chunks([cid for cid, _ in dense if cid not in chunks])
        if scored is not None and query_vec is not None:
            dense, lexical = self._complete(query_vec, dense, lexical, scored, vectors)
        paper_cov = _coverage(papers, chunks, paper_cov)
        candidates = self._fuse(dense, lexical, ceiling, chunks, paper_cov)
        hits = self._group_by_paper(candidates, chunks, k)
        if lexical:
            hits = [_with_coverage(h, ceiling, paper_cov.get(h.paper.paper_id)) for h in hits]
        if papers is not None:
            hits = self._mark_unfound(query, hits, papers.index)
        return hits

    def _dense_side(
        self, query: str, flt: SearchFilters, allowed: set[str] | None, total: int
    ) -> tuple[np.ndarray, list[tuple[str, float]]]:
        vector = self._embed_query(query)
        return vector, self._dense(vector, flt, total, allowed)

    def _submit_dense(
        self, query: str, flt: SearchFilters, allowed: set[str] | None, total: int
    ) -> Future[tuple[np.ndarray, list[tuple[str, float]]]] | None:
        """The dense side started in a worker thread, or None (run it in the caller) when
        overlapping is off or every worker is busy: a queued dense side would wait longer
        than it takes."""
        if not self.overlap:
            return None
        with self._pool_lock:
            if self._busy >= DENSE_WORKERS:
                return None
            if self._pool is None:
                self._pool = ThreadPoolExecutor(DENSE_WORKERS, thread_name_prefix="paperbot-dense")
            self._busy += 1
            future = self._pool.submit(self._dense_side, query, flt, allowed, total)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future[Any]) -> None:
        with self._pool_lock:
            self._busy -= 1

    def close(self) -> None:
        """Stop the dense side's threads (idle ones; a running search finishes first)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _window(self, flt: SearchFilters) -> tuple[set[str], set[str]] | None:
        """The paper ids and chunk ids a listing-day filter allows, read from the state now (so
        a listing recorded a moment ago counts); None when no such filter is set."""
        if not flt.by_listing:
            return None
        paper_ids = self._state.paper_ids_between(flt.since, flt.until, flt.sources, "listed")
        chunk_ids = self._state.chunk_ids_for(paper_ids)
        return set(paper_ids), {cid for ids in chunk_ids.values() for cid in ids}

    def _paper_field(
        self, query: str, flt: SearchFilters, window: tuple[set[str], set[str]] | None
    ) -> _PaperField | None:
        if self._paper_lexical is None:
            return None
        index = self._paper_lexical()
        if window is not None:
            scores = index.query(query, only=window[0])
        else:
            srcs = flt.sources or None
            scores = index.query(query, since=flt.since, until=flt.until, sources=srcs)
        return _PaperField(index, scores, index.query_ceiling(query))

    def _paper_candidates(
        self,
        papers: _PaperField,
        lexical: list[tuple[str, float]],
        scored: LexicalScores,
        index: BM25Index,
    ) -> list[tuple[str, float]]:
        """The chunks of the best whole-paper BM25 matches that BM25 over chunks did not bring,
        with their chunk-level BM25 scores: a paper whose terms are spread over its chunks
        still becomes a candidate (those the dense side also brings get the same score)."""
        top = [pid for pid, _ in papers.scores.top(self.candidates)]
        if not top:
            return []
        seen = {cid for cid, _ in lexical}
        new = [cid for cid in chunk_ids_of(index, top) if cid not in seen]
        return list(scored.of(new).items()) if new else []

    def _dense(
        self, vector: np.ndarray, flt: SearchFilters, total: int, allowed: set[str] | None = None
    ) -> list[tuple[str, float]]:
        """The nearest chunks' (id, similarity); ``total``: the chunks in the index."""
        total = max(total, 1)
        if allowed is None:
            n = min(self.candidates, total)
            return self._store.query(
                vector, n, since=flt.since, until=flt.until, sources=flt.sources or None
            )
        if self._vectors_of is not None and len(allowed) <= EXACT_DENSE_LIMIT:
            vectors = self._vectors_of(list(self._state.get_chunks(sorted(allowed)).values()))
            exact = [(cid, float(np.dot(v, vector))) for cid, v in vectors.items()]
            exact.sort(key=lambda kv: (-kv[1], kv[0]))
            return exact[: self.candidates]
        # A large window: over-fetch nearest neighbours in proportion to what it leaves out.
        share = len(allowed) / total
        n = min(total, max(self.candidates, int(2 * self.candidates / max(share, 1e-6))))
        near = self._store.query(vector, n, sources=flt.sources or None)
        return [(cid, score) for cid, score in near if cid in allowed][: self.candidates]

    def _vector_count(self) -> int:
        """Chunks in the index, re-read from the state only when its generation changes
        (asking Chroma costs milliseconds on every query at 100k chunks)."""
        generation = self._generation()
        if self._count is None or self._count[0] != generation:
            self._count = (generation, self._state.count_chunks())
        return self._count[1]

    def _complete(
        self,
        query_vec: np.ndarray,
        dense: list[tuple[str, float]],
        lexical: list[tuple[str, float]],
        scored: LexicalScores,
        vectors: dict[str, np.ndarray],
    ) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        """Score each retriever's candidates on the other retriever's scale too.

        A chunk that BM25 ranks first but that misses the dense top-N still has a cosine
        similarity; without it fusion would treat it as 0 and rank it below weak dense hits.
        ``vectors``: the stored vectors of BM25's candidates.
        """
        dense_ids = {cid for cid, _ in dense}
        lexical_ids = {cid for cid, _ in lexical}
        only_lexical = [cid for cid, _ in lexical if cid not in dense_ids]
        only_dense = [cid for cid, _ in dense if cid not in lexical_ids]
        if only_lexical and vectors:
            cosines = [
                (c, float(np.dot(vectors[c], query_vec))) for c in only_lexical if c in vectors
            ]
            dense = dense + cosines
        if only_dense:
            lexical = lexical + list(scored.of(only_dense).items())
        return dense, lexical

    def _fuse(
        self,
        dense: list[tuple[str, float]],
        lexical: list[tuple[str, float]],
        ceiling: float,
        chunks: dict[str, Chunk],
        paper_cov: dict[str, float],
    ) -> list[_Candidate]:
        dense_scores = dict(dense)
        lexical_scores = dict(lexical)
        # each candidate chunk with its paper's whole-paper coverage
        paper = {
            cid: paper_cov.get(chunks[cid].paper_id, 0.0)
            for cid in dense_scores.keys() | lexical_scores.keys()
            if cid in chunks
        }
        paper_run = sorted(paper.items(), key=lambda kv: (-kv[1], kv[0])) if paper_cov else []
        if self.fusion == "rrf":
            # ties by id: the same ranks whichever order the candidates were gathered in
            runs = [
                sorted(run, key=lambda kv: (-kv[1], kv[0])) for run in (dense, lexical, paper_run)
            ]
            fused = rrf_fuse([[i for i, _ in run] for run in runs if run], self.rrf_k)
        elif self.fusion == "minmax":
            lexical_w = 1.0 - self.dense_weight
            p = self.paper_weight if paper_run else 0.0
            fused = score_fuse(
                (dense, lexical, paper_run),
                (self.dense_weight, lexical_w * (1.0 - p), lexical_w * p),
            )
        else:
            fused = convex_fuse(
                dense_scores,
                lexical_scores,
                ceiling,
                self.dense_weight,
                paper if paper_cov else None,
                self.paper_weight,
            )
        ordered = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
        return [
            _Candidate(cid, score, dense_scores.get(cid), lexical_scores.get(cid))
            for cid, score in ordered
        ]

    def _group_by_paper(
        self, candidates: list[_Candidate], chunks: dict[str, Chunk], k: int
    ) -> list[Hit]:
        best: dict[str, _Candidate] = {}
        dense_max: dict[str, float] = {}
        lexical_max: dict[str, float] = {}
        unknown = 0
        for cand in candidates:  # best first: the first chunk seen per paper represents it
            chunk = chunks.get(cand.chunk_id)
            if chunk is None:  # a crash mid-ingest, or another state's vectors
                unknown += 1
                continue
            pid = chunk.paper_id
            if pid not in best and len(best) < k:
                best[pid] = cand
            if cand.dense is not None:
                dense_max[pid] = max(dense_max.get(pid, -1.0), cand.dense)
            if cand.lexical is not None:
                lexical_max[pid] = max(lexical_max.get(pid, 0.0), cand.lexical)
        if unknown:
            log.debug("%d candidate chunk(s) are in an index but not in the state", unknown)
        papers = self._state.get_papers(list(best))
        hits: list[Hit] = []
        for pid, cand in best.items():
            if pid in papers:
                hits.append(
                    SearchHit(
                        paper=papers[pid],
                        chunk=chunks[cand.chunk_id],
                        score=cand.fused,
                        dense_score=dense_max.get(pid),
                        lexical_score=lexical_max.get(pid),
                        rank=len(hits) + 1,
                    )
                )
        return hits

    def _mark_unfound(self, query: str, hits: list[Hit], index: BM25Index) -> list[Hit]:
        """Stamp every hit with the distinctive query terms none of the hits' papers has
        (`unfound`), and with the query's names its own paper has (`named`: a distinctive
        term in its text, or a name the question writes that its title has)."""
        if self.distinctive_max_df <= 0 or not hits:
            return hits
        terms = distinctive_terms(query, index, self.distinctive_max_df)
        names = name_terms(query)
        present = index.terms_in([h.paper.paper_id for h in hits], terms) if terms else {}
        found = set().union(*present.values()) if present else set()
        unfound = tuple(t for t in terms if t not in found) + self._absent_topics(
            query, hits, index
        )
        if unfound:
            log.debug("distinctive query terms in no retrieved paper: %s", ", ".join(unfound))
        out: list[Hit] = []
        for h in hits:
            if not isinstance(h, SearchHit):
                out.append(h)
                continue
            in_title = names & set(tokenize(h.paper.title))
            named = set(present.get(h.paper.paper_id, ())) | in_title
            out.append(replace(h, unfound=unfound, named=tuple(sorted(named))))
        return out

    def _absent_topics(self, query: str, hits: list[Hit], index: BM25Index) -> tuple[str, ...]:
        """Lower-case topics of the query the corpus never writes (`absent_topics`), when even
        the best dense match is weak: a question about something the corpus does not cover,
        not a rewording of a paper it has."""
        best_dense = max((h.dense_score for h in hits if h.dense_score is not None), default=-1.0)
        if best_dense >= self.topic_max_dense:
            return ()
        papers = {h.paper.paper_id: h.paper for h in hits}
        for compound in compounds(query):  # where the corpus would write it, if anywhere
            top = [pid for pid, _ in index.query(compound.replace("-", " ")).top(20)]
            papers.update(self._state.get_papers([p for p in top if p not in papers]))
        texts = [f"{p.title}\n{p.abstract}" for p in papers.values()]
        return absent_topics(query, index, texts)


def chunk_ids_of(index: BM25Index, paper_ids: Sequence[str]) -> list[str]:
    """The papers' live chunk ids in the chunk field, read from its sorted ids (a chunk id is
    "{paper id}#…"), not from the state: the same chunks at the index's generation."""
    prefixes = [f"{p}#".encode() for p in paper_ids]
    found: list[str] = []
    for seg, dead in zip(index.segments, index.deleted, strict=True):
        for rows in seg.prefixed(prefixes):
            if dead is not None and len(rows):
                rows = rows[~dead[rows]]
            found += [i.decode() for i in seg.ids[rows].tolist()]
    return found


def _coverage(
    papers: _PaperField | None, chunks: dict[str, Chunk], known: dict[str, float]
) -> dict[str, float]:
    """``known`` and the whole-paper coverage of the other papers these chunks belong to."""
    if papers is None:
        return {}
    missing = list({c.paper_id for c in chunks.values()} - known.keys())
    return known | papers.coverage(missing) if missing else known


def _with_coverage(hit: Hit, ceiling: float, paper_coverage: float | None = None) -> Hit:
    """The share of the query the paper matched: its best chunk's, or its whole text's (title
    + abstract) when that is higher."""
    chunk = None
    if hit.lexical_score is not None and ceiling > 0:
        chunk = min(1.0, hit.lexical_score / ceiling)
    values = [v for v in (chunk, paper_coverage) if v is not None]
    if not values:
        return hit
    return replace(hit, lexical_coverage=max(values))


@dataclass(frozen=True, slots=True)
class Relevance:
    """The one rule for "does this hit really match the query?", built from settings.

    A hit is relevant when the paper contains enough of the query's rare terms (BM25 coverage
    of its best chunk or of its whole text) or is semantically close enough (dense cosine),
    and no distinctive term of the query (a named benchmark, dataset, method, a rare noun) is
    missing from every retrieved paper (`SearchHit.unfound`): a question about something the
    corpus never mentions is not answered from merely related papers. A hit whose paper has
    all of them and at least one (`SearchHit.named`: "Explain the idea behind GVGEN.") is
    relevant whatever its coverage: the question names that paper. Calibrated on the dev
    questions with the 250 ACLSum abstracts indexed beside them (docs/benchmarks.md). The
    answer refusal gate, `/papers search`, subscriptions and digest topic filters all use it;
    a stricter variant for one of them is made with `stricter()`, never by copying the test.
    """

    min_coverage: float
    min_dense: float

    @classmethod
    def from_settings(cls, settings: RetrievalSettings) -> Relevance:
        return cls(settings.refusal_min_coverage, settings.refusal_min_dense)

    def stricter(self, *, min_coverage: float) -> Relevance:
        return replace(self, min_coverage=max(self.min_coverage, min_coverage))

    def accepts(self, coverage: float | None, dense: float | None) -> bool:
        return (coverage or 0.0) >= self.min_coverage or (
            dense if dense is not None else -1.0
        ) >= self.min_dense

    def __call__(self, hit: Hit) -> bool:
        if unfound(hit):
            return False
        if isinstance(hit, SearchHit) and hit.named:  # the question names this paper
            return True
        return self.accepts(hit.lexical_coverage, hit.dense_score)

    def any(self, hits: Sequence[Hit]) -> bool:
        return any(self(h) for h in hits)


def unfound(hit: Hit) -> tuple[str, ...]:
    """The query's distinctive terms that no paper of this hit's search contains."""
    return hit.unfound if isinstance(hit, SearchHit) else ()
