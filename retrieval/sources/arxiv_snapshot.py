"""arXiv's bulk metadata snapshot: the JSON Lines file of arXiv's Kaggle dataset
(``arxiv-metadata-oai-snapshot.json``, several GB, one paper per line), read streaming.

Each line maps to a `Paper` the way the arXiv API feed (`sources/arxiv.py`) maps an entry, so a
paper backfilled here and later seen by the arXiv feed is the same paper with the same fields:

- identity: ``id`` plus the last of ``versions`` ("2401.01234" + "v3" -> paper 2401.01234,
  version 3; old ids such as "hep-th/9901001" likewise), through `make_paper`;
- ``published``: the UTC day of the first version (``versions[0].created``), as the API's
  ``<published>`` (the first submission); ``updated``: the day of the last version, as the
  API's ``<updated>``. ``update_date`` is not used: it moves whenever arXiv touches the
  metadata (a DOI added years later), so it says nothing about when the paper appeared;
- ``listed``: the day of the arXiv listing that announced the first version, from the same
  announcement calendar the arXiv feed uses (`retrieval.feeds.arxiv_listing_day`), so digests
  and `--since` by listing day work over the backfilled years;
- ``authors`` from ``authors_parsed`` ("First Last Suffix"; the ``authors`` string only when
  that is missing), ``categories`` split on spaces (the primary one first, as arXiv lists
  them), abs and PDF links with the version, as the API writes them.

The filters (category prefixes, a day range on the first-version day) are applied while
reading; a line that cannot become a paper is a `RecordError` and the rest still land; a line
over ``max_record_bytes`` fails alone without being kept. Plain, ``.gz`` and ``.zip`` (one
member: the Kaggle download) files are read; there is no whole-file size cap (that is for feed
files), memory stays bounded by one line.

`SnapshotReader` is a resumable record stream for `retrieval.ingest.Ingester`: it knows its
byte offset after the last record it yielded and names its cursor (the file's identity and
the filters) so the ingester can store it after every committed window and seek to it on the
next run.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrieval.errors import SourceError
from retrieval.feeds import arxiv_listing_day
from retrieval.models import Paper, RecordError
from retrieval.normalize import DEFAULT_MAX_ABSTRACT_CHARS, InvalidRecord, make_paper
from retrieval.sources.bulk_files import OpenedFile, identity, open_bulk, seek_to
from retrieval.sources.tabular import DEFAULT_MAX_RECORD_BYTES, TOO_DEEP
from retrieval.sources.tabular import _names as split_author_names

if TYPE_CHECKING:
    from retrieval.settings import RetrievalSettings

_SKIP_CHUNK = 64 * 1024
CURSOR_PREFIX = "arxiv_snapshot_cursor:"
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


@dataclass
class SnapshotCounts:
    """What the reader saw: lines read, papers yielded, lines filtered out, bad lines."""

    lines: int = 0
    papers: int = 0
    filtered: int = 0
    bad: int = 0
    examples: list[RecordError] = field(default_factory=list)


class SnapshotReader:
    """The papers of one snapshot file that pass ``filters``, from a byte offset on.

    Iterate it once. ``offset`` is the position (in the uncompressed text) just after the last
    line read, which is the last record yielded while the consumer holds it: everything before
    it has been handed out. ``position()`` is what to store after those records are committed;
    ``resume(saved)`` (before iterating) continues from a stored position when it belongs to
    this file and these filters, else starts at the beginning.
    """

    def __init__(
        self,
        path: Path,
        *,
        filters: SnapshotFilter | None = None,
        limit: int | None = None,
        restart: bool = False,
        listing_day: ListingDay | None = arxiv_listing_day,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        max_abstract_chars: int = DEFAULT_MAX_ABSTRACT_CHARS,
    ) -> None:
        self.path = path
        self.filters = filters or SnapshotFilter()
        self.limit = limit
        self.restart = restart
        self.listing_day = listing_day
        self.max_record_bytes = max_record_bytes
        self.max_abstract_chars = max_abstract_chars
        self.origin = str(path)
        self.size, self.identity = identity(path)
        self.offset = 0  # uncompressed bytes consumed
        self.start_offset = 0
        self.counts = SnapshotCounts()
        self.exhausted = False  # read to the end of the file
        self._handle: OpenedFile | None = None
        # A line that holds none of the category prefixes cannot pass the filter: it is left
        # out before it is decoded (most of a category-filtered snapshot), counted as filtered.
        self._needles = tuple(p.encode() for p in self.filters.categories)

    # --- the resume protocol (retrieval.ingest.Resumable) ---
    @property
    def cursor_key(self) -> str:
        """The meta key of this file's cursor: one per file content and filter set, so a
        run with other filters, or a new snapshot download, starts at its own beginning."""
        digest = hashlib.sha256(f"{self.identity}|{self.filters.key()}".encode()).hexdigest()
        return CURSOR_PREFIX + digest[:16]

    def resume(self, saved: str | None) -> None:
        """Continue after a stored position (ignored with ``restart``, when it is not ours, or
        once reading has begun: a later slice of the same run goes on where it is)."""
        if self.restart or not saved or self._handle is not None:
            return
        try:
            data = json.loads(saved)
            offset = int(data["offset"])
        except (ValueError, KeyError, TypeError):
            return
        if data.get("identity") == self.identity and offset >= 0:
            self.offset = self.start_offset = offset

    def position(self) -> str:
        return json.dumps(
            {
                "offset": self.offset,
                "identity": self.identity,
                "file": self.origin,
                "filters": self.filters.key(),
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )

    # --- progress ---
    @property
    def bytes_read(self) -> int:
        """Bytes of the file read so far (compressed bytes for .gz), for progress and ETA."""
        if self._handle is None:
            return 0
        return self._handle.progress()

    @property
    def total_bytes(self) -> int:
        return self._handle.total if self._handle is not None else self.size

    # --- reading ---
    def slices(self, papers: int) -> Iterator[SnapshotSlice]:
        """The records in consecutive slices of at most ``papers`` records, each one a
        resumable stream of its own (one `Corpus.ingest` each: the writer lock is let go
        between them, and readers see each slice land). Consume each before the next."""
        records = iter(self)
        while True:
            piece = SnapshotSlice(self, islice(records, papers))
            yield piece
            if piece.count < papers:
                return

    def __iter__(self) -> Iterator[Paper | RecordError]:
        if self._handle is not None:
            raise SourceError(f"{self.origin} is already being read")
        self._handle = open_bulk(self.path, self.size)
        try:
            yield from self._records(self._handle)
        finally:
            self._handle.close()

    def _records(self, source: OpenedFile) -> Iterator[Paper | RecordError]:
        handle = source.stream
        if self.offset:
            seek_to(handle, self.offset, self.origin)
        counts = self.counts
        limit = self.limit
        while limit is None or counts.papers < limit:
            raw = self._readline(handle, self.max_record_bytes + 1)
            if not raw:
                self.exhausted = True
                return
            self.offset += len(raw)
            counts.lines += 1
            label = f"byte {self.offset - len(raw)}"
            if len(raw) > self.max_record_bytes and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):
                    raw = self._readline(handle, _SKIP_CHUNK)
                    self.offset += len(raw)
                yield self._bad(label, _too_long(self.max_record_bytes))
                continue
            record = self._record(raw, label)
            if record is None:
                counts.filtered += 1
                continue
            if isinstance(record, RecordError):
                yield self._bad(label, record.reason, record)
                continue
            counts.papers += 1
            yield record

    def _readline(self, handle: Any, limit: int) -> bytes:
        """A line of the file; a damaged file (a truncated or corrupt .gz or .zip, a read
        error) is one `SourceError` naming where it broke and what to do."""
        try:
            line: bytes = handle.readline(limit)
        except (EOFError, OSError, zlib.error, zipfile.BadZipFile) as exc:
            raise SourceError(
                f"{self.origin} is damaged after byte {self.offset:,} of its contents "
                f"({type(exc).__name__}: {exc}). Download it again: the papers stored so far "
                "are kept, and the new file is read from its start (its stored papers are "
                "recognised as unchanged, nothing is embedded twice)."
            ) from exc
        return line

    def _bad(self, label: str, reason: str, error: RecordError | None = None) -> RecordError:
        self.counts.bad += 1
        error = error or RecordError(self.origin, label, reason)
        if len(self.counts.examples) < 20:
            self.counts.examples.append(error)
        return error

    def _record(self, raw: bytes, label: str) -> Paper | RecordError | None:
        """The line's paper, its error, or None when the filters leave it out (or blank)."""
        if not raw.strip():
            return None
        if self._needles and not any(needle in raw for needle in self._needles):
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


class SnapshotSlice:
    """Part of a snapshot run: the records of one `SnapshotReader.slices` slice, resumable
    through the reader (the cursor is the reader's)."""

    def __init__(self, reader: SnapshotReader, records: Iterator[Paper | RecordError]) -> None:
        self.reader = reader
        self._records = records
        self.count = 0

    @property
    def cursor_key(self) -> str:
        return self.reader.cursor_key

    def resume(self, saved: str | None) -> None:
        self.reader.resume(saved)

    def position(self) -> str:
        return self.reader.position()

    def __iter__(self) -> Iterator[Paper | RecordError]:
        for record in self._records:
            self.count += 1
            yield record


def open_arxiv_snapshot(
    settings: RetrievalSettings,
    path: Path,
    *,
    categories: str | Sequence[str] = (),
    since: date | None = None,
    until: date | None = None,
    limit: int | None = None,
    restart: bool = False,
) -> SnapshotReader:
    """A reader of the snapshot at ``path`` with the settings' record limits."""
    if since and until and since > until:
        raise SourceError(f"--since {since} is after --until {until}; nothing would match")
    if isinstance(categories, str):
        text, categories = categories, parse_categories(categories)
        if text.strip() and not categories:
            raise ValueError(
                f"--categories {text!r} names no category; give prefixes such as "
                "'cs.CL,cs.LG' or 'cs.' (or leave it out for every category)"
            )
    return SnapshotReader(
        path,
        filters=SnapshotFilter(tuple(categories), since, until),
        limit=limit,
        restart=restart,
        max_record_bytes=settings.max_record_bytes,
        max_abstract_chars=settings.max_abstract_chars,
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


def _too_long(limit: int) -> str:
    return (
        f"longer than {limit:,} bytes, the limit for one record "
        "(raise PAPERBOT_MAX_RECORD_BYTES if this is really one paper)"
    )
