"""Feeds as the CLI names them (a file, an HF date, an arXiv query), wired to settings."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path

from retrieval import sources
from retrieval.models import Paper, RecordError
from retrieval.settings import RetrievalSettings
from retrieval.sources import arxiv, hf_api


def from_path(
    settings: RetrievalSettings,
    path: Path,
    *,
    fmt: str | None = None,
    page_date: date | None = None,
) -> Iterator[Paper | RecordError]:
    return sources.load_path(
        path, fmt=fmt, page_date=page_date, max_abstract_chars=settings.max_abstract_chars
    )


def from_hf(settings: RetrievalSettings, day: date) -> Iterator[Paper | RecordError]:
    url = f"{settings.hf_api_url}?date={day.isoformat()}"
    body = hf_api.fetch(
        day,
        base_url=settings.hf_api_url,
        timeout=settings.request_timeout,
        retries=settings.max_retries,
    )
    return hf_api.parse(body, origin=url, max_abstract_chars=settings.max_abstract_chars)


def from_arxiv(
    settings: RetrievalSettings, query: str | None, ids: Sequence[str] | None, max_results: int
) -> Iterator[Paper | RecordError]:
    pages = arxiv.fetch(
        query=query,
        ids=ids,
        max_results=max_results,
        base_url=settings.arxiv_api_url,
        timeout=settings.request_timeout,
        retries=settings.max_retries,
        delay_seconds=settings.arxiv_delay_seconds,
        page_size=settings.arxiv_page_size,
    )
    for page in pages:
        yield from arxiv.parse(
            page, origin=settings.arxiv_api_url, max_abstract_chars=settings.max_abstract_chars
        )
