"""One BM25 segment: an immutable set of documents as flat arrays, in memory or memory-mapped.

A segment stores what BM25 needs before the corpus-wide statistics are known: per document its
id, length, publication day and source; per term its postings (document rows and term
frequencies, CSC order). The BM25 weights themselves are computed at query time from the
global N, average length and document frequencies of all live segments (`lexical.BM25Index`),
so adding a segment never rewrites another.

On disk a segment is a directory of uncompressed ``.npy`` files (plus the vocabulary as one
byte blob with offsets) that every process maps read-only: replicas on one host share the
page cache and load nothing up front. Rows are sorted by document id, so an id is found by
binary search in the id array; terms are sorted, so a term is found by binary search in the
vocabulary. A directory is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import bisect
import json
import os
import shutil
import threading
import uuid
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse

from retrieval.errors import StateFileError

K1 = 1.2
B = 0.75
ARRAYS = ("ids", "lengths", "published", "sources", "ptr", "rows", "tf", "term_offsets")
_TERM_CACHE = 4096  # remembered term lookups per segment (a query's terms repeat)
_FLUSH_DOCS = 8192  # a build moves its postings from lists into arrays this often


# numpy reads a .npy header with ast.literal_eval, which CPython 3.11 does not make safe to run
# in several threads at once ("SystemError: AST constructor recursion depth mismatch", seen
# when search threads open segments together): headers are read one at a time.
_NPY_HEADERS = threading.Lock()


def load_npy(path: Path, *, mmap: bool = False) -> np.ndarray:
    """A .npy file, memory-mapped read-only when ``mmap`` (a plain ndarray view of the map:
    numpy's memmap subclass costs microseconds per slice)."""
    with _NPY_HEADERS:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    return np.asarray(array)


class Terms(Sequence[bytes]):
    """A sorted vocabulary as one byte blob and offsets: found by binary search, never loaded
    into a dict (a million terms would be ~100 MB of Python objects per process)."""

    def __init__(self, blob: np.ndarray, offsets: np.ndarray) -> None:
        self._blob = blob
        self._bytes = blob.data  # a memoryview: slices without numpy's per-call overhead
        self._offsets = offsets
        self._found: dict[str, int] = {}

    @classmethod
    def from_sorted(cls, terms: Sequence[str]) -> Terms:
        encoded = [t.encode() for t in terms]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        if encoded:
            np.cumsum([len(e) for e in encoded], out=offsets[1:])
        blob = np.frombuffer(b"".join(encoded), dtype=np.uint8) if encoded else np.zeros(0, "u1")
        return cls(blob, offsets)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> bytes:  # type: ignore[override]
        return self._bytes[self._offsets[i] : self._offsets[i + 1]].tobytes()

    def find(self, term: str) -> int:
        """The term's column, or -1."""
        col = self._found.get(term)
        if col is None:
            key = term.encode()
            pos = bisect.bisect_left(self, key)
            col = pos if pos < len(self) and self[pos] == key else -1
            if len(self._found) >= _TERM_CACHE:
                self._found.clear()
            self._found[term] = col
        return col

    def strings(self) -> list[str]:
        data = self._blob.tobytes()
        offs = self._offsets.tolist()
        return [data[offs[i] : offs[i + 1]].decode() for i in range(len(self))]

    @property
    def blob(self) -> np.ndarray:
        return self._blob

    @property
    def offsets(self) -> np.ndarray:
        return self._offsets


@dataclass
class Segment:
    """Documents sorted by id, their lengths, days (yyyymmdd, 0 unknown), source codes, and
    the postings of every term (CSC: ``rows[ptr[c]:ptr[c+1]]`` holds the term's documents)."""

    name: str
    ids: np.ndarray  # bytes (numpy "S"), sorted, unique
    lengths: np.ndarray  # int32
    published: np.ndarray  # int32
    sources: np.ndarray  # uint16 codes into source_names
    source_names: tuple[str, ...]
    terms: Terms
    ptr: np.ndarray  # int64, len(terms) + 1
    rows: np.ndarray  # int32
    tf: np.ndarray  # uint16
    _norms: dict[float, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def postings(self) -> int:
        return len(self.rows)

    def postings_of(self, col: int, *, checked: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """A term's rows and term frequencies; ``checked``: refuse rows outside the segment (a
        damaged file), which a loop without bounds checks would read or write past."""
        start, end = int(self.ptr[col]), int(self.ptr[col + 1])
        rows = self.rows[start:end]
        # one pass: seen unsigned, a negative row is larger than any row in the segment
        unsigned = rows.view(np.dtype(f"u{rows.dtype.itemsize}")) if checked else rows
        if checked and len(rows) and int(unsigned.max()) >= len(self):
            raise StateFileError(
                f"The BM25 index is damaged (segment {self.name}: a posting points outside its "
                "documents). `paperbot state reindex` rebuilds it from the state."
            )
        return rows, self.tf[start:end]

    def norm(self, avg_len: float) -> np.ndarray:
        """K1 * (1 - B + B * length / avg_len) per document, for this avg_len (kept: an index
        uses one avg_len for its lifetime)."""
        cached = self._norms.get(avg_len)
        if cached is None:
            cached = K1 * (1.0 - B + B * self.lengths.astype(np.float32) / avg_len)
            self._norms = {avg_len: cached}  # replaced whole: safe for concurrent readers
        return cached

    def locate(self, ids: np.ndarray) -> np.ndarray:
        """Each id's row in this segment, or -1 (``ids`` as a numpy bytes array)."""
        if not len(self.ids) or not len(ids):
            return np.full(len(ids), -1, dtype=np.int64)
        fits = None
        if ids.dtype.itemsize > self.ids.dtype.itemsize:
            # searched as they are, numpy would widen every id of the segment, each time (14 ms
            # at 10⁶); an id longer than the segment's longest is not in it
            fits = np.char.str_len(ids) <= self.ids.dtype.itemsize
            ids = ids.astype(self.ids.dtype)
        pos = np.searchsorted(self.ids, ids)
        clipped = np.minimum(pos, len(self.ids) - 1)
        found = np.where(self.ids[clipped] == ids, clipped, -1)
        return found if fits is None else np.where(fits, found, -1)

    def prefixed(self, prefixes: Sequence[bytes]) -> list[np.ndarray]:
        """For each prefix, the rows whose id starts with it: one range of the sorted ids,
        found by two binary searches (a prefix longer than the segment's widest id, or ending
        in byte 0xFF, matches nothing here)."""
        width = self.ids.dtype.itemsize
        fits = [p for p in prefixes if 0 < len(p) <= width and p[-1] < 0xFF]
        found = {p: np.zeros(0, np.int64) for p in prefixes}
        if fits and len(self.ids):
            lows = np.array(fits, dtype=self.ids.dtype)
            # the first id past every one that starts with p: p with its last byte raised
            highs = np.array([p[:-1] + bytes([p[-1] + 1]) for p in fits], dtype=self.ids.dtype)
            starts = np.searchsorted(self.ids, lows)
            ends = np.searchsorted(self.ids, highs)
            for p, a, b in zip(fits, starts.tolist(), ends.tolist(), strict=True):
                found[p] = np.arange(a, b, dtype=np.int64)
        return [found[p] for p in prefixes]

    def source_codes(self, wanted: Sequence[str]) -> np.ndarray:
        """The codes of these source names in this segment."""
        codes = [i for i, s in enumerate(self.source_names) if s in set(wanted)]
        return np.array(codes, dtype=self.sources.dtype)

    # --- building ---
    @classmethod
    def from_docs(
        cls,
        docs: Iterable[tuple[str, str, int, str]],
        words: Callable[[str], list[str]],
        term: Callable[[str], str | None],
        name: str | None = None,
    ) -> Segment:
        """A segment of (id, text, yyyymmdd, source) documents; a repeated id keeps the last.

        A document's terms are ``term(w)`` for each of its ``words`` (None: not indexed). Each
        distinct word is mapped to its column once per segment, so the per-word work is one
        dictionary lookup (a build over 10⁵ chunks sees ~10⁷ words and ~10⁵ distinct ones)."""
        ids: list[str] = []
        stamps = array("i")
        srcs = array("H")
        source_codes: dict[str, int] = {}
        vocab: dict[str, int] = {}
        column_of: dict[str, int] = {}  # word -> its term's column; -1: not indexed
        lengths = array("i")
        distinct = array("i")  # distinct terms per document: its postings
        # Postings as Python lists, moved into int32 arrays every `_FLUSH_DOCS` documents:
        # list.extend takes a Counter's keys at C speed (array.extend goes item by item).
        cols: list[int] = []
        tfs: list[int] = []
        col_parts: list[np.ndarray] = []
        tf_parts: list[np.ndarray] = []
        for row, (doc_id, text, stamp, source) in enumerate(docs):
            ids.append(doc_id)
            stamps.append(stamp)
            srcs.append(source_codes.setdefault(source, len(source_codes)))
            found = words(text)
            try:
                columns = list(map(column_of.__getitem__, found))
            except KeyError:  # a word this segment has not seen yet
                for word in found:
                    if word not in column_of:
                        t = term(word)
                        column_of[word] = -1 if t is None else vocab.setdefault(t, len(vocab))
                columns = list(map(column_of.__getitem__, found))
            counts = Counter(columns)
            skipped = counts.pop(-1, 0)
            lengths.append(len(columns) - skipped)
            distinct.append(len(counts))
            cols.extend(counts)
            tfs.extend(counts.values())
            if row % _FLUSH_DOCS == _FLUSH_DOCS - 1:
                col_parts.append(np.array(cols, dtype=np.int32))
                tf_parts.append(np.array(tfs, dtype=np.int32))
                cols, tfs = [], []
        col_parts.append(np.array(cols, dtype=np.int32))
        tf_parts.append(np.array(tfs, dtype=np.int32))
        per_doc = np.frombuffer(distinct, dtype=np.int32)
        return cls.from_postings(
            ids,
            np.frombuffer(lengths, dtype=np.int32),
            np.frombuffer(stamps, dtype=np.int32),
            np.frombuffer(srcs, dtype=np.uint16),
            tuple(source_codes),
            list(vocab),
            np.repeat(np.arange(len(per_doc), dtype=np.int32), per_doc),
            np.concatenate(col_parts),
            np.concatenate(tf_parts),
            name,
        )

    @classmethod
    def from_postings(
        cls,
        ids: Sequence[str] | np.ndarray,
        lengths: np.ndarray,
        published: np.ndarray,
        sources: np.ndarray,
        source_names: tuple[str, ...],
        terms: Sequence[str],
        rows: np.ndarray,
        cols: np.ndarray,
        tfs: np.ndarray,
        name: str | None = None,
    ) -> Segment:
        """Sort documents by id (the last of a repeated id wins) and terms alphabetically."""
        id_arr = _as_bytes(ids)
        n = len(id_arr)
        # last occurrence of each id wins: unique over the reversed array
        uniq, first_rev = np.unique(id_arr[::-1], return_index=True)
        keep = (n - 1 - first_rev).astype(np.int64)  # original rows, in sorted id order
        new_row = np.full(n, -1, dtype=np.int64)
        new_row[keep] = np.arange(len(keep))
        term_order = np.argsort(np.array(terms, dtype=object), kind="stable") if terms else None
        new_col = np.empty(len(terms), dtype=np.int64)
        if term_order is not None:
            new_col[term_order] = np.arange(len(terms))
        sorted_terms = [terms[i] for i in term_order] if term_order is not None else []
        r = new_row[rows] if len(rows) else np.zeros(0, np.int64)
        live = r >= 0
        c = new_col[cols[live]] if len(cols) else np.zeros(0, np.int64)
        matrix = sparse.csc_matrix(
            (np.minimum(tfs[live], 65535).astype(np.uint16), (r[live], c)),
            shape=(len(keep), len(terms)),
        )
        matrix.sort_indices()
        return cls(
            name or new_name(),
            uniq,
            np.ascontiguousarray(lengths[keep], dtype=np.int32),
            np.ascontiguousarray(published[keep], dtype=np.int32),
            np.ascontiguousarray(sources[keep], dtype=np.uint16),
            source_names,
            Terms.from_sorted(sorted_terms),
            matrix.indptr.astype(np.int64),
            matrix.indices.astype(np.int32),
            matrix.data.astype(np.uint16),
        )

    # --- files ---
    def write(self, parent: Path) -> Path:
        """Write as ``parent/name`` (atomically: a temporary directory renamed into place)."""
        final = parent / self.name
        tmp = parent / f".{self.name}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        arrays = {
            "ids": self.ids,
            "lengths": self.lengths,
            "published": self.published,
            "sources": self.sources,
            "ptr": self.ptr,
            "rows": self.rows,
            "tf": self.tf,
            "term_offsets": self.terms.offsets,
        }
        for key, value in arrays.items():
            np.save(tmp / f"{key}.npy", np.ascontiguousarray(value), allow_pickle=False)
        self.terms.blob.tofile(tmp / "terms.bin")
        meta = {"sources": list(self.source_names), "docs": len(self), "terms": len(self.terms)}
        (tmp / "segment.json").write_text(json.dumps(meta))
        os.replace(tmp, final)
        return final

    @classmethod
    def open(cls, path: Path) -> Segment:
        """Map a written segment read-only (nothing is read until a query touches it)."""
        meta = json.loads((path / "segment.json").read_text())
        arrays = {k: load_npy(path / f"{k}.npy", mmap=True) for k in ARRAYS}
        blob_path = path / "terms.bin"
        blob = (
            np.asarray(np.memmap(blob_path, dtype=np.uint8, mode="r"))
            if blob_path.stat().st_size
            else np.zeros(0, np.uint8)
        )
        return cls(
            path.name,
            arrays["ids"],
            arrays["lengths"],
            arrays["published"],
            arrays["sources"],
            tuple(meta["sources"]),
            Terms(blob, arrays["term_offsets"]),
            arrays["ptr"],
            arrays["rows"],
            arrays["tf"],
        )

    def file_bytes(self) -> int:
        arrays = (self.ids, self.lengths, self.published, self.sources, self.ptr, self.rows)
        extra = self.tf.nbytes + self.terms.blob.nbytes + self.terms.offsets.nbytes
        return sum(a.nbytes for a in arrays) + extra


def merge(segments: Sequence[Segment], deleted: Sequence[np.ndarray | None]) -> Segment:
    """One segment holding the live documents of ``segments`` (a later segment's copy of an id
    wins, as it does when reading them)."""
    ids: list[np.ndarray] = []
    lengths, published, sources = [], [], []
    names: dict[str, int] = {}
    all_terms: dict[str, int] = {}
    rows_out, cols_out, tfs_out = [], [], []
    offset = 0
    for seg, dead in zip(segments, deleted, strict=True):
        live = np.ones(len(seg), dtype=bool) if dead is None else ~dead
        new_row = np.full(len(seg), -1, dtype=np.int64)
        new_row[live] = offset + np.arange(int(live.sum()))
        ids.append(np.asarray(seg.ids)[live])
        lengths.append(np.asarray(seg.lengths)[live])
        published.append(np.asarray(seg.published)[live])
        code_map = np.array(
            [names.setdefault(s, len(names)) for s in seg.source_names] or [0], dtype=np.uint16
        )
        sources.append(code_map[np.asarray(seg.sources)[live]])
        col_map = np.array(
            [all_terms.setdefault(t, len(all_terms)) for t in seg.terms.strings()] or [0],
            dtype=np.int64,
        )
        term_of = np.repeat(np.arange(len(seg.terms)), np.diff(np.asarray(seg.ptr)))
        r = new_row[np.asarray(seg.rows)]
        keep = r >= 0
        rows_out.append(r[keep])
        cols_out.append(col_map[term_of[keep]])
        tfs_out.append(np.asarray(seg.tf)[keep])
        offset += int(live.sum())
    return Segment.from_postings(
        np.concatenate(ids) if ids else np.zeros(0, "S1"),
        np.concatenate(lengths) if lengths else np.zeros(0, np.int32),
        np.concatenate(published) if published else np.zeros(0, np.int32),
        np.concatenate(sources) if sources else np.zeros(0, np.uint16),
        tuple(names),
        list(all_terms),
        np.concatenate(rows_out) if rows_out else np.zeros(0, np.int64),
        np.concatenate(cols_out) if cols_out else np.zeros(0, np.int64),
        np.concatenate(tfs_out) if tfs_out else np.zeros(0, np.uint16),
    )


def new_name() -> str:
    return f"seg-{uuid.uuid4().hex[:12]}"


def _as_bytes(ids: Sequence[str] | np.ndarray) -> np.ndarray:
    if isinstance(ids, np.ndarray) and ids.dtype.kind == "S":
        return ids
    encoded = [i.encode() for i in ids]
    return np.array(encoded, dtype=f"S{max((len(e) for e in encoded), default=1) or 1}")


def as_bytes(ids: Iterable[str]) -> np.ndarray:
    """Document ids as the numpy bytes array segments compare them with."""
    return _as_bytes(list(ids))
