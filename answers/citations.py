"""Pure helpers for cited answers: numbered sources, citation parsing, renumbering, support.

Nothing here calls a model or a store; the QA service passes vectors in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from retrieval import Chunk, Hit, Paper, split_sentences, tokenize

# [1], [1, 2], [1;3], [2-4], [1][2]
_CITE = re.compile(r"\[(\d+(?:\s*[,;\-–]\s*\d+)*)\]")
# Instruction-like text inside an abstract: withheld from the model, reported in the answer.
_INJECTION = re.compile(
    r"ignore\s+(?:all\s+|any\s+)?(?:the\s+)?(?:previous|prior|above|earlier)\s+(?:instructions|prompts?)"
    r"|disregard\s+(?:all\s+|the\s+)?(?:previous|prior|above)"
    r"|forget\s+(?:all|everything)\s+(?:you|previous)"
    r"|\byou\s+are\s+now\b|\bsystem\s+prompt\b|\bnew\s+instructions\b|<\|im_start\|>"
    r"|\b(?:respond|reply|answer)\s+(?:only\s+)?with\s+[\"'“]",
    re.IGNORECASE,
)
WITHHELD = "[instruction-like text withheld]"
MIN_CLAIM_WORDS = 4
WHOLE_PAPERS = 2  # how many of the top papers go into the context with all their chunks


@dataclass(frozen=True, slots=True)
class Source:
    """One numbered excerpt in a prompt's context."""

    number: int
    chunk: Chunk
    paper: Paper
    text: str  # the excerpt as the model sees it (instruction-like sentences withheld)
    withheld: int = 0  # how many sentences were withheld

    @property
    def seen_text(self) -> str:
        """The excerpt without the withheld placeholders: what support is measured against."""
        return " ".join(self.text.replace(WITHHELD, " ").split())

    def render(self) -> str:
        when = f", {self.paper.published.isoformat()}" if self.paper.published else ""
        ident = f"arXiv {self.paper.arxiv_id}" if self.paper.arxiv_id else self.paper.paper_id
        return f"[{self.number}] {self.paper.title} ({ident}{when})\n{self.text}"


def sanitize(text: str) -> tuple[str, int]:
    """Withhold sentences that read like instructions to an assistant (prompt injection)."""
    kept: list[str] = []
    withheld = 0
    for sentence in split_sentences(text):
        if _INJECTION.search(sentence):
            withheld += 1
            kept.append(WITHHELD)
        else:
            kept.append(sentence)
    return " ".join(kept), withheld


def select_sources(
    hits: Sequence[Hit],
    chunks_of: Callable[[str], Sequence[Chunk]],
    count_tokens: Callable[[str], int],
    budget: int,
    max_sources: int,
) -> list[Source]:
    """The top papers whole (best chunk first), then the other hits' best chunks, then their
    remaining chunks, while the rendered sources fit in ``budget`` tokens.

    The top papers are the likeliest answer, and a question about a paper often needs its
    first chunk (what it is) as well as the best-matching one (the detail asked about).
    """

    def rest(hit: Hit) -> list[tuple[Chunk, Paper]]:
        others = chunks_of(hit.paper.paper_id)
        return [(c, hit.paper) for c in others if c.chunk_id != hit.chunk.chunk_id]

    top, tail = hits[:WHOLE_PAPERS], hits[WHOLE_PAPERS:]
    order: list[tuple[Chunk, Paper]] = []
    for hit in top:
        order += [(hit.chunk, hit.paper), *rest(hit)]
    order += [(h.chunk, h.paper) for h in tail]
    for hit in tail:
        order += rest(hit)
    sources: list[Source] = []
    used = 0
    for chunk, paper in order:
        if len(sources) >= max_sources:
            break
        text, withheld = sanitize(chunk.text)
        source = Source(len(sources) + 1, chunk, paper, text, withheld)
        cost = count_tokens(source.render()) + 2
        if used + cost > budget:
            continue  # a smaller later excerpt may still fit
        sources.append(source)
        used += cost
    return sources


def cited_numbers(sentence: str) -> list[int]:
    """Every source number a sentence cites, ranges expanded, in order of appearance."""
    numbers: list[int] = []
    for group in _CITE.findall(sentence):
        for part in re.split(r"\s*[,;]\s*", group):
            if re.search(r"[\-–]", part):
                low, high = (int(x) for x in re.split(r"\s*[\-–]\s*", part))
                numbers += list(range(low, high + 1)) if 0 < high - low < 20 else [low, high]
            else:
                numbers.append(int(part))
    return numbers


def strip_citations(text: str) -> str:
    return re.sub(r"\s+([.,;:!?])", r"\1", _CITE.sub("", text)).strip()


def rewrite_citations(text: str, mapping: dict[int, int]) -> str:
    """Replace source numbers by citation numbers; numbers not in ``mapping`` are dropped."""

    def replace(match: re.Match[str]) -> str:
        new = list(dict.fromkeys(mapping[n] for n in cited_numbers(match.group(0)) if n in mapping))
        return "".join(f"[{n}]" for n in new)

    rewritten = _CITE.sub(replace, text)
    return re.sub(r"[ \t]+([.,;:!?])", r"\1", rewritten)


def answer_sentences(text: str) -> list[str]:
    """Sentences of an answer; list items and lines count as sentences too."""
    sentences: list[str] = []
    for line in text.splitlines():
        line = line.strip().lstrip("-*• ").strip()
        if line:
            sentences += _split_after_citations(line)
    return sentences


def _split_after_citations(line: str) -> list[str]:
    # "... volume [2]. It also ..." — a citation may sit between the period and the next sentence
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z(\"“])|(?<=\])\s+(?=[A-Z(\"“])", line)
    merged: list[str] = []
    for part in parts:
        if merged and _CITE.fullmatch(part.strip(" .")):
            merged[-1] += " " + part
        elif part.strip():
            merged.append(part.strip())
    return merged


def is_claim(sentence: str, sentinel: str) -> bool:
    """Does the sentence state something that needs a source?"""
    bare = strip_citations(sentence)
    if not bare or sentinel.rstrip(".") in bare or bare.endswith(("?", ":")):
        return False
    return len(re.findall(r"\w+", bare)) >= MIN_CLAIM_WORDS


def lexical_support(sentence: str, source_text: str) -> float:
    """Share of the sentence's content words that occur in the source."""
    words = set(tokenize(strip_citations(sentence)))
    if not words:
        return 0.0
    return len(words & set(tokenize(source_text))) / len(words)


def support_score(
    sentence: str, source_text: str, sentence_vec: np.ndarray, source_vec: np.ndarray
) -> float:
    """Half lexical overlap, half embedding similarity (negative similarity counts as 0)."""
    cosine = float(np.dot(sentence_vec, source_vec))
    return 0.5 * lexical_support(sentence, source_text) + 0.5 * max(0.0, cosine)


def best_quote(source_text: str, citing: Sequence[str]) -> str:
    """The source sentence that shares the most words with the sentences citing it."""
    sentences = split_sentences(source_text)
    # Instruction-like sentences were withheld from the model; never quote them to the user.
    candidates = [s for s in sentences if not _INJECTION.search(s)] or [sanitize(source_text)[0]]
    wanted = set(tokenize(" ".join(strip_citations(s) for s in citing)))
    return max(candidates, key=lambda s: (len(set(tokenize(s)) & wanted), -candidates.index(s)))
