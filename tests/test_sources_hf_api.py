"""HF Daily Papers API parsing and fetching, and the shared HTTP helper (retries, failures)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from retrieval.errors import SourceError
from retrieval.models import Paper, RecordError
from retrieval.sources import hf_api
from retrieval.sources.http import USER_AGENT, get_bytes
from tests.support.feed_server import FeedServer

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "hf_daily_papers_api_sample.json"


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as running:
        yield running


class Sleeps:
    """A stand-in for time.sleep that records the waits instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def test_sample_gives_two_papers_with_all_fields() -> None:
    first, second = hf_api.parse(SAMPLE.read_bytes(), origin="api.json")
    assert isinstance(first, Paper) and isinstance(second, Paper)
    assert first.arxiv_id == first.paper_id == "2410.17243"
    assert first.title == (
        "Breaking the Memory Barrier: Near Infinite Batch Size Scaling for Contrastive Loss"
    )
    # Hard wraps are joined into single spaces.
    assert "\n" not in first.abstract and "  " not in first.abstract
    assert "where larger batch sizes enhance" in first.abstract
    assert first.authors[:2] == ("Zesen Cheng", "Hang Zhang") and len(first.authors) == 8
    assert (first.upvotes, first.comments) == (64, 3)
    assert first.published == date(2024, 10, 22)
    assert first.url == "https://huggingface.co/papers/2410.17243"
    assert first.source == "hf_api"
    assert second.title == "Can Knowledge Editing Really Correct Hallucinations?"


def test_a_bad_entry_does_not_stop_the_others() -> None:
    entries = json.loads(SAMPLE.read_text())
    del entries[0]["paper"]["summary"]
    entries.insert(1, {"title": "no paper object"})
    records = list(hf_api.parse(json.dumps(entries), origin="api.json"))
    missing, no_paper, good = records
    assert isinstance(missing, RecordError) and missing.reason == "missing or empty abstract"
    assert missing.record.startswith('record 1 ("Breaking the Memory Barrier')
    assert isinstance(no_paper, RecordError) and "paper" in no_paper.reason
    assert isinstance(good, Paper)


def test_wrong_field_type_is_a_record_error() -> None:
    entries = json.loads(SAMPLE.read_text())
    entries[0]["paper"]["upvotes"] = "many"
    first, second = hf_api.parse(json.dumps(entries), origin="api.json")
    assert isinstance(first, RecordError) and "upvotes" in first.reason
    assert isinstance(second, Paper)


def test_single_entry_object_is_accepted() -> None:
    entry = json.loads(SAMPLE.read_text())[1]
    [paper] = hf_api.parse(json.dumps(entry), origin="one.json")
    assert isinstance(paper, Paper) and paper.arxiv_id == "2410.16251"


def test_malformed_json_names_line_and_column() -> None:
    with pytest.raises(SourceError, match=r"api\.json is not valid JSON: .* line 2, column \d+"):
        list(hf_api.parse('[{"paper":\n  {"id": }]', origin="api.json"))


def test_not_a_list_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="expected the Daily Papers API list"):
        list(hf_api.parse('{"error": "Invalid date"}', origin="api"))


def test_fetch_asks_for_the_day(server: FeedServer) -> None:
    server.enqueue("/api/daily_papers", 200, SAMPLE.read_bytes())
    data = hf_api.fetch(
        date(2024, 10, 25), base_url=server.url + "/api/daily_papers", timeout=5, retries=0
    )
    assert len(list(hf_api.parse(data, origin="live"))) == 2
    [request] = server.requests
    assert request.params == {"date": "2024-10-25"}
    assert request.headers["user-agent"] == USER_AGENT


# --- the shared HTTP helper ---


def test_retries_5xx_then_succeeds(server: FeedServer) -> None:
    server.enqueue("/feed", 503)
    server.enqueue("/feed", 502)
    server.enqueue("/feed", 200, b"ok")
    sleeps = Sleeps()
    body = get_bytes(server.url + "/feed", timeout=5, retries=3, backoff=0.5, sleep=sleeps)
    assert body == b"ok"
    assert len(server.requests) == 3
    assert sleeps.calls == [0.5, 1.0]  # exponential backoff


def test_timeout_is_retried(server: FeedServer) -> None:
    server.enqueue("/feed", 200, b"late", delay=1.0)
    server.enqueue("/feed", 200, b"ok")
    sleeps = Sleeps()
    assert get_bytes(server.url + "/feed", timeout=0.2, retries=1, sleep=sleeps) == b"ok"
    assert sleeps.calls == [0.5]


def test_timeouts_give_up_with_a_clear_reason(server: FeedServer) -> None:
    server.enqueue("/feed", 200, b"late", delay=1.0)
    with pytest.raises(SourceError, match=r"/feed: timed out \(limit 0\.2 s\) after 1 attempt$"):
        get_bytes(server.url + "/feed", timeout=0.2, retries=0)


def test_429_honours_retry_after(server: FeedServer) -> None:
    server.enqueue("/feed", 429, b"slow down", {"Retry-After": "7"})
    server.enqueue("/feed", 200, b"ok")
    sleeps = Sleeps()
    assert get_bytes(server.url + "/feed", timeout=5, retries=2, sleep=sleeps) == b"ok"
    assert sleeps.calls == [7.0]


def test_retry_after_is_capped(server: FeedServer) -> None:
    server.enqueue("/feed", 429, b"", {"Retry-After": "86400"})
    server.enqueue("/feed", 200, b"ok")
    sleeps = Sleeps()
    get_bytes(server.url + "/feed", timeout=5, retries=1, sleep=sleeps)
    assert sleeps.calls == [60.0]


def test_persistent_5xx_gives_up_with_attempt_count(server: FeedServer) -> None:
    server.enqueue("/feed", 500)
    with pytest.raises(
        SourceError, match=r"/feed: HTTP 500 Internal Server Error after 3 attempts"
    ):
        get_bytes(server.url + "/feed", params={"a": 1}, timeout=5, retries=2, sleep=Sleeps())
    assert len(server.requests) == 3


def test_404_fails_at_once_without_retries(server: FeedServer) -> None:
    sleeps = Sleeps()
    with pytest.raises(
        SourceError, match=r"Could not fetch http://127\.0\.0\.1:\d+/missing: HTTP 404"
    ):
        get_bytes(server.url + "/missing", timeout=5, retries=3, sleep=sleeps)
    assert len(server.requests) == 1
    assert sleeps.calls == []


def test_dead_url_is_a_source_error_naming_the_url() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api/daily_papers"
    sleeps = Sleeps()
    with pytest.raises(SourceError) as caught:
        hf_api.fetch(date(2024, 10, 25), base_url=url, timeout=2, retries=2, sleep=sleeps)
    assert url in str(caught.value) and "after 3 attempts" in str(caught.value)
    assert "ConnectError" in str(caught.value)
    assert sleeps.calls == [0.5, 1.0]


def test_credentials_are_not_shown(server: FeedServer) -> None:
    url = server.url.replace("http://", "http://user:secret@") + "/missing"
    with pytest.raises(SourceError) as caught:
        get_bytes(url, timeout=5, retries=0)
    assert "secret" not in str(caught.value)
