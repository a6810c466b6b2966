"""BM25 as a sparse matrix, so a query over 100k documents takes milliseconds.

Two fields are built from the state store, each saved next to it with the state's generation
number (a different generation means a stale file, rebuilt, so BM25 never disagrees with what
exists): one document per chunk, and one per paper (title + abstract: abstracts are short, so
a question's terms spread over two chunks still add up in the paper's document).

`distinctive_terms` picks the query terms a matching paper must contain: named things and rare
nouns that the refusal gate checks against the retrieved papers.
"""

from __future__ import annotations

import bisect
import logging
import os
import re
import threading
import unicodedata
import zipfile
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from retrieval import lexical_terms
from retrieval.lexical_scores import LexicalScores, SegmentPlan, TermPlan
from retrieval.lexical_segments import K1, Segment, Terms, as_bytes, merge
from retrieval.lexical_terms import stem, tokenize

log = logging.getLogger(__name__)

# saturated term frequencies of recent query terms kept per index (`BM25Index.column`)
COLUMN_CACHE_BYTES = 256 * 1024 * 1024


# Words a question uses to ask, not to name what it asks about: never distinctive.
# fmt: off
QUESTION_WORDS = frozenset(
    {
        "achieve", "achieves", "approach", "best", "better", "collection", "compare", "compared",
        "describe", "difference", "does", "explain", "find", "good", "help", "improve", "key",
        "kind", "long", "main", "many", "mean", "method", "model", "much", "new", "people",
        "perform", "performance", "result", "say", "show", "study", "summarize", "tell",
        "use", "used", "way", "work", "works",
    }
)
# fmt: on
_NAME_LIKE = re.compile(r"^(?:\w*\d\w*|\w+[A-Z]\w*|[A-Z]\w+)$")
# A quantity, not a name ("2022", "100k", "42x" of "1.42x"): written too many ways to match.
_AMOUNT = re.compile(r"^\d+[a-z]{0,5}$")


@dataclass(frozen=True, slots=True)
class LexicalDoc:
    """One document of a field: a chunk (id = chunk id) or a whole paper (id = paper id)."""

    chunk_id: str
    text: str
    published: date | None
    source: str


class BM25Index:
    """Okapi BM25 over one or more segments (`lexical_segments.Segment`), with per-document
    date and source arrays for filtering.

    The corpus-wide statistics (N, average length, each term's document frequency) are summed
    over the segments' live documents, a deleted document (``deleted[i][row]``) counting in
    none of them, so the scores are those of one index built from the live documents alone.
    """

    def __init__(
        self,
        segments: Sequence[Segment],
        generation: int,
        deleted: Sequence[np.ndarray | None] | None = None,
    ) -> None:
        self.segments = list(segments)
        self.deleted = list(deleted) if deleted is not None else [None] * len(self.segments)
        self.generation = generation
        live = [
            (len(s) - int(d.sum()), int(np.asarray(s.lengths)[~d].sum(dtype=np.int64)))
            if d is not None
            else (len(s), int(np.asarray(s.lengths).sum(dtype=np.int64)))
            for s, d in zip(self.segments, self.deleted, strict=True)
        ]
        self._n_docs = sum(n for n, _ in live)
        total = sum(t for _, t in live)
        self.avg_len = (total / self._n_docs if self._n_docs else 0.0) or 1.0
        self._df: dict[str, int] = {}
        self._idfs: dict[str, np.float32] = {}
        self._columns: OrderedDict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._column_bytes = 0
        self._columns_lock = threading.Lock()

    def __len__(self) -> int:
        return self._n_docs

    @classmethod
    def build(cls, docs: Iterable[LexicalDoc], generation: int) -> BM25Index:
        return cls([segment_of(docs)], generation)

    def query(
        self,
        query: str,
        *,
        since: date | None = None,
        until: date | None = None,
        sources: Sequence[str] | None = None,
        only: Collection[str] | None = None,
    ) -> LexicalScores:
        """The query's scores, computed as far as they are asked for (`LexicalScores`: the
        top N, single documents by lookup).

        ``since``/``until`` filter on the publication date stored in the index; ``only``
        keeps just these ids (how a filter the index does not store is applied).
        """
        counts = Counter(t for t in tokenize(query) if self.document_frequency(t))
        if not counts or not len(self):
            return LexicalScores(self, None)
        only_ids = as_bytes(only) if only is not None else None
        plans: list[SegmentPlan] = []
        for seg, dead in zip(self.segments, self.deleted, strict=True):
            terms = []
            for term, qtf in counts.items():
                col = seg.terms.find(term) if len(seg) else -1
                if col >= 0:
                    terms.append(TermPlan(col, qtf, self.idf(term)))
            keep = self._filter(seg, dead, since, until, sources, only_ids)
            plans.append(SegmentPlan(seg, tuple(terms), keep))
        return LexicalScores(self, plans)

    def idf(self, term: str) -> np.float32:
        idf = self._idfs.get(term)
        if idf is None:
            n = np.float32(self._n_docs)
            df = np.float32(self.document_frequency(term))
            idf = np.float32(
                np.log(np.float32(1.0) + (n - df + np.float32(0.5)) / (df + np.float32(0.5)))
            )
            if len(self._idfs) > 100_000:
                self._idfs.clear()
            self._idfs[term] = idf
        return idf

    def column(self, seg: Segment, col: int, idf: np.float32) -> tuple[np.ndarray, np.ndarray]:
        """A term's documents and their BM25 weights, idf * tf * (K1 + 1) / (tf + K1 * (1 -
        B + B * length / avg_len)), with this index's N, average length and document
        frequency. Kept for the index's lifetime within `COLUMN_CACHE_BYTES` (least recently
        used dropped first), so frequent query terms are not recomputed per query."""
        key = (id(seg), col)
        with self._columns_lock:  # searches run in several threads of one process
            hit = self._columns.get(key)
            if hit is not None:
                self._columns.move_to_end(key)
                return hit
        rows, tf = seg.postings_of(col, checked=True)  # the scoring loop does not check bounds
        weight = _weights(idf, tf, seg.norm(self.avg_len)[rows])
        with self._columns_lock:
            if key not in self._columns:
                self._columns[key] = (rows, weight)
                self._column_bytes += weight.nbytes
            while self._column_bytes > COLUMN_CACHE_BYTES and len(self._columns) > 1:
                _, (_, dropped) = self._columns.popitem(last=False)
                self._column_bytes -= dropped.nbytes
        return rows, weight

    def postings_weights(
        self, seg: Segment, col: int, idf: np.float32
    ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """A term's documents, and a function from positions in them to their weights (the
        same values `column` computes, without computing the whole column when it is not
        kept)."""
        with self._columns_lock:
            hit = self._columns.get((id(seg), col))
        if hit is not None:
            rows, weight = hit
            return rows, lambda pos: weight[pos]
        rows, tf = seg.postings_of(col)
        norm = seg.norm(self.avg_len)
        return rows, lambda pos: _weights(idf, tf[pos], norm[rows[pos]])

    def search(
        self,
        query: str,
        n: int,
        *,
        since: date | None = None,
        until: date | None = None,
        sources: Sequence[str] | None = None,
    ) -> list[tuple[str, float]]:
        """Best documents for the query as (id, BM25 score), best first; zero scores dropped."""
        return self.query(query, since=since, until=until, sources=sources).top(n)

    def has_prefix(self, prefix: str) -> bool:
        """Whether any term of any segment starts with ``prefix`` (binary search in each sorted
        vocabulary; tombstoned documents may keep a term alive until a merge)."""
        key = prefix.encode()
        for segment in self.segments:
            i = bisect.bisect_left(segment.terms, key)
            if i < len(segment.terms) and segment.terms[i].startswith(key):
                return True
        return False

    def score_ids(self, query: str, chunk_ids: Sequence[str]) -> dict[str, float]:
        """BM25 scores of specific documents (0 when one matches no query term)."""
        return self.query(query).of(chunk_ids)

    def query_ceiling(self, query: str) -> float:
        """Sum of the query terms' idf: roughly what a chunk containing every term once scores.

        BM25 scores grow with the corpus (idf ~ log N); score / ceiling does not, so it is the
        scale-free "how much of the query did the best chunk match" used by the refusal gate.
        Terms absent from the index count with the highest idf: a query about things the corpus
        never mentions gets a large ceiling and so a low coverage.
        """
        n_docs = len(self)
        total = 0.0
        for term in tokenize(query):
            freq = float(self.document_frequency(term))
            total += float(np.log(1.0 + (n_docs - freq + 0.5) / (freq + 0.5)))
        return total

    def document_frequency(self, term: str) -> int:
        """How many live documents contain ``term`` (a token as `tokenize` makes it)."""
        df = self._df.get(term)
        if df is None:
            df = 0
            for seg, dead in zip(self.segments, self.deleted, strict=True):
                col = seg.terms.find(term)
                if col < 0:
                    continue
                if dead is None:
                    df += int(seg.ptr[col + 1] - seg.ptr[col])
                else:
                    df += int((~dead[seg.postings_of(col)[0]]).sum())
            if len(self._df) > 100_000:
                self._df.clear()
            self._df[term] = df
        return df

    def locate(self, doc_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """Each live document's (segment, row); ids not in the index are left out."""
        found: dict[str, tuple[int, int]] = {}
        if not doc_ids:
            return found
        keys = as_bytes(doc_ids)
        for i, (seg, dead) in enumerate(zip(self.segments, self.deleted, strict=True)):
            rows = seg.locate(keys)
            for doc_id, row in zip(doc_ids, rows.tolist(), strict=True):
                if row >= 0 and (dead is None or not dead[row]):
                    found[doc_id] = (i, row)
        return found

    def terms_in(self, doc_ids: Sequence[str], terms: Collection[str]) -> dict[str, set[str]]:
        """Which of ``terms`` each document contains (a document not in the index: none)."""
        found: dict[str, set[str]] = {d: set() for d in doc_ids}
        where = self.locate(doc_ids)
        for i, seg in enumerate(self.segments):
            wanted = {row: d for d, (s, row) in where.items() if s == i}
            if not wanted:
                continue
            keys = np.array(sorted(wanted), dtype=np.int64)
            for term in terms:
                col = seg.terms.find(term)
                if col < 0:
                    continue
                hit = np.isin(keys, seg.postings_of(col)[0])
                for row in keys[hit].tolist():
                    found[wanted[row]].add(term)
        return found

    def _filter(
        self,
        seg: Segment,
        dead: np.ndarray | None,
        since: date | None,
        until: date | None,
        sources: Sequence[str] | None,
        only: np.ndarray | None,
    ) -> Callable[[np.ndarray], np.ndarray] | None:
        """Which rows the filters keep, as a function of an array of rows (applied to the
        rows a query touches only); None when every live row is kept."""
        if not (since or until or sources or only is not None or dead is not None):
            return None
        allowed = None
        if only is not None:
            allowed = seg.locate(only)
            allowed = np.unique(allowed[allowed >= 0])
        low = int(since.strftime("%Y%m%d")) if since else None
        high = int(until.strftime("%Y%m%d")) if until else None
        codes = seg.source_codes(sources) if sources else None

        def keep(rows: np.ndarray) -> np.ndarray:
            mask = np.ones(len(rows), dtype=bool) if dead is None else ~dead[rows]
            if allowed is not None:
                mask &= np.isin(rows, allowed, assume_unique=False)
            if low is not None or high is not None:
                days = seg.published[rows]
                if low is not None:
                    mask &= days >= low
                if high is not None:
                    mask &= (days <= high) & (days > 0)
            if codes is not None:
                mask &= np.isin(seg.sources[rows], codes)
            return mask

        return keep

    def merged(self) -> Segment:
        """The live documents as one segment."""
        if len(self.segments) == 1 and self.deleted[0] is None:
            return self.segments[0]
        return merge(self.segments, self.deleted)

    def save(self, path: Path) -> None:
        """One file of the whole index (the corpus keeps its fields as segment directories,
        `lexical_store.SegmentStore`). Atomic: a reader sees the old file or the new one;
        several processes may save at once, each through a temporary file of its own."""
        tmp = path.with_name(f"{path.stem}.{os.getpid()}-{threading.get_ident()}.tmp.npz")
        seg = self.merged()
        np.savez(
            tmp,
            ids=np.asarray(seg.ids),
            lengths=np.asarray(seg.lengths),
            published=np.asarray(seg.published),
            sources=np.asarray(seg.sources),
            source_names=np.array(seg.source_names, dtype=str),
            ptr=np.asarray(seg.ptr),
            rows=np.asarray(seg.rows),
            tf=np.asarray(seg.tf),
            term_blob=np.asarray(seg.terms.blob),
            term_offsets=np.asarray(seg.terms.offsets),
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
                seg = Segment(
                    path.stem,
                    f["ids"],
                    f["lengths"],
                    f["published"],
                    f["sources"],
                    tuple(str(s) for s in f["source_names"]),
                    Terms(f["term_blob"], f["term_offsets"]),
                    f["ptr"],
                    f["rows"],
                    f["tf"],
                )
                return cls([seg], int(f["generation"][0]))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            log.warning("BM25 index at %s is unreadable (%s); it will be rebuilt", path, exc)
            return None


def segment_of(docs: Iterable[LexicalDoc], name: str | None = None) -> Segment:
    """One segment of these documents, analysed as every field is (`lexical_terms`)."""
    return Segment.from_docs(_rows(docs), lexical_terms.words, lexical_terms.term, name)


def _rows(docs: Iterable[LexicalDoc]) -> Iterator[tuple[str, str, int, str]]:
    for doc in docs:
        day = doc.published
        stamp = day.year * 10000 + day.month * 100 + day.day if day else 0  # yyyymmdd
        yield doc.chunk_id, doc.text, stamp, doc.source


def _weights(idf: np.float32, tf: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """BM25 weights of postings with these term frequencies and length norms (float32, the
    same operations whether for a whole column or a few of its positions)."""
    tf32 = tf.astype(np.float32)
    return idf * tf32 * np.float32(K1 + 1.0) / (tf32 + norm)


def name_terms(text: str) -> set[str]:
    """The tokens (as `tokenize` spells them) of the words ``text`` writes like names: a
    capital inside a word, or at the start of a word that is not the first, or a digit inside
    a word ("GVGEN", "LLaVA", "Atari", "GPT4"); amounts and two-letter fragments excluded."""
    words = re.findall(r"[A-Za-z0-9]+", unicodedata.normalize("NFKD", text))
    names = {
        stem(w.casefold())
        for i, w in enumerate(words)
        if _NAME_LIKE.match(w) and (i > 0 or not w[1:].islower())
    }
    return {n for n in names if len(n) >= 3 and not _AMOUNT.match(n) and n not in QUESTION_WORDS}


def distinctive_terms(query: str, index: BM25Index, max_df_share: float) -> list[str]:
    """The query's terms that name what it asks about, as `tokenize` spells them.

    A term is distinctive when the query writes it like a name (a capital inside a word or at
    the start of a word that is not the question's first, or a digit inside a name: "Atari",
    "ImageNet", "AlphaFold", "GPT4") and the index has it in at most ``max_df_share`` of its
    documents, or not at all. Lower-case words are not: an absent one ("fix", "say",
    "hindering") is more often a paraphrase than a subject: requiring rare lower-case words too
    flagged 308 of the 750 ACLSum summary sentences, names alone 29 (docs/benchmarks.md). Amounts ("2022", "100k", "1.42x") are
    written in too many ways, fragments of two letters ("MS", "XL") are too short, and
    question words never are.
    """
    if not len(index):
        return []
    names = name_terms(query)
    limit = max(1.0, max_df_share * len(index))
    out: list[str] = []
    for term in dict.fromkeys(tokenize(query)):
        if term in names and index.document_frequency(term) <= limit:
            out.append(term)
    return out
