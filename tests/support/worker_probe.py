"""What a test's spawned worker runs (the child imports it by name): how it found Ctrl-C's
handling before anything of its own ran."""

from __future__ import annotations

import signal

_at_start: object = None


def record_sigint() -> None:
    """A pool initializer: the SIGINT handling the process started with."""
    global _at_start
    _at_start = signal.getsignal(signal.SIGINT)


def started_ignoring_sigint() -> bool:
    return _at_start is signal.SIG_IGN
