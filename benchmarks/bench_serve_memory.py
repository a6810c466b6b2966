"""Memory of `paperbot serve`: resident set idle and after answering, and where it goes.

Target (from the project's issue): the resident set of `paperbot serve` with 100k chunks
indexed, reported.

How it is measured: the real `paperbot serve` (HTTP mode, ``python -m bot.cli serve``) as a
subprocess, talking to a `FakeSlackAPI` and to `FakeOpenAIServer` as its LLM, on the 30 sample
papers and on the index of `--chunks` chunks built by bench_search.py (copied to a private
dir): VmRSS 5 s after /healthz answers (idle), then after `--queries` signed app_mentions were
answered (models and indexes loaded), and VmHWM. First start = a data dir that `serve` never
ran on; restart = the same dir again. Then, in a fresh process, the same objects built step
by step, with the RSS after each step.

    python benchmarks/bench_serve_memory.py            # 100k chunks, 10 questions
    python benchmarks/bench_serve_memory.py --quick    # 10k chunks, 5 questions
    python benchmarks/bench_serve_memory.py --chunks 2000 --queries 3 --skip-steps
    python benchmarks/bench_serve_memory.py --data-dir /tmp/work/scale/chunks-1000000 \
        --chroma-server --queries 40       # a built corpus in place (bench_scale.py's 10^6)

With ``--data-dir`` one `serve` runs on that corpus in place, asked bench_search.py's questions
(real sentences, like the synthetic corpus), and the report adds when its BM25 warm-up
finished (the log line of `retrieval/lexical_warm.py`) and, with ``--chroma-server``, the RSS of
the `chroma run` holding the vectors.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from benchmarks.common import (
    BOT_TOKEN,
    BOT_WORK,
    DEV_QUESTIONS,
    LLM_MODEL,
    PAPERBOT,
    SECRET,
    answer_settings,
    begin,
    bench_parser,
    cited_reply,
    classify,
    copy_dir,
    finish,
    free_port,
    index_dir,
    log,
    make_settings,
    md_table,
    mib,
    paperbot_env,
    proc_status,
    report_header,
    sample_template,
    stats,
)
from tests.support.openai_server import FakeOpenAIServer
from tests.support.slack_api import FakeSlackAPI
from tests.support.slack_requests import CHANNEL_ID, app_mention_event, event_callback, new_ts, post

LLM_DELAY_S = 0.2


def dev_questions() -> list[str]:
    from answers.evaluate import load_questions

    return [q.question for q in load_questions(DEV_QUESTIONS)]


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


def ask_and_wait(base: str, api: FakeSlackAPI, questions: list[str]) -> dict[str, float]:
    """Post a signed app_mention per question; seconds until each thread's answer is final."""
    sent: list[tuple[str, float]] = []
    for question in questions:
        ts = new_ts()
        body = event_callback(app_mention_event(question, ts=ts))
        response = post(f"{base}/slack/events", body, secret=SECRET)
        assert response.status_code == 200, response.text
        sent.append((ts, time.time()))
    deadline = time.monotonic() + 180
    answered: dict[str, float] = {}
    while time.monotonic() < deadline and len(answered) < len(sent):
        for ts, sent_at in sent:
            bot = [] if ts in answered else api.bot_messages(CHANNEL_ID, ts)
            if bot and classify(bot[-1].text, bot[-1].blocks) != "pending":
                answered[ts] = time.time() - sent_at
        time.sleep(0.2)
    return {ts: answered[ts] for ts, _ in sent if ts in answered}  # in the order asked


def run_memory(
    label: str,
    data_dir: Path,
    questions: list[str],
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    BOT_WORK.mkdir(parents=True, exist_ok=True)
    log_path = BOT_WORK / f"serve-{re.sub(r'[^a-z0-9]+', '-', label.lower()).strip('-')}.log"
    with (
        FakeSlackAPI() as api,
        FakeOpenAIServer(default_reply=cited_reply(LLM_DELAY_S)) as llm,
        log_path.open("wb") as log_file,
    ):
        port = free_port()
        env = paperbot_env(
            data_dir,
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SECRET,
            PAPERBOT_SLACK_API_URL=api.base_url,
            PAPERBOT_HTTP_HOST="127.0.0.1",
            PAPERBOT_HTTP_PORT=str(port),
            PAPERBOT_LLM_PROVIDER="openai",
            PAPERBOT_LLM_BASE_URL=llm.base_url,
            PAPERBOT_LLM_MODEL=LLM_MODEL,
            **(extra_env or {}),
        )
        log(f"memory: paperbot serve on {label}")
        start = time.perf_counter()
        proc = subprocess.Popen(
            [*PAPERBOT, "serve"], env=env, cwd=BOT_WORK, stdout=log_file, stderr=log_file
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_healthz(f"{base}/healthz", proc, timeout=180)
            startup_s = time.perf_counter() - start
            time.sleep(5.0)  # the scheduler's first tick runs at start, in the background
            idle = proc_status(proc.pid)
            answered = ask_and_wait(base, api, questions)
            time.sleep(1.0)
            after = proc_status(proc.pid)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    return {
        "label": label,
        "data_dir": str(data_dir),
        "startup_s": startup_s,
        "bm25_warm": warm_lines(log_path),
        "idle": idle,
        "after": after,
        "queries": len(questions),
        "answered": len(answered),
        "first_answer_s": next(iter(answered.values()), None),
        "answer_s": stats(list(answered.values())),
        "log": str(log_path),
    }


def warm_lines(log_path: Path) -> list[str]:
    """The BM25 warm-up's log lines (`retrieval/lexical_warm.py`) of a serve's log."""
    # the console log wraps long lines: join them, then find each message
    text = " ".join(log_path.read_text(errors="replace").split())
    return re.findall(r"BM25 \w+ field at generation \d+: .*? in [\d.]+ s", text)


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

    import answers.qa  # noqa: F401
    import bot.slack.app  # noqa: F401
    from bot.services import Services

    mark("import bot, answers, slack_bolt, retrieval")
    services = Services.build(make_settings(Path(data_dir)), answer_settings(llm_url))
    mark("Services.build (LangChain ChatOpenAI)")
    services.corpus.embedder.embed(["load the ONNX model"])
    mark("MiniLM ONNX model loaded")
    services.corpus.store.count()
    mark("Chroma opened")
    services.corpus.lexical_index()
    mark("BM25 index loaded")
    questions = dev_questions()
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
                *(mib(after.get(k)) for k in ("VmRSS", "RssAnon", "RssFile", "VmHWM")),
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
    out = report_header("Memory of `paperbot serve`", result) + render_memory(result["memory"])
    for m in result["memory"]:
        out += [f"- {m['label']}: answer seconds after the mention {m['answer_s']}"]
        out += [f"- {m['label']}: BM25 warm-up: {line}" for line in m.get("bm25_warm", [])]
    if result.get("chroma_server"):
        chroma = result["chroma_server"]
        out += [
            f"- the `chroma run`: RSS {mib(chroma.get('VmRSS'))} MiB, peak {mib(chroma.get('VmHWM'))} MiB"
        ]
    out.append("")
    if result.get("memory_steps"):
        out += render_memory_steps(result["memory_steps"]["label"], result["memory_steps"]["steps"])
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = bench_parser(__doc__, "10k chunks, 5 questions (default 100k, 10)")
    parser.add_argument("--chunks", type=int, help="index size (bench_search.py's cache)")
    parser.add_argument("--queries", type=int, help="app_mentions answered by each serve")
    parser.add_argument("--skip-steps", action="store_true", help="skip the step-by-step breakdown")
    parser.add_argument("--data-dir", type=Path, help="a built corpus, used in place")
    parser.add_argument(
        "--chroma-server", action="store_true", help="--data-dir: its vectors in a `chroma run`"
    )
    args = parser.parse_args(argv)
    if args.data_dir is not None:
        return main_data_dir(args)
    chunks = args.chunks or (10_000 if args.quick else 100_000)
    questions = dev_questions()[: args.queries or (5 if args.quick else 10)]

    started = time.perf_counter()
    result = begin()
    # A fresh copy: the first `serve` on an index has no subscription watermark yet.
    big, _ = index_dir(chunks, fresh=True)
    sample = copy_dir(sample_template(), "serve-sample", reuse=False)
    result["memory"] = [
        run_memory("30 sample papers, first start", sample, questions),
        run_memory(f"{chunks:,} chunks, first start", big, questions),
        run_memory(f"{chunks:,} chunks, restart", big, questions),
    ]
    if not args.skip_steps:
        log(f"memory: step by step on {chunks:,} chunks")
        result["memory_steps"] = {"label": f"{chunks:,} chunks", "steps": memory_steps(big)}
    name = "bot-memory" + ("-quick" if args.quick else "")
    finish(name, result, render(result), started=started, as_json=args.json)
    return result


def main_data_dir(args: Any) -> dict[str, Any]:
    """One `serve` on a built corpus in place (its vectors embedded, or in a `chroma run` on
    the same files), asked distinct questions in the corpus's language."""
    from benchmarks.bench_search import queries
    from tests.support.chroma_server import ChromaServer

    started = time.perf_counter()
    result = begin()
    questions = queries(None)[-(args.queries or 20) :]
    server = ChromaServer(args.data_dir / "chroma") if args.chroma_server else None
    extra: dict[str, str] = {}
    if server is not None:
        server.start(timeout=300)
        extra = {"PAPERBOT_CHROMA_HOST": server.host, "PAPERBOT_CHROMA_PORT": str(server.port)}
    try:
        vectors = "a `chroma run`" if server is not None else "embedded Chroma"
        label = f"{args.data_dir.name}, vectors in {vectors}"
        result["memory"] = [run_memory(label, args.data_dir, questions, extra)]
        if server is not None:
            result["chroma_server"] = proc_status(server.pid)
    finally:
        if server is not None:
            server.stop()
    for line in result["memory"][0]["bm25_warm"]:
        log(f"warm-up: {line}")
    if server is not None:
        log(f"chroma run RSS: {mib(result['chroma_server'].get('VmRSS'))} MiB")
    finish("bot-memory-data-dir", result, render(result), started=started, as_json=args.json)
    return result


if __name__ == "__main__":
    main()
