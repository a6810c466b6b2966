"""The corpus API the answering layer uses: vectors through the embedding cache, a paper's
chunks, and the cache of recomputable results (TL;DRs, topic names)."""

from __future__ import annotations

import numpy as np

from retrieval import Corpus, Paper
from retrieval.normalize import make_paper
from tests.support.fakes import FakeEmbedder

ABSTRACT = (
    "We propose a tile-based computation strategy for contrastive loss. "
    "It avoids full materialization of the similarity matrix. "
    "Experiments show batch sizes of millions on a few GPUs."
)


def _paper(title: str, abstract: str = ABSTRACT) -> Paper:
    return make_paper(title=title, abstract=abstract, source="file")


def test_vectors_read_the_cache_and_embed_only_the_missing_texts_in_one_batch(
    fake_corpus: Corpus, fake_embedder: FakeEmbedder
) -> None:
    first = fake_corpus.vectors(["alpha beta", "gamma delta", "alpha beta"])
    assert first.shape == (3, fake_embedder.dim) and first.dtype == np.float32
    assert fake_embedder.calls == [["alpha beta", "gamma delta"]]  # once each, one batch
    assert np.array_equal(first[0], first[2])
    again = fake_corpus.vectors(["gamma delta", "epsilon", "alpha beta"])
    assert fake_embedder.calls[-1] == ["epsilon"]  # the others came from the cache
    assert np.array_equal(again[0], first[1]) and np.array_equal(again[2], first[0])
    assert np.allclose(again[1], fake_embedder.embed(["epsilon"])[0])


def test_vectors_without_cache_neither_read_nor_write_it(
    fake_corpus: Corpus, fake_embedder: FakeEmbedder
) -> None:
    fake_corpus.vectors(["cached text"])
    rows = fake_corpus.vectors(["cached text", "one-off sentence"], cache=False)
    assert fake_embedder.calls[-1] == ["cached text", "one-off sentence"]
    assert rows.shape == (2, fake_embedder.dim)
    fake_corpus.vectors(["one-off sentence"])  # was not stored by the uncached call
    assert fake_embedder.calls[-1] == ["one-off sentence"]
    assert fake_corpus.vectors([]).shape[0] == 0


def test_chunk_vectors_come_from_the_ingest_cache(
    fake_corpus: Corpus, fake_embedder: FakeEmbedder
) -> None:
    fake_corpus.ingest([_paper("Breaking the Memory Barrier")])
    (paper,) = fake_corpus.papers()
    (found,) = fake_corpus.chunks_of([paper.paper_id]).values()
    calls = len(fake_embedder.calls)
    fake_corpus.vectors([c.embed_text for c in found])
    assert len(fake_embedder.calls) == calls  # ingest stored them


def test_chunks_of_in_reading_order(fake_corpus: Corpus) -> None:
    long = " ".join(f"Sentence {i} says something about topic {i} in detail." for i in range(60))
    fake_corpus.ingest([_paper("A long one", long), _paper("A short one")])
    by_title = {p.title: p.paper_id for p in fake_corpus.papers()}
    chunks = fake_corpus.chunks_of([by_title["A long one"], by_title["A short one"], "nope"])
    assert set(chunks) == {by_title["A long one"], by_title["A short one"]}
    long_chunks = chunks[by_title["A long one"]]
    assert len(long_chunks) > 1 and [c.index for c in long_chunks] == list(range(len(long_chunks)))
    assert all(c.paper_id == by_title["A long one"] for c in long_chunks)


def test_cache_of_recomputable_results(fake_corpus: Corpus) -> None:
    assert fake_corpus.cached("tldr", "k") is None
    fake_corpus.cache("tldr", "k", {"text": "A TL;DR.", "mode": "llm"})
    fake_corpus.cache("topic", "k", "Text-to-3D")
    assert fake_corpus.cached("tldr", "k") == {"text": "A TL;DR.", "mode": "llm"}
    assert fake_corpus.cached("topic", "k") == "Text-to-3D"
    fake_corpus.cache("topic", "k", "Replaced")
    assert fake_corpus.cached("topic", "k") == "Replaced"
