"""The durable answer queue (bot/slack/answer_queue.py): an acked question is never lost.

Unit tests drive `AnswerQueue` with recording handlers over a real bot store; integration
tests drive the real Bolt app over HTTP against the fake Slack Web API (a "crash" is a queue
whose workers never ran, or a job claimed by an owner that then vanished); the operator
tests start a real `paperbot serve`, SIGTERM or kill -9 it in the middle of a burst of
questions, start it again and count what was answered.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bot.slack import blocks
from bot.slack.answer_queue import RESTARTED, AnswerQueue, SlackAnswers, give_up_text
from bot.slack.store import BotStore
from tests.support.postgres import backend_url, postgres_server
from tests.support.slack_fixtures import SECRET, SlackHarness, corpus, harness_factory, services
from tests.support.slack_requests import (
    CHANNEL_ID,
    app_mention_event,
    event_callback,
    new_ts,
    post,
    retry_headers,
    slash_command,
)

__all__ = ["backend_url", "corpus", "harness_factory", "postgres_server", "services"]

Job = dict[str, Any]


class Recorder:
    """Handlers that record what they were asked to do; ``fail`` jobs raise, ``block`` waits."""

    def __init__(self, *, fail: bool = False, block: threading.Event | None = None) -> None:
        self.fail = fail
        self.block = block
        self.started = threading.Event()
        self.answered: list[tuple[int, str]] = []  # (job id, question)
        self.given_up: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    def answer(self, job: Job, on_placeholder: Any) -> None:
        self.started.set()
        if self.block is not None:
            self.block.wait(10)
        if self.fail:
            raise RuntimeError("boom")
        time.sleep(0.01)
        with self._lock:
            self.answered.append((job["id"], job["question"]))

    def give_up(self, job: Job, message: str) -> None:
        with self._lock:
            self.given_up.append((job["id"], message))


def make_queue(store: BotStore, rec: Recorder, **kwargs: Any) -> AnswerQueue:
    values: dict[str, Any] = {"workers": 2, "poll_seconds": 0.05, "retry_seconds": 0.0}
    values.update(kwargs)
    return AnswerQueue(store, rec.answer, rec.give_up, **values)


def add(store: BotStore, n: int, prefix: str = "q") -> None:
    for i in range(n):
        job = store.add_job(
            f"msg:C1:{prefix}{i}",
            time.time(),
            kind="mention",
            channel="C1",
            question=f"{prefix}{i}",
        )
        assert job is not None


@pytest.fixture
def store(tmp_path: Path, backend_url: str | None) -> Any:
    """The store tests and the queue tests run on SQLite and on PostgreSQL."""
    with BotStore(tmp_path / "bot.sqlite3", database_url=backend_url) as opened:
        yield opened


# ---------------------------------------------------------------- the store
def test_one_job_per_slack_message_and_a_retry_is_a_no_op(store: BotStore) -> None:
    fields = {"kind": "mention", "channel": "C1", "message_ts": "1.1", "question": "What?"}
    first = store.add_job("msg:C1:1.1", 100.0, **fields)
    assert first is not None
    assert store.add_job("msg:C1:1.1", 101.0, **fields) is None, "Slack's retry"
    assert not store.first_time("msg:C1:1.1"), "the seen-key was claimed with the job"
    # a message seen before the queue existed (seen_keys imported from an older release)
    assert store.first_time("msg:C1:0.9")
    assert store.add_job("msg:C1:0.9", 102.0, **fields) is None
    [job] = store.jobs()
    assert (job["state"], job["attempts"], job["question"]) == ("queued", 0, "What?")
    assert store.job_stats(110.0) == {"queued": 1, "running": 0, "oldest_age_seconds": 10.0}


def test_claims_carry_a_lease_and_an_expired_one_is_taken_over(store: BotStore) -> None:
    add(store, 1)
    job = store.claim_job("dead", 100.0, 30.0)
    assert job is not None and (job["state"], job["attempts"], job["owner"]) == (
        "running",
        1,
        "dead",
    )
    assert store.claim_job("alive", 120.0, 30.0) is None, "the lease is live"
    taken = store.claim_job("alive", 131.0, 30.0)
    assert taken is not None and taken["attempts"] == 2 and taken["owner"] == "alive"
    assert not store.finish_job(job["id"], "dead", 132.0), "the dead owner lost it"
    assert store.finish_job(job["id"], "alive", 132.0)
    assert store.job(job["id"])["state"] == "done"  # type: ignore[index]
    assert store.prune_jobs(132.0) == 0 and store.prune_jobs(133.0) == 1
    assert store.jobs() == [] and not store.first_time("msg:C1:q0"), "still seen: no re-answer"


# ---------------------------------------------------------------- the queue
def test_a_failing_job_is_retried_then_gives_up_with_a_message(store: BotStore) -> None:
    add(store, 1)
    rec = Recorder(fail=True)
    queue = make_queue(store, rec, max_attempts=3).start()
    try:
        assert queue.wait_idle(10)
    finally:
        queue.stop(1)
    [job] = store.jobs()
    assert (job["state"], job["attempts"], job["error"]) == ("failed", 3, "boom")
    assert rec.given_up == [
        (job["id"], "Sorry, I could not answer this after 3 tries: boom. Please ask again.")
    ]


def test_a_job_whose_process_died_each_time_gives_up_without_a_fourth_try(
    store: BotStore,
) -> None:
    add(store, 1)
    for attempt in range(3):  # three processes claimed it and died
        assert store.claim_job(f"dead{attempt}", 100.0 + attempt * 10, 5.0) is not None
    rec = Recorder()
    queue = make_queue(store, rec, max_attempts=3).start()
    try:
        assert queue.wait_idle(10)
    finally:
        queue.stop(1)
    assert rec.answered == []
    [job] = store.jobs()
    assert job["state"] == "failed"
    assert rec.given_up == [(job["id"], give_up_text(3, RESTARTED))]
    assert (
        "after 3 tries: the bot restarted while answering. Please ask again." in rec.given_up[0][1]
    )


def test_two_queues_on_one_data_dir_answer_each_job_once(
    tmp_path: Path, backend_url: str | None
) -> None:
    """Two processes' queues (one connection each) on one file or one PostgreSQL database."""
    path = tmp_path / "bot.sqlite3"
    with (
        BotStore(path, database_url=backend_url) as one,
        BotStore(path, database_url=backend_url) as two,
    ):
        add(one, 40)
        recs = [Recorder(), Recorder()]
        queues = [make_queue(one, recs[0]).start(), make_queue(two, recs[1]).start()]
        try:
            assert queues[0].wait_idle(30)
        finally:
            for queue in queues:
                queue.stop(1)
        answered = Counter(q for rec in recs for _, q in rec.answered)
        assert answered == Counter(f"q{i}" for i in range(40)), "each job once"
        assert recs[0].answered and recs[1].answered, "both processes took jobs"
        assert {j["state"] for j in one.jobs()} == {"done"}


def test_stop_hands_back_what_did_not_finish_within_the_grace(store: BotStore) -> None:
    add(store, 1)
    release = threading.Event()
    rec = Recorder(block=release)
    queue = make_queue(store, rec).start()
    assert rec.started.wait(5)
    started = time.monotonic()
    assert queue.stop(grace=0.3) == 1
    assert time.monotonic() - started < 2
    [job] = store.jobs()
    assert (job["state"], job["attempts"], job["owner"]) == ("queued", 0, None), "uncounted"
    release.set()
    # the next start answers it
    rec2 = Recorder()
    queue2 = make_queue(store, rec2).start()
    try:
        assert queue2.wait_idle(10)
    finally:
        queue2.stop(1)
    assert rec2.answered == [(job["id"], "q0")]


def test_stop_lets_running_answers_finish_within_the_grace(store: BotStore) -> None:
    add(store, 1)
    release = threading.Event()
    rec = Recorder(block=release)
    queue = make_queue(store, rec).start()
    assert rec.started.wait(5)
    threading.Timer(0.2, release.set).start()
    assert queue.stop(grace=5) == 0
    assert [j["state"] for j in store.jobs()] == ["done"] and len(rec.answered) == 1


def test_submit_after_stop_is_kept_for_the_next_start(store: BotStore) -> None:
    rec = Recorder()
    queue = make_queue(store, rec).start()
    queue.stop(1)
    assert queue.submit("msg:C1:9.9", kind="mention", channel="C1", question="late")
    time.sleep(0.2)
    assert rec.answered == [] and store.job_stats(time.time())["queued"] == 1


# ---------------------------------------------------------------- with Slack
def _stopped(h: SlackHarness) -> AnswerQueue:
    """The app's queue with its workers stopped: as if the process died right after the ack."""
    queue: AnswerQueue = h.services.answer_queue
    queue.stop(0)
    return queue


def _restart(h: SlackHarness, **kwargs: Any) -> AnswerQueue:
    """What the next `serve` does: a new queue (new owner) on the same store, started."""
    slack = SlackAnswers(h.services, h.app.client, h.settings)
    values: dict[str, Any] = {"workers": 2, "poll_seconds": 0.05}
    values.update(kwargs)
    return AnswerQueue(h.services.store, slack.answer, slack.give_up, **values).start()


def _jobs(h: SlackHarness, ts: str) -> list[Job]:
    """This test's jobs (the store's file is shared by the module's tests, like the corpus)."""
    return [j for j in h.services.store.jobs() if j["message_ts"] == ts]


def _bot_replies(h: SlackHarness, ts: str) -> list[Any]:
    return h.api.bot_messages(CHANNEL_ID, ts)


@pytest.mark.integration
def test_a_question_acked_before_a_crash_is_answered_once_after_the_restart(
    harness_factory: Any,
) -> None:
    h = harness_factory()
    _stopped(h)
    ts = new_ts()
    body = event_callback(app_mention_event("What is the BOSS technique?", ts=ts))
    assert post(h.url, body, secret=SECRET).status_code == 200
    retry = post(h.url, body, secret=SECRET, extra_headers=retry_headers(1))
    assert retry.status_code == 200
    [job] = _jobs(h, ts)
    assert (job["state"], job["message_ts"], job["kind"]) == ("queued", ts, "mention")
    assert not h.api.calls_to("chat.postMessage"), "nothing was answered before the crash"
    queue = _restart(h)
    try:
        assert queue.wait_idle(60)
    finally:
        queue.stop(1)
    replies = _bot_replies(h, ts)
    assert len(replies) == 1 and "BOSS" in replies[0].text and not replies[0].text.startswith("🔎")
    assert len(h.api.calls_to("chat.postMessage")) == 1
    assert [j["state"] for j in _jobs(h, ts)] == ["done"]


@pytest.mark.integration
@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "died-before-recording"])
def test_a_dead_workers_job_is_resumed_in_its_placeholder(
    harness_factory: Any, recorded: bool
) -> None:
    h = harness_factory()
    _stopped(h)
    ts = new_ts()
    body = event_callback(app_mention_event("What is rectified flow?", ts=ts))
    assert post(h.url, body, secret=SECRET).status_code == 200
    # a worker claimed it, posted the placeholder, then its process died (lease 0.5 s) —
    # before or after it recorded the placeholder's ts
    job = h.services.store.claim_job("dead-host:1", time.time(), 0.5)
    assert job is not None
    text, blks = blocks.placeholder("What is rectified flow?")
    placeholder = h.app.client.chat_postMessage(
        channel=CHANNEL_ID, thread_ts=ts, text=text, blocks=blks
    )["ts"]
    if recorded:
        h.services.store.set_job_placeholder(job["id"], "dead-host:1", placeholder, time.time())
    queue = _restart(h)
    try:
        assert queue.wait_idle(60)
    finally:
        queue.stop(1)
    replies = _bot_replies(h, ts)
    assert [r.ts for r in replies] == [placeholder], "updated in place, no second message"
    assert "Flow Straight and Fast" in replies[0].text
    assert len(h.api.calls_to("chat.postMessage")) == 1
    [done] = _jobs(h, ts)
    assert (done["state"], done["attempts"]) == ("done", 2)


@pytest.mark.integration
def test_giving_up_replaces_the_placeholder_with_the_reason(harness_factory: Any) -> None:
    h = harness_factory()
    _stopped(h)
    ts = new_ts()
    assert post(h.url, event_callback(app_mention_event("What is GVGEN?", ts=ts)), secret=SECRET)
    placeholder = h.app.client.chat_postMessage(
        channel=CHANNEL_ID, thread_ts=ts, text="🔎 Searching the papers for: GVGEN"
    )["ts"]
    for attempt in range(3):
        job = h.services.store.claim_job(f"dead:{attempt}", time.time() - 100 + attempt, 1.0)
        assert job is not None
        h.services.store.set_job_placeholder(job["id"], f"dead:{attempt}", placeholder, 0.0)
    queue = _restart(h, max_attempts=3)
    try:
        assert queue.wait_idle(30)
    finally:
        queue.stop(1)
    [reply] = _bot_replies(h, ts)
    assert reply.ts == placeholder
    assert "could not answer this after 3 tries" in reply.text and "Please ask again" in reply.text
    assert [j["state"] for j in _jobs(h, ts)] == ["failed"]


@pytest.mark.integration
def test_papers_ask_is_queued_before_the_ack_and_answered_via_response_url(
    harness_factory: Any,
) -> None:
    h = harness_factory()
    _stopped(h)
    response_url = h.api.response_url("ask")
    ack = post(
        h.url,
        slash_command("ask What is rectified flow?", response_url=response_url),
        secret=SECRET,
    )
    assert ack.status_code == 200 and "Working on" in ack.text
    [job] = [j for j in h.services.store.jobs() if j["kind"] == "command"]
    assert (job["kind"], job["response_url"], job["state"]) == ("command", response_url, "queued")
    queue = _restart(h)
    try:
        assert queue.wait_idle(60)
    finally:
        queue.stop(1)
    [reply] = h.api.calls_to("response_url")
    assert "Flow Straight and Fast" in str(reply.params)
    assert reply.params.get("replace_original") is True


# ---------------------------------------------------------------- the operator's test
QUESTIONS = [
    f"What does the literature say about {topic}?"
    for topic in (
        "rectified flow",
        "Gaussian splatting",
        "the BOSS technique",
        "GVGEN",
        "video benchmarks",
        "reward models",
        "speculative decoding",
        "diffusion transformers",
        "retrieval augmentation",
        "long context",
        "mixture of experts",
        "3D generation",
        "instruction tuning",
        "reasoning chains",
        "image editing",
        "audio generation",
        "robot policies",
        "quantization",
        "agents using tools",
        "multilingual evaluation",
    )
]


class SlowLLM:
    """The fake LLM's reply: 0.3 s per answer; while ``hold`` is set, answers hang (up to
    30 s) so the test can stop `serve` with answers certainly in flight."""

    def __init__(self) -> None:
        self.hold = threading.Event()
        self.release = threading.Event()
        self.held = 0
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> str:
        if self.hold.is_set():
            with self._lock:
                self.held += 1
            self.release.wait(30)
        else:
            time.sleep(0.3)
        return "From the indexed papers: this is covered by [1]."


def _serve(env: dict[str, str], port: int, log_path: Path) -> Any:
    import subprocess
    import sys

    with log_path.open("a") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
        )


def _wait_healthy(port: int, process: Any, log_path: Path) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited: {log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"serve never became healthy: {log_path.read_text()[-3000:]}")


@pytest.mark.integration
@pytest.mark.parametrize("how", ["sigterm", "kill-9"])
def test_serve_stopped_mid_burst_answers_every_acked_question_once_after_a_restart(
    how: str,
    tmp_path: Path,
    tiktoken_dir: Path,
    local_embedder: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os
    import signal

    from tests.support.chroma_server import free_port
    from tests.support.openai_server import FakeOpenAIServer
    from tests.support.slack_api import FakeSlackAPI
    from tests.support.slack_fixtures import ingested_corpus

    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    data_dir = tmp_path / "data"
    ingested_corpus(data_dir, tiktoken_dir, local_embedder).close()
    port, log_path = free_port(), tmp_path / "serve.log"
    slow = SlowLLM()
    with FakeSlackAPI() as api, FakeOpenAIServer(default_reply=slow) as llm:
        env = {
            **os.environ,
            "PAPERBOT_DATA_DIR": str(data_dir),
            "PAPERBOT_TIKTOKEN_CACHE_DIR": str(tiktoken_dir),
            "SLACK_BOT_TOKEN": "xoxb-1-test",
            "SLACK_SIGNING_SECRET": SECRET,
            "PAPERBOT_SLACK_API_URL": api.base_url,
            "PAPERBOT_HTTP_HOST": "127.0.0.1",
            "PAPERBOT_EMBEDDING_THREADS": "1",
            "PAPERBOT_FEEDS_ENABLED": "false",
            "PAPERBOT_LLM_BASE_URL": llm.base_url,
            "PAPERBOT_LLM_API_KEY": "sk-test",
            "PAPERBOT_LLM_MODEL": "gpt-test",
            "PAPERBOT_LLM_MAX_RETRIES": "0",
            "PAPERBOT_STREAM_UPDATE_SECONDS": "0.2",
            "PAPERBOT_ANSWER_WORKERS": "2",
            "PAPERBOT_ANSWER_LEASE_SECONDS": "5",
            "PAPERBOT_SHUTDOWN_GRACE_SECONDS": "1",
        }
        url = f"http://127.0.0.1:{port}/slack/events"
        process = _serve(env, port, log_path)
        restarted = None
        try:
            _wait_healthy(port, process, log_path)
            asked = []
            for question in QUESTIONS:
                ts = new_ts()
                started = time.monotonic()
                ack = post(url, event_callback(app_mention_event(question, ts=ts)), secret=SECRET)
                assert ack.status_code == 200 and time.monotonic() - started < 3
                asked.append(ts)
            _wait_until(lambda: sum(_answered(api, ts) for ts in asked) >= 4)
            slow.hold.set()  # the next answers hang: stop with two certainly in flight
            _wait_until(lambda: slow.held >= 2)
            if how == "sigterm":
                process.send_signal(signal.SIGTERM)
            else:
                process.kill()
            stopped_at = time.monotonic()
            process.wait(timeout=30)
            stop_seconds = time.monotonic() - stopped_at
            slow.hold.clear()
            slow.release.set()
            finished = [ts for ts in asked if _answered(api, ts)]
            assert len(finished) < len(asked), "the stop came after every answer"
            if how == "sigterm":
                assert process.returncode == 0, log_path.read_text()[-3000:]
                assert stop_seconds < 15, "a bounded drain"
            restarted = _serve(env, port, log_path)
            _wait_healthy(port, restarted, log_path)
            resumed_at = time.monotonic()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not all(_answered(api, ts) for ts in asked):
                time.sleep(0.2)
            resume_seconds = time.monotonic() - resumed_at

            def settled() -> bool:
                with BotStore(data_dir / "bot.sqlite3") as store:
                    return all(j["state"] == "done" for j in store.jobs())

            # an answer the killed process posted but had not marked done stays claimed until
            # its lease runs out; then the restart takes it over (and must not post it again)
            _wait_until(settled, timeout=60)
            for ts in asked:
                replies = api.bot_messages(CHANNEL_ID, ts)
                assert len(replies) == 1, f"thread {ts}: {[r.text for r in replies]}"
                assert not replies[0].text.startswith("🔎"), f"a placeholder was left in {ts}"
                # one message posted per question: a placeholder, or a native stream
                posts = api.calls_to("chat.postMessage", ok=True)
                posts += api.calls_to("chat.startStream", ok=True)
                assert sum(c.params.get("thread_ts") == ts for c in posts) == 1, ts
            with BotStore(data_dir / "bot.sqlite3") as store:
                jobs = store.jobs()
            assert Counter(j["state"] for j in jobs) == {"done": len(asked)}
            resumed = sum(j["attempts"] > 1 for j in jobs)
            if how == "sigterm":  # in-flight answers were handed back uncounted
                assert "handed" in log_path.read_text() and resumed == 0
            else:  # the dead process's claims expired and were taken over
                assert resumed >= 1
            print(
                f"\n[answer-queue/{how}] {len(asked)} acked; {len(finished)} answered before the "
                f"stop; serve exited in {stop_seconds:.1f} s; the restart answered the other "
                f"{len(asked) - len(finished)} in {resume_seconds:.1f} s ({resumed} taken over "
                "from a dead claim); "
                f"{len(api.calls_to('chat.postMessage', ok=True))} placeholders for "
                f"{len(asked)} questions"
            )
            restarted.send_signal(signal.SIGTERM)
            restarted.wait(timeout=30)
            assert restarted.returncode == 0, log_path.read_text()[-3000:]
            assert "Traceback" not in log_path.read_text()
        finally:
            for proc in (process, restarted):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()


def _wait_until(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _answered(api: Any, ts: str) -> bool:
    replies = api.bot_messages(CHANNEL_ID, ts)
    return bool(replies) and all(not r.text.startswith("🔎") for r in replies)


@pytest.mark.integration
def test_giving_up_without_a_placeholder_posts_the_reason_once(harness_factory: Any) -> None:
    """No placeholder was recorded: the reason is posted in the thread, once, even when
    Slack takes the post and its answer is lost (bot/slack/safe_post.py)."""
    h = harness_factory()
    ts = new_ts()
    job = {
        "kind": "mention",
        "placeholder_ts": None,
        "channel": CHANNEL_ID,
        "thread_ts": None,
        "message_ts": ts,
    }
    h.api.lose_next_answer("chat.postMessage")
    SlackAnswers(h.services, h.app.client, h.settings).give_up(job, "Sorry, boom.")  # type: ignore[arg-type]
    [reply] = _bot_replies(h, ts)
    assert "Sorry, boom." in reply.text
    assert len(h.api.calls_to("chat.postMessage")) == 1 and h.api.calls_to("conversations.replies")
