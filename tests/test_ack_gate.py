"""Acks first (bot/slack/ack_gate.py): answer workers give way while Slack requests are acked.

Unit tests drive `AckGate` with threads; the queue test checks a job submitted while a
request is in flight is not started before the request left the ack path; the app test checks
the real Bolt app over HTTP holds the answer queue's gate during its ack path.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from bot.slack.ack_gate import AckGate
from bot.slack.store import BotStore
from tests.support.slack_fixtures import SECRET, SlackHarness, corpus, harness_factory, services
from tests.support.slack_requests import post, slash_command
from tests.test_answer_queue import Recorder, make_queue

__all__ = ["corpus", "harness_factory", "services"]


def hold(gate: AckGate) -> tuple[threading.Event, threading.Thread]:
    """A request in the ack path until the returned event is set."""
    release, entered = threading.Event(), threading.Event()

    def request() -> None:
        with gate.acking():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=request)
    thread.start()
    assert entered.wait(5)
    return release, thread


def test_an_idle_gate_lets_a_worker_through_at_once() -> None:
    gate = AckGate(quiet=0.01, max_wait=5)
    start = time.monotonic()
    assert gate.wait_quiet() is True
    assert time.monotonic() - start < 1


def test_a_worker_waits_until_the_ack_path_is_quiet() -> None:
    gate = AckGate(quiet=0.05, max_wait=10)
    release, request = hold(gate)
    passed: list[float] = []
    worker = threading.Thread(target=lambda: passed.append(gate.wait_quiet() and time.monotonic()))
    worker.start()
    worker.join(0.3)
    assert worker.is_alive() and gate.inflight == 1  # still waiting: an ack is in flight
    released_at = time.monotonic()
    release.set()
    request.join(5)
    worker.join(5)
    assert passed and passed[0] >= released_at + 0.05  # after the request left + the quiet time


def test_sustained_traffic_delays_a_worker_at_most_max_wait() -> None:
    gate = AckGate(quiet=0.05, max_wait=0.2)
    release, request = hold(gate)
    try:
        start = time.monotonic()
        assert gate.wait_quiet() is False
        assert 0.2 <= time.monotonic() - start < 2
    finally:
        release.set()
        request.join(5)


def test_stopping_ends_the_wait() -> None:
    gate = AckGate(quiet=0.05, max_wait=30)
    release, request = hold(gate)
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    try:
        start = time.monotonic()
        assert gate.wait_quiet(stop) is False
        assert time.monotonic() - start < 5
    finally:
        release.set()
        request.join(5)


def test_the_queue_starts_no_job_while_a_request_is_acked(tmp_path: Any) -> None:
    store = BotStore(tmp_path / "bot.sqlite3").open()
    rec = Recorder()
    queue = make_queue(store, rec, gate=AckGate(quiet=0.05, max_wait=10))
    release, request = hold(queue.gate)
    assert queue.submit("msg:C1:1", kind="mention", channel="C1", question="what is new?")
    time.sleep(0.3)
    assert not rec.started.is_set()  # the job is written, its answer waits for the ack path
    release.set()
    request.join(5)
    assert queue.wait_idle(10)
    assert [q for _, q in rec.answered] == ["what is new?"]
    assert queue.gate.waited_seconds > 0.2
    store.close()


def test_the_app_holds_the_queue_gate_while_it_acks(harness_factory: Any) -> None:
    h: SlackHarness = harness_factory()
    gate = h.services.answer_queue.gate
    seen: list[int] = []

    @h.app.command("/probe")
    def probe(ack: Any) -> None:
        seen.append(gate.inflight)
        ack()

    response = post(
        h.url,
        slash_command("x", command="/probe"),
        secret=SECRET,
    )
    assert response.status_code == 200
    assert seen and seen[0] >= 1  # the listener ran inside the gate
    assert gate.inflight == 0  # and left it
