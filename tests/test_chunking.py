from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from retrieval.chunking import chunk_paper
from retrieval.normalize import make_paper
from retrieval.tokens import get_encoding
from tests.support.fakes import WordCodec


def _paper(abstract: str, title: str = "A Paper About Things") -> object:
    return make_paper(title=title, abstract=abstract, source="file")


def test_short_abstract_is_one_chunk_with_the_title_for_context() -> None:
    paper = _paper("One sentence here. Another one there.")
    chunks = chunk_paper(paper, WordCodec(), max_tokens=50, overlap=10)  # type: ignore[arg-type]
    assert len(chunks) == 1
    assert chunks[0].text == "One sentence here. Another one there."
    assert chunks[0].embed_text.startswith("A Paper About Things\n\n")


def test_chunks_are_sentence_aligned_bounded_and_overlapping() -> None:
    sentences = [f"Sentence number {i} has exactly seven words." for i in range(12)]
    paper = _paper(" ".join(sentences))
    chunks = chunk_paper(paper, WordCodec(), max_tokens=21, overlap=7)  # type: ignore[arg-type]
    assert all(c.n_tokens <= 21 for c in chunks)
    for chunk in chunks:  # every chunk is made of whole sentences
        assert all(s in sentences for s in chunk.text.replace(". ", ".\n").splitlines())
    for before, after in itertools.pairwise(chunks):
        assert before.text.split(". ")[-1].rstrip(".") in after.text  # one sentence of overlap
    covered = " ".join(c.text for c in chunks)
    assert all(s in covered for s in sentences)


def test_chunk_ids_are_deterministic_and_change_with_the_text() -> None:
    a = chunk_paper(_paper("Alpha beta gamma delta."), WordCodec(), 50, 5)  # type: ignore[arg-type]
    b = chunk_paper(_paper("Alpha beta gamma delta."), WordCodec(), 50, 5)  # type: ignore[arg-type]
    c = chunk_paper(_paper("Alpha beta gamma epsilon."), WordCodec(), 50, 5)  # type: ignore[arg-type]
    assert [x.chunk_id for x in a] == [x.chunk_id for x in b]
    assert a[0].chunk_id != c[0].chunk_id


def test_overlap_must_be_smaller_than_size() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_paper(_paper("Alpha beta gamma delta."), WordCodec(), 10, 10)  # type: ignore[arg-type]


def test_real_tiktoken_splits_an_overlong_sentence_on_token_boundaries(tiktoken_dir: Path) -> None:
    encoding = get_encoding("cl100k_base", tiktoken_dir)
    long_sentence = " ".join(f"word{i}" for i in range(400)) + "."
    chunks = chunk_paper(_paper(long_sentence), encoding, max_tokens=100, overlap=20)  # type: ignore[arg-type]
    assert len(chunks) > 3
    assert all(len(encoding.encode(c.text)) <= 101 for c in chunks)  # decode/encode may merge one


def test_sample_abstracts_chunk_within_budget(tiktoken_dir: Path, sample_page: Path) -> None:
    from retrieval.sources import page_text

    encoding = get_encoding("cl100k_base", tiktoken_dir)
    papers = [
        p
        for p in page_text.parse(sample_page.read_bytes(), origin="sample")
        if hasattr(p, "abstract")
    ]
    for paper in papers:
        chunks = chunk_paper(paper, encoding, max_tokens=160, overlap=32)  # type: ignore[arg-type]
        assert chunks and all(c.n_tokens <= 160 for c in chunks)
        assert chunks[0].text.split(". ")[0] in paper.abstract  # type: ignore[attr-defined]
