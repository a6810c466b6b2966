"""Question answering over the corpus with verified citations.

retrieve (hybrid search) -> relevance gate (refuse without calling the LLM) -> numbered
sources fitted to a token budget -> answer prompt | LLM (LLMRunner's chain) -> citations parsed,
invalid ones removed, every claim checked for a citation and for support -> Answer.
Without an LLM the answer is extractive: relevant sentences quoted verbatim, cited.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from answers import citations as cit
from answers.errors import LLMError
from answers.extractive import pick_quotes
from answers.llm import LLMService, Reply, Usage
from answers.models import Answer, Citation, SentenceCheck, Turn
from prompts import CANNOT_ANSWER
from retrieval import Hit, PaperbotError

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 2000
HISTORY_TURNS = 6


@dataclass(frozen=True, slots=True)
class AnswerDelta:
    """A piece of streamed answer text (unverified until the final Answer arrives)."""

    text: str


@dataclass
class _Prepared:
    question: str
    standalone: str
    hits: list[Hit]
    sources: list[cit.Source]
    prompt: dict[str, str]  # the answer prompt's variables
    timings: dict[str, float] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)


class QAService(LLMService):
    """Answers questions; the LLM is optional (None = extractive mode).

    Built with (corpus, llm, settings=None, *, runner=None), as every `LLMService`.
    """

    # ------------------------------------------------------------------ public
    def answer(self, question: str, history: Sequence[Turn] = ()) -> Answer:
        start = time.perf_counter()
        prepared = self._prepare(question, history)
        if isinstance(prepared, Answer):
            return self._stamp(prepared, start)
        if not self.runner.available:
            return self._stamp(self._extractive(prepared), start)
        try:
            t0 = time.perf_counter()
            reply = self.runner.invoke("answer", **prepared.prompt)
            prepared.timings["llm_ms"] = _ms(t0)
        except LLMError as exc:
            return self._stamp(self._fallback(prepared, exc), start)
        prepared.usage = prepared.usage + reply.usage
        return self._stamp(self._finish(prepared, reply.text), start)

    async def astream(
        self, question: str, history: Sequence[Turn] = ()
    ) -> AsyncIterator[AnswerDelta | Answer]:
        """Partial text as it is generated, then the verified Answer (always last)."""
        start = time.perf_counter()
        prepared = await asyncio.to_thread(self._prepare, question, history)
        if isinstance(prepared, Answer) or not self.runner.available:
            final = prepared if isinstance(prepared, Answer) else self._extractive(prepared)
            yield AnswerDelta(final.text)
            yield self._stamp(final, start)
            return
        reply = Reply("")
        t0 = time.perf_counter()
        try:
            async for piece in self.runner.astream("answer", **prepared.prompt):
                if isinstance(piece, Reply):
                    reply = piece
                else:
                    yield AnswerDelta(piece)
        except LLMError as exc:
            yield self._stamp(self._fallback(prepared, exc), start)
            return
        prepared.timings["llm_ms"] = _ms(t0)
        prepared.usage = prepared.usage + reply.usage
        final = await asyncio.to_thread(self._finish, prepared, reply.text)
        yield self._stamp(final, start)

    # ------------------------------------------------------------------ steps
    def _prepare(self, question: str, history: Sequence[Turn]) -> _Prepared | Answer:
        question = _validate(question)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        standalone, usage = self._standalone(question, history)
        timings["condense_ms"] = _ms(t0)
        t0 = time.perf_counter()
        hits = self.corpus.search(standalone)
        timings["retrieval_ms"] = _ms(t0)
        if not self._relevant(hits):
            answer = Answer(
                question, CANNOT_ANSWER, "refused", standalone, hits=hits, model=self.model
            )
            answer.timings_ms.update(timings)
            return answer
        t0 = time.perf_counter()
        sources = self._sources(hits)
        prompt = {
            "question": standalone,
            "context": "\n\n".join(s.render() for s in sources),
            "cannot_answer": CANNOT_ANSWER,
            "max_sentences": str(self.settings.answer_max_sentences),
        }
        timings["prompt_ms"] = _ms(t0)
        return _Prepared(question, standalone, hits, sources, prompt, timings, usage)

    def _standalone(self, question: str, history: Sequence[Turn]) -> tuple[str, Usage]:
        recent = list(history)[-HISTORY_TURNS:]
        if not recent:
            return question, Usage()
        if not self.runner.available:
            # Without an LLM, the previous question carries the context for retrieval.
            previous = next((t.text for t in reversed(recent) if t.role == "user"), "")
            return (f"{previous} {question}".strip(), Usage())
        transcript = "\n".join(f"{t.role}: {t.text[:1000]}" for t in recent)
        try:
            reply = self.runner.invoke("condense", history=transcript, question=question)
        except LLMError as exc:
            log.warning("follow-up rewrite failed (%s); using the question as asked", exc)
            return question, Usage()
        rewritten = reply.text.strip()
        return (rewritten or question)[:MAX_QUESTION_CHARS], reply.usage

    def _relevant(self, hits: Sequence[Hit]) -> bool:
        """Calibrated on data/sample/dev_questions.jsonl (see docs/benchmarks.md)."""
        return self.corpus.relevance.any(hits)

    def _sources(self, hits: Sequence[Hit]) -> list[cit.Source]:
        chunks = self.corpus.chunks_of(h.paper.paper_id for h in hits)
        return cit.select_sources(
            hits,
            lambda paper_id: chunks.get(paper_id, []),
            self.corpus.count_tokens,
            self.settings.llm_context_tokens,
            self.settings.llm_max_sources,
        )

    # ------------------------------------------------------------------ verification
    def _finish(self, prepared: _Prepared, raw: str) -> Answer:
        t0 = time.perf_counter()
        raw = raw.strip()
        answer = Answer(
            prepared.question,
            raw,
            "llm",
            prepared.standalone,
            hits=prepared.hits,
            model=self.model,
        )
        answer.flags += _withheld_flags(prepared.sources)
        if not raw or cit.strip_citations(raw).startswith(CANNOT_ANSWER.rstrip(".")):
            answer.mode, answer.text = "refused", CANNOT_ANSWER
            answer.flags.append("The model found no answer in the retrieved sources.")
        else:
            self._verify(answer, prepared.sources)
        answer.timings_ms.update(prepared.timings)
        answer.timings_ms["verify_ms"] = _ms(t0)
        answer.tokens_in, answer.tokens_out = prepared.usage.tokens_in, prepared.usage.tokens_out
        answer.cost_usd = self.runner.cost(prepared.usage)
        return answer

    def _verify(self, answer: Answer, sources: Sequence[cit.Source]) -> None:
        by_number = {s.number: s for s in sources}
        sentences = cit.answer_sentences(answer.text)
        invalid = sorted({n for s in sentences for n in cit.cited_numbers(s) if n not in by_number})
        if invalid:
            answer.flags.append(
                f"Removed citation(s) {', '.join(f'[{n}]' for n in invalid)}: "
                "no such source was given to the model."
            )
        mapping = _paper_numbering(sentences, by_number)
        vectors = self._support_vectors(sentences, sources)
        checks: list[SentenceCheck] = []
        best: dict[int, float] = {}
        for sentence in sentences:
            check = self._check(sentence, by_number, mapping, vectors)
            checks.append(check)
            for n in check.citations:
                best[n] = max(best.get(n, 0.0), check.support or 0.0)
        answer.sentences = checks
        answer.text = cit.rewrite_citations(answer.text, _source_to_citation(mapping))
        answer.citations = _citations(mapping, by_number, sentences, best)
        answer.flags += _sentence_flags(checks)

    def _check(
        self,
        sentence: str,
        by_number: dict[int, cit.Source],
        mapping: dict[str, tuple[int, list[int]]],
        vectors: dict[str, np.ndarray],
    ) -> SentenceCheck:
        sources = [
            by_number[n] for n in dict.fromkeys(cit.cited_numbers(sentence)) if n in by_number
        ]
        numbers = tuple(dict.fromkeys(mapping[s.paper.paper_id][0] for s in sources))
        text = cit.rewrite_citations(sentence, _source_to_citation(mapping))
        if not cit.is_claim(sentence, CANNOT_ANSWER):
            return SentenceCheck(text, numbers, None, "no_claim")
        if not sources:
            return SentenceCheck(text, (), None, "uncited")
        sentence_vec = vectors[sentence]
        support = max(
            cit.support_score(sentence, s.seen_text, sentence_vec, vectors[s.chunk.chunk_id])
            for s in sources
        )
        if support >= self.settings.support_threshold:
            return SentenceCheck(text, numbers, round(support, 3), "supported")
        return SentenceCheck(text, numbers, round(support, 3), "unsupported")

    def _support_vectors(
        self, sentences: Sequence[str], sources: Sequence[cit.Source]
    ) -> dict[str, np.ndarray]:
        """Vectors of the cited sentences and of the sources' chunks, by sentence / chunk id.

        The sentences are the model's own words, new with every answer: embedded now and not
        cached (the cache would only grow). The chunks come from the embedding cache.
        """
        claims = [s for s in sentences if cit.cited_numbers(s)]
        claim_rows = self.corpus.vectors([cit.strip_citations(s) for s in claims], cache=False)
        chunk_rows = self.corpus.vectors([s.chunk.embed_text for s in sources])
        vectors = dict(zip(claims, claim_rows, strict=True))
        vectors.update(zip((s.chunk.chunk_id for s in sources), chunk_rows, strict=True))
        return vectors

    # ------------------------------------------------------------------ extractive
    def _extractive(self, prepared: _Prepared, flags: Sequence[str] = ()) -> Answer:
        t0 = time.perf_counter()
        quotes = pick_quotes(
            prepared.standalone,
            prepared.hits,
            self.corpus.vectors,  # abstract sentences are quoted often: cached
            self.corpus.embed_query(prepared.standalone),
        )
        numbers: dict[str, int] = {}
        lines: list[str] = []
        cites: list[Citation] = []
        for quote in quotes:
            paper = quote.hit.paper
            if paper.paper_id not in numbers:
                numbers[paper.paper_id] = len(numbers) + 1
                cites.append(
                    Citation(
                        numbers[paper.paper_id],
                        paper.paper_id,
                        paper.title,
                        paper.link,
                        quote.sentence,
                        (quote.hit.chunk.chunk_id,),
                        round(quote.score, 3),
                    )
                )
            lines.append(f"“{quote.sentence}” [{numbers[paper.paper_id]}]")
        answer = Answer(
            prepared.question,
            "\n".join(lines),
            "extractive",
            prepared.standalone,
            citations=cites,
            hits=prepared.hits,
            model="extractive",
        )
        answer.sentences = [
            SentenceCheck(line, (numbers[q.hit.paper.paper_id],), round(q.score, 3), "supported")
            for line, q in zip(lines, quotes, strict=True)
        ]
        answer.flags += list(flags)
        answer.timings_ms.update(prepared.timings)
        answer.timings_ms["extract_ms"] = _ms(t0)
        return answer

    def _fallback(self, prepared: _Prepared, error: LLMError) -> Answer:
        log.warning("LLM failed, answering extractively: %s", error)
        return self._extractive(prepared, [f"{error} Showing an extractive answer instead."])

    @staticmethod
    def _stamp(answer: Answer, start: float) -> Answer:
        answer.timings_ms["total_ms"] = _ms(start)
        return answer


# ---------------------------------------------------------------------- helpers
def _validate(question: str) -> str:
    question = " ".join(question.split())
    if not question:
        raise PaperbotError("Ask a question: the message has no text.")
    if len(question) > MAX_QUESTION_CHARS:
        raise PaperbotError(
            f"The question is {len(question):,} characters; please keep it under "
            f"{MAX_QUESTION_CHARS:,} (ask about one thing at a time)."
        )
    return question


def _paper_numbering(
    sentences: Sequence[str], by_number: dict[int, cit.Source]
) -> dict[str, tuple[int, list[int]]]:
    """Citation number per cited paper, in order of first citation, with its source numbers."""
    mapping: dict[str, tuple[int, list[int]]] = {}
    for sentence in sentences:
        for n in cit.cited_numbers(sentence):
            if n not in by_number:
                continue
            pid = by_number[n].paper.paper_id
            _, seen = mapping.setdefault(pid, (len(mapping) + 1, []))
            if n not in seen:
                seen.append(n)
    return mapping


def _source_to_citation(mapping: dict[str, tuple[int, list[int]]]) -> dict[int, int]:
    return {n: number for number, sources in mapping.values() for n in sources}


def _citations(
    mapping: dict[str, tuple[int, list[int]]],
    by_number: dict[int, cit.Source],
    sentences: Sequence[str],
    best: dict[int, float],
) -> list[Citation]:
    result = []
    for number, source_numbers in sorted(mapping.values()):
        sources = [by_number[n] for n in source_numbers]
        citing = [s for s in sentences if set(cit.cited_numbers(s)) & set(source_numbers)]
        quote = cit.best_quote(" ".join(s.chunk.text for s in sources), citing)
        paper = sources[0].paper
        result.append(
            Citation(
                number,
                paper.paper_id,
                paper.title,
                paper.link,
                quote,
                tuple(s.chunk.chunk_id for s in sources),
                best.get(number),
            )
        )
    return result


def _sentence_flags(checks: Sequence[SentenceCheck]) -> list[str]:
    flags = []
    for i, check in enumerate(checks, start=1):
        short = cit.strip_citations(check.text)[:80]
        if check.status == "uncited":
            flags.append(f"Sentence {i} states a claim without a citation: “{short}”")
        elif check.status == "unsupported":
            flags.append(
                f"Sentence {i} is weakly supported by its citation "
                f"(support {check.support:.2f}): “{short}”"
            )
    return flags


def _withheld_flags(sources: Sequence[cit.Source]) -> list[str]:
    return [
        f"Source “{s.paper.title[:60]}” contains instruction-like text; "
        "it was withheld from the model."
        for s in sources
        if s.withheld
    ]


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)
