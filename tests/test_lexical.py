from __future__ import annotations

from datetime import date
from pathlib import Path

from retrieval.lexical import BM25Index, LexicalDoc, tokenize

DOCS = [
    LexicalDoc("a", "Gaussian splatting for text-to-3D generation", date(2025, 5, 16), "hf_page"),
    LexicalDoc(
        "b", "Contrastive loss with near infinite batch sizes", date(2024, 10, 22), "hf_api"
    ),
    LexicalDoc("c", "Head avatars from text prompts with Gaussians", None, "arxiv"),
]


def test_tokenize_drops_stopwords_and_folds_plurals() -> None:
    assert tokenize("The Models of Gaussians and studies") == ["model", "gaussian", "study"]


def test_bm25_ranks_the_matching_document_first() -> None:
    index = BM25Index.build(DOCS, generation=1)
    results = index.search("batch size contrastive", 3)
    assert results[0][0] == "b"
    assert all(score > 0 for _, score in results)


def test_unknown_terms_and_empty_index_return_nothing() -> None:
    assert BM25Index.build(DOCS, 1).search("zebra", 3) == []
    assert BM25Index.build([], 1).search("gaussian", 3) == []


def test_filters_by_date_and_source() -> None:
    index = BM25Index.build(DOCS, generation=1)
    assert [i for i, _ in index.search("gaussian", 3, since=date(2025, 1, 1))] == ["a"]
    assert [i for i, _ in index.search("gaussian", 3, sources=["arxiv"])] == ["c"]
    # undated chunks never satisfy an upper bound
    assert [i for i, _ in index.search("gaussian", 3, until=date(2030, 1, 1))] == ["a"]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    index = BM25Index.build(DOCS, generation=7)
    path = tmp_path / "bm25.npz"
    index.save(path)
    loaded = BM25Index.load(path)
    assert loaded is not None and loaded.generation == 7
    assert loaded.search("gaussian head", 3) == index.search("gaussian head", 3)


def test_a_corrupt_file_loads_as_none(tmp_path: Path) -> None:
    path = tmp_path / "bm25.npz"
    path.write_bytes(b"not a numpy file")
    assert BM25Index.load(path) is None
