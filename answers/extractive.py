"""Extractive answers: sentences of the top abstracts that answer the question, quoted verbatim.

A sentence is scored for the *question*, not only for similarity: its embedding similarity to
the question, how much of the question's rarer terms it covers, and what kind of answer the
question wants (`AnswerCue`): "how many / how long / what accuracy" wants a sentence with a
quantity, "which paper / what method" the sentence that names the paper's method. The top
paper's best sentence always leads; another paper is quoted only when it adds a sentence that
answers at least as well and mentions what the question names (or when the question asks for
papers, plural). Quotes are never edited: a sentence is shown as the abstract has it, or not
at all.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from answers.citations import sanitize
from retrieval import QUESTION_WORDS, Hit, name_terms, split_sentences, tokenize

PAPERS = 4  # papers whose sentences are considered
MAX_PER_PAPER = 2
MAX_SENTENCES = 4
# A second sentence of the same paper must score at least this share of the first.
SAME_PAPER_FLOOR = 0.85
# When the question asks for papers (plural), another paper's best sentence must score at
# least this share of the first; otherwise it must score at least as high as the first.
LIST_FLOOR = 0.75
MIN_WORDS = 5
SIMILARITY_WEIGHT = 0.45
COVERAGE_WEIGHT = 0.55
QUANTITY_BONUS = 0.25
# ...and more when the amount is of the kind asked for ("how long" -> a duration)
DURATION_BONUS = 0.2
NAME_BONUS = 0.2
# A question term that is also in the paper's title says which paper, not which sentence.
TITLE_TERM_WEIGHT = 0.3
# A sentence that opens by pointing back ("This is achieved by ...", "It ...") is quoted with
# the sentence before it; a lead sentence followed by one that points back ("This method
# allows ...") with that one: a quote must make sense on its own.
_ANAPHOR = re.compile(
    r"^(?:this|these|it|they|such|thus|hence|here)\b(?!\s+(?:paper|work|study)\b)", re.I
)


class AnswerCue(Enum):
    """What kind of answer a question asks for."""

    QUANTITY = "quantity"  # how many / how long / what accuracy ... -> a number
    NAME = "name"  # which paper / what method ... -> the sentence naming it
    PAPERS = "papers"  # which papers ... -> one sentence from each matching paper
    GENERAL = "general"


_UNIT_WORDS = (
    r"%|\+%|x\b|×|times\b|\s?(?:seconds?|ms|minutes?|hours?|days?|GPUs?|nodes?|layers?|"
    r"parameters?|samples?|videos?|benchmarks?|languages?|tokens?|FPS|petaFLOP/s|"
    r"billion|million|trillion|points?|BLEU|AP|F1)\b|[KMB]\b|-(?:million|billion)"
)
# A number with a unit or a decimal point: "~7 seconds" (LaTeX "sim7"), "84.4%", "1.42x", "4.3M".
_QUANTITY = re.compile(
    rf"(?:(?<=sim)|(?<=~)|(?<![\w.-]))\d+(?:[.,]\d+)*(?:{_UNIT_WORDS}|\.\d+)", re.IGNORECASE
)
_QUANTITY_CUE = re.compile(
    r"\bhow (?:many|much|long|fast|large|big|small|quickly|often|well)\b|\bby how\b"
    r"|\bwhat\s+(?:is\s+|are\s+|was\s+)?(?:the\s+)?(?:[\w-]+\s+){0,2}?(?:accuracy|"
    r"speed-?ups?|percentage|throughput|latency|number|rate|F1|AP|FID|BLEU|ROUGE|perplexity|"
    r"reduction|savings?|improvement|gains?)\b",
    re.IGNORECASE,
)
_DURATION_CUE = re.compile(r"\bhow (?:long|fast|quickly)\b|\b(?:time|latency)\b", re.I)
_DURATION = re.compile(
    r"(?:(?<=sim)|(?<=~)|(?<![\w.-]))\d+(?:[.,]\d+)?\s?(?:seconds?|ms|minutes?|hours?|days?|s\b)",
    re.IGNORECASE,
)
_PAPERS_CUE = re.compile(r"\b(?:which|what) papers\b|\bpapers (?:about|on|that)\b", re.I)
_NAME_CUE = re.compile(
    r"^\W*(?:which|what)\b[^?]{0,80}?\b(?:paper|method|model|system|framework|technique|"
    r"approach|architecture|algorithm|library|benchmark|dataset|strategy|tool)\b",
    re.IGNORECASE,
)
_NAME_VERB = re.compile(r"^\W*which\b", re.IGNORECASE)


def answer_cue(question: str) -> AnswerCue:
    """The kind of answer ``question`` asks for (see `AnswerCue`)."""
    if _PAPERS_CUE.search(question):
        return AnswerCue.PAPERS
    if _QUANTITY_CUE.search(question):
        return AnswerCue.QUANTITY
    if _NAME_CUE.search(question) or _NAME_VERB.search(question):
        return AnswerCue.NAME
    return AnswerCue.GENERAL


def has_quantity(sentence: str) -> bool:
    """A measured amount: a number with a unit, a percentage, a multiplier or a decimal."""
    return bool(_QUANTITY.search(sentence))


def paper_name(title: str) -> str | None:
    """The short name a title gives its method ("GVGEN: Text-to-3D ..." -> "GVGEN")."""
    head, sep, _ = title.partition(":")
    head = head.strip()
    if sep and head and len(head.split()) <= 3:
        return head
    return None


def lead(question: str, quotes: Sequence[Quote]) -> str | None:
    """For a "which paper / what method" question, the name the answer opens with: the first
    quoted paper's title (its own words, not a quote). None for other questions."""
    if not quotes or answer_cue(question) is not AnswerCue.NAME:
        return None
    return quotes[0].hit.paper.title


@dataclass(frozen=True, slots=True)
class Quote:
    hit: Hit
    sentence: str
    score: float


def pick_quotes(
    question: str,
    hits: Sequence[Hit],
    embed: Callable[[Sequence[str]], np.ndarray],
    query_vec: np.ndarray,
) -> list[Quote]:
    """The sentences that answer ``question``: the top paper's best one first, then those that
    add to it (see the module docstring), in reading order."""
    candidates = _candidates(hits[:PAPERS])
    if not candidates:
        return []
    cue = answer_cue(question)
    vectors = embed([s for _, s in candidates])
    weights = _term_weights(question, [s for _, s in candidates])
    scored = [
        Quote(
            hit,
            sentence,
            _score(question, cue, _in_paper(weights, hit), hit, sentence, vec, query_vec),
        )
        for (hit, sentence), vec in zip(candidates, vectors, strict=True)
    ]
    top_paper = hits[0].paper.paper_id
    names = name_terms(question)
    ranked = sorted(scored, key=lambda q: -q.score)
    first = next(q for q in ranked if q.hit.paper.paper_id == top_paper)
    chosen = [first]
    per_paper = {top_paper: 1}
    if cue is AnswerCue.NAME and not _names_paper(first.hit, first.sentence):
        # "which paper / what method": quote the top paper's sentence that names it too
        naming = next(
            (q for q in ranked if q.hit is first.hit and _names_paper(q.hit, q.sentence)), None
        )
        if naming is not None:
            chosen.append(naming)
            per_paper[top_paper] = 2
    for quote in ranked:
        pid = quote.hit.paper.paper_id
        if len(chosen) >= MAX_SENTENCES:
            break
        if quote in chosen or per_paper.get(pid, 0) >= _paper_cap(cue, pid, top_paper):
            continue
        if not _adds(cue, quote, first, pid == top_paper, len(per_paper)):
            continue
        if pid != top_paper and cue is not AnswerCue.PAPERS and not _mentions(quote.hit, names):
            continue  # the question names a method or dataset this paper never mentions
        chosen.append(quote)
        per_paper[pid] = per_paper.get(pid, 0) + 1
    chosen += _context(first, chosen, scored)
    return _in_reading_order(chosen, hits)


def _context(first: Quote, chosen: Sequence[Quote], scored: Sequence[Quote]) -> list[Quote]:
    """The lead quote's neighbours it needs to make sense (see `_ANAPHOR`), when they are
    candidates (not withheld, not too short) and not quoted already."""
    sentences = [q for q in scored if q.hit is first.hit]
    index = next(i for i, q in enumerate(sentences) if q is first)
    taken = {q.sentence for q in chosen}
    extra: list[Quote] = []
    if _ANAPHOR.match(first.sentence) and index > 0:
        extra.append(sentences[index - 1])
    if index + 1 < len(sentences) and _ANAPHOR.match(sentences[index + 1].sentence):
        extra.append(sentences[index + 1])
    return [q for q in extra if q.sentence not in taken][: max(0, MAX_SENTENCES - len(chosen))]


def _paper_cap(cue: AnswerCue, paper_id: str, top_paper: str) -> int:
    if paper_id == top_paper and cue is not AnswerCue.PAPERS:
        return MAX_PER_PAPER
    return 1  # another paper adds its one best sentence, if any


def _adds(cue: AnswerCue, quote: Quote, first: Quote, same_paper: bool, papers: int) -> bool:
    """Does ``quote`` add an answering sentence to an answer that opens with ``first``?"""
    if same_paper:
        return quote.score >= SAME_PAPER_FLOOR * first.score
    if cue is AnswerCue.PAPERS:
        return quote.score >= LIST_FLOOR * first.score
    if cue is AnswerCue.QUANTITY and not has_quantity(quote.sentence):
        return False  # it does not answer "how many / how long"
    # A single answer: a second paper only when it answers at least as well, and only one.
    return papers < 2 and quote.score >= first.score


def _mentions(hit: Hit, names: set[str]) -> bool:
    """Does the paper mention one of the names the question asks about (or ask about none)?"""
    if not names:
        return True
    return bool(names & set(tokenize(f"{hit.paper.title} {hit.paper.abstract}")))


def _candidates(hits: Sequence[Hit]) -> list[tuple[Hit, str]]:
    pairs = []
    for hit in hits:
        for sentence in split_sentences(hit.paper.abstract):
            clean, withheld = sanitize(sentence)
            if not withheld and len(clean.split()) >= MIN_WORDS:
                pairs.append((hit, clean))
    return pairs


def _content_terms(text: str) -> set[str]:
    return {t for t in tokenize(text) if t not in QUESTION_WORDS}


def _term_weights(question: str, sentences: Sequence[str]) -> dict[str, float]:
    """The question's content terms, each weighted by how rare it is among the candidate
    sentences (a term in every sentence says nothing about which one answers)."""
    terms = _content_terms(question)
    if not terms:
        return {}
    df: Counter[str] = Counter()
    for sentence in sentences:
        df.update(terms & set(tokenize(sentence)))
    n = len(sentences)
    return {t: math.log(1.0 + (n + 1) / (df[t] + 1)) for t in terms}


def _in_paper(weights: dict[str, float], hit: Hit) -> dict[str, float]:
    """The weights for sentences of ``hit``'s paper: its title's terms count less."""
    title = set(tokenize(hit.paper.title))
    return {t: w * (TITLE_TERM_WEIGHT if t in title else 1.0) for t, w in weights.items()}


def _coverage(weights: dict[str, float], sentence: str) -> float:
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    words = set(tokenize(sentence))
    return sum(w for t, w in weights.items() if t in words) / total


def _score(
    question: str,
    cue: AnswerCue,
    weights: dict[str, float],
    hit: Hit,
    sentence: str,
    vec: np.ndarray,
    query_vec: np.ndarray,
) -> float:
    similarity = max(0.0, float(np.dot(vec, query_vec)))
    score = SIMILARITY_WEIGHT * similarity + COVERAGE_WEIGHT * _coverage(weights, sentence)
    if cue is AnswerCue.QUANTITY and has_quantity(sentence):
        score += QUANTITY_BONUS
        if _DURATION_CUE.search(question) and _DURATION.search(sentence):
            score += DURATION_BONUS
    if cue in (AnswerCue.NAME, AnswerCue.PAPERS) and _names_paper(hit, sentence):
        score += NAME_BONUS
    return score


def _names_paper(hit: Hit, sentence: str) -> bool:
    name = paper_name(hit.paper.title)
    return bool(name) and re.search(rf"(?<!\w){re.escape(name or '')}(?!\w)", sentence) is not None


def _in_reading_order(quotes: list[Quote], hits: Sequence[Hit]) -> list[Quote]:
    """Group by paper in rank order, sentences in abstract order within a paper."""
    rank = {h.paper.paper_id: i for i, h in enumerate(hits)}

    def position(q: Quote) -> tuple[int, int]:
        sentences = split_sentences(q.hit.paper.abstract)
        index = sentences.index(q.sentence) if q.sentence in sentences else 0
        return rank[q.hit.paper.paper_id], index

    return sorted(quotes, key=position)
