"""Parsing and chunking an arXiv snapshot in worker processes (``PAPERBOT_PARSE_WORKERS``).

A backfill spends about half its time decoding JSON lines, normalising them into papers and
cutting each abstract into token-counted chunks: pure work on one line at a time. With
workers, the reading process reads the lines (and the byte offsets the resume cursor needs),
sends blocks of the lines that may pass the filters to the workers, and hands the results on
in file order; each worker also chunks the papers it made, so the ingester takes their chunks
ready-made (`SnapshotReader.prepared_chunks`) instead of chunking them itself. The records,
the counts, the cursor and the errors are exactly those of reading in one process; only the
work runs beside the ingest's own (state writes, BM25 segments, vector writes).

The workers are spawned (the ingesting process holds SQLite and Chroma threads a fork would
copy mid-operation) when the reading starts, and stopped when it ends.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from retrieval.chunking import TokenCodec, chunk_paper
from retrieval.errors import SourceError
from retrieval.models import Chunk, Paper, RecordError
from retrieval.sources.snapshot_records import SnapshotParser
from retrieval.worker_processes import check_started, start_worker, starting_workers

BLOCK_LINES = 256  # lines per block sent to a worker (~0.5 MB of snapshot)


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the file as the reading process saw it: ``raw`` is None for a line over
    the record limit (already skipped); ``end`` is the offset just after it."""

    raw: bytes | None
    label: str
    end: int


@dataclass(frozen=True, slots=True)
class ChunkSpec:
    """How the ingest chunks (the settings' encoding and sizes): the workers chunk alike."""

    encoding: str
    cache_dir: Path
    tokens: int
    overlap: int


Parsed = tuple[Paper | RecordError | None, list[Chunk] | None]

_parser: SnapshotParser | None = None  # a worker process's own (set by `_start`)
_codec: TokenCodec | None = None
_spec: ChunkSpec | None = None


def _start(parser: SnapshotParser, spec: ChunkSpec | None) -> None:
    def load() -> None:
        global _parser, _codec, _spec
        _parser, _spec = parser, spec
        if spec is not None:  # e.g. no tiktoken file offline: raised with the first block
            from retrieval.tokens import TextCodec, get_encoding

            _codec = TextCodec(get_encoding(spec.encoding, spec.cache_dir))

    start_worker(load, "a parse worker could not start", SourceError)


def _parse_block(lines: list[tuple[bytes, str]]) -> list[Parsed]:
    check_started()  # the parent shows it as it would have in process
    assert _parser is not None, "parse worker not initialised"
    out: list[Parsed] = []
    for raw, label in lines:
        record = _parser.record(raw, label)
        chunks = None
        if isinstance(record, Paper) and _spec is not None and _codec is not None:
            chunks = chunk_paper(record, _codec, _spec.tokens, _spec.overlap)
        out.append((record, chunks))
    return out


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may run on
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class ParseWorkers:
    """``workers`` processes parsing (and chunking) blocks of lines; `parse` keeps a few
    blocks per worker in flight and yields their results in file order."""

    def __init__(self, parser: SnapshotParser, workers: int, spec: ChunkSpec | None) -> None:
        self.parser = parser
        self.workers = max(1, workers)
        self.spec = spec
        self.ahead = 2 * self.workers + 1  # blocks in flight
        self._pool: ProcessPoolExecutor | None = None

    def parse(self, lines: Iterator[Line]) -> Generator[tuple[Line, Parsed], None, None]:
        """Each line with its record and chunks, in file order. A read that fails (a damaged
        file) stops the reading: the lines read before it are handed on first, then the
        error is raised, as reading in one process would."""
        # each block with the raw bytes of its lines that may pass (None: left out here)
        pending: deque[tuple[list[Line], list[bytes | None], Future[list[Parsed]] | None]] = deque()
        failed: BaseException | None = None
        try:
            while True:
                while failed is None and len(pending) < self.ahead:
                    block: list[Line] = []
                    try:
                        block.extend(islice(lines, BLOCK_LINES))  # keeps what came before
                    except Exception as exc:
                        failed = exc
                    if not block:
                        break
                    picked = [self._candidate(x) for x in block]
                    todo = [
                        (raw, x.label)
                        for x, raw in zip(block, picked, strict=True)
                        if raw is not None
                    ]
                    pending.append((block, picked, self._submit(todo) if todo else None))
                if not pending:
                    if failed is not None:
                        raise failed
                    return
                block, picked, future = pending.popleft()
                results = iter(self._result(future) if future is not None else ())
                for line, raw in zip(block, picked, strict=True):
                    yield line, next(results) if raw is not None else (None, None)
        finally:
            for _, _, waiting in pending:
                if waiting is not None:
                    waiting.cancel()

    def _candidate(self, line: Line) -> bytes | None:
        """The line's bytes when the filters may let it through (a worker parses it)."""
        return line.raw if line.raw is not None and self.parser.may_pass(line.raw) else None

    def _result(self, future: Future[list[Parsed]]) -> list[Parsed]:
        try:
            return future.result()
        except BrokenProcessPool:
            self.close()
            raise SourceError(
                "a snapshot parse worker process died (out of memory, or killed); run the same "
                "command again with PAPERBOT_PARSE_WORKERS=0 to parse in the ingest's own "
                "process: it continues where it stopped"
            ) from None

    def _submit(self, todo: list[tuple[bytes, str]]) -> Future[list[Parsed]]:
        pool = self._started()
        with starting_workers(pool, self.workers):
            return pool.submit(_parse_block, todo)

    def _started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start,
                initargs=(self.parser, self.spec),
            )
        return self._pool

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
