"""What every worker process paperbot spawns does first (`start_worker`, its pool's initializer).

A pool's worker waits on its task queue; if the process that started it is killed (kill -9,
the OOM killer), nothing ever closes that queue, and the worker would wait forever, holding
its memory (a model copy is ~100 MB). So each worker watches its parent (the sentinel
multiprocessing gives a child, valid from its start: a parent that died while the worker was
still importing counts too) and exits once the parent is gone. Ctrl-C reaches the whole
process group: the workers ignore it, so the parent alone handles it (one line, its pool shut
down) instead of every worker printing a traceback. They ignore it from their first instruction
when the parent hands its pool work inside `starting_workers`: a pool spawns its processes on
demand, in the thread that submits, and an ignored signal (unlike a handler) survives exec, so a
Ctrl-C during a worker's ~1 s of imports cannot interrupt them.

A worker that cannot load what it needs (no tiktoken file offline, a missing model) keeps the
error and raises it with its first task (`check_started`): an initializer that raised would only
break the pool, which the parent can report as nothing but a worker that died.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from retrieval.errors import PaperbotError

PARENT_POLL_SECONDS = 1.0

_failed: PaperbotError | None = None  # why this worker could not start


def start_worker(load: Callable[[], None], what: str, error: type[PaperbotError]) -> None:
    """A pool's initializer: `prepare_worker`, then ``load``. Its failure is kept for
    `check_started`: paperbot's own errors as they are (one line the parent shows), anything
    else as ``error("<what>: <type>: <message>")``."""
    global _failed
    prepare_worker()
    try:
        load()
    except Exception as exc:
        _failed = (
            exc if isinstance(exc, PaperbotError) else error(f"{what}: {type(exc).__name__}: {exc}")
        )


def check_started() -> None:
    """In each task: raise what kept this worker from starting, if anything did."""
    if _failed is not None:
        raise _failed


@contextmanager
def starting_workers(pool: Any, workers: int) -> Iterator[None]:
    """Around a call that hands ``pool`` (a `ProcessPoolExecutor`) work: while it has fewer than
    ``workers`` processes the call may start one, so this process ignores Ctrl-C for its
    duration and the new process starts ignoring it too. A Ctrl-C pressed in those few
    milliseconds is lost (pressing again works). Only the main thread can change a signal's
    handling: elsewhere this changes nothing, and a worker ignores Ctrl-C once
    `prepare_worker` runs."""
    processes = getattr(pool, "_processes", None)  # the executor's own count of its processes
    if (processes is not None and len(processes) >= workers) or (
        threading.current_thread() is not threading.main_thread()
    ):
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # a handler installed outside Python: it could not be put back
        yield
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def prepare_worker(poll_seconds: float = PARENT_POLL_SECONDS) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:  # a multiprocessing child: its parent's sentinel, no race, no poll

        def watch() -> None:
            multiprocessing.connection.wait([parent.sentinel])
            os._exit(0)

    else:  # started some other way: the parent it has now
        first = os.getppid()

        def watch() -> None:
            while os.getppid() == first:
                time.sleep(poll_seconds)
            os._exit(0)

    threading.Thread(target=watch, name="paperbot-parent-watch", daemon=True).start()
