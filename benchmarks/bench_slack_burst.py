"""Slack HTTP mode under a burst: ack latency of signed slash commands and app_mentions sent at
once, and whether every question is answered exactly once; optionally with one forged POST.

Target (issue 10): 200 signed slash commands and 200 app_mention events of distinct questions
sent concurrently from a client on 127.0.0.1, the LLM server answering after a delay: >= 99.5 %
of acks under 3 s and ack p99 under 1 s, every question answered exactly once; the time until
the last answer and the app's peak RSS reported. The same burst plus one unsigned forged 50 MB
POST (`--forged-mb 50`) changes ack p99 by less than 100 ms.

How it is measured: the real Bolt app (`create_app` + `Services.build` on the 30 sample papers
ingested with the local MiniLM embedder, LLM = `build_chat_model` pointed at
`FakeOpenAIServer`, which answers after `--llm-delay` seconds with a reply citing [1] and [2])
is served by `bot.slack.server.make_http_server` (uvicorn + the screening ASGI app of
bot/slack/asgi.py) on 127.0.0.1 in its own process, its durable answer queue started as
`paperbot serve` starts it, talking to a `FakeSlackAPI` in this process. A third process fires
every signed request at once (asyncio streams, one connection per request as Slack does) and
records each HTTP latency = the ack latency. Then this process waits until every mention
thread holds exactly one bot message that is final (not the "🔎" placeholder, not a "▌"
streaming state) and every slash command got exactly one response_url reply.

With `--forged-mb N` every variant's burst runs twice, each time on a fresh app process: once
as above, once with one more connection from the client process that, at the moment the burst
is fired, streams an unsigned POST of N MB to /slack/events (64 KiB chunks, chunked transfer
encoding, so there is no Content-Length to refuse it by). The report shows the forged POST's
status and duration, and both bursts side by side with the change of ack p99.

The floor: the same burst first goes to a trivial ASGI app on the same server
(`bot.slack.server.HttpServer`, uvicorn; it only reads the body and answers 200), at the
stdlib's and at the shipped listen backlog: what the HTTP stack and the load generator cost on
this machine, without Bolt or paperbot.

    python benchmarks/bench_slack_burst.py                      # 200 + 200, shipped and 8:1024
    python benchmarks/bench_slack_burst.py --variants shipped --forged-mb 50
    python benchmarks/bench_slack_burst.py --quick              # 50 + 50 requests
    python benchmarks/bench_slack_burst.py --requests 10 --variants shipped --llm-delay 0.2

A variant is WORKERS:BACKLOG: the answer queue's workers (PAPERBOT_ANSWER_WORKERS, questions
answered at once) and the HTTP server's listen backlog. "shipped" is bot/'s defaults (answer
workers min(4, 2 x cores), backlog 1024). Bolt's lazy listeners are gone, so no variant
reproduces the app before issue 10 (its numbers are in docs/benchmarks.md). The backlog is a
module constant of bot.slack.server (LISTEN_BACKLOG), so other values are set in the benchmark's own app process only.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing as mp
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    SECRET,
    answer_settings,
    begin,
    bench_parser,
    cited_reply,
    copy_dir,
    finish,
    load_average,
    local_embedder,
    log,
    make_settings,
    mib,
    proc_status,
    report_header,
    sample_template,
    slack_settings,
    stats,
)
from benchmarks.slack_burst_load import (
    Forged,
    Outcome,
    Sampler,
    Sent,
    burst_questions,
    client_process,
    collect,
    fire,
    forger_process,
    mixed_burst,
    proc_cpu_seconds,
    tcp_counters,
    tcp_delta,
)
from benchmarks.slack_burst_report import (
    render_burst,
    render_floor,
    render_forged_pair,
    summarize_burst,
)
from tests.support.openai_server import CHAT_PATH, FakeOpenAIServer
from tests.support.slack_api import FakeSlackAPI
from tests.support.slack_requests import post, slash_command

STDLIB_BACKLOG = 5  # socketserver.TCPServer.request_queue_size (bot.slack.server before the fix)


def shipped_workers() -> int:
    """The answer queue's workers by default (PAPERBOT_ANSWER_WORKERS, 0 = per CPU cores)."""
    from bot.slack.answer_queue import default_workers
    from bot.slack.settings import SlackSettings

    return int(SlackSettings.model_fields["answer_workers"].default) or default_workers()


def shipped_backlog() -> int:
    """The listen backlog of bot.slack.server's HTTP server."""
    from bot.slack.server import LISTEN_BACKLOG

    return LISTEN_BACKLOG


# --------------------------------------------------------------------------------------------
# the servers, each in its own process
# --------------------------------------------------------------------------------------------


def _app_process(
    data_dir: str, api_url: str, llm_url: str, workers: int, backlog: int, conn: Connection
) -> None:
    """Child process: the real app on 127.0.0.1, reporting its port through `conn`."""
    logging.basicConfig(
        level=logging.WARNING, format="[app] %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    from bot.services import Services
    from bot.slack import server as bot_server
    from bot.slack.app import create_app
    from retrieval import Corpus

    # The listen backlog is a module constant (no setting): what-ifs set it here, in this
    # process only.
    bot_server.LISTEN_BACKLOG = backlog
    settings = make_settings(Path(data_dir))
    corpus = Corpus(settings, embedder=local_embedder(settings))
    services = Services.build(settings, answer_settings(llm_url), corpus=corpus)
    corpus.search("warm-up: open Chroma and BM25", 3)
    app = create_app(slack_settings(api_url, answer_workers=workers), services)
    if services.answer_queue is not None:
        services.answer_queue.start()  # as `paperbot serve` does
    server = bot_server.make_http_server(
        app,
        "127.0.0.1",
        0,
        lambda: {"ok": True, "papers": services.corpus.count_papers()},
        gate=services.answer_queue.gate if services.answer_queue is not None else None,
    )
    conn.send(int(server.server_address[1]))
    conn.close()
    server.serve_forever()


def _trivial_process(backlog: int, conn: Connection) -> None:
    """Child process: the same server as bot.slack.server (uvicorn, `HttpServer`) serving an
    ASGI app that only reads the body and answers 200: the floor of the HTTP stack and the
    client."""
    from bot.slack.server import HttpServer

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = bool(message.get("more_body", False))
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    server = HttpServer(application, "127.0.0.1", 0, backlog=backlog)
    conn.send(int(server.server_address[1]))
    conn.close()
    server.serve_forever()


def start_server(target: Callable[..., None], *args: Any) -> tuple[BaseProcess, str]:
    """Start `target(*args, conn)` in a spawned process; its Slack events URL once it listens."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(*args, child), daemon=True)
    proc.start()
    deadline = time.monotonic() + 300
    while not parent.poll(1.0):
        if not proc.is_alive() or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"{target.__name__} did not start (exit code {proc.exitcode})")
    return proc, f"http://127.0.0.1:{parent.recv()}/slack/events"


def stop(proc: BaseProcess) -> None:
    proc.terminate()
    proc.join(10)
    if proc.is_alive():
        proc.kill()


# --------------------------------------------------------------------------------------------
# the floor and the burst
# --------------------------------------------------------------------------------------------


def run_floor(per_kind: int, backlog: int) -> dict[str, Any]:
    """The same burst against a trivial app on the same server class (nothing of paperbot)."""
    proc, url = start_server(_trivial_process, backlog)
    try:
        sent = mixed_burst(burst_questions(2 * per_kind), "http://127.0.0.1:9/hooks/{}".format)
        items = [(s.key, s.body) for s in sent]
        asyncio.run(fire(url, items[:20]))  # warm-up
        before = tcp_counters()
        results = asyncio.run(fire(url, items))
        after = tcp_counters()
    finally:
        stop(proc)
    ok = [ms for _, _, ms, status, _ in results if status == 200]
    return {
        "backlog": backlog,
        "requests": len(items),
        "ack_ms": stats(ok),
        "failed": len(items) - len(ok),
        "tcp_counters": tcp_delta(before, after),
    }


def idle_acks(url: str, api: FakeSlackAPI, n: int = 20) -> list[float]:
    """Warm-up and idle baseline: sequential instant commands (the ack carries the reply)."""
    idle_ms = []
    for i in range(n):
        body = slash_command("help", response_url=api.response_url(f"warm-{i}"))
        response = post(url, body, secret=SECRET)
        assert response.status_code == 200, response.text
        idle_ms.append(response.elapsed.total_seconds() * 1000)
    return idle_ms


def send_burst(url: str, sent: list[Sent], forged_bytes: int = 0) -> Forged | None:
    """Fire every request from a separate process (and the forged POST, if any, from a process
    of its own at the same moment); record sent_at, ack_ms, status, response; return what the
    forged POST got."""
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    forger = forger_conn = None
    if forged_bytes:
        forger_conn, forger_child = ctx.Pipe()
        forger = ctx.Process(
            target=forger_process, args=(url, forged_bytes, go, forger_child), daemon=True
        )
        forger.start()
    parent, child = ctx.Pipe()
    items = [(s.key, s.body) for s in sent]
    client = ctx.Process(target=client_process, args=(url, items, go, child), daemon=True)
    client.start()
    if not parent.poll(180):
        client.kill()
        raise RuntimeError("the client did not finish within 180 s")
    by_key = {s.key: s for s in sent}
    for key, sent_at, ms, status, text in parent.recv():
        item = by_key[key]
        item.sent_at, item.ack_ms, item.status, item.response = sent_at, ms, status, text
    client.join(10)
    if forger is None or forger_conn is None:
        return None
    if not forger_conn.poll(120):
        forger.kill()
        raise RuntimeError("the forged POST did not finish within 120 s")
    forged: Forged = forger_conn.recv()
    forger.join(10)
    return forged


def wait_answers(api: FakeSlackAPI, sent: list[Sent], timeout: float) -> dict[str, Outcome]:
    """Wait until every acked request got its final answer, or nothing changed for 30 s
    (requests that were not acked never reach the app); then 3 s more for late duplicates."""
    expected = sum(s.status == 200 for s in sent)
    deadline = time.monotonic() + timeout
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
    return outcomes


def run_burst(
    per_kind: int, llm_delay: float, workers: int, backlog: int, forged_mb: float = 0
) -> dict[str, Any]:
    data_dir = copy_dir(sample_template(), "burst-data", reuse=False)
    questions = burst_questions(2 * per_kind)
    observed: dict[str, Any] = {
        "per_kind": per_kind,
        "llm_delay_s": llm_delay,
        "workers": workers,
        "backlog": backlog,
        "shipped_workers": shipped_workers(),
        "shipped_backlog": shipped_backlog(),
        "forged_mb": forged_mb,
    }
    observed["shipped"] = (workers, backlog) == (shipped_workers(), shipped_backlog())
    with (
        FakeSlackAPI() as api,
        FakeOpenAIServer(default_reply=cited_reply(llm_delay)) as llm,
    ):
        start = time.perf_counter()
        args = (str(data_dir), api.base_url, llm.base_url, workers, backlog)
        app_proc, url = start_server(_app_process, *args)
        assert app_proc.pid is not None
        pid = app_proc.pid
        observed["app_startup_s"] = time.perf_counter() - start
        try:
            observed["idle_ack_ms"] = stats(idle_acks(url, api))
            api.reset()
            llm.reset()
            sent = mixed_burst(questions, api.response_url)
            log(
                f"burst: {per_kind} slash commands + {per_kind} app_mentions at once, "
                f"LLM delay {llm_delay:.1f} s, answer workers {workers}, listen backlog {backlog}"
                + (f", plus one forged {forged_mb:g} MB POST" if forged_mb else "")
            )
            observed["load_before"] = load_average()
            cpu_before = proc_cpu_seconds(pid)
            tcp_before = tcp_counters()
            with Sampler(pid) as sampler:
                forged = send_burst(url, sent, int(forged_mb * 1024 * 1024))
                observed["forged"] = None if forged is None else vars(forged)
                observed["tcp_counters"] = tcp_delta(tcp_before, tcp_counters())
                window = max(s.sent_at + s.ack_ms / 1000 for s in sent) - min(
                    s.sent_at for s in sent
                )
                log(f"all {len(sent)} requests acked in {window:.2f} s; waiting for the answers")
                timeout = 90 + 2 * len(sent) * (llm_delay + 0.3) / workers
                wait_answers(api, sent, timeout)
                observed["all_done_at"] = time.time()
                time.sleep(3.0)  # late duplicates would show up now
                outcomes = collect(api, sent)
            observed["app_cpu_s"] = proc_cpu_seconds(pid) - cpu_before
            observed["load_after"] = load_average()
            observed["app_threads_after"] = proc_status(pid).get("Threads", 0)
        finally:
            stop(app_proc)
        observed["app_max_threads"] = sampler.max_threads
        observed["app_max_rss_mib"] = mib(sampler.max_rss_kb)
        observed["llm_requests"] = len(llm.requests_to(CHAT_PATH))
        observed["chat_post_message_calls"] = len(api.calls_to("chat.postMessage"))
        observed["chat_update_calls"] = len(api.calls_to("chat.update"))
    return summarize_burst(sent, outcomes, observed)


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def parse_variant(text: str) -> tuple[int, int]:
    if text == "shipped":
        return shipped_workers(), shipped_backlog()
    workers, _, backlog = text.partition(":")
    return int(workers), int(backlog or shipped_backlog())


def render(result: dict[str, Any]) -> str:
    out = report_header("Slack HTTP mode: acks under a burst", result) + render_floor(
        result["floor"]
    )
    bursts = result["burst"]
    for burst in bursts:
        out += render_burst(burst)
    for plain, forged in itertools.pairwise(bursts):
        if not plain.get("forged_mb") and forged.get("forged_mb"):
            out += render_forged_pair(plain, forged)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = bench_parser(__doc__, "50 slash commands + 50 mentions (default 200 + 200)")
    parser.add_argument("--requests", type=int, help="slash commands (and as many mentions)")
    parser.add_argument("--llm-delay", type=float, default=1.0, help="LLM delay, s")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["shipped", "8:1024"],
        help="WORKERS:BACKLOG pairs (answer queue workers = PAPERBOT_ANSWER_WORKERS, listen "
        "backlog), or 'shipped' (the defaults of bot/)",
    )
    parser.add_argument(
        "--forged-mb",
        type=float,
        default=0,
        help="also run each burst with one unsigned forged POST of this many MB streamed at "
        "the same moment, and compare (0 = no forged POST)",
    )
    args = parser.parse_args(argv)
    per_kind = args.requests or (50 if args.quick else 200)
    variants = [parse_variant(v) for v in args.variants]

    started = time.perf_counter()
    result = begin()
    backlogs = sorted({STDLIB_BACKLOG, shipped_backlog()})
    log(f"floor: the burst against a trivial ASGI app (listen backlog {backlogs})")
    result["floor"] = [run_floor(per_kind, b) for b in backlogs]
    result["burst"] = []
    for w, b in variants:
        result["burst"].append(run_burst(per_kind, args.llm_delay, w, b))
        if args.forged_mb:
            result["burst"].append(run_burst(per_kind, args.llm_delay, w, b, args.forged_mb))
    name = "bot-burst" + ("-quick" if args.quick else "")
    finish(name, result, render(result), started=started, as_json=args.json)
    return result


if __name__ == "__main__":
    main()
