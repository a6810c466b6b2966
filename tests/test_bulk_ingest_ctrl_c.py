"""Ctrl-C in a real `paperbot ingest --arxiv-snapshot` process: the first one lets the running
vector write finish and says so in one line; a second one while it waits stops the process at
once (exit 130, no traceback), and what was stored stays for the same command to continue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from retrieval import Corpus, RetrievalSettings
from tests.support.fakes import FakeEmbedder
from tests.support.snapshots import write_snapshot

ROOT = Path(__file__).resolve().parents[1]

# The backfill with a fake embedder and a vector write that takes a minute: the process is
# certainly waiting for it when the Ctrl-Cs come.
_CHILD = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
sys.path.insert(0, {root!r})
import retrieval
from retrieval.store import VectorStore
from tests.support.fakes import FakeEmbedder

retrieval.bulk_embedder = lambda settings: FakeEmbedder()
real_upsert = VectorStore.upsert

def slow_upsert(self, *args, **kwargs):
    print("writing", flush=True)
    time.sleep({seconds})
    return real_upsert(self, *args, **kwargs)

if {slow}:
    VectorStore.upsert = slow_upsert
from bot.cli.main import app
app(["ingest", "--arxiv-snapshot", {snapshot!r}])
"""


def _start(tmp_path: Path, tiktoken_dir: Path, snapshot: Path, *, slow: bool) -> Any:
    script = tmp_path / ("slow.py" if slow else "plain.py")
    script.write_text(_CHILD.format(root=str(ROOT), seconds=60, slow=slow, snapshot=str(snapshot)))
    env = dict(
        os.environ,
        PAPERBOT_DATA_DIR=str(tmp_path / "data"),
        PAPERBOT_TIKTOKEN_CACHE_DIR=str(tiktoken_dir),
        PAPERBOT_PARSE_WORKERS="0",
    )
    return subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.integration
def test_a_second_ctrl_c_while_a_vector_write_runs_stops_at_once(
    tmp_path: Path, tiktoken_dir: Path, make_settings: Callable[..., RetrievalSettings]
) -> None:
    snapshot = write_snapshot(tmp_path / "snap.json", 600)
    ingest = _start(tmp_path, tiktoken_dir, snapshot, slow=True)
    try:
        assert ingest.stdout is not None
        assert ingest.stdout.readline().strip() == "writing"  # a vector write is running
        time.sleep(0.5)  # the ingest goes on until it must wait for that write
        ingest.send_signal(signal.SIGINT)  # waits for the running write (a minute here)
        time.sleep(1.0)
        ingest.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        _, err = ingest.communicate(timeout=30)
        assert time.monotonic() - stopped < 10, "the second Ctrl-C did not stop it at once"
    finally:
        ingest.kill()
        ingest.wait()
    assert ingest.returncode == 130, err
    lines = [x for x in err.replace("\r", "\n").splitlines() if x.startswith(("Ctrl-C", "Stop"))]
    assert lines == [
        "Ctrl-C: stopping after the work in flight (Ctrl-C again stops at once).",
        "Stopped at once: what was stored stays; the same command continues after the last "
        "window it stored.",
    ], err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    again = _start(tmp_path, tiktoken_dir, snapshot, slow=False)  # the same command continues
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    corpus = Corpus(make_settings(), embedder=FakeEmbedder())  # the same data dir
    try:  # every paper stored once, and the vectors the stopped write lacked are back
        assert corpus.state.count_papers() == 600
        assert corpus.store.count() == corpus.state.count_chunks() > 600
    finally:
        corpus.close()


def test_the_first_ctrl_c_raises_and_a_second_stops_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bot.cli import bulk_ingest

    exits: list[int] = []

    def exit_now(code: int) -> None:
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(bulk_ingest, "exit_now", exit_now)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        with bulk_ingest.CtrlC() as ctrl_c:
            with pytest.raises(KeyboardInterrupt):
                ctrl_c(signal.SIGINT, None)
            assert not exits
            with pytest.raises(SystemExit):
                ctrl_c(signal.SIGINT, None)
        assert exits == [130]
        assert isinstance(signal.getsignal(signal.SIGINT), bulk_ingest.CtrlC)  # it is ending
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with bulk_ingest.CtrlC():  # no Ctrl-C: the handler is put back on the way out
            assert isinstance(signal.getsignal(signal.SIGINT), bulk_ingest.CtrlC)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # started ignoring it (`nohup … &`): kept
        with bulk_ingest.CtrlC():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, outer)
