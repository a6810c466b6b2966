"""Two `paperbot serve` replicas (real processes, HTTP mode, data dirs of their own) sharing
one PostgreSQL database (PAPERBOT_DATABASE_URL) and one `chroma run`, as issue 15 deploys
them: a burst of 23 distinct mentions, each delivered to both replicas (a Slack retry that
lands on the other one), is answered exactly once; a scheduled digest is posted once; a paper
in a file feed added while both run is ingested by one replica's feed watcher (the feed's
lease and due time: by one of them only); that replica then stops, and the other one's next
answer cites the paper.

Slack and the LLM are the local fakes (tests/support); the embedding model is the real
offline one. About 40-60 s on a loaded 2-core machine (two model loads).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.slack.store import BotStore
from retrieval import Corpus, RetrievalSettings
from retrieval.sources import page_text
from tests.support.chroma_server import ChromaServer, free_port
from tests.support.openai_server import FakeOpenAIServer
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.slack_api import FakeSlackAPI
from tests.support.slack_fixtures import SAMPLE, SECRET
from tests.support.slack_requests import CHANNEL_ID, app_mention_event, event_callback, new_ts, post

pytestmark = pytest.mark.integration

__all__ = ["postgres_server"]  # fixture

# a burst of distinct, realistic questions: the dev set's, and three broad ones
QUESTIONS = [
    *(
        json.loads(line)["question"]
        for line in (SAMPLE.parent / "dev_questions.jsonl").read_text().splitlines()
        if line.strip()
    ),
    *(
        f"What does the literature say about {topic}?"
        for topic in ("rectified flow", "Gaussian splatting", "video benchmarks")
    ),
]
DIGEST_CHANNEL = "C0DIGEST1"
NEW_TITLE = "Zorblax: sorting quantum gravel with hyperbolic marmot networks"


def _serve(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[str]:
    with log_path.open("a") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
        )


def _wait_until(condition: Callable[[], Any], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _healthy(port: int, process: subprocess.Popen[str], log_path: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"serve exited: {log_path.read_text()[-3000:]}")
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _answered(api: FakeSlackAPI, ts: str) -> bool:
    replies = api.bot_messages(CHANNEL_ID, ts)
    return bool(replies) and all(not r.text.startswith("🔎") for r in replies)


def test_two_replicas_share_one_postgres_and_one_chroma(
    tmp_path: Path,
    tiktoken_dir: Path,
    local_embedder: Any,
    chroma_server: ChromaServer,
    postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    url = postgres_server.new_database()
    shared = {
        "PAPERBOT_DATABASE_URL": url,
        "PAPERBOT_CHROMA_HOST": chroma_server.host,
        "PAPERBOT_CHROMA_PORT": str(chroma_server.port),
        "PAPERBOT_CHROMA_COLLECTION": f"replicas_{uuid.uuid4().hex[:8]}",
        "PAPERBOT_TIKTOKEN_CACHE_DIR": str(tiktoken_dir),
    }
    # the corpus: the sample page, listed today (so today's digest has papers)
    today = datetime.now(UTC).date()
    settings = RetrievalSettings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "ingester",
        tiktoken_cache_dir=tiktoken_dir,
        database_url=url,  # type: ignore[arg-type]
        chroma_host=chroma_server.host,
        chroma_port=chroma_server.port,
        chroma_collection=shared["PAPERBOT_CHROMA_COLLECTION"],
    )
    corpus = Corpus(settings, embedder=local_embedder)
    corpus.ingest(list(page_text.parse(SAMPLE.read_bytes(), origin="sample", page_date=today)))
    papers = corpus.state.count_papers()
    corpus.close()
    with BotStore.from_settings(settings) as store:  # a digest due now, in one channel
        store.set_schedule(DIGEST_CHANNEL, "00:00", "UTC", None, 3)

    reply = "From the indexed papers: this is covered by [1]."
    with FakeSlackAPI() as api, FakeOpenAIServer(default_reply=reply) as llm:
        base = {
            **os.environ,
            **shared,
            "SLACK_BOT_TOKEN": "xoxb-1-test",
            "SLACK_SIGNING_SECRET": SECRET,
            "PAPERBOT_SLACK_API_URL": api.base_url,
            "PAPERBOT_HTTP_HOST": "127.0.0.1",
            "PAPERBOT_EMBEDDING_THREADS": "1",
            "PAPERBOT_FEEDS": "",
            "PAPERBOT_LLM_BASE_URL": llm.base_url,
            "PAPERBOT_LLM_API_KEY": "sk-test",
            "PAPERBOT_LLM_MODEL": "gpt-test",
            "PAPERBOT_LLM_MAX_RETRIES": "0",
            "PAPERBOT_STREAM_UPDATE_SECONDS": "0.2",
            "PAPERBOT_ANSWER_WORKERS": "2",
            "PAPERBOT_TICK_SECONDS": "1",
        }
        envs = [{**base, "PAPERBOT_DATA_DIR": str(tmp_path / name)} for name in ("a", "b")]
        ports = [free_port(), free_port()]
        logs = [tmp_path / "serve-a.log", tmp_path / "serve-b.log"]
        started = time.monotonic()
        marks: dict[str, float] = {}
        procs = [_serve(env, port, log) for env, port, log in zip(envs, ports, logs, strict=True)]
        try:
            for proc, port, log in zip(procs, ports, logs, strict=True):
                _wait_until(lambda p=proc, n=port, f=log: _healthy(n, p, f), "serve", 180)
            urls = [f"http://127.0.0.1:{port}/slack/events" for port in ports]
            marks["both healthy"] = time.monotonic()

            # a burst, every mention delivered to both replicas
            asked = []
            for i, question in enumerate(QUESTIONS):
                ts = new_ts()
                body = event_callback(app_mention_event(question, ts=ts))
                for url_ in (urls[i % 2], urls[(i + 1) % 2]):
                    assert post(url_, body, secret=SECRET).status_code == 200
                asked.append(ts)
            _wait_until(lambda: all(_answered(api, ts) for ts in asked), "the answers")
            for ts in asked:
                replies = api.bot_messages(CHANNEL_ID, ts)
                assert len(replies) == 1, f"thread {ts}: {[r.text for r in replies]}"
            with BotStore.from_settings(settings) as store:
                jobs = store.jobs()
            assert Counter(j["state"] for j in jobs) == {"done": len(QUESTIONS)}, "one job each"
            assert all(j["attempts"] == 1 for j in jobs)
            marks["burst answered"] = time.monotonic()

            # the scheduled digest: both replicas tick every second, one posts it
            def posted() -> bool:
                with BotStore.from_settings(settings) as store:
                    status = store.digest_status(DIGEST_CHANNEL, today.isoformat())
                return status is not None and status["status"] in ("posted", "empty")

            _wait_until(posted, "the digest", 120)
            time.sleep(3)  # three more ticks of each replica
            parents = [m for m in api.bot_messages(DIGEST_CHANNEL) if not m.is_reply]
            assert len(parents) == 1, [m.text[:80] for m in parents]
            marks["digest posted once"] = time.monotonic()

            # a feed added while both run (its definition lands in the shared store, due at
            # once): one replica's watcher ingests its paper, the other's next answer cites it
            abstract = (
                "Zorblax sorts quantum gravel with hyperbolic marmot networks, and sorts "
                "37 percent faster than any earlier gravel sorter."
            )
            feed_file = tmp_path / "feed.jsonl"
            feed_file.write_text(json.dumps({"title": NEW_TITLE, "abstract": abstract}) + "\n")
            added = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bot.cli",
                    "feeds",
                    "add",
                    "file",
                    str(feed_file),
                    "--name",
                    "lab",
                ],
                env=envs[0],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert added.returncode == 0, added.stdout + added.stderr

            def ingested_by() -> list[int]:
                return [i for i, f in enumerate(logs) if "feed lab: 1 papers" in f.read_text()]

            _wait_until(ingested_by, "the feed's poll of the new paper", 150)
            # both run on for longer than a watcher's shortest sleep (5 s): the other replica
            # looks at the feed again and finds it polled (its next due time), so one poll
            time.sleep(6)
            [polled] = ingested_by()
            other = 1 - polled
            marks[f"ingested by {'ab'[polled]}'s feed watcher"] = time.monotonic()
            # the replica that ingested stops (a deploy): the question can only go to the other
            procs[polled].send_signal(signal.SIGTERM)
            assert procs[polled].wait(timeout=60) == 0, logs[polled].read_text()[-3000:]
            ts = new_ts()
            body = event_callback(app_mention_event("What is Zorblax?", ts=ts))
            assert post(urls[other], body, secret=SECRET).status_code == 200
            _wait_until(lambda: _answered(api, ts), "the answer about the new paper")
            prompts = [json.dumps(r.body) for r in llm.requests_to("/v1/chat/completions")]
            assert any("hyperbolic marmot" in p for p in prompts), logs[other].read_text()[-3000:]
            [answer] = api.bot_messages(CHANNEL_ID, ts)
            shown = answer.text + json.dumps(answer.blocks or [])
            assert "Zorblax" in shown, shown[:2000]
            marks[f"cited by {'ab'[other]}"] = time.monotonic()
            with BotStore.from_settings(settings) as store:
                assert len(store.jobs()) == len(QUESTIONS) + 1
            last = started
            for what, at in marks.items():
                print(f"[replicas] {what}: +{at - last:.1f} s")
                last = at
            assert papers > 0
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for log in logs:
            assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    assert date.today()  # the test ran in one day's digest window
