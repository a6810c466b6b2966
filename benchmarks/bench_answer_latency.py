"""Answer latency split: where the time of one answer goes, and paperbot's own overhead.

Target (from the project's issue): the answer latency split into retrieval, prompt building,
LLM wait, verification and the Slack post; paperbot's own overhead (everything except the LLM
wait) p95 <= 150 ms at 100k chunks.

How it is measured: `QAService.answer` on the index of `--chunks` chunks built by
bench_search.py (reused from its cache, copied to a private dir so nothing here writes into
it), LLM = `FakeOpenAIServer` answering after `--llm-delay` seconds with two cited sentences.
Per question: `Answer.timings_ms` per stage, the functions inside timed exclusively
(`PhaseTimer`), plus the Slack post step timed here (remember_answer + blocks.answer_message +
chat.update to a `FakeSlackAPI`). The first `--e2e` questions also go end to end through
`bot.slack.replies.answer_in_thread` (the @mention path: placeholder, streaming, verification,
final update), minus the LLM wait, interleaved so both see the same machine load. Last, the
extractive mode (no LLM) on the same questions, for comparison.

    python benchmarks/bench_answer_latency.py            # 100 questions at 100k chunks
    python benchmarks/bench_answer_latency.py --quick    # 30 questions at 10k chunks
    python benchmarks/bench_answer_latency.py --chunks 2000 --questions 10 --e2e 3 --json
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    PhaseTimer,
    TimedEmbedder,
    answer_settings,
    begin,
    bench_parser,
    cited_reply,
    finish,
    index_dir,
    load_average,
    local_embedder,
    log,
    make_settings,
    md_table,
    report_header,
    slack_settings,
    stats,
    verdict,
)
from tests.support.openai_server import FakeOpenAIServer
from tests.support.slack_api import FakeSlackAPI
from tests.support.slack_requests import CHANNEL_ID, new_ts

OVERHEAD_TARGET_MS = 150.0
STAGES = [
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
]


def answer_components() -> list[tuple[object, str, str]]:
    """Functions timed (exclusively) inside QAService.answer, on top of bench_search's split."""
    from answers import citations
    from answers.qa import QAService
    from benchmarks.bench_search import SEARCH_PHASES
    from retrieval.lexical import BM25Index
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


def timed_post(services: Any, client: Any, answer: Any, placeholder_ts: str) -> dict[str, float]:
    """The Slack post step of one answer, timed: remember it, format it, chat.update."""
    from bot.slack import blocks
    from bot.slack.replies import remember_answer

    t0 = time.perf_counter()
    feedback_id = remember_answer(services, answer)
    t1 = time.perf_counter()
    text, blks = blocks.answer_message(answer, feedback_id)
    t2 = time.perf_counter()
    client.chat_update(channel=CHANNEL_ID, ts=placeholder_ts, text=text, blocks=blks)
    t3 = time.perf_counter()
    return {
        "remember_ms": (t1 - t0) * 1000,
        "format_ms": (t2 - t1) * 1000,
        "update_ms": (t3 - t2) * 1000,
        "slack_post_ms": (t3 - t0) * 1000,
    }


def end_to_end(services: Any, client: Any, question: str) -> dict[str, Any]:
    """One question through answer_in_thread (the @mention path), wall time minus LLM wait."""
    from bot.slack.replies import answer_in_thread

    start = time.perf_counter()
    threaded = answer_in_thread(
        services, client, channel=CHANNEL_ID, thread_ts=new_ts(), question=question
    )
    wall_ms = (time.perf_counter() - start) * 1000
    llm_ms = threaded.timings_ms.get("llm_ms", 0.0) if threaded else 0.0
    mode = threaded.mode if threaded else "error"
    return {"mode": mode, "wall_ms": wall_ms, "llm_ms": llm_ms, "own_ms": wall_ms - llm_ms}


def run_split(chunks: int, n_questions: int, llm_delay: float, e2e: int) -> dict[str, Any]:
    from answers.qa import QAService
    from benchmarks.bench_search import queries, warm_os_cache
    from bot.services import Services
    from bot.slack import blocks
    from bot.slack.app import make_client
    from retrieval import Corpus

    data_dir, meta = index_dir(chunks, fresh=True)
    questions = queries(n_questions)
    result: dict[str, Any] = {"chunks": meta["chunks"], "papers": meta["papers"]}
    result |= {"questions": len(questions), "llm_delay_ms": llm_delay * 1000}
    rows: list[dict[str, Any]] = []
    e2e_rows: list[dict[str, Any]] = []
    components: dict[str, float] = {}
    with (
        FakeSlackAPI() as api,
        FakeOpenAIServer(default_reply=cited_reply(llm_delay)) as llm,
    ):
        settings = make_settings(data_dir)
        warm_os_cache(data_dir)
        timer = PhaseTimer()
        corpus = Corpus(settings, embedder=TimedEmbedder(local_embedder(settings), timer))
        services = Services.build(settings, answer_settings(llm.base_url), corpus=corpus)
        client = make_client(slack_settings(api.base_url))
        log(f"split: warming up on {meta['chunks']:,} chunks")
        for question in questions[:5]:
            services.qa.answer(question)
        result["load_before"] = load_average()
        log(
            f"split: {len(questions)} questions through QAService.answer + the Slack post; "
            f"the first {min(e2e, len(questions))} also end to end through answer_in_thread "
            "(interleaved, so both see the same machine load)"
        )
        for i, question in enumerate(questions):
            text, blks = blocks.placeholder(question)
            placeholder = client.chat_postMessage(
                channel=CHANNEL_ID, thread_ts=new_ts(), text=text, blocks=blks
            )
            with timer.patch(answer_components()):
                timer.reset()
                answer = services.qa.answer(question)
                if answer.mode == "llm":
                    for phase, seconds in timer.seconds.items():
                        components[phase] = components.get(phase, 0.0) + seconds * 1000
            row: dict[str, Any] = {"mode": answer.mode, **answer.timings_ms}
            row |= timed_post(services, client, answer, placeholder["ts"])
            row["own_ms"] = row["total_ms"] - row.get("llm_ms", 0.0) + row["slack_post_ms"]
            rows.append(row)
            if i < e2e:
                e2e_rows.append(end_to_end(services, client, question))

        log("split: extractive mode (no LLM)")
        extractive = QAService(corpus, None, answer_settings())
        for question in questions[:3]:
            extractive.answer(question)
        ex_rows = []
        for attempt in ("first", "again"):  # first: sentence vectors not cached yet
            for question in questions:
                answer = extractive.answer(question)
                ex_rows.append({"pass": attempt, "mode": answer.mode, **answer.timings_ms})
        result["load_after"] = load_average()
        corpus.close()
    return result | {
        "rows": rows,
        "components_ms": components,
        "e2e": e2e_rows,
        "extractive": ex_rows,
    }


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def extractive_table(ex_rows: list[dict[str, Any]]) -> list[list[Any]]:
    table = []
    for attempt, label in (
        ("first", "first ask (sentence vectors embedded, then cached)"),
        ("again", "same questions again (sentence vectors cached)"),
    ):
        ex = [r for r in ex_rows if r.get("pass", "first") == attempt]
        for name, key in (
            ("retrieval", "retrieval_ms"),
            ("quote extraction", "extract_ms"),
            ("total", "total_ms"),
        ):
            s = stats([r[key] for r in ex if key in r])
            table.append([f"{label}: {name}", s["n"], s["p50"], s["p95"], s["max"]])
    return table


def render_split(split: dict[str, Any]) -> list[str]:
    rows = split["rows"]
    llm_rows = [r for r in rows if r["mode"] == "llm"]
    modes: dict[str, int] = {}
    for r in rows:
        modes[r["mode"]] = modes.get(r["mode"], 0) + 1
    table = []
    for name, key in STAGES:
        s = stats([r[key] for r in llm_rows if key in r])
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
    own = stats([r["own_ms"] for r in llm_rows])
    big = split["chunks"] >= 100_000
    return [
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
        md_table(["extractive", "n", "p50", "p95", "max"], extractive_table(split["extractive"])),
        "",
        f"- Own overhead p95 ≤ {OVERHEAD_TARGET_MS:.0f} ms at {split['chunks']:,} chunks: "
        + (verdict(own["p95"] <= OVERHEAD_TARGET_MS) if big else "(not the 100k index)")
        + f" (p95 {own['p95']:.1f} ms stage sum; {e2e_own['p95']:.1f} ms end to end)",
        "",
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = bench_parser(__doc__, "30 questions at 10k chunks (default 100 at 100k)")
    parser.add_argument("--chunks", type=int, help="index size (bench_search.py's cache)")
    parser.add_argument("--questions", type=int, help="questions asked")
    parser.add_argument("--e2e", type=int, help="of which end to end through answer_in_thread")
    parser.add_argument("--llm-delay", type=float, default=0.1, help="LLM delay, s")
    args = parser.parse_args(argv)
    chunks = args.chunks or (10_000 if args.quick else 100_000)
    questions = args.questions or (30 if args.quick else 100)
    e2e = args.e2e if args.e2e is not None else (10 if args.quick else 50)

    started = time.perf_counter()
    result = begin()
    result["split"] = run_split(chunks, questions, args.llm_delay, e2e)
    body = "\n".join(report_header("Answer latency split", result) + render_split(result["split"]))
    name = "bot-split" + ("-quick" if args.quick else "")
    finish(name, result, body, started=started, as_json=args.json)
    return result


if __name__ == "__main__":
    main()
