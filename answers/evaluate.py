"""Evaluation on question files and summary datasets; no Slack, no CLI.

- retrieval: MRR and Recall@k at the paper level, per search mode (`evaluate_retrieval`);
- answers: citation precision, gold-paper recall among citations, refusal accuracy, fact recall
  (the answer text matches the question's optional ``answer`` regular expression), the rate of
  unsupported sentences shown, how many answers were the model's, extractive, fallbacks (the
  model failed, ran out of time or could not be verified) or errors, latency, tokens and cost,
  per question kind (`evaluate_answers`), for any answerer (extractive or LLM);
- summaries: ROUGE-1 of TL;DRs against ACLSum's challenge/approach/outcome summaries, next to
  the lead-sentence baseline computed in the same run (`evaluate_summaries`).

Size: three evaluations that share the question file, the per-kind tables and the helpers;
each is a loader, a scores record and a loop, and splitting them would scatter one command.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from answers.models import Answer
from retrieval import MODES, ConfigError, Hit, Mode, PaperbotError, SourceError, title_key

RECALL_AT = (1, 5, 10)


@dataclass(frozen=True, slots=True)
class Question:
    question: str
    titles: tuple[str, ...]
    kind: str
    answer: str | None = None  # a regular expression the answer text must match (the fact)

    def has_fact(self, text: str) -> bool:
        return self.answer is not None and re.search(self.answer, text, re.IGNORECASE) is not None


@dataclass
class RetrievalScores:
    mode: str
    kind: str
    questions: int = 0
    reciprocal_ranks: list[float] = field(default_factory=list)
    recalls: dict[int, list[float]] = field(default_factory=lambda: {k: [] for k in RECALL_AT})

    @property
    def mrr(self) -> float:
        return (
            sum(self.reciprocal_ranks) / len(self.reciprocal_ranks)
            if self.reciprocal_ranks
            else 0.0
        )

    def recall(self, k: int) -> float:
        values = self.recalls[k]
        return sum(values) / len(values) if values else 0.0


def load_questions(path: Path) -> list[Question]:
    if not path.is_file():
        raise SourceError(f"Question file {path} does not exist.")
    questions: list[Question] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            question = Question(
                row["question"],
                tuple(row.get("titles") or ()),
                row.get("kind", "single"),
                row.get("answer"),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SourceError(f"{path}: line {number} is not a question record ({exc}).") from exc
        if question.answer is not None:
            try:
                re.compile(question.answer)
            except (re.error, TypeError) as exc:
                raise SourceError(
                    f"{path}: line {number}: 'answer' must be a regular expression ({exc}); "
                    "escape special characters such as ( ) [ ] . with a backslash."
                ) from exc
        questions.append(question)
    return questions


def score_ranking(
    ranked_titles: Sequence[str], gold: Sequence[str]
) -> tuple[float, dict[int, float]]:
    """Reciprocal rank of the first gold paper and the share of gold papers in the top k."""
    gold_keys = {title_key(t) for t in gold}
    keys = [title_key(t) for t in ranked_titles]
    first = next((i for i, key in enumerate(keys, start=1) if key in gold_keys), None)
    recalls = {k: len(gold_keys & set(keys[:k])) / len(gold_keys) for k in RECALL_AT}
    return (1.0 / first if first else 0.0), recalls


def evaluate_retrieval(
    questions: Sequence[Question],
    search: Callable[[str, int, Mode], list[Hit]],
    modes: Sequence[Mode] = MODES,
) -> list[RetrievalScores]:
    """Scores per mode, for each answerable kind and overall ('all')."""
    answerable = [q for q in questions if q.titles]
    kinds = sorted({q.kind for q in answerable})
    table: list[RetrievalScores] = []
    for mode in modes:
        per_kind = {kind: RetrievalScores(mode, kind) for kind in [*kinds, "all"]}
        for q in answerable:
            hits = search(q.question, max(RECALL_AT), mode)
            rr, recalls = score_ranking([h.paper.title for h in hits], q.titles)
            for bucket in (per_kind[q.kind], per_kind["all"]):
                bucket.questions += 1
                bucket.reciprocal_ranks.append(rr)
                for k, value in recalls.items():
                    bucket.recalls[k].append(value)
        table.extend(per_kind.values())
    return table


# ---------------------------------------------------------------------- answers
#: Kinds in display order (others follow alphabetically).
ANSWER_KINDS_ORDER = ("single", "multi", "unanswerable")


@dataclass
class AnswerScores:
    """Answer quality for one kind of question (or 'all').

    citation_precision: of the papers the answers cite, the share that are gold papers (pooled
    over the kind's questions; citations in an answer to an unanswerable question count as
    wrong). gold_recall: per answerable question, the share of its gold papers cited (a refusal
    cites none), averaged. refusal_accuracy: the share of questions whose refusal decision was
    right (unanswerable refused, answerable answered); a question whose answer failed with an
    error counts as wrong. fact_recall: of the questions with an ``answer`` pattern, the share
    whose answer text matches it. unsupported_sentence_rate: of the claim sentences shown to
    the user, the share the verifier did not find supported (uncited or unsupported).

    How each question was answered is counted apart: ``llm`` (the model's verified answer,
    ``partial`` of them cut off by the deadline), ``extractive`` (no model configured),
    ``fallbacks`` (the model failed, missed the deadline or could not be verified: an
    extractive answer was shown instead), ``refused`` and ``errors``. A fallback is never
    counted as a model answer.
    """

    kind: str
    questions: int = 0
    answerable: int = 0
    refused: int = 0
    errors: int = 0
    llm: int = 0
    partial: int = 0
    extractive: int = 0
    fallbacks: int = 0
    fallback_reasons: dict[str, int] = field(default_factory=dict)
    facts_asked: int = 0
    facts_found: int = 0
    claims_shown: int = 0
    unsupported_shown: int = 0
    sentences_removed: int = 0
    cited: int = 0  # cited papers, summed over answers
    cited_gold: int = 0  # of those, gold papers
    gold_recalls: list[float] = field(default_factory=list)
    refusals_correct: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    misses: list[str] = field(default_factory=list)  # "question: what went wrong"

    @property
    def citation_precision(self) -> float | None:
        return self.cited_gold / self.cited if self.cited else None

    @property
    def gold_recall(self) -> float | None:
        return _mean(self.gold_recalls)

    @property
    def refusal_accuracy(self) -> float | None:
        return self.refusals_correct / self.questions if self.questions else None

    @property
    def mean_latency_ms(self) -> float | None:
        return _mean(self.latencies_ms)

    @property
    def max_latency_ms(self) -> float | None:
        return max(self.latencies_ms) if self.latencies_ms else None

    @property
    def fact_recall(self) -> float | None:
        return self.facts_found / self.facts_asked if self.facts_asked else None

    @property
    def unsupported_sentence_rate(self) -> float | None:
        return self.unsupported_shown / self.claims_shown if self.claims_shown else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready numbers (None where a metric is undefined, e.g. nothing was cited)."""
        return {
            "kind": self.kind,
            "questions": self.questions,
            "answerable": self.answerable,
            "refused": self.refused,
            "errors": self.errors,
            "llm": self.llm,
            "partial": self.partial,
            "extractive": self.extractive,
            "fallbacks": self.fallbacks,
            "fallback_reasons": dict(self.fallback_reasons),
            "citation_precision": _round(self.citation_precision),
            "gold_recall": _round(self.gold_recall),
            "refusal_accuracy": _round(self.refusal_accuracy),
            "fact_recall": _round(self.fact_recall),
            "facts_asked": self.facts_asked,
            "unsupported_sentence_rate": _round(self.unsupported_sentence_rate),
            "sentences_removed": self.sentences_removed,
            "mean_latency_ms": _round(self.mean_latency_ms, 1),
            "max_latency_ms": _round(self.max_latency_ms, 1),
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_usd": round(self.cost_usd, 6),
            "misses": list(self.misses),
        }


def evaluate_answers(
    questions: Sequence[Question],
    answer_fn: Callable[[str], Answer],
    progress: Callable[[Question, Answer | None], None] | None = None,
) -> list[AnswerScores]:
    """Ask every question through ``answer_fn``; scores per kind, then overall ('all').

    Works with any answerer (extractive, or any configured LLM): only the Answer's mode,
    citations, tokens and cost are read. A PaperbotError from ``answer_fn`` (e.g. the LLM is
    down and no fallback was possible) is recorded as an error, not raised.
    """
    kinds = sorted({q.kind for q in questions}, key=_kind_order)
    table = {kind: AnswerScores(kind) for kind in [*kinds, "all"]}
    for q in questions:
        start = time.perf_counter()
        answer: Answer | None
        error = ""
        try:
            answer = answer_fn(q.question)
        except PaperbotError as exc:
            answer, error = None, str(exc)
        latency = (time.perf_counter() - start) * 1000
        if progress is not None:
            progress(q, answer)
        for bucket in (table[q.kind], table["all"]):
            _add_answer(bucket, q, answer, error, latency)
    return list(table.values())


def _add_answer(
    bucket: AnswerScores, q: Question, answer: Answer | None, error: str, latency_ms: float
) -> None:
    bucket.questions += 1
    bucket.latencies_ms.append(latency_ms)
    answerable = bool(q.titles)
    bucket.answerable += answerable
    bucket.facts_asked += q.answer is not None
    if answer is None:
        bucket.errors += 1
        if answerable:
            bucket.gold_recalls.append(0.0)
        bucket.misses.append(f"{q.question}: failed ({error})")
        return
    _add_kind_of_answer(bucket, q, answer)
    bucket.tokens_in += answer.tokens_in
    bucket.tokens_out += answer.tokens_out
    bucket.cost_usd += answer.cost_usd
    refused = answer.mode == "refused"
    bucket.refused += refused
    bucket.refusals_correct += refused != answerable
    cited = {title_key(c.title) for c in answer.citations}
    gold = {title_key(t) for t in q.titles}
    bucket.cited += len(cited)
    bucket.cited_gold += len(cited & gold)
    if answerable:
        bucket.gold_recalls.append(len(cited & gold) / len(gold))
    if refused and answerable:
        bucket.misses.append(f"{q.question}: refused, but the papers answer it")
    elif not refused and not answerable:
        bucket.misses.append(f"{q.question}: answered, but the papers do not answer it")
    elif answerable and not cited & gold:
        bucket.misses.append(f"{q.question}: no gold paper cited")


def _add_kind_of_answer(bucket: AnswerScores, q: Question, answer: Answer) -> None:
    """Who answered (model, extractive, fallback), the fact, and the verifier's verdicts."""
    if answer.fallback:
        bucket.fallbacks += 1
        reasons = bucket.fallback_reasons
        reasons[answer.fallback] = reasons.get(answer.fallback, 0) + 1
        bucket.misses.append(f"{q.question}: the model's answer was replaced ({answer.fallback})")
    elif answer.mode == "llm":
        bucket.llm += 1
        bucket.partial += answer.partial
    elif answer.mode == "extractive":
        bucket.extractive += 1
    if q.answer is not None:
        found = q.has_fact(answer.text)
        bucket.facts_found += found
        if not found and answer.mode != "refused":
            bucket.misses.append(f"{q.question}: the answer does not state /{q.answer}/")
    claims = [s for s in answer.sentences if s.status != "no_claim"]
    bucket.claims_shown += len(claims)
    bucket.unsupported_shown += sum(s.status != "supported" for s in claims)
    bucket.sentences_removed += len(answer.removed)


def _kind_order(kind: str) -> tuple[int, str]:
    known = ANSWER_KINDS_ORDER
    return (known.index(kind) if kind in known else len(known), kind)


# ---------------------------------------------------------------------- summaries
ASPECTS = ("challenge", "approach", "outcome")
SummarizeFn = Callable[[str, str], str]  # (title, abstract) -> summary
AspectFn = Callable[[str, str], str]  # (abstract, aspect) -> summary


@dataclass(frozen=True, slots=True)
class SummaryDoc:
    """One document with reference summaries (ACLSum: one per aspect)."""

    doc_id: str
    title: str
    abstract_sentences: tuple[str, ...]
    summaries: dict[str, str]

    @property
    def abstract(self) -> str:
        return " ".join(self.abstract_sentences).strip()


@dataclass
class SummaryScores:
    """Mean ROUGE-1 F1 against one aspect's reference summaries (or 'overall': all aspects),
    for the lead-sentence baseline, the one-paper TL;DR and the aspect summary."""

    aspect: str
    baseline: str = "lead-1"
    scored: int = 0  # (document, reference summary) pairs
    baseline_f1: list[float] = field(default_factory=list)
    summary_f1: list[float] = field(default_factory=list)  # the TL;DR
    aspect_f1: list[float] = field(default_factory=list)  # the aspect summary

    @property
    def baseline_rouge1(self) -> float:
        return _mean(self.baseline_f1) or 0.0

    @property
    def summary_rouge1(self) -> float:
        return _mean(self.summary_f1) or 0.0

    @property
    def aspect_rouge1(self) -> float | None:
        return _mean(self.aspect_f1)

    @property
    def beats_baseline(self) -> bool:
        """The TL;DR scores higher than the lead sentence."""
        return self.scored > 0 and self.summary_rouge1 > self.baseline_rouge1

    @property
    def aspect_beats_baseline(self) -> bool | None:
        if self.aspect_rouge1 is None:
            return None
        return self.scored > 0 and self.aspect_rouge1 > self.baseline_rouge1

    def as_dict(self) -> dict[str, Any]:
        return {
            "aspect": self.aspect,
            "scored": self.scored,
            "baseline": self.baseline,
            "baseline_rouge1": round(self.baseline_rouge1, 4),
            "summary_rouge1": round(self.summary_rouge1, 4),
            "beats_baseline": self.beats_baseline,
            "aspect_rouge1": _round(self.aspect_rouge1),
            "aspect_beats_baseline": self.aspect_beats_baseline,
        }


def load_aclsum(split: str = "test") -> list[SummaryDoc]:
    """ACLSum documents of one split (the `aclsum` package ships them; no network)."""
    try:
        from aclsum import ACLSum
    except ImportError as exc:
        raise ConfigError(
            "Summary evaluation needs the `aclsum` package: pip install 'paperbot[dev]'."
        ) from exc
    docs = []
    for doc in ACLSum(split):
        sentences = tuple(s.strip() for s in doc.sentences["abstract"] if s.strip())
        if sentences:
            summaries = {a: str(doc.summaries[a]) for a in ASPECTS if doc.summaries.get(a)}
            docs.append(SummaryDoc(str(doc.id), str(doc.title), sentences, summaries))
    return docs


def lead_sentence(doc: SummaryDoc) -> str:
    """The baseline summary: the abstract's first sentence."""
    return doc.abstract_sentences[0] if doc.abstract_sentences else ""


def extractive_summarizer(embed: Callable[[Sequence[str]], Any] | None = None) -> SummarizeFn:
    """Paperbot's extractive TL;DR (``answers.summarize.extractive_tldr``) as a
    (title, abstract) function; ``embed`` (e.g. MiniLM's) scores sentences semantically,
    without it the scoring is lexical."""

    def summarize(title: str, abstract: str) -> str:
        from answers.summarize import extractive_tldr  # late: keeps this module light

        return extractive_tldr(title, abstract, embed)

    return summarize


def evaluate_summaries(
    docs: Sequence[SummaryDoc],
    summarize_fn: SummarizeFn,
    aspects: Sequence[str] = ASPECTS,
    baseline_fn: Callable[[SummaryDoc], str] = lead_sentence,
    aspect_fn: AspectFn | None = None,
) -> list[SummaryScores]:
    """ROUGE-1 F1 (stemmed) against each aspect's reference summary, computed in one run for
    the lead-sentence baseline, ``summarize_fn`` (the TL;DR) and, when given, ``aspect_fn``
    (an aspect-specific summary); one row per aspect, then 'overall' (every doc x aspect)."""
    scorer = _rouge1_scorer()
    rows = {aspect: SummaryScores(aspect) for aspect in [*aspects, "overall"]}
    for doc in docs:
        ours = summarize_fn(doc.title, doc.abstract)
        lead = baseline_fn(doc)
        for aspect in aspects:
            reference = doc.summaries.get(aspect)
            if not reference:
                continue
            ours_f1 = scorer.score(reference, ours)["rouge1"].fmeasure
            lead_f1 = scorer.score(reference, lead)["rouge1"].fmeasure
            for row in (rows[aspect], rows["overall"]):
                row.scored += 1
                row.summary_f1.append(ours_f1)
                row.baseline_f1.append(lead_f1)
            if aspect_fn is not None:
                aspect_summary = aspect_fn(doc.abstract, aspect)
                aspect_f1 = scorer.score(reference, aspect_summary)["rouge1"].fmeasure
                rows[aspect].aspect_f1.append(aspect_f1)
                rows["overall"].aspect_f1.append(aspect_f1)
    return list(rows.values())


def aspect_summarizer() -> AspectFn:
    """Paperbot's extractive aspect summaries (challenge / approach / outcome)."""

    def summarize(abstract: str, aspect: str) -> str:
        from answers.summarize import extractive_aspect_summary

        return extractive_aspect_summary(abstract, aspect)  # type: ignore[arg-type]

    return summarize


def _rouge1_scorer() -> Any:
    try:
        from rouge_score import rouge_scorer
    except ImportError as exc:
        raise ConfigError(
            "Summary evaluation needs the `rouge-score` package: pip install 'paperbot[dev]'."
        ) from exc
    return rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)


# ---------------------------------------------------------------------- helpers
def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)
