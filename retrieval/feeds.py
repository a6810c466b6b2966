"""Feeds as users name them (a file, a URL, an HF date, an arXiv query), wired to settings,
and the arXiv announcement calendar the feed watcher polls by.

Every reader returns `Paper | RecordError` records. Readers that know the day the source
listed a paper set `Paper.listed` on it (the HF API's entry date comes from its parser; an
arXiv entry's announcement day is computed here from its submission time).

arXiv requests go through one pacer per process: whoever fetches (two arXiv feeds in a row,
the watcher and a CLI command in one process), two requests are never closer than
PAPERBOT_ARXIV_DELAY_SECONDS (arXiv asks for 3 s).
"""

from __future__ import annotations

import threading
import time as clock
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit
from xml.etree.ElementTree import ParseError
from zoneinfo import ZoneInfo

import defusedxml
import defusedxml.ElementTree as SafeET

from retrieval import sources
from retrieval.errors import SourceError
from retrieval.models import Paper, RecordError
from retrieval.normalize import parse_arxiv_id
from retrieval.settings import RetrievalSettings
from retrieval.sources import arxiv, hf_api, page_text, tabular
from retrieval.sources.http import get_bytes

# ---------------------------------------------------------------- the arXiv calendar
# arXiv takes submissions until 14:00 America/New_York on weekdays and announces them at
# 20:00 the same evening (Monday to Thursday; Friday's on Sunday evening). The mailing is
# dated the next weekday: what is announced on Sunday evening is Monday's listing. These are
# the nominal times; arXiv's holiday schedule shifts a few days a year.
FORMATS = sources.FORMATS  # the file formats a file or URL feed may name

ARXIV_TZ = ZoneInfo("America/New_York")
ARXIV_CUTOFF = time(14, 0)
ARXIV_ANNOUNCEMENT = time(20, 0)
_ANNOUNCEMENT_WEEKDAYS = (6, 0, 1, 2, 3)  # Sunday .. Thursday


def _next_weekday(day: date) -> date:
    day += timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def arxiv_listing_day(submitted: datetime) -> date:
    """The day of the arXiv listing that announces a paper submitted at ``submitted``."""
    local = submitted.astimezone(ARXIV_TZ)
    cutoff_day = local.date()
    if cutoff_day.weekday() >= 5 or local.time() >= ARXIV_CUTOFF:
        cutoff_day = _next_weekday(cutoff_day)
    return _next_weekday(cutoff_day)


def arxiv_next_announcement(now: datetime) -> datetime:
    """The first arXiv announcement after ``now`` (an aware datetime)."""
    local = now.astimezone(ARXIV_TZ)
    day = local.date()
    for _ in range(8):
        if day.weekday() in _ANNOUNCEMENT_WEEKDAYS:
            at = datetime.combine(day, ARXIV_ANNOUNCEMENT, ARXIV_TZ)
            if at > local:
                return at
        day += timedelta(days=1)
    raise AssertionError("unreachable: arXiv announces five days a week")  # pragma: no cover


def arxiv_current_listing_day(now: datetime) -> date:
    """The day of the latest arXiv listing announced by ``now``."""
    local = now.astimezone(ARXIV_TZ)
    day = local.date()
    for _ in range(8):
        announced = datetime.combine(day, ARXIV_ANNOUNCEMENT, ARXIV_TZ)
        if day.weekday() in _ANNOUNCEMENT_WEEKDAYS and announced <= local:
            return _next_weekday(day)
        day -= timedelta(days=1)
    raise AssertionError("unreachable: arXiv announces five days a week")  # pragma: no cover


def arxiv_search_query(categories: Sequence[str] = (), query: str | None = None) -> str:
    """An arXiv API search: any of the categories, and the free query when given."""
    parts = []
    if categories:
        cats = " OR ".join(f"cat:{c}" for c in categories)
        parts.append(f"({cats})" if len(categories) > 1 else cats)
    if query:
        parts.append(f"({query})" if categories else query)
    if not parts:
        raise SourceError("an arXiv feed needs categories (e.g. cs.CL) and/or a search query")
    return " AND ".join(parts)


class _Pacer:
    """At most one request per ``gap`` seconds, across every caller of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = float("-inf")

    def wait(self, gap: float, sleep: Callable[[float], None] = clock.sleep) -> None:
        with self._lock:
            pause = self._last + gap - clock.monotonic()
            if pause > 0:
                sleep(pause)
            self._last = clock.monotonic()


ARXIV_PACER = _Pacer()


# ---------------------------------------------------------------- readers
def from_path(
    settings: RetrievalSettings,
    path: Path,
    *,
    fmt: str | None = None,
    page_date: date | None = None,
) -> Iterator[Paper | RecordError]:
    return sources.load_path(
        path,
        fmt=fmt,
        page_date=page_date,
        max_abstract_chars=settings.max_abstract_chars,
        max_input_bytes=settings.max_input_bytes,
        max_record_bytes=settings.max_record_bytes,
    )


def from_url(
    settings: RetrievalSettings,
    url: str,
    *,
    fmt: str | None = None,
    page_date: date | None = None,
) -> Iterator[Paper | RecordError]:
    """Records of a document on the web (JSONL, CSV, JSON, HF API JSON, Atom or HF page
    text), its format given or told by the URL's extension and the content."""
    if fmt is not None and fmt not in sources.FORMATS:
        raise SourceError(f"Unknown format {fmt!r}; choose one of {', '.join(sources.FORMATS)}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SourceError(f"{url!r} is not an http(s) URL")
    data = get_bytes(
        url,
        timeout=settings.request_timeout,
        retries=settings.max_retries,
        max_bytes=settings.max_input_bytes,
    )
    origin = f"{parts.scheme}://{parts.hostname}{parts.path}"  # no credentials, no query
    name = PurePosixPath(parts.path).name or "feed"
    fmt = fmt or sources.detect_format(Path(name), data)
    limit = settings.max_abstract_chars
    if fmt == "page":
        return page_text.parse(data, origin=origin, page_date=page_date, max_abstract_chars=limit)
    if fmt in ("json", "hf_api"):
        document = tabular.load_json(data, origin)
        first = document[0] if isinstance(document, list) and document else document
        if fmt == "hf_api" or (isinstance(first, dict) and "paper" in first):
            return hf_api.parse_entries(document, origin=origin, max_abstract_chars=limit)
        return tabular.parse_records(document, origin=origin, max_abstract_chars=limit)
    if fmt in ("jsonl", "csv"):
        reader = tabular.parse_jsonl if fmt == "jsonl" else tabular.parse_csv
        return reader(
            data,
            origin=origin,
            max_abstract_chars=limit,
            max_record_bytes=settings.max_record_bytes,
        )
    return arxiv.parse(data, origin=origin, max_abstract_chars=limit)


def from_hf(settings: RetrievalSettings, day: date) -> Iterator[Paper | RecordError]:
    url = f"{settings.hf_api_url}?date={day.isoformat()}"
    body = hf_api.fetch(
        day,
        base_url=settings.hf_api_url,
        timeout=settings.request_timeout,
        retries=settings.max_retries,
        max_bytes=settings.max_input_bytes,
    )
    return hf_api.parse(body, origin=url, max_abstract_chars=settings.max_abstract_chars, day=day)


def from_arxiv(
    settings: RetrievalSettings,
    query: str | None,
    ids: Sequence[str] | None,
    max_results: int,
    *,
    newest_first: bool = False,
) -> Iterator[Paper | RecordError]:
    """An arXiv search and/or id list; each paper carries its listing day (`Paper.listed`,
    from its submission time) when the feed says when it was submitted."""
    pages = arxiv.fetch(
        query=query,
        ids=ids,
        max_results=max_results,
        base_url=settings.arxiv_api_url,
        timeout=settings.request_timeout,
        retries=settings.max_retries,
        delay_seconds=settings.arxiv_delay_seconds,
        page_size=settings.arxiv_page_size,
        sleep=lambda seconds: _paced_sleep(seconds, settings.arxiv_delay_seconds),
        sort_by="submittedDate" if newest_first else None,
        max_bytes=settings.max_input_bytes,
    )
    ARXIV_PACER.wait(settings.arxiv_delay_seconds)  # the first page: paced like the others
    for page in pages:
        days = _listing_days(page)
        for record in arxiv.parse(
            page, origin=settings.arxiv_api_url, max_abstract_chars=settings.max_abstract_chars
        ):
            if isinstance(record, Paper) and record.listed is None and record.arxiv_id in days:
                record = record.model_copy(update={"listed": days[record.arxiv_id]})
            yield record


def _paced_sleep(seconds: float, gap: float) -> None:
    """arxiv.fetch's pause before a further page or a retry, then the process-wide pace."""
    clock.sleep(seconds)
    ARXIV_PACER.wait(gap)


def _listing_days(page: bytes) -> dict[str, date]:
    """arXiv id (no version) -> listing day of its first version, for a feed page's entries."""
    try:
        root = SafeET.fromstring(page)
    except (ParseError, defusedxml.DefusedXmlException):
        return {}  # arxiv.parse reports the broken page
    days: dict[str, date] = {}
    for entry in root.findall("atom:entry", arxiv.NS):
        found = entry.find("atom:id", arxiv.NS)
        stamp = entry.find("atom:published", arxiv.NS)
        parsed = parse_arxiv_id(found.text.strip() if found is not None and found.text else None)
        if parsed is None or stamp is None or not stamp.text:
            continue
        try:
            submitted = datetime.fromisoformat(stamp.text.strip())
        except ValueError:
            continue
        if submitted.tzinfo is None:
            submitted = submitted.replace(tzinfo=ZoneInfo("UTC"))
        days[parsed[0]] = arxiv_listing_day(submitted)
    return days
