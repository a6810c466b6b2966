"""`paperbot ingest` from live feeds (local HTTP servers) and from bad files, via the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli.main import app
from tests.support.feed_server import FeedServer

pytestmark = pytest.mark.integration
PAYLOADS = Path(__file__).parent / "payloads"


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as running:
        yield running


@pytest.fixture
def env(
    tmp_path: Path, tiktoken_dir: Path, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("PAPERBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PAPERBOT_TIKTOKEN_CACHE_DIR", str(tiktoken_dir))
    monkeypatch.setenv("PAPERBOT_HF_API_URL", server.url + "/api/daily_papers")
    monkeypatch.setenv("PAPERBOT_ARXIV_API_URL", server.url + "/api/query")
    monkeypatch.setenv("PAPERBOT_ARXIV_DELAY_SECONDS", "0")
    monkeypatch.setenv("PAPERBOT_MAX_RETRIES", "1")
    monkeypatch.setenv("PAPERBOT_EMBEDDING_BATCH_SIZE", "64")
    return tmp_path


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_ingest_hf_date_fetches_that_day(
    env: Path, server: FeedServer, sample_api_json: Path
) -> None:
    server.enqueue("/api/daily_papers", 200, sample_api_json.read_bytes())
    code, out, _ = _invoke("ingest", "--hf-date", "2024-10-25")
    assert code == 0, out
    assert server.requests_to("/api/daily_papers")[0].params == {"date": "2024-10-25"}
    code, out, _ = _invoke("papers", "show", "2410.17243", "--json")
    paper = json.loads(out)
    assert paper["upvotes"] == 64 and paper["source"] == "hf_api"
    assert paper["url"] == "https://huggingface.co/papers/2410.17243"


def test_ingest_arxiv_query(env: Path, server: FeedServer) -> None:
    server.enqueue("/api/query", 200, (PAYLOADS / "arxiv_two_entries.xml").read_bytes())
    code, out, _ = _invoke("ingest", "--arxiv-query", "cat:cs.CL", "--max-results", "2")
    assert code == 0, out
    assert server.requests_to("/api/query")[0].params["search_query"] == "cat:cs.CL"
    code, out, _ = _invoke("stats", "--json")
    assert json.loads(out)["by_source"] == {"arxiv": 2}


def test_a_dead_feed_fails_clearly_and_writes_nothing(env: Path, server: FeedServer) -> None:
    server.enqueue("/api/daily_papers", 503, b"down")
    code, _, err = _invoke("ingest", "--hf-date", "2024-10-25")
    assert code == 1
    assert "daily_papers" in err and "503" in err
    code, out, _ = _invoke("stats", "--json")
    assert json.loads(out)["papers"] == 0


def test_bad_records_are_named_and_good_ones_land(env: Path, tmp_path: Path) -> None:
    good = {"title": "A Good Paper", "abstract": "A perfectly ordinary abstract about retrieval."}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({"title": "No Abstract"}),
        json.dumps({"title": "Huge", "abstract": "word " * 25_000}),
        json.dumps(good),  # duplicate id in one batch
    ]
    feed = tmp_path / "mixed.jsonl"
    feed.write_bytes(
        ("\n".join(lines) + "\n").encode() + b'{"title": "\xff\xfe", "abstract": "x"}\n'
    )
    code, out, _ = _invoke("ingest", str(feed))
    assert code == 0
    assert "line 2" in out and "line 3" in out and "line 4" in out and "line 6" in out
    assert "limit is 20,000" in out and "duplicate" in out
    code, out, _ = _invoke("stats", "--json")
    assert json.loads(out)["papers"] == 1
    assert _invoke("ingest", str(feed), "--strict")[0] == 1


def test_malformed_documents_fail_as_a_whole(env: Path, tmp_path: Path) -> None:
    bad_json = tmp_path / "feed.json"
    bad_json.write_text('[{"paper": {"id": "2410.17243"', encoding="utf-8")
    bad_xml = tmp_path / "feed.xml"
    bad_xml.write_text("<feed><entry>", encoding="utf-8")
    for path in (bad_json, bad_xml):
        code, _, err = _invoke("ingest", str(path))
        assert code == 1 and path.name in err, err


def test_empty_index_search_says_so(env: Path) -> None:
    code, out, _ = _invoke("search", "anything")
    assert code == 0 and "No papers yet" in out and "paperbot ingest" in out
