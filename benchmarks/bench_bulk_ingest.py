"""Bulk backfill throughput: `paperbot ingest --arxiv-snapshot` with cached embeddings, against
the feed-file ingest path of the same papers, and embedding chunks/s per throughput mode.

Target (issue 15): >= 2,000 papers/s with cached embeddings, i.e. everything but the model:
read and parse the snapshot, normalise, chunk with tiktoken, compare with the state, write
papers/chunks/listings, read the embedding cache, upsert into Chroma (embedded, in the data dir).

The corpus: a synthetic arXiv snapshot (`tests/support/snapshots.py`) of ``--papers`` papers
built from the 250 real ACLSum abstracts (distinct ids, titles and sentence orders). Vectors
(``--vectors``) are distributed as `bench_search.py`'s corpus's: the normalised mean of a few
real sentences' MiniLM vectors plus half a real title's, plus gaussian noise, renormalised
(``sentences``, the default: what Chroma's HNSW graph meets in use; see `SentenceVectors`); or
``hash``, 384 random floats per text (the earlier sessions' rows: random vectors are HNSW's
worst case, ~1.3x the insert cost). Every data dir gets the embedding cache of every chunk text
before any timing, and the embedder used while timing refuses to embed, so a run that would
need the model fails instead of being measured.

Measured in the same run, each on a fresh data dir:
  * bulk: the CLI's path (`open_arxiv_snapshot` read in slices, `Corpus.ingest` per slice);
  * feed file (baseline): the same papers as flat JSON Lines through `load_path` and one
    `Corpus.ingest`, with the ingester's pre-issue-15 batching (64 papers, one window);
  * embedding modes, chunks/s on the same chunk texts: local model in 1 vs 2 worker processes,
    and an OpenAI-compatible endpoint (FakeOpenAIServer, ``--endpoint-delay`` s per request)
    at concurrency 1 vs 4.

Every row also gives its CPU time (this process's, where embedded Chroma's inserts run too,
and its finished children's: the parse workers; a `chroma run` server's is not counted) per
paper and per chunk: 2,000 papers/s on this machine's 2 cores allows 1.0 ms of CPU per paper.

    python benchmarks/bench_bulk_ingest.py                 # 20,000 papers
    python benchmarks/bench_bulk_ingest.py --papers 2000 --json
    python benchmarks/bench_bulk_ingest.py --profile       # cProfile of the bulk run (top 30)
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import hashlib
import io
import json
import pstats
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from benchmarks.common import (
    WORK,
    fresh_dir,
    load_average,
    local_embedder,
    machine_info,
    make_settings,
)
from retrieval import Corpus, RetrievalSettings, open_arxiv_snapshot
from retrieval.chunking import chunk_paper
from retrieval.ingest import Ingester, text_hash
from retrieval.models import Paper
from retrieval.sources import load_path
from retrieval.tokens import get_encoding
from tests.support.snapshots import write_snapshot

DIM = 384
MODEL = "bench-hash-384"


class CachedOnlyEmbedder:
    """Synthetic vectors for warming the cache; refuses to embed while `frozen`."""

    model_id = MODEL
    dim = DIM

    def __init__(self) -> None:
        self.frozen = False

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self.frozen and len(texts):
            raise AssertionError(f"{len(texts)} texts missed the embedding cache")
        return np.stack([hash_vector(t) for t in texts]) if texts else np.zeros((0, DIM))

    def embed_query(self, text: str) -> np.ndarray:
        return hash_vector(text)


def hash_vector(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    row = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return row / np.linalg.norm(row)


def snapshot(papers: int) -> Path:
    path = WORK / "bulk" / f"snapshot-{papers}.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_snapshot(path, papers)
    return path


def flat_jsonl(snapshot_path: Path, settings: RetrievalSettings) -> Path:
    """The snapshot's papers as the flat records a feed file carries."""
    path = snapshot_path.with_suffix(".flat.jsonl")
    if not path.exists():
        with path.open("w", encoding="utf-8") as out:
            for p in open_arxiv_snapshot(settings, snapshot_path):
                if isinstance(p, Paper):
                    record = p.model_dump(
                        mode="json", include={"title", "abstract", "authors", "categories"}
                    )
                    record.update(
                        arxiv_id=f"{p.arxiv_id}v{p.version}",
                        published=str(p.published),
                        listed=str(p.listed),
                    )
                    out.write(json.dumps(record) + "\n")
    return path


class Servers:
    """With ``--chroma-server``: one local `chroma run` per data dir (its own files), as the
    10⁶ topology of docs/scaling.md puts the vectors; stopped at the end of the run."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started: list[Any] = []

    def settings(self, data_dir: Path) -> RetrievalSettings:
        if not self.enabled:
            return make_settings(data_dir)
        from tests.support.chroma_server import ChromaServer

        server = ChromaServer(data_dir / "chroma-server")
        server.start(timeout=120)
        self.started.append(server)
        return make_settings(data_dir, chroma_host=server.host, chroma_port=server.port)

    def stop(self) -> None:
        for server in self.started:
            server.stop()


class SentenceVectors:
    """Vectors distributed as `bench_search.py`'s corpus's chunk vectors: the normalised mean of
    2-6 real sentences' MiniLM vectors plus half a real title's, plus noise (`chunk_vector`),
    the draw seeded by the chunk's text. Not its own sentences: the snapshot repeats 250
    abstracts (rotated), and vectors following its text would be ~80 near-copies of each, which
    made Chroma's inserts 1.5-1.7x cheaper than into a corpus of distinct papers."""

    def __init__(self) -> None:
        from benchmarks.bench_search import Pool

        self.pool = Pool.load(lambda: local_embedder(make_settings(WORK / "bulk" / "pool")))

    def __call__(self, text: str) -> np.ndarray:
        from benchmarks.bench_search import chunk_vector

        pool = self.pool
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        rng = np.random.default_rng(seed)
        picks = rng.choice(len(pool.sentences), int(rng.integers(2, 7)), replace=False)
        title = pool.title_vectors[int(rng.integers(len(pool.titles)))]
        vector, _ = chunk_vector(pool, " ".join(pool.sentences[i] for i in picks), title, rng)
        return np.asarray(vector)


def chunk_vectors(snapshot_path: Path, kind: str) -> dict[str, np.ndarray]:
    """Every chunk's vector by `text_hash` of its text, as the embedding cache keys them."""
    settings = make_settings(WORK / "bulk" / "pool")
    codec = get_encoding(settings.tiktoken_encoding, settings.tiktoken_dir)
    sentences = SentenceVectors() if kind == "sentences" else None
    vectors: dict[str, np.ndarray] = {}
    for p in open_arxiv_snapshot(settings, snapshot_path):
        if isinstance(p, Paper):
            for chunk in chunk_paper(p, codec, settings.chunk_tokens, settings.chunk_overlap):
                text = chunk.embed_text
                vectors[text_hash(text)] = sentences(text) if sentences else hash_vector(text)
    return vectors


def prepared(
    name: str,
    vectors: dict[str, np.ndarray],
    servers: Servers | None = None,
) -> tuple[Corpus, CachedOnlyEmbedder]:
    """A fresh data dir whose embedding cache holds every chunk text of the snapshot."""
    data_dir = fresh_dir(WORK / "bulk" / name)
    settings = servers.settings(data_dir) if servers else make_settings(data_dir)
    embedder = CachedOnlyEmbedder()
    corpus = Corpus(settings, embedder=embedder)
    corpus.state.put_vectors(vectors, MODEL)
    corpus.store.count()  # open Chroma now, not inside the timing
    embedder.frozen = True
    return corpus, embedder


def run_bulk(
    corpus: Corpus, snapshot_path: Path, profile: bool, workers: int | None = None
) -> dict[str, Any]:
    """The bulk path; ``workers``: PAPERBOT_PARSE_WORKERS for this run (None: the settings')."""
    settings = corpus.settings
    if workers is not None:
        settings = settings.model_copy(update={"parse_workers": workers})
    reader = open_arxiv_snapshot(settings, snapshot_path)
    profiler = cProfile.Profile() if profile else None
    started = _now()
    if profiler:
        profiler.enable()
    new = chunks = 0
    for piece in reader.slices(50_000):
        report = corpus.ingest(piece)
        new += len(report.new)
    if profiler:
        profiler.disable()
    elapsed = _since(started)
    chunks = corpus.state.count_chunks()
    used = reader.parallel_workers
    result = _rates(f"bulk (--arxiv-snapshot), {used} parse workers", new, chunks, *elapsed)
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        result["profile"] = out.getvalue()
    return result


def run_feed_file(corpus: Corpus, flat: Path) -> dict[str, Any]:
    import retrieval.corpus as corpus_module

    old = functools.partial(Ingester, batch_papers=64, window_papers=10**9, background_writes=False)
    original = corpus_module.Ingester
    corpus_module.Ingester = old  # type: ignore[misc,assignment]
    try:
        started = _now()
        records = list(load_path(flat))  # the CLI reads every feed first
        report = corpus.ingest(records)
        elapsed = _since(started)
    finally:
        corpus_module.Ingester = original  # type: ignore[misc]
    return _rates("feed file (baseline)", len(report.new), corpus.state.count_chunks(), *elapsed)


def run_without_vector_writes(
    corpus: Corpus, snapshot_path: Path, workers: int | None = None
) -> dict[str, Any]:
    """Diagnostic: the bulk path with the vector store's writes skipped (what the rest of the
    pipeline costs); the data dir's vector index is left behind the state (thrown away)."""
    from retrieval.store import VectorStore

    original = VectorStore.upsert
    VectorStore.upsert = lambda self, ids, vectors, metas: None  # type: ignore[method-assign]
    try:
        result = run_bulk(corpus, snapshot_path, profile=False, workers=workers)
    finally:
        VectorStore.upsert = original  # type: ignore[method-assign]
    result["path"] = result["path"].replace(
        "bulk (--arxiv-snapshot)", "diagnostic: no vector writes"
    )
    return result


def run_reader(settings: RetrievalSettings, snapshot_path: Path) -> dict[str, Any]:
    """Diagnostic: reading and normalising the snapshot alone, in this process (with parse
    workers the reader's rate is theirs, chunking included: see the bulk rows)."""
    settings = settings.model_copy(update={"parse_workers": 0})
    started = _now()
    papers = sum(isinstance(r, Paper) for r in open_arxiv_snapshot(settings, snapshot_path))
    return _rates("diagnostic: read + parse only", papers, 0, *_since(started))


def run_chroma_alone(corpus: Corpus, cached: dict[str, np.ndarray]) -> dict[str, Any]:
    """Diagnostic: Chroma's insert rate alone, the snapshot's vectors (as many as its chunks),
    same collection settings, batches of 1,024."""
    from datetime import date

    from retrieval.store import ChunkMeta

    store = corpus.store
    rows = np.stack(list(cached.values()))
    vectors = len(rows)
    metas = [ChunkMeta(f"x{i}", date(2023, 1, 2), "arxiv") for i in range(vectors)]
    ids = [f"x{i}#0:bench" for i in range(vectors)]
    started = _now()
    for i in range(0, vectors, 1024):
        store.upsert(ids[i : i + 1024], rows[i : i + 1024], metas[i : i + 1024])
    result = _rates("diagnostic: Chroma inserts alone", 0, vectors, *_since(started))
    result["papers_per_s"] = None
    return result


def _now() -> tuple[float, float]:
    """Wall clock and CPU seconds so far: this process's (embedded Chroma's Rust threads run
    in it) and its finished children's (parse workers; not a `chroma run` server's)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter(), time.process_time() + children.ru_utime + children.ru_stime


def _since(started: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _now()
    return wall - started[0], cpu - started[1]


def _rates(label: str, papers: int, chunks: int, elapsed: float, cpu: float) -> dict[str, Any]:
    return {
        "path": label,
        "papers": papers,
        "chunks": chunks,
        "seconds": round(elapsed, 2),
        "cpu_seconds": round(cpu, 2),
        "papers_per_s": round(papers / elapsed, 1),
        "chunks_per_s": round(chunks / elapsed, 1),
        # CPU per paper (per chunk for the inserts alone): 2 cores give 1.0 ms per paper at 2,000/s
        "cpu_ms_per_paper": round(cpu / papers * 1000, 3) if papers else None,
        "cpu_ms_per_chunk": round(cpu / chunks * 1000, 3) if chunks else None,
    }


def embedding_modes(texts: list[str], delay: float, rounds: int) -> list[dict[str, Any]]:
    """chunks/s of each throughput mode on the same texts (best of ``rounds``)."""
    from retrieval.embed_pool import ConcurrentEmbedder, ProcessPoolEmbedder
    from retrieval.embeddings import LocalMiniLMEmbedder, OpenAIEmbedder
    from tests.support.openai_server import FakeOpenAIServer

    rows = []

    def timed(label: str, embed: Any, n: int) -> None:
        embed(texts[:8])  # warm: model loaded, workers started, connection open
        best = min(_seconds(embed, texts[:n]) for _ in range(rounds))
        rows.append(
            {
                "mode": label,
                "chunks": n,
                "seconds": round(best, 2),
                "chunks_per_s": round(n / best, 1),
            }
        )

    single = LocalMiniLMEmbedder()
    timed("local, 1 process (all cores)", single.embed, len(texts))
    pool = ProcessPoolEmbedder(2)
    try:
        timed("local, 2 worker processes", pool.embed, len(texts))
    finally:
        pool.close()
    with FakeOpenAIServer(dim=DIM, embed_delay=delay) as server:
        remote = OpenAIEmbedder("embed-test", "k", server.base_url, 30.0, 2, batch_size=64)
        texts = [texts[i % len(texts)] for i in range(1024)]  # 16 requests of 64
        n = len(texts)
        for concurrency in (1, 4):
            embedder = ConcurrentEmbedder(remote, concurrency)
            try:
                timed(
                    f"endpoint, concurrency {concurrency} ({delay:g} s/request)", embedder.embed, n
                )
            finally:
                embedder.close()
    return rows


def _seconds(embed: Any, texts: list[str]) -> float:
    started = time.perf_counter()
    embed(texts)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--papers", type=int, default=20_000)
    parser.add_argument("--embed-chunks", type=int, default=256, help="texts per embedding mode")
    parser.add_argument("--endpoint-delay", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-embedding", action="store_true")
    parser.add_argument("--skip-diagnostics", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--parse-workers",
        default="1",
        help="PAPERBOT_PARSE_WORKERS for the bulk path; a list (0,1) also runs the others "
        "(files under 8 MiB are parsed in process whatever the setting)",
    )
    parser.add_argument(
        "--chroma-server",
        action="store_true",
        help="vectors in a local `chroma run` (one per data dir) instead of embedded Chroma",
    )
    parser.add_argument(
        "--vectors",
        choices=("sentences", "hash"),
        default="sentences",
        help="sentences: built from real sentences' MiniLM vectors (bench_search.py's); "
        "hash: random per text (HNSW's worst case; the rows before 2026-12-02 11:00)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    servers = Servers(args.chroma_server)
    try:
        result = measure(args, servers)
    finally:
        servers.stop()
    report(args, result)


def measure(args: argparse.Namespace, servers: Servers) -> dict[str, Any]:
    path = snapshot(args.papers)
    vectors = chunk_vectors(path, args.vectors)
    load_before = load_average()
    bulk_corpus, _ = prepared("bulk-dir", vectors, servers)
    workers = [int(w) for w in args.parse_workers.split(",")]
    bulk = run_bulk(bulk_corpus, path, args.profile, workers[0])
    chunk_texts = [
        chunk.embed_text
        for chunks in bulk_corpus.chunks_of(
            [p.paper_id for p in bulk_corpus.papers(limit=args.embed_chunks)]
        ).values()
        for chunk in chunks
    ][: args.embed_chunks]
    bulk_corpus.close()
    base_corpus, _ = prepared("feed-dir", vectors, servers)
    baseline = run_feed_file(base_corpus, flat_jsonl(path, base_corpus.settings))
    base_corpus.close()
    diagnostics = []
    if not args.skip_diagnostics:
        reader_only = run_reader(make_settings(WORK / "bulk" / "feed-dir"), path)
        null_corpus, _ = prepared("null-dir", vectors, servers)
        no_vectors = run_without_vector_writes(null_corpus, path, workers[0])
        null_corpus.close()
        others = []
        for extra in workers[1:]:  # the same paths with other worker counts, fresh data dirs
            again, _ = prepared(f"bulk-dir-{extra}", vectors, servers)
            others.append(run_bulk(again, path, False, extra))
            again.close()
            again, _ = prepared(f"null-dir-{extra}", vectors, servers)
            others.append(run_without_vector_writes(again, path, extra))
            again.close()
        chroma_corpus, _ = prepared("chroma-dir", vectors, servers)
        chroma = run_chroma_alone(chroma_corpus, vectors)
        chroma_corpus.close()
        diagnostics = [reader_only, no_vectors, *others, chroma]
    modes = (
        []
        if args.skip_embedding
        else embedding_modes(chunk_texts, args.endpoint_delay, args.rounds)
    )
    result = {
        "machine": machine_info(),
        "load_before": load_before,
        "load_after": load_average(),
        "papers": args.papers,
        "vectors": "chroma run (local server)" if args.chroma_server else "embedded Chroma",
        "vector_kind": args.vectors,
        "cached_ingest": [bulk, baseline],
        "diagnostics": diagnostics,
        "bulk_vs_feed_file": round(bulk["papers_per_s"] / baseline["papers_per_s"], 2),
        "target_papers_per_s": 2000,
        "embedding_modes": modes,
    }
    return result


def report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    diagnostics, modes, bulk = (
        result["diagnostics"],
        result["embedding_modes"],
        result["cached_ingest"][0],
    )
    load_before = result["load_before"]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    if bulk.get("profile"):
        print(bulk.pop("profile"))
    print(
        f"{args.papers:,} papers, {result['vectors']}, {args.vectors} vectors, load {load_before} -> {result['load_after']}"
    )
    for row in [*result["cached_ingest"], *diagnostics]:
        print(
            f"  {row['path']:<42} {row['papers_per_s'] or 0:>9,.1f} papers/s {row['chunks_per_s']:>9,.1f} chunks/s  ({row['seconds']} s, CPU {row['cpu_seconds']} s: {row['cpu_ms_per_paper'] or '-'} ms/paper, {row['cpu_ms_per_chunk'] or '-'} ms/chunk)"
        )
    print(f"  bulk / feed file: {result['bulk_vs_feed_file']}x")
    for row in modes:
        print(
            f"  {row['mode']:<45} {row['chunks_per_s']:>8,.1f} chunks/s ({row['chunks']} chunks, {row['seconds']} s)"
        )


if __name__ == "__main__":
    main()
