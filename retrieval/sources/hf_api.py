"""Hugging Face Daily Papers API: GET https://huggingface.co/api/daily_papers?date=YYYY-MM-DD.

The answer is a JSON list of entries ``{"paper": {id, title, summary, authors, publishedAt,
upvotes, ...}, "publishedAt": ..., "numComments": ..., ...}``. ``summary`` is hard-wrapped
like arXiv abstracts; clean_text() collapses the wraps into single spaces.

Two dates: ``paper.publishedAt`` is the paper's own (arXiv) date, which becomes
``Paper.published``; the entry's ``publishedAt`` is when HF put it on the Daily Papers list,
the listing day (``Paper.listed``, in UTC, the day the API files it under).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any, TypeVar

import httpx

from retrieval.errors import SourceError
from retrieval.models import Paper, RecordError
from retrieval.normalize import DEFAULT_MAX_ABSTRACT_CHARS, InvalidRecord, describe, make_paper
from retrieval.sources.http import get_bytes
from retrieval.sources.tabular import (
    DEFAULT_MAX_INPUT_BYTES,
    load_json,
    parse_iso_date,
    parse_utc_day,
)

PAPER_URL = "https://huggingface.co/papers/{id}"

T = TypeVar("T")


def fetch(
    day: date,
    *,
    base_url: str,
    timeout: float,
    retries: int,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_bytes: int = DEFAULT_MAX_INPUT_BYTES,
) -> bytes:
    """The raw JSON of one day's Daily Papers (``sleep`` is injectable for tests); a body
    over ``max_bytes`` is a SourceError."""
    return get_bytes(
        base_url,
        params={"date": day.isoformat()},
        timeout=timeout,
        retries=retries,
        client=client,
        sleep=sleep,
        max_bytes=max_bytes,
    )


def parse(
    data: bytes | str,
    *,
    origin: str,
    max_abstract_chars: int = DEFAULT_MAX_ABSTRACT_CHARS,
    day: date | None = None,
) -> Iterator[Paper | RecordError]:
    """Papers from the API's JSON: a list of entries, or one entry object.

    ``day`` (the date the list was fetched for) is the listing day of entries that carry
    no date of their own.
    """
    return parse_entries(
        load_json(data, origin), origin=origin, max_abstract_chars=max_abstract_chars, day=day
    )


def parse_entries(
    document: Any,
    *,
    origin: str,
    max_abstract_chars: int = DEFAULT_MAX_ABSTRACT_CHARS,
    day: date | None = None,
) -> Iterator[Paper | RecordError]:
    """Papers from an already decoded API document."""
    if isinstance(document, dict) and "paper" in document:
        document = [document]
    if not isinstance(document, list):
        raise SourceError(
            f"{origin}: expected the Daily Papers API list of entries, "
            f"got {type(document).__name__}"
        )
    for number, entry in enumerate(document, start=1):
        yield _entry_to_paper(entry, origin, number, max_abstract_chars, day)


def _entry_to_paper(
    entry: Any, origin: str, number: int, max_abstract_chars: int, day: date | None
) -> Paper | RecordError:
    paper = entry.get("paper") if isinstance(entry, dict) else None
    if not isinstance(paper, dict):
        return RecordError(origin, describe(number), 'entry has no "paper" object')
    title = paper.get("title") or entry.get("title")
    try:
        arxiv_id = _optional(paper, "id", str)
        published = _optional(paper, "publishedAt", str)
        listed = _optional(entry, "publishedAt", str)
        return make_paper(
            # The entry repeats the title unwrapped; either one will do.
            title=_optional(paper, "title", str) or _optional(entry, "title", str),
            abstract=_optional(paper, "summary", str),
            source="hf_api",
            arxiv_id=arxiv_id,
            authors=_authors(paper.get("authors")),
            published=parse_iso_date(published, "publishedAt") if published else None,
            url=PAPER_URL.format(id=arxiv_id) if arxiv_id else None,
            upvotes=_optional(paper, "upvotes", int),
            comments=_optional(entry, "numComments", int),
            listed=parse_utc_day(listed, "publishedAt") if listed else day,
            max_abstract_chars=max_abstract_chars,
        )
    except InvalidRecord as exc:
        return RecordError(
            origin, describe(number, title if isinstance(title, str) else None), str(exc)
        )


def _optional(mapping: dict[str, Any], key: str, kind: type[T]) -> T | None:
    value = mapping.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidRecord(f"{key} should be {kind.__name__}, got {type(value).__name__}")
    return value


def _authors(value: Any) -> list[str]:
    """Every author's name: hidden authors are still authors of the paper."""
    if not isinstance(value, list):
        return []
    names = (item.get("name") if isinstance(item, dict) else item for item in value)
    return [name for name in names if isinstance(name, str)]
