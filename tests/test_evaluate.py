"""Evaluation: retrieval metrics, answer metrics with a fake answerer, ROUGE-1 on ACLSum."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from answers.errors import LLMError
from answers.evaluate import (
    ASPECTS,
    AnswerScores,
    Question,
    SummaryDoc,
    evaluate_answers,
    evaluate_retrieval,
    evaluate_summaries,
    lead_sentence,
    load_aclsum,
    load_questions,
    score_ranking,
)
from answers.models import Answer, Citation, SentenceCheck
from retrieval.errors import SourceError
from retrieval.models import Chunk, Hit, Paper

GOLD_A = "GVGEN: Text-to-3D Generation with Volumetric Representation"
GOLD_B = "HeadSculpt: Crafting 3D Head Avatars with Text"
OTHER = "GPipe: Efficient Training of Giant Neural Networks using Pipeline Parallelism"

QUESTIONS = [
    Question("q-single-hit", (GOLD_A,), "single"),
    Question("q-single-refused", (GOLD_B,), "single"),
    Question("q-multi", (GOLD_A, GOLD_B), "multi"),
    Question("q-unanswerable-refused", (), "unanswerable"),
    Question("q-unanswerable-answered", (), "unanswerable"),
]


def _citation(number: int, title: str) -> Citation:
    return Citation(number, f"id-{number}", title, None, "quote", (f"c{number}",))


def _answer(question: str, titles: list[str], *, refused: bool = False) -> Answer:
    if refused:
        return Answer(question, "The indexed papers do not answer this question.", "refused")
    answer = Answer(
        question,
        "text",
        "llm",
        citations=[_citation(i, t) for i, t in enumerate(titles, start=1)],
        model="gpt-test",
        tokens_in=100,
        tokens_out=10,
        cost_usd=0.001,
    )
    return answer


SCRIPT: dict[str, Answer] = {
    # one gold paper cited (title matched case- and punctuation-insensitively) + one other
    "q-single-hit": _answer("q-single-hit", [GOLD_A.upper(), OTHER]),
    "q-single-refused": _answer("q-single-refused", [], refused=True),
    # 1 of 2 gold papers
    "q-multi": _answer("q-multi", [GOLD_B]),
    "q-unanswerable-refused": _answer("q-unanswerable-refused", [], refused=True),
    "q-unanswerable-answered": _answer("q-unanswerable-answered", [OTHER]),
}


def _by_kind(rows: list[AnswerScores]) -> dict[str, AnswerScores]:
    return {r.kind: r for r in rows}


# ---------------------------------------------------------------------- retrieval (kept API)
def test_load_questions_and_errors(tmp_path: Path, dev_questions: Path) -> None:
    questions = load_questions(dev_questions)
    assert len(questions) == 20
    assert {q.kind for q in questions} == {"single", "multi", "unanswerable"}
    assert all(q.titles for q in questions if q.kind != "unanswerable")

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok"}\n\nnot json\n', encoding="utf-8")
    with pytest.raises(SourceError, match="line 3"):
        load_questions(bad)
    with pytest.raises(SourceError, match="does not exist"):
        load_questions(tmp_path / "missing.jsonl")


def test_score_ranking() -> None:
    rr, recalls = score_ranking(["x", "y", GOLD_A.lower(), GOLD_B], [GOLD_A, GOLD_B])
    assert rr == pytest.approx(1 / 3)
    assert recalls == {1: 0.0, 5: 1.0, 10: 1.0}
    assert score_ranking([], [GOLD_A]) == (0.0, {1: 0.0, 5: 0.0, 10: 0.0})


def test_evaluate_retrieval_with_a_fake_search() -> None:
    def hit(title: str) -> Hit:
        paper = Paper(paper_id=title[:8], title=title, abstract="a b c")
        return Hit(paper, Chunk(f"{title[:8]}#0", paper.paper_id, 0, "a b c", 3, title), 1.0)

    def search(query: str, k: int, mode: str) -> list[Hit]:
        return [hit(OTHER), hit(GOLD_A)] if mode == "lexical" else [hit(GOLD_A)]

    rows = evaluate_retrieval([Question("q", (GOLD_A,), "single")], search, ["lexical", "hybrid"])
    by = {(r.mode, r.kind): r for r in rows}
    assert by[("lexical", "all")].mrr == 0.5 and by[("hybrid", "all")].mrr == 1.0
    assert by[("lexical", "single")].recall(1) == 0.0 and by[("lexical", "single")].recall(5) == 1.0


# ---------------------------------------------------------------------- answers
def test_answer_metrics_per_kind() -> None:
    asked: list[str] = []

    def answer_fn(question: str) -> Answer:
        asked.append(question)
        return SCRIPT[question]

    rows = evaluate_answers(QUESTIONS, answer_fn)
    assert [r.kind for r in rows] == ["single", "multi", "unanswerable", "all"]
    assert asked == [q.question for q in QUESTIONS]  # each question once
    by = _by_kind(rows)

    single = by["single"]
    assert single.questions == 2 and single.answerable == 2 and single.refused == 1
    assert single.citation_precision == pytest.approx(1 / 2)  # GVGEN yes, GPipe no
    assert single.gold_recall == pytest.approx(1 / 2)  # (1 + 0) / 2
    assert single.refusal_accuracy == pytest.approx(1 / 2)  # the refused one was answerable

    multi = by["multi"]
    assert multi.citation_precision == 1.0 and multi.gold_recall == pytest.approx(0.5)
    assert multi.refusal_accuracy == 1.0

    unanswerable = by["unanswerable"]
    assert unanswerable.gold_recall is None  # no gold papers to recall
    assert unanswerable.citation_precision == 0.0  # a citation where none was due
    assert unanswerable.refusal_accuracy == pytest.approx(1 / 2)

    everything = by["all"]
    assert everything.questions == 5 and everything.answerable == 3
    assert everything.citation_precision == pytest.approx(2 / 4)
    assert everything.gold_recall == pytest.approx((1 + 0 + 0.5) / 3)
    assert everything.refusal_accuracy == pytest.approx(3 / 5)
    assert everything.tokens_in == 300 and everything.tokens_out == 30
    assert everything.cost_usd == pytest.approx(0.003)
    assert everything.mean_latency_ms is not None and everything.mean_latency_ms >= 0
    assert len(everything.misses) == 2
    assert any("q-single-refused: refused" in m for m in everything.misses)
    assert any("q-unanswerable-answered: answered" in m for m in everything.misses)


def test_answer_metrics_errors_are_recorded_not_raised() -> None:
    def answer_fn(question: str) -> Answer:
        if question == "q-multi":
            raise LLMError("The language model (gpt-test) failed with HTTP 500; try again later.")
        return SCRIPT[question]

    by = _by_kind(evaluate_answers(QUESTIONS, answer_fn))
    assert by["multi"].errors == 1 and by["all"].errors == 1
    assert by["multi"].refusal_accuracy == 0.0  # an error is never a right decision
    assert by["multi"].gold_recall == 0.0
    assert by["multi"].citation_precision is None  # nothing cited
    assert any("HTTP 500" in m for m in by["all"].misses)


def test_answer_metrics_progress_and_json() -> None:
    seen: list[tuple[str, str | None]] = []
    rows = evaluate_answers(
        QUESTIONS[:1],
        lambda q: SCRIPT[q],
        progress=lambda q, a: seen.append((q.question, a.mode if a else None)),
    )
    assert seen == [("q-single-hit", "llm")]
    data = json.loads(json.dumps([r.as_dict() for r in rows]))
    assert data[-1]["kind"] == "all" and data[-1]["citation_precision"] == 0.5
    assert set(data[0]) >= {
        "questions",
        "citation_precision",
        "gold_recall",
        "refusal_accuracy",
        "mean_latency_ms",
        "tokens_in",
        "tokens_out",
        "cost_usd",
    }


def _checked(question: str, *statuses: str, fallback: str = "", mode: str = "llm") -> Answer:
    answer = Answer(
        question,
        "GVGEN needs about 7 seconds [1].",
        mode,  # type: ignore[arg-type]
        citations=[_citation(1, GOLD_A)],
        model="gpt-test" if mode == "llm" else "extractive",
    )
    answer.sentences = [SentenceCheck(f"s{i}", (1,), 0.5, st) for i, st in enumerate(statuses)]  # type: ignore[arg-type]
    answer.fallback = fallback  # type: ignore[assignment]
    return answer


def test_fact_recall_unsupported_rate_and_fallbacks_are_reported_apart() -> None:
    questions = [
        Question("fact-found", (GOLD_A,), "single", r"~?\s?7\s*(s|seconds)"),
        Question("fact-missing", (GOLD_A,), "single", r"Candidate Pool"),
        Question("fell-back", (GOLD_A,), "single"),
        Question("error", (GOLD_A,), "single"),
    ]
    replies = {
        "fact-found": _checked("fact-found", "supported", "unsupported", "no_claim"),
        "fact-missing": _checked("fact-missing", "supported"),
        "fell-back": _checked("fell-back", "supported", fallback="deadline", mode="extractive"),
    }
    replies["fact-missing"].removed = [SentenceCheck("x", (), None, "uncited")]

    def answer_fn(question: str) -> Answer:
        if question == "error":
            raise LLMError("The language model (gpt-test) failed with HTTP 500; try again later.")
        return replies[question]

    everything = _by_kind(evaluate_answers(questions, answer_fn))["all"]
    assert (everything.llm, everything.fallbacks, everything.errors) == (2, 1, 1)
    assert everything.fallback_reasons == {"deadline": 1}
    assert everything.fact_recall == pytest.approx(1 / 2)
    # claims shown: 2 + 1 + 1 (no_claim does not count); 1 of them unsupported
    assert everything.unsupported_sentence_rate == pytest.approx(1 / 4)
    assert everything.sentences_removed == 1
    assert any(
        "fell-back: the model's answer was replaced (deadline)" in m for m in everything.misses
    )
    assert any("fact-missing: the answer does not state" in m for m in everything.misses)
    data = everything.as_dict()
    assert data["fallbacks"] == 1 and data["llm"] == 2 and data["errors"] == 1
    assert data["fact_recall"] == 0.5 and data["max_latency_ms"] is not None


def test_answer_patterns_are_loaded_and_bad_ones_named(tmp_path: Path) -> None:
    good = tmp_path / "q.jsonl"
    good.write_text(json.dumps({"question": "q", "titles": ["T"], "answer": "7 s(econds)?"}) + "\n")
    (question,) = load_questions(good)
    assert question.answer == "7 s(econds)?" and question.has_fact("It takes 7 seconds.")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "titles": ["T"], "answer": "1.42x ("}) + "\n")
    with pytest.raises(SourceError, match="line 1: 'answer' must be a regular expression"):
        load_questions(bad)


def test_answer_metrics_empty() -> None:
    (everything,) = evaluate_answers([], lambda q: SCRIPT[q])
    assert everything.kind == "all" and everything.questions == 0
    assert everything.refusal_accuracy is None and everything.mean_latency_ms is None


# ---------------------------------------------------------------------- summaries
@pytest.fixture(scope="module")
def aclsum_docs() -> list[SummaryDoc]:
    return load_aclsum("test")[:5]


def test_load_aclsum_test_split(aclsum_docs: list[SummaryDoc]) -> None:
    assert len(load_aclsum("test")) == 100
    doc = aclsum_docs[0]
    assert doc.title and doc.abstract_sentences
    assert set(doc.summaries) == set(ASPECTS)
    assert doc.abstract.startswith(doc.abstract_sentences[0])
    assert lead_sentence(doc) == doc.abstract_sentences[0]


def test_summary_rouge_against_the_lead_baseline(aclsum_docs: list[SummaryDoc]) -> None:
    calls: list[str] = []

    def whole_abstract(title: str, abstract: str) -> str:
        calls.append(title)
        return abstract

    rows = evaluate_summaries(aclsum_docs, whole_abstract)
    assert calls == [d.title for d in aclsum_docs]  # one summary per document
    assert [r.aspect for r in rows] == [*ASPECTS, "overall"]
    by = {r.aspect: r for r in rows}
    for aspect in ASPECTS:
        assert by[aspect].scored == 5
        assert 0 < by[aspect].baseline_rouge1 < 1 and 0 < by[aspect].summary_rouge1 < 1
    assert by["overall"].scored == 15
    overall = by["overall"]
    mean_of_aspects = sum(by[a].summary_rouge1 for a in ASPECTS) / 3
    assert overall.summary_rouge1 == pytest.approx(mean_of_aspects)
    assert overall.as_dict()["beats_baseline"] == overall.beats_baseline


def test_summary_identical_to_baseline_does_not_beat_it(aclsum_docs: list[SummaryDoc]) -> None:
    lead = {d.title: d.abstract_sentences[0] for d in aclsum_docs}
    rows = evaluate_summaries(aclsum_docs, lambda title, abstract: lead[title])
    assert all(r.summary_rouge1 == pytest.approx(r.baseline_rouge1) for r in rows)
    assert not any(r.beats_baseline for r in rows)
    empty = evaluate_summaries(aclsum_docs, lambda t, a: "", baseline_fn=lambda d: "")
    assert all(r.baseline_rouge1 == 0.0 and not r.beats_baseline for r in empty)


def test_summary_rouge_uses_stemming() -> None:
    doc = SummaryDoc("d", "T", ("Models were trained.",), {"challenge": "training models"})
    (challenge, _overall) = evaluate_summaries(
        [doc], lambda t, a: "train model", aspects=["challenge"]
    )
    assert challenge.summary_rouge1 == pytest.approx(1.0)  # trained~training, models~model
    assert challenge.beats_baseline


def test_summary_aspect_without_reference_is_skipped() -> None:
    doc = SummaryDoc("d", "T", ("A b c.",), {"challenge": "a b c"})
    rows = {r.aspect: r for r in evaluate_summaries([doc], lambda t, a: "a b c")}
    assert rows["challenge"].scored == 1 and rows["outcome"].scored == 0
    assert not rows["outcome"].beats_baseline and rows["overall"].scored == 1


def test_extractive_tldrs_against_the_lead_baseline_on_the_aclsum_test_split() -> None:
    """The acceptance check of the extractive TL;DR (lexical scoring, so no model load):
    overall, and on the approach and outcome summaries, it beats the lead sentence computed
    in the same run. (On 'challenge' the lead sentence, which usually states the problem,
    stays ahead: 0.268 vs 0.221 when measured.)"""
    from answers.evaluate import extractive_summarizer

    rows = {r.aspect: r for r in evaluate_summaries(load_aclsum("test"), extractive_summarizer())}
    assert rows["overall"].scored == 300
    assert rows["overall"].beats_baseline, rows["overall"].as_dict()
    assert rows["approach"].beats_baseline and rows["outcome"].beats_baseline
    assert rows["overall"].summary_rouge1 > 0.25


def test_aspect_summaries_beat_the_lead_baseline_on_every_aspect() -> None:
    """The issue's bar: ROUGE-1 of the challenge / approach / outcome summaries beats the
    lead-sentence baseline computed in the same run, on the full ACLSum test split."""
    from answers.evaluate import aspect_summarizer, extractive_summarizer

    docs = load_aclsum("test")
    rows = {
        r.aspect: r
        for r in evaluate_summaries(docs, extractive_summarizer(), aspect_fn=aspect_summarizer())
    }
    for aspect in ("challenge", "approach", "outcome", "overall"):
        assert rows[aspect].aspect_beats_baseline, rows[aspect].as_dict()
    assert rows["overall"].as_dict()["aspect_rouge1"] == round(
        rows["overall"].aspect_rouge1 or 0, 4
    )


def test_aspect_summaries_are_verbatim_and_short() -> None:
    from answers.summarize import ASPECT_MAX_WORDS, extractive_aspect_summary

    abstract = (
        "Machine translation of rare terms is hard. However, existing systems lack domain "
        "lexicons. We propose an analogy solver for medical terms. Results show a 12% gain "
        "in BLEU over strong baselines."
    )
    assert extractive_aspect_summary(abstract, "challenge").startswith(
        "Machine translation of rare terms is hard. However"
    )
    assert "We propose" in extractive_aspect_summary(abstract, "approach")
    assert "Results show" in extractive_aspect_summary(abstract, "outcome")
    assert extractive_aspect_summary("", "outcome") == ""
    long = " ".join(["word"] * 200) + "."
    assert len(extractive_aspect_summary(long, "approach").split()) <= ASPECT_MAX_WORDS + 1
