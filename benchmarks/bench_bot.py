"""Slack bot benchmarks: acks under a burst, the answer-latency split, memory of `paperbot serve`.

Targets (from the project's issue):

1. Slack HTTP mode: 200 signed slash commands and 200 app_mention events sent concurrently from a
   client on 127.0.0.1, with the LLM server answering after a delay: every request acknowledged
   well within 3 s (p50/p99 ack latency reported), every question answered exactly once.
2. Answer latency split (retrieval, prompt building, LLM wait, verification, Slack post):
   paperbot's own overhead (everything except the LLM wait) p95 <= 150 ms at 100k chunks.
3. Memory: resident set of `paperbot serve` with 100k chunks indexed, reported.

How each is measured:

1. The real Bolt app (`create_app` + `Services.build` on the 30 sample papers ingested with the
   local MiniLM embedder, LLM = `build_chat_model` pointed at `FakeOpenAIServer`, which answers
   after `--llm-delay` seconds with a reply citing [1] and [2]) is served by
   `bot.server.make_http_server` on 127.0.0.1 in its own process, talking to a `FakeSlackAPI` in
   this process. A third process fires every signed request at once (httpx, asyncio, one
   connection per request as Slack does) and records each HTTP latency = the ack latency. Then
   this process waits until every mention thread holds exactly one bot message that is final
   (not the "🔎" placeholder, not a "▌" streaming state) and every slash command got exactly one
   response_url reply.
2. `QAService.answer` on the 100k-chunk index built by bench_search.py (reused from its cache,
   copied to a private dir so nothing here writes into it), LLM = `FakeOpenAIServer` with a
   small fixed delay; `Answer.timings_ms` per stage, plus the Slack post step timed here
   (remember_answer + blocks.answer_message + chat.update to the fake API). Also end to end
   through `bot.conversation.answer_in_thread` (the @mention path: placeholder, streaming,
   verification, final update) minus the LLM wait, and the extractive mode for comparison.
3. The real `paperbot serve` (HTTP mode) as a subprocess on the 30-paper and the 100k-chunk
   data dirs: VmRSS after /healthz answers (idle), then after a few signed app_mentions were
   answered (models and indexes loaded), and VmHWM.

    python benchmarks/bench_bot.py            # full (a few minutes)
    python benchmarks/bench_bot.py --quick    # 50 + 50 requests, 30 questions, 10k chunks
    python benchmarks/bench_bot.py --only burst --variants shipped 5:5 32:1024

A burst variant is WORKERS:BACKLOG: the answer threads (PAPERBOT_WORKERS, Bolt's listener
executor) and the HTTP server's listen backlog. "shipped" is bot/'s defaults; 5:5 is the app
before the fix (slack_bolt's default executor, socketserver's default backlog). The backlog is
a class attribute, so other values are set in the benchmark's own app process only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from benchmarks.common import (
    TIKTOKEN_DIR,
    WORK,
    fresh_dir,
    load_average,
    local_embedder,
    log,
    machine_info,
    make_settings,
    md_table,
    percentile,
    sample_papers,
    save_results,
    verdict,
)
from tests.servers.openai_server import CHAT_PATH, FakeOpenAIServer
from tests.servers.slack_api import FakeSlackAPI, SlackCall, StoredMessage
from tests.servers.slack_requests import (
    CHANNEL_ID,
    app_mention_event,
    content_type_of,
    event_callback,
    new_ts,
    post,
    sign,
    slash_command,
)

BOT_WORK = WORK / "bot"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-1-bench"
SAMPLE_VERSION = 1
SEED = 20250516
ACK_LIMIT_S = 3.0
STDLIB_BACKLOG = 5  # socketserver.TCPServer.request_queue_size (bot.server before the fix)
BOLT_WORKERS = 5  # slack_bolt.App's default executor (create_app before PAPERBOT_WORKERS)


def shipped_workers() -> int:
    """The answer threads `create_app` gives Bolt by default (PAPERBOT_WORKERS)."""
    from bot.settings import SlackSettings

    field_ = SlackSettings.model_fields.get("workers")
    return int(field_.default) if field_ is not None else BOLT_WORKERS


def shipped_backlog() -> int:
    """The listen backlog of bot.server's HTTP server."""
    from bot.server import _ThreadingWSGIServer

    return int(_ThreadingWSGIServer.request_queue_size)


OVERHEAD_TARGET_MS = 150.0
PLACEHOLDER_PREFIX = "🔎"
STREAMING_SUFFIX = "▌"


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values),
        "mean": sum(values) / len(values),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile (kB) and Threads of a process, from /proc."""
    wanted = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads")
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in wanted:
                out[name] = int(value.split()[0])
    except (OSError, ValueError):
        pass
    return out


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


NETSTAT_COUNTERS = ("ListenOverflows", "ListenDrops", "SyncookiesSent", "SyncookiesFailed")


def tcp_counters() -> dict[str, int]:
    """Kernel TCP counters (this network namespace) that show a full listen queue."""
    out: dict[str, int] = {}
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return out
    for header, values in zip(lines[::2], lines[1::2], strict=False):
        for name, value in zip(header.split()[1:], values.split()[1:], strict=False):
            if name in NETSTAT_COUNTERS:
                out[name] = int(value)
    return out


def mib(kb: int | None) -> float:
    return (kb or 0) / 1024


_SOURCE = re.compile(r"^\[(\d+)\] [^\n]*\n(.+?)(?=\n\n\[\d+\] |\n\nQuestion:|\Z)", re.M | re.S)


def cited_reply(delay: float) -> Callable[[dict[str, Any]], str]:
    """A stand-in LLM: waits `delay` seconds, then answers with the first sentence of source [1]
    and of source [2], each cited (what a well-behaved model does)."""
    from retrieval.normalize import split_sentences

    def reply(body: dict[str, Any]) -> str:
        if delay:
            time.sleep(delay)
        user = next(
            (
                m.get("content", "")
                for m in reversed(body.get("messages", []))
                if m["role"] == "user"
            ),
            "",
        )
        sentences = []
        for number, text in _SOURCE.findall(str(user))[:2]:
            first = split_sentences(" ".join(text.split()))[:1]
            if first:
                sentences.append(f"{first[0].rstrip('.')} [{number}].")
        return " ".join(sentences) or "The indexed papers do not answer this question."

    return reply


def slack_settings(api_url: str, **overrides: Any) -> Any:
    from bot.settings import SlackSettings

    values: dict[str, Any] = {
        "bot_token": BOT_TOKEN,
        "signing_secret": SECRET,
        "slack_api_url": api_url,
    }
    values.update(overrides)
    return SlackSettings(_env_file=None, **values)  # type: ignore[call-arg]


def sample_template() -> Path:
    """The 30 sample papers ingested with the local embedder (built once, then copied)."""
    from retrieval import Corpus

    path = BOT_WORK / "sample-30"
    meta = path / "bench-meta.json"
    if meta.exists() and json.loads(meta.read_text()).get("version") == SAMPLE_VERSION:
        return path
    log("ingesting the 30 sample papers with the local embedder")
    fresh_dir(path)
    settings = make_settings(path)
    corpus = Corpus(settings, embedder=local_embedder(settings))
    report = corpus.ingest(sample_papers())
    corpus.close()
    meta.write_text(json.dumps({"version": SAMPLE_VERSION, "papers": len(report.new)}))
    return path


def copy_dir(src: Path, name: str, *, reuse: bool) -> Path:
    """A private copy of a data dir under benchmarks/.work/bot/ (so runs never write into the
    other benchmarks' indexes); with `reuse`, an existing copy of the same build is kept."""
    dst = BOT_WORK / name
    src_meta, dst_meta = src / "bench-meta.json", dst / "bench-meta.json"
    if reuse and dst_meta.exists() and dst_meta.read_text() == src_meta.read_text():
        return dst
    log(f"copying {src} -> {dst}")
    fresh_dir(dst)
    shutil.copytree(src, dst, dirs_exist_ok=True)
    return dst


def index_dir(chunks: int, *, fresh: bool = False) -> tuple[Path, dict[str, Any]]:
    """bench_search.py's cached index of `chunks` chunks (built the same way if missing), as a
    private copy; `fresh` copies it again (answers write to the state's caches)."""
    from benchmarks.bench_search import cached_index

    src, meta = cached_index(chunks, rebuild=False)
    return copy_dir(src, f"chunks-{chunks}", reuse=not fresh), meta


# --------------------------------------------------------------------------------------------
# 1. burst of signed requests against the real app
# --------------------------------------------------------------------------------------------

TEMPLATES = (
    "What does the paper “{title}” propose?",
    "What problem does “{title}” address?",
    "Summarize the main contribution of {title}.",
    "How does {short} work?",
    "What method is introduced in {title}?",
    "What are the key results reported for {short}?",
    "Which approach does {short} take?",
    "What is new in {title}?",
    "Explain the idea behind {short}.",
    "What does {short} improve over earlier work?",
    "What task is {short} designed for?",
    "How is {short} evaluated?",
    "What are the main components of {short}?",
    "Give a short overview of {title}.",
)


def burst_questions(n: int) -> list[str]:
    """`n` distinct questions about the 30 sample papers (templates x titles, shuffled)."""
    titles = [p.title for p in sample_papers()]
    questions = []
    for template in TEMPLATES:
        for title in titles:
            head = title.split(":")[0]
            short = head if ":" in title and len(head) <= 40 else title
            questions.append(template.format(title=title, short=short))
    questions = list(dict.fromkeys(questions))
    if n > len(questions):
        raise ValueError(f"only {len(questions)} distinct questions; ask for fewer")
    random.Random(SEED).shuffle(questions)
    return questions[:n]


def _app_process(
    data_dir: str,
    api_url: str,
    llm_url: str,
    workers: int,
    backlog: int,
    conn: Connection,
) -> None:
    """Child process: the real app on 127.0.0.1, reporting its port through `conn`."""
    import logging

    logging.basicConfig(
        level=logging.WARNING, format="[app] %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    from bot import server as bot_server
    from bot.settings import SlackSettings

    overrides: dict[str, Any] = {}
    if "workers" in SlackSettings.model_fields:  # PAPERBOT_WORKERS: the answer threads
        overrides["workers"] = workers
    elif workers != BOLT_WORKERS:  # older code: give Bolt the executor directly
        from concurrent.futures import ThreadPoolExecutor

        import slack_bolt

        original = slack_bolt.App.__init__

        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("listener_executor", ThreadPoolExecutor(max_workers=workers))
            original(self, *args, **kwargs)

        slack_bolt.App.__init__ = init  # type: ignore[method-assign]
    # The listen backlog is a class attribute (no setting): what-ifs set it here, in this
    # process only.
    bot_server._ThreadingWSGIServer.request_queue_size = backlog

    from bot.app import create_app
    from bot.server import make_http_server
    from bot.services import Services
    from retrieval import Corpus
    from retrieval.llm import build_chat_model

    settings = make_settings(
        Path(data_dir), llm_provider="openai", llm_base_url=llm_url, llm_model="gpt-test"
    )
    corpus = Corpus(settings, embedder=local_embedder(settings))
    services = Services.build(settings, corpus=corpus, llm=build_chat_model(settings))
    corpus.search("warm-up: open Chroma and BM25", 3)
    app = create_app(slack_settings(api_url, **overrides), services)
    server = make_http_server(
        app, "127.0.0.1", 0, lambda: {"ok": True, "papers": services.state.count_papers()}
    )
    conn.send(int(server.server_address[1]))
    conn.close()
    server.serve_forever()


def _trivial_process(backlog: int, conn: Connection) -> None:
    """Child process: the same threaded wsgiref server class as bot.server, serving a WSGI app
    that only reads the body and answers 200: the floor of the HTTP stack and the client."""
    from wsgiref.simple_server import make_server

    from bot import server as bot_server

    bot_server._ThreadingWSGIServer.request_queue_size = backlog

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b""]

    server = make_server(
        "127.0.0.1",
        0,
        application,
        server_class=bot_server._ThreadingWSGIServer,
        handler_class=bot_server._QuietHandler,
    )
    conn.send(int(server.server_address[1]))
    conn.close()
    server.serve_forever()


def run_floor(per_kind: int, backlog: int) -> dict[str, Any]:
    """The same burst against a trivial app on the same server class (nothing of paperbot)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_trivial_process, args=(backlog, child), daemon=True)
    proc.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("the trivial server did not start")
        url = f"http://127.0.0.1:{parent.recv()}/slack/events"
        items = []
        for i, question in enumerate(burst_questions(2 * per_kind)):
            if i % 2 == 0:
                tag = f"http://127.0.0.1:9/hooks/cmd-{i:04d}"
                items.append((f"cmd-{i}", slash_command(f"ask {question}", response_url=tag)))
            else:
                ts = new_ts()
                items.append((ts, event_callback(app_mention_event(question, ts=ts))))
        asyncio.run(_fire(url, items[:20]))  # warm-up
        before = tcp_counters()
        results = asyncio.run(_fire(url, items))
        after = tcp_counters()
    finally:
        proc.terminate()
        proc.join(10)
    ok = [ms for _, _, ms, status, _ in results if status == 200]
    return {
        "backlog": backlog,
        "requests": len(items),
        "ack_ms": stats(ok),
        "failed": len(items) - len(ok),
        "tcp_counters": {k: after.get(k, 0) - v for k, v in before.items()},
    }


@dataclass
class Sent:
    kind: str  # "slash" | "mention"
    key: str  # response_url tag or mention ts
    question: str
    body: str
    sent_at: float = 0.0  # time.time() when the request started
    ack_ms: float = 0.0
    status: int = 0
    response: str = ""


def _client_process(url: str, items: list[tuple[str, str]], conn: Connection) -> None:
    """Child process: send every (key, body) at once; report (key, sent_at, ms, status, text)."""
    conn.send(asyncio.run(_fire(url, items)))
    conn.close()


async def _fire(url: str, items: list[tuple[str, str]]) -> list[tuple[str, float, float, int, str]]:
    limits = httpx.Limits(max_connections=len(items) + 10, max_keepalive_connections=0)
    gate = asyncio.Event()

    async def one(
        client: httpx.AsyncClient, key: str, body: str
    ) -> tuple[str, float, float, int, str]:
        headers = {
            "Content-Type": content_type_of(body),
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            **sign(body, SECRET),
        }
        data = body.encode()
        await gate.wait()
        sent_at, start = time.time(), time.perf_counter()
        try:
            response = await client.post(url, content=data, headers=headers)
            status, text = response.status_code, response.text[:300]
        except httpx.HTTPError as exc:
            status, text = -1, f"{type(exc).__name__}: {exc}"
        return key, sent_at, (time.perf_counter() - start) * 1000, status, text

    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0)) as client:
        tasks = [asyncio.create_task(one(client, key, body)) for key, body in items]
        await asyncio.sleep(0.2)  # every task is parked at the gate
        gate.set()
        return list(await asyncio.gather(*tasks))


@dataclass
class Outcome:
    """What one question got, as seen in the fake Slack workspace."""

    final: bool = False
    messages: int = 0  # bot messages in the thread / response_url replies
    kind: str = "missing"  # llm | fallback | refused | error | pending | missing
    placeholder_at: float | None = None
    answered_at: float | None = None


def _classify(text: str, blocks: Any) -> str:
    blob = json.dumps(blocks or []) + text
    if "Answer generated by" in blob:
        return "llm"
    if "Extractive answer" in blob:
        return "fallback"
    if "Not in the indexed papers" in blob:
        return "refused"
    if text.startswith(PLACEHOLDER_PREFIX) or text.rstrip().endswith(STREAMING_SUFFIX):
        return "pending"
    return "error"


def collect(api: FakeSlackAPI, sent: Sequence[Sent]) -> dict[str, Outcome]:
    threads: dict[str, list[StoredMessage]] = {}
    for message in api.messages(CHANNEL_ID):
        if message.user == api.bot_user_id and message.is_reply and message.thread_ts:
            threads.setdefault(message.thread_ts, []).append(message)
    posts: dict[str, float] = {}
    for call in api.calls_to("chat.postMessage", ok=True):
        thread = str(call.params.get("thread_ts", ""))
        posts.setdefault(thread, call.at)
    updates: dict[str, float] = {}
    for call in api.calls_to("chat.update", ok=True):
        updates[str(call.params.get("ts", ""))] = call.at  # the last one wins
    hooks: dict[str, list[SlackCall]] = {}
    for call in api.calls_to("response_url"):
        hooks.setdefault(call.path.rsplit("/", 1)[-1], []).append(call)

    outcomes: dict[str, Outcome] = {}
    for item in sent:
        outcome = Outcome()
        if item.kind == "mention":
            bot = threads.get(item.key, [])
            outcome.messages = len(bot)
            outcome.placeholder_at = posts.get(item.key)
            if bot:
                last = bot[-1]
                outcome.kind = _classify(last.text, last.blocks)
                outcome.final = outcome.kind != "pending"
                if outcome.final:
                    outcome.answered_at = updates.get(last.ts, outcome.placeholder_at)
        else:
            calls = hooks.get(item.key, [])
            outcome.messages = len(calls)
            if calls:
                params = calls[-1].params
                outcome.kind = _classify(str(params.get("text", "")), params.get("blocks"))
                outcome.final = outcome.kind != "pending"
                outcome.answered_at = calls[0].at
        outcomes[item.key] = outcome
    return outcomes


class Sampler:
    """Samples a process's thread count and RSS every `interval` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.max_threads = 0
        self.max_rss_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            status = proc_status(self.pid)
            self.max_threads = max(self.max_threads, status.get("Threads", 0))
            self.max_rss_kb = max(self.max_rss_kb, status.get("VmRSS", 0))
            self._stop.wait(self.interval)


def run_burst(per_kind: int, llm_delay: float, workers: int, backlog: int) -> dict[str, Any]:
    data_dir = copy_dir(sample_template(), "burst-data", reuse=False)
    questions = burst_questions(2 * per_kind)
    ctx = mp.get_context("spawn")
    with (
        FakeSlackAPI() as api,
        FakeOpenAIServer(default_reply=cited_reply(llm_delay)) as llm,
    ):
        parent, child = ctx.Pipe()
        app_proc = ctx.Process(
            target=_app_process,
            args=(str(data_dir), api.base_url, llm.base_url, workers, backlog, child),
            daemon=True,
        )
        start = time.perf_counter()
        app_proc.start()
        if not parent.poll(300):
            app_proc.kill()
            raise RuntimeError("the app did not start within 300 s")
        port = parent.recv()
        assert app_proc.pid is not None
        pid = app_proc.pid
        startup_s = time.perf_counter() - start
        url = f"http://127.0.0.1:{port}/slack/events"
        try:
            # Warm-up and idle baseline: sequential instant commands (ack carries the reply).
            idle_ms = []
            for i in range(20):
                body = slash_command("help", response_url=api.response_url(f"warm-{i}"))
                response = post(url, body, secret=SECRET)
                assert response.status_code == 200, response.text
                idle_ms.append(response.elapsed.total_seconds() * 1000)
            api.reset()
            llm.reset()

            sent: list[Sent] = []
            for i, question in enumerate(questions):
                if i % 2 == 0:
                    tag = f"cmd-{i:04d}"
                    body = slash_command(f"ask {question}", response_url=api.response_url(tag))
                    sent.append(Sent("slash", tag, question, body))
                else:
                    ts = new_ts()
                    body = event_callback(app_mention_event(question, ts=ts))
                    sent.append(Sent("mention", ts, question, body))
            log(
                f"burst: {per_kind} slash commands + {per_kind} app_mentions at once, "
                f"LLM delay {llm_delay:.1f} s, Bolt workers {workers}, listen backlog {backlog}"
            )
            load_before = load_average()
            cpu_before = proc_cpu_seconds(pid)
            tcp_before = tcp_counters()
            with Sampler(pid) as sampler:
                client_parent, client_child = ctx.Pipe()
                client = ctx.Process(
                    target=_client_process,
                    args=(url, [(s.key, s.body) for s in sent], client_child),
                    daemon=True,
                )
                client.start()
                if not client_parent.poll(180):
                    client.kill()
                    raise RuntimeError("the client did not finish within 180 s")
                by_key = {s.key: s for s in sent}
                for key, sent_at, ms, status, text in client_parent.recv():
                    item = by_key[key]
                    item.sent_at, item.ack_ms, item.status, item.response = (
                        sent_at,
                        ms,
                        status,
                        text,
                    )
                client.join(10)
                tcp_after = tcp_counters()
                first_sent = min(s.sent_at for s in sent)
                acks_done = max(s.sent_at + s.ack_ms / 1000 for s in sent)
                log(f"all {len(sent)} requests acked in {acks_done - first_sent:.2f} s; waiting")

                # Requests that were not acked never reach the app: wait for the others, until
                # all are final or nothing has changed for 30 s.
                expected = sum(s.status == 200 for s in sent)
                deadline = time.monotonic() + 90 + 2 * len(sent) * (llm_delay + 0.3) / workers
                outcomes = collect(api, sent)
                progress, last_change = -1, time.monotonic()
                while time.monotonic() < deadline and time.monotonic() - last_change < 30:
                    done = sum(o.final for o in outcomes.values())
                    if done >= expected:
                        break
                    if done != progress:
                        progress, last_change = done, time.monotonic()
                    time.sleep(1.0)
                    outcomes = collect(api, sent)
                all_done_at = time.time()
                time.sleep(3.0)  # late duplicates would show up now
                outcomes = collect(api, sent)
            cpu_s = proc_cpu_seconds(pid) - cpu_before
            load_after = load_average()
            status_after = proc_status(pid)
        finally:
            app_proc.terminate()
            app_proc.join(10)
            if app_proc.is_alive():
                app_proc.kill()
        llm_requests = len(llm.requests_to(CHAT_PATH))
        post_calls = api.calls_to("chat.postMessage")
        update_calls = api.calls_to("chat.update")

    return summarize_burst(
        sent,
        outcomes,
        per_kind=per_kind,
        llm_delay=llm_delay,
        workers=workers,
        backlog=backlog,
        idle_ms=idle_ms,
        startup_s=startup_s,
        all_done_at=all_done_at,
        cpu_s=cpu_s,
        sampler=sampler,
        status_after=status_after,
        llm_requests=llm_requests,
        posts=len(post_calls),
        updates=len(update_calls),
        load=(load_before, load_after),
        tcp={k: tcp_after.get(k, 0) - v for k, v in tcp_before.items()},
    )


def summarize_burst(
    sent: Sequence[Sent],
    outcomes: dict[str, Outcome],
    *,
    per_kind: int,
    llm_delay: float,
    workers: int,
    backlog: int,
    idle_ms: list[float],
    startup_s: float,
    all_done_at: float,
    cpu_s: float,
    sampler: Sampler,
    status_after: dict[str, int],
    llm_requests: int,
    posts: int,
    updates: int,
    load: tuple[str, str],
    tcp: dict[str, int],
) -> dict[str, Any]:
    first_sent = min(s.sent_at for s in sent)
    acks_done = max(s.sent_at + s.ack_ms / 1000 for s in sent)
    kinds: dict[str, Any] = {}
    for kind in ("slash", "mention", "all"):
        items = [s for s in sent if kind in ("all", s.kind)]
        outs = [outcomes[s.key] for s in items]
        answered = [
            o.answered_at - s.sent_at
            for s, o in zip(items, outs, strict=True)
            if o.final and o.answered_at
        ]
        placeholders = [
            o.placeholder_at - s.sent_at
            for s, o in zip(items, outs, strict=True)
            if o.placeholder_at is not None
        ]
        counts: dict[str, int] = {}
        for o in outs:
            counts[o.kind] = counts.get(o.kind, 0) + 1
        kinds[kind] = {
            "n": len(items),
            "ack_ms": stats([s.ack_ms for s in items if s.status == 200]),
            "failed_ms": stats([s.ack_ms for s in items if s.status != 200]),
            "ack_over_3s": sum(s.ack_ms > ACK_LIMIT_S * 1000 for s in items),
            "http_errors": sum(s.status != 200 for s in items),
            "answered_once": sum(o.final and o.messages == 1 for o in outs),
            "duplicates": sum(max(o.messages - 1, 0) for o in outs),
            "orphaned_placeholders": sum(o.kind == "pending" for o in outs),
            "missing": sum(o.messages == 0 for o in outs),
            "kinds": counts,
            "answer_s": stats(answered),
            "placeholder_s": stats(placeholders),
        }
    errors = [
        f"{s.kind} {s.key}: HTTP {s.status} {s.response[:120]}" for s in sent if s.status != 200
    ]
    errors += [
        f"{s.kind} {s.key}: acked, then {outcomes[s.key].kind}"
        for s in sent
        if s.status == 200 and outcomes[s.key].kind in ("error", "fallback", "missing", "pending")
    ]
    last_answer = max((o.answered_at or 0.0) for o in outcomes.values())
    return {
        "per_kind": per_kind,
        "requests": len(sent),
        "llm_delay_s": llm_delay,
        "workers": workers,
        "backlog": backlog,
        "shipped": workers == shipped_workers() and backlog == shipped_backlog(),
        "app_startup_s": startup_s,
        "idle_ack_ms": stats(idle_ms),
        "acks_window_s": acks_done - first_sent,
        "ack_throughput_rps": len(sent) / max(acks_done - first_sent, 1e-9),
        "all_answered_s": (last_answer - first_sent) if last_answer else None,
        "wait_ended_s": all_done_at - first_sent,
        "answer_throughput_qps": len(sent) / max(last_answer - first_sent, 1e-9)
        if last_answer
        else 0.0,
        "kinds": kinds,
        "llm_requests": llm_requests,
        "chat_post_message_calls": posts,
        "chat_update_calls": updates,
        "app_cpu_s": cpu_s,
        "app_max_threads": sampler.max_threads,
        "app_max_rss_mib": mib(sampler.max_rss_kb),
        "app_threads_after": status_after.get("Threads", 0),
        "errors": errors[:20],
        "error_count": len(errors),
        "load_before": load[0],
        "load_after": load[1],
        "tcp_counters": tcp,
    }


# --------------------------------------------------------------------------------------------
# 2. answer latency split at 100k chunks
# --------------------------------------------------------------------------------------------


def answer_components() -> list[tuple[object, str, str]]:
    """Functions timed (exclusively) inside QAService.answer, on top of bench_search's split."""
    from benchmarks.bench_search import SEARCH_PHASES
    from retrieval import citations
    from retrieval.lexical import BM25Index
    from retrieval.qa import QAService
    from retrieval.search import HybridSearcher

    return [
        *SEARCH_PHASES,
        (BM25Index, "query", "BM25 query (scored once per query)"),
        (HybridSearcher, "search", "retrieval: fusion, grouping (the rest)"),
        (QAService, "_sources", "prompt: sources (SQLite chunks + token counts)"),
        (QAService, "_support_vectors", "verify: support vectors (excl. embedding, cache)"),
        (citations, "support_score", "verify: support scores"),
        (citations, "best_quote", "verify: best quotes"),
        (QAService, "_finish", "verify: parsing, flags, citations (the rest)"),
    ]


def run_split(chunks: int, n_questions: int, llm_delay: float, e2e: int) -> dict[str, Any]:
    from benchmarks.bench_search import queries, warm_os_cache
    from benchmarks.common import PhaseTimer, TimedEmbedder
    from bot import blocks
    from bot.app import make_client
    from bot.conversation import answer_in_thread, remember_answer
    from bot.services import Services
    from retrieval import Corpus
    from retrieval.llm import build_chat_model
    from retrieval.qa import QAService

    data_dir, meta = index_dir(chunks, fresh=True)
    questions = queries(n_questions)
    with (
        FakeSlackAPI() as api,
        FakeOpenAIServer(default_reply=cited_reply(llm_delay)) as llm,
    ):
        settings = make_settings(
            data_dir, llm_provider="openai", llm_base_url=llm.base_url, llm_model="gpt-test"
        )
        warm_os_cache(data_dir)
        timer = PhaseTimer()
        corpus = Corpus(settings, embedder=TimedEmbedder(local_embedder(settings), timer))
        services = Services.build(settings, corpus=corpus, llm=build_chat_model(settings))
        client = make_client(slack_settings(api.base_url))
        log(f"split: warming up on {meta['chunks']:,} chunks")
        for question in questions[:5]:
            services.qa.answer(question)
        load_before = load_average()

        rows: list[dict[str, Any]] = []
        e2e_rows: list[dict[str, Any]] = []
        components: dict[str, float] = {}
        log(
            f"split: {len(questions)} questions through QAService.answer + the Slack post; "
            f"the first {min(e2e, len(questions))} also end to end through answer_in_thread "
            "(interleaved, so both see the same machine load)"
        )
        for i, question in enumerate(questions):
            ts = new_ts()
            text, blks = blocks.placeholder(question)
            placeholder = client.chat_postMessage(
                channel=CHANNEL_ID, thread_ts=ts, text=text, blocks=blks
            )
            with timer.patch(answer_components()):
                timer.reset()
                answer = services.qa.answer(question)
                if answer.mode == "llm":
                    for phase, seconds in timer.seconds.items():
                        components[phase] = components.get(phase, 0.0) + seconds * 1000
            t0 = time.perf_counter()
            feedback_id = remember_answer(services, answer)
            t1 = time.perf_counter()
            text, blks = blocks.answer_message(answer, feedback_id)
            t2 = time.perf_counter()
            client.chat_update(channel=CHANNEL_ID, ts=placeholder["ts"], text=text, blocks=blks)
            t3 = time.perf_counter()
            row: dict[str, Any] = {"mode": answer.mode, **answer.timings_ms}
            row["remember_ms"] = (t1 - t0) * 1000
            row["format_ms"] = (t2 - t1) * 1000
            row["update_ms"] = (t3 - t2) * 1000
            row["slack_post_ms"] = (t3 - t0) * 1000
            row["own_ms"] = row["total_ms"] - row.get("llm_ms", 0.0) + row["slack_post_ms"]
            rows.append(row)
            if i >= e2e:
                continue
            ts = new_ts()
            start = time.perf_counter()
            threaded = answer_in_thread(
                services, client, channel=CHANNEL_ID, thread_ts=ts, question=question
            )
            wall_ms = (time.perf_counter() - start) * 1000
            llm_ms = threaded.timings_ms.get("llm_ms", 0.0) if threaded else 0.0
            e2e_rows.append(
                {
                    "mode": threaded.mode if threaded else "error",
                    "wall_ms": wall_ms,
                    "llm_ms": llm_ms,
                    "own_ms": wall_ms - llm_ms,
                }
            )

        log("split: extractive mode (no LLM)")
        extractive = QAService(corpus, None, settings)
        for question in questions[:3]:
            extractive.answer(question)
        ex_rows = []
        for attempt in ("first", "again"):  # first: sentence vectors not cached yet
            for question in questions:
                answer = extractive.answer(question)
                ex_rows.append({"pass": attempt, "mode": answer.mode, **answer.timings_ms})
        load_after = load_average()
        corpus.close()
    return {
        "chunks": meta["chunks"],
        "papers": meta["papers"],
        "questions": len(questions),
        "llm_delay_ms": llm_delay * 1000,
        "rows": rows,
        "components_ms": components,
        "e2e": e2e_rows,
        "extractive": ex_rows,
        "load_before": load_before,
        "load_after": load_after,
    }


# --------------------------------------------------------------------------------------------
# 3. memory of `paperbot serve`
# --------------------------------------------------------------------------------------------


def _paperbot_command() -> list[str]:
    script = Path(sys.executable).parent / "paperbot"
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-c", "from bot.cli import main; main()", "serve"]


def _wait_healthz(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"paperbot serve exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"no answer from {url} within {timeout:.0f} s")


def run_memory(label: str, data_dir: Path, n_queries: int, llm_delay: float) -> dict[str, Any]:
    from benchmarks.common import DEV_QUESTIONS
    from retrieval.evaluate import load_questions

    questions = [q.question for q in load_questions(DEV_QUESTIONS)][:n_queries]
    BOT_WORK.mkdir(parents=True, exist_ok=True)
    log_path = BOT_WORK / f"serve-{re.sub(r'[^a-z0-9]+', '-', label.lower()).strip('-')}.log"
    with (
        FakeSlackAPI() as api,
        FakeOpenAIServer(default_reply=cited_reply(llm_delay)) as llm,
        log_path.open("wb") as log_file,
    ):
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PAPERBOT_", "SLACK_"))}
        env.update(
            {
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_SIGNING_SECRET": SECRET,
                "PAPERBOT_SLACK_API_URL": api.base_url,
                "PAPERBOT_DATA_DIR": str(data_dir),
                "PAPERBOT_HTTP_HOST": "127.0.0.1",
                "PAPERBOT_HTTP_PORT": str(port),
                "PAPERBOT_TIKTOKEN_CACHE_DIR": str(TIKTOKEN_DIR),
                "PAPERBOT_LLM_PROVIDER": "openai",
                "PAPERBOT_LLM_BASE_URL": llm.base_url,
                "PAPERBOT_LLM_MODEL": "gpt-test",
            }
        )
        log(f"memory: paperbot serve on {label}")
        start = time.perf_counter()
        proc = subprocess.Popen(
            _paperbot_command(), env=env, cwd=BOT_WORK, stdout=log_file, stderr=log_file
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_healthz(f"{base}/healthz", proc, timeout=180)
            startup_s = time.perf_counter() - start
            time.sleep(5.0)  # the scheduler's first tick runs at start, in the background
            idle = proc_status(proc.pid)
            sent: list[tuple[str, float]] = []
            for question in questions:
                ts = new_ts()
                response = post(
                    f"{base}/slack/events",
                    event_callback(app_mention_event(question, ts=ts)),
                    secret=SECRET,
                )
                assert response.status_code == 200, response.text
                sent.append((ts, time.time()))
            deadline = time.monotonic() + 180
            answered: dict[str, float] = {}
            while time.monotonic() < deadline and len(answered) < len(sent):
                for ts, sent_at in sent:
                    if ts in answered:
                        continue
                    bot = api.bot_messages(CHANNEL_ID, ts)
                    if bot and _classify(bot[-1].text, bot[-1].blocks) != "pending":
                        answered[ts] = time.time() - sent_at
                time.sleep(0.2)
            time.sleep(1.0)
            after = proc_status(proc.pid)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    first = answered.get(sent[0][0]) if sent else None
    return {
        "label": label,
        "data_dir": str(data_dir),
        "startup_s": startup_s,
        "idle": idle,
        "after": after,
        "queries": len(sent),
        "answered": len(answered),
        "first_answer_s": first,
        "answer_s": stats(list(answered.values())),
        "log": str(log_path),
    }


def _memory_steps_process(data_dir: str, llm_url: str, conn: Connection) -> None:
    """Child process: RSS after each loading step of what `paperbot serve` builds."""
    steps: list[tuple[str, dict[str, int]]] = []
    last = [time.perf_counter()]

    def mark(step: str) -> None:
        now = time.perf_counter()
        status = proc_status(os.getpid())
        status["ms"] = round((now - last[0]) * 1000)
        steps.append((step, status))
        last[0] = time.perf_counter()

    mark("python + benchmark imports")
    import slack_bolt  # noqa: F401

    import bot.app  # noqa: F401
    import retrieval.qa  # noqa: F401
    from bot.services import Services
    from retrieval.evaluate import load_questions

    mark("import bot, slack_bolt, retrieval")
    settings = make_settings(
        Path(data_dir), llm_provider="openai", llm_base_url=llm_url, llm_model="gpt-test"
    )
    services = Services.build(settings)
    mark("Services.build (LangChain ChatOpenAI)")
    services.corpus.embedder.embed(["load the ONNX model"])
    mark("MiniLM ONNX model loaded")
    services.corpus.store.count()
    mark("Chroma opened")
    services.corpus.lexical_index()
    mark("BM25 index loaded")
    from benchmarks.common import DEV_QUESTIONS

    questions = [q.question for q in load_questions(DEV_QUESTIONS)]
    services.qa.answer(questions[0])
    mark("first answer (Chroma HNSW loaded)")
    for question in questions[1:10]:
        services.qa.answer(question)
    mark("10 answers")
    conn.send(steps)
    conn.close()


def memory_steps(data_dir: Path) -> list[tuple[str, dict[str, int]]]:
    ctx = mp.get_context("spawn")
    with FakeOpenAIServer(default_reply=cited_reply(0.0)) as llm:
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_memory_steps_process, args=(str(data_dir), llm.base_url, child), daemon=True
        )
        proc.start()
        try:
            if not parent.poll(300):
                raise RuntimeError("the memory probe did not finish within 300 s")
            steps: list[tuple[str, dict[str, int]]] = parent.recv()
        finally:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    return steps


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def render_burst(burst: dict[str, Any]) -> list[str]:
    k = burst["kinds"]
    out = [
        f"### Slack HTTP mode, {'the app as shipped' if burst['shipped'] else 'what-if'}: "
        f"{burst['per_kind']} slash commands + {burst['per_kind']} app_mentions at once",
        "",
        f"LLM delay {burst['llm_delay_s']:.1f} s; {burst['workers']} answer threads (Bolt's "
        f"listener executor){'' if burst['workers'] == shipped_workers() else ' (not the default)'}"
        f"; listen backlog {burst['backlog']}"
        f"{'' if burst['backlog'] == shipped_backlog() else ' (patched in, not shipped)'}.",
        "",
        f"App started (models and indexes loaded) in {burst['app_startup_s']:.1f} s; idle ack "
        f"latency (20 sequential `/papers help`): p50 {burst['idle_ack_ms']['p50']:.1f} ms, "
        f"max {burst['idle_ack_ms']['max']:.1f} ms. Load avg {burst['load_before']} → "
        f"{burst['load_after']}.",
        "",
        md_table(
            [
                "acks",
                "sent",
                "acked (HTTP 200)",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
                "> 3 s",
                "failed (no HTTP answer)",
            ],
            [
                [
                    name,
                    k[name]["n"],
                    k[name]["ack_ms"]["n"],
                    k[name]["ack_ms"]["p50"],
                    k[name]["ack_ms"]["p95"],
                    k[name]["ack_ms"]["p99"],
                    k[name]["ack_ms"]["max"],
                    k[name]["ack_over_3s"],
                    k[name]["http_errors"]
                    and f"{k[name]['http_errors']} after {k[name]['failed_ms']['p50']:.0f} ms (p50)",
                ]
                for name in ("slash", "mention", "all")
            ],
        ),
        "",
        md_table(
            [
                "answers",
                "answered once",
                "duplicates",
                "orphaned placeholders",
                "missing",
                "outcomes",
                "placeholder p50 / p95 / max s",
                "answer p50 / p95 / max s",
            ],
            [
                [
                    name,
                    f"{k[name]['answered_once']}/{k[name]['n']}",
                    k[name]["duplicates"],
                    k[name]["orphaned_placeholders"],
                    k[name]["missing"],
                    ", ".join(f"{a} {b}" for a, b in sorted(k[name]["kinds"].items())),
                    "–"
                    if not k[name]["placeholder_s"]["n"]
                    else "{p50:.1f} / {p95:.1f} / {max:.1f}".format(**k[name]["placeholder_s"]),
                    "{p50:.1f} / {p95:.1f} / {max:.1f}".format(**k[name]["answer_s"]),
                ]
                for name in ("slash", "mention", "all")
            ],
        ),
        "",
        f"- acks: all {burst['requests']} within {burst['acks_window_s']:.2f} s of the first "
        f"send ({burst['ack_throughput_rps']:.0f} requests/s)",
        "- answers: "
        + (
            f"the last one {burst['all_answered_s']:.1f} s after the first send "
            f"({burst['answer_throughput_qps']:.2f} answers/s)"
            if burst["all_answered_s"]
            else "none"
        ),
        f"- LLM requests {burst['llm_requests']}, chat.postMessage {burst['chat_post_message_calls']}, "
        f"chat.update {burst['chat_update_calls']}; app CPU {burst['app_cpu_s']:.1f} s "
        f"({burst['app_cpu_s'] / burst['requests'] * 1000:.0f} ms per question); app threads max "
        f"{burst['app_max_threads']}, RSS max {burst['app_max_rss_mib']:.0f} MiB",
        "- kernel TCP counters during the burst (machine-wide): "
        + ", ".join(f"{k} +{v}" for k, v in burst["tcp_counters"].items()),
        f"- errors: {burst['error_count']}"
        + ("" if not burst["errors"] else " (" + "; ".join(burst["errors"][:5]) + ")"),
    ]
    ok = (
        k["all"]["ack_over_3s"] == 0
        and k["all"]["http_errors"] == 0
        and k["all"]["answered_once"] == k["all"]["n"]
        and k["all"]["duplicates"] == 0
        and k["all"]["orphaned_placeholders"] == 0
    )
    out += [
        "",
        f"- Every request acked within 3 s and every question answered exactly once: "
        f"{verdict(ok)} (ack p99 {k['all']['ack_ms']['p99']:.0f} ms, max "
        f"{k['all']['ack_ms']['max']:.0f} ms; {k['all']['answered_once']}/{k['all']['n']} "
        f"answered once, {k['all']['duplicates']} duplicates, "
        f"{k['all']['orphaned_placeholders']} orphaned placeholders)",
        "",
    ]
    return out


def render_floor(floors: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            f["backlog"],
            f"{f['requests'] - f['failed']}/{f['requests']}",
            f["ack_ms"]["p50"],
            f["ack_ms"]["p95"],
            f["ack_ms"]["p99"],
            f["ack_ms"]["max"],
            f["failed"],
            ", ".join(f"{k} +{v}" for k, v in f["tcp_counters"].items() if v) or "–",
        ]
        for f in floors
    ]
    return [
        "### Floor: the same burst against a trivial WSGI app",
        "",
        "Same client, same server class as `bot.server` (`_ThreadingWSGIServer`, one thread "
        "per request), but the app only reads the body and answers 200: what the HTTP stack and "
        "the load generator cost on this machine, without Bolt or paperbot.",
        "",
        md_table(
            [
                "listen backlog",
                "acked",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
                "failed",
                "kernel TCP counters",
            ],
            rows,
        ),
        "",
    ]


def render_split(split: dict[str, Any]) -> list[str]:
    rows = split["rows"]
    llm_rows = [r for r in rows if r["mode"] == "llm"]
    modes: dict[str, int] = {}
    for r in rows:
        modes[r["mode"]] = modes.get(r["mode"], 0) + 1
    table = []
    for name, key in [
        ("condense (follow-up rewrite)", "condense_ms"),
        ("retrieval (hybrid search)", "retrieval_ms"),
        ("prompt building", "prompt_ms"),
        ("LLM wait", "llm_ms"),
        ("verification", "verify_ms"),
        ("Slack post: remember answer (SQLite)", "remember_ms"),
        ("Slack post: blocks.answer_message", "format_ms"),
        ("Slack post: chat.update", "update_ms"),
        ("Slack post, total", "slack_post_ms"),
        ("QAService total", "total_ms"),
        ("**own overhead** = total − LLM wait + Slack post", "own_ms"),
    ]:
        values = [r[key] for r in llm_rows if key in r]
        s = stats(values)
        table.append([name, s["n"], s["p50"], s["p95"], s["p99"], s["max"]])
    own_all = stats([r["own_ms"] for r in rows])
    llm_client = stats([r["llm_ms"] - split["llm_delay_ms"] for r in llm_rows])
    n_llm = max(len(llm_rows), 1)
    component_rows = [
        [name, total / n_llm]
        for name, total in sorted(split["components_ms"].items(), key=lambda kv: -kv[1])
    ]
    e2e = [r for r in split["e2e"] if r["mode"] == "llm"]
    e2e_own = stats([r["own_ms"] for r in e2e])
    e2e_wall = stats([r["wall_ms"] for r in e2e])
    ex_table = []
    for attempt, label in (
        ("first", "first ask (sentence vectors embedded, then cached)"),
        ("again", "same questions again (sentence vectors cached)"),
    ):
        ex = [r for r in split["extractive"] if r.get("pass", "first") == attempt]
        for name, key in (
            ("retrieval", "retrieval_ms"),
            ("quote extraction", "extract_ms"),
            ("total", "total_ms"),
        ):
            s = stats([r[key] for r in ex if key in r])
            ex_table.append([f"{label}: {name}", s["n"], s["p50"], s["p95"], s["max"]])
    out = [
        f"### Answer latency split: {split['chunks']:,} chunks ({split['papers']:,} papers)",
        "",
        f"{split['questions']} questions (the bench_search query set), one at a time, after 5 "
        f"warm-up answers; LLM = FakeOpenAIServer answering after {split['llm_delay_ms']:.0f} ms "
        f"with two cited sentences. Outcomes: "
        + ", ".join(f"{m} {n}" for m, n in sorted(modes.items()))
        + f". Load avg {split['load_before']} → {split['load_after']}. Stages of the "
        f"{len(llm_rows)} LLM answers (ms):",
        "",
        md_table(["stage", "n", "p50", "p95", "p99", "max"], table),
        "",
        f"- own overhead over all {own_all['n']} questions (refusals included): p50 "
        f"{own_all['p50']:.1f} ms, p95 {own_all['p95']:.1f} ms",
        f"- inside the LLM wait, the client side (LangChain + openai + HTTP; = llm_ms − the "
        f"server's {split['llm_delay_ms']:.0f} ms delay): p50 {llm_client['p50']:.1f} ms, "
        f"p95 {llm_client['p95']:.1f} ms",
        f"- end to end through `answer_in_thread` (placeholder post, streaming, verification, "
        f"final chat.update), {e2e_own['n']} LLM answers: wall p50 {e2e_wall['p50']:.0f} ms / "
        f"p95 {e2e_wall['p95']:.0f} ms; minus the LLM wait p50 {e2e_own['p50']:.1f} ms / p95 "
        f"{e2e_own['p95']:.1f} ms",
        "",
        "Mean time per LLM answer by component, timed exclusively (a nested timed call counts "
        "in its own row only; the LLM call itself is not listed):",
        "",
        md_table(["component", "mean ms"], component_rows),
        "",
        "Extractive mode (no LLM) on the same questions, for comparison (ms):",
        "",
        md_table(["extractive", "n", "p50", "p95", "max"], ex_table),
    ]
    own = stats([r["own_ms"] for r in llm_rows])
    big = split["chunks"] >= 100_000
    out += [
        "",
        f"- Own overhead p95 ≤ {OVERHEAD_TARGET_MS:.0f} ms at {split['chunks']:,} chunks: "
        + (verdict(own["p95"] <= OVERHEAD_TARGET_MS) if big else "(not the 100k index)")
        + f" (p95 {own['p95']:.1f} ms stage sum; {e2e_own['p95']:.1f} ms end to end)",
        "",
    ]
    return out


def render_memory_steps(label: str, steps: list[tuple[str, dict[str, int]]]) -> list[str]:
    rows = []
    previous = 0
    for step, status in steps:
        rss = status.get("VmRSS", 0)
        took = status.get("ms", 0) / 1000 if previous else "–"
        rows.append([step, mib(rss), mib(rss - previous) if previous else "–", took])
        previous = rss
    return [
        f"Where the memory goes ({label}; the same objects built step by step in a fresh "
        "process, RSS after each step and the time the step took):",
        "",
        md_table(["step", "RSS MiB", "+ MiB", "s"], rows),
        "",
    ]


def render_memory(memory: list[dict[str, Any]]) -> list[str]:
    rows = []
    for m in memory:
        idle, after = m["idle"], m["after"]
        rows.append(
            [
                m["label"],
                m["startup_s"],
                mib(idle.get("VmRSS")),
                mib(idle.get("VmHWM")),
                mib(after.get("VmRSS")),
                mib(after.get("RssAnon")),
                mib(after.get("RssFile")),
                mib(after.get("VmHWM")),
                after.get("Threads", 0),
                f"{m['answered']}/{m['queries']}",
                m["first_answer_s"] or 0.0,
            ]
        )
    return [
        "### Memory of `paperbot serve` (HTTP mode, LLM configured)",
        "",
        "RSS of the real `paperbot serve` process: idle = 5 s after /healthz first answered; "
        "after = once the signed app_mentions were answered (the first one loads the MiniLM "
        "model, Chroma's HNSW index and the BM25 arrays). First start = a data dir that "
        "`serve` never ran on (no subscription watermark: the scheduler's first tick reads "
        "every paper, see below); restart = the same dir again.",
        "",
        md_table(
            [
                "data dir",
                "start s",
                "idle RSS MiB",
                "idle peak MiB",
                "RSS after MiB",
                "anon MiB",
                "file MiB",
                "peak (VmHWM) MiB",
                "threads",
                "answered",
                "first answer s",
            ],
            rows,
        ),
        "",
    ]


def render(result: dict[str, Any]) -> str:
    out = ["## Slack bot benchmarks", ""]
    out += [
        f"Machine: {result['machine']['nproc']} cores ({result['machine']['cpu']}), "
        f"{result['machine']['ram']} RAM, Python {result['machine']['python']}; "
        f"{result['machine']['date']}.",
        "",
    ]
    if result.get("floor"):
        out += render_floor(result["floor"])
    for burst in result.get("burst", []):
        out += render_burst(burst)
    if result.get("split"):
        out += render_split(result["split"])
    if result.get("memory"):
        out += render_memory(result["memory"])
    if result.get("memory_steps"):
        out += render_memory_steps(result["memory_steps"]["label"], result["memory_steps"]["steps"])
    return "\n".join(out)


def parse_variant(text: str) -> tuple[int, int]:
    if text == "shipped":
        return shipped_workers(), shipped_backlog()
    workers, _, backlog = text.partition(":")
    return int(workers), int(backlog or shipped_backlog())


@dataclass
class Plan:
    per_kind: int
    llm_delay: float
    variants: list[tuple[int, int]]
    chunks: int
    questions: int
    e2e: int
    split_delay: float
    memory_queries: int
    only: list[str] = field(default_factory=list)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a couple of minutes")
    parser.add_argument("--only", nargs="+", choices=["burst", "split", "memory"], default=[])
    parser.add_argument("--requests", type=int, help="slash commands (and as many mentions)")
    parser.add_argument("--llm-delay", type=float, default=1.0, help="burst: LLM delay, s")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["shipped", f"{BOLT_WORKERS}:{STDLIB_BACKLOG}", "32:1024"],
        help="burst: WORKERS:BACKLOG pairs, or 'shipped' (the defaults of bot/); "
        "5:5 = before the fix (Bolt's and the stdlib's defaults)",
    )
    parser.add_argument("--chunks", type=int, help="index size for split and memory")
    parser.add_argument("--questions", type=int, help="split: questions")
    parser.add_argument("--split-delay", type=float, default=0.1, help="split: LLM delay, s")
    args = parser.parse_args(argv)
    plan = Plan(
        per_kind=args.requests or (50 if args.quick else 200),
        llm_delay=args.llm_delay,
        variants=[parse_variant(v) for v in args.variants],
        chunks=args.chunks or (10_000 if args.quick else 100_000),
        questions=args.questions or (30 if args.quick else 100),
        e2e=10 if args.quick else 50,
        split_delay=args.split_delay,
        memory_queries=5 if args.quick else 10,
        only=args.only,
    )
    started = time.perf_counter()
    result: dict[str, Any] = {"machine": machine_info(), "load_start": load_average()}
    if not plan.only or "burst" in plan.only:
        backlogs = sorted({STDLIB_BACKLOG, shipped_backlog()})
        log(f"floor: the burst against a trivial WSGI app (listen backlog {backlogs})")
        result["floor"] = [run_floor(plan.per_kind, b) for b in backlogs]
        result["burst"] = [run_burst(plan.per_kind, plan.llm_delay, w, b) for w, b in plan.variants]
    if not plan.only or "split" in plan.only:
        result["split"] = run_split(plan.chunks, plan.questions, plan.split_delay, plan.e2e)
    if not plan.only or "memory" in plan.only:
        # A fresh copy: the first `serve` on an index has no subscription watermark yet.
        big, _ = index_dir(plan.chunks, fresh=True)
        sample = copy_dir(sample_template(), "serve-sample", reuse=False)
        result["memory"] = [
            run_memory("30 sample papers, first start", sample, plan.memory_queries, 0.2),
            run_memory(f"{plan.chunks:,} chunks, first start", big, plan.memory_queries, 0.2),
            run_memory(f"{plan.chunks:,} chunks, restart", big, plan.memory_queries, 0.2),
        ]
        log(f"memory: step by step on {plan.chunks:,} chunks")
        result["memory_steps"] = {"label": f"{plan.chunks:,} chunks", "steps": memory_steps(big)}
    result["load_end"] = load_average()
    result["runtime_s"] = time.perf_counter() - started
    markdown = render(result) + (
        f"\n_bench_bot.py took {result['runtime_s']:.0f} s; load avg {result['load_start']} at "
        f"the start, {result['load_end']} at the end._\n"
    )
    name = "bot" + "".join(f"-{o}" for o in plan.only) + ("-quick" if args.quick else "")
    save_results(name, result, markdown)
    print(markdown)
    return result


if __name__ == "__main__":
    main()
