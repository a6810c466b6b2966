"""Daily digest: a day's (or a window's) papers ranked, grouped into named topics, with an
overview paragraph and a TL;DR per paper.

The result is structured data (`Digest`); the CLI and the Slack bot render it. With an LLM the
topic names and the overview are generated (map-reduce over the groups when they do not fit the
context budget); without one the digest is still complete: groups named by their distinctive
terms, extractive TL;DRs and an overview assembled from facts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from answers.clustering import cluster, group_label, paper_vector
from answers.errors import LLMError
from answers.llm import Usage, estimate_cost, model_name, usage_of
from answers.settings import AnswerSettings
from answers.summarize import (
    BATCH_CONCURRENCY,
    Summarizer,
    Summary,
    SummaryMode,
    as_llm_error,
    total_usage,
)
from prompts import load
from retrieval.corpus import Corpus
from retrieval.models import Paper

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.runnables import Runnable

log = logging.getLogger(__name__)

TOPIC_NAMESPACE = "topic"
OTHER_NAME = "Other papers"
ALL_NAME = "Papers"  # the one bucket when no topic group formed (e.g. a two-paper day)
MAX_NAME_WORDS = 6
MAX_NAME_CHARS = 60
MAX_REDUCE_LEVELS = 3
# The refusal gate asks "does any chunk match?" and accepts 40% of the query's terms; a topic
# filter asks "is this paper about it?", so most of the topic must match (on the sample,
# "mixture of experts" at 40% also kept a paper that only mentions "experts").
TOPIC_MIN_COVERAGE = 0.8


# ---------------------------------------------------------------------------- data
@dataclass
class DigestPaper:
    paper: Paper
    tldr: Summary
    rank: int  # 1 = first in the digest's ranking (upvotes, then recency)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "paper": self.paper.model_dump(mode="json"),
            "tldr": self.tldr.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DigestPaper:
        return cls(
            Paper.model_validate(data["paper"]), Summary.from_dict(data["tldr"]), data["rank"]
        )


@dataclass
class TopicGroup:
    name: str
    papers: list[DigestPaper]
    other: bool = False  # the catch-all bucket of papers that fit no topic

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "other": self.other,
            "papers": [p.to_dict() for p in self.papers],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TopicGroup:
        papers = [DigestPaper.from_dict(p) for p in data["papers"]]
        return cls(data["name"], papers, bool(data.get("other", False)))


@dataclass
class Digest:
    start: date
    end: date
    overview: str
    groups: list[TopicGroup]
    mode: SummaryMode  # how the overview was written
    model: str
    paper_count: int
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    topic: str | None = None
    total_papers: int = 0  # in the window, before the topic filter and the max_papers cap
    map_reduce: bool = False  # the overview was built from per-group summaries
    notes: list[str] = field(default_factory=list)  # fallbacks and caps, for the reader

    @property
    def papers(self) -> list[DigestPaper]:
        """Every paper of the digest once, in rank order."""
        return sorted((p for g in self.groups for p in g.papers), key=lambda p: p.rank)

    @property
    def period(self) -> str:
        """'2025-05-16', or '2025-05-10 to 2025-05-16' for a window."""
        return _period(self.start, self.end)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "overview": self.overview,
            "groups": [g.to_dict() for g in self.groups],
            "mode": self.mode,
            "model": self.model,
            "paper_count": self.paper_count,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_usd": self.cost_usd,
            "generated_at": self.generated_at.isoformat(),
            "topic": self.topic,
            "total_papers": self.total_papers,
            "map_reduce": self.map_reduce,
            "notes": list(self.notes),
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Digest:
        return cls(
            start=date.fromisoformat(data["start"]),
            end=date.fromisoformat(data["end"]),
            overview=data["overview"],
            groups=[TopicGroup.from_dict(g) for g in data["groups"]],
            mode=data["mode"],
            model=data["model"],
            paper_count=data["paper_count"],
            tokens_in=data.get("tokens_in", 0),
            tokens_out=data.get("tokens_out", 0),
            cost_usd=data.get("cost_usd", 0.0),
            generated_at=datetime.fromisoformat(data["generated_at"]),
            topic=data.get("topic"),
            total_papers=data.get("total_papers", 0),
            map_reduce=data.get("map_reduce", False),
            notes=list(data.get("notes", [])),
        )

    @classmethod
    def from_json(cls, text: str) -> Digest:
        return cls.from_dict(json.loads(text))


@dataclass
class _Run:
    """What one build spends and notices along the way."""

    usage: Usage = field(default_factory=Usage)
    notes: list[str] = field(default_factory=list)
    llm_calls: int = 0

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


# ---------------------------------------------------------------------------- ranking
def rank_papers(papers: Sequence[Paper]) -> list[Paper]:
    """Upvotes first (papers without a count last), then the newest, then by title."""
    return sorted(
        papers,
        key=lambda p: (
            p.upvotes is None,
            -(p.upvotes or 0),
            -(p.published.toordinal() if p.published else 0),
            p.title.casefold(),
            p.paper_id,
        ),
    )


def max_groups_for(n_papers: int) -> int:
    """Six topics suit a day of up to 30 papers; a longer window gets a few more."""
    return 6 if n_papers <= 30 else min(12, 6 + (n_papers - 30) // 30)


# ---------------------------------------------------------------------------- service
class DigestService:
    """Builds digests; the LLM is optional (None = extractive names and overview)."""

    def __init__(
        self,
        corpus: Corpus,
        llm: BaseChatModel | None,
        settings: AnswerSettings | None = None,
        summarizer: Summarizer | None = None,
    ) -> None:
        self.corpus = corpus
        self.llm = llm
        self.settings = settings or AnswerSettings()
        self.summarizer = summarizer or Summarizer(corpus, llm, self.settings)
        self.model = model_name(llm)
        self._topic_chain: Runnable[Any, Any] | None = None
        self._overview_chain: Runnable[Any, Any] | None = None
        if llm is not None:
            from langchain_core.runnables import RunnableLambda

            self._topic_chain = RunnableLambda(_topic_messages) | llm
            self._overview_chain = RunnableLambda(_overview_messages) | llm

    # --- public ---
    def build(
        self,
        start: date,
        end: date | None = None,
        *,
        topic: str | None = None,
        max_papers: int | None = None,
    ) -> Digest:
        end = end or start
        _validate(start, end, max_papers)
        papers = self.corpus.state.list_papers(since=start, until=end)
        total = len(papers)
        topic = (topic or "").strip() or None
        if topic:
            papers = self.about(topic, papers)
        ranked = rank_papers(papers)
        run = _Run()
        if max_papers is not None and len(ranked) > max_papers:
            run.note(f"Showing the top {max_papers} of {len(ranked)} papers.")
            ranked = ranked[:max_papers]
        if not ranked:
            return self._empty(start, end, topic, total)
        digest = self._digest(start, end, ranked, run)
        digest.topic, digest.total_papers = topic, total
        log.info(
            "digest %s: %d papers in %d groups (%s overview, %d naming/overview LLM calls)",
            digest.period,
            digest.paper_count,
            len(digest.groups),
            digest.mode,
            run.llm_calls,
        )
        return digest

    def about(self, topic: str, papers: Sequence[Paper]) -> list[Paper]:
        """The papers relevant to ``topic``: the refusal gate's test (BM25 query coverage or
        dense cosine of the best chunk) with a stricter coverage (TOPIC_MIN_COVERAGE), scored
        over every chunk of these papers, as a search's candidate list would cap what a long
        window can return."""
        topical = self.corpus.relevance.stricter(min_coverage=TOPIC_MIN_COVERAGE)
        return self.corpus.papers_about(topic, papers, topical)

    # --- steps ---
    def _digest(self, start: date, end: date, ranked: list[Paper], run: _Run) -> Digest:
        summaries = self.summarizer.tldrs(ranked)
        run.usage = run.usage + total_usage(summaries)
        fallbacks = [s for s in summaries if s.note]
        if fallbacks:
            run.note(f"{len(fallbacks)} TL;DR(s) are extractive: {fallbacks[0].note}")
        items = [
            DigestPaper(p, s, i) for i, (p, s) in enumerate(zip(ranked, summaries, strict=True), 1)
        ]
        groups = self._group(items)
        self._name(groups, run)
        overview, mode, reduced = self._overview(start, end, groups, run)
        model = self.model if mode == "llm" else "extractive"
        return Digest(
            start=start,
            end=end,
            overview=overview,
            groups=groups,
            mode=mode,
            model=model,
            paper_count=len(items),
            tokens_in=run.usage.tokens_in,
            tokens_out=run.usage.tokens_out,
            cost_usd=estimate_cost(self.settings, self.model, run.usage),
            map_reduce=reduced,
            notes=run.notes,
        )

    def _empty(self, start: date, end: date, topic: str | None, total: int) -> Digest:
        when = _period(start, end)
        if topic and total:
            overview = f"None of the {total} papers for {when} match “{topic}”."
        else:
            overview = f"No papers were ingested for {when}."
        mode: SummaryMode = "llm" if self.llm is not None else "extractive"
        return Digest(
            start, end, overview, [], mode, self.model, 0, topic=topic, total_papers=total
        )

    # --- grouping ---
    def _group(self, items: list[DigestPaper]) -> list[TopicGroup]:
        vectors = self._paper_vectors([it.paper for it in items])
        placed = [it for it in items if it.paper.paper_id in vectors]
        unplaced = [it for it in items if it.paper.paper_id not in vectors]
        matrix = np.stack([vectors[it.paper.paper_id] for it in placed]) if placed else None
        clusters = cluster(matrix, max_groups_for(len(items))) if matrix is not None else []
        topics = [[placed[i] for i in c] for c in clusters if len(c) >= 2]
        others = [placed[c[0]] for c in clusters if len(c) < 2] + unplaced
        # Bigger topics first; among equals, the one holding the higher-ranked paper.
        topics.sort(key=lambda g: (-len(g), min(p.rank for p in g)))
        groups = [TopicGroup("", sorted(g, key=lambda p: p.rank)) for g in topics]
        if others:
            name = OTHER_NAME if groups else ALL_NAME
            groups.append(TopicGroup(name, sorted(others, key=lambda p: p.rank), other=True))
        return groups

    def _paper_vectors(self, papers: Sequence[Paper]) -> dict[str, np.ndarray]:
        """Mean chunk vector per paper from the embedding cache; papers without cached
        vectors (e.g. ingested with another embedder) are embedded from title + abstract."""
        chunk_ids = self.corpus.state.chunk_ids_for(p.paper_id for p in papers)
        cached = self.corpus.chunk_vectors([c for ids in chunk_ids.values() for c in ids])
        vectors: dict[str, np.ndarray] = {}
        for paper in papers:
            found = [cached[c] for c in chunk_ids.get(paper.paper_id, []) if c in cached]
            vec = paper_vector(found)
            if vec is not None:
                vectors[paper.paper_id] = vec
        missing = [p for p in papers if p.paper_id not in vectors]
        if missing:
            matrix = self.corpus.embedder.embed([f"{p.title}\n\n{p.abstract}" for p in missing])
            for paper, row in zip(missing, matrix, strict=True):
                if (vec := paper_vector([row])) is not None:
                    vectors[paper.paper_id] = vec
        return vectors

    # --- naming ---
    def _name(self, groups: list[TopicGroup], run: _Run) -> None:
        topics = [g for g in groups if not g.other]
        background = [_text(p.paper) for g in groups for p in g.papers]
        for group in topics:
            group.name = group_label(
                [_text(p.paper) for p in group.papers],
                background,
                titles=[p.paper.title for p in group.papers],
            )
        if self._topic_chain is not None and topics:
            self._llm_names(topics, run)
        _dedupe_names(topics)

    def _llm_names(self, topics: list[TopicGroup], run: _Run) -> None:
        """LLM names, cached by the group's papers; a failure keeps the extractive name."""
        assert self._topic_chain is not None
        keys = [self._topic_key(g) for g in topics]
        todo: list[tuple[TopicGroup, str]] = []
        for group, key in zip(topics, keys, strict=True):
            cached = self.corpus.state.cache_get(TOPIC_NAMESPACE, key)
            if isinstance(cached, str) and cached:
                group.name = cached
            else:
                todo.append((group, key))
        if not todo:
            return
        titles = [[p.paper.title for p in g.papers] for g, _ in todo]
        outputs = self._topic_chain.batch(
            titles, config={"max_concurrency": BATCH_CONCURRENCY}, return_exceptions=True
        )
        run.llm_calls += len(todo)
        for (group, key), output in zip(todo, outputs, strict=True):
            if isinstance(output, BaseException):
                error = as_llm_error(output, self.model)
                run.note(f"{error} Some topic names are extractive.")
                continue
            run.usage = run.usage + usage_of(output)
            name = clean_topic_name(str(output.content))
            if name:
                group.name = name
                self.corpus.state.cache_put(TOPIC_NAMESPACE, key, name)

    def _topic_key(self, group: TopicGroup) -> str:
        ids = "|".join(sorted(p.paper.paper_id for p in group.papers))
        digest = hashlib.sha256(ids.encode()).hexdigest()[:32]
        return f"{digest}|{load('topic').key}|{self.model}"

    # --- overview ---
    def _overview(
        self, start: date, end: date, groups: list[TopicGroup], run: _Run
    ) -> tuple[str, SummaryMode, bool]:
        """(paragraph, how it was made, whether map-reduce ran)."""
        if self._overview_chain is None:
            return extractive_overview(start, end, groups), "extractive", False
        try:
            text, reduced = self._llm_overview(_period(start, end), groups, run)
        except LLMError as exc:
            log.warning("digest overview by %s failed: %s", self.model, exc)
            run.note(f"{exc} The overview is assembled from the papers instead.")
            return extractive_overview(start, end, groups), "extractive", False
        if not text:
            run.note(f"The language model ({self.model}) returned an empty overview.")
            return extractive_overview(start, end, groups), "extractive", False
        return text, "llm", reduced

    def _llm_overview(self, when: str, groups: list[TopicGroup], run: _Run) -> tuple[str, bool]:
        """One call when the groups fit the context budget; else map-reduce: summarise
        batches of groups that fit, then write the overview from those summaries."""
        budget = self.settings.llm_context_tokens
        blocks = [_render_group(g) for g in groups]
        reduced = False
        for _ in range(MAX_REDUCE_LEVELS):
            batches = pack_blocks(blocks, budget, self._count_tokens)
            if len(batches) == 1:
                break
            paragraphs = self._ask(when, batches, run)
            reduced, previous = True, len(blocks)
            blocks = [
                f"## {_batch_names(b)}\n{text}" for b, text in zip(batches, paragraphs, strict=True)
            ]
            if len(blocks) >= previous:
                # Summaries no shorter than what they summarise (a tiny budget): reducing
                # further would not converge, so the last call gets what there is.
                break
        else:
            log.warning("digest overview still over budget after %d levels", MAX_REDUCE_LEVELS)
        return self._ask(when, [blocks], run)[0], reduced

    def _ask(self, when: str, batches: Sequence[Sequence[str]], run: _Run) -> list[str]:
        """A paragraph per batch of blocks from the digest prompt (calls run in parallel);
        raises LLMError when any call fails."""
        assert self._overview_chain is not None
        inputs = [{"date": when, "groups": "\n\n".join(b)} for b in batches]
        outputs = self._overview_chain.batch(
            inputs, config={"max_concurrency": BATCH_CONCURRENCY}, return_exceptions=True
        )
        run.llm_calls += len(inputs)
        paragraphs = []
        for output in outputs:
            if isinstance(output, BaseException):
                raise as_llm_error(output, self.model)
            run.usage = run.usage + usage_of(output)
            paragraphs.append(_strip_label(" ".join(str(output.content).split())))
        return paragraphs

    def _count_tokens(self, text: str) -> int:
        return len(self.corpus.codec.encode(text))


# ---------------------------------------------------------------------------- helpers
def _validate(start: date, end: date, max_papers: int | None) -> None:
    if start > end:
        raise ValueError(
            f"The digest range starts on {start.isoformat()}, after it ends on "
            f"{end.isoformat()}; give the earlier date first."
        )
    if max_papers is not None and max_papers < 1:
        raise ValueError(f"max_papers must be at least 1 (got {max_papers}).")


def _period(start: date, end: date) -> str:
    return start.isoformat() if start == end else f"{start.isoformat()} to {end.isoformat()}"


def _text(paper: Paper) -> str:
    return f"{paper.title}. {paper.abstract}"


def _topic_messages(titles: Sequence[str]) -> list[Any]:
    from answers.qa import to_messages

    return to_messages(load("topic").render(titles="\n".join(f"- {t}" for t in titles)))


def _overview_messages(values: dict[str, str]) -> list[Any]:
    from answers.qa import to_messages

    return to_messages(load("digest").render(date=values["date"], groups=values["groups"]))


def _render_group(group: TopicGroup) -> str:
    lines = [f"## {group.name}"]
    for item in group.papers:
        votes = f" ({item.paper.upvotes} upvotes)" if item.paper.upvotes is not None else ""
        lines.append(f"- {item.paper.title}{votes}: {item.tldr.text}")
    return "\n".join(lines)


def pack_blocks(blocks: Sequence[str], budget: int, count: Callable[[str], int]) -> list[list[str]]:
    """Consecutive blocks packed into batches of at most ``budget`` tokens; a block that is
    alone over budget is split between its lines (its heading repeated on each part)."""
    pieces = [p for block in blocks for p in _split_block(block, budget, count)]
    batches: list[list[str]] = []
    used = 0
    for piece in pieces:
        size = count(piece) + 2  # the blank line between blocks
        if batches and used + size <= budget:
            batches[-1].append(piece)
            used += size
        else:
            batches.append([piece])
            used = size
    return batches or [[]]


def _split_block(block: str, budget: int, count: Callable[[str], int]) -> list[str]:
    if count(block) <= budget:
        return [block]
    heading, *lines = block.split("\n")
    parts: list[list[str]] = [[]]
    for line in lines:
        if parts[-1] and count("\n".join([heading, *parts[-1], line])) > budget:
            parts.append([])
        parts[-1].append(line)
    return ["\n".join([heading, *part]) for part in parts if part]


def _batch_names(batch: Sequence[str]) -> str:
    names = [b.split("\n", 1)[0].removeprefix("## ").strip() for b in batch]
    return "; ".join(dict.fromkeys(names))


_LABEL_PREFIX = re.compile(r"^(?:\*\*)?(?:overview|topic(?: label)?|label)(?:\*\*)?\s*:\s*", re.I)


def _strip_label(text: str) -> str:
    return _LABEL_PREFIX.sub("", text.strip()).strip()


def clean_topic_name(raw: str) -> str:
    """A model's topic label as a short name: first line, no quotes, prefix or full stop."""
    line = next((ln for ln in raw.strip().splitlines() if ln.strip()), "")
    name = _strip_label(line.replace("**", "").strip()).strip("\"'“”‘’`#*- ").rstrip(".")
    words = name.split()
    if len(words) > MAX_NAME_WORDS:
        name = " ".join(words[:MAX_NAME_WORDS])
    return name[:MAX_NAME_CHARS].strip()


def _dedupe_names(groups: Sequence[TopicGroup]) -> None:
    """Two groups with one name would read as a mistake: number the repeats."""
    seen: dict[str, int] = {}
    for group in groups:
        key = group.name.casefold()
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            group.name = f"{group.name} ({seen[key]})"


def extractive_overview(start: date, end: date, groups: Sequence[TopicGroup]) -> str:
    """A paragraph of facts: how many papers, the topics with counts, the lead paper."""
    papers = sorted((p for g in groups for p in g.papers), key=lambda p: p.rank)
    when = f"on {start.isoformat()}" if start == end else f"from {start} to {end}"
    verb = "was" if len(papers) == 1 else "were"
    first = f"{_plural(len(papers), 'paper')} {verb} published {when}"
    topics = [g for g in groups if not g.other]
    others = sum(len(g.papers) for g in groups if g.other)
    if topics:
        listed = "; ".join(f"{g.name} ({len(g.papers)})" for g in topics)
        first += f", in {_plural(len(topics), 'topic')}: {listed}"
        if others:
            first += f"; plus {_plural(others, 'other paper')}"
    if any(p.paper.upvotes is not None for p in papers):
        lead = papers[0]
        second = f"The most upvoted is “{lead.paper.title}” ({lead.paper.upvotes} upvotes)"
    elif topics:  # without upvotes rank 1 is merely the first title: show the main topic
        lead = topics[0].papers[0]
        second = f"From {topics[0].name}: “{lead.paper.title}”"
    else:
        lead = papers[0]
        second = f"First in the list: “{lead.paper.title}”"
    return f"{first}. {second}: {lead.tldr.text}"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
