"""Ingest behaviour through the Corpus service: idempotence, replacement, no orphans."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np

from retrieval import Corpus, Paper, RecordError, SearchFilters
from retrieval.normalize import make_paper, title_hash_id
from retrieval.sources import page_text
from retrieval.store import ChunkMeta
from tests.support.fakes import FakeEmbedder

ABSTRACT = (
    "We propose a tile-based computation strategy for contrastive loss. "
    "It avoids full materialization of the similarity matrix. "
    "Experiments show batch sizes of millions on a few GPUs."
)


def _sample(path: Path) -> list[Paper | RecordError]:
    return list(page_text.parse(path.read_bytes(), origin=path.name, page_date=date(2025, 5, 16)))


def _in_step(corpus: Corpus) -> bool:
    return corpus.store.ids() == corpus.state.chunk_ids() and not corpus.state.index_dirty


def _arxiv(version: int, abstract: str = ABSTRACT, **extra: object) -> Paper:
    return make_paper(
        title="Breaking the Memory Barrier",
        abstract=abstract,
        source="arxiv",
        arxiv_id=f"2410.17243v{version}",
        **extra,  # type: ignore[arg-type]
    )


def test_sample_ingest_then_reingest_changes_and_embeds_nothing(
    fake_corpus: Corpus, fake_embedder: FakeEmbedder, sample_page: Path
) -> None:
    first = fake_corpus.ingest(_sample(sample_page))
    assert len(first.new) == 30 and not first.failed
    assert fake_corpus.state.count_papers() == 30
    assert _in_step(fake_corpus)
    embedded, generation = fake_embedder.texts_embedded, fake_corpus.state.generation

    second = fake_corpus.ingest(_sample(sample_page))
    assert len(second.unchanged) == 30 and not (second.new or second.updated)
    assert fake_embedder.texts_embedded == embedded
    assert fake_corpus.state.generation == generation
    assert _in_step(fake_corpus)


def test_changed_abstract_replaces_its_chunks_without_orphans(fake_corpus: Corpus) -> None:
    fake_corpus.ingest([_arxiv(1)])
    old_ids = fake_corpus.state.chunk_ids()
    report = fake_corpus.ingest([_arxiv(2, ABSTRACT.replace("millions", "tens of millions"))])
    assert report.updated == ["2410.17243"]
    assert fake_corpus.state.chunk_ids() != old_ids
    assert _in_step(fake_corpus)
    assert "tens of millions" in fake_corpus.paper("2410.17243").abstract


def test_an_older_version_never_replaces_a_newer_one(fake_corpus: Corpus) -> None:
    fake_corpus.ingest([_arxiv(3, ABSTRACT + " Version three.")])
    report = fake_corpus.ingest([_arxiv(1)])
    assert not report.updated
    assert "older than the stored v3" in report.skipped[0].reason
    assert fake_corpus.paper("2410.17243v1").version == 3


def test_duplicates_in_one_batch_keep_the_newest_version(fake_corpus: Corpus) -> None:
    report = fake_corpus.ingest(
        [_arxiv(1), _arxiv(2, ABSTRACT + " Newer."), _arxiv(2, ABSTRACT + " Newer.")]
    )
    assert report.new == ["2410.17243"]
    assert len(report.skipped) == 2 and all("duplicate" in s.reason for s in report.skipped)
    assert fake_corpus.paper("2410.17243").version == 2


def test_failed_records_are_reported_and_good_ones_land(fake_corpus: Corpus) -> None:
    bad = RecordError("feed.jsonl", "line 2", "missing title")
    report = fake_corpus.ingest([_arxiv(1), bad])
    assert report.new == ["2410.17243"] and report.failed == [bad]


def test_metadata_change_updates_without_embedding(
    fake_corpus: Corpus, fake_embedder: FakeEmbedder
) -> None:
    fake_corpus.ingest([_arxiv(1, upvotes=3, categories=["cs.LG"])])
    embedded = fake_embedder.texts_embedded
    report = fake_corpus.ingest([_arxiv(1, upvotes=64)])
    assert report.metadata_updated == ["2410.17243"]
    assert fake_embedder.texts_embedded == embedded
    paper = fake_corpus.paper("2410.17243")
    assert paper.upvotes == 64 and paper.categories == ("cs.LG",)  # a missing field keeps its value


def test_a_title_only_record_is_merged_into_its_arxiv_twin(fake_corpus: Corpus) -> None:
    page_record = make_paper(
        title="Breaking the Memory Barrier", abstract=ABSTRACT, source="hf_page"
    )
    fake_corpus.ingest([page_record])
    report = fake_corpus.ingest([_arxiv(1)])
    assert report.new == ["2410.17243"]
    assert fake_corpus.state.get_paper(title_hash_id("Breaking the Memory Barrier")) is None
    assert fake_corpus.state.count_papers() == 1 and _in_step(fake_corpus)
    again = fake_corpus.ingest([page_record])
    assert "already stored as arXiv 2410.17243" in again.skipped[0].reason


def test_delete_keeps_every_index_in_step(fake_corpus: Corpus, sample_page: Path) -> None:
    fake_corpus.ingest(_sample(sample_page))
    target = fake_corpus.search("GVGEN volumetric Gaussian text-to-3D", 1)[0].paper
    assert fake_corpus.delete([target.paper_id]) == [target.paper_id]
    assert _in_step(fake_corpus) and fake_corpus.state.count_papers() == 29
    assert all(h.paper.paper_id != target.paper_id for h in fake_corpus.search("GVGEN", 10))


def test_search_returns_one_hit_per_paper_with_filters(
    fake_corpus: Corpus, sample_page: Path
) -> None:
    fake_corpus.ingest(_sample(sample_page))
    fake_corpus.ingest([_arxiv(1, published=date(2024, 10, 22))])
    hits = fake_corpus.search("Gaussian splatting 3D", 10)
    assert len({h.paper.paper_id for h in hits}) == len(hits) == 10
    assert [h.rank for h in hits] == list(range(1, 11))
    only_2024 = fake_corpus.search(
        "contrastive loss batch", 5, filters=SearchFilters(until=date(2024, 12, 31))
    )
    assert [h.paper.paper_id for h in only_2024] == ["2410.17243"]
    page_only = fake_corpus.search(
        "contrastive loss batch", 5, filters=SearchFilters(sources=("hf_page",))
    )
    assert all(h.paper.source == "hf_page" for h in page_only)


def test_reconcile_repairs_a_vector_store_left_behind_by_a_crash(
    fake_corpus: Corpus, fake_embedder: FakeEmbedder, sample_page: Path
) -> None:
    fake_corpus.ingest(_sample(sample_page))
    some_ids = sorted(fake_corpus.state.chunk_ids())[:5]
    fake_corpus.store.delete(some_ids)  # as if killed before the vectors were written
    orphan = np.ones((1, fake_embedder.dim), dtype=np.float32) / np.sqrt(fake_embedder.dim)
    fake_corpus.store.upsert(["ghost#0:abc"], orphan, [ChunkMeta("ghost", None, "file")])
    fake_corpus.state.set_meta("index_dirty", "1")
    embedded = fake_embedder.texts_embedded

    added, removed = fake_corpus.repair_if_needed()
    assert (added, removed) == (5, 1)
    assert _in_step(fake_corpus)
    assert fake_embedder.texts_embedded == embedded  # vectors came from the cache


def test_lexical_index_follows_the_state_generation(fake_corpus: Corpus, sample_page: Path) -> None:
    fake_corpus.ingest(_sample(sample_page))
    index = fake_corpus.lexical_index()
    assert (
        index.generation == fake_corpus.state.generation
        and len(index) == fake_corpus.state.count_chunks()
    )
    reopened = Corpus(fake_corpus.settings, embedder=fake_corpus.embedder)
    assert reopened.lexical_index().generation == index.generation  # loaded from disk, not rebuilt


def test_an_oversized_search_query_is_refused_clearly(fake_corpus: Corpus) -> None:
    import pytest

    from retrieval import PaperbotError

    with pytest.raises(PaperbotError, match="keep it under 2,000"):
        fake_corpus.search("word " * 1000)
    assert fake_corpus.search("   ") == []


def test_an_abstract_quoting_a_special_token_is_ingested_as_text(fake_corpus: Corpus) -> None:
    """tiktoken's `encode` refuses text that spells a special token; an LLM paper may quote
    one. The corpus chunks and counts it as the text it is."""
    abstract = "We study what <|endoftext|> does to pretraining. " + ABSTRACT
    report = fake_corpus.ingest([_arxiv(1, abstract)])
    assert report.new and not report.failed
    (chunk,) = fake_corpus.chunks_of([report.new[0]])[report.new[0]]
    assert "<|endoftext|>" in chunk.text
    assert fake_corpus.count_tokens("<|endoftext|>") > 1  # its characters, not the one token
    assert _in_step(fake_corpus)
