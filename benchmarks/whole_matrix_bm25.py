"""The whole-matrix BM25 index of paperbot before issue 15 (commit 7de6772), kept as the
baseline `bench_scale.py` measures the segmented index against in the same run.

One scipy CSC matrix of precomputed BM25 weights per field, saved as one .npz and loaded whole
into every process; rebuilt from the whole state whenever the generation changes. Only the
benchmark uses it.
"""

from __future__ import annotations

import logging
import os
import threading
import zipfile
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from scipy import sparse

from retrieval.lexical import BM25Index as SegmentedIndex
from retrieval.lexical import LexicalDoc, tokenize
from retrieval.lexical_segments import K1, B

log = logging.getLogger(__name__)


class BM25Index:
    """Okapi BM25 with per-document date and source arrays for filtering."""

    def __init__(
        self,
        chunk_ids: np.ndarray,
        vocab: dict[str, int],
        weights: sparse.csc_matrix,
        published: np.ndarray,
        sources: np.ndarray,
        generation: int,
    ) -> None:
        self.chunk_ids = chunk_ids
        self.vocab = vocab
        self.weights = weights  # (n_chunks, n_terms): precomputed BM25 term weights
        self.published = published  # int yyyymmdd, 0 when unknown
        self.sources = sources
        self.generation = generation
        self._rows: dict[str, int] | None = None  # chunk id -> row, built on first use
        # what the searcher's vocabulary checks read (sorted terms, as the segments have them)
        self.segments = [SimpleNamespace(terms=sorted(t.encode() for t in vocab))]

    def __len__(self) -> int:
        return len(self.chunk_ids)

    @classmethod
    def build(cls, docs: Iterable[LexicalDoc], generation: int) -> BM25Index:
        ids: list[str] = []
        stamps: list[int] = []
        srcs: list[str] = []
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        tfs: list[int] = []
        lengths: list[int] = []
        for row, doc in enumerate(docs):
            ids.append(doc.chunk_id)
            stamps.append(int(doc.published.strftime("%Y%m%d")) if doc.published else 0)
            srcs.append(doc.source)
            terms = Counter(tokenize(doc.text))
            lengths.append(sum(terms.values()))
            for term, tf in terms.items():
                rows.append(row)
                cols.append(vocab.setdefault(term, len(vocab)))
                tfs.append(tf)
        weights = _bm25_weights(rows, cols, tfs, lengths, len(vocab))
        return cls(
            np.array(ids, dtype=object),
            vocab,
            weights,
            np.array(stamps, dtype=np.int64),
            np.array(srcs, dtype=object),
            generation,
        )

    def query(
        self,
        query: str,
        *,
        since: date | None = None,
        until: date | None = None,
        sources: Sequence[str] | None = None,
        only: Collection[str] | None = None,
    ) -> LexicalScores:
        """Score every chunk once; the result answers top-N and per-chunk lookups.

        ``since``/``until`` filter on the publication date stored in the index; ``only``
        keeps just these chunk ids (how a filter the index does not store is applied).
        """
        terms = [self.vocab[t] for t in tokenize(query) if t in self.vocab]
        if not terms or not len(self):
            return LexicalScores(self, None)
        counts = Counter(terms)
        cols = list(counts)
        qtf = np.array([counts[c] for c in cols], dtype=np.float32)
        scores = np.asarray(self.weights[:, cols] @ qtf).ravel()
        mask = self._mask(since, until, sources, only)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        return LexicalScores(self, scores)

    def search(
        self,
        query: str,
        n: int,
        *,
        since: date | None = None,
        until: date | None = None,
        sources: Sequence[str] | None = None,
    ) -> list[tuple[str, float]]:
        """Best chunks for the query as (chunk id, BM25 score), best first; zero scores dropped."""
        return self.query(query, since=since, until=until, sources=sources).top(n)

    def score_ids(self, query: str, chunk_ids: Sequence[str]) -> dict[str, float]:
        """BM25 scores of specific chunks (0 when a chunk matches no query term)."""
        return self.query(query).of(chunk_ids)

    def _row_of(self) -> dict[str, int]:
        if self._rows is None:
            self._rows = {str(cid): i for i, cid in enumerate(self.chunk_ids)}
        return self._rows

    def query_ceiling(self, query: str) -> float:
        """Sum of the query terms' idf: roughly what a chunk containing every term once scores.

        BM25 scores grow with the corpus (idf ~ log N); score / ceiling does not, so it is the
        scale-free "how much of the query did the best chunk match" used by the refusal gate.
        Terms absent from the index count with the highest idf: a query about things the corpus
        never mentions gets a large ceiling and so a low coverage.
        """
        n_docs = len(self)
        df = np.diff(self.weights.indptr) if n_docs else np.zeros(0)
        total = 0.0
        for term in tokenize(query):
            col = self.vocab.get(term)
            freq = float(df[col]) if col is not None else 0.0
            total += float(np.log(1.0 + (n_docs - freq + 0.5) / (freq + 0.5)))
        return total

    def has_prefix(self, prefix: str) -> bool:
        """What the searcher's topic check asks: the current index's own check, over this
        index's one sorted vocabulary (`segments`)."""
        return SegmentedIndex.has_prefix(self, prefix)  # type: ignore[arg-type]

    def document_frequency(self, term: str) -> int:
        """How many documents contain ``term`` (a token as `tokenize` makes it)."""
        col = self.vocab.get(term)
        if col is None:
            return 0
        return int(self.weights.indptr[col + 1] - self.weights.indptr[col])

    def terms_in(self, doc_ids: Sequence[str], terms: Collection[str]) -> dict[str, set[str]]:
        """Which of ``terms`` each document contains (a document not in the index: none)."""
        rows = self._row_of()
        found: dict[str, set[str]] = {d: set() for d in doc_ids}
        wanted = {rows[d]: d for d in doc_ids if d in rows}
        for term in terms:
            col = self.vocab.get(term)
            if col is None:
                continue
            start, end = self.weights.indptr[col], self.weights.indptr[col + 1]
            for row in self.weights.indices[start:end]:
                doc = wanted.get(int(row))
                if doc is not None:
                    found[doc].add(term)
        return found

    def _mask(
        self,
        since: date | None,
        until: date | None,
        sources: Sequence[str] | None,
        only: Collection[str] | None = None,
    ) -> np.ndarray | None:
        if not (since or until or sources or only is not None):
            return None
        mask = np.ones(len(self), dtype=bool)
        if only is not None:
            rows = self._row_of()
            keep = np.zeros(len(self), dtype=bool)
            keep[[rows[c] for c in only if c in rows]] = True
            mask &= keep
        if since:
            mask &= self.published >= int(since.strftime("%Y%m%d"))
        if until:
            mask &= (self.published <= int(until.strftime("%Y%m%d"))) & (self.published > 0)
        if sources:
            mask &= np.isin(self.sources, list(sources))
        return mask

    def save(self, path: Path) -> None:
        """Atomic: a reader sees the old file or the new one, never half of one. Several
        processes may save one generation at once (a query in `serve`, a CLI ingest): each
        writes a temporary file of its own, then renames it into place."""
        tmp = path.with_name(f"{path.stem}.{os.getpid()}-{threading.get_ident()}.tmp.npz")
        vocab_terms = np.array(sorted(self.vocab, key=self.vocab.__getitem__), dtype=str)
        np.savez(
            tmp,
            chunk_ids=self.chunk_ids.astype(str),
            vocab=vocab_terms,
            data=self.weights.data,
            indices=self.weights.indices,
            indptr=self.weights.indptr,
            shape=np.array(self.weights.shape),
            published=self.published,
            sources=self.sources.astype(str),
            generation=np.array([self.generation]),
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> BM25Index | None:
        """The saved index, or None when missing or unreadable (it is rebuilt then)."""
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                shape = tuple(int(x) for x in f["shape"])
                weights = sparse.csc_matrix((f["data"], f["indices"], f["indptr"]), shape=shape)
                vocab = {str(t): i for i, t in enumerate(f["vocab"])}
                return cls(
                    f["chunk_ids"].astype(object),
                    vocab,
                    weights,
                    f["published"],
                    f["sources"].astype(object),
                    int(f["generation"][0]),
                )
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            log.warning("BM25 index at %s is unreadable (%s); it will be rebuilt", path, exc)
            return None


class LexicalScores:
    """BM25 scores of every chunk for one query (None when no query term is in the index)."""

    def __init__(self, index: BM25Index, scores: np.ndarray | None) -> None:
        self._index = index
        self._scores = scores

    def top(self, n: int) -> list[tuple[str, float]]:
        if self._scores is None:
            return []
        scores, ids = self._scores, self._index.chunk_ids
        return [(str(ids[i]), float(scores[i])) for i in _top_n(scores, n) if scores[i] > 0]

    def of(self, chunk_ids: Sequence[str]) -> dict[str, float]:
        rows = self._index._row_of()
        result: dict[str, float] = {}
        for cid in chunk_ids:
            row = rows.get(cid)
            ok = self._scores is not None and row is not None
            result[cid] = float(self._scores[row]) if ok else 0.0  # type: ignore[index]
        return result


def _bm25_weights(
    rows: list[int], cols: list[int], tfs: list[int], lengths: list[int], n_terms: int
) -> sparse.csc_matrix:
    n_docs = len(lengths)
    if not n_docs or not n_terms:
        return sparse.csc_matrix((n_docs, n_terms), dtype=np.float32)
    row_arr = np.array(rows, dtype=np.int64)
    col_arr = np.array(cols, dtype=np.int64)
    tf = np.array(tfs, dtype=np.float32)
    doc_len = np.array(lengths, dtype=np.float32)
    avg_len = float(doc_len.mean()) or 1.0
    df = np.bincount(col_arr, minlength=n_terms).astype(np.float32)
    idf = np.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))
    norm = K1 * (1.0 - B + B * doc_len[row_arr] / avg_len)
    values = idf[col_arr] * tf * (K1 + 1.0) / (tf + norm)
    return sparse.csc_matrix(
        (values, (row_arr, col_arr)), shape=(n_docs, n_terms), dtype=np.float32
    )


def _top_n(scores: np.ndarray, n: int) -> np.ndarray:
    if n >= len(scores):
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, n)[:n]
    return part[np.argsort(-scores[part], kind="stable")]
