"""`paperbot ingest --arxiv-snapshot FILE`: a backfill from arXiv's bulk metadata snapshot.

The file is read streaming (retrieval's `open_arxiv_snapshot`) and ingested in slices of
`SLICE_PAPERS` papers, one `Corpus.ingest` each: the data dir's writer lock is let go between
slices (a feed poll of `serve` gets its turn) and searches see each slice as it lands. The
ingest stores the snapshot's cursor after every window it committed, so the same command
after an interruption (Ctrl-C, kill -9, a reboot) continues from there; `--restart` reads the
file from its start again (papers already stored are skipped by content hash).

Embeddings go through `bulk_embedder`: `PAPERBOT_EMBEDDING_WORKERS` local model processes, or
`PAPERBOT_EMBEDDING_CONCURRENCY` requests in flight to an OpenAI-compatible endpoint.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from bot.cli import options, render

if TYPE_CHECKING:
    from retrieval import IngestReport, RecordError, RetrievalSettings, SnapshotReader

SLICE_PAPERS = 50_000
SNAPSHOT_FEED = "arxiv-snapshot"  # the listings' feed name unless --feed names another
MAX_EXAMPLES = 25


@dataclass
class BulkTotals:
    """What a backfill did, as counts (a million paper ids would not fit a report)."""

    new: int = 0
    updated: int = 0
    metadata_updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    chunks_embedded: int = 0
    chunks_deleted: int = 0
    listings_added: int = 0
    problems: list[RecordError] = field(default_factory=list)

    def add(self, report: IngestReport) -> None:
        for name in ("new", "updated", "metadata_updated", "unchanged", "skipped", "failed"):
            setattr(self, name, getattr(self, name) + len(getattr(report, name)))
        self.chunks_embedded += report.chunks_embedded
        self.chunks_deleted += report.chunks_deleted
        self.listings_added += report.listings_added
        room = MAX_EXAMPLES - len(self.problems)
        if room > 0:
            self.problems.extend([*report.failed, *report.skipped][:room])


def ingest_snapshot(
    settings: RetrievalSettings,
    path: Path,
    *,
    categories: str | None,
    since: date | None,
    until: date | None,
    limit: int | None,
    restart: bool,
    feed: str | None,
    force: bool,
    strict: bool,
    as_json: bool,
) -> None:
    from retrieval import Corpus, bulk_embedder, close_embedder, open_arxiv_snapshot

    reader = open_arxiv_snapshot(
        settings,
        path,
        categories=categories or (),
        since=since,
        until=until,
        limit=limit,
        restart=restart,
    )
    embedder = bulk_embedder(settings)
    corpus = Corpus(settings, embedder=embedder)
    totals = BulkTotals()
    try:
        chunks_before = int(corpus.stats()["chunks"])
        started = time.monotonic()
        with render.progress() as bar:
            task = bar.add_task(f"reading {render.safe(path.name)}", total=_mib(reader.total_bytes))
            update = _progress_line(bar, task, reader, started)
            for piece in reader.slices(SLICE_PAPERS):
                report = corpus.ingest(
                    piece, progress=update, feed=feed or SNAPSHOT_FEED, force=force
                )
                totals.add(report)
            update("done", 0, 0)
        elapsed = time.monotonic() - started
        chunks_added = int(corpus.stats()["chunks"]) - chunks_before
    finally:
        close_embedder(embedder)
        corpus.close()
    result = _result(reader, totals, elapsed, chunks_added)
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
    else:
        _print(result, totals)
    if strict and totals.failed:
        raise typer.Exit(1)


def _mib(n: int) -> int:
    return max(1, n >> 20)


def _progress_line(bar: Any, task: Any, reader: SnapshotReader, started: float) -> Any:
    """The progress callback: MiB read of the file, papers/s and the time left by bytes."""
    first = {"at": started, "read": reader.bytes_read}

    def update(phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        read = reader.bytes_read
        if first["read"] == 0 and read:  # the first bytes of this run (after a resume seek)
            first.update(at=now, read=read)
        elapsed = max(now - started, 1e-9)
        rate = reader.counts.papers / elapsed
        byte_rate = (read - first["read"]) / max(now - first["at"], 1e-9)
        left = (reader.total_bytes - read) / byte_rate if byte_rate > 0 else None
        eta = time.strftime("%H:%M:%S", time.gmtime(left)) if left is not None else "?"
        bar.update(
            task,
            completed=min(_mib(read), _mib(reader.total_bytes)),
            description=(
                f"reading {render.safe(reader.path.name)} (MiB): {reader.counts.papers:,} papers, "
                f"{rate:,.0f}/s, {reader.counts.bad:,} bad lines, ETA {eta}"
            ),
        )

    return update


def _result(
    reader: SnapshotReader, totals: BulkTotals, elapsed: float, chunks_added: int
) -> dict[str, Any]:
    counts = reader.counts
    return {
        "file": str(reader.path),
        "papers": {
            "new": totals.new,
            "updated": totals.updated,
            "metadata_updated": totals.metadata_updated,
            "unchanged": totals.unchanged,
            "skipped": totals.skipped,
        },
        "lines_read": counts.lines,
        "papers_read": counts.papers,
        "filtered_out": counts.filtered,
        "bad_lines": counts.bad,
        "chunks_added": chunks_added,
        "chunks_embedded": totals.chunks_embedded,
        "chunks_deleted": totals.chunks_deleted,
        "listings_added": totals.listings_added,
        "elapsed_seconds": round(elapsed, 3),
        "papers_per_second": round(counts.papers / elapsed, 1) if elapsed > 0 else None,
        "chunks_per_second": round(chunks_added / elapsed, 1) if elapsed > 0 else None,
        "resumed_from_byte": reader.start_offset,
        "cursor_byte": reader.offset,
        "file_bytes": reader.total_bytes,
        "reached_end": reader.exhausted,
        "problems": [str(p) for p in totals.problems],
    }


def _print(result: dict[str, Any], totals: BulkTotals) -> None:
    out = options.out()
    papers = result["papers"]
    if result["resumed_from_byte"]:
        out.print(f"Resumed at byte {result['resumed_from_byte']:,} (the stored cursor).")
    out.print(
        f"[bold]{papers['new']:,}[/] new, {papers['updated']:,} updated, "
        f"{papers['metadata_updated']:,} metadata updated, {papers['unchanged']:,} unchanged, "
        f"{papers['skipped']:,} skipped; {result['bad_lines']:,} bad lines, "
        f"{result['filtered_out']:,} lines filtered out"
    )
    out.print(
        f"{result['chunks_added']:,} chunks added ({result['chunks_embedded']:,} embedded now) "
        f"in {result['elapsed_seconds']:,.1f} s: {result['papers_per_second'] or 0:,.0f} "
        f"papers/s, {result['chunks_per_second'] or 0:,.0f} chunks/s"
    )
    if not result["papers_read"] and result["resumed_from_byte"]:
        out.print("Nothing new after the cursor; --restart reads the file from its start again.")
    for problem in totals.problems:
        out.print(f"  • {render.safe(problem)}")
    shown = len(totals.problems)
    if totals.failed + totals.skipped > shown:
        out.print(f"  … and {totals.failed + totals.skipped - shown:,} more")
