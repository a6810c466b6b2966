"""The bot stays current by itself: `serve`'s machinery with two feeds and a 09:00 digest.

A controllable clock drives what `paperbot serve` runs in the background (the feed watcher's
`poll(now)` and the digest scheduler's `tick(now)`, composed as serve composes them), against
the local HF API and arXiv Atom servers, the real Bolt app over HTTP and the fake Slack Web
API. On Friday 2025-05-16 (Europe/Berlin) the HF list of the day appears at 08:50; arXiv's
listing for the day shows up only at 09:20, so the 09:00 digest waits for it and goes out
once, at 09:30, with both feeds' papers of that listing day (and none of the papers listed
the day before). A question about a paper that arrived after serve started is answered with
that paper cited, a subscriber hears about it once, and a restart mid-day posts nothing twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from slack_sdk import WebClient

from bot.services import Services
from bot.slack.app import create_app
from bot.slack.feed_watcher import FeedWatcher, health, watch_feeds
from bot.slack.feeds import arxiv_feed, hf_feed
from bot.slack.scheduler import DigestScheduler
from bot.slack.server import make_http_server, serve_http_in_thread
from bot.slack.settings import SlackSettings
from bot.slack.store import BotStore
from retrieval import Corpus, Paper, RetrievalSettings
from retrieval.sources import page_text
from tests.support.feed_server import FeedServer, arxiv_atom, hf_json
from tests.support.slack_api import FakeSlackAPI
from tests.support.slack_fixtures import BOT_TOKEN, SAMPLE, SECRET, slack_settings
from tests.support.slack_requests import app_mention_event, event_callback, new_ts, post

pytestmark = pytest.mark.integration
BERLIN = ZoneInfo("Europe/Berlin")
DAY = date(2025, 5, 16)  # a Friday
CHANNEL = "C0DIGEST"
HF_PATH, ARXIV_PATH = "/api/daily_papers", "/api/query"


def at(hh: int, mm: int) -> datetime:
    return datetime(2025, 5, 16, hh, mm, tzinfo=BERLIN)


# ---------------------------------------------------------------- the feeds' content
def sample_papers() -> list[Paper]:
    records = page_text.parse(SAMPLE.read_bytes(), origin="sample", page_date=DAY)
    return [r for r in records if isinstance(r, Paper)]


# ---------------------------------------------------------------- serve, as serve composes it
@dataclass
class Serve:
    services: Services
    watcher: FeedWatcher
    scheduler: DigestScheduler
    server: Any
    url: str

    def step(self, now: datetime) -> Any:
        """What serve's background threads do at `now`: poll due feeds, then tick."""
        self.watcher.poll(now)
        return self.scheduler.tick(now).get(CHANNEL)

    def healthz(self) -> dict[str, Any]:
        return dict(httpx.get(self.url + "/healthz", timeout=10).json())

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.services.corpus.close()
        self.services.store.close()


@pytest.fixture
def clock() -> dict[str, datetime]:
    return {"now": at(8, 30)}


@pytest.fixture
def feeds(clock: dict[str, datetime]) -> Iterator[FeedServer]:
    with FeedServer(clock=lambda: clock["now"]) as server:
        yield server


@pytest.fixture
def api() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI(ts_start=1700000000.0) as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path, tiktoken_dir: Path, feeds: FeedServer) -> RetrievalSettings:
    return RetrievalSettings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        tiktoken_cache_dir=tiktoken_dir,
        hf_api_url=feeds.url + HF_PATH,
        arxiv_api_url=feeds.url + ARXIV_PATH,
        arxiv_delay_seconds=0,
        max_retries=0,
    )


def start_serve(
    settings: RetrievalSettings,
    embedder: Any,
    api: FakeSlackAPI,
    clock: dict[str, datetime],
) -> Serve:
    services = Services.build(settings, corpus=Corpus(settings, embedder=embedder), llm=None)
    slack: SlackSettings = slack_settings(api, digest_wait_minutes=180)
    app = create_app(slack, services)
    watcher = watch_feeds(services, slack, clock=lambda: clock["now"])
    assert watcher is not None
    client = WebClient(token=BOT_TOKEN, base_url=api.base_url)
    scheduler = DigestScheduler(services, client, slack, clock=lambda: clock["now"])

    def healthz() -> dict[str, Any]:  # what `paperbot serve` answers on /healthz
        feeds = health(services.store, slack.feed_alert_failures, watcher)
        return {"ok": True, "papers": services.corpus.count_papers(), **feeds}

    server = make_http_server(app, "127.0.0.1", 0, healthz)
    serve_http_in_thread(server)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    return Serve(services, watcher, scheduler, server, url)


def parents(api: FakeSlackAPI, channel: str) -> list[Any]:
    return [m for m in api.messages(channel) if not m.thread_ts or m.thread_ts == m.ts]


def notified(api: FakeSlackAPI, title: str) -> list[Any]:
    """The subscription notifications to U0SUB that name a paper."""
    calls = api.calls_to("chat.postMessage")
    return [c for c in calls if c.params["channel"] == "U0SUB" and title in c.params["text"]]


def wait_for_answer(api: FakeSlackAPI, channel: str, thread_ts: str) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        replies = api.messages(channel, thread_ts=thread_ts)
        if replies and not replies[-1].text.startswith("🔎"):
            return replies[-1]
        time.sleep(0.05)
    raise AssertionError(f"no answer in thread {thread_ts}")


# ---------------------------------------------------------------- the day
def test_serve_with_two_feeds_posts_the_days_digest_once_and_answers_new_papers(
    settings: RetrievalSettings,
    local_embedder: Any,
    feeds: FeedServer,
    api: FakeSlackAPI,
    clock: dict[str, datetime],
) -> None:
    papers = sample_papers()
    yesterday, hf_today, arxiv_today, arxiv_before = (
        papers[20:30],
        papers[0:10],
        papers[10:17],
        papers[17:20],
    )
    # Before serve starts: yesterday's papers in the index, the feeds, the 09:00 schedule.
    seeded = Corpus(settings, embedder=local_embedder)
    seeded.ingest([p.model_copy(update={"listed": DAY - timedelta(days=1)}) for p in yesterday])
    seeded.close()
    with BotStore.in_data_dir(settings.data_dir) as store:
        store.add_feed(hf_feed("hf", tz="Europe/Berlin").row())
        store.add_feed(arxiv_feed("arxiv-ml", categories=["cs.LG"], max_results=50).row())
        store.set_schedule(CHANNEL, "09:00", "Europe/Berlin", None, None)
        store.subscribe("U0SUB", "fine-grained video editing benchmark", created_by="U0SUB")
        store.set_meta("notify_watermark", str(time.time()))
    # The HF day's list is empty until 08:50; arXiv still shows Thursday's listing until 09:20.
    hf_params = {"date": DAY.isoformat()}
    feeds.publish(HF_PATH, b"[]", params=hf_params)
    feeds.publish(HF_PATH, hf_json(hf_today, 10000), params=hf_params, at=at(8, 50))
    feeds.publish(ARXIV_PATH, arxiv_atom(arxiv_before, 20000, "2025-05-14T12:00:00Z"))
    feeds.publish(ARXIV_PATH, arxiv_atom(arxiv_today, 21000, "2025-05-15T12:00:00Z"), at=at(9, 20))

    serve = start_serve(settings, local_embedder, api, clock)
    try:
        results = {}
        for minutes in range(0, 80, 10):  # 08:30 … 09:40
            clock["now"] = at(8, 30) + timedelta(minutes=minutes)
            results[clock["now"].strftime("%H:%M")] = serve.step(clock["now"])
        # HF was polled every 30 minutes (08:30 empty, 09:00 and 09:30 the list); arXiv at
        # 08:30 (Thursday's listing) and, an hour later as nothing new had come, at 09:30.
        hf_days = [r.params["date"] for r in feeds.requests_to(HF_PATH)]
        assert hf_days == ["2025-05-16"] * 3
        arxiv_calls = feeds.requests_to(ARXIV_PATH)
        assert len(arxiv_calls) == 2
        assert arxiv_calls[0].params["search_query"] == "cat:cs.LG"
        assert arxiv_calls[0].params["sortBy"] == "submittedDate"
        # The digest waited from 09:00 (HF there, arXiv not) and went out once at 09:30.
        assert [results[t] for t in ("08:30", "08:40", "08:50")] == [None, None, None]
        assert [results[t].status for t in ("09:00", "09:10", "09:20")] == ["waiting"] * 3
        assert results["09:30"].status == "posted"
        assert results["09:40"] is None
        [parent] = parents(api, CHANNEL)
        thread = " ".join(m.text for m in api.messages(CHANNEL, thread_ts=parent.ts))
        posted = parent.text + " " + thread
        assert "Paper digest 2025-05-16" in parent.text
        assert "17 papers" in json.dumps(parent.blocks)
        for paper in hf_today + arxiv_today:
            assert paper.title[:40] in posted, paper.title
        for paper in yesterday + arxiv_before:
            assert paper.title[:40] not in posted, paper.title
        # The subscriber heard about the arXiv paper once, on the tick after it arrived.
        assert len(notified(api, "FiVE")) == 1

        # A question about a paper that arrived after serve started is answered from it.
        ts = new_ts()
        question = "Which benchmark evaluates emerging diffusion and rectified flow video editing?"
        response = post(
            serve.url + "/slack/events",
            event_callback(app_mention_event(question, ts=ts)),
            secret=SECRET,
        )
        assert response.status_code == 200
        answer = wait_for_answer(api, "C0PAPERS", ts)
        assert "FiVE" in answer.text
        assert "FiVE: A Fine-grained Video Editing Benchmark" in json.dumps(answer.blocks)

        health_now = serve.healthz()
        assert health_now["ok"] and health_now["feed_watcher"] == "stopped"  # not started here
        assert {f["name"]: f["status"] for f in health_now["feeds"]} == {
            "arxiv-ml": "ok",
            "hf": "ok",
        }
        assert health_now["papers"] == 30
    finally:
        serve.stop()

    # Restart mid-day: new services, app, watcher and scheduler on the same data dir.
    hf_polls = len(feeds.requests_to(HF_PATH))
    restarted = start_serve(settings, local_embedder, api, clock)
    try:
        for minutes in range(0, 130, 10):  # 10:00 … 12:00
            clock["now"] = at(10, 0) + timedelta(minutes=minutes)
            assert restarted.step(clock["now"]) is None
        assert len(parents(api, CHANNEL)) == 1
        assert len(notified(api, "FiVE")) == 1
        # The schedule survived the restart: HF every 30 minutes (10:00 … 12:00: its list fills
        # during the day); arXiv not before the next announcement (Sunday 20:00 New York).
        assert len(feeds.requests_to(HF_PATH)) == hf_polls + 5
        assert len(feeds.requests_to(ARXIV_PATH)) == 2
    finally:
        restarted.stop()


def test_an_empty_day_waits_until_the_deadline_then_posts_a_note_once(
    settings: RetrievalSettings,
    fake_embedder: Any,
    feeds: FeedServer,
    api: FakeSlackAPI,
    clock: dict[str, datetime],
) -> None:
    with BotStore.in_data_dir(settings.data_dir) as store:
        store.add_feed(hf_feed("hf", tz="Europe/Berlin").row())
        store.set_schedule(CHANNEL, "09:00", "Europe/Berlin", None, None)
    feeds.publish(HF_PATH, b"[]", params={"date": DAY.isoformat()})
    feeds.publish(HF_PATH, b"down", at=at(10, 0), status=503)  # and then the API breaks
    serve = start_serve(settings, fake_embedder, api, clock)
    try:
        statuses = {}
        for minutes in range(0, 240, 30):  # 08:30 … 12:00
            clock["now"] = at(8, 30) + timedelta(minutes=minutes)
            result = serve.step(clock["now"])
            statuses[clock["now"].strftime("%H:%M")] = result.status if result else None
        assert statuses["08:30"] is None
        assert {statuses[t] for t in ("09:00", "10:00", "11:30")} == {"waiting"}
        assert statuses["12:00"] == "empty"  # the 180-minute deadline
        [note] = parents(api, CHANNEL)
        assert "No new papers today (2025-05-16)" in note.text
        assert "hf has not delivered" in json.dumps(note.blocks)
        clock["now"] = at(12, 30)
        assert serve.step(clock["now"]) is None
        assert len(parents(api, CHANNEL)) == 1
        feed_health = {f["name"]: f for f in serve.healthz()["feeds"]}
        assert feed_health["hf"]["failures"] >= 1 and "503" in feed_health["hf"]["last_error"]
    finally:
        serve.stop()
