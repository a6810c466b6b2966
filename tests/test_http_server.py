"""HTTP mode on a production server: the ASGI app (bot/slack/asgi.py) under uvicorn
(bot/slack/server.py) screens requests before Bolt parses them, serves /healthz and /readyz,
and a real `paperbot serve` logs JSON lines without request bodies and stops on SIGTERM."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.slack.asgi import SlackASGI, create_asgi_app
from bot.slack.server import HttpServer, make_http_server, serve_http_in_thread
from tests.support.chroma_server import free_port
from tests.support.slack_api import FakeSlackAPI
from tests.support.slack_fixtures import (
    SECRET,
    SlackHarness,
    corpus,
    harness_factory,
    services,
    slack_settings,
)
from tests.support.slack_requests import (
    CHANNEL_ID,
    app_mention_event,
    event_callback,
    new_ts,
    post,
    sign,
    url_verification,
)

__all__ = ["corpus", "harness_factory", "services"]
pytestmark = pytest.mark.integration
MARKER = "zebra-body-marker-4711"


@pytest.fixture
def slack(harness_factory: Any) -> SlackHarness:
    return harness_factory()


def _raw(port: int, head: bytes, body: bytes = b"", timeout: float = 10.0) -> tuple[int, float]:
    """Send raw bytes; the status code of the answer and the seconds it took."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + body)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 "), data
    return int(data.split()[1]), time.monotonic() - start


def _port(h: SlackHarness) -> int:
    return int(h.url.split(":")[2].split("/")[0])


def _answered(h: SlackHarness, thread_ts: str) -> list[Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        replies = h.api.messages(CHANNEL_ID, thread_ts=thread_ts)
        if replies and not replies[-1].text.startswith("🔎"):
            return replies
        time.sleep(0.05)
    raise AssertionError(f"no answer in {thread_ts}")


# ---------------------------------------------------------------- Slack requests
def test_signed_url_verification_and_mention_are_served(slack: SlackHarness) -> None:
    response = post(slack.url, url_verification("abc123"), secret=SECRET)
    assert response.status_code == 200 and "abc123" in response.text
    ts = new_ts()
    question = "Which paper introduces the Candidate Pool Strategy for Gaussians?"
    response = post(slack.url, event_callback(app_mention_event(question, ts=ts)), secret=SECRET)
    assert response.status_code == 200 and response.elapsed.total_seconds() < 3
    replies = _answered(slack, ts)
    assert len(replies) == 1 and replies[0].text


def test_a_forged_20mb_post_gets_413_unread_while_a_signed_request_is_acked(
    slack: SlackHarness,
) -> None:
    port = _port(slack)
    head = (
        b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (20 * 1024 * 1024)
    )
    results: dict[str, Any] = {}

    def forged() -> None:
        results["forged"] = _raw(port, head, b"x" * 65536)  # the rest is never sent

    thread = threading.Thread(target=forged)
    thread.start()
    response = post(slack.url, url_verification("fast"), secret=SECRET)
    thread.join(10)
    status, seconds = results["forged"]
    assert status == 413 and seconds < 2
    assert response.status_code == 200 and response.elapsed.total_seconds() < 1


def test_a_streamed_body_over_the_cap_gets_413(slack: SlackHarness) -> None:
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(20)) + b"0\r\n\r\n"
    head = (
        b"POST /slack/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        + b"".join(f"{k}: {v}\r\n".encode() for k, v in sign("x", SECRET).items())
        + b"\r\n"
    )
    assert _raw(_port(slack), head, body)[0] == 413


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"Content-Length": "-5"}, b"", 400),
        ({"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=ab"}, b"{}", 401),
        ({}, b"{}", 401),  # unsigned
        ({"X-Slack-Request-Timestamp": "1", "X-Slack-Signature": "v0=ab"}, b"{}", 401),  # stale
        (None, b"\xff\xfe{not json", 400),  # a malformed (not UTF-8) body
        (None, b'{"forged": "', 401),  # a signature made for another body
        (None, ("payload=%7B" + MARKER).encode(), None),  # signed but malformed: no 500
    ],
)
def test_bad_requests_get_4xx_and_no_body_in_the_logs(
    slack: SlackHarness,
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str] | None,
    body: bytes,
    expected: int | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    body = body + MARKER.encode()
    if headers is None:
        headers = sign(body, SECRET) if expected is None else sign("other body", SECRET)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if "Content-Length" not in headers:
        extra += f"Content-Length: {len(body)}\r\n"
    head = f"POST /slack/events HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()
    status, _ = _raw(_port(slack), head, body)
    if expected is None:
        assert 200 <= status < 500
    else:
        assert status == expected
    assert MARKER not in caplog.text


def test_unknown_paths_are_404_and_wrong_methods_405(slack: SlackHarness) -> None:
    base = slack.url.removesuffix("/slack/events")
    assert httpx.get(base + "/nope").status_code == 404
    assert httpx.get(slack.url).status_code == 405


def test_a_stalled_connection_is_closed_without_holding_a_thread(services: Any) -> None:
    with FakeSlackAPI() as api:
        from bot.slack.app import create_app

        app = create_app(slack_settings(api), services)
        server = make_http_server(app, "127.0.0.1", 0, lambda: {"ok": True}, header_timeout=0.5)
        serve_http_in_thread(server)
        try:
            threads = threading.active_count()
            socks = [socket.create_connection(server.server_address, timeout=5) for _ in range(50)]
            for sock in socks:
                sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nX-Slow")
            time.sleep(0.2)
            assert threading.active_count() <= threads + 2  # no thread per connection
            started = time.monotonic()
            for sock in socks:
                assert sock.recv(1024) == b""  # closed by the server
                sock.close()
            assert time.monotonic() - started < 3
            ok = post(
                f"http://127.0.0.1:{server.server_address[1]}/slack/events",
                url_verification("still"),
                secret=SECRET,
            )
            assert ok.status_code == 200
        finally:
            server.shutdown()


# ---------------------------------------------------------------- health
def test_healthz_and_readyz(services: Any) -> None:
    with FakeSlackAPI() as api:
        settings = slack_settings(api)
        asgi = create_asgi_app(settings, services, auth={"ok": True, "team": "T"})
        down = create_asgi_app(
            settings, services, bolt_app=asgi.bolt_app, auth={"ok": False, "error": "invalid_auth"}
        )
        queued = create_asgi_app(
            settings, services, bolt_app=asgi.bolt_app, queue=lambda: {"depth": 3}
        )
        results = {
            name: _health(app) for name, app in (("up", asgi), ("down", down), ("q", queued))
        }
    (live, live_body), (ready, ready_body) = results["up"]
    assert live == 200 and live_body["ok"] and live_body["papers"] == 30
    assert ready == 200 and ready_body["ok"], ready_body
    for part in ("state_store", "vector_store", "model", "slack_auth", "feeds"):
        assert ready_body[part]["ok"], part
    assert ready_body["vector_store"]["papers"] == 30
    (live, _), (ready, ready_body) = results["down"]
    assert live == 200 and ready == 503 and ready_body["slack_auth"]["error"] == "invalid_auth"
    assert results["q"][1][1]["queue"] == {"ok": True, "depth": 3}
    assert "bm25_warm" not in ready_body  # a corpus that does not warm shows nothing


def test_readyz_shows_the_bm25_warm_up(services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.services import Services
    from retrieval import Corpus, lexical_warm

    monkeypatch.setattr(lexical_warm, "MIN_POSTINGS", 2)
    # a corpus of its own on the module's data: the shared one must not start warming
    corpus = Corpus(services.corpus.settings, embedder=services.corpus.embedder)
    warming = Services.build(corpus.settings, corpus=corpus, llm=None)
    try:
        assert corpus.keep_lexical_warm().wait(30)
        generation = corpus.state.generation
        with FakeSlackAPI() as api:
            asgi = create_asgi_app(slack_settings(api), warming, auth={"ok": True, "team": "T"})
            [_, (ready, body)] = _health(asgi)
    finally:
        corpus.close()
        warming.store.close()
    assert ready == 200 and body["bm25_warm"]["ok"] and not body["bm25_warm"]["running"]
    fields = body["bm25_warm"]["fields"]
    assert set(fields) == {"chunks", "papers"} and fields["chunks"]["columns"] > 0
    assert fields["chunks"]["generation"] == generation and fields["papers"]["mib"] >= 0


def _health(asgi: SlackASGI) -> list[tuple[int, dict[str, Any]]]:
    server = HttpServer(asgi, "127.0.0.1", 0)
    serve_http_in_thread(server)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        out = []
        for path in ("/healthz", "/readyz"):
            response = httpx.get(base + path, timeout=10)
            out.append((response.status_code, response.json()))
        return out
    finally:
        server.shutdown()


def test_port_in_use_is_one_line_naming_the_fix() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match=r"Cannot listen on 127\.0\.0\.1:.*PAPERBOT_HTTP_PORT"):
            HttpServer(SlackASGI(None, signing_secret=None), "127.0.0.1", taken.getsockname()[1])


def test_a_bad_token_at_start_is_one_line_naming_the_fix(services: Any) -> None:
    from bot.slack.app import create_app
    from retrieval import PaperbotError

    with FakeSlackAPI() as api:
        api.fail_next("auth.test", error="invalid_auth")
        with pytest.raises(PaperbotError) as raised:
            create_app(slack_settings(api), services)
    message = str(raised.value)
    assert "Slack refused the bot token (invalid_auth)" in message and "SLACK_BOT_TOKEN" in message
    assert "\n" not in message


# ---------------------------------------------------------------- logs
def test_json_log_lines_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.cli import main

    monkeypatch.setenv("PAPERBOT_LOG_FORMAT", "json")
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    try:
        main._configure_logging(logging.INFO)
        logging.getLogger("paperbot.test").info("hello %s", "world")
        try:
            raise ValueError("broken\nsecond line")
        except ValueError:
            logging.getLogger("paperbot.test").exception("failed")
    finally:
        logging.basicConfig(handlers=[logging.NullHandler()], force=True)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["message"] == "hello world" and lines[0]["level"] == "INFO"
    assert lines[0]["logger"] == "paperbot.test" and lines[0]["time"].endswith("+00:00")
    assert lines[1]["error"] == "broken" and "exc_info" not in lines[1]


# ---------------------------------------------------------------- a real `paperbot serve`
def _serve(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", *args, "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait(
    url: str, process: subprocess.Popen[str], ready: Callable[[httpx.Response], bool]
) -> httpx.Response:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited: {process.communicate()[0]}")
        try:
            response = httpx.get(url, timeout=5)
            if ready(response):
                return response
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"serve never became ready at {url}")


@pytest.fixture
def serve_env(
    tmp_path: Path, tiktoken_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    picks = tmp_path / "picks.jsonl"
    picks.write_text(
        json.dumps(
            {"title": "A served paper", "abstract": "A paper about reranking retrieved passages."}
        )
    )
    return {
        **os.environ,
        "PAPERBOT_DATA_DIR": str(tmp_path / "data"),
        "PAPERBOT_TIKTOKEN_CACHE_DIR": str(tiktoken_dir),
        "PAPERBOT_FEEDS": f"file:{picks}",
        "PAPERBOT_MAX_RETRIES": "0",
        "SLACK_BOT_TOKEN": "xoxb-1-test",
        "PAPERBOT_HTTP_HOST": "127.0.0.1",
        "PAPERBOT_EMBEDDING_THREADS": "1",
        "PAPERBOT_LOG_FORMAT": "json",
        "PAPERBOT_ENV_FILE": str(tmp_path / "none.env"),
    }


def test_serve_http_json_logs_health_no_bodies_and_sigterm(serve_env: dict[str, str]) -> None:
    port = free_port()
    with FakeSlackAPI() as api:
        env = {
            **serve_env,
            "SLACK_SIGNING_SECRET": SECRET,
            "PAPERBOT_SLACK_API_URL": api.base_url,
            "PAPERBOT_HTTP_PORT": str(port),
        }
        process = _serve(env)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait(base + "/healthz", process, lambda r: r.json().get("papers") == 1)
            ready = _wait(base + "/readyz", process, lambda r: r.status_code == 200).json()
            assert ready["ok"] and ready["slack_auth"]["ok"] and ready["feeds"]["ok"]
            warm = ready["bm25_warm"]  # serve warms; the sample corpus has no long column
            assert warm["ok"] and warm["budget_mib"] == 160 and isinstance(warm["running"], bool)
            forged = httpx.post(base + "/slack/events", content=f'{{"x": "{MARKER}"}}')
            assert forged.status_code == 401
            signed = post(base + "/slack/events", url_verification("live"), secret=SECRET)
            assert signed.status_code == 200 and "live" in signed.text
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0, output
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    messages = [line["message"] for line in lines]
    assert any("listens on http://127.0.0.1" in m for m in messages)
    assert "stopped" in messages
    # the BM25 fields are warmed at startup and again after the feed's ingest changed them
    warmed = [m for m in messages if m.startswith("BM25 chunks field at generation")]
    assert len({m.split()[5] for m in warmed}) >= 2, messages
    assert MARKER not in output and "Traceback" not in output and "xoxb-1-test" not in output


@pytest.mark.parametrize("connecting", [False, True], ids=["connected", "still-connecting"])
def test_serve_socket_mode_has_a_health_side_port_and_stops_on_sigterm(
    serve_env: dict[str, str], connecting: bool
) -> None:
    """Socket Mode serves /healthz and /readyz on the health side port and stops on SIGTERM
    with exit 0, also when the SIGTERM lands while the client is still connecting (Slack's
    apps.connections.open is slow here)."""
    from tests.support.socket_mode import FakeSocketModeServer

    port = free_port()
    with FakeSocketModeServer() as sm, FakeSlackAPI(socket_mode_url=sm.new_url) as api:
        if connecting:
            api.delay_next("apps.connections.open", 3.0)
        env = {
            **serve_env,
            "SLACK_APP_TOKEN": "xapp-1-test",
            "PAPERBOT_SLACK_API_URL": api.base_url,
            "PAPERBOT_HEALTH_PORT": str(port),
        }
        process = _serve(env)
        try:
            base = f"http://127.0.0.1:{port}"
            if connecting:
                _wait(base + "/healthz", process, lambda r: r.status_code == 200)
                time.sleep(0.5)  # the health port opens just before the client connects
                assert not api.calls_to("apps.connections.open")  # still inside the slow call
            else:
                live = _wait(base + "/healthz", process, lambda r: r.json().get("papers") == 1)
                assert live.status_code == 200
                ready = _wait(base + "/readyz", process, lambda r: r.status_code == 200).json()
                assert ready["ok"] and ready["slack_auth"]["ok"]
                assert httpx.post(base + "/slack/events", content="{}").status_code == 404
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0, output
    messages = [json.loads(line)["message"] for line in output.splitlines() if line.strip()]
    assert "stopped" in messages, messages
    assert "Traceback" not in output and "xapp-1-test" not in output, output


def test_the_module_level_app_runs_under_uvicorn(serve_env: dict[str, str]) -> None:
    import bot.slack.asgi

    assert bot.slack.asgi.app._app is None  # importing built nothing
    port = free_port()
    with FakeSlackAPI() as api:
        env = {**serve_env, "SLACK_SIGNING_SECRET": SECRET, "PAPERBOT_SLACK_API_URL": api.base_url}
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bot.slack.asgi:app", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            ready = _wait(base + "/readyz", process, lambda r: r.status_code == 200).json()
            assert ready["slack_auth"]["ok"] and ready["queue"]["ok"]
            signed = post(base + "/slack/events", url_verification("lazy"), secret=SECRET)
            assert signed.status_code == 200 and "lazy" in signed.text
            assert httpx.post(base + "/slack/events", content="{}").status_code == 401
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    # uvicorn re-raises the SIGTERM once it has shut down cleanly
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output and "Traceback" not in output


def test_serve_with_slack_unreachable_is_one_line(serve_env: dict[str, str]) -> None:
    env = {
        **serve_env,
        "SLACK_SIGNING_SECRET": SECRET,
        "PAPERBOT_SLACK_API_URL": f"http://127.0.0.1:{free_port()}/api/",
        "PAPERBOT_FEEDS": "",
    }
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert (
        "Cannot reach the Slack API" in result.stderr and "PAPERBOT_SLACK_API_URL" in result.stderr
    )
