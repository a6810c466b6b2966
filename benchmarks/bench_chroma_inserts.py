"""Chroma's insert cost as its collection grows: what a backfill's vector writes cost between
10⁴ and 10⁶ vectors, per ef_construction.

A backfill's own pipeline (reading, chunking, the state, BM25) costs the same per paper at any
size; Chroma's HNSW inserts do not: each new vector searches a larger graph, most of it out of
the CPU caches. This writes ``--vectors`` vectors into a fresh collection through paperbot's
own `VectorStore.upsert` (embedded Chroma in a fresh data dir, cosine, M and ef_construction
from the settings, each vector with paperbot's metadata and owner stamp) in blocks of
``--block``, and reports each block's wall time, vectors/s and this process's CPU time per
vector (Chroma's Rust code runs in it). The baseline, in the same run: the first block, into
an empty collection; every later block is given as a ratio to it.

Vectors are built like `bench_hnsw.py`'s (the normalised mean of 3-8 real sentences' MiniLM
vectors plus half a real title's, plus noise), each block from its own seed, generated before
its timing.

    python benchmarks/bench_chroma_inserts.py                      # 2*10^5 vectors, ef 200
    python benchmarks/bench_chroma_inserts.py --vectors 500000 --ef-construction 200 100
    python benchmarks/bench_chroma_inserts.py --quick --json       # 4*10^4, blocks of 10^4
"""

from __future__ import annotations

import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from benchmarks.bench_bulk_ingest import CachedOnlyEmbedder
from benchmarks.bench_hnsw import SEED, synthetic_vectors
from benchmarks.bench_search import Pool
from benchmarks.common import (
    WORK,
    begin,
    bench_parser,
    finish,
    fresh_dir,
    local_embedder,
    log,
    make_settings,
    md_table,
    report_header,
)
from retrieval import Corpus
from retrieval.store import ChunkMeta

CHUNKS_PER_PAPER = 1.49  # bench_bulk_ingest.py's snapshot: 29,800 chunks for 20,000 papers


def insert_blocks(pool: Pool, total: int, block: int, ef_construction: int) -> list[dict[str, Any]]:
    data_dir = fresh_dir(WORK / "chroma-inserts" / f"ef{ef_construction}")
    settings = make_settings(data_dir, hnsw_ef_construction=ef_construction)
    corpus = Corpus(settings, embedder=CachedOnlyEmbedder())
    store = corpus.store
    store.count()  # open Chroma before any timing
    rows: list[dict[str, Any]] = []
    try:
        for lo in range(0, total, block):
            n = min(block, total - lo)
            vectors = synthetic_vectors(pool, n, seed=SEED + lo)
            ids = [f"p{i}#0:bench" for i in range(lo, lo + n)]
            metas = [ChunkMeta(f"p{i}", date(2024, 1, 2), "arxiv") for i in range(lo, lo + n)]
            wall, cpu = time.perf_counter(), time.process_time()
            store.upsert(ids, vectors, metas)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rows.append(
                {
                    "ef_construction": ef_construction,
                    "from": lo,
                    "to": lo + n,
                    "seconds": round(wall, 2),
                    "vectors_per_s": round(n / wall, 1),
                    "cpu_ms_per_vector": round(cpu / n * 1000, 3),
                }
            )
            first = rows[0]["vectors_per_s"]
            rows[-1]["vs_first_block"] = round(rows[-1]["vectors_per_s"] / first, 2)
            log(
                f"ef {ef_construction}: {lo + n:,} vectors, {rows[-1]['vectors_per_s']:,.0f}/s, "
                f"{rows[-1]['cpu_ms_per_vector']} ms CPU each"
            )
        assert store.count() == total, "Chroma lost vectors"
    finally:
        corpus.close()
    return rows


def render(result: dict[str, Any]) -> str:
    lines = report_header(
        "Chroma inserts as the collection grows (bench_chroma_inserts.py)", result
    )
    lines.append(
        f"Embedded Chroma, M {result['m']}, blocks of {result['block']:,} vectors through "
        f"`VectorStore.upsert`, nothing else running in the process; ≈ papers/s: the "
        f"vectors/s at {CHUNKS_PER_PAPER} vectors per paper, the most a backfill could reach "
        "with Chroma inserting on these cores. CPU: this process's, where Chroma's Rust code runs."
    )
    lines.append("")
    table = [
        [
            r["ef_construction"],
            f"{r['from']:,}–{r['to']:,}",
            f"{r['vectors_per_s']:,.0f}",
            r["cpu_ms_per_vector"],
            f"{r['vectors_per_s'] / CHUNKS_PER_PAPER:,.0f}",
            f"{r['vs_first_block']}×",
        ]
        for r in result["blocks"]
    ]
    headers = ["ef_construction", "vectors", "vectors/s", "CPU ms/vector", "≈ papers/s", "vs first"]
    lines.append(md_table(headers, table))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = bench_parser(__doc__, "4*10^4 vectors in blocks of 10^4")
    parser.add_argument("--vectors", type=int, default=200_000)
    parser.add_argument("--block", type=int, default=20_000)
    parser.add_argument("--ef-construction", type=int, nargs="+", default=[200])
    args = parser.parse_args(argv)
    if args.quick:
        args.vectors, args.block = 40_000, 10_000
    started = time.perf_counter()
    result = begin()
    pool = Pool.load(lambda: local_embedder(make_settings(WORK / "chroma-inserts" / "pool")))
    result.update(m=make_settings(WORK).hnsw_m, block=args.block, vectors=args.vectors)
    result["blocks"] = [
        row
        for ef in args.ef_construction
        for row in insert_blocks(pool, args.vectors, args.block, ef)
    ]
    finish("chroma_inserts", result, render(result), started=started, as_json=args.json)
    return result


if __name__ == "__main__":
    main()
