"""BM25 as a sparse matrix, so a query over 100k documents takes milliseconds.

Two fields are built from the state store, each saved next to it with the state's generation
number (a different generation means a stale file, rebuilt, so BM25 never disagrees with what
exists): one document per chunk, and one per paper (title + abstract: abstracts are short, so
a question's terms spread over two chunks still add up in the paper's document).

`distinctive_terms` picks the query terms a matching paper must contain: named things and rare
nouns that the refusal gate checks against the retrieved papers.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
from scipy import sparse

log = logging.getLogger(__name__)

K1 = 1.2
B = 0.75
_WORD = re.compile(r"[a-z0-9]+")
# fmt: off
STOPWORDS = frozenset(
    {
        "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and",
        "any", "are", "as", "at", "be", "because", "been", "before", "being", "below",
        "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down",
        "during", "each", "few", "for", "from", "further", "had", "has", "have", "having",
        "he", "her", "here", "hers", "him", "his", "how", "i", "if", "in", "into", "introduce",
        "introduces", "is", "it", "its", "itself", "just", "me", "more", "most", "my", "no",
        "nor", "not", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "out",
        "over", "own", "paper", "present", "propose", "proposed", "same", "she", "should",
        "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "then",
        "there", "these", "they", "this", "those", "through", "to", "too", "under", "until",
        "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who",
        "whom", "why", "will", "with", "would", "you", "your",
    }
)
# fmt: on


def tokenize(text: str) -> list[str]:
    """Lower-case words without stopwords, with plural endings folded ('models' -> 'model')."""
    folded = unicodedata.normalize("NFKD", text).casefold()
    return [_stem(w) for w in _WORD.findall(folded) if w not in STOPWORDS]


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


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
# A quantity, not a name: "2022", "100k", "42x" (of "1.42x"), "7s". Abstracts write amounts in
# too many ways ("1.42x", "1.42times", "1.42×") for their tokens to be matched literally.
_AMOUNT = re.compile(r"^\d+[a-z]{0,5}$")


@dataclass(frozen=True, slots=True)
class LexicalDoc:
    """One document of a field: a chunk (id = chunk id) or a whole paper (id = paper id)."""

    chunk_id: str
    text: str
    published: date | None
    source: str


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


def name_terms(text: str) -> set[str]:
    """The tokens (as `tokenize` spells them) of the words ``text`` writes like names: a
    capital inside a word, or at the start of a word that is not the first, or a digit inside
    a word ("GVGEN", "LLaVA", "Atari", "GPT4"); amounts and two-letter fragments excluded."""
    words = re.findall(r"[A-Za-z0-9]+", unicodedata.normalize("NFKD", text))
    names = {
        _stem(w.casefold())
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
