"""The load side of bench_slack_burst.py: questions, the burst client, and what Slack saw.

- `burst_questions`, `mixed_burst`: distinct questions about the 30 sample papers, as signed
  slash commands and app_mentions.
- `fire` / `client_process`: every signed request sent at the same moment (asyncio streams, one
  connection per request as Slack does), each one's HTTP latency = its ack latency; optionally
  one more client streams an unsigned forged POST of N bytes at the same moment (`forge`).
- `collect`: for every question, the bot messages in its thread (mentions) or the response_url
  replies (slash commands) the fake Slack Web API received, and when.
- `Sampler`, `proc_cpu_seconds`, `tcp_counters`: the app process's threads, RSS and CPU, and
  the kernel's listen-queue counters.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from benchmarks.common import SECRET, classify, proc_status, sample_papers
from tests.support.slack_api import FakeSlackAPI, SlackCall, StoredMessage
from tests.support.slack_requests import (
    CHANNEL_ID,
    app_mention_event,
    content_type_of,
    event_callback,
    new_ts,
    sign,
    slash_command,
)

SEED = 20250516
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


# --------------------------------------------------------------------------------------------
# the client
# --------------------------------------------------------------------------------------------

Fired = tuple[str, float, float, int, str]  # key, sent_at (time.time()), ack ms, status, text


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


def mixed_burst(questions: Sequence[str], response_url: Callable[[str], str]) -> list[Sent]:
    """Alternating signed requests: `/papers ask` slash commands (their replies go to
    `response_url(tag)`) and app_mentions (each in its own thread), one per question."""
    sent: list[Sent] = []
    for i, question in enumerate(questions):
        if i % 2 == 0:
            tag = f"cmd-{i:04d}"
            body = slash_command(f"ask {question}", response_url=response_url(tag))
            sent.append(Sent("slash", tag, question, body))
        else:
            ts = new_ts()
            sent.append(
                Sent("mention", ts, question, event_callback(app_mention_event(question, ts=ts)))
            )
    return sent


def client_process(url: str, items: list[tuple[str, str]], go: Any, conn: Connection) -> None:
    """Child process: send every (key, body) at once, setting the multiprocessing event `go`
    (if any) at that moment; report a `Fired` per request."""
    conn.send(asyncio.run(fire(url, items, go)))
    conn.close()


def forger_process(url: str, size: int, go: Any, conn: Connection) -> None:
    """Child process of its own (so its CPU is not the burst client's): wait for `go`, then
    stream the forged POST; report its `Forged`."""
    go.wait(120)

    async def run() -> Forged:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0)) as client:
            return await forge(client, url, size)

    conn.send(asyncio.run(run()))
    conn.close()


CHUNK = 64 * 1024


@dataclass
class Forged:
    """What the unsigned forged POST got."""

    size: int  # bytes it meant to send
    status: int = 0  # HTTP status, -1 = no HTTP answer (see `error`)
    ms: float = 0.0  # from the first byte sent until the answer (or the error)
    sent_bytes: int = 0  # body bytes the client got to write before the answer
    error: str = ""


async def forge(client: httpx.AsyncClient, url: str, size: int) -> Forged:
    """An attacker's POST: no Slack signature, `size` bytes of body streamed in 64 KiB chunks
    with chunked transfer encoding (no Content-Length to refuse it by)."""
    result = Forged(size)

    async def body() -> Any:
        chunk = b"x" * CHUNK
        while result.sent_bytes < size:
            piece = chunk[: size - result.sent_bytes]
            result.sent_bytes += len(piece)
            yield piece

    headers = {"Content-Type": "application/json", "User-Agent": "curl/8.5.0"}
    start = time.perf_counter()
    try:
        response = await client.post(url, content=body(), headers=headers)
        result.status = response.status_code
        result.error = response.text[:120]
    except httpx.HTTPError as exc:
        result.status, result.error = -1, f"{type(exc).__name__}: {exc}"[:160]
    result.ms = (time.perf_counter() - start) * 1000
    return result


async def _exchange(host: str, port: int, request: bytes) -> tuple[int, str]:
    """One HTTP/1.1 request on its own connection (plain asyncio streams: a general-purpose
    client such as httpx costs ~2.5 ms of this process's CPU per request, which under a burst
    of 400 on 2 cores queued the sends by up to a second and showed up as ack latency)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        length = None
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        body = await (reader.readexactly(length) if length is not None else reader.read())
        return status, body[:300].decode("utf-8", "replace")
    finally:
        writer.close()


async def fire(url: str, items: list[tuple[str, str]], go: Any = None) -> list[Fired]:
    """POST every signed (key, body) to `url` at the same moment, one connection each; set the
    multiprocessing event `go` (the forged POST's process waits on it) at that moment."""
    gate = asyncio.Event()

    target = urlsplit(url)
    host, port = target.hostname or "127.0.0.1", target.port or 80

    async def one(key: str, body: str) -> Fired:
        data = body.encode()
        headers = {
            "Host": f"{host}:{port}",
            "Content-Type": content_type_of(body),
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            **sign(body, SECRET),
            "Content-Length": str(len(data)),
            "Connection": "close",
        }
        head = f"POST {target.path or '/'} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        request = (head + "\r\n").encode("latin-1") + data
        await gate.wait()
        sent_at, start = time.time(), time.perf_counter()
        try:
            status, text = await asyncio.wait_for(_exchange(host, port, request), 60.0)
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            status, text = -1, f"{type(exc).__name__}: {exc}"
        return key, sent_at, (time.perf_counter() - start) * 1000, status, text

    tasks = [asyncio.create_task(one(key, body)) for key, body in items]
    await asyncio.sleep(0.2)  # every task is parked at the gate
    if go is not None:
        go.set()
    gate.set()
    return list(await asyncio.gather(*tasks))


# --------------------------------------------------------------------------------------------
# what the fake Slack workspace saw
# --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one question got, as seen in the fake Slack workspace."""

    final: bool = False
    messages: int = 0  # bot messages in the thread / response_url replies
    kind: str = "missing"  # llm | fallback | refused | error | pending | missing
    placeholder_at: float | None = None
    answered_at: float | None = None


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
                outcome.kind = classify(last.text, last.blocks)
                outcome.final = outcome.kind != "pending"
                if outcome.final:
                    outcome.answered_at = updates.get(last.ts, outcome.placeholder_at)
        else:
            calls = hooks.get(item.key, [])
            outcome.messages = len(calls)
            if calls:
                params = calls[-1].params
                outcome.kind = classify(str(params.get("text", "")), params.get("blocks"))
                outcome.final = outcome.kind != "pending"
                outcome.answered_at = calls[0].at
        outcomes[item.key] = outcome
    return outcomes


# --------------------------------------------------------------------------------------------
# the app process and the kernel
# --------------------------------------------------------------------------------------------


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


def tcp_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - v for k, v in before.items()}
