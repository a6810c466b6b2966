"""Domain records: what a paper, a chunk of it and a search hit are."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SourceName = Literal["hf_page", "hf_api", "arxiv", "file"]


class Paper(BaseModel):
    """One paper as every source produces it, already normalised (see ``normalize.py``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    paper_id: str = Field(description="arXiv id without version, else 't:' + title hash")
    title: str
    abstract: str
    authors: tuple[str, ...] = ()
    published: date | None = None
    updated: date | None = None
    source: SourceName = "file"
    arxiv_id: str | None = Field(default=None, description="arXiv id without version")
    version: int | None = Field(default=None, description="arXiv version number, when known")
    url: str | None = None
    pdf_url: str | None = None
    upvotes: int | None = None
    comments: int | None = None
    categories: tuple[str, ...] = ()
    listed: date | None = Field(
        default=None,
        description=(
            "The day a feed listed the paper. From a source: the day this source listed it, "
            "when it says (HF entry date, HF page date, a `listed` column), else None. From "
            "the corpus: the first day any feed listed it (None when never listed)."
        ),
    )

    @property
    def content_hash(self) -> str:
        """Hash of what gets embedded: a change here means new chunks."""
        payload = f"{self.title}\n\n{self.abstract}".encode()
        return hashlib.sha256(payload).hexdigest()[:32]

    @property
    def link(self) -> str | None:
        """The best link for a person: the paper page, else the arXiv abstract page."""
        if self.url:
            return self.url
        if self.arxiv_id:
            return f"https://arxiv.org/abs/{self.arxiv_id}"
        return None


DateField = Literal["listed", "published"]
"""Which date picks papers by day: the day a feed listed them (the default everywhere), or
their own publication date."""
MANUAL_FEED = "manual"  # the feed name of an ingest no feed made (`paperbot ingest FILE`)


@dataclass(frozen=True, slots=True)
class Listing:
    """One feed listing one paper on one day (an HF Daily Papers date, an arXiv announcement)."""

    paper_id: str
    feed: str
    day: date
    first_seen_at: float  # UNIX time this listing was first recorded


@dataclass(frozen=True, slots=True)
class RecordError:
    """A record of a source that could not become a Paper, and why."""

    source: str
    record: str  # e.g. "record 3", "line 12", "entry 2 ('Some title')"
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.record}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Chunk:
    """A token-bounded, sentence-aligned piece of a paper's abstract."""

    chunk_id: str
    paper_id: str
    index: int
    text: str  # the chunk's own sentences, as quoted in citations
    n_tokens: int
    title: str

    @property
    def embed_text(self) -> str:
        """What is embedded and indexed: the title gives every chunk its context."""
        return f"{self.title}\n\n{self.text}"


@dataclass(frozen=True, slots=True)
class Hit:
    """One paper in a result list, with its best-matching chunk."""

    paper: Paper
    chunk: Chunk
    score: float  # fused score (higher is better)
    dense_score: float | None = None  # cosine similarity of the best chunk, when dense ran
    lexical_score: float | None = None  # BM25 score of the best chunk, when lexical ran
    # BM25 score / the query's idf ceiling: the share of the query the best chunk matched
    lexical_coverage: float | None = None
    rank: int = 0


@dataclass
class IngestReport:
    """What one ingest did, per paper outcome."""

    new: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    metadata_updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[RecordError] = field(default_factory=list)  # duplicates, older versions
    failed: list[RecordError] = field(default_factory=list)
    chunks_embedded: int = 0
    chunks_deleted: int = 0
    listings_added: int = 0  # (paper, feed, day) listings recorded for the first time

    @property
    def seen(self) -> int:
        return (
            len(self.new)
            + len(self.updated)
            + len(self.metadata_updated)
            + len(self.unchanged)
            + len(self.skipped)
            + len(self.failed)
        )
