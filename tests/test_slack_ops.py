"""Socket Mode end to end, the digest scheduler with a controllable clock, subscriptions,
and the bot's CLI commands (serve without credentials, chat)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from typer.testing import CliRunner

from bot.cli.main import app as cli_app
from bot.services import Services
from bot.slack.app import create_app
from bot.slack.safe_post import SEND_TRIES
from bot.slack.scheduler import DigestScheduler, parse_schedule
from tests.support.slack_api import FakeSlackAPI
from tests.support.slack_fixtures import BOT_TOKEN, corpus, services, slack_settings
from tests.support.slack_requests import app_mention_event, event_callback_payload, new_ts
from tests.support.socket_mode import FakeSocketModeServer, close_handler

__all__ = ["corpus", "services"]
pytestmark = pytest.mark.integration
NINE_BERLIN = datetime(2025, 5, 16, 7, 0, tzinfo=UTC)  # 09:00 CEST
BEFORE = datetime(2025, 5, 16, 6, 59, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def api() -> Any:
    with FakeSlackAPI(ts_start=1700000000.0) as running:
        yield running


def _scheduler(services: Services, api: FakeSlackAPI) -> DigestScheduler:
    settings = slack_settings(api)
    client = WebClient(token=BOT_TOKEN, base_url=api.base_url)
    return DigestScheduler(services, client, settings)


def _schedule(services: Services, channel: str) -> None:
    s = parse_schedule(channel, "09:00", "Europe/Berlin")
    services.store.set_schedule(channel, "09:00", s.timezone, None, None)


def test_socket_mode_end_to_end(services: Services) -> None:
    with FakeSocketModeServer() as sm, FakeSlackAPI(socket_mode_url=sm.new_url) as api:
        settings = slack_settings(api, signing_secret=None, app_token="xapp-1-A0TEST-1-test")
        app = create_app(settings, services)
        handler = SocketModeHandler(app, app_token="xapp-1-A0TEST-1-test")
        handler.connect()
        try:
            sm.wait_for_connection()
            ts = new_ts()
            payload = event_callback_payload(app_mention_event("What is rectified flow?", ts=ts))
            envelope = sm.send_envelope("events_api", payload)
            sm.wait_for_ack(envelope, timeout=3)
            api.wait_for("chat.update", timeout=30)
            [reply] = api.messages("C0PAPERS", thread_ts=ts)
            assert "Flow Straight and Fast" in reply.text
        finally:
            close_handler(handler, sm)


def test_digest_posts_once_at_local_time_across_restarts(
    services: Services, api: FakeSlackAPI
) -> None:
    _schedule(services, "C0DIGEST")
    scheduler = _scheduler(services, api)
    assert scheduler.tick(BEFORE) == {}
    result = scheduler.tick(NINE_BERLIN)["C0DIGEST"]
    assert result.status == "posted"
    parent = api.messages("C0DIGEST")[0]
    assert "Paper digest 2025-05-16" in parent.text
    replies = api.messages("C0DIGEST", thread_ts=result.ts)
    assert replies and all(len(m.blocks) <= 50 for m in [parent, *replies])
    assert scheduler.tick(NINE_BERLIN.replace(hour=9)) == {}
    restarted = _scheduler(services, api)  # a new process with the same state store
    assert restarted.tick(NINE_BERLIN.replace(hour=12)) == {}
    assert len([m for m in api.messages("C0DIGEST") if not m.thread_ts or m.thread_ts == m.ts]) == 1


def test_two_concurrent_posters_post_once(services: Services, api: FakeSlackAPI) -> None:
    _schedule(services, "C0TWICE")
    api.delay_next("chat.postMessage", 0.5)  # keep the first poster busy while the second ticks
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(_scheduler(services, api).tick(NINE_BERLIN)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r["C0TWICE"].status for r in results if "C0TWICE" in r)
    assert statuses.count("posted") == 1
    parents = [m for m in api.messages("C0TWICE") if not m.thread_ts or m.thread_ts == m.ts]
    assert len(parents) == 1


def test_a_failed_post_is_retried_on_the_next_tick(services: Services, api: FakeSlackAPI) -> None:
    _schedule(services, "C0FLAKY")
    # every send of one attempt fails (after each, Slack is asked whether it took it)
    api.fail_next("chat.postMessage", error="internal_error", status=500, times=SEND_TRIES)
    scheduler = _scheduler(services, api)
    assert scheduler.tick(NINE_BERLIN)["C0FLAKY"].status == "failed"
    assert len(api.calls_to("conversations.history")) == SEND_TRIES  # after every send
    assert scheduler.tick(NINE_BERLIN)["C0FLAKY"].status == "posted"
    assert scheduler.tick(NINE_BERLIN) == {}


def test_subscribers_are_notified_once(services: Services, api: FakeSlackAPI) -> None:
    services.store.subscribe("U0SUB", "text-to-3D generation", created_by="U0SUB")
    services.store.set_meta("notify_watermark", "0")
    scheduler = _scheduler(services, api)
    scheduler.tick(BEFORE)
    [note] = [c for c in api.calls_to("chat.postMessage") if c.params["channel"] == "U0SUB"]
    assert "GVGEN" in note.params["text"]
    scheduler.tick(BEFORE)
    assert len([c for c in api.calls_to("chat.postMessage") if c.params["channel"] == "U0SUB"]) == 1
    services.store.unsubscribe("U0SUB", "text-to-3D generation")


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        parse_schedule("C1", "9am", "UTC")
    with pytest.raises(ValueError, match="time zone"):
        parse_schedule("C1", "09:00", "Mars/Olympus")


def test_serve_names_the_missing_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(cli_app, ["serve"])
    assert result.exit_code == 2
    assert "SLACK_BOT_TOKEN" in result.output and "SLACK_SIGNING_SECRET" in result.output


def test_chat_runs_the_same_handlers(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bot.cli.options.services", lambda: services)
    lines = "What is GVGEN?\nHow fast is it?\n/papers help\n/papers frobnicate\nexit\n"
    result = CliRunner().invoke(cli_app, ["chat"], input=lines)
    assert result.exit_code == 0, result.output
    assert "GVGEN" in result.output and "/papers ask" in result.output
    assert "Unknown command" in result.output
    # it opens as a Slack assistant thread does: the greeting and prompts to type
    before_first_answer = result.output.split("What is GVGEN?")[0]
    assert "30 papers" in before_first_answer and "  • " in before_first_answer
