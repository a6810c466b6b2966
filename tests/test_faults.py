"""Faults injected while the real Bolt app runs over HTTP: a flaky LLM server, a Chroma server
killed and restarted, a rate-limited / failing Slack Web API during a digest post.

Each test drives the app the way Slack would (signed HTTP events) and checks what ends up in
the fake Slack workspace: one bot message per thread, never a "🔎 Searching…" left behind,
each either an answer with its sources or a clear error. See docs/faults.md.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from answers.llm import build_chat_model
from answers.settings import AnswerSettings
from bot.services import Services
from bot.slack import blocks
from bot.slack import scheduler as scheduler_module
from bot.slack.app import create_app, make_client
from bot.slack.digest_posting import post_digest
from bot.slack.scheduler import DigestScheduler
from bot.slack.server import make_http_server, serve_http_in_thread
from retrieval import Corpus, RetrievalSettings
from retrieval.normalize import split_sentences
from retrieval.sources import page_text
from tests.support.chroma_server import ChromaServer
from tests.support.fakes import FakeEmbedder
from tests.support.openai_server import CHAT_PATH, FakeOpenAIServer
from tests.support.slack_api import FakeSlackAPI, StoredMessage
from tests.support.slack_fixtures import SAMPLE, SECRET, SlackHarness, corpus, slack_settings
from tests.support.slack_requests import CHANNEL_ID, app_mention_event, event_callback, new_ts, post

__all__ = ["corpus"]
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
DEV_QUESTIONS = ROOT / "data" / "sample" / "dev_questions.jsonl"
SAMPLE_DAY = date(2025, 5, 16)
SEED = 20250516
FALLBACK_FLAG = "Showing an extractive answer instead."


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local servers only: a proxy from the environment must not sit in between."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------------- harness
@pytest.fixture
def extractive_services(corpus: Corpus) -> Services:
    """The 30 sample papers (real MiniLM embedder), answers without an LLM."""
    return Services.build(corpus.settings, corpus=corpus, llm=None)


@contextmanager
def running_app(services: Services, **overrides: Any) -> Iterator[SlackHarness]:
    """The fake Slack Web API and the real app on paperbot's own HTTP server."""
    with FakeSlackAPI(ts_start=1700000000.0) as api:
        settings = slack_settings(api, **overrides)
        app = create_app(settings, services)
        server = make_http_server(app, "127.0.0.1", 0, lambda: {"ok": True})
        serve_http_in_thread(server)
        url = f"http://127.0.0.1:{server.server_address[1]}/slack/events"
        try:
            yield SlackHarness(api, services, settings, url, app)
        finally:
            server.shutdown()
            server.server_close()


def mention(h: SlackHarness, question: str) -> str:
    """Send an app_mention the way Slack does; the ack must be immediate. Returns its ts."""
    ts = new_ts()
    response = post(h.url, event_callback(app_mention_event(question, ts=ts)), secret=SECRET)
    assert response.status_code == 200, response.text
    assert response.elapsed.total_seconds() < 3, "the event was not acked at once"
    return ts


def is_final(message: StoredMessage) -> bool:
    """Neither the placeholder nor a streaming partial (which ends with the ▌ cursor)."""
    return not message.text.startswith("🔎") and not message.text.rstrip().endswith("▌")


def wait_settled(
    api: FakeSlackAPI, threads: list[str], timeout: float = 45.0
) -> dict[str, list[StoredMessage]]:
    """Every thread's bot messages, once each thread's last one is final (then a grace
    period, so that a late duplicate would still be seen)."""
    deadline = time.monotonic() + timeout
    while True:
        replies = {ts: api.bot_messages(CHANNEL_ID, ts) for ts in threads}
        if all(r and is_final(r[-1]) for r in replies.values()):
            time.sleep(0.5)
            return {ts: api.bot_messages(CHANNEL_ID, ts) for ts in threads}
        if time.monotonic() > deadline:
            pending = {ts: [m.text[:60] for m in r] for ts, r in replies.items()}
            raise AssertionError(f"threads not finished after {timeout} s: {pending}")
        time.sleep(0.05)


def classify(message: StoredMessage) -> str:
    """llm | fallback | extractive | error: what a reader of the thread sees."""
    dumped = json.dumps(message.blocks or [], ensure_ascii=False)
    if message.text.startswith("⚠️"):
        return "error"
    assert "*Sources*" in dumped, f"an answer without sources: {message.text[:200]}"
    if FALLBACK_FLAG in dumped:
        return "fallback"
    return "extractive" if "Extractive answer" in dumped else "llm"


def assert_one_message_per_thread(h: SlackHarness, settled: dict[str, list[StoredMessage]]) -> None:
    for ts, messages in settled.items():
        assert len(messages) == 1, f"thread {ts}: {[m.text[:60] for m in messages]}"
        assert is_final(messages[0]), f"thread {ts} left a placeholder: {messages[0].text[:80]}"
    posted = {c.response["ts"] for c in h.api.calls_to("chat.postMessage", ok=True)}
    assert len(posted) == len(settled), "a placeholder was posted twice"
    updated = {c.params["ts"] for c in h.api.calls_to("chat.update")}
    assert updated <= posted, "an update went to a message the bot never posted"


def sample_records() -> list[Any]:
    return list(page_text.parse(SAMPLE.read_bytes(), origin="sample", page_date=SAMPLE_DAY))


# ---------------------------------------------------------------------- a. flaky LLM
def cite_first_source(body: dict[str, Any]) -> str:
    """A well-behaved model: the first sentence of source [1], cited."""
    user = str(body["messages"][-1]["content"])
    match = re.search(r"^\[1\] [^\n]*\n([^\n]+)", user, re.MULTILINE)
    first = split_sentences(match.group(1))[0] if match else "No sources were given."
    return f"{first} [1]"


def enqueue_chaos(server: FakeOpenAIServer, count: int, seed: int) -> Counter[str]:
    """A seeded random mix of good answers, 429, 500, hangs past the timeout, dropped streams.
    Scripts are taken in order by whichever chat request comes next (first tries and the
    client's retries alike); when they run out, every request is answered well."""
    rng = random.Random(seed)
    kinds = ["ok", "429", "500", "hang", "drop"]
    chosen = rng.choices(kinds, weights=[3, 2, 2, 2, 2], k=count)
    for kind in chosen:
        if kind == "ok":
            server.enqueue_hang(0, path=CHAT_PATH)  # no wait: then the default (good) answer
        elif kind == "429":
            server.enqueue_error(429, headers={"retry-after-ms": "50"}, path=CHAT_PATH)
        elif kind == "500":
            server.enqueue_error(500, path=CHAT_PATH)
        elif kind == "hang":
            server.enqueue_hang(3.0, path=CHAT_PATH)  # > llm_timeout (1 s)
        else:
            server.enqueue_drop_midstream("A partial answer that never", path=CHAT_PATH)
    return Counter(chosen)


def dev_questions(n: int) -> list[str]:
    rows = [json.loads(line) for line in DEV_QUESTIONS.read_text().splitlines() if line.strip()]
    return [r["question"] for r in rows if r.get("kind") == "single"][:n]


def test_flaky_llm_every_question_ends_in_one_finished_message(
    corpus: Corpus, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeOpenAIServer(default_reply=cite_first_source) as llm:
        answer_settings = AnswerSettings(
            _env_file=None,  # type: ignore[call-arg]
            llm_provider="openai",
            llm_base_url=llm.base_url,
            llm_model="gpt-test",
            llm_timeout=1,
            llm_max_retries=1,
        )
        services = Services.build(
            corpus.settings,
            answer_settings,
            corpus=corpus,
            llm=build_chat_model(answer_settings),
        )
        injected = enqueue_chaos(llm, 20, SEED)
        questions = dev_questions(12)
        assert len(questions) == 12
        started = time.monotonic()
        with running_app(services) as h:
            threads = []
            for question in questions:
                threads.append(mention(h, question))
                time.sleep(0.05)
            settled = wait_settled(h.api, threads)
            elapsed = time.monotonic() - started
            assert_one_message_per_thread(h, settled)
            outcomes = Counter(classify(m[0]) for m in settled.values())
            chat_requests = len(llm.requests_to(CHAT_PATH))
            leftover = llm.pending
    with capsys.disabled():
        print(
            f"\n[faults/llm] injected {dict(injected)}; {chat_requests} chat requests, "
            f"{leftover} scripts unused; outcomes {dict(outcomes)}; {elapsed:.1f} s"
        )
    assert outcomes["llm"] >= 1 and outcomes["fallback"] >= 1, outcomes
    assert set(outcomes) <= {"llm", "fallback"}, outcomes  # an LLM fault never becomes an error
    assert chat_requests >= len(questions)


# ---------------------------------------------------------------------- b. Chroma down and up
def kill_chroma(server: ChromaServer) -> None:
    """SIGKILL (a crash, not a clean shutdown) of the `chroma run` process."""
    proc = server._proc
    assert proc is not None and proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    server.stop()  # forgets the dead process


def test_chroma_server_killed_and_restarted_while_the_bot_runs(
    tmp_path: Path, make_settings: Callable[..., RetrievalSettings]
) -> None:
    chroma = ChromaServer(tmp_path / "chroma-db")
    chroma.start()
    try:
        settings = make_settings(chroma_host=chroma.host, chroma_port=chroma.port)
        corpus = Corpus(settings, embedder=FakeEmbedder())
        corpus.ingest(sample_records())
        chunks = corpus.state.count_chunks()
        services = Services.build(settings, corpus=corpus, llm=None)
        question = "Which paper introduces the Candidate Pool Strategy for densifying Gaussians?"
        with running_app(services) as h:
            before = mention(h, question)
            [answer] = wait_settled(h.api, [before])[before]
            assert classify(answer) == "extractive" and "GVGEN" in answer.text

            kill_chroma(chroma)
            down = mention(h, question)
            [error] = wait_settled(h.api, [down])[down]
            assert classify(error) == "error"
            assert "not reachable" in error.text and chroma.url in error.text, error.text

            chroma.start()  # same port, same data directory; paperbot is not restarted
            after = mention(h, question)
            [again] = wait_settled(h.api, [after])[after]
            assert classify(again) == "extractive" and "GVGEN" in again.text
            assert_one_message_per_thread(h, {before: [answer], down: [error], after: [again]})
        assert corpus.store.count() == chunks, "vectors were lost with the killed server"
        corpus.close()
    finally:
        chroma.stop()


# ---------------------------------------------------------------------- c. Slack 429 / 5xx
def test_slack_5xx_on_the_answer_update_is_retried(extractive_services: Services) -> None:
    """chat.update of the answer: a 503 and a 500, retried by the app's client."""
    with running_app(extractive_services) as h:
        h.api.fail_next("chat.update", status=503)
        h.api.fail_next("chat.update", status=500)
        ts = mention(h, "What is the V-STaR benchmark?")
        settled = wait_settled(h.api, [ts])
        assert_one_message_per_thread(h, settled)
        assert classify(settled[ts][0]) == "extractive" and "V-STaR" in settled[ts][0].text


def test_an_answer_update_failing_past_the_retries_leaves_no_placeholder(
    extractive_services: Services,
) -> None:
    with running_app(extractive_services) as h:
        h.api.fail_next("chat.update", status=500, times=4)  # 1 try + 3 retries
        ts = mention(h, "What is the V-STaR benchmark?")
        h.api.wait_for("chat.update", 4, timeout=20)
        time.sleep(1.0)
        messages = h.api.bot_messages(CHANNEL_ID, ts)
        assert len(messages) == 1, [m.text[:60] for m in messages]
        assert is_final(messages[0]), f"left behind: {messages[0].text[:80]}"


class FailRepliesOnce:
    """The app's WebClient, with `inject` called just before the digest's first threaded
    reply is sent (so faults can be aimed at a reply, after the parent went through)."""

    def __init__(self, client: Any, inject: Any) -> None:
        self._client = client
        self._inject = inject
        self._done = False

    def chat_postMessage(self, **kwargs: Any) -> Any:  # slack_sdk's method name
        if kwargs.get("thread_ts") and not self._done:
            self._done = True
            self._inject()
        return self._client.chat_postMessage(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def digest_parents(api: FakeSlackAPI, channel: str) -> list[StoredMessage]:
    return [m for m in api.messages(channel) if not m.is_reply]


_REPLIES: dict[tuple[str, date], int] = {}


def expected_replies(services: Services, day: date) -> int:
    """Threaded replies of that day's digest (built once per data dir and day)."""
    key = (str(services.settings.data_dir), day)
    if key not in _REPLIES:
        digest = services.digests.build(day, day)
        _REPLIES[key] = sum(len(blocks.digest_group_replies(g)) for g in digest.groups)
    return _REPLIES[key]


def test_rate_limited_and_5xx_digest_post_arrives_once(extractive_services: Services) -> None:
    channel = "C0FAULTY"
    with FakeSlackAPI(ts_start=1700000000.0) as api:
        api.fail_next("chat.postMessage", retry_after=0)  # the parent: 429 ratelimited...
        api.fail_next("chat.postMessage", status=500)  # ...then a 500 on the retry

        def reply_faults() -> None:
            api.fail_next("chat.postMessage", status=503)
            api.fail_next("chat.postMessage", retry_after=0)

        client = FailRepliesOnce(make_client(slack_settings(api)), reply_faults)
        result = post_digest(extractive_services, client, channel, SAMPLE_DAY, lease_seconds=60)
        assert result.status == "posted", result
        [parent] = digest_parents(api, channel)
        assert parent.ts == result.ts and "Paper digest 2025-05-16" in parent.text
        replies = api.messages(channel, thread_ts=parent.ts)
        assert len(replies) == expected_replies(extractive_services, SAMPLE_DAY)
        assert len({m.text for m in replies}) == len(replies), "a reply was posted twice"
        failed = [c.status for c in api.calls_to("chat.postMessage", ok=False)]
        assert sorted(failed) == [429, 429, 500, 503], failed
        again = post_digest(extractive_services, client, channel, SAMPLE_DAY, lease_seconds=60)
        assert again.status == "skipped" and len(digest_parents(api, channel)) == 1


def test_a_reply_failing_past_the_retries_does_not_duplicate_the_digest(
    extractive_services: Services,
) -> None:
    channel = "C0HALFWAY"
    extractive_services.store.set_schedule(channel, "00:00", "UTC", None, None)
    with FakeSlackAPI(ts_start=1700000000.0) as api:
        settings = slack_settings(api)

        def outage() -> None:  # 1 try + 3 retries of ServerErrorRetryHandler, all 500
            api.fail_next("chat.postMessage", status=500, times=4)

        client = FailRepliesOnce(make_client(settings), outage)
        scheduler = DigestScheduler(extractive_services, client, settings)
        now = datetime(2025, 5, 16, 12, tzinfo=UTC)
        try:
            assert scheduler.tick(now)[channel].status == "failed"
            assert scheduler.tick(now)[channel].status == "posted"
            assert scheduler.tick(now) == {}
            parents = digest_parents(api, channel)
            replies = [r for p in parents for r in api.messages(channel, thread_ts=p.ts)]
        finally:
            extractive_services.store.remove_schedule(channel)
        assert len(replies) == expected_replies(extractive_services, SAMPLE_DAY)
        assert len(parents) == 1, f"{len(parents)} digest parents in {channel}"


class _Killed(BaseException):
    """The poster dying (kill -9): no `except Exception` of post_digest runs, the claim stays."""


class KilledAfterSlackTakes:
    """The app's WebClient: the ``nth`` chat.postMessage reaches Slack, then the poster dies
    before it reads Slack's answer (so nothing records that message)."""

    def __init__(self, client: Any, nth: int) -> None:
        self._client = client
        self._nth = nth
        self._posts = 0

    def chat_postMessage(self, **kwargs: Any) -> Any:  # slack_sdk's method name
        response = self._client.chat_postMessage(**kwargs)
        self._posts += 1
        if self._posts == self._nth:
            raise _Killed
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def killed_after_slack_takes(
    services: Services, client: Any, nth: int, channel: str, day: date, **options: Any
) -> None:
    """A poster killed once Slack took its ``nth`` message (a lease of 0: takeable at once)."""
    with pytest.raises(_Killed):
        post_digest(
            services, KilledAfterSlackTakes(client, nth), channel, day, lease_seconds=0.0, **options
        )


@pytest.mark.parametrize(
    ("killed_at", "chatter"),
    [(1, 0), (1, 450), (3, 0)],
    ids=["parent", "parent-busy-channel", "second-reply"],
)
def test_a_poster_killed_as_slack_takes_a_message_leaves_no_duplicate(
    extractive_services: Services, killed_at: int, chatter: int
) -> None:
    """The attempt that takes over after the dead claim's lease asks Slack (the message
    metadata on every digest message) and goes on where Slack is, not where the store is;
    ``chatter``: messages others post to the channel meanwhile (the lookup pages past them)."""
    channel = f"C0KILLED{killed_at}{chatter}"
    with FakeSlackAPI() as api:  # timestamps from the clock, as Slack's
        client = make_client(slack_settings(api))
        with pytest.raises(_Killed):
            post_digest(
                extractive_services, KilledAfterSlackTakes(client, killed_at), channel, SAMPLE_DAY
            )
        for n in range(chatter):
            api.add_message(channel, f"an unrelated message {n}")
        assert post_digest(extractive_services, client, channel, SAMPLE_DAY).status == "skipped"
        time.sleep(0.3)  # the dead poster's claim expires (for a lease of 0.2 s)
        result = post_digest(extractive_services, client, channel, SAMPLE_DAY, lease_seconds=0.2)
        assert result.status == "posted"
        asked = "conversations.history" if killed_at == 1 else "conversations.replies"
        assert len(api.calls_to(asked)) == (3 if chatter else 1), f"Slack asked ({asked})"
        parents = [m for m in api.bot_messages(channel) if not m.is_reply]
        assert len(parents) == 1, f"{len(parents)} digest parents in {channel}"
        replies = api.messages(channel, thread_ts=parents[0].ts)
    parts = [(m.metadata or {}).get("event_payload", {}).get("part") for m in replies]
    assert parts == list(range(1, expected_replies(extractive_services, SAMPLE_DAY) + 1))
    assert result.ts == parents[0].ts


def test_a_poster_that_cannot_ask_slack_sends_the_parent_again(
    extractive_services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the history scope the take-over cannot know: it sends again (a parent twice
    rather than a digest never finished), and says why in the log."""
    channel = "C0NOHISTORY"
    with FakeSlackAPI() as api:
        client = make_client(slack_settings(api))
        killed_after_slack_takes(extractive_services, client, 1, channel, SAMPLE_DAY)
        api.fail_next("conversations.history", "missing_scope")
        again = post_digest(extractive_services, client, channel, SAMPLE_DAY, lease_seconds=0.0)
        assert again.status == "posted"
        parents = digest_parents(api, channel)
    assert len(parents) == 2
    assert "could not check whether the 2025-05-16 digest's parent reached" in caplog.text


@pytest.mark.parametrize("lost", ["parent", "reply"])
def test_a_digest_message_slack_took_but_answered_500_is_not_sent_twice(
    extractive_services: Services, lost: str
) -> None:
    """Slack acted on the post, then its answer was an error (a 500, a dropped connection):
    the client does not blindly retry a digest message; the poster asks Slack, finds it, and
    goes on — one parent, each reply once, in one attempt."""
    channel = f"C0LOST{lost.upper()}"
    with FakeSlackAPI() as api:
        client = make_client(slack_settings(api))
        if lost == "parent":
            api.lose_next_answer("chat.postMessage")
            real = client
        else:
            real = FailRepliesOnce(client, lambda: api.lose_next_answer("chat.postMessage"))
        result = post_digest(extractive_services, real, channel, SAMPLE_DAY)
        assert result.status == "posted"
        parents = digest_parents(api, channel)
        assert len(parents) == 1, f"{len(parents)} digest parents in {channel}"
        replies = api.messages(channel, thread_ts=parents[0].ts)
        assert api.calls_to(
            "conversations.history" if lost == "parent" else "conversations.replies"
        )
    parts = [(m.metadata or {}).get("event_payload", {}).get("part") for m in replies]
    assert parts == list(range(1, expected_replies(extractive_services, SAMPLE_DAY) + 1))


def test_a_placeholder_slack_took_but_answered_500_leaves_no_orphan(
    extractive_services: Services,
) -> None:
    """The "Searching…" placeholder is carried out by Slack, whose answer is then a 500: a
    blind retry would leave that first placeholder unanswered for good. The reply is found in
    the thread by its nonce instead, and becomes the answer."""
    with running_app(extractive_services) as h:
        h.api.lose_next_answer("chat.postMessage")
        ts = mention(h, "What is the V-STaR benchmark?")
        settled = wait_settled(h.api, [ts])
        [message] = settled[ts]  # one bot message in the thread: the answer, no placeholder
        assert is_final(message) and classify(message) == "extractive" and "V-STaR" in message.text
        assert h.api.calls_to("conversations.replies")
        assert len(h.api.calls_to("chat.postMessage")) == 1  # never sent twice
        assert {c.params["ts"] for c in h.api.calls_to("chat.update")} == {message.ts}


def test_a_no_papers_note_slack_took_before_its_poster_died_is_not_sent_twice(
    extractive_services: Services,
) -> None:
    channel, empty_day = "C0EMPTYNOTE", date(2025, 5, 18)  # a day without papers
    with FakeSlackAPI() as api:
        client = make_client(slack_settings(api))
        killed_after_slack_takes(
            extractive_services, client, 1, channel, empty_day, empty_note=True
        )
        again = post_digest(
            extractive_services, client, channel, empty_day, empty_note=True, lease_seconds=0.0
        )
        notes = api.bot_messages(channel)
    assert again.status == "empty" and len(notes) == 1 and again.ts == notes[0].ts
    assert "No new papers" in notes[0].text


class TakenOverDuringBuild:
    """The services' digest builder, with another poster taking the slot over while this
    one builds (its lease ran out: an LLM writing TL;DRs for longer than the lease)."""

    def __init__(self, services: Services, channel: str, day: date) -> None:
        self._build = services.digests.build
        self._store, self._channel, self._day = services.store, channel, day

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        digest = self._build(*args, **kwargs)
        key = self._day.isoformat()
        assert self._store.claim_digest(self._channel, key, "other-replica", lease_seconds=0.0)
        return digest


def test_a_poster_whose_claim_was_taken_over_while_it_built_sends_nothing(
    extractive_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its parent would be a second one: the other poster (here one that died in turn) owns
    the slot. Only the poster that holds the claim sends, so the day has one parent."""
    channel = "C0TAKENOVER"
    with FakeSlackAPI() as api:
        client = make_client(slack_settings(api))
        with monkeypatch.context() as patch:
            taken = TakenOverDuringBuild(extractive_services, channel, SAMPLE_DAY)
            patch.setattr(extractive_services.digests, "build", taken)
            late = post_digest(extractive_services, client, channel, SAMPLE_DAY)
        assert late.status == "waiting" and api.bot_messages(channel) == []
        assert extractive_services.store.parent_send(channel, SAMPLE_DAY.isoformat()) is None
        status = extractive_services.store.digest_status(channel, SAMPLE_DAY.isoformat())
        assert status is not None and status["owner"] == "other-replica", "its claim kept"
        result = post_digest(extractive_services, client, channel, SAMPLE_DAY, lease_seconds=0.0)
        assert result.status == "posted"
        assert len(digest_parents(api, channel)) == 1


def test_a_slow_build_keeps_its_claim_alive(
    extractive_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build longer than the lease: the poster renews its claim meanwhile, so no other
    poster takes the slot over (and builds, and posts, a second digest)."""
    channel, lease = "C0SLOWBUILD", 1.5
    key = SAMPLE_DAY.isoformat()
    build = extractive_services.digests.build
    tries: list[bool] = []

    def slow(*args: Any, **kwargs: Any) -> Any:
        digest = build(*args, **kwargs)
        for _ in range(3):  # 3 s: 2 leases
            time.sleep(1.0)
            tries.append(extractive_services.store.claim_digest(channel, key, "other", lease))
        return digest

    with FakeSlackAPI() as api:
        client = make_client(slack_settings(api))
        monkeypatch.setattr(extractive_services.digests, "build", slow)
        result = post_digest(extractive_services, client, channel, SAMPLE_DAY, lease_seconds=lease)
        assert result.status == "posted" and len(digest_parents(api, channel)) == 1
    assert tries == [False, False, False]


@pytest.mark.parametrize(
    ("killed_at", "asked"), [(1, "conversations.history"), (3, "conversations.replies")]
)
def test_a_lookup_slack_cannot_answer_now_fails_the_attempt_instead_of_sending_again(
    extractive_services: Services, killed_at: int, asked: str
) -> None:
    """The take-over asks Slack whether the dead poster's message (the parent, a reply) is
    there and gets 500s (an incident, when take-overs happen): sending would guess. The
    attempt fails, keeps what it knows, and the next one asks again and finds it."""
    channel = f"C0LOOKUP500{killed_at}"
    with FakeSlackAPI() as api:
        client = make_client(slack_settings(api))
        killed_after_slack_takes(extractive_services, client, killed_at, channel, SAMPLE_DAY)
        api.fail_next(asked, status=500, times=4)  # past the client's retries
        failed = post_digest(extractive_services, client, channel, SAMPLE_DAY, lease_seconds=0.0)
        assert failed.status == "failed" and "could not ask Slack" in str(failed.error)
        assert len(digest_parents(api, channel)) == 1
        result = post_digest(extractive_services, client, channel, SAMPLE_DAY, lease_seconds=0.0)
        assert result.status == "posted"
        parents = digest_parents(api, channel)
        assert len(parents) == 1 and result.ts == parents[0].ts
        replies = api.messages(channel, thread_ts=parents[0].ts)
    parts = [(m.metadata or {}).get("event_payload", {}).get("part") for m in replies]
    assert parts == list(range(1, expected_replies(extractive_services, SAMPLE_DAY) + 1))


def test_a_poster_whose_claim_was_taken_over_between_replies_sends_no_more(
    extractive_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another poster takes the slot over once the first reply is recorded (this poster's
    lease ran out: a process paused, cut off from the database). The claim is checked before
    each message, not only after: this poster sends nothing more, the one that takes over
    goes on from the saved progress, and every reply is in the thread once."""
    channel, key = "C0BETWEEN", SAMPLE_DAY.isoformat()
    store = extractive_services.store
    save = store.save_digest_progress

    def saved_then_taken_over(*args: Any, **kwargs: Any) -> bool:
        done = save(*args, **kwargs)
        if kwargs.get("replies") == 1:
            assert store.claim_digest(channel, key, "other", lease_seconds=0.0)
        return done

    with FakeSlackAPI() as api:
        client = make_client(slack_settings(api))
        with monkeypatch.context() as patch:
            patch.setattr(store, "save_digest_progress", saved_then_taken_over)
            first = post_digest(extractive_services, client, channel, SAMPLE_DAY)
        assert first.status == "waiting"
        [parent] = digest_parents(api, channel)
        assert len(api.messages(channel, thread_ts=parent.ts)) == 1, "one reply, then it stopped"
        result = post_digest(extractive_services, client, channel, SAMPLE_DAY, lease_seconds=0.0)
        assert result.status == "posted" and result.ts == parent.ts
        replies = api.messages(channel, thread_ts=parent.ts)
    parts = [(m.metadata or {}).get("event_payload", {}).get("part") for m in replies]
    assert parts == list(range(1, expected_replies(extractive_services, SAMPLE_DAY) + 1))


def test_a_digest_left_halfway_before_midnight_is_finished_the_next_day(
    extractive_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 23:50 digest whose poster failed after its parent and first reply: past midnight
    its day is no longer due (no wait for feeds configured), yet the thread is finished
    instead of staying half-posted for good — once the failure is RESUME_IDLE_SECONDS old,
    not on every tick."""
    channel = "C0MIDNIGHT"
    store = extractive_services.store
    store.set_schedule(channel, "23:50", "UTC", None, None)
    try:
        with FakeSlackAPI() as api:
            settings = slack_settings(api, digest_wait_minutes=0)
            client = make_client(settings)
            killed_after_slack_takes(extractive_services, client, 2, channel, SAMPLE_DAY)
            store.finish_digest(channel, SAMPLE_DAY.isoformat(), "failed", error="the poster died")
            scheduler = DigestScheduler(extractive_services, client, settings)
            after_midnight = datetime(2025, 5, 17, 0, 5, tzinfo=UTC)
            assert scheduler.tick(after_midnight) == {}, "it failed a moment ago: not yet"
            monkeypatch.setattr(scheduler_module, "RESUME_IDLE_SECONDS", 0.0)  # 10 min later
            assert scheduler.tick(after_midnight)[channel].status == "posted"
            assert scheduler.tick(after_midnight) == {}
            parents = digest_parents(api, channel)
            replies = api.messages(channel, thread_ts=parents[0].ts)
    finally:
        store.remove_schedule(channel)
    assert len(parents) == 1
    parts = [(m.metadata or {}).get("event_payload", {}).get("part") for m in replies]
    assert parts == list(range(1, expected_replies(extractive_services, SAMPLE_DAY) + 1))
