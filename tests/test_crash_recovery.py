"""`kill -9` of `paperbot ingest` mid-run, then a re-run: the indexes end consistent."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retrieval import Corpus, Paper, RetrievalSettings
from retrieval.chunking import chunk_paper
from retrieval.sources import load_path
from retrieval.tokens import get_encoding
from tests.support.corpora import aclsum_records, write_jsonl

pytestmark = pytest.mark.integration


def _papers_committed(state_file: Path) -> int:
    if not state_file.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{state_file}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT COUNT(*) FROM papers").fetchone()[0])
    except sqlite3.Error:
        return 0


def _ingest_cmd(feed: Path) -> list[str]:
    return [sys.executable, "-m", "bot.cli", "-q", "ingest", str(feed)]


def _kill_when(proc: subprocess.Popen[bytes], state_file: Path, papers: int) -> int:
    """SIGKILL the ingest once at least `papers` are committed (or it has run 60 s)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if _papers_committed(state_file) >= papers:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return _papers_committed(state_file)


def test_killed_ingest_reruns_to_a_consistent_index(tmp_path: Path, tiktoken_dir: Path) -> None:
    records = aclsum_records()[:160]
    feed = write_jsonl(records, tmp_path / "acl.jsonl")
    settings = RetrievalSettings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        tiktoken_cache_dir=tiktoken_dir,
    )
    env = {
        **os.environ,
        "PAPERBOT_DATA_DIR": str(settings.data_dir),
        "PAPERBOT_TIKTOKEN_CACHE_DIR": str(tiktoken_dir),
    }
    seen = []
    for papers in (1, 65):  # inside the first batch, then inside the second
        proc = subprocess.Popen(
            _ingest_cmd(feed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        seen.append(_kill_when(proc, settings.state_path, papers))
    assert seen[-1] < len(records), "the ingest finished before it could be killed"

    rerun = subprocess.run(_ingest_cmd(feed), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr

    corpus = Corpus(settings)
    state_ids = corpus.state.chunk_ids()
    assert corpus.state.count_papers() == len(records)
    assert corpus.store.ids() == state_ids, "vector index and state disagree"
    assert corpus.store.count() == len(state_ids), "duplicate vectors"
    assert corpus.lexical_index().generation == corpus.state.generation
    assert len(corpus.lexical_index()) == len(state_ids)
    encoding = get_encoding(settings.tiktoken_encoding, tiktoken_dir)
    expected = {
        c.chunk_id
        for p in load_path(feed)
        if isinstance(p, Paper)
        for c in chunk_paper(p, encoding, settings.chunk_tokens, settings.chunk_overlap)
    }
    assert state_ids == expected, "orphan or missing chunks"
