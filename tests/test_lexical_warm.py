"""Warming a BM25 field's frequent columns: the same scores, bit for bit, within the budget;
stopped by a newer index; done again by the corpus after every index change."""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from retrieval import lexical_terms, lexical_warm
from retrieval.lexical import BM25Index, LexicalDoc
from retrieval.lexical_segments import Segment
from retrieval.lexical_warm import ColumnWarmer, Warmed, warm_columns

WORDS = [f"w{i}" for i in range(60)]


def _segments(n: int, parts: int, seed: int = 3) -> list[Segment]:
    """Documents whose words follow a Zipf-like law (a few long columns, many short)."""
    from retrieval.lexical import _rows

    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(WORDS) + 1)
    weights /= weights.sum()
    docs = [
        LexicalDoc(
            f"d{i:05d}",
            " ".join(rng.choice(WORDS, int(rng.integers(4, 30)), p=weights)),
            date(2024, 1 + i % 12, 1),
            "arxiv",
        )
        for i in range(n)
    ]
    size = n // parts
    return [
        Segment.from_docs(_rows(docs[i : i + size]), lexical_terms.words, lexical_terms.term)
        for i in range(0, n, size)
    ]


def _index(segments: list[Segment]) -> BM25Index:
    return BM25Index(segments, generation=7)


QUERIES = ("w0 w1 w5", "w2 w2 w40 w59", "w3 w7 w11 w13 w17 w19 w23", "w58 w0")


@pytest.fixture
def small_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lexical_warm, "MIN_POSTINGS", 50)


def test_warmed_columns_give_the_same_scores_bit_for_bit(small_columns: None) -> None:
    segments = _segments(3000, 3)
    warm = _index(segments)
    done = warm_columns(warm, 10**9)
    assert done.complete and done.columns > 0 and done.generation == 7
    ids = [f"d{i:05d}" for i in range(0, 3000, 37)]
    since = date(2024, 6, 1)
    for query in QUERIES:
        # each against an index that never weighted a column: its lookups binary-search the
        # postings and weigh only the positions they need (`postings_weights`)
        assert warm.query(query).of(ids) == _index(segments).query(query).of(ids)
        assert warm.query(query).top(40) == _index(segments).query(query).top(40)
        warm_since = warm.query(query, since=since).of(ids)
        assert warm_since == _index(segments).query(query, since=since).of(ids)
        assert warm.query(query, since=since).top(40) == (
            _index(segments).query(query, since=since).top(40)
        )


def test_the_longest_columns_are_warmed_first_within_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lexical_warm, "MIN_POSTINGS", 200)
    index = _index(_segments(3000, 2))
    lengths = sorted(
        (
            (int(n), s, c)
            for s, seg in enumerate(index.segments)
            for c, n in enumerate(np.diff(seg.ptr))
            if n >= 200
        ),
        key=lambda t: (-t[0], t[1], t[2]),  # longest first, ties by segment and column
    )
    budget = sum(n for n, _, _ in lengths[:5]) * 4  # the five longest, in bytes of float32
    assert warm_columns(_index(index.segments), 10**9).columns == len(lengths)
    done = warm_columns(index, budget)
    assert (done.columns, done.nbytes) == (5, budget)
    kept = set(index._columns)
    assert kept == {(id(index.segments[s]), c) for _, s, c in lengths[:5]}
    short = [
        (s, c)
        for s, seg in enumerate(index.segments)
        for c, n in enumerate(np.diff(seg.ptr))
        if n < 200
    ]
    assert short and not kept & {(id(index.segments[s]), c) for s, c in short}


def test_short_columns_are_left_to_the_queries() -> None:
    index = _index(_segments(600, 1))  # no column reaches the default MIN_POSTINGS
    done = warm_columns(index, 10**9)
    assert (done.columns, done.nbytes, done.complete) == (0, 0, True)
    assert not index._columns


def test_a_stop_ends_the_warm_up_between_columns(small_columns: None) -> None:
    stop = threading.Event()
    stop.set()
    index = _index(_segments(2000, 2))
    done = warm_columns(index, 10**9, stop)
    assert not done.complete and done.columns == 0 and not index._columns
    small = _index(_segments(300, 1))  # no column to warm: stopped is still not complete
    assert not warm_columns(small, 10**9, stop).complete


def test_a_newer_set_stops_the_warm_up_in_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    started, calls = threading.Event(), []
    real = lexical_warm.warm_columns
    first = _index(_segments(600, 1))

    def slow(index: BM25Index, budget: int, stop: threading.Event | None = None) -> Warmed:
        calls.append(index)
        if index is first:  # a long warm-up: runs until told to stop
            started.set()
            assert stop is not None and stop.wait(30)
        return real(index, budget, stop)

    monkeypatch.setattr(lexical_warm, "warm_columns", slow)
    warmer = ColumnWarmer(10**8)
    warmer.warm([("chunks", first)])
    assert started.wait(30)
    second = _index(_segments(600, 1, seed=9))
    warmer.warm([("chunks", second)])
    assert warmer.wait(30)
    assert calls == [first, second]
    assert warmer.last["chunks"].complete  # the second's; the stopped first recorded nothing
    warmer.close()
    warmer.warm([("chunks", _index(_segments(600, 1, seed=11)))])  # closed: nothing starts
    assert len(calls) == 2


def test_the_warmer_warms_each_new_set_once_in_the_background(small_columns: None) -> None:
    warmer = ColumnWarmer(10**8)
    first = {"chunks": _index(_segments(2000, 2)), "papers": _index(_segments(900, 1, seed=4))}
    warmer.warm(first.items())
    assert warmer.wait(30)
    assert set(warmer.last) == {"chunks", "papers"} and warmer.last["chunks"].columns > 0
    thread = warmer._thread
    warmer.warm(first.items())  # the same indexes: nothing to do
    assert warmer._thread is thread
    second = {"chunks": _index(_segments(2000, 2, seed=5)), "papers": first["papers"]}
    warmer.warm(second.items())
    assert warmer.wait(30) and warmer._thread is not thread
    assert second["chunks"]._columns
    warmer.close()
    off = ColumnWarmer(0)
    off.warm(first.items())
    assert off._thread is None and off.wait(0)


def test_a_damaged_segment_stops_the_warm_up_with_a_warning(
    small_columns: None, caplog: pytest.LogCaptureFixture
) -> None:
    segment = _segments(2000, 1)[0]
    segment.rows = segment.rows.copy()
    segment.rows[-1] = 10**6  # a posting past the segment's end
    warmer = ColumnWarmer(10**8)
    warmer.warm([("chunks", _index([segment]))])
    assert warmer.wait(30)
    assert "chunks" not in warmer.last
    assert "BM25 warm-up of the chunks field stopped" in caplog.text


@pytest.mark.integration
def test_the_corpus_warms_its_fields_again_after_each_ingest(
    fake_corpus: object, sample_page: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retrieval import Corpus
    from retrieval.normalize import make_paper
    from retrieval.sources import page_text

    monkeypatch.setattr(lexical_warm, "MIN_POSTINGS", 2)
    assert isinstance(fake_corpus, Corpus)
    fake_corpus.ingest(
        page_text.parse(sample_page.read_bytes(), origin="page", page_date=date(2025, 5, 16))
    )
    warmer = fake_corpus.keep_lexical_warm()
    assert warmer.wait(30)
    generation = fake_corpus.state.generation
    assert {f: w.generation for f, w in warmer.last.items()} == {
        "chunks": generation,
        "papers": generation,
    }
    assert fake_corpus.lexical_index()._columns  # the fields the searches use were warmed
    fake_corpus.ingest(
        [make_paper(title="Zebra stripes", abstract="Zebra stripes confuse flies.", source="file")]
    )
    assert warmer.wait(30)
    assert warmer.last["chunks"].generation == fake_corpus.state.generation > generation
    assert fake_corpus.paper_lexical_index()._columns
    hits = fake_corpus.search("zebra stripes flies", 3)
    assert hits and hits[0].paper.title == "Zebra stripes"
