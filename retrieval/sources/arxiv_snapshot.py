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
files), memory stays bounded by one line (with parse workers, by the few blocks of 256 lines
in flight: `snapshot_workers.py`).

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
from collections import OrderedDict
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrieval.errors import SourceError
from retrieval.feeds import arxiv_listing_day
from retrieval.models import Chunk, Paper, RecordError
from retrieval.normalize import DEFAULT_MAX_ABSTRACT_CHARS
from retrieval.sources.bulk_files import OpenedFile, identity, open_bulk, seek_to
from retrieval.sources.snapshot_records import (
    ListingDay,
    SnapshotFilter,
    SnapshotParser,
    parse_categories,
)
from retrieval.sources.snapshot_workers import (
    ChunkSpec,
    Line,
    Parsed,
    ParseWorkers,
    usable_cores,
)
from retrieval.sources.tabular import DEFAULT_MAX_RECORD_BYTES

if TYPE_CHECKING:
    from retrieval.settings import RetrievalSettings

_SKIP_CHUNK = 64 * 1024
PARALLEL_MIN_BYTES = 8 * 1024 * 1024  # ~5,000 papers of plain JSON: smaller files parse here
PARALLEL_MIN_PAPERS = 5_000  # a --limit under this parses here too
PREPARED_MAX = 2_048  # chunked papers kept for the ingester (it asks within a 512-paper window)
CURSOR_PREFIX = "arxiv_snapshot_cursor:"


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
        workers: int = 0,
        chunking: ChunkSpec | None = None,
        min_parallel_bytes: int | None = None,
    ) -> None:
        self.path = path
        self.filters = filters or SnapshotFilter()
        self.limit = limit
        self.restart = restart
        self.max_record_bytes = max_record_bytes
        self.origin = str(path)
        self.size, self.identity = identity(path)
        self.offset = 0  # uncompressed bytes consumed
        self.start_offset = 0
        self.counts = SnapshotCounts()
        self.exhausted = False  # read to the end of the file
        self._handle: OpenedFile | None = None
        self.parser = SnapshotParser(self.origin, self.filters, listing_day, max_abstract_chars)
        self.workers = workers  # parse worker processes (0: parse here)
        self.chunking = chunking  # how the workers chunk the papers they make (None: they don't)
        self.min_parallel_bytes = (
            PARALLEL_MIN_BYTES if min_parallel_bytes is None else min_parallel_bytes
        )
        self._prepared: OrderedDict[str, tuple[str, str, list[Chunk]]] = OrderedDict()
        self._reading: Generator[Paper | RecordError, None, None] | None = None
        self.committed_papers = 0  # papers handed out before the last stored position

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
        """What to store once the records handed out so far are committed (the ingester
        asks after each window it committed)."""
        self.committed_papers = self.counts.papers
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

    def __iter__(self) -> Generator[Paper | RecordError, None, None]:
        self._reading = self._read()  # kept, so `close` can end it
        return self._reading

    def _read(self) -> Generator[Paper | RecordError, None, None]:
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
        lines = self._lines(handle)
        workers = self._workers()
        parsed: Generator[tuple[Line, Parsed], None, None] = (
            workers.parse(lines)
            if workers is not None
            else (
                (x, (self.parser.record(x.raw, x.label) if x.raw is not None else None, None))
                for x in lines
            )
        )
        counts = self.counts
        limit = self.limit
        try:
            while limit is None or counts.papers < limit:
                item = next(parsed, None)
                if item is None:
                    self.exhausted = True
                    return
                line, (record, chunks) = item
                self.offset = line.end
                counts.lines += 1
                if line.raw is None:
                    yield self._bad(line.label, _too_long(self.max_record_bytes))
                    continue
                if record is None:
                    counts.filtered += 1
                    continue
                if isinstance(record, RecordError):
                    yield self._bad(line.label, record.reason, record)
                    continue
                counts.papers += 1
                if chunks is not None:
                    self._keep_chunks(record, chunks)
                yield record
        finally:
            parsed.close()  # before its workers stop
            if workers is not None:
                workers.close()

    def _lines(self, handle: Any) -> Iterator[Line]:
        """The file's lines from the current offset; one over the record limit is skipped
        to its end without being kept (``raw`` None)."""
        offset = self.offset
        while raw := self._readline(handle, self.max_record_bytes + 1, offset):
            start, offset = offset, offset + len(raw)
            if len(raw) > self.max_record_bytes and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):
                    raw = self._readline(handle, _SKIP_CHUNK, offset)
                    offset += len(raw)
                yield Line(None, f"byte {start}", offset)
                continue
            yield Line(raw, f"byte {start}", offset)

    @property
    def parallel_workers(self) -> int:
        """The parse workers this read uses: as many as asked for, up to the usable cores
        (more would only contend), when the file (and a ``limit``) is large enough for their
        start (~1 s) to pay; else 0, parsing in this process."""
        if self.workers <= 0 or self.size < self.min_parallel_bytes:
            return 0
        if self.limit is not None and self.limit < PARALLEL_MIN_PAPERS:
            return 0
        return min(self.workers, usable_cores())

    def _workers(self) -> ParseWorkers | None:
        """This read's parse workers (None: none); they start with the first block to parse."""
        count = self.parallel_workers
        return ParseWorkers(self.parser, count, self.chunking) if count else None

    def close(self) -> None:
        """End a read that stopped early (an ingest that failed, a consumer that stopped: the
        ingester may leave the stream suspended mid-file): its parse workers stop and the file
        is closed; the read cannot go on afterwards."""
        if self._reading is not None:
            self._reading.close()  # runs the read's own `finally`s, workers first
        self._prepared.clear()

    # --- chunks the parse workers made (retrieval.ingest.PreparedChunks) ---
    def _keep_chunks(self, paper: Paper, chunks: list[Chunk]) -> None:
        self._prepared[paper.paper_id] = (paper.title, paper.abstract, chunks)
        while len(self._prepared) > PREPARED_MAX:
            self._prepared.popitem(last=False)

    def prepared_chunks(
        self, paper: Paper, codec: object, chunk_tokens: int, chunk_overlap: int
    ) -> list[Chunk] | None:
        """The chunks a parse worker made of this very paper (same id, title and abstract)
        with this encoding and these sizes; None: chunk it yourself."""
        entry = self._prepared.pop(paper.paper_id, None)
        spec = self.chunking
        if (
            entry is None
            or spec is None
            or (chunk_tokens, chunk_overlap) != (spec.tokens, spec.overlap)
        ):
            return None
        if getattr(getattr(codec, "encoding", None), "name", None) != spec.encoding:
            return None  # not the tiktoken encoding the workers used
        title, abstract, chunks = entry
        return chunks if (title, abstract) == (paper.title, paper.abstract) else None

    def _readline(self, handle: Any, limit: int, at: int) -> bytes:
        """A line of the file (``at``: the offset reading has reached); a damaged file (a
        truncated or corrupt .gz or .zip, a read error) is one `SourceError` naming where it
        broke and what to do."""
        try:
            line: bytes = handle.readline(limit)
        except (EOFError, OSError, zlib.error, zipfile.BadZipFile) as exc:
            raise SourceError(
                f"{self.origin} is damaged after byte {at:,} of its contents "
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

    def prepared_chunks(
        self, paper: Paper, codec: object, chunk_tokens: int, chunk_overlap: int
    ) -> list[Chunk] | None:
        return self.reader.prepared_chunks(paper, codec, chunk_tokens, chunk_overlap)

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
        workers=settings.parse_workers,
        chunking=ChunkSpec(
            settings.tiktoken_encoding,
            settings.tiktoken_dir,
            settings.chunk_tokens,
            settings.chunk_overlap,
        ),
    )


def _too_long(limit: int) -> str:
    return (
        f"longer than {limit:,} bytes, the limit for one record "
        "(raise PAPERBOT_MAX_RECORD_BYTES if this is really one paper)"
    )
