"""Feeds inside `paperbot serve`: how soon a listed paper is answerable, and what the watcher
costs while nothing is due.

1. Feed → answerable. A corpus like serve's (local MiniLM, 210 real abstracts already
   indexed) with an HF Daily Papers feed on a local feed server. The
   server starts listing N new papers (distinct ACLSum abstracts, never seen before, so no
   cache helps); the watcher's runner polls the feed (`FeedRunner.run_due`, exactly what the
   background thread calls), ingests them, and the next question about one of them goes
   through the same `QAService` Slack uses. Measured: poll + fetch + ingest, then the answer,
   and whether it cites the new paper. The wait for the poll itself comes on top: at most the
   feed's interval (HF: 30 min by default; arXiv: 15 min after the announcement).
2. Idle cost. Three feeds (hf, arxiv, url), none due. Process CPU over `--idle-seconds` with
   the watcher thread running against the same interval without it, the number of polls and
   the HTTP requests the feed server saw (should be 0).

    python benchmarks/bench_feeds.py                # 5 rounds of 1 and of 10 papers, 60 s idle
    python benchmarks/bench_feeds.py --quick        # 2 rounds, 20 s idle
    python benchmarks/bench_feeds.py --json
"""

from __future__ import annotations

import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    WORK,
    acl_docs,
    answer_settings,
    base_records,
    begin,
    bench_parser,
    finish,
    fresh_dir,
    local_embedder,
    log,
    make_settings,
    md_table,
    stats,
)
from bot.services import Services
from bot.slack.feed_watcher import FeedRunner, FeedWatcher
from bot.slack.feeds import arxiv_feed, hf_feed, url_feed
from bot.slack.settings import SlackSettings
from retrieval import Corpus, Paper
from retrieval.sources import tabular
from tests.support.feed_server import FeedServer, hf_json

HF_PATH = "/api/daily_papers"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _new_papers(count: int, offset: int) -> list[Paper]:
    """ACLSum abstracts from the end of the list, as papers a feed lists for the first time."""
    docs = list(reversed(acl_docs()))[offset : offset + count]
    return [
        Paper(paper_id=f"new-{offset + i}", title=d.title, abstract=d.abstract)
        for i, d in enumerate(docs)
    ]


def feed_to_answer(rounds: int, sizes: list[int]) -> dict[str, Any]:
    data = fresh_dir(WORK / "feeds")
    settings = make_settings(data / "data")
    corpus = Corpus(settings, embedder=local_embedder(settings))
    records = base_records()  # 250 ACLSum abstracts, then the 30 sample papers
    background = records[:180] + records[250:]  # the last 70 ACLSum abstracts stay new
    log(f"indexing {len(background)} background papers")
    corpus.ingest(tabular.parse_records(background, origin="background"))
    services = Services.build(settings, answer_settings(), corpus=corpus, llm=None)
    services.qa.answer("warm up the model and the indexes")
    rows: list[dict[str, Any]] = []
    with FeedServer() as server:
        settings = settings.model_copy(update={"hf_api_url": server.url + HF_PATH})
        services.store.add_feed(hf_feed("hf").row())
        runner = FeedRunner(corpus, services.store, settings, SlackSettings(_env_file=None))  # type: ignore[call-arg]
        offset, day = 0, datetime.now(UTC)
        for size in sizes:
            for round_no in range(rounds):
                papers = _new_papers(size, offset)
                offset += size
                day += timedelta(days=1)  # a new listing day, so the feed is due
                server.enqueue(HF_PATH, 200, hf_json(papers, 10_000 + offset, day.isoformat()))
                t0 = time.perf_counter()
                [run] = runner.run_due(day, due_only=False)
                t1 = time.perf_counter()
                answer = services.qa.answer(f"What does the paper “{papers[-1].title}” propose?")
                t2 = time.perf_counter()
                cited = any(c.title == papers[-1].title for c in answer.citations)
                rows.append(
                    {
                        "size": size,
                        "poll_ingest_s": t1 - t0,
                        "answer_s": t2 - t1,
                        "new": run.new,
                        "cited": cited,
                    }
                )
                log(
                    f"{size} paper(s), round {round_no + 1}: {t1 - t0:.2f} s + {t2 - t1:.2f} s, cited {cited}"
                )
    corpus.close()
    return {"rows": rows}


def idle_cost(seconds: float) -> dict[str, Any]:
    data = fresh_dir(WORK / "feeds-idle")
    settings = make_settings(data / "data")
    corpus = Corpus(settings, embedder=local_embedder(settings))
    services = Services.build(settings, answer_settings(), corpus=corpus, llm=None)
    with FeedServer() as server:
        settings = settings.model_copy(update={"hf_api_url": server.url + HF_PATH})
        for feed in (
            hf_feed("hf"),
            arxiv_feed("arxiv", categories=["cs.CL"]),
            url_feed(server.url + "/x.jsonl", "u"),
        ):
            services.store.add_feed(feed.row())
        far = (datetime.now(UTC) + timedelta(days=30)).timestamp()
        for name in ("hf", "arxiv", "u"):  # polled a moment ago: next due in a month
            services.store.claim_feed(name, "bench", 0, 0, due_only=False)
            services.store.finish_feed(name, at=time.time(), ok=True, next_due=far)
        runner = FeedRunner(corpus, services.store, settings, SlackSettings(_env_file=None))  # type: ignore[call-arg]
        polls: list[float] = []
        run_due = runner.run_due

        def counted(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return run_due(*args, **kwargs)
            finally:
                polls.append(time.thread_time() - start)

        runner.run_due = counted  # type: ignore[method-assign]
        log(f"idle: {seconds:.0f} s without the watcher, then {seconds:.0f} s with it")
        c0 = _cpu()
        time.sleep(seconds)
        without = _cpu() - c0
        watcher = FeedWatcher(runner, max_sleep=10.0)  # wakes more often than serve's 60 s
        c0 = _cpu()
        watcher.start()
        time.sleep(seconds)
        with_watcher = _cpu() - c0
        watcher.stop()
        requests = len(server.requests)
    corpus.close()
    return {
        "seconds": seconds,
        "cpu_without_ms": without * 1000,
        "cpu_with_ms": with_watcher * 1000,
        "wakeups": len(polls),
        "wakeup_cpu_ms": sum(polls) * 1000,
        "http_requests": requests,
    }


def render(result: dict[str, Any]) -> str:
    lines = ["## Feeds: listed → answerable, and the idle watcher", ""]
    table = []
    for size in sorted({r["size"] for r in result["answer"]["rows"]}):
        rows = [r for r in result["answer"]["rows"] if r["size"] == size]
        poll, ans = stats([r["poll_ingest_s"] for r in rows]), stats([r["answer_s"] for r in rows])
        table.append(
            [
                size,
                len(rows),
                f"{poll['p50']:.2f} ({poll['max']:.2f})",
                f"{ans['p50']:.2f} ({ans['max']:.2f})",
                f"{sum(r['cited'] for r in rows)}/{len(rows)}",
            ]
        )
    lines += [
        md_table(
            [
                "papers listed",
                "rounds",
                "poll + ingest, s p50 (max)",
                "next answer, s p50 (max)",
                "new paper cited",
            ],
            table,
        ),
        "",
        "Add the wait for the poll itself: up to the feed's interval (HF 30 min by default, "
        "arXiv 15 min after its announcement).",
        "",
    ]
    idle = result["idle"]
    lines += [
        md_table(
            [
                "idle interval",
                "process CPU without watcher",
                "with watcher",
                "watcher wake-ups",
                "their CPU",
                "HTTP requests",
            ],
            [
                [
                    f"{idle['seconds']:.0f} s",
                    f"{idle['cpu_without_ms']:.0f} ms",
                    f"{idle['cpu_with_ms']:.0f} ms",
                    idle["wakeups"],
                    f"{idle['wakeup_cpu_ms']:.1f} ms",
                    idle["http_requests"],
                ]
            ],
        ),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = bench_parser(__doc__, "2 rounds per size, 20 s idle")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    rounds, idle_s = (2, 20.0) if args.quick else (args.rounds, args.idle_seconds)
    started = time.perf_counter()
    result = begin()
    result["answer"] = feed_to_answer(rounds, [1, 10])
    result["idle"] = idle_cost(idle_s)
    finish(
        "feeds" + ("-quick" if args.quick else ""),
        result,
        render(result),
        started=started,
        as_json=args.json,
    )
    return result


if __name__ == "__main__":
    main()
