"""Pure helpers for cited answers: numbered sources, citation parsing, renumbering, support.

Nothing here calls a model or a store; the QA service passes vectors in.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from answers.models import Citation
from retrieval import Chunk, Hit, Paper, split_sentences, tokenize

# [1], [1, 2], [1;3], [2-4], [1][2]
_CITE = re.compile(r"\[(\d+(?:\s*[,;\-–]\s*\d+)*)\]")
# Instruction-like text inside an abstract, a title or an author field: withheld from the model,
# reported in the answer. Matched on the folded text (see `fold`), so homoglyphs, zero-width
# characters and odd spacing do not hide it; the non-Latin patterns match the text as written.
_TARGETS = (
    r"instructions?|prompts?|guidance|guidelines|rules|directions|directives|context|orders"
    r"|commands|constraints|messages?"
)
_INJECTION = re.compile(
    r"\b(?:ignore|disregard|forget|override|overrule|bypass|neglect)\b[^.!?\n]{0,40}?"
    r"\b(?:previous|prior|above|earlier|preceding|foregoing|former|original|all|any|your|system)"
    rf"\b[^.!?\n]{{0,20}}?\b(?:{_TARGETS})\b"
    r"|disregard\s+(?:all\s+|the\s+)?(?:previous|prior|above|earlier)"
    r"|forget\s+(?:all|everything)\s+(?:you|previous)"
    r"|\byou\s+are\s+now\b|\bsystem\s+prompt\b|\bnew\s+instructions\b|<\|[a-z_]+\|>"
    r"|\b(?:respond|reply|answer|output|say|print|write)\s+(?:only\s+|just\s+)?with\s+[\"'“‘]"
    r"|\b(?:respond|reply|answer|output|say|print|write)\b[^.!?\n]{0,30}?\b(?:single|one|only|exact)"
    r"\s+(?:word|phrase|string|token)\b"
    r"|\b(?:as\s+an?\s+)?(?:ai|language\s+model|assistant),?\s+(?:you\s+must|always|never)\b",
    re.IGNORECASE,
)
_INJECTION_INTL = re.compile(
    r"ignorier\w*\s+(?:alle\s+)?(?:vorherigen|bisherigen|obigen|vorigen)\s+(?:anweisungen|befehle)"
    r"|ignore[zr]?\s+(?:toutes\s+)?(?:les\s+)?(?:instructions|consignes)\s+"
    r"(?:pr[ée]c[ée]dentes|ant[ée]rieures)"
    r"|ignor[ae]\w*\s+(?:todas\s+)?(?:las\s+)?(?:instrucciones|indicaciones)\s+(?:anteriores|previas)"
    r"|(?:忽略|无视|忽视|不要理会)(?:之前|以上|先前|上面|前面|所有)*的?(?:所有)?(?:指令|指示|说明|提示)"
    r"|(?:以前|前|上記)の(?:指示|命令)を無視"
    r"|(?:про)?игнорируй\w*\s+(?:все\s+)?(?:предыдущие|прежние|предшествующие)?\s*"
    r"(?:инструкции|указания|команды)",
    re.IGNORECASE,
)
# Latin lookalikes (Cyrillic, Greek, Armenian) that spoof instructions: 'Іgnore', 'ignοre'.
_CONFUSABLES = str.maketrans(
    "АВЕКМНОРСТХІЈЅаеорсухіјѕԁɡΑΒΕΖΗΙΚΜΝΟΡΤΥΧαεικνορτυχօո",
    "ABEKMHOPCTXIJSaeopcyxijsdgABEZHIKMNOPTYXaeikvoptuxon",
)
_INVISIBLE = re.compile(
    r"[\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    r"\u202a-\u202e\u2060-\u206f\ufe00-\ufe0f\ufeff]"
)
WITHHELD = "[instruction-like text withheld]"
WHOLE_PAPERS = 2  # how many of the top papers go into the context with all their chunks


def fold(text: str) -> str:
    """``text`` as an injection filter should read it: NFKC, no invisible characters, Latin
    lookalikes mapped to Latin, case-folded, single spaces."""
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text)).translate(_CONFUSABLES)
    return " ".join(text.casefold().split())


def is_instruction(text: str) -> bool:
    """Does ``text`` read like an instruction to an assistant (a prompt injection)?"""
    plain = " ".join(_INVISIBLE.sub("", unicodedata.normalize("NFKC", text)).casefold().split())
    return bool(_INJECTION.search(fold(text)) or _INJECTION_INTL.search(plain))


def new_fence() -> str:
    """A random delimiter for one request's sources: a source cannot guess it to close its
    own fence early."""
    return secrets.token_hex(6)


@dataclass(frozen=True, slots=True)
class Source:
    """One numbered excerpt in a prompt's context, with its paper's metadata screened like
    the excerpt (an instruction-like title or author name is withheld too)."""

    number: int
    chunk: Chunk
    paper: Paper
    text: str  # the excerpt as the model sees it (instruction-like sentences withheld)
    withheld: int = 0  # how many sentences (or metadata fields) were withheld
    title: str = ""  # the title as the model sees it ("" = the paper's own)
    authors: tuple[str, ...] = ()  # the author names the model sees

    @property
    def seen_text(self) -> str:
        """The excerpt without the withheld placeholders: what support is measured against."""
        return " ".join(self.text.replace(WITHHELD, " ").split())

    @property
    def evidence(self) -> str:
        """Everything the model saw of this source (title and excerpt): where the numbers and
        names of a sentence citing it must be found."""
        title = (self.title or self.paper.title).replace(WITHHELD, " ")
        return f"{title}. {self.seen_text}"

    def render(self) -> str:
        when = f", {self.paper.published.isoformat()}" if self.paper.published else ""
        ident = f"arXiv {self.paper.arxiv_id}" if self.paper.arxiv_id else self.paper.paper_id
        by = f"; by {', '.join(self.authors)}" if self.authors else ""
        text = _unfence(self.text)
        return f"[{self.number}] {_unfence(self.title or self.paper.title)} ({ident}{when}{by})\n{text}"

    def fenced(self, fence: str) -> str:
        """The source between delimiter lines that carry the request's random ``fence``."""
        return (
            f"<<<SOURCE {self.number} {fence}>>>\n{self.render()}\n<<<END {self.number} {fence}>>>"
        )


def fence_context(sources: Sequence[Source], fence: str) -> str:
    return "\n\n".join(s.fenced(fence) for s in sources)


def _unfence(text: str) -> str:
    return text.replace("<<<", "‹‹‹").replace(">>>", "›››")


def sanitize(text: str) -> tuple[str, int]:
    """Withhold sentences that read like instructions to an assistant (prompt injection)."""
    kept: list[str] = []
    withheld = 0
    for sentence in split_sentences(text):
        if is_instruction(sentence):
            withheld += 1
            kept.append(WITHHELD)
        else:
            kept.append(sentence)
    return " ".join(kept), withheld


def screen_metadata(paper: Paper, max_authors: int = 6) -> tuple[str, tuple[str, ...], int]:
    """The title and author names the model may see, and how many were withheld."""
    title, withheld = (WITHHELD, 1) if is_instruction(paper.title) else (paper.title, 0)
    authors = []
    for name in paper.authors[:max_authors]:
        if is_instruction(name) or len(name) > 80:
            withheld += 1
        else:
            authors.append(name)
    return title, tuple(authors), withheld


def select_sources(
    hits: Sequence[Hit],
    chunks_of: Callable[[str], Sequence[Chunk]],
    count_tokens: Callable[[str], int],
    budget: int,
    max_sources: int,
    fence: str = "",
) -> list[Source]:
    """The top papers whole (best chunk first), then the other hits' best chunks, then their
    remaining chunks, while the rendered sources fit in ``budget`` tokens.

    The top papers are the likeliest answer, and a question about a paper often needs its
    first chunk (what it is) as well as the best-matching one (the detail asked about).
    With ``fence``, each source is counted as it will be sent: between its fence lines.
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
        title, authors, meta_withheld = screen_metadata(paper)
        source = Source(
            len(sources) + 1, chunk, paper, text, withheld + meta_withheld, title, authors
        )
        cost = count_tokens(source.fenced(fence) if fence else source.render()) + 2
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
    """Does the sentence state something that needs a source? Any statement does, however
    short: a one-word answer ("PWNED", "Yes") is checked like a long one. Only questions,
    lead-ins ending with a colon and the refusal sentinel are not claims."""
    bare = strip_citations(sentence)
    if not bare or sentinel.rstrip(".") in bare or bare.endswith(("?", ":")):
        return False
    return bool(re.search(r"\w", bare))


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
    candidates = [s for s in sentences if not is_instruction(s)] or [sanitize(source_text)[0]]
    wanted = set(tokenize(" ".join(strip_citations(s) for s in citing)))
    return max(candidates, key=lambda s: (len(set(tokenize(s)) & wanted), -candidates.index(s)))


def withheld_flags(sources: Sequence[Source]) -> list[str]:
    flags = []
    for s in sources:
        if s.withheld:
            name = s.paper.title[:60] if s.title == s.paper.title else s.paper.paper_id
            flags.append(
                f"Source “{name}” contains instruction-like text; it was withheld from the model."
            )
    return list(dict.fromkeys(flags))


def paper_numbering(
    sentences: Sequence[str], by_number: dict[int, Source]
) -> dict[str, tuple[int, list[int]]]:
    """Citation number per cited paper, in order of first citation, with its source numbers."""
    mapping: dict[str, tuple[int, list[int]]] = {}
    for sentence in sentences:
        for n in cited_numbers(sentence):
            if n not in by_number:
                continue
            pid = by_number[n].paper.paper_id
            _, seen = mapping.setdefault(pid, (len(mapping) + 1, []))
            if n not in seen:
                seen.append(n)
    return mapping


def source_to_citation(mapping: dict[str, tuple[int, list[int]]]) -> dict[int, int]:
    return {n: number for number, sources in mapping.values() for n in sources}


def citations_of(
    mapping: dict[str, tuple[int, list[int]]],
    by_number: dict[int, Source],
    sentences: Sequence[str],
    best: dict[int, float],
) -> list[Citation]:
    result = []
    for number, source_numbers in sorted(mapping.values()):
        sources = [by_number[n] for n in source_numbers]
        citing = [s for s in sentences if set(cited_numbers(s)) & set(source_numbers)]
        quote = best_quote(" ".join(s.chunk.text for s in sources), citing)
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
