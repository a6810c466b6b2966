"""The whole-paper lexical field: a question's terms spread over two chunks of one abstract
still add up (issue 11), next to the chunk-level scores."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from retrieval import Corpus, RetrievalSettings
from retrieval.lexical import BM25Index, LexicalDoc
from retrieval.normalize import make_paper
from retrieval.search import overlap_by_default
from tests.support.fakes import FakeEmbedder

FILLER = (
    "The method is evaluated on several public benchmarks with careful ablations. "
    "Results are reported with confidence intervals over repeated runs on held out data. "
    "Training uses a standard optimiser schedule with warm up and cosine decay. "
)


def _papers() -> list[Any]:
    spread = make_paper(
        title="Spread: a study of two things",
        abstract=(
            "We tune the xylophone resonator for stable pitch. "
            + FILLER
            + "The same resonator then images a distant quasar."
        ),
        source="file",
    )
    narrow = make_paper(
        title="Narrow: one thing only",
        abstract="A xylophone resonator, nothing else. " + FILLER,
        source="file",
    )
    others = [
        make_paper(
            title=f"Survey {i}",
            abstract=f"A {topic} catalogue from the survey. " + FILLER,
            source="file",
        )
        for i, topic in enumerate(["quasar", "galaxy", "comet", "pulsar"])
    ]
    return [spread, narrow, *others]


def test_a_paper_matching_the_question_across_two_chunks_ranks_first(
    make_settings: Callable[..., RetrievalSettings],
) -> None:
    """ "Spread" is the only paper with both terms, one per chunk; "Narrow" and "Survey 0" have
    one each in a single chunk. Chunk scores alone rank Spread last of the three."""
    settings = make_settings(chunk_tokens=40, chunk_overlap=0)
    query = "xylophone quasar"
    corpus = Corpus(settings, embedder=FakeEmbedder())
    corpus.ingest(_papers())
    spread = next(p.paper_id for p in corpus.state.list_papers() if p.title.startswith("Spread"))
    assert len(corpus.chunks_of([spread])[spread]) == 2
    hits = corpus.search(query, 3)
    corpus.close()
    assert hits[0].paper.title.startswith("Spread")
    assert hits[0].lexical_coverage is not None and hits[0].lexical_coverage > 0.9

    chunks_only = settings.model_copy(update={"paper_lexical_weight": 0.0})
    corpus = Corpus(chunks_only, embedder=FakeEmbedder())
    before = [h.paper.title for h in corpus.search(query, 3)]
    corpus.close()
    assert before[-1].startswith("Spread")  # what the search did before the paper field


def test_paper_index_document_frequency_and_terms_in() -> None:
    index = BM25Index.build(
        [
            LexicalDoc("p1", "Atari games and ImageNet", None, "file"),
            LexicalDoc("p2", "ImageNet only", None, "file"),
        ],
        generation=1,
    )
    assert index.document_frequency("imagenet") == 2
    assert index.document_frequency("atari") == 1
    assert index.document_frequency("zebra") == 0
    assert index.terms_in(["p1", "p2", "nope"], ["atari", "imagenet", "zebra"]) == {
        "p1": {"atari", "imagenet"},
        "p2": {"imagenet"},
        "nope": set(),
    }


def test_the_dense_side_in_a_worker_thread_finds_the_same_hits(
    make_settings: Callable[..., RetrievalSettings],
) -> None:
    """Overlapping the dense side with BM25 (machines with cores to spare) changes when the
    work runs, never what is found; a failing BM25 side still raises its own error."""
    corpus = Corpus(make_settings(chunk_tokens=40, chunk_overlap=0), embedder=FakeEmbedder())
    corpus.ingest(_papers())
    searcher = corpus.searcher()
    found = {}
    for overlap in (False, True):
        searcher.overlap = overlap
        found[overlap] = [
            [(h.chunk.chunk_id, h.score) for h in corpus.search(q, 3)]
            for q in ("xylophone quasar", "galaxy catalogue", "pitch of a resonator")
        ]
    assert found[True] == found[False] and all(found[True])

    def broken() -> BM25Index:
        raise RuntimeError("lexical side failed")

    searcher._lexical = broken
    with pytest.raises(RuntimeError, match="lexical side failed"):
        corpus.search("xylophone quasar", 3)
    corpus.close()


def test_the_dense_side_overlaps_when_a_core_is_left_for_bm25(
    make_settings: Callable[..., RetrievalSettings],
) -> None:
    """Measured at 10⁶ chunks on 2 cores: overlapping pays when the embedding leaves a core
    free (one thread, as `serve` runs it there), and costs when ONNX takes every core."""
    assert not overlap_by_default(0, cpus=2)  # ONNX's default: every core
    assert not overlap_by_default(2, cpus=2)
    assert overlap_by_default(1, cpus=2)
    assert overlap_by_default(0, cpus=8) and overlap_by_default(8, cpus=8)
    assert not overlap_by_default(0, cpus=1) and not overlap_by_default(1, cpus=1)
    cpus = os.cpu_count() or 1
    for threads in (0, 1):
        corpus = Corpus(make_settings(embedding_threads=threads), embedder=FakeEmbedder())
        assert corpus.searcher().overlap == overlap_by_default(threads, cpus)
