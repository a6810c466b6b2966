"""Extractive answers: the most relevant sentences of the top abstracts, quoted verbatim."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from answers.citations import lexical_support, sanitize
from retrieval import Hit, split_sentences

MAX_SENTENCES = 4
MAX_PER_PAPER = 2
PAPERS = 4
# A sentence from a lower-ranked paper must score at least this share of the best sentence.
RELATIVE_FLOOR = 0.75


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
    """Best sentences: always the top paper's best one, then others that score close to it."""
    candidates = _candidates(hits[:PAPERS])
    if not candidates:
        return []
    vectors = embed([s for _, s in candidates])
    scored = [
        Quote(hit, sentence, _score(question, sentence, vec, query_vec))
        for (hit, sentence), vec in zip(candidates, vectors, strict=True)
    ]
    top_paper = hits[0].paper.paper_id
    first = max((q for q in scored if q.hit.paper.paper_id == top_paper), key=lambda q: q.score)
    chosen = [first]
    per_paper = {top_paper: 1}
    for quote in sorted(scored, key=lambda q: -q.score):
        pid = quote.hit.paper.paper_id
        if len(chosen) >= MAX_SENTENCES:
            break
        if quote is first or per_paper.get(pid, 0) >= MAX_PER_PAPER:
            continue
        if quote.score < RELATIVE_FLOOR * first.score:
            continue
        chosen.append(quote)
        per_paper[pid] = per_paper.get(pid, 0) + 1
    return _in_reading_order(chosen, hits)


def _candidates(hits: Sequence[Hit]) -> list[tuple[Hit, str]]:
    pairs = []
    for hit in hits:
        for sentence in split_sentences(hit.paper.abstract):
            clean, withheld = sanitize(sentence)
            if not withheld and len(clean.split()) >= 5:
                pairs.append((hit, clean))
    return pairs


def _score(question: str, sentence: str, vec: np.ndarray, query_vec: np.ndarray) -> float:
    # Semantic similarity carries most weight; exact term overlap (method names) breaks ties.
    return 0.7 * max(0.0, float(np.dot(vec, query_vec))) + 0.3 * lexical_support(question, sentence)


def _in_reading_order(quotes: list[Quote], hits: Sequence[Hit]) -> list[Quote]:
    """Group by paper in rank order, sentences in abstract order within a paper."""
    rank = {h.paper.paper_id: i for i, h in enumerate(hits)}

    def position(q: Quote) -> tuple[int, int]:
        sentences = split_sentences(q.hit.paper.abstract)
        index = sentences.index(q.sentence) if q.sentence in sentences else 0
        return rank[q.hit.paper.paper_id], index

    return sorted(quotes, key=position)
