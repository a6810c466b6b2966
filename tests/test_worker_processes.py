"""Spawned workers and Ctrl-C (`retrieval.worker_processes.starting_workers`): a worker starts
ignoring SIGINT from its first instruction, so a Ctrl-C during its ~1 s of imports cannot print
its traceback or break the pool; the parent's own handling is back as soon as the call returns.
Each test spawns real worker processes."""

from __future__ import annotations

import multiprocessing
import signal
import subprocess
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from retrieval.worker_processes import starting_workers
from tests.support import worker_probe

ROOT = Path(__file__).resolve().parents[1]


def _pool() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=worker_probe.record_sigint,
    )


def test_a_worker_started_inside_the_guard_ignores_ctrl_c_from_its_start() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("the test runner does not run tests in the main thread")
    # as in a terminal (a runner started in the background of a script inherits it ignored)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    handler = signal.default_int_handler
    guarded, plain = _pool(), _pool()
    try:
        with starting_workers(guarded, 1):
            future = guarded.submit(worker_probe.started_ignoring_sigint)
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # while it spawns
        assert signal.getsignal(signal.SIGINT) is handler  # put back at once
        assert future.result(timeout=60) is True
        # the same pool without the guard: the worker would start with Python's handler
        assert plain.submit(worker_probe.started_ignoring_sigint).result(timeout=60) is False
        with starting_workers(guarded, 1):  # its one process is up: nothing is changed
            assert signal.getsignal(signal.SIGINT) is handler
    finally:
        guarded.shutdown()
        plain.shutdown()
        signal.signal(signal.SIGINT, outer)


_CHILD = """
import multiprocessing, os, signal, sys, threading, time
sys.path.insert(0, {root!r})
from retrieval.sources.snapshot_records import SnapshotFilter, SnapshotParser
from retrieval.sources.snapshot_workers import Line, ParseWorkers

def interrupt_new_workers(hit):
    # Ctrl-C reaches the whole process group: here, each worker as soon as it exists
    deadline = time.monotonic() + 30
    while not hit and time.monotonic() < deadline:
        for child in multiprocessing.active_children():
            os.kill(child.pid, signal.SIGINT)
            hit.append(child.pid)
        time.sleep(0.001)

if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    hit = []
    threading.Thread(target=interrupt_new_workers, args=(hit,), daemon=True).start()
    workers = ParseWorkers(SnapshotParser("x", SnapshotFilter(), None, 10_000), 1, None)
    parsed = list(workers.parse(iter([Line(b"{{}}\\n", "byte 0", 3)])))
    workers.close()
    print(len(hit), len(parsed), flush=True)
"""


@pytest.mark.integration
def test_ctrl_c_while_a_parse_worker_starts_up_leaves_no_traceback(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(root=str(ROOT)))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    hit, parsed = (int(n) for n in done.stdout.split())
    assert hit >= 1 and parsed == 1  # a worker was interrupted while starting, and parsed
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr
