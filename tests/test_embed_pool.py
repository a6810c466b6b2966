"""Bulk embedding: concurrent batched requests to an endpoint (with a 429 and its Retry-After)
and local ONNX worker processes give the single embedder's vectors."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from retrieval.embed_pool import (
    ConcurrentEmbedder,
    ProcessPoolEmbedder,
    bulk_embedder,
    close_embedder,
)
from retrieval.embeddings import LocalMiniLMEmbedder, OpenAIEmbedder
from retrieval.errors import EmbeddingError
from retrieval.settings import RetrievalSettings
from tests.support.openai_server import EMBEDDINGS_PATH, FakeOpenAIServer

TEXTS = [f"paper {i}: sparse attention for long documents, variant {i}" for i in range(40)]


def _endpoint(server: FakeOpenAIServer, *, batch_size: int = 5, retries: int = 2) -> OpenAIEmbedder:
    return OpenAIEmbedder(
        "embed-test", "k", server.base_url, timeout=10.0, max_retries=retries, batch_size=batch_size
    )


def _expected(server: FakeOpenAIServer, texts: list[str]) -> np.ndarray:
    rows = np.asarray([server.vector(t) for t in texts], dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_concurrent_requests_keep_the_order_and_overlap() -> None:
    with FakeOpenAIServer(dim=16, embed_delay=0.2) as server:
        pool = ConcurrentEmbedder(_endpoint(server), concurrency=4)
        try:
            vectors = pool.embed(TEXTS)  # 8 requests of 5, each answered after 0.2 s
        finally:
            pool.close()
        np.testing.assert_allclose(vectors, _expected(server, TEXTS), rtol=1e-5, atol=1e-6)
        assert len(server.requests_to(EMBEDDINGS_PATH)) == 8
        assert server.peak_embed_requests == 4  # four in flight at once, never more


def test_a_429_waits_what_retry_after_says_then_the_batch_lands() -> None:
    with FakeOpenAIServer(dim=16) as server:
        server.enqueue_error(429, headers={"retry-after": "1"}, path=EMBEDDINGS_PATH)
        pool = ConcurrentEmbedder(_endpoint(server), concurrency=4)
        try:
            started = time.monotonic()
            vectors = pool.embed(TEXTS)
            elapsed = time.monotonic() - started
        finally:
            pool.close()
        np.testing.assert_allclose(vectors, _expected(server, TEXTS), rtol=1e-5, atol=1e-6)
        assert len(server.requests_to(EMBEDDINGS_PATH)) == 8 + 1  # the refused one, again
        assert elapsed >= 0.95  # it waited the second the server asked for


def test_rate_limited_beyond_the_retries_is_one_line() -> None:
    with FakeOpenAIServer(dim=16) as server:
        for _ in range(3):
            server.enqueue_error(429, headers={"retry-after-ms": "1"}, path=EMBEDDINGS_PATH)
        pool = ConcurrentEmbedder(_endpoint(server, retries=1), concurrency=1)
        with pytest.raises(EmbeddingError, match="rate-limiting"):
            pool.embed(TEXTS[:5])


def test_bulk_embedder_follows_the_settings(tmp_path: Path) -> None:
    with FakeOpenAIServer(dim=16) as server:
        remote = bulk_embedder(
            RetrievalSettings(
                data_dir=tmp_path,
                embedding_provider="openai",
                embedding_model="embed-test",
                openai_base_url=server.base_url,
                embedding_concurrency=3,
            )
        )
        assert isinstance(remote, ConcurrentEmbedder) and remote.concurrency == 3
        assert remote.model_id == "openai:embed-test"
    local = bulk_embedder(RetrievalSettings(data_dir=tmp_path, embedding_workers=2))
    assert isinstance(local, ProcessPoolEmbedder) and local.workers == 2
    single = bulk_embedder(RetrievalSettings(data_dir=tmp_path))  # one worker: the usual one
    assert not isinstance(single, ProcessPoolEmbedder | ConcurrentEmbedder)
    assert single.model_id == local.model_id
    close_embedder(local)  # never started: nothing to stop


def test_two_local_workers_give_the_single_models_vectors() -> None:
    texts = [*TEXTS, "A much longer text about retrieval-augmented generation " * 8]
    single = LocalMiniLMEmbedder(threads=1).embed(texts)
    pool = ProcessPoolEmbedder(2, batch_size=8)
    try:
        vectors = pool.embed(texts)
        assert pool.loaded
        # a worker that dies (the OOM killer) is an error naming the knob, not a hang
        executor = pool._pool
        assert executor is not None
        os.kill(next(iter(executor._processes)), signal.SIGKILL)
        with pytest.raises(EmbeddingError, match="PAPERBOT_EMBEDDING_WORKERS"):
            pool.embed(texts)
    finally:
        pool.close()
    assert vectors.shape == single.shape
    np.testing.assert_allclose(vectors, single, atol=1e-5)
    np.testing.assert_allclose(pool.embed_query(texts[0]), single[0], atol=1e-5)


def test_a_worker_that_cannot_load_the_model_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its initializer keeps the error and the first batch raises it (an initializer that
    raised would only break the pool, reported as a worker that died)."""
    from retrieval import embed_pool, worker_processes

    def missing(**_: object) -> None:
        raise FileNotFoundError("model.onnx")

    monkeypatch.setattr(embed_pool, "LocalMiniLMEmbedder", missing)
    monkeypatch.setattr(worker_processes, "prepare_worker", lambda: None)  # this is no worker
    monkeypatch.setattr(worker_processes, "_failed", None)
    embed_pool._start_worker(1, 8, 64)
    with pytest.raises(EmbeddingError, match="could not load the model: FileNotFoundError"):
        embed_pool._embed_in_worker(["a text"])
