"""`paperbot ingest --arxiv-snapshot`: a backfill from arXiv's metadata snapshot, with its
cursor: the same command continues after an interruption (a real process killed with SIGKILL)
and --restart reads the file again. Embeddings come from a local OpenAI-compatible fake."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import cli_env, run_cli
from tests.support.openai_server import FakeOpenAIServer
from tests.support.snapshots import spy_parse_workers, write_snapshot

__all__ = ["cli_env"]  # the fixture, imported for pytest


@pytest.fixture
def endpoint(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeOpenAIServer]:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    with FakeOpenAIServer(dim=32) as server:
        settings = {
            "PAPERBOT_EMBEDDING_PROVIDER": "openai",
            "PAPERBOT_OPENAI_BASE_URL": server.base_url,
            "PAPERBOT_EMBEDDING_MODEL": "embed-test",
            "PAPERBOT_MAX_RETRIES": "0",
        }
        for key, value in settings.items():
            monkeypatch.setenv(key, value)
        cli_env.update(settings)
        yield server


def _ingest(*args: str) -> dict[str, Any]:
    code, out = run_cli("ingest", "--json", *args)
    assert code == 0, out
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.mark.parametrize("workers", [0, 1])
def test_backfill_filters_reports_and_resumes(
    tmp_path: Path, endpoint: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """In process, then with a parse worker process (any file size: the threshold is 0)."""
    from retrieval.sources import arxiv_snapshot

    monkeypatch.setattr(arxiv_snapshot, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setenv("PAPERBOT_PARSE_WORKERS", str(workers))
    started = spy_parse_workers(monkeypatch)
    snap = write_snapshot(
        tmp_path / "snap.json", 40, extra_lines=('{"categories": "cs.CL", broken',)
    )
    first = _ingest("--arxiv-snapshot", str(snap), "--categories", "cs.")
    assert first["papers"] == {
        "new": 30,
        "updated": 0,
        "metadata_updated": 0,
        "unchanged": 0,
        "skipped": 0,
    }
    assert (first["bad_lines"], first["filtered_out"], first["reached_end"]) == (1, 10, True)
    assert first["chunks_added"] == first["chunks_embedded"] and int(first["chunks_added"]) >= 30
    assert first["listings_added"] == 30 and first["cursor_byte"] == snap.stat().st_size
    assert "invalid JSON" in str(first["problems"])
    embedding = first["embedding"]  # the mode's own rate, apart from the rest of the ingest
    assert (embedding["mode"], embedding["model"]) == ("endpoint", "embed-test")
    assert embedding["chunks"] == first["chunks_embedded"] and embedding["chunks_per_second"] > 0

    code, out = run_cli("papers", "show", "2301.00001", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["version"] == 1 and shown["published"] == "2023-01-02"
    assert shown["categories"] == ["cs.LG", "stat.ML"]
    assert shown["listings"] == [{"feed": "arxiv-snapshot", "day": "2023-01-03"}]

    again = _ingest("--arxiv-snapshot", str(snap), "--categories", "cs.")
    assert again["resumed_from_byte"] == snap.stat().st_size and again["papers_read"] == 0

    restarted = _ingest("--arxiv-snapshot", str(snap), "--categories", "cs.", "--restart")
    assert restarted["resumed_from_byte"] == 0
    assert restarted["papers"]["unchanged"] == 30
    assert restarted["chunks_added"] == 0 and restarted["chunks_embedded"] == 0
    assert (
        restarted["embedding"]["chunks"] == 0
        and restarted["embedding"]["chunks_per_second"] is None
    )

    # other filters have a cursor of their own: the math papers are read now
    more = _ingest("--arxiv-snapshot", str(snap), "--categories", "math.ST")
    assert more["papers"]["new"] == 10
    assert bool(started) == bool(workers)  # the workers parsed, or nothing started them


def test_snapshot_options_need_the_snapshot(endpoint: FakeOpenAIServer) -> None:
    code, out = run_cli("ingest", "--since", "2023-01-01", "data/sample/daily_papers_page.txt")
    assert code == 2 and "--arxiv-snapshot" in out
    code, out = run_cli("ingest", "--arxiv-snapshot", "nope.json", "--json")
    assert code == 1 and "no such file" in json.loads(out)["error"]


def _cursor(state: Path) -> dict[str, Any] | None:
    if not state.exists():
        return None
    try:
        with sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=1) as db:
            rows = db.execute(
                "SELECT value FROM meta WHERE key LIKE 'arxiv_snapshot_cursor:%'"
            ).fetchall()
    except sqlite3.OperationalError:
        return None  # not created yet
    return json.loads(rows[0][0]) if rows else None


@pytest.mark.integration
def test_killed_mid_run_the_same_command_continues_from_the_cursor(
    tmp_path: Path, cli_env: dict[str, str], endpoint: FakeOpenAIServer
) -> None:
    """~10-25 s (load-dependent): one real `paperbot ingest` killed with SIGKILL after its first window."""
    endpoint.embed_delay = 0.15  # each 64-paper batch waits for its embeddings
    snap = write_snapshot(tmp_path / "snap.json.gz", 560)
    state = Path(cli_env["PAPERBOT_DATA_DIR"]) / "state.sqlite3"
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "ingest", "--arxiv-snapshot", str(snap), "--json"],
        env={**os.environ, **cli_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while (cursor := _cursor(state)) is None:
            assert process.poll() is None, "the ingest ended before its first window"
            assert time.monotonic() < deadline, "no cursor after 120 s"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    stored = int(cursor["offset"])
    assert stored > 0

    rest = _ingest("--arxiv-snapshot", str(snap))
    assert rest["resumed_from_byte"] >= stored and rest["reached_end"] is True
    assert 0 < int(rest["papers_read"]) < 560
    code, out = run_cli("stats", "--json")
    stats = json.loads(out)
    assert code == 0 and stats["papers"] == 560 and stats["in_step"] is True
    assert stats["vectors"] == stats["chunks"]


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_damaged_gzip_snapshot_is_a_one_line_error_and_keeps_what_was_read(
    tmp_path: Path, cli_env: dict[str, str], endpoint: FakeOpenAIServer, damage: str
) -> None:
    """The real command (a process: its last line of defence prints the error) and --json."""
    whole = write_snapshot(tmp_path / "whole.json.gz", 1200).read_bytes()
    if damage == "truncated":  # a download cut short
        broken = whole[: len(whole) * 3 // 4]
    else:  # a flipped run of bytes in the middle of the deflate stream
        middle = len(whole) // 2
        broken = whole[:middle] + bytes(b ^ 0xFF for b in whole[middle : middle + 64])
        broken += whole[middle + 64 :]
    snap = tmp_path / "snap.json.gz"
    snap.write_bytes(broken)
    code, out = run_cli("ingest", "--arxiv-snapshot", str(snap), "--json")
    assert code == 1, out
    message = json.loads(out)["error"]
    assert "is damaged after byte" in message and "Download it again" in message
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "ingest", "--arxiv-snapshot", str(snap)],
        env={**os.environ, **cli_env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "Aborted" not in done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("Error:")]
    assert "is damaged after byte" in line and "Download it again" in line
    # the windows read before the damage are stored, and the cursor is after them
    code, out = run_cli("stats", "--json")
    assert code == 0 and json.loads(out)["papers"] > 0


def test_options_a_snapshot_does_not_use_are_refused(endpoint: FakeOpenAIServer) -> None:
    for extra in (("--listed", "today"), ("--format", "csv"), ("--max-results", "100")):
        code, out = run_cli("ingest", "--arxiv-snapshot", "snap.json", *extra)
        assert code == 2 and "do not apply to --arxiv-snapshot" in out, out
    code, out = run_cli("ingest", "--arxiv-snapshot", "snap.json", "--categories", " , ", "--json")
    assert code == 1 and "names no category" in json.loads(out)["error"], out


def test_the_eta_counts_days_and_a_log_line_replaces_the_bar_off_a_terminal(
    tmp_path: Path, make_settings: Callable[..., Any]
) -> None:
    import io

    from bot.cli import bulk_ingest
    from retrieval import open_arxiv_snapshot

    assert bulk_ingest.duration(49 * 3600 + 61) == "2d 1:01:01"
    assert bulk_ingest.duration(3599.7) == "0:59:59"
    snap = write_snapshot(tmp_path / "snap.json", 30)
    reader = open_arxiv_snapshot(make_settings(), snap)
    lines = io.StringIO()

    class Bar:
        def update(self, *_: Any, **__: Any) -> None:
            pass

    clock = iter([10.0, 20.0, 40.0, 41.0])
    original = bulk_ingest.time.monotonic
    bulk_ingest.time.monotonic = lambda: next(clock)  # type: ignore[assignment]
    try:
        update = bulk_ingest._progress_line(Bar(), 0, reader, 0.0, log_every=30.0, out=lines)
        papers = iter(reader)
        for _ in range(3):  # at 10 s and 20 s (too soon after the start), 40 s (logged)
            next(papers)
            update("indexing", 1, 1)
        assert sum(1 for _ in papers) == 27  # read to the end: the file is closed
        update("done", 0, 0)  # at 41 s: the last line is always written, where reading ended
    finally:
        bulk_ingest.time.monotonic = original  # type: ignore[assignment]
    logged = lines.getvalue().splitlines()
    assert len(logged) == 2, logged
    assert logged[0].startswith("reading snap.json: 3 papers") and "of the file" in logged[0]
    assert "ETA" in logged[-1] and logged[-1].endswith("100% of the file")  # read to the end


def test_ctrl_c_is_one_line_and_stops_the_parse_workers(
    tmp_path: Path, endpoint: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing

    from bot.cli import bulk_ingest
    from retrieval import Corpus
    from retrieval.sources import arxiv_snapshot

    monkeypatch.setattr(arxiv_snapshot, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(bulk_ingest, "SLICE_PAPERS", 500)
    monkeypatch.setenv("PAPERBOT_PARSE_WORKERS", "1")
    snap = write_snapshot(tmp_path / "snap.json", 1200)
    real_ingest = Corpus.ingest
    workers: list[int] = []

    def interrupted(self: Corpus, records: Any, *args: Any, **kwargs: Any) -> Any:
        if self.state.count_papers() == 0:  # the first slice lands
            return real_ingest(self, records, *args, **kwargs)
        for n, _record in enumerate(records, 1):
            if n == 100:  # Ctrl-C mid-slice, the parse workers reading ahead
                workers.extend(p.pid for p in multiprocessing.active_children())
                raise KeyboardInterrupt
        raise AssertionError("not reached")

    monkeypatch.setattr(Corpus, "ingest", interrupted)
    before = {p.pid for p in multiprocessing.active_children()}
    code, out = run_cli("ingest", "--arxiv-snapshot", str(snap))
    assert code == 130
    (line,) = [x for x in out.splitlines() if x.startswith("Interrupted")]
    assert "500 papers of this run are stored" in line and "100 read after them" in line
    assert "same command continues" in line and "Traceback" not in out
    assert set(workers) - before, "no parse worker was running"
    assert not {p.pid for p in multiprocessing.active_children()} - before
    monkeypatch.setattr(Corpus, "ingest", real_ingest)
    again = _ingest("--arxiv-snapshot", str(snap))  # continues after the stored windows
    assert again["papers"]["new"] == 700


def test_a_ctrl_c_while_closing_stops_at_once_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A second Ctrl-C while the ingest waits for its work in flight (the embedding batch, the
    last window's writes) exits 130 at once, as kill -9 would, instead of a traceback."""
    from bot.cli import bulk_ingest

    closed: list[str] = []
    exits: list[int] = []

    def exit_now(code: int) -> None:
        exits.append(code)
        raise SystemExit(code)

    def waiting_embedder() -> None:
        closed.append("embedder")
        raise KeyboardInterrupt  # pressed while the pool waits for its batch

    monkeypatch.setattr(bulk_ingest, "exit_now", exit_now)
    with pytest.raises(SystemExit):
        bulk_ingest.close_all(
            lambda: closed.append("reader"), waiting_embedder, lambda: closed.append("corpus")
        )
    assert closed == ["reader", "embedder"] and exits == [130]
    said = capfd.readouterr().err  # os.write(2): the fd capsys captures
    assert said.strip().startswith("Stopped at once: what was stored stays")
    assert "same command continues" in said and "Traceback" not in said
    bulk_ingest.close_all(lambda: closed.append("all"))  # without Ctrl-C: every closer runs
    assert closed[-1] == "all" and exits == [130]
