"""`paperbot feeds add|list|remove|enable|disable|run`, the doctor's feeds check, and a real
`paperbot serve` process that polls a feed in the background and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from answers.settings import AnswerSettings
from bot.cli.doctor import Check, run_checks
from bot.cli.main import app
from bot.slack.settings import SlackSettings
from retrieval import RetrievalSettings
from tests.support.chroma_server import free_port
from tests.support.feed_server import FeedServer
from tests.support.slack_api import FakeSlackAPI

pytestmark = pytest.mark.integration
PAYLOADS = Path(__file__).parent / "payloads"


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as running:
        yield running


@pytest.fixture
def env(
    tmp_path: Path, tiktoken_dir: Path, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    values = {
        "PAPERBOT_DATA_DIR": str(tmp_path / "data"),
        "PAPERBOT_TIKTOKEN_CACHE_DIR": str(tiktoken_dir),
        "PAPERBOT_HF_API_URL": server.url + "/api/daily_papers",
        "PAPERBOT_ARXIV_API_URL": server.url + "/api/query",
        "PAPERBOT_ARXIV_DELAY_SECONDS": "0",
        "PAPERBOT_MAX_RETRIES": "0",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def invoke(*args: str) -> tuple[int, str]:
    """Exit code and standard output (logs go to stderr); an error is its one line."""
    result = CliRunner().invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        # what `paperbot` prints for a PaperbotError (bot/cli/main.py main())
        return 1, f"Error: {result.exception}"
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


def test_add_list_disable_remove(env: dict[str, str], tmp_path: Path) -> None:
    code, out = invoke("feeds", "add", "hf", "--tz", "Europe/Berlin")
    assert code == 0 and "Added feed hf: HF Daily Papers (Europe/Berlin days)" in out
    code, out = invoke("feeds", "add", "arxiv", "-c", "cs.CL", "-c", "cs.LG", "--max-results", "50")
    assert code == 0 and "Added feed arxiv-cs.CL-cs.LG" in out and "retry every 1h" in out
    (tmp_path / "picks.jsonl").write_text("")
    code, out = invoke("feeds", "add", "file", str(tmp_path / "picks.jsonl"), "--every", "10m")
    assert code == 0 and "Added feed picks" in out
    code, out = invoke("feeds", "list", "--json")
    feeds = {f["name"]: f for f in json.loads(out)}
    assert set(feeds) == {"hf", "arxiv-cs.CL-cs.LG", "picks"}
    assert feeds["hf"]["status"] == "pending" and feeds["hf"]["waited_for"]
    assert not feeds["picks"]["waited_for"] and feeds["picks"]["every"] == "every 10m"
    code, out = invoke("feeds", "disable", "picks")
    assert code == 0
    code, out = invoke("feeds", "list")
    assert code == 0 and "disabled" in out and "HF Daily Papers" in out
    code, out = invoke("feeds", "remove", "picks")
    assert code == 0 and "Removed feed picks" in out
    code, out = invoke("feeds", "list", "--json")
    assert [f["name"] for f in json.loads(out)] == ["arxiv-cs.CL-cs.LG", "hf"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("feeds", "add", "hf"), "exists already"),
        (("feeds", "add", "hf", "--name", "x", "--tz", "Berlin"), "Europe/Berlin"),
        (("feeds", "add", "arxiv", "-c", "CL"), "cs.CL"),
        (("feeds", "add", "arxiv"), "--category"),
        (("feeds", "add", "url", "example.org/feed"), "http(s) URL"),
        (("feeds", "add", "hf", "--name", "y", "--every", "1m"), "too often"),
        (("feeds", "remove", "nope"), "feeds list"),
        (("feeds", "run", "nope"), "No feed named 'nope'"),
    ],
)
def test_bad_input_is_one_line_naming_the_fix(
    env: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    assert invoke("feeds", "add", "hf")[0] == 0
    code, out = invoke(*args)
    assert code != 0 and message in out and "Traceback" not in out


def test_run_polls_now_one_line_per_feed_and_exits_1_on_failure(
    env: dict[str, str], server: FeedServer, sample_api_json: Path
) -> None:
    code, out = invoke("feeds", "run")
    assert code == 1 and "No feeds to run" in out and "paperbot feeds add hf" in out
    server.enqueue("/api/daily_papers", 200, sample_api_json.read_bytes())
    server.enqueue("/api/query", 200, (PAYLOADS / "arxiv_two_entries.xml").read_bytes())
    invoke("feeds", "add", "hf")
    invoke("feeds", "add", "arxiv", "-c", "cs.CV", "--max-results", "2")
    code, out = invoke("feeds", "run")
    assert code == 0, out
    lines = out.strip().splitlines()
    # each arXiv paper on the day of the listing that announced it (from its submission time)
    assert lines[0] == ("arxiv-cs.CV: 2 papers (1 listed 2024-10-23, 1 listed 2024-10-22), 2 new")
    # the same two papers on HF's list of 2024-10-25 (the entries' date): nothing new
    assert lines[1] == "hf: 2 papers listed 2024-10-25, 0 new"
    assert server.requests_to("/api/query")[0].params["search_query"] == "cat:cs.CV"
    code, out = invoke("feeds", "run", "--due-only")
    assert code == 0 and "skipped (due at" in out  # each feed keeps its schedule
    server.publish("/api/daily_papers", b"down", status=503)  # from now on
    code, out = invoke("feeds", "run", "hf")
    assert code == 1 and "hf: FAILED: Could not fetch" in out and "503" in out
    code, out = invoke("feeds", "list", "--json")
    hf = next(f for f in json.loads(out) if f["name"] == "hf")
    assert hf["status"] == "erroring" and hf["failures"] == 1 and hf["last_success"]


def test_feeds_declared_in_the_environment(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAPERBOT_FEEDS", "hf;arxiv:cs.CL")
    code, out = invoke("feeds", "list", "--json")
    assert code == 0 and [(f["name"], f["origin"]) for f in json.loads(out)] == [
        ("arxiv-cs.CL", "env"),
        ("hf", "env"),
    ]
    monkeypatch.setenv("PAPERBOT_FEEDS", "rss:x")
    code, out = invoke("feeds", "list")
    assert code == 1 and "PAPERBOT_FEEDS" in out


def test_doctor_fails_on_a_feed_that_keeps_failing(
    env: dict[str, str], server: FeedServer, sample_api_json: Path
) -> None:
    settings = RetrievalSettings(_env_file=None)  # type: ignore[call-arg]
    slack = SlackSettings(_env_file=None, feed_alert_failures=2)  # type: ignore[call-arg]
    answers = AnswerSettings(_env_file=None)  # type: ignore[call-arg]

    def feeds_check() -> Check:
        return next(c for c in run_checks(settings, answers, slack) if c.name == "feeds")

    check = feeds_check()
    assert check.ok and "paperbot feeds add hf" in check.detail
    invoke("feeds", "add", "hf")
    check = feeds_check()
    assert not check.ok and "never succeeded (not polled yet)" in check.detail
    server.enqueue("/api/daily_papers", 200, sample_api_json.read_bytes())
    invoke("feeds", "run")
    assert feeds_check().ok
    server.publish("/api/daily_papers", b"down", status=503)  # from now on
    invoke("feeds", "run")
    assert feeds_check().ok, "one failure is not yet an alarm"
    invoke("feeds", "run")
    check = feeds_check()
    assert not check.ok and "hf failed its last 2 polls" in check.detail
    assert "503" in check.detail and "paperbot feeds run" in check.fix


# ---------------------------------------------------------------- a real `paperbot serve`
def test_serve_polls_feeds_in_the_background_and_stops_on_sigterm(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    picks = tmp_path / "picks.jsonl"
    picks.write_text(
        json.dumps({"title": "Served from a file feed", "abstract": "A paper about reranking."})
    )
    port = free_port()
    with FakeSlackAPI() as api:
        process_env = {
            **os.environ,
            **env,
            "PAPERBOT_FEEDS": f"file:{picks}",
            "SLACK_BOT_TOKEN": "xoxb-1-test",
            "SLACK_SIGNING_SECRET": "secret",
            "PAPERBOT_SLACK_API_URL": api.base_url,
            "PAPERBOT_HTTP_HOST": "127.0.0.1",
            "PAPERBOT_EMBEDDING_THREADS": "1",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
            env=process_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            health = _wait_for_health(  # the paper lands a moment before the feed's status
                port,
                process,
                lambda h: (
                    h.get("papers") == 1 and [f.get("status") for f in h.get("feeds", [])] == ["ok"]
                ),
            )
            assert health["ok"] and health["feed_watcher"] == "running"
            [feed] = health["feeds"]
            assert (feed["name"], feed["status"], feed["last_seen"]) == ("picks", "ok", 1)
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0, output
    assert "feed picks: 1 papers listed" in output and "stopped" in output
    assert "Traceback" not in output


def _wait_for_health(
    port: int, process: subprocess.Popen[str], ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited: {process.communicate()[0]}")
        try:
            last = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
            if ready(last):
                return last
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"serve never became ready: {last}")
