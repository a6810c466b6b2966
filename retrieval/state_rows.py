"""How papers, chunks and listings map to rows of the corpus state file (retrieval/state.py,
the only module that opens it): column lists, conversions, the date filters, the writes that
run inside its transactions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Any

from retrieval.db import Database
from retrieval.models import Chunk, DateField, Paper
from retrieval.normalize import title_key

PAPER_COLUMNS = (
    "paper_id, title, title_key, abstract, authors, published, updated, source, arxiv_id, "
    "version, url, pdf_url, upvotes, comments, categories, content_hash"
)
# What a paper is read with: its columns plus its first listing day, which the listings
# trigger keeps (retrieval/state_schema.py v3) and no paper write sets.
READ_COLUMNS = PAPER_COLUMNS + ", listed"
# The day that picks a paper by date: its first listing day, else its publication date.
DAY_SQL: dict[str, str] = {"listed": "COALESCE(listed, published)", "published": "published"}


def insert_listings(db: Database, listings: Sequence[tuple[str, str, date]], now: float) -> int:
    """Insert listings of stored papers (others are ignored); the trigger keeps papers.listed."""
    if not listings:
        return 0
    cursor = db.executemany(
        "INSERT INTO listings(paper_id, feed, day, first_seen_at) "
        "SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM papers WHERE paper_id = ?) "
        "ON CONFLICT DO NOTHING",
        [(pid, feed, day.isoformat(), now, pid) for pid, feed, day in listings],
    )
    return max(0, cursor.rowcount)


def upsert_paper(db: Database, paper: Paper, now: float, content_changed: bool) -> None:
    upsert_papers(db, [paper], now, content_changed)


def upsert_papers(db: Database, papers: Sequence[Paper], now: float, content_changed: bool) -> None:
    """Insert or update papers in one statement (one round trip per batch on PostgreSQL)."""
    if not papers:
        return
    width = len(PAPER_COLUMNS.split(",")) + 2
    db.executemany(
        f"INSERT INTO papers({PAPER_COLUMNS}, ingested_at, changed_at) "
        f"VALUES ({','.join('?' * width)}) "
        "ON CONFLICT(paper_id) DO UPDATE SET "
        + ", ".join(f"{c.strip()}=excluded.{c.strip()}" for c in PAPER_COLUMNS.split(",")[1:])
        + (", changed_at=excluded.changed_at" if content_changed else ""),
        [(*paper_to_row(p), now, now) for p in papers],
    )


def paper_to_row(p: Paper) -> tuple[Any, ...]:
    return (
        p.paper_id,
        p.title,
        title_key(p.title),
        p.abstract,
        json.dumps(list(p.authors)),
        p.published.isoformat() if p.published else None,
        p.updated.isoformat() if p.updated else None,
        p.source,
        p.arxiv_id,
        p.version,
        p.url,
        p.pdf_url,
        p.upvotes,
        p.comments,
        json.dumps(list(p.categories)),
        p.content_hash,
    )


def row_to_paper(row: Any) -> Paper:
    return Paper(
        paper_id=row["paper_id"],
        title=row["title"],
        abstract=row["abstract"],
        authors=tuple(json.loads(row["authors"])),
        published=row_day(row["published"]),
        updated=row_day(row["updated"]),
        source=row["source"],
        arxiv_id=row["arxiv_id"],
        version=row["version"],
        url=row["url"],
        pdf_url=row["pdf_url"],
        upvotes=row["upvotes"],
        comments=row["comments"],
        categories=tuple(json.loads(row["categories"])),
        listed=row_day(row["listed"]),
    )


def row_day(value: str | None) -> date | None:
    """A day as the state stores it (ISO text, or NULL)."""
    return date.fromisoformat(value) if value else None


def row_to_chunk(row: Any) -> Chunk:
    return Chunk(
        row["chunk_id"], row["paper_id"], row["idx"], row["text"], row["n_tokens"], row["title"]
    )


def paper_filters(
    since: date | None, until: date | None, source: str | None, by: DateField = "listed"
) -> tuple[str, list[Any]]:
    if by not in DAY_SQL:
        raise ValueError(f"by must be 'listed' or 'published', not {by!r}")
    day = DAY_SQL[by]
    clauses: list[str] = []
    params: list[Any] = []
    if since:
        clauses.append(f"{day} >= ?")
        params.append(since.isoformat())
    if until:
        clauses.append(f"{day} <= ?")
        params.append(until.isoformat())
    if source:
        clauses.append("source = ?")
        params.append(source)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params
