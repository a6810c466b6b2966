"""Run the corpus benchmarks and print one markdown report (``make bench``).

Each benchmark runs in its own process (a clean heap, its own Chroma clients), one after the
other; the combined report is printed and saved to ``benchmarks/.work/results/report.md``.
By default: quality, ingest and search. The Slack bot benchmarks (slack_burst, answer_latency,
serve_memory) run only when named with ``--only``.

    python benchmarks/run_all.py           # full: 1,000 papers; 10k and 100k chunks
    python benchmarks/run_all.py --quick   # 200 papers; 10k chunks; dev questions only
    python benchmarks/run_all.py --quick --only slack_burst answer_latency serve_memory
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS, log, machine_info, md_table

HERE = Path(__file__).resolve().parent
BOT_BENCHMARKS = [
    "bench_slack_burst.py",
    "bench_answer_latency.py",
    "bench_serve_memory.py",
    "bench_live_index.py",
    "bench_feeds.py",
]


def name_of(script: str) -> str:
    return script.removeprefix("bench_").removesuffix(".py")


def plan(quick: bool) -> list[tuple[str, list[str]]]:
    """The default benchmarks, with their arguments."""
    if quick:
        return [
            ("bench_quality.py", ["--skip-aclsum"]),
            ("bench_ingest.py", ["--papers", "200", "--repeats", "1", "--rounds", "1"]),
            ("bench_search.py", ["--chunks", "10000", "--repeats", "1", "--queries", "100"]),
        ]
    return [
        ("bench_quality.py", []),
        ("bench_retrieval_bm25.py", []),
        ("bench_offline_answers.py", []),
        ("bench_ingest.py", ["--papers", "1000", "--repeats", "3"]),
        ("bench_search.py", ["--chunks", "10000", "100000", "--repeats", "3"]),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    default = [name_of(s) for s, _ in plan(False)]
    parser.add_argument(
        "--only",
        choices=default + [name_of(s) for s in BOT_BENCHMARKS],
        nargs="+",
        help="run only these (the Slack bot benchmarks run only when named)",
    )
    args = parser.parse_args(argv)
    chosen = args.only or default

    machine = machine_info()
    sections = [
        "## paperbot benchmarks" + (" (quick)" if args.quick else ""),
        "",
        md_table(["machine", ""], [[k, v] for k, v in machine.items()]),
        "",
    ]
    failed = 0
    scripts = plan(args.quick) + [(s, ["--quick"] if args.quick else []) for s in BOT_BENCHMARKS]
    for script, script_args in scripts:
        if name_of(script) not in chosen:
            continue
        command = [sys.executable, str(HERE / script), *script_args]
        log("running " + " ".join(command[1:]))
        start = time.perf_counter()
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            failed += 1
            sections += [f"### {script} FAILED (exit {done.returncode})", "", done.stdout, ""]
            continue
        sections += [done.stdout.strip(), "", f"_{script} took {seconds:.0f} s._", ""]
    report = "\n".join(sections)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "report.md").write_text(report + "\n")
    print(report)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
