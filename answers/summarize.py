"""One-paper TL;DRs: by the LLM when there is one, else extractive (the abstract's best
sentences, verbatim). Every TL;DR is cached by (paper id, content hash, prompt version, model),
so a paper is summarised once per model and prompt version, never again.

A model's TL;DR is checked before it is shown or cached (answers/degenerate.py): one that
loops, echoes its prompt, or names a method, dataset or number the abstract does not give is
replaced by the extractive TL;DR, with a note saying why; the replacement is cached under the
model's key (the same model would write the same TL;DR again), and a model TL;DR cached
before the check existed is checked when it is read.

Size: both ways of writing a TL;DR share the `Summary`, the cache key and the fallback from
one to the other; the extractive half (scoring, and starting at a sentence that stands alone)
is pure functions at the top.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from answers.citations import sanitize
from answers.degenerate import check_tldr
from answers.errors import LLMError
from answers.llm import LLMRunner, LLMService, Reply, Usage
from answers.settings import AnswerSettings
from prompts import load
from retrieval import Paper, clean_text, split_sentences, tokenize

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from retrieval import Corpus

log = logging.getLogger(__name__)

SummaryMode = Literal["llm", "extractive"]
EmbedFn = Callable[[Sequence[str]], np.ndarray]

CACHE_NAMESPACE = "tldr"
# The extractive scorer's version takes the prompt's place in the cache key: bump it whenever
# the sentence scoring changes, so cached extractive TL;DRs are recomputed.
EXTRACTIVE_KEY = "extractive@2"  # 2: a TL;DR starts at a sentence that stands alone
MAX_WORDS = 50  # extractive cap; the prompt asks the LLM for at most 45 words
LLM_MAX_WORDS = 70  # a model that ignores the length instruction is cut here
LLM_MAX_SENTENCES = 2
MIN_SENTENCE_WORDS = 5

# --- extractive scoring -------------------------------------------------------------------
# Weights tuned on the 250 ACLSum abstracts (ROUGE-1 against the expert summaries); the
# optimum is flat, so these round values are not over-fitted. Centrality (how much of the
# abstract a sentence represents) and title similarity find the topic; the cue patterns find
# the contribution and the result, which is what a TL;DR should say; background sentences
# ("In recent years, X has emerged ...") are central too but say nothing about the paper.
W_CENTRAL = 0.4
W_TITLE = 0.3
W_PROPOSAL = 0.2
W_RESULT = 0.2
W_BACKGROUND = 0.2
W_DANGLING = 0.05

_PROPOSAL = re.compile(
    r"\b(?:we|this (?:paper|work|study|article)|our (?:work|paper|approach|method|model|"
    r"framework|system))\b[^.;]{0,60}?\b(?:propose|introduce|present|develop|describe|design|"
    r"build|investigate|study|explore|show|demonstrate|find|achieve|report|release|evaluate|"
    r"apply|use|address|leverage)\w*|\b(?:is|are) (?:proposed|introduced|presented)\b",
    re.IGNORECASE,
)
_RESULT = re.compile(
    r"\b(?:results?|outperform\w*|improv\w*|significant\w*|achiev\w*|state[- ]of[- ]the[- ]art"
    r"|sota|accuracy|gains?|surpass\w*|better|faster|speed-?ups?|reduc\w*)\b"
    r"|\d+(?:\.\d+)?\s*(?:%|x\b|×|times\b)",
    re.IGNORECASE,
)
_BACKGROUND = re.compile(
    r"^(?:in recent years|recently|nowadays|over the (?:past|last)|with the (?:rapid|recent|"
    r"advent|growing|increasing|rise|development|success)|despite|although|traditionally|"
    r"historically|however|(?:existing|current|previous|prior|traditional|conventional|most|many)"
    r" (?:\w+ )?(?:methods|approaches|works|models|systems|techniques|studies))\b"
    r"|\b(?:has|have) (?:emerged|become|attracted|gained|received|been (?:widely|known))"
    r"|\b(?:remains?|is|are) (?:still )?(?:a |an )?(?:challenging|difficult|open|critical|"
    r"fundamental|important|crucial|key)\b",
    re.IGNORECASE,
)
# Sentences that lean on the previous one ("It then ...", "(2) ...") read badly on their own.
_DANGLING = re.compile(
    r"^(?:it|this|these|they|such|then|specifically|moreover|furthermore|additionally|"
    r"in addition|finally|second|third|\(\w\))\b",
    re.IGNORECASE,
)
# Lead-ins that only point back at the (dropped) context: "To address these issues, we ...",
# "Furthermore, we ...". Without them the sentence reads on its own.
_LEAD_IN = re.compile(
    r"^(?:to (?:address|tackle|overcome|solve|mitigate|bridge|fill|remedy|alleviate|resolve) "
    r"(?:these|this|the|such|both)\b[^,]{0,40},\s*|in this (?:paper|work|study|article),\s*"
    r"|(?:here|furthermore|moreover|additionally|in addition|also|besides|finally|thus|hence|"
    r"therefore|consequently|then|specifically|notably|importantly|overall|to this end),\s*)",
    re.IGNORECASE,
)
# A sentence that cannot open a TL;DR: its subject is in the sentence before ("Our approach
# ...", "It ...", "These results ...", "We also ..."). "This paper ..." / "Our work ..." name
# the paper itself and stand alone.
_NEEDS_ANTECEDENT = re.compile(
    r"^(?:(?:our|this|these|those|such|its|their)\b(?!\s+(?:paper|work|study|article|survey|"
    r"report|thesis|letter)\b)|(?:it|they|them|that|he|she)\b|we (?:also|further|then|"
    r"additionally|next|finally)\b|\(\w\))",
    re.IGNORECASE,
)
# A second sentence must score within this of the best one: a weak filler reads worse than
# a one-sentence TL;DR.
SECOND_MARGIN = 0.4
# What a model likes to put around a TL;DR: quotes, "TL;DR:" or "Summary:" prefixes, bold.
_LLM_PREFIX = re.compile(r"^(?:\*\*)?(?:tl;?dr|tldr|summary)(?:\*\*)?\s*[:\-–—]\s*", re.I)
_QUOTES = "\"'“”‘’`"


@dataclass
class Summary:
    """A paper's TL;DR and how it was made."""

    paper_id: str
    text: str
    mode: SummaryMode
    model: str  # the LLM's name, or "extractive"
    cached: bool = False  # served from the cache: nothing was computed now
    tokens_in: int = 0  # tokens spent now (0 when cached)
    tokens_out: int = 0
    note: str | None = None  # e.g. why an LLM TL;DR fell back to extractive

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Summary:
        return cls(**data)


# ---------------------------------------------------------------------------- extractive
def extractive_tldr(
    title: str, abstract: str, embed: EmbedFn | None = None, *, max_words: int = MAX_WORDS
) -> str:
    """The one or two most informative sentences of an abstract, in their order, verbatim
    but for a lead-in that points back at dropped context ("To address these issues, ").

    ``embed`` (texts -> L2-normalised rows) scores centrality semantically; without it the
    scoring is lexical (shared content words), which is nearly as good and needs no model.
    """
    sentences = _candidate_sentences(abstract)
    if not sentences:
        return cap_words(clean_text(abstract), max_words)
    if len(sentences) == 1:
        return cap_words(_with_antecedent(abstract, sentences[0], max_words), max_words)
    scores = sentence_scores(title, sentences, embed)
    return _pick(sentences, scores, max_words)


def sentence_scores(
    title: str, sentences: Sequence[str], embed: EmbedFn | None = None
) -> list[float]:
    """How well each sentence would serve as (part of) the TL;DR; higher is better."""
    central, titled = (
        _dense_features(title, sentences, embed)
        if embed is not None
        else _lexical_features(title, sentences)
    )
    scores = []
    for sentence, c, t in zip(sentences, central, titled, strict=True):
        score = W_CENTRAL * c + W_TITLE * t
        score += W_PROPOSAL * bool(_PROPOSAL.search(sentence))
        score += W_RESULT * bool(_RESULT.search(sentence))
        score -= W_BACKGROUND * bool(_BACKGROUND.search(sentence))
        score -= W_DANGLING * bool(_DANGLING.search(sentence))
        scores.append(score)
    return scores


def _candidate_sentences(abstract: str) -> list[str]:
    """Sentences worth quoting: not fragments, not instruction-like text."""
    return [
        s
        for s in split_sentences(clean_text(abstract))
        if len(s.split()) >= MIN_SENTENCE_WORDS and not sanitize(s)[1]
    ]


def _dense_features(
    title: str, sentences: Sequence[str], embed: EmbedFn
) -> tuple[list[float], list[float]]:
    vectors = np.asarray(embed([title, *sentences]), dtype=np.float32)
    title_vec, matrix = vectors[0], vectors[1:]
    centroid = matrix.mean(axis=0)
    centroid /= max(float(np.linalg.norm(centroid)), 1e-9)
    return [float(x) for x in matrix @ centroid], [float(x) for x in matrix @ title_vec]


def _lexical_features(title: str, sentences: Sequence[str]) -> tuple[list[float], list[float]]:
    """Centrality = share of a sentence's words that other sentences use too; title overlap."""
    words = [set(tokenize(s)) for s in sentences]
    title_words = set(tokenize(title))
    df = Counter(w for ws in words for w in ws)
    others = max(len(sentences) - 1, 1)
    central = [sum(df[w] - 1 for w in ws) / max(len(ws), 1) / others for ws in words]
    titled = [len(ws & title_words) / max(len(title_words), 1) for ws in words]
    return central, titled


def _pick(sentences: Sequence[str], scores: Sequence[float], max_words: int) -> str:
    """Best sentence, plus the next best that still fits in ``max_words``; original order."""
    order = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))
    fitting = [i for i in order if len(sentences[i].split()) <= max_words]
    if not fitting:  # every sentence is over the cap: cut the best one
        return cap_words(sentences[order[0]], max_words)
    best = fitting[0]
    words = len(sentences[best].split())
    chosen = [best]
    for i in fitting[1:]:
        if scores[i] < scores[best] - SECOND_MARGIN:
            break
        if words + len(sentences[i].split()) <= max_words:
            chosen.append(i)
            break
    chosen = _standalone_start(sentences, sorted(chosen), fitting, max_words)
    return " ".join(_drop_lead_in(sentences[i]) for i in chosen)


def _with_antecedent(abstract: str, sentence: str, max_words: int) -> str:
    """The abstract's only quotable sentence, after the (short) sentence it leans on."""
    text = _drop_lead_in(sentence)
    if not needs_antecedent(sentence):
        return text
    every = split_sentences(clean_text(abstract))
    at = every.index(sentence) if sentence in every else 0
    if at > 0 and len(every[at - 1].split()) + len(sentence.split()) <= max_words:
        return f"{every[at - 1]} {text}"
    return text


def needs_antecedent(sentence: str) -> bool:
    """Whether the sentence (its lead-in dropped) leans on the one before it."""
    return bool(_NEEDS_ANTECEDENT.match(_drop_lead_in(sentence)))


def _standalone_start(
    sentences: Sequence[str], chosen: list[int], fitting: Sequence[int], max_words: int
) -> list[int]:
    """The chosen sentences, made to start at one that reads on its own: the first one's
    antecedent (the sentence before it) is put in front when it fits, else the best sentence
    that stands alone (``fitting``: the candidates, best first) leads."""
    first = chosen[0]
    if not needs_antecedent(sentences[first]):
        return chosen
    count = [len(s.split()) for s in sentences]
    before = first - 1
    if (
        before >= 0
        and not needs_antecedent(sentences[before])
        and count[before] + count[first] <= max_words
    ):
        return [before, first]
    alone = [i for i in fitting if not needs_antecedent(sentences[i])]
    if not alone:
        return chosen  # nothing in the abstract stands alone: keep the best
    lead = alone[0]
    follows = [i for i in chosen if i == lead + 1 and count[lead] + count[i] <= max_words]
    return [lead, *follows]


def _drop_lead_in(sentence: str) -> str:
    trimmed = _LEAD_IN.sub("", sentence)
    if trimmed == sentence or not trimmed:
        return sentence
    return trimmed[0].upper() + trimmed[1:]


def cap_words(text: str, max_words: int) -> str:
    words = text.split()
    if len(words) <= max_words:
        return text.strip()
    return " ".join(words[:max_words]).rstrip(",;:") + "…"


def clean_llm_text(raw: str, max_words: int = LLM_MAX_WORDS) -> str:
    """The TL;DR without the wrapping a model adds, at most two sentences and ``max_words``."""
    text = " ".join(raw.replace("**", "").split())
    text = _LLM_PREFIX.sub("", text).strip()
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    text = _LLM_PREFIX.sub("", text).strip()
    sentences = split_sentences(text)
    if len(sentences) > LLM_MAX_SENTENCES:
        text = " ".join(sentences[:LLM_MAX_SENTENCES])
    return cap_words(text, max_words)


# ---------------------------------------------------------------------------- service
class Summarizer(LLMService):
    """TL;DRs of papers, cached in the state store; the LLM is optional (None = extractive)."""

    def __init__(
        self,
        corpus: Corpus,
        llm: BaseChatModel | None,
        settings: AnswerSettings | None = None,
        *,
        dense_extractive: bool = True,
        runner: LLMRunner | None = None,
    ) -> None:
        super().__init__(corpus, llm, settings, runner=runner)
        # Semantic centrality costs one embedding call per paper and gains little over the
        # lexical score (see extractive_tldr); callers that must be fast can turn it off.
        self.dense_extractive = dense_extractive

    # --- public ---
    def tldr(self, paper: Paper) -> Summary:
        return self.tldrs([paper])[0]

    def tldrs(self, papers: Sequence[Paper]) -> list[Summary]:
        """TL;DRs in the order of ``papers``; cached ones are not recomputed."""
        found: dict[str, Summary] = {}
        todo: list[Paper] = []
        for paper in dict((p.paper_id, p) for p in papers).values():
            hit = self._cached(paper)
            if hit is None:
                todo.append(paper)
            else:
                found[paper.paper_id] = hit
        if todo:
            fresh = self._llm_batch(todo) if self.runner.available else self._extract(todo)
            found.update((s.paper_id, s) for s in fresh)
        return [found[p.paper_id] for p in papers]

    def cache_key(self, paper: Paper) -> str:
        """paper id | content hash | prompt (or extractive scorer) version | model."""
        if not self.runner.available:
            return (
                f"{paper.paper_id}|{paper.content_hash}|{EXTRACTIVE_KEY}|{self._extractive_model}"
            )
        return f"{paper.paper_id}|{paper.content_hash}|{load('tldr').key}|{self.model}"

    # --- cache ---
    @property
    def _extractive_model(self) -> str:
        # The embedder decides which sentences win, so it belongs in the extractive key.
        return self.corpus.embedding_model if self.dense_extractive else "lexical"

    def _cached(self, paper: Paper) -> Summary | None:
        """The cached TL;DR; None when there is none, or when it is a model's TL;DR that
        fails the check (cached before the check existed: it is asked for again)."""
        value = self.corpus.cached(CACHE_NAMESPACE, self.cache_key(paper))
        if not isinstance(value, dict) or not value.get("text"):
            return None
        mode: SummaryMode = "llm" if value.get("mode") == "llm" else "extractive"
        text = str(value["text"])
        if mode == "llm" and check_tldr(text, paper.title, paper.abstract):
            return None
        note = value.get("note")
        return Summary(
            paper.paper_id,
            text,
            mode,
            str(value["model"]),
            cached=True,
            note=str(note) if note else None,
        )

    def _store(self, paper: Paper, summary: Summary) -> None:
        value = {"text": summary.text, "mode": summary.mode, "model": summary.model}
        if summary.note:
            value["note"] = summary.note
        self.corpus.cache(CACHE_NAMESPACE, self.cache_key(paper), value)

    # --- extractive ---
    def _extract(
        self, papers: Sequence[Paper], note: str | None = None, *, keep: bool = False
    ) -> list[Summary]:
        """Extractive TL;DRs; cached when there is no ``note`` or when ``keep`` (a note
        without ``keep`` marks a passing failure: the LLM is tried again next time)."""
        embed = self._prefetched_embed(papers) if self.dense_extractive else None
        summaries = []
        for paper in papers:
            text = extractive_tldr(paper.title, paper.abstract, embed)
            summary = Summary(paper.paper_id, text, "extractive", "extractive", note=note)
            if note is None or keep:
                self._store(paper, summary)
            summaries.append(summary)
        return summaries

    def _prefetched_embed(self, papers: Sequence[Paper]) -> EmbedFn:
        """One embedding call for every title and sentence of these papers (a model batches
        far better than thirty small calls), served to extractive_tldr from memory. Not
        through the embedding cache: the TL;DR itself is cached, so these are embedded once."""
        memo: dict[str, np.ndarray] = {}

        def fetch(texts: Sequence[str]) -> None:
            missing = list(dict.fromkeys(t for t in texts if t not in memo))
            if missing:
                memo.update(zip(missing, self.corpus.vectors(missing, cache=False), strict=True))

        def embed(batch: Sequence[str]) -> np.ndarray:
            fetch(batch)
            return np.stack([memo[t] for t in batch])

        fetch([t for p in papers for t in (p.title, *_candidate_sentences(p.abstract))])

        return embed

    # --- LLM ---
    def _llm_batch(self, papers: Sequence[Paper]) -> list[Summary]:
        replies = self.runner.batch("tldr", [_tldr_variables(p) for p in papers])
        return [self._from_reply(p, reply) for p, reply in zip(papers, replies, strict=True)]

    def _from_reply(self, paper: Paper, reply: Reply | LLMError) -> Summary:
        if isinstance(reply, LLMError):
            log.warning("TL;DR of %s by %s failed: %s", paper.paper_id, self.model, reply)
            return self._extract([paper], note=f"{reply} Showing an extractive TL;DR instead.")[0]
        text = clean_llm_text(reply.text)
        usage = reply.usage
        if not text:
            note = f"The language model ({self.model}) returned an empty TL;DR; showing an "
            return self._extract([paper], note=note + "extractive one instead.")[0]
        problem = check_tldr(text, paper.title, paper.abstract)
        if problem:
            log.warning("TL;DR of %s by %s rejected: %s", paper.paper_id, self.model, problem)
            note = f"The TL;DR by {self.model} {problem}; showing an extractive TL;DR instead."
            fallback = self._extract([paper], note=note, keep=True)[0]
            fallback.tokens_in, fallback.tokens_out = usage.tokens_in, usage.tokens_out
            return fallback
        summary = Summary(
            paper.paper_id, text, "llm", self.model, False, usage.tokens_in, usage.tokens_out
        )
        self._store(paper, summary)
        return summary


def _tldr_variables(paper: Paper) -> dict[str, str]:
    abstract, _ = sanitize(paper.abstract)  # instruction-like sentences never reach the model
    return {"title": paper.title, "abstract": abstract}


def total_usage(summaries: Sequence[Summary]) -> Usage:
    return Usage(sum(s.tokens_in for s in summaries), sum(s.tokens_out for s in summaries))


# ---------------------------------------------------------------------------- aspects
# ACLSum-style aspect summaries: what problem a paper tackles, how, and what it found.
Aspect = Literal["challenge", "approach", "outcome"]
ASPECT_CUES: dict[str, re.Pattern[str]] = {
    "challenge": re.compile(
        r"\b(however|challeng\w*|problem\w*|difficult\w*|limit\w*|lack\w*|suffer\w*|remain\w*|"
        r"bottleneck|costly|expensive|struggl\w*|issue\w*|fail\w*|unclear|hard|scarc\w*|"
        r"insufficient|ignor\w*|overlook\w*|poor\w*)\b",
        re.IGNORECASE,
    ),
    "approach": re.compile(
        r"\b(we (propose|introduce|present|develop|design|describe|use|employ|apply|investigate|"
        r"explore|formulate|adopt|train|build|leverage)|this paper (proposes|presents|introduces|"
        r"describes)|in this (paper|work)|our (method|approach|model|framework|system)|approach|"
        r"framework|method)\b",
        re.IGNORECASE,
    ),
    "outcome": re.compile(
        r"\b(result\w*|show\w*|outperform\w*|improv\w*|achiev\w*|state[- ]of[- ]the[- ]art|"
        r"demonstrat\w*|significant\w*|gain\w*|better|effective\w*|experiment\w*|find|found|"
        r"suggest\w*|reveal\w*|accuracy)\b|%",
        re.IGNORECASE,
    ),
}
ASPECT_MAX_WORDS = 45


def extractive_aspect_summary(abstract: str, aspect: Aspect) -> str:
    """One aspect of an abstract, quoted: its challenge, approach or outcome.

    Abstracts follow a convention — context and gap first, then the method, results last —
    so each aspect is found by its cue words weighted by where it usually sits. The
    challenge is usually stated across the opening context sentence and the gap that follows
    it ("However, ..."), so it takes the lead sentence plus the next problem sentence.
    """
    sentences = split_sentences(clean_text(abstract))
    if not sentences:
        return ""
    if aspect == "challenge":
        gap = next((s for s in sentences[1:3] if ASPECT_CUES["challenge"].search(s)), None)
        chosen = sentences[:1] + ([gap] if gap else sentences[1:2])
        return cap_words(" ".join(chosen), ASPECT_MAX_WORDS)
    return cap_words(_drop_lead_in(_best_for(sentences, aspect)), ASPECT_MAX_WORDS)


def _best_for(sentences: Sequence[str], aspect: Aspect) -> str:
    cue = ASPECT_CUES[aspect]
    last = max(1, len(sentences) - 1)

    def score(index: int) -> float:
        position = index / last
        # the method sits about a third of the way in; results come last
        prior = 1 - abs(position - 0.35) if aspect == "approach" else position
        words = len(sentences[index].split())
        return len(cue.findall(sentences[index])) + 0.5 * prior - 0.02 * max(0, words - 35)

    return sentences[max(range(len(sentences)), key=score)]
