"""Parse workers (`PAPERBOT_PARSE_WORKERS`): a snapshot read with worker processes gives the
records, counts, cursor and errors of reading it in one process, and the chunks the workers
make are those the ingester would make. Each test spawns real worker processes (~1 s)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from retrieval import Corpus, RetrievalSettings
from retrieval.chunking import chunk_paper
from retrieval.errors import SourceError
from retrieval.models import Paper, RecordError
from retrieval.sources.arxiv_snapshot import SnapshotFilter, SnapshotReader, open_arxiv_snapshot
from retrieval.sources.snapshot_records import SnapshotParser
from retrieval.sources.snapshot_workers import BLOCK_LINES, ChunkSpec, Line, ParseWorkers
from retrieval.tokens import TextCodec, get_encoding
from tests.support.fakes import FakeEmbedder
from tests.support.snapshots import records, snapshot_record, spy_parse_workers


def _snapshot(path: Path, papers: int) -> Path:
    """Papers over several blocks, with what a real file holds between them: bad JSON, a line
    over the record limit, a paper without an abstract, blank lines, a repeated paper."""
    lines = [json.dumps(r) for r in records(papers)]
    lines.insert(5, "{not json")
    lines.insert(
        BLOCK_LINES - 1,
        json.dumps({**snapshot_record(90_001, "Huge", "x"), "abstract": "y" * 9000}),
    )
    lines.insert(BLOCK_LINES + 3, "")
    lines.insert(BLOCK_LINES + 7, json.dumps({**snapshot_record(90_002, "No abstract", "")}))
    lines.append(lines[10])  # the same paper again, later in the file
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _spec(settings: RetrievalSettings) -> ChunkSpec:
    return ChunkSpec(
        settings.tiktoken_encoding,
        settings.tiktoken_dir,
        settings.chunk_tokens,
        settings.chunk_overlap,
    )


def _reader(path: Path, settings: RetrievalSettings, workers: int, **kw: Any) -> SnapshotReader:
    return SnapshotReader(
        path,
        workers=workers,
        chunking=_spec(settings),
        min_parallel_bytes=0,
        max_record_bytes=8192,
        **kw,
    )


def _read(reader: SnapshotReader, limit: int | None = None) -> list[Any]:
    out: list[Any] = []
    for record in reader:
        out.append(record if isinstance(record, Paper) else (record.record, record.reason))
        if limit is not None and len(out) >= limit:
            break
    return out


def _state(reader: SnapshotReader) -> tuple[Any, ...]:
    c = reader.counts
    return (reader.offset, reader.exhausted, c.lines, c.papers, c.filtered, c.bad)


def test_workers_read_what_one_process_reads(
    tmp_path: Path, settings: RetrievalSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retrieval.sources import arxiv_snapshot

    monkeypatch.setattr(arxiv_snapshot, "PARALLEL_MIN_PAPERS", 0)  # workers for a small limit
    started = spy_parse_workers(monkeypatch)
    path = _snapshot(tmp_path / "snap.json", 2 * BLOCK_LINES + 40)
    cases: list[dict[str, Any]] = [
        {},
        {"filters": SnapshotFilter(("cs.CV", "math."))},  # most lines filtered out
        {"limit": BLOCK_LINES + 5},  # stops inside a block the workers read ahead
    ]
    for kw in cases:
        alone, parallel = _reader(path, settings, 0, **kw), _reader(path, settings, 2, **kw)
        started.clear()
        assert _read(parallel) == _read(alone), kw
        assert started, f"no worker parsed {kw}"
        assert _state(parallel) == _state(alone), kw
        assert parallel.counts.examples == alone.counts.examples
    bad = [r for r in _read(_reader(path, settings, 1)) if not isinstance(r, Paper)]
    assert [reason.split(" ")[0] for _, reason in bad] == ["invalid", "longer", "missing"]


def test_the_cursor_of_a_parallel_read_resumes_exactly(
    tmp_path: Path, settings: RetrievalSettings
) -> None:
    path = _snapshot(tmp_path / "snap.json", BLOCK_LINES + 100)
    first = _reader(path, settings, 1)
    head = _read(first, limit=BLOCK_LINES // 2)  # the workers have read further ahead
    saved = first.position()
    assert first.offset < path.stat().st_size
    second = _reader(path, settings, 1)
    second.resume(saved)
    assert head + _read(second) == _read(_reader(path, settings, 0))


def test_prepared_chunks_are_what_the_ingester_would_make(
    tmp_path: Path, settings: RetrievalSettings
) -> None:
    path = _snapshot(tmp_path / "snap.json", 60)
    reader = _reader(path, settings, 1)
    # each paper once (the file repeats one: its chunks are given once)
    papers = list({r.paper_id: r for r in reader if isinstance(r, Paper)}.values())
    codec = TextCodec(get_encoding(settings.tiktoken_encoding, settings.tiktoken_dir))
    size = (settings.chunk_tokens, settings.chunk_overlap)
    first, second, third, *rest = papers
    # another text (an update merged with what was stored), other sizes, another encoding
    edited = first.model_copy(update={"abstract": first.abstract + " One more sentence."})
    assert reader.prepared_chunks(edited, codec, *size) is None
    assert reader.prepared_chunks(second, codec, size[0] - 1, size[1]) is None

    class Other:
        encoding = type("E", (), {"name": "p50k_base"})()

    assert reader.prepared_chunks(third, Other(), *size) is None
    assert reader.prepared_chunks(third, codec, *size) is None  # asked once: given away
    for paper in rest:
        expected = chunk_paper(paper, codec, *size)
        assert reader.prepared_chunks(paper, codec, *size) == expected


def test_an_ingest_through_workers_stores_the_same_chunks(
    tmp_path: Path, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _snapshot(tmp_path / "snap.json", 300)
    made: list[str] = []
    import retrieval.ingest as ingest

    def counting(paper: Paper, *args: Any) -> Any:
        made.append(paper.paper_id)
        return chunk_paper(paper, *args)

    monkeypatch.setattr(ingest, "chunk_paper", counting)
    stored = []
    for workers in (0, 1):
        settings = make_settings(data_dir=tmp_path / f"data-{workers}", parse_workers=workers)
        corpus = Corpus(settings, embedder=FakeEmbedder())
        try:
            reader = open_arxiv_snapshot(settings, path)
            reader.min_parallel_bytes = 0
            made.clear()
            report = corpus.ingest(reader)
            assert len(report.new) >= 300 and len(report.failed) == 2
            stored.append((corpus.state.chunk_ids(), made.copy(), sorted(report.new)))
            hits = corpus.search("contrastive learning of sentence embeddings", k=3)
            assert hits
        finally:
            corpus.close()
    (alone, chunked_alone, new), (parallel, chunked_parallel, new_parallel) = stored
    assert parallel == alone and new_parallel == new
    assert sorted(chunked_alone) == new and chunked_parallel == []  # the workers chunked all


class _DyingParser(SnapshotParser):
    """A worker that dies mid-read (the OOM killer's work)."""

    def record(self, raw: bytes, label: str) -> Paper | RecordError | None:
        os._exit(9)


def test_a_worker_that_dies_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    parser = _DyingParser(str(tmp_path / "snap.json"), SnapshotFilter(), None, 10_000)
    workers = ParseWorkers(parser, 1, None)

    def lines() -> Iterator[Line]:
        yield Line(b'{"id": "1"}\n', "byte 0", 12)

    with pytest.raises(SourceError, match="PAPERBOT_PARSE_WORKERS=0") as caught:
        list(workers.parse(lines()))
    assert "\n" not in str(caught.value)
    workers.close()


_CHILD = """
import multiprocessing, sys, time
sys.path.insert(0, {root!r})
from retrieval.sources.snapshot_records import SnapshotFilter, SnapshotParser
from retrieval.sources.snapshot_workers import Line, ParseWorkers
if __name__ == "__main__":
    workers = ParseWorkers(SnapshotParser("x", SnapshotFilter(), None, 10_000), 1, None)
    list(workers.parse(iter([Line(b"{{}}\\n", "byte 0", 3)])))  # the worker is up
    print(*[p.pid for p in multiprocessing.active_children()], flush=True)
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


@pytest.mark.integration
def test_workers_ignore_ctrl_c_and_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    """kill -9 of a backfill must not leave its workers waiting on their queue forever (the
    embedding pool's workers start the same way: `retrieval.worker_processes`)."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(root=str(Path(__file__).resolve().parents[1])))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert pids and all(_alive(p) for p in pids)
        for pid in pids:
            os.kill(pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
        time.sleep(0.5)
        assert all(_alive(p) for p in pids)  # ignored: the parent alone handles it
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 15
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(p) for p in pids), "a worker outlived its killed parent"
    finally:
        parent.kill()
        parent.wait()


def test_a_damaged_file_hands_on_what_was_read_then_the_same_error(
    tmp_path: Path, settings: RetrievalSettings
) -> None:
    import gzip

    whole = gzip.compress(_snapshot(tmp_path / "snap.json", 3 * BLOCK_LINES).read_bytes())
    broken = tmp_path / "broken.json.gz"
    broken.write_bytes(whole[: len(whole) * 2 // 3])  # a download cut short
    outcomes = []
    for workers in (0, 1):
        reader = _reader(broken, settings, workers)
        got: list[Any] = []
        with pytest.raises(SourceError, match="is damaged after byte") as caught:
            for record in reader:
                got.append(record)
        outcomes.append((got, str(caught.value), _state(reader)))
    assert outcomes[1] == outcomes[0]
    assert len(outcomes[0][0]) > BLOCK_LINES  # whole blocks were read before the damage


def _worker_pids() -> set[int]:
    import multiprocessing

    return {p.pid for p in multiprocessing.active_children() if p.pid is not None}


def test_a_read_that_stops_early_stops_its_workers(
    tmp_path: Path, settings: RetrievalSettings
) -> None:
    path = _snapshot(tmp_path / "snap.json", 2 * BLOCK_LINES)
    before = _worker_pids()
    reader = _reader(path, settings, 1)
    records = iter(reader)
    next(records)  # the ingest failed after its first record: the stream stays suspended
    assert _worker_pids() - before
    reader.close()
    assert not _worker_pids() - before
    assert next(records, None) is None  # ended: nothing restarts the workers
    assert not _worker_pids() - before
    # a worker that cannot start (no tiktoken file) says why, as the ingest's process would
    offline = SnapshotReader(
        path,
        workers=1,
        chunking=ChunkSpec("no-such-encoding", tmp_path / "empty", 160, 32),
        min_parallel_bytes=0,
    )
    with pytest.raises(Exception, match="no-such-encoding") as caught:
        list(offline)
    assert "died" not in str(caught.value)
    assert not _worker_pids() - before
