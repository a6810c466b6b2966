"""What every worker process paperbot spawns does first (`prepare_worker`).

A pool's worker waits on its task queue; if the process that started it is killed (kill -9,
the OOM killer), nothing ever closes that queue, and the worker would wait forever, holding
its memory (a model copy is ~100 MB). So each worker watches its parent and exits once the
parent is gone. Ctrl-C reaches the whole process group: the workers ignore it, so the parent
alone handles it (one line, its pool shut down) instead of every worker printing a traceback.
"""

from __future__ import annotations

import os
import signal
import threading
import time

PARENT_POLL_SECONDS = 1.0


def prepare_worker(poll_seconds: float = PARENT_POLL_SECONDS) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:  # re-parented: the parent is gone
                os._exit(0)

    threading.Thread(target=watch, name="paperbot-parent-watch", daemon=True).start()
