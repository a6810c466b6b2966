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

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import typer

from bot.cli import options, render

if TYPE_CHECKING:
    from retrieval import IngestReport, RecordError, RetrievalSettings, SnapshotReader

SLICE_PAPERS = 50_000
SNAPSHOT_FEED = "arxiv-snapshot"  # the listings' feed name unless --feed names another
MAX_EXAMPLES = 25
PROGRESS_LOG_SECONDS = 30.0  # a progress line this often when stderr is not a terminal


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
    timed = TimedEmbedder(embedder)
    corpus = Corpus(settings, embedder=timed)
    totals = BulkTotals()
    with CtrlC():  # a second Ctrl-C, wherever it waits, stops the process at once
        try:
            chunks_before = int(corpus.stats()["chunks"])
            started = time.monotonic()
            with render.progress() as bar:
                task = bar.add_task(
                    f"reading {render.safe(path.name)}", total=_mib(reader.total_bytes)
                )
                update = _progress_line(
                    bar,
                    task,
                    reader,
                    started,
                    log_every=None if sys.stderr.isatty() else PROGRESS_LOG_SECONDS,
                )
                for piece in reader.slices(SLICE_PAPERS):
                    report = corpus.ingest(
                        piece, progress=update, feed=feed or SNAPSHOT_FEED, force=force
                    )
                    totals.add(report)
                update("done", 0, 0)
            elapsed = time.monotonic() - started
            chunks_added = int(corpus.stats()["chunks"]) - chunks_before
        except KeyboardInterrupt:  # Ctrl-C: the stored windows stay, the cursor is after them
            typer.echo(
                f"Interrupted: {reader.committed_papers:,} papers of this run are stored (and "
                f"{reader.counts.papers - reader.committed_papers:,} read after them are not); the "
                "same command continues after the last window it stored.",
                err=True,
            )
            raise typer.Exit(130) from None
        finally:  # the parse workers (an ingest stopped early), the embedder, the writes in flight
            close_all(reader.close, lambda: close_embedder(embedder), corpus.close)
        result = _result(reader, totals, elapsed, chunks_added)
        result["embedding"] = embedding_mode(settings) | timed.summary()
        if as_json:
            typer.echo(json.dumps(result, ensure_ascii=False))
        else:
            _print(result, totals)
        if strict and totals.failed:
            raise typer.Exit(1)


def close_all(*closers: Callable[[], object]) -> None:
    """Run each closer in turn. Closing waits for the work in flight (an embedding batch in a
    worker); a Ctrl-C meanwhile stops the process at once (`stop_now`), as kill -9 would: the
    windows already stored and the cursor after them stay, the window in flight is done again by
    the same command."""
    try:
        for close in closers:
            close()
    except KeyboardInterrupt:
        stop_now()


class CtrlC:
    """SIGINT during a backfill, installed for the command's life (from the main thread). The
    first Ctrl-C raises KeyboardInterrupt: the ingest lets the work in flight finish (the running
    vector write, the embedding batch), stops, and says so in one line. Another one meanwhile,
    wherever the process waits (the ingest's cleanup, closing, the interpreter joining the
    vector-write thread at exit), stops it at once (`stop_now`). Put back when the command ends
    without a Ctrl-C only: after one, the process is ending and its exit needs the handler too.
    A process started with Ctrl-C ignored (a background job of a script) keeps ignoring it."""

    def __init__(self) -> None:
        self.pressed = 0
        self.previous: Any = None

    def __enter__(self) -> CtrlC:
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN  # `nohup … &` keeps it so
        ):
            self.previous = signal.signal(signal.SIGINT, self)
        return self

    def __exit__(self, *_: object) -> None:
        if self.previous is not None and not self.pressed:
            signal.signal(signal.SIGINT, self.previous)

    def __call__(self, signum: int, frame: object) -> None:
        self.pressed += 1
        if self.pressed > 1:
            stop_now()
        say("Ctrl-C: stopping after the work in flight (Ctrl-C again stops at once).")
        raise KeyboardInterrupt


def stop_now() -> NoReturn:
    say(
        "Stopped at once: what was stored stays; the same command continues after the last "
        "window it stored."
    )
    exit_now(130)


def say(line: str) -> None:
    """One line on stderr, written to the file descriptor: a signal handler may run while this
    thread is inside a write to ``sys.stderr`` (the progress bar), which must not be re-entered."""
    with contextlib.suppress(OSError):  # stderr closed: nothing to tell
        os.write(2, f"\n{line}\n".encode())


def exit_now(code: int) -> NoReturn:
    """Exit without waiting for anything (threads, pools): output flushed, then `os._exit`."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, RuntimeError, ValueError):  # closed, or interrupted
            stream.flush()
    os._exit(code)


class TimedEmbedder:
    """The bulk embedder, timed: how many texts it embedded and the seconds it spent (the
    chunks/s of the embedding mode, apart from the rest of the ingest)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.texts = 0
        self.seconds = 0.0

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    def embed(self, texts: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.inner.embed(texts)
        finally:
            self.seconds += time.perf_counter() - started
            self.texts += len(texts)

    def embed_query(self, text: str) -> Any:
        return self.inner.embed_query(text)

    def summary(self) -> dict[str, Any]:
        rate = self.texts / self.seconds if self.seconds > 0 else None
        return {
            "chunks": self.texts,
            "seconds": round(self.seconds, 3),
            "chunks_per_second": round(rate, 1) if rate is not None else None,
        }


def embedding_mode(settings: RetrievalSettings) -> dict[str, Any]:
    """How this backfill embeds: local model processes, or requests in flight to an endpoint."""
    if settings.embedding_provider == "local":
        return {"mode": "local", "workers": max(1, settings.embedding_workers)}
    return {
        "mode": "endpoint",
        "model": settings.embedding_model,
        "concurrency": settings.embedding_concurrency,
    }


def duration(seconds: float) -> str:
    """H:MM:SS, with days in front past 24 hours (a full arXiv backfill can take days)."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86_400)
    clock = f"{rest // 3600:d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {clock}" if days else clock


def _mib(n: int) -> int:
    return max(1, n >> 20)


def _progress_line(
    bar: Any,
    task: Any,
    reader: SnapshotReader,
    started: float,
    *,
    log_every: float | None = None,
    out: TextIO | None = None,
) -> Any:
    """The progress callback: MiB read of the file, papers/s and the time left by bytes.

    With ``log_every`` (stderr is not a terminal: cron, `docker logs`, nohup, where the bar
    shows nothing until it ends) the same line is also written to ``out`` every that many
    seconds."""
    first = {"at": started, "read": reader.bytes_read}
    logged = {"at": started}

    def update(phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        read = reader.bytes_read
        if first["read"] == 0 and read:  # the first bytes of this run (after a resume seek)
            first.update(at=now, read=read)
        elapsed = max(now - started, 1e-9)
        rate = reader.counts.papers / elapsed
        byte_rate = (read - first["read"]) / max(now - first["at"], 1e-9)
        left = (reader.total_bytes - read) / byte_rate if byte_rate > 0 else None
        eta = duration(left) if left is not None else "?"
        name = render.safe(reader.path.name)
        counts = (
            f"{reader.counts.papers:,} papers, {rate:,.0f}/s, {reader.counts.bad:,} bad lines, "
            f"ETA {eta}"
        )
        completed = min(_mib(read), _mib(reader.total_bytes))
        bar.update(task, completed=completed, description=f"reading {name} (MiB): {counts}")
        if log_every is not None and (now - logged["at"] >= log_every or phase == "done"):
            logged["at"] = now
            share = read / max(reader.total_bytes, 1)
            print(
                f"reading {name}: {counts}, {share:.0%} of the file",
                file=out or sys.stderr,
                flush=True,
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
    embedding = result["embedding"]
    how = (
        f"local model, {embedding['workers']} process(es)"
        if embedding["mode"] == "local"
        else f"endpoint {render.safe(embedding['model'])}, {embedding['concurrency']} in flight"
    )
    rate = embedding["chunks_per_second"]
    out.print(
        f"Embedding ({how}): {embedding['chunks']:,} chunks in {embedding['seconds']:,.1f} s"
        + (f", {rate:,.1f} chunks/s" if rate is not None else " (all cached)")
    )
    if not result["papers_read"] and result["resumed_from_byte"]:
        out.print("Nothing new after the cursor; --restart reads the file from its start again.")
    for problem in totals.problems:
        out.print(f"  • {render.safe(problem)}")
    shown = len(totals.problems)
    if totals.failed + totals.skipped > shown:
        out.print(f"  … and {totals.failed + totals.skipped - shown:,} more")
