"""The live index: what keeping a long-running corpus current costs, and how soon a paper
ingested by another process is answerable.

A long-running `Corpus` (as inside `paperbot serve`) holds the index open while a separate
`paperbot ingest` process adds one paper at a time. Measured in embedded mode and against a
local `chroma run`:

- the freshness check every query pays (`Corpus.refresh` when nothing changed);
- query latency (hybrid `Corpus.search`) with no change, against the first query after an
  external ingest, which reopens the vector store (embedded: a new client loads the index
  from disk) — and the second query after it;
- "listed → answerable" on the CLI path: from starting `paperbot ingest` of one new paper in
  another process until the long-running corpus's extractive `QAService` cites it, asking
  every `--poll-ms`; split into the ingest process's run time and the wait after it exited.

Corpus: the 30 sample papers plus the 250 ACLSum abstracts (`--papers`), embedded once with
the local MiniLM (the model `paperbot ingest` uses) and copied for the server run.

    python benchmarks/bench_live_index.py            # 280 papers, 5 changes per mode (~2 min)
    python benchmarks/bench_live_index.py --quick    # 30 papers, 3 changes per mode
    python benchmarks/bench_live_index.py --json
    python benchmarks/bench_live_index.py --modes embedded --reopen-at 10000   # + a bigger index
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    WORK,
    base_records,
    begin,
    bench_parser,
    finish,
    fresh_dir,
    local_embedder,
    log,
    make_settings,
    md_table,
    paperbot_env,
    report_header,
    stats,
    write_jsonl,
)

LIVE_WORK = WORK / "live"
QUERIES = [
    "contrastive learning with large batches",
    "text-to-3D generation from a single image",
    "machine translation for low-resource languages",
    "named entity recognition",
    "speech recognition robustness",
    "parsing with neural networks",
]
# One distinctive paper per change: the question can only be answered by it.
ANIMALS = [
    ("Quokka", "hopping", "desert wildflowers", "saltbush"),
    ("Axolotl", "swimming", "coral reefs", "kelp"),
    ("Pangolin", "rolling", "tea plantations", "camellia"),
    ("Narwhal", "diving", "arctic sea ice", "plankton"),
    ("Okapi", "striding", "rainforest canopies", "orchids"),
    ("Tarsier", "leaping", "mangrove swamps", "mangroves"),
    ("Capybara", "wading", "river wetlands", "water lilies"),
    ("Echidna", "digging", "alpine meadows", "heather"),
    ("Platypus", "paddling", "billabong shallows", "reeds"),
    ("Wombat", "burrowing", "eucalyptus forests", "eucalyptus"),
    ("Kinkajou", "climbing", "cloud forests", "bromeliads"),
    ("Aardvark", "trotting", "savanna termite mounds", "acacias"),
]


def new_paper(i: int) -> tuple[dict[str, str], str]:
    animal, motion, place, plant = ANIMALS[i % len(ANIMALS)]
    record = {
        "id": f"2501.{90000 + i:05d}",
        "title": f"{animal}Bot: {motion.title()} Robots Pollinating {place.title()}",
        "abstract": (
            f"We build a swarm of small {animal.lower()}-inspired {motion} robots that pollinate "
            f"{plant} in {place}. Each robot carries a pollen brush and moves between flowers "
            f"guided by ultraviolet petal markings. In field trials the {animal.lower()} swarm "
            f"pollinated thousands of {plant} and doubled their seed set compared with hand "
            "pollination."
        ),
        "published": "2025-01-20",
    }
    return record, f"Which {motion} robots pollinate {plant} in {place}?"


def build_template(papers: int) -> Path:
    """A data dir with `papers` papers embedded by the local model (built once per size)."""
    from retrieval import Corpus
    from retrieval.sources import load_path

    path = LIVE_WORK / f"template-{papers}"
    if (path / "done").exists():
        return path
    fresh_dir(path)
    settings = make_settings(path / "data")
    feed = write_jsonl(base_records()[-papers:], path / "base.jsonl")
    log(f"embedding {papers} papers with the local model (once)")
    corpus = Corpus(settings, embedder=local_embedder(settings))
    corpus.ingest(load_path(feed))
    corpus.close()
    (path / "done").write_text("ok")
    return path


def data_dir_for(template: Path, mode: str) -> Path:
    """A private copy of the template's state (vectors are rebuilt from its embedding cache
    for the server run, so nothing is embedded twice)."""
    dst = fresh_dir(LIVE_WORK / f"run-{mode}") / "data"
    dst.mkdir()
    shutil.copy2(template / "data" / "state.sqlite3", dst / "state.sqlite3")
    if (template / "data" / "bm25").is_dir():  # the BM25 segments
        shutil.copytree(template / "data" / "bm25", dst / "bm25")
    if mode == "embedded":
        shutil.copytree(template / "data" / "chroma", dst / "chroma")
    return dst


def ingest_elsewhere(settings: Any, record: dict[str, str], i: int) -> subprocess.Popen[bytes]:
    feed = write_jsonl([record], LIVE_WORK / f"new-{i}.jsonl")
    extra = {"PAPERBOT_CHROMA_COLLECTION": settings.chroma_collection}
    if settings.chroma_host:
        extra |= {
            "PAPERBOT_CHROMA_HOST": settings.chroma_host,
            "PAPERBOT_CHROMA_PORT": str(settings.chroma_port),
        }
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "-q", "ingest", str(feed)],
        env=paperbot_env(settings.data_dir, **extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def watch(proc: subprocess.Popen[bytes], state_path: Path, start: float) -> dict[str, Any]:
    """Times, from a thread: when the other process's ingest finished its vector writes
    (the state's `index_epoch` moves, its last step) and when the process exited."""
    import sqlite3

    marks: dict[str, Any] = {}

    def epoch(db: sqlite3.Connection) -> str | None:
        row = db.execute("SELECT value FROM meta WHERE key = 'index_epoch'").fetchone()
        return row[0] if row else None

    def run() -> None:
        db = sqlite3.connect(f"file:{state_path}?mode=ro", uri=True, timeout=5)
        before = epoch(db)
        while "commit" not in marks or "exit" not in marks:
            now = time.perf_counter()
            if "commit" not in marks and epoch(db) != before:
                marks["commit"] = now
            if "exit" not in marks and proc.poll() is not None:
                marks["exit"] = now
                marks.setdefault("commit", now)  # (it failed: the assert after says so)
            time.sleep(0.002)
        db.close()

    marks["thread"] = threading.Thread(target=run, daemon=True)
    marks["thread"].start()
    return marks


def timed_ms(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return (time.perf_counter() - start) * 1000, value


def run_mode(
    mode: str, template: Path, changes: int, poll_ms: float, offset: int
) -> dict[str, Any]:
    from answers.qa import QAService
    from retrieval import Corpus
    from tests.support.chroma_server import ChromaServer

    server = None
    overrides: dict[str, Any] = {}
    data_dir = data_dir_for(template, mode)
    if mode == "server":
        server = ChromaServer(data_dir.parent / "chroma-server")
        server.start()
        overrides = {"chroma_host": server.host, "chroma_port": server.port}
    try:
        settings = make_settings(data_dir, **overrides)
        corpus = Corpus(settings, embedder=local_embedder(settings))
        repaired = corpus.repair_if_needed()  # server: vectors from the embedding cache
        qa = QAService(corpus, None)
        for query in QUERIES:  # warm: the model, the handle, BM25
            corpus.search(query, 10)
        steady = [timed_ms(corpus.search, q, 10)[0] for _ in range(5) for q in QUERIES]
        checks = []
        for _ in range(2000):
            checks.append(timed_ms(corpus.refresh)[0] * 1000)  # µs
        first, second, reopen_counts = [], [], []
        for i in range(changes):
            record, _ = new_paper(offset + i)
            proc = ingest_elsewhere(settings, record, offset + i)
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err.decode()
            reopens = corpus.store.reopens
            ms, _ = timed_ms(corpus.search, QUERIES[i % len(QUERIES)], 10)
            first.append(ms)
            reopen_counts.append(corpus.store.reopens - reopens)
            second.append(timed_ms(corpus.search, QUERIES[(i + 1) % len(QUERIES)], 10)[0])
        # listed -> answerable: ask while the other process ingests
        answerable, ingest_run, committed, after_commit, asked = [], [], [], [], []
        for i in range(changes, 2 * changes):
            record, question = new_paper(offset + i)
            start = time.perf_counter()
            proc = ingest_elsewhere(settings, record, offset + i)
            marks = watch(proc, settings.state_path, start)
            questions = 0
            while True:
                answer = qa.answer(question)
                questions += 1
                cited_at = time.perf_counter()
                if any(c.paper_id == record["id"] for c in answer.citations):
                    break
                if cited_at - start > 120:
                    raise RuntimeError(f"{record['id']} not answerable after 120 s")
                time.sleep(poll_ms / 1000)
            marks["thread"].join(120)
            assert proc.returncode == 0
            answerable.append((cited_at - start) * 1000)
            ingest_run.append((marks["exit"] - start) * 1000)
            committed.append((marks["commit"] - start) * 1000)
            after_commit.append((cited_at - marks["commit"]) * 1000)
            asked.append(questions)
        result = {
            "mode": mode,
            "papers": corpus.count_papers(),
            "chunks": corpus.stats()["chunks"],
            "repaired_at_start": repaired,
            "check_us": stats(checks),
            "steady_ms": stats(steady),
            "first_after_change_ms": stats(first),
            "second_after_change_ms": stats(second),
            "reopens_per_change": reopen_counts,
            "listed_to_answerable_ms": stats(answerable),
            "ingest_process_ms": stats(ingest_run),
            "start_to_commit_ms": stats(committed),
            "commit_to_cited_ms": stats(after_commit),
            "questions_asked": asked,
        }
        corpus.close()
        return result
    finally:
        if server is not None:
            server.stop()


def reopen_at(chunks: int, repeats: int) -> dict[str, Any]:
    """Embedded: a query right after a forced reopen (a fresh client loading the index from
    disk) against a steady one, on bench_search.py's synthetic index of `chunks` chunks."""
    from benchmarks.common import index_dir
    from retrieval import Corpus

    data_dir, _ = index_dir(chunks)
    settings = make_settings(data_dir)
    corpus = Corpus(settings, embedder=local_embedder(settings))
    for query in QUERIES:
        corpus.search(query, 10)
    steady, reopened = [], []
    for i in range(repeats):
        steady.append(timed_ms(corpus.search, QUERIES[i % len(QUERIES)], 10)[0])
        corpus.store.reopen()
        reopened.append(timed_ms(corpus.search, QUERIES[(i + 1) % len(QUERIES)], 10)[0])
    result = {"chunks": corpus.state.count_chunks(), "steady_ms": stats(steady)}
    result["after_reopen_ms"] = stats(reopened)
    corpus.close()
    return result


def report(result: dict[str, Any]) -> str:
    lines = report_header("Live index: freshness cost and listed → answerable", result)
    runs = result["runs"]
    lines.append(
        f"Corpus: {runs[0]['papers']} papers, {runs[0]['chunks']} chunks (local MiniLM); "
        f"{result['changes']} external ingests of one paper per measurement, by "
        "`python -m bot.cli ingest` in a separate process."
    )
    lines += ["", "### Query latency (hybrid `Corpus.search`, ms)", ""]
    rows = []
    for run in runs:
        for label, key in (
            ("no change (steady)", "steady_ms"),
            ("first query after an external ingest (reopen)", "first_after_change_ms"),
            ("second query after it", "second_after_change_ms"),
        ):
            s = run[key]
            rows.append([run["mode"], label, s["n"], s["p50"], s["p95"], s["max"]])
    lines.append(md_table(["mode", "query", "n", "p50", "p95", "max"], rows))
    lines += ["", "Freshness check on every query when nothing changed (`Corpus.refresh`, µs):", ""]
    lines.append(
        md_table(
            ["mode", "n", "p50", "p95", "max"],
            [[r["mode"], *(r["check_us"][k] for k in ("n", "p50", "p95", "max"))] for r in runs],
        )
    )
    lines += [
        "",
        "Reopens per external ingest: "
        + "; ".join(f"{r['mode']} {r['reopens_per_change']}" for r in runs),
        "",
        f"### Listed → answerable, CLI path (ms; asking every {result['poll_ms']:.0f} ms)",
        "",
        "From starting `paperbot ingest` of one new paper in another process until the "
        "long-running corpus's extractive answer cites it. Split: when that process had written "
        "the paper (its state's `index_epoch` moved, the last step of an ingest), the wait from "
        "there to the first answer citing it (the freshness part: at most one question period "
        "plus one answer), and the process's whole run time (interpreter, imports, model load, "
        "ingest, exit).",
        "",
    ]
    rows = []
    for run in runs:
        for label, key in (
            ("listed → cited", "listed_to_answerable_ms"),
            ("ingest start → written", "start_to_commit_ms"),
            ("written → cited", "commit_to_cited_ms"),
            ("ingest process run time", "ingest_process_ms"),
        ):
            s = run[key]
            rows.append([run["mode"], label, s["n"], s["p50"], s["p95"], s["max"]])
    lines.append(md_table(["mode", "span", "n", "p50", "p95", "max"], rows))
    if result.get("reopen_at"):
        lines += [
            "",
            "### Reopen cost by index size (embedded, ms)",
            "",
            "A query right after a forced reopen (the new client loads the index from disk) "
            "against a steady query, on bench_search.py's synthetic indexes.",
            "",
        ]
        rows = [
            [r["chunks"], label, r[key]["n"], r[key]["p50"], r[key]["p95"], r[key]["max"]]
            for r in result["reopen_at"]
            for label, key in (("steady", "steady_ms"), ("after reopen", "after_reopen_ms"))
        ]
        lines.append(md_table(["chunks", "query", "n", "p50", "p95", "max"], rows))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = bench_parser(__doc__, "30 papers, 3 changes per mode")
    parser.add_argument("--papers", type=int, default=280, help="corpus size (max 280)")
    parser.add_argument("--changes", type=int, default=5, help="external ingests per measure")
    parser.add_argument("--poll-ms", type=float, default=50.0, help="time between questions")
    parser.add_argument("--modes", nargs="+", default=["embedded", "server"])
    parser.add_argument(
        "--reopen-at",
        type=int,
        nargs="*",
        default=[],
        help="also time a forced reopen on bench_search.py's index of these chunk counts",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.papers, args.changes = 30, 3
    started = time.perf_counter()
    result = begin() | {"changes": args.changes, "poll_ms": args.poll_ms, "runs": []}
    template = build_template(min(args.papers, 280))
    for n, mode in enumerate(args.modes):
        log(f"{mode}: {args.changes} changes, then {args.changes} listed→answerable runs")
        result["runs"].append(
            run_mode(mode, template, args.changes, args.poll_ms, offset=n * 2 * args.changes)
        )
    result["reopen_at"] = [reopen_at(n, args.changes) for n in args.reopen_at]
    finish("live_index", result, report(result), started=started, as_json=args.json)
    return result


if __name__ == "__main__":
    main()
