"""The vector store against both embedded Chroma and a real `chroma run` server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from retrieval import Corpus, RetrievalSettings, StoreUnavailableError
from retrieval.sources import page_text
from retrieval.store import ChromaEmbeddingFunction, ChunkMeta, VectorStore, collection_name
from tests.support.chroma_server import ChromaServer, free_port
from tests.support.fakes import FakeEmbedder

pytestmark = pytest.mark.integration


@pytest.fixture(params=["embedded", "server"])
def mode_settings(
    request: pytest.FixtureRequest, make_settings: Callable[..., RetrievalSettings]
) -> RetrievalSettings:
    if request.param == "embedded":
        return make_settings()
    server: ChromaServer = request.getfixturevalue("chroma_server")
    # a fresh collection per test on the shared server
    return make_settings(
        chroma_host=server.host, chroma_port=server.port, chroma_collection=f"t{free_port()}"
    )


def _store(settings: RetrievalSettings, embedder: FakeEmbedder) -> VectorStore:
    return VectorStore.from_settings(settings, embedder.model_id, ChromaEmbeddingFunction(embedder))


def test_upsert_query_delete(mode_settings: RetrievalSettings) -> None:
    embedder = FakeEmbedder()
    store = _store(mode_settings, embedder)
    texts = ["gaussian splatting avatars", "contrastive loss batch", "speech recognition"]
    metas = [
        ChunkMeta("p1", date(2025, 5, 16), "hf_page"),
        ChunkMeta("p2", date(2024, 10, 22), "hf_api"),
        ChunkMeta("p3", None, "arxiv"),
    ]
    store.upsert(["c1", "c2", "c3"], embedder.embed(texts), metas)
    assert store.count() == 3 and store.ids() == {"c1", "c2", "c3"}
    top = store.query(embedder.embed_query("contrastive batch loss"), 2)
    assert top[0][0] == "c2" and top[0][1] == pytest.approx(1.0, abs=0.2)
    dated = store.query(embedder.embed_query("loss"), 3, since=date(2025, 1, 1))
    assert [i for i, _ in dated] == ["c1"]
    by_source = store.query(embedder.embed_query("loss"), 3, sources=["arxiv", "hf_api"])
    assert {i for i, _ in by_source} == {"c2", "c3"}
    store.delete(["c2"])
    assert store.ids() == {"c1", "c3"}


def test_reopening_keeps_vectors_and_the_embedding_function(
    mode_settings: RetrievalSettings,
) -> None:
    embedder = FakeEmbedder()
    first = _store(mode_settings, embedder)
    first.upsert(["c1"], embedder.embed(["alpha beta"]), [ChunkMeta("p1", None, "file")])
    reopened = _store(mode_settings, embedder)
    assert reopened.ids() == {"c1"}
    # Chroma's own query_texts path embeds with the function attached to the collection
    result = reopened.collection.query(query_texts=["alpha beta"], n_results=1)
    assert result["ids"][0] == ["c1"]


def test_corpus_ingest_and_search_in_both_modes(
    mode_settings: RetrievalSettings, sample_page: Path
) -> None:
    corpus = Corpus(mode_settings, embedder=FakeEmbedder())
    records = list(
        page_text.parse(sample_page.read_bytes(), origin="sample", page_date=date(2025, 5, 16))
    )
    assert len(corpus.ingest(records).new) == 30
    assert corpus.stats()["in_step"]
    hits = corpus.search("identity-aware editing score distillation head avatars", 3)
    assert hits[0].paper.title.startswith("HeadSculpt")


def test_collection_names_are_per_model_and_valid() -> None:
    assert (
        collection_name("paperbot", "openai:text-embedding-3-small")
        == "paperbot__openai-text-embedding-3-small"
    )
    assert len(collection_name("p" * 40, "m" * 80)) <= 63


def test_an_unreachable_server_gives_a_clear_error(
    make_settings: Callable[..., RetrievalSettings],
) -> None:
    settings = make_settings(chroma_host="127.0.0.1", chroma_port=free_port())
    with pytest.raises(StoreUnavailableError, match=r"127\.0\.0\.1"):
        _store(settings, FakeEmbedder()).count()


def test_server_restart_recovers_without_reopening(
    tmp_path: Path, make_settings: Callable[..., RetrievalSettings]
) -> None:
    server = ChromaServer(tmp_path / "db")
    server.start()
    try:
        embedder = FakeEmbedder()
        store = _store(make_settings(chroma_host=server.host, chroma_port=server.port), embedder)
        store.upsert(["c1"], embedder.embed(["alpha"]), [ChunkMeta("p1", None, "file")])
        server.stop()
        with pytest.raises(StoreUnavailableError, match="not reachable"):
            store.count()
        server.start()
        assert store.count() == 1
    finally:
        server.stop()


def test_vectors_dimension_mismatch_is_not_silently_mixed(mode_settings: RetrievalSettings) -> None:
    small, large = FakeEmbedder(dim=16, model_id="m16"), FakeEmbedder(dim=32, model_id="m32")
    a, b = _store(mode_settings, small), _store(mode_settings, large)
    a.upsert(["x"], small.embed(["hello"]), [ChunkMeta("p", None, "file")])
    b.upsert(["x"], large.embed(["hello"]), [ChunkMeta("p", None, "file")])
    assert a.name != b.name and a.count() == b.count() == 1
    assert np.isfinite(a.query(small.embed_query("hello"), 1)[0][1])


def test_reading_never_creates_the_collection(mode_settings: RetrievalSettings) -> None:
    embedder = FakeEmbedder()
    store = _store(mode_settings, embedder)
    assert store.count() == 0 and store.ids() == set() and store.stamps(["c1"]) == {}
    assert store.query(embedder.embed_query("anything"), 3) == []
    assert store.metadata() is None  # still not there: only a write (or a claim) creates it
    store.upsert(["c1"], embedder.embed(["alpha"]), [ChunkMeta("p1", None, "file")])
    assert store.metadata() == {} and store.count() == 1


def test_collection_metadata_is_created_atomically_and_merged(
    mode_settings: RetrievalSettings,
) -> None:
    embedder = FakeEmbedder()
    first, second = _store(mode_settings, embedder), _store(mode_settings, embedder)
    assert first.create_with_metadata({"paperbot_owner": "a", "note": "x"})
    assert not second.create_with_metadata({"paperbot_owner": "b"})  # exists: not overwritten
    second.update_metadata({"note": "y"})
    assert first.metadata() == {"paperbot_owner": "a", "note": "y"}


def test_a_read_only_store_refuses_every_write(mode_settings: RetrievalSettings) -> None:
    from retrieval.store import CollectionOwnedError

    embedder = FakeEmbedder()
    store = _store(mode_settings, embedder)
    store.upsert(["c1"], embedder.embed(["alpha"]), [ChunkMeta("p1", None, "file")])
    store.read_only = "owned by someone else"
    with pytest.raises(CollectionOwnedError, match="owned by someone else"):
        store.upsert(["c2"], embedder.embed(["beta"]), [ChunkMeta("p2", None, "file")])
    with pytest.raises(CollectionOwnedError):
        store.delete(["c1"])
    with pytest.raises(CollectionOwnedError):
        store.drop()
    assert store.ids() == {"c1"}


def test_a_reopened_store_sees_what_another_client_wrote(mode_settings: RetrievalSettings) -> None:
    """Embedded: a handle opened before another client's write does not see it until it is
    reopened (a fresh client with a chroma System of its own). Server: always sees it."""
    embedder = FakeEmbedder()
    reader, writer = _store(mode_settings, embedder), _store(mode_settings, embedder)
    writer.upsert(["c1"], embedder.embed(["alpha beta"]), [ChunkMeta("p1", None, "file")])
    query = embedder.embed_query("gamma delta")
    assert [i for i, _ in reader.query(query, 5)] == ["c1"]
    writer.upsert(["c2"], embedder.embed(["gamma delta"]), [ChunkMeta("p2", None, "file")])
    reader.reopen()
    assert reader.query(query, 1)[0][0] == "c2"
    assert reader.reopens == 1 and reader.count() == 2
