"""Run the three benchmarks and print one markdown report (``make bench``).

Each benchmark runs in its own process (a clean heap, its own Chroma clients), one after the
other; the combined report is printed and saved to ``benchmarks/.work/results/report.md``.

    python benchmarks/run_all.py           # full: 1,000 papers; 10k and 100k chunks
    python benchmarks/run_all.py --quick   # 200 papers; 10k chunks; dev questions only
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


def plan(quick: bool) -> list[tuple[str, list[str]]]:
    if quick:
        return [
            ("bench_quality.py", ["--skip-aclsum"]),
            ("bench_ingest.py", ["--papers", "200", "--repeats", "1", "--rounds", "1"]),
            ("bench_search.py", ["--chunks", "10000", "--repeats", "1", "--queries", "100"]),
        ]
    return [
        ("bench_quality.py", []),
        ("bench_ingest.py", ["--papers", "1000", "--repeats", "3"]),
        ("bench_search.py", ["--chunks", "10000", "100000", "--repeats", "3"]),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    parser.add_argument(
        "--only", choices=["quality", "ingest", "search"], nargs="+", help="run only these"
    )
    args = parser.parse_args(argv)

    machine = machine_info()
    sections = [
        "## paperbot benchmarks" + (" (quick)" if args.quick else ""),
        "",
        md_table(["machine", ""], [[k, v] for k, v in machine.items()]),
        "",
    ]
    failed = 0
    for script, script_args in plan(args.quick):
        if args.only and script.removeprefix("bench_").removesuffix(".py") not in args.only:
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
