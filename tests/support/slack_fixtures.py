"""Fixtures for the Slack app tests: a corpus ingested once, the real Bolt app served over
HTTP by paperbot's own server, and the fake Slack Web API it talks to."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any

import pytest

from bot.services import Services
from bot.slack.app import create_app
from bot.slack.server import make_http_server, serve_http_in_thread
from bot.slack.settings import SlackSettings
from retrieval import Corpus, RetrievalSettings
from retrieval.sources import page_text
from tests.support.slack_api import FakeSlackAPI

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-1-test"
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "daily_papers_page.txt"


SAMPLE_DAY = date(2025, 5, 16)  # the sample page's day: its papers are news on the day after
SAMPLE_NEWS_TIME = datetime.combine(SAMPLE_DAY + timedelta(days=1), dt_time(9), UTC).timestamp()


def ingested_corpus(data_dir: Path, tiktoken_dir: Path, embedder: Any) -> Corpus:
    settings = RetrievalSettings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        tiktoken_cache_dir=tiktoken_dir,
    )
    corpus = Corpus(settings, embedder=embedder)
    records = page_text.parse(SAMPLE.read_bytes(), origin="sample", page_date=SAMPLE_DAY)
    corpus.ingest(list(records))
    return corpus


@dataclass
class SlackHarness:
    api: FakeSlackAPI
    services: Services
    settings: SlackSettings
    url: str
    app: Any


def slack_settings(api: FakeSlackAPI, **overrides: Any) -> SlackSettings:
    values: dict[str, Any] = {
        "bot_token": BOT_TOKEN,
        "signing_secret": SECRET,
        "slack_api_url": api.base_url,
        "stream_update_seconds": 0.2,
    }
    values.update(overrides)
    return SlackSettings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def corpus(
    tmp_path_factory: pytest.TempPathFactory, tiktoken_dir: Path, local_embedder: Any
) -> Iterator[Corpus]:
    """The 30 sample papers with the real embedder, ingested once per test module."""
    corpus = ingested_corpus(tmp_path_factory.mktemp("slack-data"), tiktoken_dir, local_embedder)
    yield corpus
    corpus.close()


@pytest.fixture
def services(corpus: Corpus) -> Services:
    return Services.build(corpus.settings, corpus=corpus, llm=None)


@pytest.fixture
def harness_factory(
    services: Services,
) -> Iterator[Any]:
    """Start the fake API and the app's HTTP server; stop both at the end of the test."""
    started: list[tuple[FakeSlackAPI, Any]] = []

    def start(**overrides: Any) -> SlackHarness:
        api = FakeSlackAPI(ts_start=1700000000.0).start()
        settings = slack_settings(api, **overrides)
        app = create_app(settings, services)
        server = make_http_server(
            app, "127.0.0.1", 0, lambda: {"ok": True}, gate=services.answer_queue.gate
        )
        serve_http_in_thread(server)
        started.append((api, server))
        port = server.server_address[1]
        return SlackHarness(api, services, settings, f"http://127.0.0.1:{port}/slack/events", app)

    yield start
    for api, server in started:
        server.shutdown()
        server.server_close()
        api.stop()
