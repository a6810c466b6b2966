"""Acks first: answer workers give way while Slack requests are being acked.

Slack drops a request that is not acked within 3 s; an answer may take a few seconds more
without anyone noticing. In one process the two compete for the same cores and the same
interpreter lock, so under a burst every answer a worker starts (query embedding, search,
the LLM client, Block Kit, Slack calls) makes every ack wait. The gate gives acks priority:
the ack path marks the time it spends on a request (`acking()`, a Bolt middleware in both
HTTP and Socket Mode, and the ASGI layer from the first byte); a worker that is about to
start a job waits until no request has been in flight for `quiet` seconds, but never longer
than `max_wait` seconds, so sustained traffic slows answering down without stopping it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

QUIET_SECONDS = 0.05  # no request in flight for this long = the burst is over
MAX_WAIT_SECONDS = 1.0  # a worker waits at most this long per job


class AckGate:
    def __init__(
        self,
        *,
        quiet: float = QUIET_SECONDS,
        max_wait: float = MAX_WAIT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.quiet = quiet
        self.max_wait = max_wait
        self._clock = clock
        self._cond = threading.Condition()
        self._inflight = 0
        self._last = float("-inf")  # when the last request left the ack path
        self.waited_seconds = 0.0  # total time workers gave way (for stats)

    @contextmanager
    def acking(self) -> Iterator[None]:
        """Wrap the ack path of one request."""
        with self._cond:
            self._inflight += 1
        try:
            yield
        finally:
            with self._cond:
                self._inflight -= 1
                self._last = self._clock()
                if self._inflight == 0:
                    self._cond.notify_all()

    def middleware(self, next: Callable[[], Any]) -> Any:  # `next`: Bolt's kwarg name
        """A Bolt global middleware: the listener's ack path runs inside the gate."""
        with self.acking():
            return next()

    @property
    def inflight(self) -> int:
        with self._cond:
            return self._inflight

    def wait_quiet(self, stop: threading.Event | None = None) -> bool:
        """Block until no request was in flight for `quiet` seconds (True), or `max_wait`
        passed or `stop` was set (False)."""
        start = self._clock()
        deadline = start + self.max_wait
        with self._cond:
            try:
                while stop is None or not stop.is_set():
                    now = self._clock()
                    idle_for = now - self._last
                    if self._inflight == 0 and idle_for >= self.quiet:
                        return True
                    if now >= deadline:
                        return False
                    step = self.quiet - idle_for if self._inflight == 0 else self.quiet
                    self._cond.wait(max(0.002, min(step, deadline - now)))
                return False
            finally:
                self.waited_seconds += self._clock() - start
