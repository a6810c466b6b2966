"""HNSW parameters (PAPERBOT_HNSW_M, _EF_CONSTRUCTION, _EF_SEARCH): applied when a collection
is created, read back from Chroma; an existing collection keeps the M and ef_construction it
was built with (only a rebuild changes them, and stats say so), while its owner applies
ef_search in place."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from retrieval import Corpus, Paper, RetrievalSettings
from retrieval.chroma_client import Hnsw
from retrieval.sources import page_text
from tests.support.chroma_server import ChromaServer, free_port
from tests.support.fakes import FakeEmbedder


def _papers(sample_page: Path) -> list[Paper]:
    records = page_text.parse(sample_page.read_bytes(), origin="s", page_date=date(2025, 5, 16))
    return [r for r in records if isinstance(r, Paper)]


def _configuration(corpus: Corpus) -> dict[str, object]:
    return dict(corpus.store.collection.configuration_json["hnsw"])


def test_a_new_collection_gets_the_settings_parameters_and_cosine(
    make_settings: Callable[..., RetrievalSettings], sample_page: Path
) -> None:
    settings = make_settings(hnsw_m=24, hnsw_ef_construction=150, hnsw_ef_search=60)
    corpus = Corpus(settings, embedder=FakeEmbedder())
    try:
        assert corpus.store.hnsw_status().actual is None  # nothing created by reading
        papers = _papers(sample_page)
        corpus.ingest(papers[:8])
        stored = _configuration(corpus)
        assert stored["space"] == "cosine"
        assert (stored["max_neighbors"], stored["ef_construction"], stored["ef_search"]) == (
            24,
            150,
            60,
        )
        status = corpus.store.hnsw_status()
        assert status.actual == Hnsw(24, 150, 60) and not status.rebuild_needed
        assert status.describe() == "HNSW M=24, ef_construction=150, ef_search=60"
        # Cosine as before: a chunk's own vector is its nearest neighbour, similarity 1.
        chunk = corpus.chunks_of([papers[2].paper_id])[papers[2].paper_id][0]
        vector = corpus.embedder.embed([chunk.embed_text])[0]
        best, similarity = corpus.store.query(vector, 1)[0]
        assert best == chunk.chunk_id and similarity == pytest.approx(1.0, abs=1e-5)
    finally:
        corpus.close()


def test_an_existing_collection_keeps_its_build_parameters_and_takes_ef_search(
    make_settings: Callable[..., RetrievalSettings],
    sample_page: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    papers = _papers(sample_page)
    data_dir = tmp_path / "data"
    # Built by an earlier paperbot: Chroma's defaults (M=16, ef_construction=100, ef=100).
    old = make_settings(data_dir=data_dir, hnsw_m=16, hnsw_ef_construction=100, hnsw_ef_search=100)
    first = Corpus(old, embedder=FakeEmbedder())
    first.ingest(papers[:5])
    vectors = first.store.count()
    first.close()
    # as in a new process: Chroma knows the "paperbot" function only once registered (creating
    # a collection with it does that; opening one does not)
    from chromadb.utils.embedding_functions import known_embedding_functions

    monkeypatch.delitem(known_embedding_functions, "paperbot")

    new = make_settings(data_dir=data_dir, hnsw_m=32, hnsw_ef_construction=400, hnsw_ef_search=40)
    reader = Corpus(new, embedder=FakeEmbedder())
    assert reader.search(papers[1].title, 1)  # searching changes nothing
    status = reader.store.hnsw_status()
    assert status.actual == Hnsw(16, 100, 100) and status.rebuild_needed
    line = status.describe()
    assert line.startswith("HNSW M=16, ef_construction=100, ef_search=100;")
    assert "M=32, ef_construction=400" in line and "`paperbot state reindex`" in line
    assert "PAPERBOT_HNSW_EF_SEARCH=40" in line
    reader.close()

    owner = Corpus(new, embedder=FakeEmbedder())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        owner.ingest(papers[5:8])  # the owner's next write applies ef_search, and only that
    assert not [w for w in caught if "Could not reconstruct" in str(w.message)]
    assert owner.store.hnsw_status().actual == Hnsw(16, 100, 40)
    assert owner.store.count() > vectors  # the same collection, not a silent re-index
    assert owner.search(papers[6].title, 1)[0].paper.paper_id == papers[6].paper_id
    owner.close()


def test_a_reader_never_changes_a_shared_collection(
    chroma_server: ChromaServer,
    make_settings: Callable[..., RetrievalSettings],
    sample_page: Path,
    tmp_path: Path,
) -> None:
    common = {
        "chroma_host": chroma_server.host,
        "chroma_port": chroma_server.port,
        "chroma_collection": f"hnsw{free_port()}",
    }
    a = Corpus(
        make_settings(
            data_dir=tmp_path / "a",
            hnsw_m=12,
            hnsw_ef_construction=200,
            hnsw_ef_search=100,
            **common,
        ),
        embedder=FakeEmbedder(),
    )
    b = Corpus(
        make_settings(data_dir=tmp_path / "b", hnsw_ef_search=300, **common),
        embedder=FakeEmbedder(),
    )
    try:
        a.ingest(_papers(sample_page)[:4])
        assert a.store.hnsw_status().actual == Hnsw(12, 200, 100)
        query = np.asarray(b.embedder.embed_query("head avatars"))
        assert b.store.query(query, 2)  # B reads A's collection through the server
        assert b.store.hnsw_status().actual == Hnsw(12, 200, 100)  # untouched by a reader
    finally:
        a.close()
        b.close()
