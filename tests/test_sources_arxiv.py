"""arXiv Atom feeds: parsing the real API shape, error feeds, and polite paging."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from retrieval.errors import SourceError
from retrieval.models import Paper, RecordError
from retrieval.sources import arxiv
from tests.support.feed_server import FeedServer

PAYLOADS = Path(__file__).resolve().parent / "payloads"
TWO = (PAYLOADS / "arxiv_two_entries.xml").read_bytes()
LAST = (PAYLOADS / "arxiv_last_page.xml").read_bytes()
ERROR = (PAYLOADS / "arxiv_error.xml").read_bytes()
EMPTY = (PAYLOADS / "arxiv_empty.xml").read_bytes()


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as running:
        yield running


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def _fetch(server: FeedServer, sleeps: Sleeps, **kwargs: object) -> list[bytes]:
    options: dict[str, object] = {
        "max_results": 10,
        "base_url": server.url + "/api/query",
        "timeout": 5,
        "retries": 1,
        "delay_seconds": 3.0,
        "page_size": 2,
        "sleep": sleeps,
        **kwargs,
    }
    return list(arxiv.fetch(**options))  # type: ignore[arg-type]


def test_parse_two_entries_with_versions_and_metadata() -> None:
    first, second = arxiv.parse(TWO, origin="feed.xml")
    assert isinstance(first, Paper) and isinstance(second, Paper)
    assert (first.arxiv_id, first.version) == ("2410.17243", 2)
    assert (second.arxiv_id, second.version) == ("2410.16251", 1)
    assert first.title == (
        "Breaking the Memory Barrier: Near Infinite Batch Size Scaling for Contrastive Loss"
    )
    assert first.abstract.startswith("Contrastive loss is a powerful approach")
    assert "\n" not in first.abstract
    assert first.authors == ("Zesen Cheng", "Hang Zhang", "Lidong Bing")
    assert first.categories == ("cs.CV", "cs.AI")  # primary category first
    assert (first.published, first.updated) == (date(2024, 10, 22), date(2024, 10, 24))
    assert first.url == "https://arxiv.org/abs/2410.17243v2"
    assert first.pdf_url == "https://arxiv.org/pdf/2410.17243v2"
    assert first.source == "arxiv"
    assert second.abstract.endswith("retraining from scratch & at low cost.")


def test_old_style_id() -> None:
    [paper] = arxiv.parse(LAST, origin="feed.xml")
    assert isinstance(paper, Paper)
    assert (paper.arxiv_id, paper.version) == ("math/0211159", 1)
    assert paper.categories == ("math.DG", "math.GT")


def test_error_feed_is_a_source_error_with_arxivs_message() -> None:
    with pytest.raises(SourceError, match=r"arXiv API error .*incorrect id format for 1234\.5678"):
        list(arxiv.parse(ERROR, origin="query"))


def test_malformed_xml_names_the_position() -> None:
    with pytest.raises(SourceError, match=r"feed\.xml is not valid XML: .* line \d+, column \d+"):
        list(arxiv.parse(TWO[:1500], origin="feed.xml"))


def test_not_an_atom_feed() -> None:
    with pytest.raises(SourceError, match="not an Atom feed"):
        list(arxiv.parse(b"<html><body>Service unavailable</body></html>", origin="x"))


def test_entity_expansion_is_refused() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE f [<!ENTITY a "aaaa">]><feed>&a;</feed>'
    with pytest.raises(SourceError, match="unsafe XML"):
        list(arxiv.parse(bomb, origin="x"))


def test_bad_entry_is_a_record_error_and_others_land() -> None:
    broken = TWO.replace(b"<published>2024-10-22T17:59:30Z", b"<published>yesterday", 1)
    first, second = arxiv.parse(broken, origin="feed.xml")
    assert isinstance(first, RecordError)
    assert first.record.startswith('record 1 ("Breaking the Memory Barrier')
    assert "published 'yesterday' is not an ISO date" in first.reason
    assert isinstance(second, Paper)


def test_empty_feed_has_no_records() -> None:
    assert list(arxiv.parse(EMPTY, origin="feed.xml")) == []


def test_fetch_pages_politely(server: FeedServer) -> None:
    server.enqueue("/api/query", 200, TWO)
    server.enqueue("/api/query", 200, LAST)
    sleeps = Sleeps()
    pages = _fetch(server, sleeps, query="all:contrastive", sort_by="submittedDate")
    assert pages == [TWO, LAST]
    params = [r.params for r in server.requests]
    assert [(p["start"], p["max_results"]) for p in params] == [("0", "2"), ("2", "2")]
    assert params[0]["search_query"] == "all:contrastive"
    assert (params[0]["sortBy"], params[0]["sortOrder"]) == ("submittedDate", "descending")
    assert sleeps.calls == [3.0]  # one pause, between the two requests
    papers = [r for page in pages for r in arxiv.parse(page, origin="live")]
    assert len(papers) == 3


def test_fetch_stops_at_max_results(server: FeedServer) -> None:
    server.enqueue("/api/query", 200, TWO)
    sleeps = Sleeps()
    assert len(_fetch(server, sleeps, query="all:x", max_results=2)) == 1
    assert sleeps.calls == []


def test_fetch_stops_on_an_empty_page(server: FeedServer) -> None:
    server.enqueue("/api/query", 200, EMPTY)
    assert len(_fetch(server, Sleeps(), query="all:zzzxqq")) == 1
    assert len(server.requests) == 1


def test_fetch_by_ids(server: FeedServer) -> None:
    server.enqueue("/api/query", 200, TWO)
    _fetch(server, Sleeps(), ids=["arXiv:2410.17243v2", "2410.16251", "2410.16251"])
    [request] = server.requests
    assert request.params["id_list"] == "2410.17243v2,2410.16251"
    assert request.params["max_results"] == "2"


def test_bad_id_fails_before_any_request(server: FeedServer) -> None:
    with pytest.raises(SourceError, match="'not-an-id' is not an arXiv id"):
        arxiv.fetch(
            ids=["2410.17243", "not-an-id"],
            max_results=5,
            base_url=server.url + "/api/query",
            timeout=5,
            retries=0,
            delay_seconds=3.0,
            page_size=10,
        )
    assert server.requests == []


def test_fetch_needs_a_query_or_ids() -> None:
    with pytest.raises(SourceError, match="needs a search query or a list of arXiv ids"):
        arxiv.fetch(
            max_results=5, base_url="http://x", timeout=5, retries=0, delay_seconds=0, page_size=5
        )


def test_http_400_error_feed_carries_arxivs_message(server: FeedServer) -> None:
    server.enqueue("/api/query", 400, ERROR)
    with pytest.raises(SourceError, match="HTTP 400 Bad Request: incorrect id format for 1234"):
        _fetch(server, Sleeps(), query="all:x")
    assert len(server.requests) == 1  # a 400 is not retried


def test_error_feed_with_200_is_a_source_error(server: FeedServer) -> None:
    server.enqueue("/api/query", 200, ERROR)
    with pytest.raises(SourceError, match="incorrect id format"):
        _fetch(server, Sleeps(), query="all:x")


def test_fetch_retries_a_503_with_arxiv_spacing(server: FeedServer) -> None:
    server.enqueue("/api/query", 503)
    server.enqueue("/api/query", 200, LAST)
    sleeps = Sleeps()
    assert _fetch(server, sleeps, query="all:x", max_results=1) == [LAST]
    assert sleeps.calls == [3.0]  # the retry backoff starts at the arXiv delay
