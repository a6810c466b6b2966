"""A query's BM25 scores: the best N (found through a lower bound from the rarest term) and the
lookups of single documents are the textbook BM25 scores, over segments, tombstones, filters."""

from __future__ import annotations

import math
from collections import Counter
from datetime import date
from typing import Any

import numpy as np
import pytest

from retrieval import lexical_scores, lexical_terms
from retrieval.errors import StateFileError
from retrieval.lexical import BM25Index, LexicalDoc, tokenize
from retrieval.lexical_scores import scatter_add
from retrieval.lexical_segments import K1, B, Segment

# a Zipf-like vocabulary: a few words in most documents, many in few (what makes the rarest
# term's documents a useful sample, and what a real corpus looks like)
VOCAB = [f"w{i:03d}" for i in range(300)]
WEIGHTS = 1.0 / np.arange(1, len(VOCAB) + 1)
WEIGHTS /= WEIGHTS.sum()


def _docs(n: int, rng: np.random.Generator, prefix: str) -> list[LexicalDoc]:
    docs = []
    for i in range(n):
        words = rng.choice(VOCAB, int(rng.integers(4, 30)), p=WEIGHTS)
        day = date(2024, 1 + i % 12, 1 + i % 28) if i % 7 else None
        docs.append(
            LexicalDoc(f"{prefix}{i:05d}", " ".join(words), day, ("arxiv", "hf")[i % 3 == 0])
        )
    return docs


def _reference(docs: dict[str, LexicalDoc], query: str, keep: set[str]) -> dict[str, float]:
    """Okapi BM25 in float64, straight from the formula, over the live documents."""
    counts = {d: Counter(tokenize(doc.text)) for d, doc in docs.items()}
    n = len(docs)
    avg = sum(sum(c.values()) for c in counts.values()) / n
    df = Counter(t for c in counts.values() for t in c)
    qtf = Counter(t for t in tokenize(query) if df[t])
    scores = {}
    for d, c in counts.items():
        if d not in keep:
            continue
        length = sum(c.values())
        total = 0.0
        for term, q in qtf.items():
            tf = c.get(term, 0)
            if not tf:
                continue
            idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
            total += q * idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / avg))
        if total > 0:
            scores[d] = total
    return scores


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_top_and_lookups_are_the_textbook_scores_over_segments_and_filters(seed: int) -> None:
    rng = np.random.default_rng(seed)
    parts = [_docs(int(rng.integers(150, 400)), rng, f"s{k}-") for k in range(3)]
    # the last part rewrites some documents of the first: the old copies are tombstoned
    parts[2] += [
        LexicalDoc(d.chunk_id, "w299 w298 " + d.text, d.published, d.source) for d in parts[0][:40]
    ]
    segments = [
        Segment.from_docs(
            (
                (
                    d.chunk_id,
                    d.text,
                    int(d.published.strftime("%Y%m%d")) if d.published else 0,
                    d.source,
                )
                for d in p
            ),
            lexical_terms.words,
            lexical_terms.term,
        )
        for p in parts
    ]
    replaced = {d.chunk_id for d in parts[2]}
    deleted = [
        np.isin(segments[0].ids, np.array(sorted(replaced), dtype=segments[0].ids.dtype)),
        None,
        None,
    ]
    index = BM25Index(segments, generation=1, deleted=deleted)
    live: dict[str, LexicalDoc] = {}
    for part in parts:
        live.update({d.chunk_id: d for d in part})
    assert len(index) == len(live)

    def allowed(doc: LexicalDoc, since: Any, until: Any, sources: Any) -> bool:
        if since and not (doc.published and doc.published >= since):
            return False
        if until and not (doc.published and doc.published <= until):
            return False
        return not sources or doc.source in sources

    only = set(rng.choice(sorted(live), 200, replace=False).tolist())
    filters: list[dict[str, Any]] = [
        {},
        {"since": date(2024, 4, 1)},
        {"until": date(2024, 6, 30), "sources": ["hf"]},
        {"only": only},
    ]
    for _ in range(12):
        # a common word, a middling one and a rare one, sometimes repeated
        words = [
            VOCAB[int(rng.integers(0, 5))],
            VOCAB[int(rng.integers(5, 60))],
            VOCAB[int(rng.integers(60, 300))],
        ]
        if rng.random() < 0.3:
            words.append(words[1])
        query = " ".join(words)
        for flt in filters:
            if "only" in flt:
                keep = only
            else:
                keep = {
                    d
                    for d, doc in live.items()
                    if allowed(doc, flt.get("since"), flt.get("until"), flt.get("sources"))
                }
            expected = _reference(live, query, keep)
            scores = index.query(query, **flt)
            for n in (1, 5, 25):
                top = scores.top(n)
                ranked = sorted(expected.values(), reverse=True)
                assert len(top) == min(n, len(ranked))
                for doc_id, score in top:
                    assert doc_id in keep
                    assert score == pytest.approx(expected[doc_id], rel=1e-5)
                if top:  # nothing left out scores above the last one returned
                    assert ranked[len(top) - 1] == pytest.approx(top[-1][1], rel=1e-5)
                    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)
            sample = [*rng.choice(sorted(live), 30, replace=False).tolist(), "missing"]
            got = scores.of(sample)
            for doc_id in sample:
                assert got[doc_id] == pytest.approx(expected.get(doc_id, 0.0), rel=1e-5, abs=1e-7)


def test_a_lookup_and_the_top_agree_to_the_bit() -> None:
    """Fusion compares a chunk's BM25 score from `of` with another's from `top`: the same
    document must get the very same float either way."""
    rng = np.random.default_rng(7)
    docs = _docs(3000, rng, "d")
    index = BM25Index.build(docs, generation=1)
    ids = [d.chunk_id for d in docs]
    for query in ("w000 w010 w200", "w001 w001 w050", "w003 w299", "w000 w001 w002"):
        # a fresh index: the lookups compute weights at positions, none cached by a top
        every = BM25Index(index.segments, 1).query(query).of(ids)
        top = index.query(query).top(40)
        assert top
        assert [every[d] for d, _ in top] == [s for _, s in top]
        # and the top is exactly every document ranked by those scores, ties by id
        ranked = sorted(((-s, d) for d, s in every.items() if s > 0))[:40]
        assert top == [(d, -s) for s, d in ranked]
        # once a top is computed, lookups read its score arrays: still the same floats,
        # filters applied as before
        for flt in ({}, {"since": date(2024, 4, 1)}, {"only": set(ids[::3])}):
            looked_up = BM25Index(index.segments, 1).query(query, **flt).of(ids)
            scores = BM25Index(index.segments, 1).query(query, **flt)
            scores.top(5)
            assert scores.of(ids) == looked_up


@pytest.mark.parametrize("qtf", [1, 3])
def test_the_compiled_scatter_add_adds_the_same_floats_as_numpy(qtf: int) -> None:
    """SciPy's loop and numpy's scatter-add give bit-identical sums, long columns and short
    (and the loop is the one in use here: its check at import passed)."""
    assert lexical_scores._COMPILED
    rng = np.random.default_rng(qtf)
    n = 50_000
    compiled = np.zeros(n, np.float32)
    plain = np.zeros(n, np.float32)
    for size in (30_000, 5_000, 100, 10):
        rows = np.sort(rng.choice(n, size, replace=False)).astype(np.int32)
        weight = rng.random(size, dtype=np.float32) * np.float32(7.3)
        scatter_add(compiled, rows, weight, qtf)
        scatter_add(plain, rows, weight, qtf, compiled=False)
    assert compiled.tobytes() == plain.tobytes()
    assert np.count_nonzero(compiled) > 30_000


@pytest.mark.parametrize("bad_row", [10, -1, -(2**31)])
def test_a_posting_outside_its_segment_is_a_damaged_index_not_a_crash(bad_row: int) -> None:
    """The compiled loop trusts the rows: a column pointing past its segment's documents (or
    before them) is refused before it is scored, with the command that rebuilds the index."""
    docs = _docs(500, np.random.default_rng(3), "d")
    seg = BM25Index.build(docs, generation=1).segments[0]
    rows = np.array(seg.rows)
    col = seg.terms.find("w000")
    start = int(seg.ptr[col + 1]) - 1
    # the last posting of the commonest term
    rows[start] = len(seg) + bad_row if bad_row > 0 else bad_row
    damaged = Segment(
        seg.name, seg.ids, seg.lengths, seg.published, seg.sources, seg.source_names,
        seg.terms, seg.ptr, rows, seg.tf,
    )  # fmt: skip
    with pytest.raises(StateFileError, match="state reindex"):
        BM25Index([damaged], 1).query("w000 w001").top(10)
