"""Daily digest: a day's (or a window's) papers ranked, grouped into named topics, with an
overview paragraph and a TL;DR per paper.

The result is structured data (`Digest`); the CLI and the Slack bot render it. With an LLM the
topic names and the overview are generated (map-reduce over the groups when they do not fit the
context budget); without one the digest is still complete: groups named by their distinctive
terms, extractive TL;DRs and an overview assembled from facts. What the model writes is
checked first (answers/degenerate.py): a topic name that echoes the prompt or is not a topic
of its papers keeps the extractive name, and an overview that loops, echoes the prompt or
names what the papers do not is assembled from facts instead; each says so in the notes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import numpy as np

from answers.clustering import cluster, group_label, paper_vector
from answers.degenerate import Problem, check_overview, check_topic_name
from answers.digest_data import (
    Digest,
    DigestPaper,
    TopicGroup,
    batch_names,
    clean_topic_name,
    dedupe_names,
    extractive_overview,
    pack_blocks,
    paper_text,
    period,
    render_group,
    strip_label,
)
from answers.errors import LLMError
from answers.llm import LLMRunner, LLMService, Usage
from answers.settings import AnswerSettings
from answers.summarize import Summarizer, SummaryMode, total_usage
from prompts import load
from retrieval import DateField, Paper

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from retrieval import Corpus

log = logging.getLogger(__name__)

TOPIC_NAMESPACE = "topic"
OTHER_NAME = "Other papers"
ALL_NAME = "Papers"  # the one bucket when no topic group formed (e.g. a two-paper day)
MAX_REDUCE_LEVELS = 3
# The refusal gate asks "does any chunk match?" and accepts 40% of the query's terms; a topic
# filter asks "is this paper about it?", so most of the topic must match (on the sample,
# "mixture of experts" at 40% also kept a paper that only mentions "experts").
TOPIC_MIN_COVERAGE = 0.8


@dataclass
class _Run:
    """What one build spends and notices along the way."""

    by: DateField = "listed"  # which day the papers were picked by, for the overview's words
    usage: Usage = field(default_factory=Usage)
    notes: list[str] = field(default_factory=list)
    llm_calls: int = 0
    progress: Callable[[str], None] = field(default=lambda step: None)  # the step starting

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
class DigestService(LLMService):
    """Builds digests; the LLM is optional (None = extractive names and overview)."""

    def __init__(
        self,
        corpus: Corpus,
        llm: BaseChatModel | None,
        settings: AnswerSettings | None = None,
        summarizer: Summarizer | None = None,
        *,
        runner: LLMRunner | None = None,
    ) -> None:
        super().__init__(corpus, llm, settings, runner=runner)
        self.summarizer = summarizer or Summarizer(corpus, llm, self.settings, runner=self.runner)

    # --- public ---
    def build(
        self,
        start: date,
        end: date | None = None,
        *,
        topic: str | None = None,
        max_papers: int | None = None,
        by: DateField = "listed",
        progress: Callable[[str], None] | None = None,
    ) -> Digest:
        """The digest of the papers of [start, end] (one day when ``end`` is None).
        ``progress`` hears each step ("TL;DRs of 30 papers", …) as it starts.

        ``by="listed"`` (the default) takes the papers a feed first listed on those days (a
        paper no feed listed: by its publication date), so a day's digest holds what the
        feeds brought that day; ``by="published"`` takes them by publication date.
        """
        end = end or start
        _validate(start, end, max_papers)
        papers = self.corpus.papers(since=start, until=end, by=by)
        total = len(papers)
        topic = (topic or "").strip() or None
        if topic:
            papers = self.about(topic, papers)
        ranked = rank_papers(papers)
        run = _Run(by=by, progress=progress or (lambda step: None))
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
        run.progress(f"TL;DRs of {len(ranked)} paper{'s' if len(ranked) != 1 else ''}")
        summaries = self.summarizer.tldrs(ranked)
        run.usage = run.usage + total_usage(summaries)
        fallbacks = [s for s in summaries if s.note]
        if fallbacks:
            run.note(f"{len(fallbacks)} TL;DR(s) are extractive: {fallbacks[0].note}")
        items = [
            DigestPaper(p, s, i) for i, (p, s) in enumerate(zip(ranked, summaries, strict=True), 1)
        ]
        run.progress("grouping the papers into topics")
        groups = self._group(items)
        run.progress(f"naming {len(groups)} topic{'s' if len(groups) != 1 else ''}")
        self._name(groups, run)
        run.progress("writing the overview")
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
            cost_usd=self.runner.cost(run.usage),
            map_reduce=reduced,
            notes=run.notes,
        )

    def _empty(self, start: date, end: date, topic: str | None, total: int) -> Digest:
        when = period(start, end)
        if topic and total:
            overview = f"None of the {total} papers for {when} match “{topic}”."
        else:
            overview = f"No papers were ingested for {when}."
        mode: SummaryMode = "llm" if self.runner.available else "extractive"
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
        """Mean chunk vector per paper, through the embedding cache (ingest filled it, so
        this embeds nothing unless the embedder changed since); papers that have no chunks
        or only zero vectors are left out."""
        chunks = self.corpus.chunks_of(p.paper_id for p in papers)
        ordered = [(pid, c) for pid, cs in chunks.items() for c in cs]
        matrix = self.corpus.vectors([c.embed_text for _, c in ordered])
        rows: dict[str, list[np.ndarray]] = {}
        for (paper_id, _), row in zip(ordered, matrix, strict=True):
            rows.setdefault(paper_id, []).append(row)
        vectors = {pid: paper_vector(found) for pid, found in rows.items()}
        return {pid: vec for pid, vec in vectors.items() if vec is not None}

    # --- naming ---
    def _name(self, groups: list[TopicGroup], run: _Run) -> None:
        topics = [g for g in groups if not g.other]
        background = [paper_text(p.paper) for g in groups for p in g.papers]
        for group in topics:
            group.name = group_label(
                [paper_text(p.paper) for p in group.papers],
                background,
                titles=[p.paper.title for p in group.papers],
            )
        if self.runner.available and topics:
            self._llm_names(topics, run)
        dedupe_names(topics)

    def _llm_names(self, topics: list[TopicGroup], run: _Run) -> None:
        """LLM names, cached by the group's papers as the model wrote them and checked at
        each use; a failure or a rejected name keeps the extractive name."""
        keys = [self._topic_key(g) for g in topics]
        todo: list[tuple[TopicGroup, str]] = []
        rejected: list[tuple[str, Problem]] = []
        for group, key in zip(topics, keys, strict=True):
            cached = self.corpus.cached(TOPIC_NAMESPACE, key)
            if isinstance(cached, str) and cached:
                self._use_name(group, cached, rejected)
            else:
                todo.append((group, key))
        if todo:
            titles = [
                {"titles": "\n".join(f"- {p.paper.title}" for p in g.papers)} for g, _ in todo
            ]
            replies = self.runner.batch("topic", titles)
            run.llm_calls += len(todo)
            for (group, key), reply in zip(todo, replies, strict=True):
                if isinstance(reply, LLMError):
                    run.note(f"{reply} Some topic names are extractive.")
                    continue
                run.usage = run.usage + reply.usage
                name = clean_topic_name(reply.text)
                if name:
                    # Cached even when rejected: the same model names the same group alike.
                    self.corpus.cache(TOPIC_NAMESPACE, key, name)
                    self._use_name(group, name, rejected)
        if rejected:
            run.note(_rejected_names_note(rejected, self.model))

    @staticmethod
    def _use_name(group: TopicGroup, name: str, rejected: list[tuple[str, Problem]]) -> None:
        """The model's ``name`` for ``group`` unless it fails the check (then it is added to
        ``rejected`` and the group keeps its extractive name)."""
        problem = check_topic_name(name, [paper_text(p.paper) for p in group.papers])
        if problem:
            log.warning("topic name %r rejected: %s", name, problem)
            rejected.append((name, problem))
        else:
            group.name = name

    def _topic_key(self, group: TopicGroup) -> str:
        ids = "|".join(sorted(p.paper.paper_id for p in group.papers))
        digest = hashlib.sha256(ids.encode()).hexdigest()[:32]
        return f"{digest}|{load('topic').key}|{self.model}"

    # --- overview ---
    def _overview(
        self, start: date, end: date, groups: list[TopicGroup], run: _Run
    ) -> tuple[str, SummaryMode, bool]:
        """(paragraph, how it was made, whether map-reduce ran)."""
        if not self.runner.available:
            return extractive_overview(start, end, groups, run.by), "extractive", False
        try:
            text, reduced = self._llm_overview(period(start, end), groups, run)
        except LLMError as exc:
            log.warning("digest overview by %s failed: %s", self.model, exc)
            run.note(f"{exc} The overview is assembled from the papers instead.")
            return extractive_overview(start, end, groups, run.by), "extractive", False
        if not text:
            run.note(f"The language model ({self.model}) returned an empty overview.")
            return extractive_overview(start, end, groups, run.by), "extractive", False
        problem = check_overview(
            text, _overview_sources(start, end, groups), papers=sum(len(g.papers) for g in groups)
        )
        if problem:
            log.warning("digest overview by %s rejected: %s", self.model, problem)
            run.note(
                f"The overview by {self.model} {problem}; it is assembled from the papers instead."
            )
            return extractive_overview(start, end, groups, run.by), "extractive", False
        return text, "llm", reduced

    def _llm_overview(self, when: str, groups: list[TopicGroup], run: _Run) -> tuple[str, bool]:
        """One call when the groups fit the context budget; else map-reduce: summarise
        batches of groups that fit, then write the overview from those summaries."""
        budget = self.settings.llm_context_tokens
        blocks = [render_group(g) for g in groups]
        reduced = False
        for _ in range(MAX_REDUCE_LEVELS):
            batches = pack_blocks(blocks, budget, self.corpus.count_tokens)
            if len(batches) == 1:
                break
            paragraphs = self._ask(when, batches, run)
            reduced, previous = True, len(blocks)
            blocks = [
                f"## {batch_names(b)}\n{text}" for b, text in zip(batches, paragraphs, strict=True)
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
        inputs = [{"date": when, "groups": "\n\n".join(b)} for b in batches]
        replies = self.runner.batch("digest", inputs)
        run.llm_calls += len(inputs)
        paragraphs = []
        for reply in replies:
            if isinstance(reply, LLMError):
                raise reply
            run.usage = run.usage + reply.usage
            paragraphs.append(strip_label(" ".join(reply.text.split())))
        return paragraphs


# ---------------------------------------------------------------------------- helpers
def _overview_sources(start: date, end: date, groups: Sequence[TopicGroup]) -> list[str]:
    """What an overview may draw on: the period, the blocks its prompt showed (names,
    titles, upvotes, TL;DRs) and the papers' abstracts."""
    blocks = [render_group(g) for g in groups]
    papers = [paper_text(p.paper) for g in groups for p in g.papers]
    return [period(start, end), *blocks, *papers]


def _rejected_names_note(rejected: Sequence[tuple[str, Problem]], model: str) -> str:
    name, problem = rejected[0]
    if len(rejected) == 1:
        return (
            f"The topic name “{name}” by {model} {problem}; the group is named by its terms "
            "instead."
        )
    return (
        f"{len(rejected)} topic names by {model} were replaced by the groups' terms: “{name}” "
        f"{problem}."
    )


def _validate(start: date, end: date, max_papers: int | None) -> None:
    if start > end:
        raise ValueError(
            f"The digest range starts on {start.isoformat()}, after it ends on "
            f"{end.isoformat()}; give the earlier date first."
        )
    if max_papers is not None and max_papers < 1:
        raise ValueError(f"max_papers must be at least 1 (got {max_papers}).")
