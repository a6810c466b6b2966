"""Query embedding under concurrency: 8 answer threads embedding distinct real questions with
the local MiniLM model, micro-batched (`QueryEmbedder`, one ONNX call for the questions that
arrive while the model is busy) against unbatched (each thread calls the model alone), and
the cost of a cache hit against a model call.

Questions: the dev questions and ACLSum's one-sentence summaries (challenge, approach,
outcome) as questions, all distinct. Both modes run in the same process on the same model
instance (onnxruntime's default threads), one after the other, alternating over several
rounds so that a change in the machine's load hits both; the throughput ratio is the result.

    python benchmarks/bench_query_embed.py           # 8 threads, 480 questions, 3 rounds
    python benchmarks/bench_query_embed.py --quick   # 120 questions, 1 round
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from answers.evaluate import load_questions
from benchmarks.common import (
    DEV_QUESTIONS,
    WORK,
    acl_docs,
    begin,
    bench_parser,
    finish,
    local_embedder,
    log,
    make_settings,
    md_table,
    percentile,
    report_header,
)
from retrieval.query_embeddings import QueryEmbedder, normalise_query

# "one call at a time" runs the model as often as unbatched but never concurrently: the same
# number of busy threads as micro-batching, so it separates the gain of batching from the CPU
# share that 8 concurrent onnxruntime calls take from other processes on a shared machine.
MODES = ("unbatched", "unbatched, one call at a time", "micro-batched")


def questions() -> list[str]:
    dev = [q.question for q in load_questions(DEV_QUESTIONS)]
    summaries = [s for d in acl_docs() for s in d.summaries.values()]
    return list(dict.fromkeys(normalise_query(q) for q in dev + summaries if q.strip()))


def run_threads(embed: Callable[[str], Any], texts: list[str], threads: int) -> dict[str, Any]:
    """Every thread takes the next question until none is left; per-call latency in ms."""
    latencies: list[float] = []
    lock = threading.Lock()
    todo = iter(texts)

    def worker() -> None:
        while True:
            with lock:
                text = next(todo, None)
            if text is None:
                return
            start = time.perf_counter()
            embed(text)
            elapsed = (time.perf_counter() - start) * 1000
            with lock:
                latencies.append(elapsed)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    start, cpu = time.perf_counter(), time.process_time()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu  # all threads of this process, onnxruntime's included
    return {
        "questions": len(texts),
        "wall_s": wall,
        "per_s": len(texts) / wall,
        "cpu_ms_per_question": cpu / len(texts) * 1000,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
    }


def cache_hit_cost(query: QueryEmbedder, texts: list[str], repeat: int = 20) -> float:
    """Mean µs of a cache hit (normalising the text and the LRU lookup)."""
    for text in texts:
        query.embed_query(text)
    start = time.perf_counter()
    for _ in range(repeat):
        for text in texts:
            query.embed_query(text)
    return (time.perf_counter() - start) / (repeat * len(texts)) * 1e6


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = bench_parser(__doc__, "120 questions, 1 round")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--questions", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = begin()
    texts = questions()[: args.questions or (120 if args.quick else 480)]
    rounds = args.rounds or (1 if args.quick else 3)
    model = local_embedder(make_settings(WORK / "query-embed"))
    log(f"{len(texts)} distinct questions, {args.threads} threads, {rounds} rounds")

    # Identical vectors: batched rows against each text embedded alone.
    batched_rows = model.embed(texts[:32])
    alone = np.stack([model.embed_query(t) for t in texts[:32]])
    result["max_abs_diff_batched_vs_alone"] = float(np.abs(batched_rows - alone).max())

    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    calls: list[int] = []
    serial = threading.Lock()

    def one_at_a_time(text: str) -> Any:
        with serial:
            return model.embed_query(text)

    for r in range(rounds):
        for mode in MODES:
            if mode == "unbatched":
                run = run_threads(model.embed_query, texts, args.threads)
            elif mode == "unbatched, one call at a time":
                run = run_threads(one_at_a_time, texts, args.threads)
            else:
                query = QueryEmbedder(model, cache_size=0)
                run = run_threads(query.embed_query, texts, args.threads)
                calls.append(query.model_calls)
                run["model_calls"] = query.model_calls
            log(f"round {r + 1} {mode}: {run['per_s']:.0f} questions/s, p95 {run['p95_ms']:.1f} ms")
            runs[mode].append(run)
    one = run_threads(model.embed_query, texts[:60], 1)
    one_wrapped = run_threads(QueryEmbedder(model, cache_size=0).embed_query, texts[:60], 1)
    cached = QueryEmbedder(model, cache_size=4096)
    hit_us = cache_hit_cost(cached, texts)
    result.update(
        threads=args.threads,
        questions=len(texts),
        rounds=rounds,
        runs=runs,
        mean_batch=len(texts) / float(np.mean(calls)),
        single_thread_raw=one,
        single_thread_wrapped=one_wrapped,
        cache_hit_us=hit_us,
    )
    best = {m: max(r["per_s"] for r in rs) for m, rs in runs.items()}
    result["throughput_ratio"] = best["micro-batched"] / best["unbatched"]
    result["throughput_ratio_serial"] = best["micro-batched"] / best[MODES[1]]
    cpu = {m: min(r["cpu_ms_per_question"] for r in rs) for m, rs in runs.items()}
    result["cpu_ratio"] = cpu["unbatched"] / cpu["micro-batched"]
    finish("bench_query_embed", result, render(result), started=started, as_json=args.json)
    return result


def render(result: dict[str, Any]) -> str:
    lines = report_header("Query embedding: micro-batched vs unbatched, and the cache", result)
    lines += [
        f"{result['threads']} threads embedding {result['questions']} distinct real questions "
        f"with the local MiniLM (int8 ONNX), {result['rounds']} alternating rounds; "
        f"micro-batched calls embedded {result['mean_batch']:.1f} questions on average. "
        "Rows are identical batched and alone (max abs difference "
        f"{result['max_abs_diff_batched_vs_alone']:.1e}).",
        "",
    ]
    rows = [
        [
            mode,
            i + 1,
            r["per_s"],
            r["cpu_ms_per_question"],
            r["p50_ms"],
            r["p95_ms"],
            r.get("model_calls", r["questions"]),
        ]
        for mode, rs in result["runs"].items()
        for i, r in enumerate(rs)
    ]
    headers = ["mode", "round", "questions/s", "CPU ms/question", "p50 ms", "p95 ms", "calls"]
    lines.append(md_table(headers, rows))
    one, wrapped = result["single_thread_raw"], result["single_thread_wrapped"]
    lines += [
        "",
        f"Best throughput ratio micro-batched / unbatched: **{result['throughput_ratio']:.2f}×**; "
        f"micro-batched / one call at a time: **{result['throughput_ratio_serial']:.2f}×**. "
        f"CPU per question, unbatched / micro-batched: **{result['cpu_ratio']:.2f}×** (CPU time "
        "does not depend on the share of a loaded machine this process gets; wall-clock "
        "throughput does).",
        f"One thread (no concurrency): raw model p50 {one['p50_ms']:.1f} ms, through the "
        f"batcher p50 {wrapped['p50_ms']:.1f} ms (a lone caller never waits).",
        f"A cache hit (normalise + LRU lookup): **{result['cache_hit_us']:.1f} µs**, against "
        f"{one['p50_ms'] * 1000:.0f} µs for a model call.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
