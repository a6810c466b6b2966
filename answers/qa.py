"""Question answering over the corpus with verified citations.

retrieve (hybrid search) -> relevance gate (refuse without calling the LLM) -> numbered
sources, fenced with a random delimiter and fitted to a token budget -> answer prompt | LLM
(LLMRunner's chain) -> citations parsed, invalid ones removed, every sentence checked by the
claim verifier (`answers.verify`: a valid citation, its numbers and names in the cited source,
enough support) -> the policy (`PAPERBOT_VERIFY_POLICY`): strict removes what fails, asks the
model once more when nothing is left, then answers extractively -> Answer.
Without an LLM the answer is extractive: relevant sentences quoted verbatim, cited.

One deadline per answer (`PAPERBOT_ANSWER_DEADLINE_SECONDS`) bounds every model call of it:
the follow-up rewrite, the answer (retries and streaming included) and the second attempt.
When it passes, the verified part of a streamed answer or the extractive answer is shown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from answers import citations as cit
from answers import verify
from answers.errors import LLMDeadlineError, LLMError
from answers.extractive import lead, pick_quotes
from answers.llm import LLMService, Reply, Usage
from answers.models import Answer, Citation, SentenceCheck, SentenceStatus, Turn
from prompts import CANNOT_ANSWER
from retrieval import Hit, PaperbotError

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 2000
HISTORY_TURNS = 6
MIN_RETRY_SECONDS = 1.0  # the second attempt is only made with at least this much time left


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
    end: float = float("inf")  # the answer's deadline, time.monotonic()

    def left(self) -> float:
        return self.end - time.monotonic()


@dataclass(frozen=True, slots=True)
class _Verdict:
    status: SentenceStatus
    support: float | None = None
    missing: tuple[str, ...] = ()


class QAService(LLMService):
    """Answers questions; the LLM is optional (None = extractive mode).

    Built with (corpus, llm, settings=None, *, runner=None), as every `LLMService`.
    """

    # ------------------------------------------------------------------ public
    def answer(self, question: str, history: Sequence[Turn] = ()) -> Answer:
        start = time.perf_counter()
        prepared = self._prepare(question, history, self._deadline())
        if isinstance(prepared, Answer):
            return self._stamp(prepared, start)
        if not self.runner.available:
            return self._stamp(self._extractive(prepared), start)
        try:
            t0 = time.perf_counter()
            reply = self.runner.invoke("answer", timeout=prepared.left(), **prepared.prompt)
            prepared.timings["llm_ms"] = _ms(t0)
        except LLMError as exc:
            return self._stamp(self._fallback(prepared, exc), start)
        prepared.usage = prepared.usage + reply.usage
        return self._stamp(self._settle(prepared, reply.text), start)

    async def astream(
        self, question: str, history: Sequence[Turn] = ()
    ) -> AsyncIterator[AnswerDelta | Answer]:
        """Partial text as it is generated, then the verified Answer (always last). Under the
        strict policy, the text is streamed a sentence at a time, and only sentences the
        verifier keeps: an unsupported number never shows, not even while streaming."""
        start = time.perf_counter()
        end = self._deadline()
        prepared = await asyncio.to_thread(self._prepare, question, history, end)
        if isinstance(prepared, Answer) or not self.runner.available:
            final = prepared if isinstance(prepared, Answer) else self._extractive(prepared)
            yield AnswerDelta(final.text)
            yield self._stamp(final, start)
            return
        reply = Reply("")
        t0 = time.perf_counter()
        strict = self.settings.verify_policy == "strict"
        buffer = verify.SentenceBuffer()  # strict: only sentences that pass are streamed
        try:
            async for piece in self.runner.astream(
                "answer", timeout=prepared.left(), **prepared.prompt
            ):
                if isinstance(piece, Reply):
                    reply = piece
                elif not strict:
                    yield AnswerDelta(piece)
                else:
                    for sentence in buffer.feed(piece):
                        if await asyncio.to_thread(self._passes, prepared, sentence):
                            yield AnswerDelta(sentence + " ")
        except LLMDeadlineError as exc:
            yield self._stamp(await asyncio.to_thread(self._cut_off, prepared, exc), start)
            return
        except LLMError as exc:
            yield self._stamp(self._fallback(prepared, exc), start)
            return
        prepared.timings["llm_ms"] = _ms(t0)
        prepared.usage = prepared.usage + reply.usage
        final = await asyncio.to_thread(self._settle, prepared, reply.text)
        yield self._stamp(final, start)

    # ------------------------------------------------------------------ steps
    def _deadline(self) -> float:
        return time.monotonic() + self.settings.answer_deadline_seconds

    def _prepare(self, question: str, history: Sequence[Turn], end: float) -> _Prepared | Answer:
        question = _validate(question)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        standalone, usage = self._standalone(question, history, end)
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
        fence = cit.new_fence()  # per request: a source cannot know it to close its fence
        sources = self._sources(hits, fence)
        prompt = {
            "question": standalone,
            "context": cit.fence_context(sources, fence),
            "fence": fence,
            "feedback": "",
            "cannot_answer": CANNOT_ANSWER,
            "max_sentences": str(self.settings.answer_max_sentences),
        }
        timings["prompt_ms"] = _ms(t0)
        return _Prepared(question, standalone, hits, sources, prompt, timings, usage, end)

    def _standalone(self, question: str, history: Sequence[Turn], end: float) -> tuple[str, Usage]:
        recent = list(history)[-HISTORY_TURNS:]
        if not recent:
            return question, Usage()
        if not self.runner.available:
            # Without an LLM, the previous question carries the context for retrieval.
            previous = next((t.text for t in reversed(recent) if t.role == "user"), "")
            return (f"{previous} {question}".strip(), Usage())
        transcript = "\n".join(f"{t.role}: {t.text[:1000]}" for t in recent)
        try:
            reply = self.runner.invoke(
                "condense",
                timeout=end - time.monotonic(),
                history=transcript,
                question=question,
            )
        except LLMError as exc:
            log.warning("follow-up rewrite failed (%s); using the question as asked", exc)
            return question, Usage()
        rewritten = reply.text.strip()
        return (rewritten or question)[:MAX_QUESTION_CHARS], reply.usage

    def _relevant(self, hits: Sequence[Hit]) -> bool:
        """Calibrated on data/sample/dev_questions.jsonl (see docs/benchmarks.md)."""
        return self.corpus.relevance.any(hits)

    def _sources(self, hits: Sequence[Hit], fence: str) -> list[cit.Source]:
        chunks = self.corpus.chunks_of(h.paper.paper_id for h in hits)
        return cit.select_sources(
            hits,
            lambda paper_id: chunks.get(paper_id, []),
            self.corpus.count_tokens,
            self.settings.llm_context_tokens,
            self.settings.llm_max_sources,
            fence=fence,
        )

    # ------------------------------------------------------------------ verification
    def _settle(self, prepared: _Prepared, raw: str) -> Answer:
        """The verified answer; under the strict policy, when nothing of it is supported, a
        second attempt listing the failures, then an extractive answer that says why."""
        answer = self._finish(prepared, raw)
        if answer.mode != "llm" or answer.verified:
            return answer
        if self.settings.verify_policy != "strict":
            answer.flags.insert(0, "No sentence of this answer is supported by a cited abstract.")
            return answer
        removed, flags = list(answer.removed), list(answer.flags)
        if prepared.left() >= MIN_RETRY_SECONDS:
            failed = [(c.text, c.status, c.missing) for c in removed]
            retry = prepared.prompt | {"feedback": verify.retry_feedback(verify.failures(failed))}
            try:
                reply = self.runner.invoke("answer", timeout=prepared.left(), **retry)
            except LLMError as exc:
                flags.append(f"The second attempt failed: {exc}")
            else:
                prepared.usage = prepared.usage + reply.usage
                second = self._finish(prepared, reply.text)
                if second.mode != "llm" or second.verified:
                    second.removed = removed + second.removed
                    second.flags[:0] = [
                        f"The model's first answer could not be verified ({len(removed)} "
                        "sentence(s) removed); this is its second attempt."
                    ]
                    return second
                removed += second.removed
                flags += second.flags
        fallback = self._extractive(prepared, _unique(flags))
        fallback.flags.append(
            f"The model's answer could not be verified against the cited abstracts "
            f"({len(removed)} sentence(s) removed). Showing an extractive answer instead."
        )
        fallback.removed, fallback.fallback = removed, "unverified"
        self._account(fallback, prepared)
        return fallback

    def _cut_off(self, prepared: _Prepared, error: LLMDeadlineError) -> Answer:
        """The deadline passed mid-stream: the verified part of the text so far, or else the
        extractive answer."""
        done = verify.complete_part(error.partial)
        if done:
            answer = self._finish(prepared, done)
            if answer.mode == "llm" and answer.verified:
                answer.partial = True
                answer.flags.insert(0, f"{error} Showing the verified part of its answer.")
                return answer
        return self._fallback(prepared, error)

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
        answer.flags += cit.withheld_flags(prepared.sources)
        if not raw or cit.strip_citations(raw).startswith(CANNOT_ANSWER.rstrip(".")):
            answer.mode, answer.text = "refused", CANNOT_ANSWER
            answer.flags.append("The model found no answer in the retrieved sources.")
        else:
            self._verify(answer, prepared.sources)
        answer.timings_ms.update(prepared.timings)
        answer.timings_ms["verify_ms"] = _ms(t0)
        self._account(answer, prepared)
        return answer

    def _account(self, answer: Answer, prepared: _Prepared) -> None:
        answer.tokens_in, answer.tokens_out = prepared.usage.tokens_in, prepared.usage.tokens_out
        answer.cost_usd = self.runner.cost(prepared.usage)

    def _verify(self, answer: Answer, sources: Sequence[cit.Source]) -> None:
        by_number = {s.number: s for s in sources}
        sentences = cit.answer_sentences(answer.text)
        invalid = sorted({n for s in sentences for n in cit.cited_numbers(s) if n not in by_number})
        if invalid:
            answer.flags.append(
                f"Removed citation(s) {', '.join(f'[{n}]' for n in invalid)}: "
                "no such source was given to the model."
            )
        unique = _unique(sentences, key=lambda s: cit.strip_citations(s).casefold())
        if len(unique) < len(sentences):
            answer.flags.append(f"Removed {len(sentences) - len(unique)} repeated sentence(s).")
        vectors = self._support_vectors(unique, sources)
        judged = [(s, self._judge(s, by_number, vectors)) for s in unique]
        strict = self.settings.verify_policy == "strict"
        kept = [(s, v) for s, v in judged if not strict or v.status in ("supported", "no_claim")]
        answer.removed = [
            SentenceCheck(cit.strip_citations(s), (), v.support, v.status, v.missing)
            for s, v in judged
            if strict and v.status not in ("supported", "no_claim")
        ]
        mapping = cit.paper_numbering([s for s, _ in kept], by_number)
        renumber = cit.source_to_citation(mapping)
        checks: list[SentenceCheck] = []
        best: dict[int, float] = {}
        for sentence, verdict in kept:
            numbers = tuple(
                dict.fromkeys(
                    mapping[by_number[n].paper.paper_id][0]
                    for n in cit.cited_numbers(sentence)
                    if n in by_number
                )
            )
            text = cit.rewrite_citations(sentence, renumber)
            checks.append(
                SentenceCheck(text, numbers, verdict.support, verdict.status, verdict.missing)
            )
            for n in numbers:
                best[n] = max(best.get(n, 0.0), verdict.support or 0.0)
        answer.sentences = checks
        if len(kept) == len(sentences):
            answer.text = cit.rewrite_citations(answer.text, renumber)
        else:
            answer.text = " ".join(c.text for c in checks)
        answer.citations = cit.citations_of(mapping, by_number, [s for s, _ in kept], best)
        answer.flags += verify.sentence_flags(checks) + verify.removal_flags(answer.removed)

    def _passes(self, prepared: _Prepared, sentence: str) -> bool:
        """Would the strict verifier keep this sentence (one streamed before the rest)?"""
        vectors = self._support_vectors([sentence], prepared.sources)
        by_number = {s.number: s for s in prepared.sources}
        return self._judge(sentence, by_number, vectors).status in ("supported", "no_claim")

    def _judge(
        self, sentence: str, by_number: dict[int, cit.Source], vectors: dict[str, np.ndarray]
    ) -> _Verdict:
        """The claim verifier's verdict on one sentence of the model's answer."""
        sources = [
            by_number[n] for n in dict.fromkeys(cit.cited_numbers(sentence)) if n in by_number
        ]
        if not cit.is_claim(sentence, CANNOT_ANSWER):
            return _Verdict("no_claim")
        if not sources:
            return _Verdict("uncited")
        support = max(
            cit.support_score(sentence, s.seen_text, vectors[sentence], vectors[s.chunk.chunk_id])
            for s in sources
        )
        missing = verify.missing_facts(sentence, [s.evidence for s in sources])
        ok = support >= self.settings.support_threshold and not missing
        return _Verdict("supported" if ok else "unsupported", round(support, 3), missing)

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
        opening = lead(prepared.standalone, quotes)  # "which paper…": its name first
        answer = Answer(
            prepared.question,
            "\n".join(([f"{opening} [1]"] if opening else []) + lines),
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
        answer = self._extractive(prepared, [f"{error} Showing an extractive answer instead."])
        answer.fallback = "deadline" if isinstance(error, LLMDeadlineError) else "llm_error"
        return answer

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


def _unique(items: Sequence[str], key: Callable[[str], str] = lambda s: s) -> list[str]:
    seen: dict[str, str] = {}
    for item in items:
        seen.setdefault(key(item), item)
    return list(seen.values())


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)
