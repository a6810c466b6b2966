"""A stopping `serve` (SIGTERM on a deploy) and the digest it is posting: no message after the
one in flight, the slot given back at once (not left to its 10-minute lease), and the next
attempt goes on in the same thread — one parent, each reply once. See
bot/slack/digest_posting.py (`DigestStop`) and bot/slack/scheduler.py (`stop`)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from typing import Any

import pytest

from bot.services import Services
from bot.slack import blocks
from bot.slack.app import make_client
from bot.slack.digest_posting import post_digest
from bot.slack.digest_stop import STOPPED, DigestStop
from bot.slack.scheduler import DigestScheduler
from retrieval import Corpus
from tests.support.slack_api import FakeSlackAPI, StoredMessage
from tests.support.slack_fixtures import corpus, slack_settings

__all__ = ["corpus"]
pytestmark = pytest.mark.integration

DAY = date(2025, 5, 16)  # the sample papers' day
NOON = datetime(2025, 5, 16, 12, tzinfo=UTC)


@pytest.fixture
def services(corpus: Corpus) -> Services:
    return Services.build(corpus.settings, corpus=corpus, llm=None)


class StopDuringPost:
    """The app's WebClient; the stop is requested while the ``nth`` chat.postMessage is in
    flight (SIGTERM arriving then)."""

    def __init__(self, client: Any, stop: DigestStop, nth: int) -> None:
        self._client = client
        self._stop = stop
        self._nth = nth
        self._posts = 0

    def chat_postMessage(self, **kwargs: Any) -> Any:  # slack_sdk's method name
        self._posts += 1
        if self._posts == self._nth:
            self._stop.request()
        return self._client.chat_postMessage(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _thread(api: FakeSlackAPI, channel: str) -> tuple[list[StoredMessage], list[int]]:
    parents = [m for m in api.messages(channel) if not m.is_reply]
    assert len(parents) == 1, f"{len(parents)} digest parents in {channel}"
    replies = api.messages(channel, thread_ts=parents[0].ts)
    return parents, [(m.metadata or {})["event_payload"]["part"] for m in replies]


def _replies(services: Services) -> int:
    digest = services.digests.build(DAY, DAY)
    return sum(len(blocks.digest_group_replies(group)) for group in digest.groups)


def test_a_stop_mid_digest_sends_the_message_in_flight_then_gives_the_slot_back(
    services: Services,
) -> None:
    channel = "C0STOPPED"
    with FakeSlackAPI() as api:
        client = make_client(slack_settings(api))
        stop = DigestStop()
        result = post_digest(services, StopDuringPost(client, stop, 2), channel, DAY, stop=stop)
        assert result.status == "waiting"  # the parent and the reply in flight went out
        status = services.store.digest_status(channel, DAY.isoformat())
        assert status is not None and (status["status"], status["error"]) == ("waiting", STOPPED)
        assert len(api.messages(channel)) == 2
        # the next start (default 600 s lease): taken at once, continued in the same thread
        again = post_digest(services, client, channel, DAY)
        assert again.status == "posted"
        parents, parts = _thread(api, channel)
    assert again.ts == parents[0].ts
    assert parts == list(range(1, _replies(services) + 1))


def test_a_digest_still_building_when_the_grace_ends_is_given_back_by_stop(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = "C0BUILDING"
    services.store.set_schedule(channel, "00:00", "UTC", None, None)
    building, finish = threading.Event(), threading.Event()
    real_build = services.digests.build

    def slow_build(*args: Any, **kwargs: Any) -> Any:  # a model writing TL;DRs
        building.set()
        finish.wait(30)
        return real_build(*args, **kwargs)

    try:
        with FakeSlackAPI() as api:
            client = make_client(slack_settings(api))
            settings = slack_settings(api)
            scheduler = DigestScheduler(services, client, settings, clock=lambda: NOON)
            monkeypatch.setattr(services.digests, "build", slow_build)
            tick = threading.Thread(target=scheduler._safe_tick)  # as APScheduler runs it
            tick.start()
            assert building.wait(30)
            scheduler.stop(grace=0.2)  # the build goes on past the grace
            status = services.store.digest_status(channel, DAY.isoformat())
            assert status is not None and status["status"] == "waiting"
            finish.set()  # the tick then sends nothing (serve would have exited meanwhile)
            tick.join(30)
            assert api.messages(channel) == []
            monkeypatch.setattr(services.digests, "build", real_build)
            restarted = DigestScheduler(services, client, settings, clock=lambda: NOON)
            assert restarted.tick(NOON)[channel].status == "posted"  # at once, no lease
            _, parts = _thread(api, channel)
        assert parts == list(range(1, _replies(services) + 1))
    finally:
        finish.set()
        services.store.remove_schedule(channel)
