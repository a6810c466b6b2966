"""Query embeddings: the LRU cache by normalised text and the micro-batcher (one model call
for the questions that arrive while the model is busy)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest
from pydantic import SecretStr

from retrieval.embeddings import build_embedder
from retrieval.errors import EmbeddingError
from retrieval.query_embeddings import QueryEmbedder, normalise_query
from retrieval.settings import RetrievalSettings
from tests.support.fakes import FakeEmbedder

QUESTIONS = [
    "how does lora reduce the number of trainable parameters?",
    "which datasets evaluate scientific summarization",
    "what is retrieval augmented generation",
    "does instruction tuning help small models",
    "how are citation graphs used for paper recommendation",
    "which metrics measure factual consistency of summaries",
]


class GatedEmbedder(FakeEmbedder):
    """A fake model whose first call blocks until the test opens the gate, so that the other
    callers arrive while it is busy."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.started = threading.Event()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not self.started.is_set():
            self.started.set()
            assert self.gate.wait(10), "the test never opened the gate"
        return super().embed(texts)


class FailingEmbedder(FakeEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.fail = True

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self.fail:
            self.calls.append(list(texts))
            raise EmbeddingError("embedding endpoint http://x failed with HTTP 500: boom")
        return super().embed(texts)


def wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def run_threads(query: QueryEmbedder, texts: Sequence[str]) -> dict[str, np.ndarray]:
    got: dict[str, np.ndarray] = {}
    errors: list[BaseException] = []

    def ask(text: str) -> None:
        try:
            got[text] = query.embed_query(text)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    return_when = time.monotonic() + 10
    for t in threads:
        t.join(max(0.0, return_when - time.monotonic()))
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]
    return got


def test_normalise_query() -> None:
    assert normalise_query("  What is\tLoRA?\n") == "what is lora?"
    assert normalise_query("Straße ﬁnetuning") == "strasse finetuning"  # casefold + NFKC
    assert normalise_query("Ｔｒａｎｓｆｏｒｍｅｒ") == "transformer"  # full-width letters


def test_cache_hit_returns_the_same_vector_without_calling_the_model() -> None:
    model = FakeEmbedder()
    query = QueryEmbedder(model, cache_size=8)
    first = query.embed_query("What is LoRA?")
    again = query.embed_query("  what   is lora? ")  # the same question, spelled differently
    assert model.calls == [["what is lora?"]]
    assert again is first
    np.testing.assert_array_equal(first, model.embed_query("what is lora?"))
    assert (query.cache.hits, query.cache.misses) == (1, 1)
    with pytest.raises(ValueError):
        first[0] = 1.0  # read-only: no caller can change what the cache hands to others


def test_cache_is_lru_and_zero_turns_it_off() -> None:
    model = FakeEmbedder()
    query = QueryEmbedder(model, cache_size=2)
    for text in ["a", "b", "a", "c", "a", "b"]:
        query.embed_query(text)
    # "a" stayed (recently used); "b" was evicted by "c" and embedded again.
    assert [c[0] for c in model.calls] == ["a", "b", "c", "b"]
    assert len(query.cache) == 2

    off = FakeEmbedder()
    uncached = QueryEmbedder(off, cache_size=0)
    uncached.embed_query("a")
    uncached.embed_query("a")
    assert off.calls == [["a"], ["a"]]


def test_questions_arriving_while_the_model_is_busy_share_one_call() -> None:
    model = GatedEmbedder()
    query = QueryEmbedder(model, cache_size=0)
    first: dict[str, np.ndarray] = {}
    leader = threading.Thread(target=lambda: first.update(x=query.embed_query("first question")))
    leader.start()
    assert model.started.wait(10)

    def open_gate_when_all_queued() -> None:
        wait_until(lambda: query.queued == (len(QUESTIONS), len(QUESTIONS)))
        model.gate.set()

    opener = threading.Thread(target=open_gate_when_all_queued)
    opener.start()
    got = run_threads(query, QUESTIONS)
    leader.join(10)
    opener.join(10)

    # One call for the question that found the model idle, ONE for all that came meanwhile.
    assert [len(c) for c in model.calls] == [1, len(QUESTIONS)]
    assert sorted(model.calls[1]) == sorted(QUESTIONS)
    assert query.model_calls == 2
    # Each caller got its own row, identical to embedding its question alone.
    reference = FakeEmbedder()
    for text in QUESTIONS:
        np.testing.assert_array_equal(got[text], reference.embed_query(text))
    np.testing.assert_array_equal(first["x"], reference.embed_query("first question"))


def test_batches_are_capped_and_duplicates_embedded_once() -> None:
    model = GatedEmbedder()
    query = QueryEmbedder(model, cache_size=0, max_batch=4)
    leader = threading.Thread(target=query.embed_query, args=("warm up",))
    leader.start()
    assert model.started.wait(10)
    texts = [*QUESTIONS, QUESTIONS[0].upper(), QUESTIONS[1]]  # two repeats of queued ones

    def open_gate() -> None:
        # 8 callers, 6 distinct questions: the repeats join the queued jobs
        wait_until(lambda: query.queued == (len(QUESTIONS), len(texts)))
        model.gate.set()

    opener = threading.Thread(target=open_gate)
    opener.start()
    got = run_threads(query, texts)
    leader.join(10)
    opener.join(10)
    assert [len(c) for c in model.calls] == [1, 4, 2]  # 6 distinct questions, at most 4 a call
    assert sum(len(c) for c in model.calls[1:]) == len(QUESTIONS)
    np.testing.assert_array_equal(got[QUESTIONS[0].upper()], got[QUESTIONS[0]])


def test_a_model_error_reaches_every_caller_of_the_batch_and_the_next_call_works() -> None:
    model = FailingEmbedder()
    query = QueryEmbedder(model, cache_size=4)
    with pytest.raises(EmbeddingError, match="HTTP 500"):
        query.embed_query("what is lora")
    assert len(query.cache) == 0  # failures are not cached
    model.fail = False
    assert query.embed_query("what is lora").shape == (model.dim,)


def test_ingest_embeddings_pass_through_uncached() -> None:
    model = FakeEmbedder()
    query = QueryEmbedder(model, cache_size=8)
    query.embed(["Chunk One", "Chunk One"])
    query.embed(["Chunk One"])
    assert model.calls == [["Chunk One", "Chunk One"], ["Chunk One"]]  # verbatim, every time
    assert query.dim == model.dim and query.model_id == model.model_id
    assert query.calls is model.calls  # other attributes are the wrapped embedder's


def test_build_embedder_wraps_the_model_for_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PAPERBOT_QUERY_CACHE_SIZE", "PAPERBOT_EMBEDDING_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    built = build_embedder(RetrievalSettings(_env_file=None, query_cache_size=5))  # type: ignore[call-arg]
    assert isinstance(built, QueryEmbedder)
    assert built.cache.size == 5
    assert built.loaded is False  # nothing loaded until the first embedding
    assert built.batch is False  # the local model: concurrent calls (measured faster)
    api = build_embedder(
        RetrievalSettings(  # type: ignore[call-arg]
            _env_file=None,
            embedding_provider="openai",
            embedding_model="text-embedding-3-small",
            openai_api_key=SecretStr("sk-test"),
        )
    )
    assert isinstance(api, QueryEmbedder) and api.batch  # an API: one request per batch


def test_the_local_model_gives_the_same_rows_batched_and_alone() -> None:
    from retrieval.embeddings import LocalMiniLMEmbedder

    model = LocalMiniLMEmbedder(threads=1)
    texts = [normalise_query(t) for t in QUESTIONS]
    together = model.embed(texts)
    for row, text in zip(together, texts, strict=True):
        np.testing.assert_allclose(row, model.embed_query(text), atol=1e-6)


def test_without_batching_each_question_is_its_own_call_and_still_cached() -> None:
    model = FakeEmbedder()
    query = QueryEmbedder(model, cache_size=8, batch=False)
    got = run_threads(query, QUESTIONS)
    assert sorted(c[0] for c in model.calls) == sorted(QUESTIONS)
    assert all(len(c) == 1 for c in model.calls)
    assert query.embed_query(QUESTIONS[0].title()) is got[QUESTIONS[0]]  # a hit, same row
    assert len(model.calls) == len(QUESTIONS)
