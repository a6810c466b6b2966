"""One deadline per answer: a stalled or slow model never stacks timeouts × retries.

The real `openai` client (through LangChain) against the fake server on 127.0.0.1, with a
per-request timeout and retries far longer than the answer's deadline: the deadline wins.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from answers.evaluate import evaluate_answers
from answers.llm import build_chat_model
from answers.models import Answer, Turn
from answers.qa import AnswerDelta, QAService
from answers.settings import AnswerSettings
from retrieval import Corpus
from tests.support.openai_server import CHAT_PATH, FakeOpenAIServer
from tests.test_qa import (
    DEV_QUESTIONS,
    GVGEN,
    _corpus_on,
    _sample_records,
    assert_extractive,
    number_of,
    run_stream,
)

pytestmark = pytest.mark.integration

DEADLINE = 1.5
SLACK = 2.5  # retrieval and the extractive answer after the deadline, on a busy 2-core machine


@pytest.fixture(scope="module")
def corpus(
    tmp_path_factory: pytest.TempPathFactory, tiktoken_dir: Path, local_embedder: Any
) -> Iterator[Corpus]:
    corpus = _corpus_on(
        tmp_path_factory.mktemp("deadline"), tiktoken_dir, local_embedder, _sample_records()
    )
    yield corpus
    corpus.close()


@pytest.fixture(scope="module", autouse=True)
def warm(corpus: Corpus) -> None:
    """The extractive answers once, so the timed runs measure the deadline, not a cold
    embedding cache (the local work after the deadline is not what is bounded)."""
    offline = QAService(corpus, None)
    for q in DEV_QUESTIONS:
        offline.answer(q.question)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def make_qa(
    corpus: Corpus, server: FakeOpenAIServer, make_answer_settings: Callable[..., AnswerSettings]
) -> Callable[..., QAService]:
    def make(**overrides: Any) -> QAService:
        values: dict[str, Any] = {
            "llm_provider": "openai",
            "llm_base_url": server.base_url,
            "llm_model": "gpt-test",
            "llm_timeout": 20,  # per request: 4 tries would be 80 s
            "llm_max_retries": 3,
            "answer_deadline_seconds": DEADLINE,
        }
        settings = make_answer_settings(**(values | overrides))
        return QAService(corpus, build_chat_model(settings), settings)

    return make


def _deadline_fallback(answer: Answer, corpus: Corpus) -> None:
    assert_extractive(answer, corpus)
    assert answer.fallback == "deadline" and answer.citations[0].title == GVGEN
    assert any(
        f"did not finish within the {DEADLINE:g} s answer deadline" in f
        and f.endswith("Showing an extractive answer instead.")
        for f in answer.flags
    ), answer.flags
    assert answer.label.startswith("Extractive answer: the model did not answer")


@pytest.mark.parametrize("history", [[], [Turn("user", "Tell me about GVGEN.")]])
def test_a_stalled_model_ends_in_an_extractive_answer_within_the_deadline(
    make_qa: Callable[..., QAService], server: FakeOpenAIServer, corpus: Corpus, history: Any
) -> None:
    server.chat_delay = 30  # every request stalls (the follow-up rewrite too)
    qa = make_qa()
    started = time.monotonic()
    answer = qa.answer("What is GVGEN?", history)
    assert time.monotonic() - started < DEADLINE + SLACK, answer.timings_ms
    _deadline_fallback(answer, corpus)
    # the rewrite and the answer shared one deadline: the one stalled call (the rewrite, when
    # there is history) used it up, and no retry was stacked on it
    assert len(server.requests_to(CHAT_PATH)) == 1


def test_a_stalled_stream_ends_in_an_extractive_answer_within_the_deadline(
    make_qa: Callable[..., QAService], server: FakeOpenAIServer, corpus: Corpus
) -> None:
    server.chat_delay = 30
    qa = make_qa()
    started = time.monotonic()
    *deltas, final = run_stream(qa, "What is GVGEN?")
    assert time.monotonic() - started < DEADLINE + SLACK
    assert deltas == []
    _deadline_fallback(final, corpus)


def test_a_slow_stream_cut_off_by_the_deadline_keeps_its_verified_part(
    make_qa: Callable[..., QAService], server: FakeOpenAIServer
) -> None:
    def reply(body: dict[str, Any]) -> str:
        n = number_of(body, "GVGEN")
        return (
            f"GVGEN generates 3D Gaussian representations from text input [{n}]. "
            "It also " + "describes " * 300
        )

    server.default_reply = reply
    server.chunk_delay = 0.05  # 20 words a second: the first sentence in well under a second
    qa = make_qa(answer_deadline_seconds=3)
    started = time.monotonic()
    events = run_stream(qa, "What is GVGEN?")
    assert time.monotonic() - started < 3 + SLACK
    *deltas, final = events
    # strict streaming: the finished, verified first sentence; never the unfinished rest
    (delta,) = deltas
    assert isinstance(delta, AnswerDelta)
    assert delta.text.startswith("GVGEN generates 3D Gaussian representations from text input [")
    assert isinstance(final, Answer) and final.mode == "llm" and final.partial
    assert final.text == "GVGEN generates 3D Gaussian representations from text input [1]."
    assert [s.status for s in final.sentences] == ["supported"]
    assert final.flags[0].endswith("Showing the verified part of its answer.")
    assert final.label.startswith("Partial answer generated by gpt-test")


def test_eval_answers_counts_deadline_fallbacks_apart_from_model_answers(
    make_qa: Callable[..., QAService], server: FakeOpenAIServer
) -> None:
    server.chat_delay = 30
    questions = [q for q in DEV_QUESTIONS if q.kind != "multi"][:3] + [
        q for q in DEV_QUESTIONS if q.kind == "unanswerable"
    ][:1]
    rows = {
        r.kind: r for r in evaluate_answers(questions, make_qa(answer_deadline_seconds=1).answer)
    }
    everything = rows["all"]
    assert everything.questions == 4 and everything.refused == 1  # refused without the model
    assert everything.fallbacks == 3 and everything.fallback_reasons == {"deadline": 3}
    assert everything.llm == 0 and everything.errors == 0
    assert everything.max_latency_ms is not None and everything.max_latency_ms < (1 + SLACK) * 1000
    assert everything.as_dict()["fallbacks"] == 3
