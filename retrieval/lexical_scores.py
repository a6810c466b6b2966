"""BM25 scores of one query, computed only as far as a caller asks: the top N by scoring every
document once, single documents by lookup in the postings (or, once a top was computed, in the
score arrays it filled: ~70 lookups per search read a score instead of binary-searching every
query term's postings in every segment).

At 10⁶ chunks a question's terms hold about a million postings per field (its common words,
"model", "language", "learning", are in a third of the documents each), so the cost of a query
is a few passes over arrays as long as the postings and the segment; each pass is kept to one
vectorised numpy call (docs/benchmarks.md §6 has the numbers):

* the weights of a term's postings are computed once per index and kept
  (`BM25Index.column`), or only at the positions a lookup needs;
* they are added with ``np.add.at`` (twice as fast as a fancy-index ``+=`` on numpy 2, and the
  same additions in the same order, so the sums are bit-identical);
* the N-th best score is bounded from below by the scores of the documents holding the query's
  rarest term (a few thousand rows), so finding the best N is one comparison over the segment
  and a partition of what passes it, not a partition of the whole segment.

Every score is the exact BM25 score with the index's global statistics, whichever way it was
computed: a lookup adds the same float32 weights in the same (query) order as the full pass.
MaxScore-style pruning (skipping the documents that hold only common terms) was tried and
dropped: on 10⁶ chunks it could prove its top 50 exact for 11% of the queries, and its
approximate answer shared 82% of the exact top 10.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from retrieval.lexical_segments import Segment


class ScoredIndex(Protocol):
    """What scoring asks of the index (`retrieval.lexical.BM25Index`): its global weights."""

    def column(self, seg: Segment, col: int, idf: np.float32) -> tuple[np.ndarray, np.ndarray]:
        """A term's rows and their weights."""
        ...

    def postings_weights(
        self, seg: Segment, col: int, idf: np.float32
    ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """A term's rows, and their weights at given positions."""
        ...

    def locate(self, doc_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """Each live document's (segment, row)."""
        ...


# np.add.at is the faster numpy scatter-add from about this many postings (numpy 2, measured);
# below, its fixed cost per call is not
ADD_AT_FROM = 2048

try:  # SciPy's compiled CSC mat-vec over one column, times 1: scores[rows] += weight in one C
    # loop, the same float32 additions in the same order as numpy's (bit-identical sums), twice
    # as fast as np.add.at. A private function: `_compiled_works` checks it at import and numpy
    # is used if it is missing or differs. It does not check bounds: `BM25Index.column` checks
    # every column's rows once, when it computes the column.
    from scipy.sparse._sparsetools import csc_matvec as _csc_matvec
except ImportError:  # pragma: no cover - SciPy is a dependency
    _csc_matvec = None
_ONE = np.ones(1, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class TermPlan:
    """One query term in one segment: its column, how often the query repeats it, its idf."""

    col: int
    qtf: int
    idf: np.float32


@dataclass(frozen=True, slots=True)
class SegmentPlan:
    """What scoring one segment needs: the terms (in the query's order), and which rows the
    filters keep (``keep(rows)`` -> bool mask; None keeps every row)."""

    segment: Segment
    terms: tuple[TermPlan, ...]
    keep: Callable[[np.ndarray], np.ndarray] | None


class LexicalScores:
    """BM25 scores of the index's documents for one query (``plans`` None: no query term is
    indexed, every score is 0)."""

    def __init__(self, index: ScoredIndex, plans: list[SegmentPlan] | None) -> None:
        self._index = index
        self._plans = plans
        self._tops: dict[int, list[tuple[str, float]]] = {}
        # each segment's score array, once `top` has computed it: `of` then reads a score
        # instead of searching every query term's postings (the same float32 sums)
        self._full: dict[int, np.ndarray] = {}

    def top(self, n: int) -> list[tuple[str, float]]:
        """The n best documents as (id, score), best first, ties by id; zero scores dropped."""
        if self._plans is None or n <= 0:
            return []
        cached = self._tops.get(n)
        if cached is not None:
            return list(cached)  # a copy: callers extend what they get
        found: list[tuple[float, bytes]] = []
        floor = 0.0  # the n-th best score found so far: no later row below it can enter
        for i, plan in enumerate(self._plans):
            rows, scores = self._segment_top(i, plan, n, floor)
            found += zip(scores.tolist(), plan.segment.ids[rows].tolist(), strict=True)
            if len(found) >= n:
                floor = max(floor, -np.partition([-s for s, _ in found], n - 1)[n - 1])
        found.sort(key=lambda t: (-t[0], t[1]))  # ties by id: the same for any segmentation
        result = [(doc_id.decode(), score) for score, doc_id in found[:n]]
        self._tops[n] = result
        return list(result)

    def of(self, doc_ids: Sequence[str]) -> dict[str, float]:
        """The scores of these documents (0 for one not indexed, filtered out or unmatched)."""
        result = dict.fromkeys(doc_ids, 0.0)
        if self._plans is None or not doc_ids:
            return result
        where = self._index.locate(doc_ids)
        for i, plan in enumerate(self._plans):
            wanted = [(d, row) for d, (s, row) in where.items() if s == i]
            if not wanted:
                continue
            rows = np.array([row for _, row in wanted], dtype=np.int64)
            full = self._full.get(i)
            scores = full[rows] if full is not None else self._lookup(plan, rows)
            if plan.keep is not None:
                scores = np.where(plan.keep(rows), scores, np.float32(0.0))
            for (doc_id, _), score in zip(wanted, scores.tolist(), strict=True):
                result[doc_id] = score
        return result

    def _segment_top(
        self, i: int, plan: SegmentPlan, n: int, floor: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The segment's rows scoring above 0 and at least its n-th best (ties with the n-th
        all kept; rows below ``floor`` may be left out), with their scores."""
        seg = plan.segment
        if not plan.terms:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores = np.zeros(len(seg), dtype=np.float32)
        rarest: tuple[int, np.ndarray] | None = None
        for term in plan.terms:
            rows, weight = self._index.column(seg, term.col, term.idf)
            scatter_add(scores, rows, weight, term.qtf)
            if rarest is None or len(rows) < rarest[0]:
                rarest = (len(rows), rows)
        self._full[i] = scores
        # a lower bound of the n-th best: the n-th best among the rarest term's documents
        assert rarest is not None
        bound = floor
        sample = scores[rarest[1]]
        if plan.keep is not None and len(sample):
            sample = sample[plan.keep(rarest[1])]
        if len(sample) >= n:
            bound = max(bound, float(-np.partition(-sample, n - 1)[n - 1]))
        rows = np.flatnonzero(scores >= bound) if bound > 0 else np.flatnonzero(scores > 0)
        if plan.keep is not None and len(rows):
            rows = rows[plan.keep(rows)]
        return _best(rows, scores[rows], n)

    def _lookup(self, plan: SegmentPlan, rows: np.ndarray) -> np.ndarray:
        """Scores of ``rows`` by binary search in each term's postings, the terms in the
        query's order: the same float32 additions as `_segment_top` makes."""
        scores = np.zeros(len(rows), dtype=np.float32)
        if not len(rows):
            return scores
        keys: np.ndarray | None = None
        for term in plan.terms:
            col_rows, weights = self._index.postings_weights(plan.segment, term.col, term.idf)
            if not len(col_rows):
                continue
            if keys is None:  # in the postings' dtype: numpy would otherwise convert the
                keys = rows.astype(col_rows.dtype)  # whole column for every search (20× slower)
            pos = np.minimum(np.searchsorted(col_rows, keys), len(col_rows) - 1)
            hit = col_rows[pos] == keys
            w = weights(pos[hit])
            scores[hit] += w * np.float32(term.qtf) if term.qtf > 1 else w
        return scores


def scatter_add(
    scores: np.ndarray, rows: np.ndarray, weight: np.ndarray, qtf: int, *, compiled: bool = True
) -> None:
    """``scores[rows] += weight * qtf`` for a term's postings (its rows unique and within
    ``scores``), in float32: SciPy's loop when the arrays allow it, else numpy's."""
    add = weight * np.float32(qtf) if qtf > 1 else weight  # times 1 below: exact, even fused
    if (
        compiled
        and _COMPILED
        and len(rows) >= 64
        and rows.dtype == np.int32
        and add.dtype == np.float32
        and scores.dtype == np.float32
        and rows.flags.c_contiguous
        and add.flags.c_contiguous
        and scores.flags.c_contiguous
    ):
        column = np.array([0, len(rows)], dtype=np.int32)
        _csc_matvec(len(scores), 1, column, rows, add, _ONE, scores)
        return
    if len(rows) >= ADD_AT_FROM:
        np.add.at(scores, rows, add)
    else:  # a short column: the fancy-index add costs less per call (rows are unique within a
        scores[rows] += add  # term, so both add the same floats)


def _compiled_works() -> bool:
    """Whether SciPy's loop is there, takes these arguments and adds exactly as numpy does."""
    if _csc_matvec is None:
        return False
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(1000, 300, replace=False)).astype(np.int32)
    weight = rng.random(300, dtype=np.float32)
    start = rng.random(1000, dtype=np.float32)
    compiled, plain = start.copy(), start.copy()
    try:
        _csc_matvec(1000, 1, np.array([0, 300], np.int32), rows, weight, _ONE, compiled)
    except (TypeError, ValueError):  # pragma: no cover - another SciPy's private signature
        return False
    np.add.at(plain, rows, weight)
    return compiled.tobytes() == plain.tobytes()


_COMPILED = _compiled_works()


def _best(rows: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows scoring above 0 and at least the n-th best (ties with the n-th all kept)."""
    positive = scores > 0
    rows, scores = rows[positive], scores[positive]
    if len(rows) > n:
        keep = scores >= -np.partition(-scores, n - 1)[n - 1]
        rows, scores = rows[keep], scores[keep]
    return rows, scores
