"""Hybrid retrieval: dense (Chroma) and BM25 candidates fused, then grouped by paper.

Date filters pick papers by their listing day by default (`SearchFilters.by`). That day lives
in the state only (a listing changes no chunk, so neither index is rewritten for it): the
searcher asks the state which chunks are in the window, masks BM25 to them and scores them
exactly from the embedding cache (or, for a very large window, filters Chroma's nearest
neighbours). Filters by publication date are applied inside both indexes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Literal

import numpy as np

from retrieval.lexical import BM25Index, LexicalScores
from retrieval.models import DateField, Hit
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


def convex_fuse(
    dense: dict[str, float], lexical: dict[str, float], ceiling: float, dense_weight: float
) -> dict[str, float]:
    """w * cosine + (1 - w) * lexical coverage, both on absolute [0, 1] scales.

    Coverage is the BM25 score over the query's idf ceiling (see BM25Index.query_ceiling), so a
    chunk that contains every rare term of the query scores near 1 whatever the corpus size;
    unlike min-max or rank fusion, a strong result keeps its margin over weak ones.
    """
    fused: dict[str, float] = {}
    for cid in dense.keys() | lexical.keys():
        cosine = max(0.0, dense.get(cid, 0.0))
        coverage = min(1.0, lexical.get(cid, 0.0) / ceiling) if ceiling > 0 else 0.0
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
    """Ask both retrievers for candidate chunks, score every candidate on both scales, fuse,
    keep each paper's best chunk."""

    def __init__(
        self,
        state: StateStore,
        store: VectorStore,
        lexical: Callable[[], BM25Index],
        embed_query: Callable[[str], np.ndarray],
        *,
        vectors_for: Callable[[Sequence[str]], dict[str, np.ndarray]] | None = None,
        candidates: int = 50,
        rrf_k: int = 60,
        fusion: Fusion = "convex",
        dense_weight: float = 0.5,
    ) -> None:
        self._state = state
        self._store = store
        self._lexical = lexical
        self._embed_query = embed_query
        self._vectors_for = vectors_for
        self.candidates = candidates
        self.rrf_k = rrf_k
        self.fusion = fusion
        self.dense_weight = dense_weight
        self._count: tuple[int, int] | None = None  # (state generation, chunk count)

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
        allowed = self._window(flt)
        if allowed is not None and not allowed:
            return []
        query_vec = self._embed_query(query) if mode in ("hybrid", "dense") else None
        dense = self._dense(query_vec, flt, allowed) if query_vec is not None else []
        index = self._lexical() if mode != "dense" else None
        scored = None
        if index is not None and allowed is not None:
            scored = index.query(query, only=allowed)
        elif index is not None:
            srcs = flt.sources or None
            scored = index.query(query, since=flt.since, until=flt.until, sources=srcs)
        lexical = scored.top(self.candidates) if scored is not None else []
        ceiling = index.query_ceiling(query) if index is not None else 0.0
        if scored is not None and query_vec is not None:
            dense, lexical = self._complete(query_vec, dense, lexical, scored)
        candidates = self._fuse(dense, lexical, ceiling)
        hits = self._group_by_paper(candidates, k)
        return [_with_coverage(h, ceiling) for h in hits] if lexical else hits

    def _window(self, flt: SearchFilters) -> set[str] | None:
        """The chunk ids a listing-day filter allows, read from the state now (so a listing
        recorded a moment ago counts); None when no such filter is set."""
        if not flt.by_listing:
            return None
        paper_ids = self._state.paper_ids_between(flt.since, flt.until, flt.sources, "listed")
        return {cid for ids in self._state.chunk_ids_for(paper_ids).values() for cid in ids}

    def _dense(
        self, vector: np.ndarray, flt: SearchFilters, allowed: set[str] | None = None
    ) -> list[tuple[str, float]]:
        total = max(self._vector_count(), 1)
        if allowed is None:
            n = min(self.candidates, total)
            return self._store.query(
                vector, n, since=flt.since, until=flt.until, sources=flt.sources or None
            )
        if self._vectors_for is not None and len(allowed) <= EXACT_DENSE_LIMIT:
            vectors = self._vectors_for(sorted(allowed))
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
        generation = self._state.generation
        if self._count is None or self._count[0] != generation:
            self._count = (generation, self._state.count_chunks())
        return self._count[1]

    def _complete(
        self,
        query_vec: np.ndarray,
        dense: list[tuple[str, float]],
        lexical: list[tuple[str, float]],
        scored: LexicalScores,
    ) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        """Score each retriever's candidates on the other retriever's scale too.

        A chunk that BM25 ranks first but that misses the dense top-N still has a cosine
        similarity; without it fusion would treat it as 0 and rank it below weak dense hits.
        """
        dense_ids = {cid for cid, _ in dense}
        lexical_ids = {cid for cid, _ in lexical}
        only_lexical = [cid for cid, _ in lexical if cid not in dense_ids]
        only_dense = [cid for cid, _ in dense if cid not in lexical_ids]
        if only_lexical and self._vectors_for is not None:
            vectors = self._vectors_for(only_lexical)
            dense = dense + [(cid, float(np.dot(v, query_vec))) for cid, v in vectors.items()]
        if only_dense:
            lexical = lexical + list(scored.of(only_dense).items())
        return dense, lexical

    def _fuse(
        self, dense: list[tuple[str, float]], lexical: list[tuple[str, float]], ceiling: float
    ) -> list[_Candidate]:
        dense_scores = dict(dense)
        lexical_scores = dict(lexical)
        if self.fusion == "rrf":
            ranked = [sorted(run, key=lambda kv: -kv[1]) for run in (dense, lexical)]
            fused = rrf_fuse([[i for i, _ in run] for run in ranked if run], self.rrf_k)
        elif self.fusion == "minmax":
            fused = score_fuse((dense, lexical), (self.dense_weight, 1.0 - self.dense_weight))
        else:
            fused = convex_fuse(dense_scores, lexical_scores, ceiling, self.dense_weight)
        ordered = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
        return [
            _Candidate(cid, score, dense_scores.get(cid), lexical_scores.get(cid))
            for cid, score in ordered
        ]

    def _group_by_paper(self, candidates: list[_Candidate], k: int) -> list[Hit]:
        chunks = self._state.get_chunks([c.chunk_id for c in candidates])
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
                    Hit(
                        paper=papers[pid],
                        chunk=chunks[cand.chunk_id],
                        score=cand.fused,
                        dense_score=dense_max.get(pid),
                        lexical_score=lexical_max.get(pid),
                        rank=len(hits) + 1,
                    )
                )
        return hits


def _with_coverage(hit: Hit, ceiling: float) -> Hit:
    if hit.lexical_score is None or ceiling <= 0:
        return hit
    return replace(hit, lexical_coverage=min(1.0, hit.lexical_score / ceiling))


@dataclass(frozen=True, slots=True)
class Relevance:
    """The one rule for "does this hit really match the query?", built from settings.

    A hit is relevant when its best chunk contains enough of the query's rare terms (BM25
    coverage) or is semantically close enough (dense cosine); junk matches score low on both.
    Calibrated on the dev questions (docs/benchmarks.md). The answer refusal gate, `/papers
    search`, subscriptions and digest topic filters all use it; a stricter variant for one of
    them is made with `stricter()`, never by copying the test.
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
        return self.accepts(hit.lexical_coverage, hit.dense_score)

    def any(self, hits: Sequence[Hit]) -> bool:
        return any(self(h) for h in hits)
