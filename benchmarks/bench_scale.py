"""Search at scale: 10⁴, 10⁵ and 10⁶ chunks, segmented memory-mapped BM25 vs the whole matrix.

Targets (issue 15): hybrid search p95 ≤ 50 ms at 10⁶ chunks with a warm index, the RSS of a
`serve`-like process (the Corpus loaded with embedded Chroma, after warm-up) ≤ 2.5 GB at 10⁶,
and the growth curve of latency and memory from 10⁴ to 10⁶.

The corpora are built as `bench_search.py` builds them (synthetic papers from real sentences,
vectors from the real sentences' MiniLM vectors, the real `Corpus.ingest`), in several ingest
calls of at most ``PART_PAPERS`` papers (bounded memory; a generation per part), with BM25
left out of the ingest: the lexical indexes are built afterwards and timed on their own.
The built corpora are cached under ``--work`` (default /tmp/work/scale): building 10⁶
vectors into embedded Chroma takes tens of minutes on 2 cores.

Three measurements:

* ``lexical``: the BM25 fields alone, 10⁴–10⁶ chunks (no Chroma, no state; the 10⁶ build runs
  in 4 processes): build time, file sizes, open time, per-query latency of what the searcher
  asks BM25 for, process memory, and an update by segment; the pre-issue-15 whole-matrix
  index (benchmarks/whole_matrix_bm25.py) beside it up to ``--matrix-max`` chunks;
* ``measure``: a serve-like process (the Corpus with embedded Chroma and the local model) on
  the built corpora, segments vs whole matrix: hybrid / lexical / dense latency, the query
  embedding apart, RSS after warm-up; the update cost against the real state and the top-10
  overlap with a full rebuild;
* ``build [--bulk]``: the corpora themselves (``--bulk`` writes state and Chroma in batches of
  5,000 papers from two generator processes instead of going through `Corpus.ingest`).

    python benchmarks/bench_scale.py build --bulk --chunks 100000
    python benchmarks/bench_scale.py lexical --chunks 10000 100000 1000000
    python benchmarks/bench_scale.py measure --chunks 10000 100000

Size: three measurements that share the corpora, the probes and the report; each part is a
few functions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from benchmarks.bench_search import SEED, Pool, synthetic_paper
from benchmarks.common import (
    PhaseTimer,
    TimedEmbedder,
    load_average,
    local_embedder,
    log,
    machine_info,
    make_settings,
    md_table,
    mib,
    percentile,
    proc_status,
    verdict,
)
from retrieval import Corpus
from retrieval.ingest import text_hash
from retrieval.lexical import BM25Index, LexicalDoc
from retrieval.lexical_segments import Segment, as_bytes
from retrieval.lexical_store import SegmentStore, live_ids
from retrieval.lexical_sync import LexicalIndexes
from retrieval.search import MODES, Mode, overlap_by_default
from retrieval.sources import load_path
from retrieval.state import StateStore
from retrieval.tokens import get_encoding

SCALE_WORK = Path("/tmp/work/scale")
BUILD_VERSION = 1
P95_TARGET_MS = 50.0
PART_PAPERS = 100_000
MARKER = "bench-scale-meta.json"


def data_dir_for(work: Path, chunks: int) -> Path:
    return work / f"chunks-{chunks}"


@contextmanager
def without_bm25() -> Iterator[None]:
    """Corpus.ingest without its BM25 step: the lexical indexes are built and timed apart."""
    saved = Corpus.lexical_index, Corpus.paper_lexical_index
    Corpus.lexical_index = lambda self: None  # type: ignore[assignment,method-assign,return-value]
    Corpus.paper_lexical_index = lambda self: None  # type: ignore[assignment,method-assign,return-value]
    try:
        yield
    finally:
        Corpus.lexical_index, Corpus.paper_lexical_index = saved  # type: ignore[method-assign]


def _fresh(data_dir: Path) -> None:
    if data_dir.exists():
        if not (data_dir / MARKER).exists() and any(data_dir.iterdir()):
            raise SystemExit(f"refusing to wipe {data_dir}: not a bench_scale corpus")
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    (data_dir / MARKER).write_text(json.dumps({"version": BUILD_VERSION, "complete": False}))


def build(target_chunks: int, work: Path) -> dict[str, Any]:
    """Generate papers until ``target_chunks`` chunks and ingest them part by part through
    `Corpus.ingest` (`build_bulk` writes the same rows faster)."""
    data_dir = data_dir_for(work, target_chunks)
    _fresh(data_dir)
    settings = make_settings(data_dir, max_input_bytes=4 * 1024**3)
    rng = np.random.default_rng(SEED)
    pool = Pool.load(lambda: local_embedder(settings))
    codec = get_encoding(settings.tiktoken_encoding, settings.tiktoken_dir)
    embedder = local_embedder(settings, warm=False)
    corpus = Corpus(settings, embedder=embedder)
    started = time.perf_counter()
    timings = {"generate_s": 0.0, "prefill_s": 0.0, "ingest_s": 0.0}
    n_chunks = n_papers = 0
    part = 0
    loads = [load_average()]
    while n_chunks < target_chunks:
        t0 = time.perf_counter()
        records: list[dict[str, Any]] = []
        vectors: dict[str, np.ndarray] = {}
        while n_chunks < target_chunks and len(records) < PART_PAPERS:
            record, _, chunks, vecs = synthetic_paper(pool, rng, n_papers + 1, codec, settings)
            for chunk, (vec, _) in zip(chunks, vecs, strict=True):
                vectors[text_hash(chunk.embed_text)] = vec
                n_chunks += 1
            records.append(record)
            n_papers += 1
        path = work / f"chunks-{target_chunks}.part{part}.jsonl"
        with path.open("w") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")
        t1 = time.perf_counter()
        corpus.state.put_vectors(vectors, embedder.model_id)
        t2 = time.perf_counter()
        with without_bm25():
            report = corpus.ingest(load_path(path, max_input_bytes=settings.max_input_bytes))
        assert report.chunks_embedded == 0, f"{report.chunks_embedded} chunks missed the cache"
        t3 = time.perf_counter()
        timings["generate_s"] += t1 - t0
        timings["prefill_s"] += t2 - t1
        timings["ingest_s"] += t3 - t2
        path.unlink()
        part += 1
        loads.append(load_average())
        log(
            f"part {part}: {n_papers:,} papers, {n_chunks:,} chunks, "
            f"{time.perf_counter() - started:.0f} s so far (load {loads[-1]})"
        )
    return _built(
        corpus,
        data_dir,
        target_chunks,
        n_papers,
        n_chunks,
        {"parts": part, "path": "Corpus.ingest", **timings},
        started,
        loads,
    )


def _built(
    corpus: Corpus,
    data_dir: Path,
    target_chunks: int,
    n_papers: int,
    n_chunks: int,
    how: dict[str, Any],
    started: float,
    loads: list[str],
) -> dict[str, Any]:
    """A finished build: every chunk in the state and in Chroma (checked), the corpus closed,
    its description written as the marker that makes the corpus reusable (`cached`)."""
    stats = corpus.stats()
    assert stats["chunks"] == n_chunks == stats["vectors"], stats
    settings = corpus.settings
    corpus.close()
    meta = {
        "version": BUILD_VERSION,
        "complete": True,
        "target_chunks": target_chunks,
        "papers": n_papers,
        "chunks": n_chunks,
        **how,
        "total_s": time.perf_counter() - started,
        "hnsw": {
            "m": settings.hnsw_m,
            "ef_construction": settings.hnsw_ef_construction,
            "ef_search": settings.hnsw_ef_search,
        },
        "load_averages": loads,
        "built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    (data_dir / MARKER).write_text(json.dumps(meta, indent=2))
    log(f"built {n_chunks:,} chunks of {n_papers:,} papers in {meta['total_s']:.0f} s")
    return meta


def _bulk_part(part: int, target_dir: str) -> tuple[list[Any], list[Any], int]:
    """One part of a bulk build, in a worker process: ``BULK_PAPERS`` synthetic papers with
    their chunks and vectors (seeded by the part number, so a build is reproducible)."""
    from retrieval.state import Change
    from retrieval.store import ChunkMeta

    settings = make_settings(Path(target_dir))
    pool = Pool.load(lambda: local_embedder(settings))
    codec = get_encoding(settings.tiktoken_encoding, settings.tiktoken_dir)
    rng = np.random.default_rng([SEED, part])
    changes, batches = [], []
    n_chunks = 0
    for i in range(BULK_PAPERS):
        number = part * BULK_PAPERS + i + 1
        _, paper, chunks, vecs = synthetic_paper(pool, rng, number, codec, settings, dated=True)
        vectors = {
            chunk.chunk_id: (text_hash(chunk.embed_text), vec)
            for chunk, (vec, _) in zip(chunks, vecs, strict=True)
        }
        metas = [ChunkMeta(paper.paper_id, paper.published, paper.source) for _ in chunks]
        changes.append(Change(paper, chunks))
        batches.append((vectors, metas))
        n_chunks += len(chunks)
    return changes, batches, n_chunks


def build_bulk(target_chunks: int, work: Path) -> dict[str, Any]:
    """Parts generated by two worker processes while this one writes them: papers, chunks
    and the embedding cache into the state (one transaction per part, index marked dirty),
    the vectors into Chroma, then the index marked clean, as `Corpus.ingest` leaves them."""
    import multiprocessing

    data_dir = data_dir_for(work, target_chunks)
    _fresh(data_dir)
    settings = make_settings(data_dir)
    embedder = local_embedder(settings, warm=False)
    corpus = Corpus(settings, embedder=embedder)
    started = time.perf_counter()
    loads = [load_average()]
    n_chunks = n_papers = parts = 0
    write_s = upsert_s = 0.0
    n_parts = target_chunks // BULK_PAPERS + 2  # ~1.7 chunks per paper: enough parts
    context = multiprocessing.get_context("fork")
    with context.Pool(2) as workers, corpus._writing():
        corpus._claim()
        jobs = workers.imap(_bulk_worker, [(p, str(data_dir)) for p in range(n_parts)])
        for changes, batches, _ in jobs:
            keep, ids, rows, metas, cache = [], [], [], [], {}
            for change, (vectors, chunk_metas) in zip(changes, batches, strict=True):
                if n_chunks >= target_chunks:
                    break
                keep.append(change)
                for (cid, (digest, vec)), meta in zip(vectors.items(), chunk_metas, strict=True):
                    ids.append(cid)
                    rows.append(vec)
                    metas.append(meta)
                    cache[digest] = vec
                n_chunks += len(vectors)
            t0 = time.perf_counter()
            corpus.state.apply(keep, cache, embedder.model_id)
            t1 = time.perf_counter()
            corpus.store.upsert(ids, np.stack(rows), metas)
            write_s += t1 - t0
            upsert_s += time.perf_counter() - t1
            n_papers += len(keep)
            parts += 1
            loads.append(load_average())
            log(
                f"part {parts}: {n_papers:,} papers, {n_chunks:,} chunks, "
                f"{time.perf_counter() - started:.0f} s (state {write_s:.0f} s, Chroma "
                f"{upsert_s:.0f} s; load {loads[-1]})"
            )
            if n_chunks >= target_chunks:
                workers.terminate()
                break
        corpus.state.mark_index_clean()
    how = {
        "parts": parts,
        "path": "bulk: StateStore.apply + VectorStore.upsert per 5,000 papers",
        "generate_s": 0.0,
        "prefill_s": write_s,
        "ingest_s": upsert_s,
    }
    return _built(corpus, data_dir, target_chunks, n_papers, n_chunks, how, started, loads)


def _bulk_worker(args: tuple[int, str]) -> tuple[list[Any], list[Any], int]:
    return _bulk_part(*args)


BULK_PAPERS = 5000


def cached(target_chunks: int, work: Path, *, bulk: bool = False) -> tuple[Path, dict[str, Any]]:
    data_dir = data_dir_for(work, target_chunks)
    marker = data_dir / MARKER
    if marker.exists():
        meta = json.loads(marker.read_text())
        if meta.get("complete") and meta.get("version") == BUILD_VERSION:
            return data_dir, meta
    if bulk:
        return data_dir, build_bulk(target_chunks, work)
    return data_dir, build(target_chunks, work)


# --------------------------------------------------------------------------------------------
# the lexical index: build, size, update by segment
# --------------------------------------------------------------------------------------------


def build_lexical(data_dir: Path) -> dict[str, Any]:
    """Both BM25 fields as segments, built from scratch from the state (timed), and their
    sizes on disk."""
    state = StateStore(make_settings(data_dir).state_path)
    root = data_dir / "bm25"
    shutil.rmtree(root, ignore_errors=True)
    indexes = LexicalIndexes(root, state)
    load = load_average()
    start = time.perf_counter()
    fields = indexes.current(state.generation)
    build_s = time.perf_counter() - start
    result = {
        "build_s": build_s,
        "load": load,
        "fields": {name: _field(index, indexes.stores[name]) for name, index in fields.items()},
    }
    state.close()
    return result


def _field(index: BM25Index, store: SegmentStore) -> dict[str, int]:
    """One built BM25 field: documents, segments, terms, postings, bytes on disk."""
    return {
        "docs": len(index),
        "segments": len(index.segments),
        "terms": sum(len(s.terms) for s in index.segments),
        "postings": sum(s.postings for s in index.segments),
        "bytes": store.size_bytes(),
    }


def build_lexical_parallel(data_dir: Path, workers: int = 2) -> dict[str, Any]:
    """`build_lexical` for a large state: the chunk and paper ids split between ``workers``
    processes, each writing the segments of its share from the state as `LexicalIndexes`
    rebuilds them, then one commit per field at the state's generation (what `current` then
    opens). The product's rebuild is the same work in one process."""
    import multiprocessing

    state = StateStore(make_settings(data_dir).state_path)
    root = data_dir / "bm25"
    shutil.rmtree(root, ignore_errors=True)
    indexes = LexicalIndexes(root, state)
    generation = state.generation
    chunk_ids = indexes._all_chunk_ids()
    paper_ids = np.array(indexes._all_paper_ids(), dtype=object)
    state.close()
    jobs = [(str(data_dir), "chunks", part) for part in np.array_split(chunk_ids, workers)]
    jobs += [(str(data_dir), "papers", part) for part in np.array_split(paper_ids, workers)]
    load = load_average()
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        parts = pool.map(_lexical_state_part, jobs)
    result: dict[str, Any] = {"load": load, "workers": workers, "fields": {}}
    for name, store in indexes.stores.items():
        segments = [
            Segment.open(root / name / seg) for n, segs in parts if n == name for seg in segs
        ]
        with store.lock():
            index = store._commit(generation, segments, [None] * len(segments))
        result["fields"][name] = _field(index, store)
    result["build_s"] = time.perf_counter() - start
    return result


def _lexical_state_part(args: tuple[str, str, np.ndarray]) -> tuple[str, list[str]]:
    """One worker's share of `build_lexical_parallel`: its segments' names."""
    from retrieval.lexical_store import _parts

    data_dir, name, ids = args
    state = StateStore(make_settings(Path(data_dir)).state_path)
    indexes = LexicalIndexes(Path(data_dir) / "bm25", state)
    docs = indexes._chunk_docs(ids) if name == "chunks" else indexes._paper_docs(list(ids))
    store = indexes.stores[name]
    names = [store._write(piece).name for piece in _parts(docs, store.segment_docs)]
    state.close()
    return name, names


def build_matrix(data_dir: Path) -> dict[str, Any]:
    """The pre-issue-15 whole-matrix fields (the baseline), built and saved as before."""
    from benchmarks.whole_matrix_bm25 import BM25Index as MatrixIndex

    state = StateStore(make_settings(data_dir).state_path)
    indexes = LexicalIndexes(data_dir / "bm25", state)
    load = load_average()
    start = time.perf_counter()
    out: dict[str, Any] = {"load": load, "fields": {}}
    docs = {
        "chunks": lambda: indexes._chunk_docs(indexes._all_chunk_ids()),
        "papers": lambda: indexes._paper_docs(indexes._all_paper_ids()),
    }
    for name, path in MATRIX_FILES.items():
        t0 = time.perf_counter()
        index = MatrixIndex.build(docs[name](), state.generation)
        index.save(data_dir / path)
        out["fields"][name] = {
            "docs": len(index),
            "build_s": time.perf_counter() - t0,
            "bytes": (data_dir / path).stat().st_size,
        }
    out["build_s"] = time.perf_counter() - start
    state.close()
    return out


MATRIX_FILES = {"chunks": "bm25_matrix.npz", "papers": "bm25_matrix_papers.npz"}


def update_cost(data_dir: Path, qs: list[str], *, added: int = 1000, removed: int = 100) -> dict:
    """One generation's change (``added`` new chunks, ``removed`` deleted) applied to a copy of
    the chunk field: the id diff against the state, the new segment and tombstones; and the
    rankings after it against a full rebuild of the same documents (top-10 overlap)."""
    state = StateStore(make_settings(data_dir).state_path)
    copy = data_dir.parent / f".update-{data_dir.name}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(data_dir / "bm25" / "chunks", copy)
    store = SegmentStore(copy)
    index = store.open()
    assert index is not None
    indexes = LexicalIndexes(copy, state)
    t0 = time.perf_counter()
    state_ids = indexes._all_chunk_ids()
    t1 = time.perf_counter()
    live = live_ids(index)
    np.setdiff1d(state_ids, live, assume_unique=True)
    np.setdiff1d(live, state_ids, assume_unique=True)
    t2 = time.perf_counter()
    rng = np.random.default_rng(7)
    gone = np.sort(rng.choice(live, removed, replace=False))
    donors = [d for d in indexes._chunk_docs(np.sort(rng.choice(live, added, replace=False)))]
    new_docs = [
        LexicalDoc(f"zz-new-{i:06d}#0:x", d.text, d.published, d.source)
        for i, d in enumerate(donors)
    ]
    t3 = time.perf_counter()
    with store.lock():
        updated = store.apply(index, index.generation + 1, gone, new_docs)
    t4 = time.perf_counter()
    result: dict[str, Any] = {
        "chunks": len(state_ids),
        "added": added,
        "removed": removed,
        "state_ids_s": t1 - t0,
        "diff_s": t2 - t1,
        "apply_s": t4 - t3,
        "segments_after": len(updated.segments),
    }
    if len(state_ids) <= 200_000:  # the full rebuild to compare with
        keep = np.setdiff1d(live, gone, assume_unique=True)
        docs = [*indexes._chunk_docs(keep), *new_docs]
        t5 = time.perf_counter()
        full = BM25Index.build(docs, 0)
        result["full_build_s"] = time.perf_counter() - t5
        overlaps, identical = [], 0
        for q in qs:
            a = [i for i, _ in updated.search(q, 10)]
            b = [i for i, _ in full.search(q, 10)]
            overlaps.append(len(set(a) & set(b)) / max(len(b), 1))
            identical += a == b
        result["top10_overlap_mean"] = float(np.mean(overlaps))
        result["top10_identical"] = f"{identical}/{len(qs)}"
    shutil.rmtree(copy, ignore_errors=True)
    state.close()
    return result


# --------------------------------------------------------------------------------------------
# a serve-like process: latency and memory
# --------------------------------------------------------------------------------------------


WARM_QUERIES = 10  # warm-up (opens Chroma, loads the HNSW graph and BM25 files); not timed


def probe(
    data_dir: Path,
    variant: str,
    n_queries: int | None,
    repeats: int,
    *,
    chroma_server: bool = False,
    modes: Sequence[str] = ("hybrid",),
    embedding_threads: int | None = None,
    bm25_warm_mb: int | None = None,
) -> dict[str, Any]:
    """Open the corpus as `serve` does (embedded Chroma, or with ``chroma_server`` a local
    `chroma run` on the same files, as docs/scaling.md deploys 10⁶; the local model with the
    threads `serve` gives one answer unless ``embedding_threads`` says otherwise), warm it up,
    time ``modes``, then read this process's memory (and the Chroma server's)."""
    threads = serve_embedding_threads() if embedding_threads is None else embedding_threads
    extra = {} if bm25_warm_mb is None else {"bm25_warm_mb": bm25_warm_mb}
    if not chroma_server:
        settings = make_settings(data_dir, embedding_threads=threads, **extra)
        return _probe(data_dir, settings, variant, n_queries, repeats, modes)
    from tests.support.chroma_server import ChromaServer

    server = ChromaServer(data_dir / "chroma")
    server.start(timeout=300)
    try:
        settings = make_settings(
            data_dir,
            embedding_threads=threads,
            chroma_host=server.host,
            chroma_port=server.port,
            **extra,
        )
        result = _probe(data_dir, settings, variant, n_queries, repeats, modes)
        status = proc_status(server.pid)  # one reading for all three figures
        result["chroma_server"] = _memory(status) | {"hwm_mib": mib(status.get("VmHWM"))}
    finally:
        server.stop()
    return result


def serve_embedding_threads() -> int:
    """The ONNX threads `serve` gives one answer on this machine with its default answer
    workers (cores / workers, at least 1: bot/cli/bot_commands.py `_serving_settings`)."""
    from bot.slack.answer_queue import embedding_threads_per_job

    return embedding_threads_per_job(0)


def _probe(
    data_dir: Path,
    settings: Any,
    variant: str,
    n_queries: int | None,
    repeats: int,
    modes: Sequence[str],
) -> dict[str, Any]:
    """Time ``modes`` over the queries after the warm-up ones: every query is one this process
    has not searched for in any mode before its first timed round (a query searched a moment
    earlier in another mode would find its columns, rows and pages warm, as the interleaved
    probe before 2026-12-01 did: hybrid p50 57.6 ms at 10⁶ there against ~75 ms cold)."""
    from benchmarks.bench_search import SEARCH_PHASES, queries, warm_os_cache

    qs = queries(n_queries)
    warm, measured = qs[:WARM_QUERIES], qs[WARM_QUERIES:]
    warm_s = warm_os_cache(data_dir)
    status0 = proc_status(os.getpid())
    timer = PhaseTimer()
    embedder = TimedEmbedder(local_embedder(settings), timer)
    corpus = Corpus(settings, embedder=embedder)
    if variant == "matrix":
        _use_matrix(corpus, data_dir)
    searcher = corpus.searcher()
    # as `serve` does (Services.warm_up): the frequent terms' BM25 weights computed in the
    # background; waited for here, so the index is warm when the timing starts
    bm25_warm: dict[str, Any] | None = None  # (the whole-matrix baseline has no columns)
    if variant != "matrix":
        start = time.perf_counter()
        warmer = corpus.keep_lexical_warm()
        if not warmer.wait(900):
            raise SystemExit("the BM25 warm-up did not finish in 900 s")
        bm25_warm = {
            "budget_mib": settings.bm25_warm_mb,
            "wall_s": time.perf_counter() - start,
            **{
                f: {"columns": w.columns, "mib": w.nbytes / 2**20, "s": w.seconds}
                for f, w in warmer.last.items()
            },
        }
    default = searcher.overlap
    latencies: dict[str, list[float]] = {m: [] for m in modes}
    embed_ms: list[float] = []
    with timer.patch(SEARCH_PHASES):
        start = time.perf_counter()
        for q in warm:
            for mode in MODES:
                corpus.search(q, 10, mode=mode)
        first_s = time.perf_counter() - start
        load_before = load_average()
        for _ in range(repeats):
            for q in measured:
                for label in modes:
                    mode, searcher.overlap = _mode(label, default)
                    timer.reset()
                    start = time.perf_counter()
                    corpus.search(q, 10, mode=mode)
                    latencies[label].append(time.perf_counter() - start)
                    if label == "hybrid":
                        embed_ms.append(timer.seconds.get("query embedding", 0.0) * 1000)
                    searcher.overlap = default
    status = proc_status(os.getpid())
    corpus.close()
    result = {
        "variant": variant,
        "embedding_threads": settings.embedding_threads,
        "overlap_default": default,
        "queries": len(measured),
        "repeats": repeats,
        "os_cache_warmed_s": warm_s,
        "bm25_warm": bm25_warm,
        "warmup_s": first_s,
        "modes": {
            m: {
                "n": len(v),
                "p50": percentile([x * 1000 for x in v], 50),
                "p95": percentile([x * 1000 for x in v], 95),
                "mean": float(np.mean(v) * 1000),
            }
            for m, v in latencies.items()
        },
        "rss_before_mib": mib(status0.get("VmRSS")),
        **_memory(status),
        "hwm_mib": mib(status.get("VmHWM")),
        "load_before": load_before,
        "load_after": load_average(),
    }
    if embed_ms:
        result["hybrid_query_embedding_ms"] = {
            "p50": percentile(embed_ms, 50),
            "p95": percentile(embed_ms, 95),
        }
    return result


def _mode(label: str, default: bool) -> tuple[Mode, bool]:
    """A probe label as (search mode, overlap): the two hybrid ways have labels of their own."""
    if label == SERIAL:
        return "hybrid", False
    if label == OVERLAPPED:
        return "hybrid", True
    return cast(Mode, label), default


def _memory(status: dict[str, int]) -> dict[str, float]:
    """A process's resident memory from /proc status: all of it, anonymous, file-backed."""
    return {
        "rss_mib": mib(status.get("VmRSS")),
        "rss_anon_mib": mib(status.get("RssAnon")),
        "rss_file_mib": mib(status.get("RssFile")),
    }


SERIAL = "hybrid, one thread"  # the dense side after BM25, in the calling thread
OVERLAPPED = "hybrid, dense side overlapped"  # the dense side in a worker thread beside BM25


def _use_matrix(corpus: Corpus, data_dir: Path) -> None:
    """The baseline: both fields loaded whole from the pre-issue-15 .npz files."""
    from benchmarks.whole_matrix_bm25 import BM25Index as MatrixIndex
    from retrieval import search

    loaded = {name: MatrixIndex.load(data_dir / path) for name, path in MATRIX_FILES.items()}

    def field(name: str) -> Any:
        index = loaded[name]
        assert index is not None, f"build the baseline first ({data_dir / MATRIX_FILES[name]})"
        return index

    corpus.lexical_index = lambda: field("chunks")  # type: ignore[method-assign]
    corpus.paper_lexical_index = lambda: field("papers")  # type: ignore[method-assign]
    # the whole matrix has no segments to read a paper's chunk ids from: the state, as the
    # search did before 9e41a28
    search.chunk_ids_of = lambda _index, paper_ids: [  # type: ignore[assignment]
        cid for ids in corpus.state.chunk_ids_for(list(paper_ids)).values() for cid in ids
    ]


def run_probe(
    data_dir: Path,
    variant: str,
    n_queries: int | None,
    repeats: int,
    *,
    chroma_server: bool = False,
    embedding_threads: int | None = None,
    bm25_warm_mb: int | None = None,
) -> dict:
    """`probe` in fresh processes, one per mode (so no mode warms another's query, and the
    memory is that of one serve-like process answering hybrid searches): hybrid first, then
    the other hybrid way (the dense side overlapped or not) as a same-run baseline, then BM25
    alone and dense alone."""
    threads = serve_embedding_threads() if embedding_threads is None else embedding_threads
    other = SERIAL if overlap_by_default(threads) else OVERLAPPED
    result: dict[str, Any] = {}
    for mode in ("hybrid", other, "lexical", "dense"):
        cmd = [sys.executable, __file__, "probe", "--data-dir", str(data_dir)]
        cmd += ["--variant", variant, "--repeats", str(repeats), "--modes", mode]
        if n_queries:
            cmd += ["--queries", str(n_queries)]
        cmd += ["--embedding-threads", str(threads)]
        if chroma_server:
            cmd.append("--chroma-server")
        if bm25_warm_mb is not None:
            cmd += ["--bm25-warm-mb", str(bm25_warm_mb)]
        log(f"probe {variant} {mode} on {data_dir.name} (load {load_average()})")
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"probe failed:\n{done.stderr[-3000:]}")
        found = json.loads(done.stdout.strip().splitlines()[-1])
        if not result:
            result = found
        else:
            result["modes"] |= found["modes"]
            result["load_after"] = found["load_after"]
    return result


def measure(sizes: list[int], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.bench_search import queries

    qs = queries(args.queries)
    result: dict[str, Any] = {"machine": machine_info(), "sizes": []}
    for target in sizes:
        data_dir, meta = cached(target, work)
        entry: dict[str, Any] = {"build": meta}
        if not args.skip_build:
            log(f"building the segmented BM25 fields of {data_dir.name}")
            big = meta["chunks"] >= PARALLEL_FROM
            entry["segments_build"] = (build_lexical_parallel if big else build_lexical)(data_dir)
        if meta["chunks"] <= args.matrix_max and not args.skip_build:
            log(f"building the whole-matrix baseline of {data_dir.name}")
            entry["matrix_build"] = build_matrix(data_dir)
        entry["update"] = update_cost(data_dir, qs)
        repeats = args.repeats if meta["chunks"] < 1_000_000 else max(1, args.repeats - 1)
        entry["probes"] = [
            run_probe(
                data_dir,
                "segments",
                args.queries,
                repeats,
                chroma_server=args.chroma_server,
                embedding_threads=args.embedding_threads,
                bm25_warm_mb=args.bm25_warm_mb,
            )
        ]
        if meta["chunks"] <= args.matrix_max:
            entry["probes"].append(run_probe(data_dir, "matrix", args.queries, repeats))
        result["sizes"].append(entry)
        (work / "results.json").write_text(json.dumps(result, indent=2))
    return result


def render(result: dict[str, Any]) -> str:
    out = [
        f"Machine: {result['machine']['nproc']} cores, {result['machine']['ram']}, "
        f"{result['machine']['date']}; load average (1/5/15 min) next to every number.",
        "",
    ]
    rows = []
    for size in result["sizes"]:
        n = size["build"]["chunks"]
        for p in size["probes"]:
            m = p["modes"]
            rows.append(
                [
                    f"{n:,}",
                    p["variant"],
                    m["hybrid"]["p50"],
                    m["hybrid"]["p95"],
                    m.get(SERIAL, {}).get("p95", "–"),
                    m.get(OVERLAPPED, {}).get("p95", "–"),
                    m["lexical"]["p95"],
                    m["dense"]["p95"],
                    p["hybrid_query_embedding_ms"]["p95"],
                    p["rss_mib"],
                    p["rss_anon_mib"],
                    p["rss_file_mib"],
                    f"{p['load_before']} → {p['load_after']}",
                ]
            )
    out += [
        md_table(
            [
                "chunks",
                "BM25",
                "hybrid p50 ms",
                "hybrid p95 ms",
                "hybrid one thread p95 ms",
                "hybrid overlapped p95 ms",
                "lexical p95 ms",
                "dense p95 ms",
                "query embedding p95 ms",
                "RSS MiB",
                "anon MiB",
                "file-backed MiB",
                "load avg",
            ],
            rows,
        ),
        "",
    ]
    rows = []
    for size in result["sizes"]:
        n = size["build"]["chunks"]
        seg = size.get("segments_build")
        mat = size.get("matrix_build")
        if seg:
            rows.append(
                [
                    f"{n:,}",
                    "segments",
                    seg["build_s"],
                    sum(f["bytes"] for f in seg["fields"].values()) / 2**20,
                    seg["fields"]["chunks"]["postings"],
                    seg["fields"]["chunks"]["terms"],
                    seg["load"],
                ]
            )
        if mat:
            rows.append(
                [
                    f"{n:,}",
                    "matrix",
                    mat["build_s"],
                    sum(f["bytes"] for f in mat["fields"].values()) / 2**20,
                    "",
                    "",
                    mat["load"],
                ]
            )
    out += [
        md_table(
            ["chunks", "BM25", "full build s", "files MiB", "chunk postings", "terms", "load"],
            rows,
        ),
        "",
    ]
    rows = []
    for size in result["sizes"]:
        u = size["update"]
        rows.append(
            [
                f"{u['chunks']:,}",
                f"+{u['added']} −{u['removed']}",
                u["state_ids_s"],
                u["diff_s"],
                u["apply_s"],
                u.get("full_build_s", "–"),
                u.get("top10_overlap_mean", "–"),
                u.get("top10_identical", "–"),
            ]
        )
    out += [
        md_table(
            [
                "chunks",
                "change",
                "state ids s",
                "id diff s",
                "segment + tombstones s",
                "full rebuild s",
                "top-10 overlap",
                "identical top-10",
            ],
            rows,
        ),
        "",
    ]
    for size in result["sizes"]:
        b = size["build"]
        out.append(
            f"- {b['chunks']:,} chunks ({b['papers']:,} papers): corpus built {b['built']} in "
            f"{b['total_s']:.0f} s (generate {b['generate_s']:.0f} s, cache pre-fill "
            f"{b['prefill_s']:.0f} s, `Corpus.ingest` without BM25 {b['ingest_s']:.0f} s in "
            f"{b['parts']} part(s); load {b['load_averages'][0]} → {b['load_averages'][-1]})"
        )
    big = max(result["sizes"], key=lambda s: s["build"]["chunks"])
    if big["build"]["chunks"] >= 1_000_000:
        p = big["probes"][0]
        out.append(
            f"- Hybrid p95 ≤ {P95_TARGET_MS:.0f} ms at {big['build']['chunks']:,} chunks: "
            f"{verdict(p['modes']['hybrid']['p95'] <= P95_TARGET_MS)} "
            f"({p['modes']['hybrid']['p95']:.1f} ms)"
        )
        out.append(
            f"- serve-like RSS ≤ 2.5 GB at {big['build']['chunks']:,} chunks: "
            f"{verdict(p['rss_mib'] <= 2.5e9 / 2**20)} ({p['rss_mib']:.0f} MiB)"
        )
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# the lexical index alone, up to 10⁶ chunks (no Chroma, no state: BM25 files and a process)
# --------------------------------------------------------------------------------------------

WORDS_PER_CHUNK = 120  # ~160 tiktoken tokens, the default chunk size
LEXICAL_CANDIDATES = 50


def lexical_docs(
    target_chunks: int, *, part: int | None = None, papers: int | None = None
) -> tuple[list[LexicalDoc], list[LexicalDoc]]:
    """Chunk and paper documents of synthetic papers (real sentences and titles, as the
    corpora above), chunked by words like the chunker packs sentences (≤ ~160 tokens, one
    sentence of overlap): ``target_chunks`` chunks, or with ``part`` the ``papers`` papers of
    that part of a parallel build (seeded by the part)."""
    from benchmarks.bench_search import Pool

    pool = Pool.load(lambda: None)
    rng = np.random.default_rng(SEED if part is None else [SEED, part])
    chunks: list[LexicalDoc] = []
    paper_docs: list[LexicalDoc] = []
    i = 0 if part is None else part * 10_000_000
    n_sentences = len(pool.sentences)
    lengths = [len(x.split()) for x in pool.sentences]
    while len(chunks) < target_chunks if papers is None else len(paper_docs) < papers:
        i += 1
        a, b = rng.choice(len(pool.titles), 2, replace=False)
        head, tail = pool.titles[a].split(), pool.titles[b].split()
        title = " ".join(head[: max(1, len(head) // 2)] + tail[len(tail) // 2 :])
        picks = rng.choice(n_sentences, int(rng.integers(4, 10)), replace=False).tolist()
        published = date.fromordinal(date(2023, 1, 1).toordinal() + i % 1000)
        paper_id = f"{published:%y%m}.{i:08d}"
        abstract = " ".join(pool.sentences[j] for j in picks)
        paper_docs.append(LexicalDoc(paper_id, f"{title}\n\n{abstract}", published, "file"))
        group: list[int] = []
        words = 0
        k = 0
        for j in [*picks, -1]:
            if j >= 0 and (not group or words + lengths[j] <= WORDS_PER_CHUNK):
                group.append(j)
                words += lengths[j]
                continue
            text = " ".join(pool.sentences[g] for g in group)
            cid = f"{paper_id}#{k}:{hashlib.sha1(text.encode()).hexdigest()[:12]}"
            chunks.append(LexicalDoc(cid, f"{title}\n\n{text}", published, "file"))
            k += 1
            if j >= 0:
                group, words = [group[-1], j], lengths[group[-1]] + lengths[j]
    return (chunks[:target_chunks] if papers is None else chunks), paper_docs


PARALLEL_FROM = 300_000  # corpora this large are generated and indexed by 4 processes
CHUNKS_PER_PAPER = 1.95  # what `lexical_docs` makes (measured at 20k chunks)


def _lexical_part(args: tuple[str, int, int]) -> dict[str, Any]:
    """One part of a parallel build, in a worker: its papers' segments in both fields."""
    root, part, papers = args
    chunks, paper_docs = lexical_docs(0, part=part, papers=papers)
    out: dict[str, Any] = {"chunks": len(chunks), "papers": len(paper_docs)}
    for name, docs in (("chunks", chunks), ("papers", paper_docs)):
        store = SegmentStore(Path(root) / name)
        out[f"{name}_segments"] = [store._write(list(piece)).name for piece in _pieces(docs)]
    return out


def _pieces(docs: list[LexicalDoc]) -> list[list[LexicalDoc]]:
    from retrieval.lexical_store import SEGMENT_DOCS

    return [docs[i : i + SEGMENT_DOCS] for i in range(0, len(docs), SEGMENT_DOCS)]


def lexical_build_parallel(target_chunks: int, root: Path, workers: int = 4) -> dict[str, Any]:
    import multiprocessing

    papers = int(target_chunks / CHUNKS_PER_PAPER / workers) + 1
    load = load_average()
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        parts = pool.map(_lexical_part, [(str(root), p, papers) for p in range(workers)])
    meta: dict[str, Any] = {
        "chunks": sum(p["chunks"] for p in parts),
        "papers": sum(p["papers"] for p in parts),
        "generate_s": 0.0,
        "segments": {"load": load, "parallel_workers": workers},
    }
    wall = time.perf_counter() - t0
    for name in ("chunks", "papers"):
        store = SegmentStore(root / name)
        segments = [Segment.open(root / name / seg) for p in parts for seg in p[f"{name}_segments"]]
        with store.lock():
            index = store._commit(1, segments, [None] * len(segments))
        meta["segments"][name] = {
            "build_s": wall / 2,  # both fields in one parallel pass: half each
            "bytes": store.size_bytes(),
            "segments": len(index.segments),
            "terms": sum(len(s.terms) for s in index.segments),
            "postings": sum(s.postings for s in index.segments),
        }
    meta["segments"]["wall_s"] = wall
    return meta


def lexical_build(target_chunks: int, work: Path, *, matrix: bool) -> dict[str, Any]:
    """Both fields as segments (and, with ``matrix``, as the whole-matrix baseline) under
    ``work/lexical-N``; cached (the docs are regenerated only to rebuild)."""
    from benchmarks.whole_matrix_bm25 import BM25Index as MatrixIndex

    root = work / f"lexical-{target_chunks}"
    meta_path = root / "meta.json"
    if meta_path.exists():
        cached_meta: dict[str, Any] = json.loads(meta_path.read_text())
        if not matrix or "matrix" in cached_meta:
            return cached_meta
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    if target_chunks >= PARALLEL_FROM and not matrix:
        built = lexical_build_parallel(target_chunks, root)
        built["built"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        meta_path.write_text(json.dumps(built, indent=2))
        return built
    t0 = time.perf_counter()
    chunks, papers = lexical_docs(target_chunks)
    meta: dict[str, Any] = {"chunks": len(chunks), "papers": len(papers)}
    meta["generate_s"] = time.perf_counter() - t0
    meta["segments"] = {"load": load_average()}
    for name, docs in (("chunks", chunks), ("papers", papers)):
        store = SegmentStore(root / name)
        t0 = time.perf_counter()
        with store.lock():
            index = store.rebuild(1, docs)
        meta["segments"][name] = {
            "build_s": time.perf_counter() - t0,
            "bytes": store.size_bytes(),
            "segments": len(index.segments),
            "terms": sum(len(s.terms) for s in index.segments),
            "postings": sum(s.postings for s in index.segments),
        }
    if matrix:
        meta["matrix"] = {"load": load_average()}
        for name, docs in (("chunks", chunks), ("papers", papers)):
            t0 = time.perf_counter()
            whole = MatrixIndex.build(docs, 1)
            whole.save(root / f"{name}.npz")
            meta["matrix"][name] = {
                "build_s": time.perf_counter() - t0,
                "bytes": (root / f"{name}.npz").stat().st_size,
            }
            del whole
    meta["built"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    meta_path.write_text(json.dumps(meta, indent=2))
    return meta


def lexical_probe(root: Path, variant: str, n_queries: int | None, repeats: int) -> dict:
    """In a fresh process: open both fields, run what the searcher asks BM25 for per query
    (chunk and paper scores, their top candidates, the ceiling, per-id scores of dense-only
    candidates, the distinctive terms and which papers have them), then read the memory."""
    from benchmarks.bench_search import queries
    from benchmarks.whole_matrix_bm25 import BM25Index as MatrixIndex
    from retrieval.lexical import distinctive_terms

    qs = queries(n_queries)
    status0 = proc_status(os.getpid())
    t0 = time.perf_counter()
    if variant == "matrix":
        fields: dict[str, Any] = {
            n: MatrixIndex.load(root / f"{n}.npz") for n in ("chunks", "papers")
        }
    else:
        fields = {n: SegmentStore(root / n).open() for n in ("chunks", "papers")}
    open_s = time.perf_counter() - t0
    status1 = proc_status(os.getpid())
    chunks, papers = fields["chunks"], fields["papers"]
    rng = np.random.default_rng(3)
    sample_ids = [str(x) for x in _some_ids(chunks, rng)]

    def one(q: str) -> None:
        scored = chunks.query(q)
        top = scored.top(LEXICAL_CANDIDATES)
        chunks.query_ceiling(q)
        paper_scores = papers.query(q)
        best = paper_scores.top(LEXICAL_CANDIDATES)
        papers.query_ceiling(q)
        scored.of(sample_ids[:LEXICAL_CANDIDATES])
        paper_scores.of([pid for pid, _ in best[:10]])
        terms = distinctive_terms(q, papers, 0.01)
        if terms:
            papers.terms_in([pid for pid, _ in best[:10]], terms)
        del top

    start = time.perf_counter()
    for q in qs[:10]:
        one(q)
    warm_s = time.perf_counter() - start
    load_before = load_average()
    times = []
    for _ in range(repeats):
        for q in qs:
            start = time.perf_counter()
            one(q)
            times.append((time.perf_counter() - start) * 1000)
    status = proc_status(os.getpid())
    return {
        "variant": variant,
        "queries": len(qs) * repeats,
        "open_s": open_s,
        "warmup_s": warm_s,
        "p50": percentile(times, 50),
        "p95": percentile(times, 95),
        "mean": float(np.mean(times)),
        "rss_start_mib": mib(status0.get("VmRSS")),
        "rss_open_mib": mib(status1.get("VmRSS")),
        **_memory(status),
        "load_before": load_before,
        "load_after": load_average(),
    }


def _some_ids(index: Any, rng: np.random.Generator) -> list[str]:
    if hasattr(index, "chunk_ids"):
        ids = index.chunk_ids
        return [str(ids[i]) for i in rng.choice(len(ids), 100, replace=False)]
    seg = index.segments[0]
    return [seg.ids[i].decode() for i in rng.choice(len(seg), 100, replace=False)]


def lexical_update(root: Path, n_chunks: int) -> dict[str, Any]:
    """+1,000 / −100 chunks on a copy of the chunk field: the id diff (state ids stand-in:
    the live ids plus the new ones, as bytes) and the new segment with tombstones."""
    copy = root / ".update"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(root / "chunks", copy)
    store = SegmentStore(copy)
    index = store.open()
    assert index is not None
    rng = np.random.default_rng(11)
    live = live_ids(index)
    gone = np.sort(rng.choice(live, 100, replace=False))
    new_docs = [
        LexicalDoc(f"zz-{i:06d}#0:x", "new sentences about sparse attention and graphs", None, "f")
        for i in range(1000)
    ]
    state_ids = np.sort(
        np.concatenate(
            [np.setdiff1d(live, gone), as_bytes(d.chunk_id for d in new_docs).astype(live.dtype)]
        )
    )
    t0 = time.perf_counter()
    current = live_ids(index)
    added = np.setdiff1d(state_ids, current, assume_unique=True)
    removed = np.setdiff1d(current, state_ids, assume_unique=True)
    t1 = time.perf_counter()
    with store.lock():
        updated = store.apply(index, 2, removed, new_docs)
    t2 = time.perf_counter()
    assert len(added) == 1000 and len(removed) == 100 and len(updated) == len(index) + 900
    shutil.rmtree(copy, ignore_errors=True)
    return {"chunks": n_chunks, "diff_s": t1 - t0, "apply_s": t2 - t1, "load": load_average()}


def lexical_scale(sizes: list[int], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"machine": machine_info(), "sizes": []}
    for n in sizes:
        matrix = n <= args.matrix_max
        log(f"lexical index of {n:,} chunks (load {load_average()})")
        meta = lexical_build(n, work, matrix=matrix)
        root = work / f"lexical-{n}"
        entry: dict[str, Any] = {"build": meta, "update": lexical_update(root, n), "probes": []}
        for variant in ("segments", "matrix") if matrix else ("segments",):
            cmd = [
                sys.executable,
                __file__,
                "lexical-probe",
                "--data-dir",
                str(root),
                "--variant",
                variant,
                "--repeats",
                str(args.repeats),
            ]
            if args.queries:
                cmd += ["--queries", str(args.queries)]
            log(f"lexical probe {variant} at {n:,} (load {load_average()})")
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode:
                raise SystemExit(f"probe failed:\n{done.stderr[-3000:]}")
            entry["probes"].append(json.loads(done.stdout.strip().splitlines()[-1]))
        result["sizes"].append(entry)
        (work / "lexical-results.json").write_text(json.dumps(result, indent=2))
    return result


def render_lexical(result: dict[str, Any]) -> str:
    rows = []
    for size in result["sizes"]:
        b = size["build"]
        for p in size["probes"]:
            built = b[p["variant"]]
            rows.append(
                [
                    f"{b['chunks']:,}",
                    p["variant"],
                    built["chunks"]["build_s"] + built["papers"]["build_s"],
                    (built["chunks"]["bytes"] + built["papers"]["bytes"]) / 2**20,
                    p["open_s"] * 1000,
                    p["p50"],
                    p["p95"],
                    p["rss_open_mib"] - p["rss_start_mib"],
                    p["rss_mib"] - p["rss_start_mib"],
                    p["rss_anon_mib"],
                    p["rss_file_mib"],
                    f"{p['load_before']} → {p['load_after']}",
                ]
            )
    out = [
        md_table(
            [
                "chunks",
                "BM25",
                "build s (both fields)",
                "files MiB",
                "open ms",
                "BM25 p50 ms",
                "BM25 p95 ms",
                "RSS after open MiB",
                "RSS after queries MiB",
                "anon MiB",
                "file-backed MiB",
                "load avg",
            ],
            rows,
        ),
        "",
    ]
    rows = [
        [
            f"{s['update']['chunks']:,}",
            s["update"]["diff_s"],
            s["update"]["apply_s"],
            s["update"]["load"],
        ]
        for s in result["sizes"]
    ]
    out += [md_table(["chunks", "id diff s", "+1000 −100: segment + tombstones s", "load"], rows)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "command", choices=["build", "measure", "probe", "lexical", "lexical-probe"]
    )
    parser.add_argument("--chunks", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--work", type=Path, default=SCALE_WORK)
    parser.add_argument("--queries", type=int, default=None, help="only the first N queries")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--matrix-max", type=int, default=100_000, help="baseline up to here")
    parser.add_argument("--skip-build", action="store_true", help="reuse the built BM25 files")
    parser.add_argument("--data-dir", type=Path, help="probe: the corpus")
    parser.add_argument("--variant", choices=["segments", "matrix"], default="segments")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["hybrid"],
        choices=[*MODES, SERIAL, OVERLAPPED],
        help="probe: the modes to time (`measure` runs each in its own process)",
    )
    parser.add_argument(
        "--embedding-threads",
        type=int,
        default=None,
        help="probe/measure: ONNX threads (default: what `serve` gives one answer here; 0: all)",
    )
    parser.add_argument(
        "--chroma-server",
        action="store_true",
        help="probe/measure: the vectors in a local `chroma run` on the corpus's files",
    )
    parser.add_argument(
        "--bm25-warm-mb",
        type=int,
        default=None,
        help="probe/measure: PAPERBOT_BM25_WARM_MB (default: the setting's; 0: no warm-up)",
    )
    parser.add_argument(
        "--bulk", action="store_true", help="build: write state and Chroma in large batches"
    )
    args = parser.parse_args(argv)
    if args.command == "lexical-probe":
        print(json.dumps(lexical_probe(args.data_dir, args.variant, args.queries, args.repeats)))
        return
    if args.command == "lexical":
        args.work.mkdir(parents=True, exist_ok=True)
        result = lexical_scale(args.chunks, args.work, args)
        markdown = render_lexical(result)
        stamp = time.strftime("%Y%m%dT%H%M", time.gmtime())
        (args.work / f"lexical-{stamp}.md").write_text(markdown)
        print(markdown)
        return
    if args.command == "probe":
        found = probe(
            args.data_dir,
            args.variant,
            args.queries,
            args.repeats,
            chroma_server=args.chroma_server,
            modes=args.modes,
            embedding_threads=args.embedding_threads,
            bm25_warm_mb=args.bm25_warm_mb,
        )
        print(json.dumps(found))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    if args.command == "build":
        for target in args.chunks:
            data_dir, meta = cached(target, args.work, bulk=args.bulk)
            print(json.dumps({"data_dir": str(data_dir), **meta}))
        return
    result = measure(args.chunks, args.work, args)
    markdown = render(result)
    stamp = time.strftime("%Y%m%dT%H%M", time.gmtime())
    (args.work / f"results-{stamp}.md").write_text(markdown)
    (args.work / f"results-{stamp}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result) if args.json else markdown)


if __name__ == "__main__":
    main()
