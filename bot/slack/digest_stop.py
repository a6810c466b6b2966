"""Stopping a digest poster: `serve` stops (SIGTERM on a deploy) while its scheduler posts a
digest. The poster sends each message inside `DigestStop.sending`, which refuses once a stop
was requested: it then gives its slot back ("waiting", its progress kept), so the next start,
or another replica's next tick, goes on at once in the same thread instead of waiting for the
claim's lease. A poster still busy when the stopping process's grace ends (a digest being
built) has its slot given back by that process (`give_back`), under the same lock, so no
message is in flight then. Every give-back only changes a slot the poster's own claim still
holds (`BotStore.release_digest(owner=…)`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from bot.slack.store import BotStore

log = logging.getLogger(__name__)

STOPPED = "stopped before it was finished; it goes on at the next tick or start"


class DigestStopped(Exception):
    """A stop was requested: the poster sends nothing more and gives its slot back."""


class DigestStop:
    """Between a digest poster (the scheduler's tick) and the process stopping it."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._sending = threading.Lock()
        self._slot: tuple[BotStore, str, str, str] | None = None  # store, channel, day, owner

    def request(self) -> None:
        self.requested.set()

    def reset(self) -> None:
        """A scheduler started again after a stop posts again."""
        self.requested.clear()

    def check(self) -> None:
        if self.requested.is_set():
            raise DigestStopped

    @contextmanager
    def sending(self) -> Iterator[None]:
        """Around one message and the record of it: refused once a stop was requested."""
        with self._sending:
            self.check()
            yield

    @contextmanager
    def posting(self, store: BotStore, channel: str, day: str, owner: str) -> Iterator[None]:
        """While a poster claims and posts a slot (`give_back` knows which)."""
        self._slot = (store, channel, day, owner)
        try:
            yield
        finally:
            with self._sending:  # its last record is written: nothing left to give back
                self._slot = None

    def give_back(self, timeout: float = 2.0) -> str:
        """After `request`: give the slot being posted back, once no message is in flight.
        "given back", "idle" (no digest being posted) or "sending" (a message still in flight
        after ``timeout``: its claim waits for its lease)."""
        if not self._sending.acquire(timeout=timeout):
            return "sending"
        try:
            if self._slot is None:
                return "idle"
            store, channel, day, owner = self._slot
            if store.release_digest(channel, day, STOPPED, owner=owner):
                log.info("the %s digest for %s was given back unfinished (stopping)", day, channel)
            return "given back"
        finally:
            self._sending.release()
