"""The digest as data, and its text without a model or a corpus.

`Digest` (groups of `DigestPaper`s, an overview, what it cost) with its JSON round trip, which
the CLI and the Slack bot render; and the pure text steps of answers/digest.py: group blocks
for the overview prompt packed into a token budget, model labels cleaned, the extractive
overview.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from answers.summarize import Summary, SummaryMode
from retrieval import Paper

MAX_NAME_WORDS = 6
MAX_NAME_CHARS = 60
_LABEL_PREFIX = re.compile(r"^(?:\*\*)?(?:overview|topic(?: label)?|label)(?:\*\*)?\s*:\s*", re.I)


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
        return period(self.start, self.end)

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


# ---------------------------------------------------------------------------- text
def period(start: date, end: date) -> str:
    """'2025-05-16', or '2025-05-10 to 2025-05-16' for a window."""
    return start.isoformat() if start == end else f"{start.isoformat()} to {end.isoformat()}"


def paper_text(paper: Paper) -> str:
    return f"{paper.title}. {paper.abstract}"


def render_group(group: TopicGroup) -> str:
    """A group as a block of the digest prompt: its name, then a line per paper."""
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


def batch_names(batch: Sequence[str]) -> str:
    """The group names of a batch of blocks, for the heading of its summary."""
    names = [b.split("\n", 1)[0].removeprefix("## ").strip() for b in batch]
    return "; ".join(dict.fromkeys(names))


def strip_label(text: str) -> str:
    """Without an 'Overview:' / 'Topic label:' prefix a model may add."""
    return _LABEL_PREFIX.sub("", text.strip()).strip()


def clean_topic_name(raw: str) -> str:
    """A model's topic label as a short name: first line, no quotes, prefix or full stop."""
    line = next((ln for ln in raw.strip().splitlines() if ln.strip()), "")
    name = strip_label(line.replace("**", "").strip()).strip("\"'“”‘’`#*- ").rstrip(".")
    words = name.split()
    if len(words) > MAX_NAME_WORDS:
        name = " ".join(words[:MAX_NAME_WORDS])
    return name[:MAX_NAME_CHARS].strip()


def dedupe_names(groups: Sequence[TopicGroup]) -> None:
    """Two groups with one name would read as a mistake: number the repeats."""
    seen: dict[str, int] = {}
    for group in groups:
        key = group.name.casefold()
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            group.name = f"{group.name} ({seen[key]})"


def extractive_overview(
    start: date, end: date, groups: Sequence[TopicGroup], by: str = "listed"
) -> str:
    """A paragraph of facts: how many papers (listed or published in the period, as the
    digest picked them), the topics with counts, the lead paper."""
    papers = sorted((p for g in groups for p in g.papers), key=lambda p: p.rank)
    when = f"on {start.isoformat()}" if start == end else f"from {start} to {end}"
    verb = "was" if len(papers) == 1 else "were"
    first = f"{_plural(len(papers), 'paper')} {verb} {by} {when}"
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
