"""The claim verifier end to end, against fake models that misbehave on every dev question:
they hallucinate numbers and names, omit citations, cite sources never given, or repeat
themselves. No unsupported number or name is ever shown as a fact, and every removal or
fallback is visible in the answer's flags."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from answers import verify
from answers.evaluate import evaluate_answers
from answers.llm import build_chat_model
from answers.models import Answer
from answers.qa import QAService
from answers.settings import AnswerSettings
from retrieval import Corpus
from tests.support import openai_server as fake
from tests.support.openai_server import CHAT_PATH, FakeOpenAIServer
from tests.test_qa import DEV_QUESTIONS, _corpus_on, _sample_records, run_stream

pytestmark = pytest.mark.integration
ANSWERABLE = [q for q in DEV_QUESTIONS if q.titles]


@pytest.fixture(scope="module")
def corpus(
    tmp_path_factory: pytest.TempPathFactory, tiktoken_dir: Path, local_embedder: Any
) -> Iterator[Corpus]:
    corpus = _corpus_on(
        tmp_path_factory.mktemp("verify"), tiktoken_dir, local_embedder, _sample_records()
    )
    yield corpus
    corpus.close()


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
            "llm_timeout": 10,
            "llm_max_retries": 0,
        }
        settings = make_answer_settings(**(values | overrides))
        return QAService(corpus, build_chat_model(settings), settings)

    return make


def assert_nothing_unsupported_shown(answer: Answer, corpus: Corpus) -> None:
    """Every sentence shown as fact: its numbers and names are in the papers it cites."""
    by_number = {c.number: corpus.paper(c.paper_id) for c in answer.citations}
    for sentence in answer.sentences:
        if answer.mode == "extractive":
            continue  # verbatim quotes (checked by assert_extractive in test_qa)
        assert sentence.status in ("supported", "no_claim"), sentence
        evidence = [f"{by_number[n].title}. {by_number[n].abstract}" for n in sentence.citations]
        assert verify.missing_facts(sentence.text, evidence) == (), sentence.text
    if answer.mode == "llm":
        shown = answer.text + json.dumps([s.text for s in answer.sentences])
        assert not [h for h in fake.HALLUCINATED if h in shown], answer.text
    # every removal is said, in a flag the reader sees
    removals = [f for f in answer.flags if f.startswith("Removed an unverified sentence")]
    for removed in answer.removed:
        assert any(removed.text[:40] in f for f in removals), (removed, answer.flags)
    if answer.removed:  # and in Slack
        from bot.slack.blocks import answer_message

        _, blks = answer_message(answer)
        shown = json.dumps(blks, ensure_ascii=False)
        assert "removed from the model's answer" in shown
        assert not [h for h in fake.HALLUCINATED if h in shown]


def test_hallucinated_numbers_and_names_never_reach_the_user(
    make_qa: Callable[..., QAService], server: FakeOpenAIServer, corpus: Corpus
) -> None:
    server.default_reply = fake.hallucinating
    qa = make_qa()
    answers = [qa.answer(q.question) for q in ANSWERABLE]
    for answer in answers:
        assert_nothing_unsupported_shown(answer, corpus)
        # the true first sentence survives; the invented ones are removed, and said to be
        assert answer.mode == "llm" and answer.verified
        assert {r.status for r in answer.removed} == {"unsupported", "uncited"}
        assert any("MegaNet" in f and "not in its cited source" in f for f in answer.flags)
    # the streamed answer is verified the same way
    final = run_stream(qa, ANSWERABLE[0].question)[-1]
    assert isinstance(final, Answer)
    assert_nothing_unsupported_shown(final, corpus)


def test_only_hallucinations_fall_back_to_extractive_and_eval_counts_them(
    make_qa: Callable[..., QAService], server: FakeOpenAIServer, corpus: Corpus
) -> None:
    server.default_reply = fake.hallucinating_only
    qa = make_qa()
    rows = {r.kind: r for r in evaluate_answers(DEV_QUESTIONS, qa.answer)}
    everything = rows["all"]
    assert everything.fallbacks == len(ANSWERABLE) and everything.llm == 0
    assert everything.fallback_reasons == {"unverified": len(ANSWERABLE)}
    assert everything.unsupported_sentence_rate == 0.0  # only verbatim quotes were shown
    assert everything.sentences_removed == 4 * len(ANSWERABLE)  # 2 per attempt, 2 attempts
    answer = qa.answer(ANSWERABLE[0].question)
    assert_nothing_unsupported_shown(answer, corpus)
    assert answer.fallback == "unverified" and "could not be verified" in answer.label
    # the second attempt listed the failures for the model
    retry = server.requests_to(CHAT_PATH)[-1].body["messages"][-1]["content"]
    assert "could not be verified against the sources" in retry and "TPUv9" in retry


@pytest.mark.parametrize(
    ("reply", "status"), [(fake.uncited, "uncited"), (fake.unknown_ids, "uncited")]
)
def test_uncited_and_made_up_citations_are_never_a_cited_answer(
    make_qa: Callable[..., QAService],
    server: FakeOpenAIServer,
    corpus: Corpus,
    reply: Any,
    status: str,
) -> None:
    server.default_reply = reply
    question = ANSWERABLE[0].question
    answer = make_qa().answer(question)
    assert answer.mode == "extractive" and answer.fallback == "unverified"
    assert [r.status for r in answer.removed] == [status, status]
    assert_nothing_unsupported_shown(answer, corpus)
    annotated = make_qa(verify_policy="annotate").answer(question)
    assert annotated.mode == "llm" and annotated.citations == []
    assert annotated.label.startswith("Unverified answer")
    if reply is fake.unknown_ids:
        assert any(f.startswith("Removed citation(s) [") for f in annotated.flags)


def test_repetitive_text_is_shown_once(
    make_qa: Callable[..., QAService], server: FakeOpenAIServer
) -> None:
    server.default_reply = fake.repetitive
    answer = make_qa().answer(ANSWERABLE[0].question)
    assert answer.mode == "llm" and len(answer.sentences) == 1
    assert "Removed 29 repeated sentence(s)." in answer.flags


def test_off_policy_keeps_everything_but_still_flags_it(
    make_qa: Callable[..., QAService], server: FakeOpenAIServer
) -> None:
    server.default_reply = fake.hallucinating
    answer = make_qa(verify_policy="off").answer(ANSWERABLE[0].question)
    assert [s.status for s in answer.sentences] == ["supported", "unsupported", "uncited"]
    assert answer.removed == [] and "MegaNet" in answer.text
    assert any("MegaNet" in f for f in answer.flags)
