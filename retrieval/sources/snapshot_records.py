"""One line of arXiv's bulk metadata snapshot -> a `Paper` (the mapping
`sources/arxiv_snapshot.py` describes): the filters, and `SnapshotParser`, which the reader
and its parse workers (`snapshot_workers.py`) both use."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from retrieval.models import Paper, RecordError
from retrieval.normalize import InvalidRecord, make_paper
from retrieval.sources.tabular import TOO_DEEP
from retrieval.sources.tabular import _names as split_author_names

ListingDay = Callable[[datetime], date]


@dataclass(frozen=True, slots=True)
class SnapshotFilter:
    """Which papers of the snapshot to read.

    ``categories``: prefixes, any of which a paper's categories must start with ("cs." or
    "cs.CL"); empty = all. ``since``/``until``: an inclusive range on the first version's day
    (`Paper.published`), which never changes once a paper is out, unlike ``update_date``.
    """

    categories: tuple[str, ...] = ()
    since: date | None = None
    until: date | None = None

    def key(self) -> str:
        cats = ",".join(sorted(self.categories))
        return f"{cats}|{self.since or ''}|{self.until or ''}"

    def wants_categories(self, categories: Sequence[str]) -> bool:
        if not self.categories:
            return True
        return any(c.startswith(p) for c in categories for p in self.categories)

    def wants_day(self, day: date | None) -> bool:
        if self.since is None and self.until is None:
            return True
        if day is None:
            return False
        return (self.since is None or day >= self.since) and (
            self.until is None or day <= self.until
        )


def parse_categories(text: str | None) -> tuple[str, ...]:
    """'cs.CL, cs.LG' or 'cs.' -> ('cs.CL', 'cs.LG') / ('cs.',)."""
    return tuple(p.strip() for p in (text or "").replace(";", ",").split(",") if p.strip())


class SnapshotParser:
    """How one line of the snapshot becomes a paper: the filters and the record limits.
    Picklable, so parse workers (`snapshot_workers.ParseWorkers`) read lines as the reader
    does."""

    def __init__(
        self,
        origin: str,
        filters: SnapshotFilter,
        listing_day: ListingDay | None,
        max_abstract_chars: int,
    ) -> None:
        self.origin = origin
        self.filters = filters
        self.listing_day = listing_day
        self.max_abstract_chars = max_abstract_chars
        # A line that holds none of the category prefixes cannot pass the filter: it is left
        # out before it is decoded (most of a category-filtered snapshot), counted as filtered.
        self.needles = tuple(p.encode() for p in filters.categories)

    def may_pass(self, raw: bytes) -> bool:
        """False for a line the filters surely leave out (blank, or no category prefix)."""
        if not raw.strip():
            return False
        return not self.needles or any(needle in raw for needle in self.needles)

    def record(self, raw: bytes, label: str) -> Paper | RecordError | None:
        """The line's paper, its error, or None when the filters leave it out (or blank)."""
        if not self.may_pass(raw):
            return None
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            reason = (
                "contains bytes that are not valid UTF-8"
                if isinstance(exc, UnicodeDecodeError)
                else f"invalid JSON: {exc.msg} (column {exc.colno})"
            )
            return RecordError(self.origin, label, reason)
        except RecursionError:
            return RecordError(self.origin, label, TOO_DEEP)
        if not isinstance(data, dict):
            return RecordError(self.origin, label, f"expected an object, got {type(data).__name__}")
        try:
            return self._paper(data)
        except InvalidRecord as exc:
            name = data.get("id")
            where = f"{label} (arXiv {name})" if isinstance(name, str) else label
            return RecordError(self.origin, where, str(exc))

    def _paper(self, data: dict[str, Any]) -> Paper | None:
        categories = _text(data, "categories").split()
        if not self.filters.wants_categories(categories):
            return None
        versions = data.get("versions")
        if not isinstance(versions, list) or not versions:
            raise InvalidRecord("no versions (a snapshot record lists at least v1)")
        first_at = _created(versions[0])
        published = first_at.date()
        if not self.filters.wants_day(published):
            return None
        last = versions[-1]
        version = last.get("version") if isinstance(last, dict) else None
        if not isinstance(version, str) or not version.startswith("v"):
            raise InvalidRecord(f"version {version!r} is not like 'v2'")
        arxiv_id = _text(data, "id")
        if not arxiv_id:
            raise InvalidRecord("missing id")
        versioned = f"{arxiv_id}{version}"
        return make_paper(
            title=_text(data, "title"),
            abstract=_text(data, "abstract"),
            source="arxiv",
            arxiv_id=versioned,
            authors=_authors(data),
            categories=categories,
            published=published,
            updated=_created(last).date() if len(versions) > 1 else published,
            url=f"https://arxiv.org/abs/{versioned}",
            pdf_url=f"https://arxiv.org/pdf/{versioned}",
            listed=self.listing_day(first_at) if self.listing_day else None,
            max_abstract_chars=self.max_abstract_chars,
        )


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRecord(f"{key} must be text, got {type(value).__name__}")
    return value


def _created(version: Any) -> datetime:
    """'Mon, 2 Apr 2007 19:18:42 GMT' -> an aware UTC datetime."""
    created = version.get("created") if isinstance(version, dict) else None
    if not isinstance(created, str):
        raise InvalidRecord("a version without its 'created' time")
    try:
        moment = parsedate_to_datetime(created)
    except (TypeError, ValueError):
        raise InvalidRecord(f"created {created!r} is not a date like 'Mon, 2 Apr 2007'") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _authors(data: dict[str, Any]) -> list[str]:
    parsed = data.get("authors_parsed")
    if isinstance(parsed, list) and parsed:
        names = []
        for parts in parsed:
            if isinstance(parts, list) and all(isinstance(p, str) for p in parts):
                last, first, *rest = [*parts, "", ""][:3]
                names.append(" ".join(p for p in (first, last, *rest) if p))
        if names:
            return names
    return split_author_names(data.get("authors"))  # "A, B and C"; raises InvalidRecord
