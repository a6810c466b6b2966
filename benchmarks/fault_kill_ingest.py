"""`kill -9` of `paperbot ingest` at random points, ten times, then one full re-run: the index
and the paper metadata must agree exactly (same papers, no orphan chunks, no duplicates).

The corpus is the 250 ACLSum abstracts (tests/support/corpora.py) as JSON Lines, ingested with
``python -m bot.cli -q ingest FILE`` on a fresh data dir (embedded Chroma, local MiniLM). Each
run is SIGKILLed at a seeded random point; the points are spread over the run:

* ``early``: 0.05-0.6 s after the start (interpreter start, imports, settings);
* ``time``: uniform over the expected length of *this* run (start-up plus ~3.5 s per batch of
  64 papers still to ingest), so it may land in embedding, in a state commit, in the Chroma
  writes, in the repair of the previous kill, or in the BM25 save;
* ``chroma-write``: right after this run commits a batch to the state (the ``index_dirty``
  flag goes up with the commit) plus 0-30 ms, i.e. while the vectors are written to Chroma (a
  batch's upsert takes tens of milliseconds, so some of these kills land just after it). When
  nothing is left to commit, the run gets a ``time`` kill instead.

A run that ends before its kill is recorded and another run is started, until ten runs were
killed.

Later runs are shorter: papers committed by an earlier run are not ingested again, and their
vectors come from the embedding cache (committed in the same transaction as the chunks). After
each kill a separate process reads the state and counts the vectors in Chroma. Then one run
without a kill, and the checks (through ``Corpus``): 250 papers; ``store.ids() ==
state.chunk_ids()``; ``store.count() == len(ids)``; the saved BM25 index has the state's
generation and one row per chunk; the chunk ids are exactly those ``chunk_paper`` makes for
each record; the index is not marked dirty. Exit 1 on any mismatch.

    python benchmarks/fault_kill_ingest.py               # 10 kills, seed 7, ~1-2 min
    python benchmarks/fault_kill_ingest.py --kills 3 --seed 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    PAPERBOT,
    WORK,
    fresh_dir,
    log,
    make_settings,
    md_table,
    paperbot_env,
    save_results,
)

BATCH = 64  # retrieval.ingest.BATCH_PAPERS
START_UP_S = 1.5  # interpreter, imports, model load: a run with nothing to do takes ~1.7 s
PER_BATCH_S = 3.5  # chunk + embed + commit + Chroma writes of 64 fresh abstracts


@dataclass
class KillRecord:
    run: int
    mode: str
    planned_s: float | None  # the chosen kill time (time modes)
    at_s: float  # seconds after the start when SIGKILL was sent, or when the run exited
    killed: bool
    exit_code: int | None
    phase: str  # what the state showed at the kill
    papers: int  # papers committed after the kill
    chunks: int  # chunks committed after the kill
    vectors: int | None  # vectors in Chroma after the kill (None: could not be read)
    dirty: bool  # the state still marks the vector index as behind


# --------------------------------------------------------------------------------------------
# reading the state from outside (read-only; the ingest may be writing)
# --------------------------------------------------------------------------------------------


def read_state(state_file: Path) -> dict[str, int]:
    """papers, chunks, generation and the dirty flag; zeros when the file is not there yet."""
    empty = {"papers": 0, "chunks": 0, "generation": 0, "dirty": 0}
    if not state_file.exists():
        return empty
    try:
        with sqlite3.connect(f"file:{state_file}?mode=ro", uri=True, timeout=1) as db:
            papers = int(db.execute("SELECT COUNT(*) FROM papers").fetchone()[0])
            chunks = int(db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.Error:
        return empty
    return {
        "papers": papers,
        "chunks": chunks,
        "generation": int(meta.get("generation", 0) or 0),
        "dirty": int(meta.get("index_dirty", 0) or 0),
    }


def probe_vectors(data_dir: Path) -> int | None:
    """Vectors in the embedded Chroma index, counted by a separate process (Chroma's embedded
    mode is one process at a time)."""
    result = subprocess.run(
        [sys.executable, __file__, "--probe", str(data_dir)],
        capture_output=True,
        text=True,
        cwd=data_dir.parent,
        env=paperbot_env(data_dir),
        timeout=120,
    )
    if result.returncode != 0:
        log(f"probe failed: {result.stderr.strip()[-300:]}")
        return None
    return int(json.loads(result.stdout.strip().splitlines()[-1])["vectors"])


def _probe(data_dir: Path) -> None:
    from retrieval import Corpus

    corpus = Corpus(make_settings(data_dir))
    print(json.dumps({"vectors": corpus.store.count()}))


# --------------------------------------------------------------------------------------------
# one killed run
# --------------------------------------------------------------------------------------------


def ingest_cmd(feed: Path) -> list[str]:
    return [*PAPERBOT, "-q", "ingest", str(feed)]


def phase_of(before: dict[str, int], now: dict[str, int]) -> str:
    """Where the run was, as far as the state shows it."""
    commits = now["generation"] - before["generation"]
    if commits == 0:
        if now["dirty"]:
            return "before its first commit; the previous kill's Chroma lag not yet repaired"
        return "before its first commit (start-up, planning, embedding)"
    if now["dirty"]:
        return f"Chroma writes after commit {commits}"
    return f"after commit {commits}, Chroma in step (embedding the next batch / BM25 save)"


def killed_run(
    run: int, mode: str, feed: Path, data_dir: Path, total: int, rng: random.Random
) -> KillRecord:
    state_file = data_dir / "state.sqlite3"
    before = read_state(state_file)
    remaining = max(0, total - before["papers"])
    expected = START_UP_S + PER_BATCH_S * math.ceil(remaining / BATCH)
    if mode == "chroma-write" and remaining == 0:
        mode = "time"  # nothing left to commit: this run only repairs, checks and saves BM25
    planned: float | None = None
    if mode == "early":
        planned = rng.uniform(0.05, 0.6)
    elif mode == "time":
        planned = rng.uniform(0.05, expected)
    extra = rng.uniform(0.0, 0.03)  # chroma-write: how far into the vector writes
    log_path = data_dir.parent / f"run-{run:02d}.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            ingest_cmd(feed),
            env=paperbot_env(data_dir),
            cwd=data_dir.parent,
            stdout=out,
            stderr=out,
        )
    start = time.monotonic()
    phase = ""
    deadline = start + expected * 3 + 30
    while proc.poll() is None and time.monotonic() < deadline:
        elapsed = time.monotonic() - start
        if planned is not None and elapsed >= planned:
            phase = phase_of(before, read_state(state_file))
            break
        if mode == "chroma-write":
            now = read_state(state_file)
            if now["generation"] > before["generation"] and now["dirty"]:
                time.sleep(extra)
                phase = f"{phase_of(before, now)} (+{extra * 1000:.0f} ms)"
                break
        time.sleep(0.005 if mode == "chroma-write" else 0.01)
    at = time.monotonic() - start
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    exit_code = proc.wait()
    if not killed:
        phase = "finished before the kill" if exit_code == 0 else f"exited {exit_code}"
    after = read_state(state_file)
    return KillRecord(
        run=run,
        mode=mode,
        planned_s=round(planned, 2) if planned is not None else None,
        at_s=round(at, 2),
        killed=killed,
        exit_code=exit_code,
        phase=phase,
        papers=after["papers"],
        chunks=after["chunks"],
        vectors=probe_vectors(data_dir),
        dirty=bool(after["dirty"]),
    )


def kill_modes(kills: int, rng: random.Random) -> list[str]:
    """The first kill is early; the rest a seeded mix of random times and Chroma writes."""
    rest = ["time", "chroma-write"] * math.ceil(kills / 2)
    rng.shuffle(rest)
    return (["early", *rest])[:kills]


# --------------------------------------------------------------------------------------------
# the checks
# --------------------------------------------------------------------------------------------


def check(feed: Path, data_dir: Path, expected_papers: int) -> list[tuple[str, bool, str]]:
    from retrieval import Corpus, Paper
    from retrieval.chunking import chunk_paper
    from retrieval.lexical_store import SegmentStore
    from retrieval.sources import load_path
    from retrieval.tokens import get_encoding

    settings = make_settings(data_dir)
    corpus = Corpus(settings)
    state = corpus.state
    records = [p for p in load_path(feed) if isinstance(p, Paper)]
    encoding = get_encoding(settings.tiktoken_encoding, settings.tiktoken_dir)
    expected_chunks = {
        c.chunk_id
        for p in records
        for c in chunk_paper(p, encoding, settings.chunk_tokens, settings.chunk_overlap)
    }
    state_ids = state.chunk_ids()
    store_ids = corpus.store.ids()
    vectors = corpus.store.count()
    saved = SegmentStore(settings.lexical_path.with_suffix("") / "chunks").open()
    paper_ids = {p.paper_id for p in state.list_papers()}
    results = [
        (
            "papers in the state",
            state.count_papers() == expected_papers,
            f"{state.count_papers()} (expected {expected_papers})",
        ),
        (
            "paper ids = the records' ids",
            paper_ids == {p.paper_id for p in records},
            f"{len(paper_ids)} ids",
        ),
        (
            "store.ids() == state.chunk_ids()",
            store_ids == state_ids,
            f"{len(store_ids)} vs {len(state_ids)}; "
            f"{len(store_ids - state_ids)} orphan vectors, {len(state_ids - store_ids)} missing",
        ),
        (
            "store.count() == len(ids) (no duplicates)",
            vectors == len(state_ids),
            f"{vectors} vectors, {len(state_ids)} chunks",
        ),
        (
            "chunk ids == chunk_paper(records)",
            state_ids == expected_chunks,
            f"{len(state_ids)} vs {len(expected_chunks)} expected",
        ),
        (
            "saved BM25 generation == state generation",
            saved is not None and saved.generation == state.generation,
            f"{saved.generation if saved else 'missing'} vs {state.generation}",
        ),
        (
            "BM25 rows == chunks",
            saved is not None and len(saved) == len(state_ids),
            f"{len(saved) if saved else 'missing'} vs {len(state_ids)}",
        ),
        ("index not marked dirty", not state.index_dirty, f"index_dirty={state.index_dirty}"),
    ]
    corpus.close()
    return results


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10, help="killed runs before the re-run")
    parser.add_argument("--seed", type=int, default=7, help="seed of the kill points")
    parser.add_argument("--probe", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        _probe(args.probe)
        return 0

    from tests.support.corpora import aclsum_records, write_jsonl

    started = time.monotonic()
    work = fresh_dir(WORK / "fault_kill_ingest")
    data_dir = work / "data"
    records = aclsum_records()
    feed = write_jsonl(records, work / "aclsum.jsonl")
    rng = random.Random(args.seed)
    log(f"{len(records)} ACLSum abstracts -> {data_dir}; {args.kills} kills, seed {args.seed}")

    kills: list[KillRecord] = []
    modes = kill_modes(args.kills, rng)
    done = 0
    while done < args.kills and len(kills) < 2 * args.kills:  # a run may end before its kill
        record = killed_run(len(kills) + 1, modes[done], feed, data_dir, len(records), rng)
        kills.append(record)
        done += record.killed
        log(
            f"run {record.run:2d} {record.mode:12s} at {record.at_s:5.2f} s: {record.phase}; "
            f"{record.papers} papers, {record.chunks} chunks, {record.vectors} vectors"
        )

    t0 = time.monotonic()
    rerun = subprocess.run(
        ingest_cmd(feed), env=paperbot_env(data_dir), cwd=work, capture_output=True, text=True
    )
    rerun_s = time.monotonic() - t0
    embedded = re.search(r"(\d[\d,]*) chunks embedded", rerun.stdout)
    repaired = re.search(r"repaired: (\d+) chunks added, (\d+) removed", rerun.stderr)
    rerun_note = (
        f"Full re-run without a kill: exit {rerun.returncode}, {rerun_s:.1f} s; "
        f"{embedded.group(1) if embedded else '?'} chunks embedded (vectors of committed "
        "chunks come from the embedding cache); vector index repair: "
        + (
            f"{repaired.group(1)} added, {repaired.group(2)} removed."
            if repaired
            else "nothing to add or remove."
        )
    )
    log(rerun_note)
    results = check(feed, data_dir, len(records)) if rerun.returncode == 0 else []
    crashed = [k for k in kills if not k.killed and k.exit_code != 0]
    detail = f"exit {rerun.returncode}" + (
        f": {rerun.stderr.strip()[-300:]}" if rerun.returncode else ""
    )
    results.insert(0, ("full re-run exits 0", rerun.returncode == 0, detail))
    results.insert(
        1,
        (
            "no run crashed on its own",
            not crashed,
            ", ".join(f"run {k.run}: exit {k.exit_code}" for k in crashed) or "none",
        ),
    )
    ok = all(passed for _, passed, _ in results)
    total_s = time.monotonic() - started

    table = md_table(
        ["run", "mode", "kill at (s)", "state at the kill", "papers", "chunks", "vectors", "dirty"],
        [
            [
                k.run,
                k.mode,
                k.at_s if k.killed else f"{k.at_s} (not killed)",
                k.phase,
                k.papers,
                k.chunks,
                "?" if k.vectors is None else k.vectors,
                "yes" if k.dirty else "no",
            ]
            for k in kills
        ],
    )
    checks = md_table(
        ["check", "result", "detail"], [[n, "ok" if p else "FAIL", d] for n, p, d in results]
    )
    report = "\n\n".join(
        [
            f"# kill -9 of `paperbot ingest`: {len(records)} ACLSum abstracts, "
            f"{sum(k.killed for k in kills)} kills (seed {args.seed})",
            table,
            rerun_note,
            checks,
            f"Verdict: {'CONSISTENT' if ok else 'MISMATCH'} (total {total_s:.0f} s).",
        ]
    )
    print(report)
    save_results(
        "fault_kill_ingest",
        {
            "seed": args.seed,
            "kills": [asdict(k) for k in kills],
            "rerun_s": round(rerun_s, 2),
            "rerun": rerun_note,
            "checks": [{"check": n, "ok": p, "detail": d} for n, p, d in results],
            "ok": ok,
        },
        report,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
