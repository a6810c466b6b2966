"""HNSW parameters: recall@10 against exact search, query latency and index size for a few
(M, ef_search) pairs, at 10⁵ synthetic vectors (embedded Chroma, cosine, as paperbot uses it).

Vectors are synthetic but built from real material, as in ``bench_search.py``: each is the
normalised mean of 3-8 real abstract sentences' MiniLM vectors plus half a real title's vector
and gaussian noise (sigma 0.01), so the vectors cluster the way chunks of related papers do.
Queries are real questions (the dev questions and ACLSum's "challenge" summaries) embedded
with MiniLM. Exact top-10 is a brute-force dot product over all vectors (numpy), measured in
the same run as the baseline.

Collections are created through paperbot's own `create_collection` (``Hnsw(m, ef_construction,
ef_search)``), ef_search is changed in place with `apply_ef_search`, and every measurement of
an ef_search value runs on a freshly opened client. Built indexes are kept under
``benchmarks/.work/hnsw/`` (``--rebuild`` to build again).

    python benchmarks/bench_hnsw.py                 # 10^5 vectors, M in 8 16 32
    python benchmarks/bench_hnsw.py --quick         # 2*10^4 vectors
    python benchmarks/bench_hnsw.py --vectors 50000 --m 16 --json
    python benchmarks/bench_hnsw.py --m 16 --ef-construction 100 --ef 100 200
    python benchmarks/bench_hnsw.py --data-dir /tmp/work/scale/chunks-1000000 --ef 64 100 200 400

``--data-dir`` measures a built corpus's own collection in place instead (bench_scale.py's 10⁶
chunks: M and ef_construction as it was built with), its exact top-10 computed from the
state's embedding cache; its ef_search is set back to what it was afterwards.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from benchmarks.bench_search import Pool, queries
from benchmarks.common import (
    WORK,
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
from retrieval.chroma_client import Hnsw, apply_ef_search, connect_embedded, create_collection

HNSW_DIR = WORK / "hnsw"
BUILD_VERSION = 1
SEED = 20251201
NOISE = 0.01
K = 10
CANDIDATES = 50  # what paperbot's hybrid search fetches from Chroma (PAPERBOT_CANDIDATES)
EF_CONSTRUCTION = 200
EF_SEARCH = (10, 20, 40, 64, 100, 128, 200, 400)
BATCH = 5000


def synthetic_vectors(pool: Pool, n: int, seed: int = SEED) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, pool.sentence_vectors.shape[1]), dtype=np.float32)
    for i in range(n):
        picks = rng.choice(len(pool.sentences), int(rng.integers(3, 9)), replace=False)
        mean = pool.sentence_vectors[picks].mean(axis=0)
        base = mean / max(float(np.linalg.norm(mean)), 1e-12)
        base = base + 0.5 * pool.title_vectors[int(rng.integers(len(pool.titles)))]
        base = base + rng.normal(0.0, NOISE, size=base.shape)
        out[i] = base / np.linalg.norm(base)
    return out


class Exact:
    """Exact top-K per query by brute force (the baseline): ids, similarities, latency."""

    def __init__(self, vectors: np.ndarray, query_vectors: np.ndarray) -> None:
        self.ids: list[set[int]] = []
        self.sims: list[np.ndarray] = []  # each query's top-K similarities, best first
        start = time.perf_counter()
        for q in query_vectors:
            scores = vectors @ q
            top = np.argpartition(-scores, K)[:K]
            self.ids.append({int(i) for i in top})
            self.sims.append(np.sort(scores[top])[::-1])
        self.seconds = (time.perf_counter() - start) / len(query_vectors)

    @classmethod
    def blocked(cls, vectors: np.ndarray, query_vectors: np.ndarray, block: int = 65536) -> Exact:
        """The same, for a large ``vectors``: all queries against one block of rows at a time
        (one pass over the rows instead of one per query); ``seconds`` per query."""
        exact = cls.__new__(cls)
        start = time.perf_counter()
        best = np.full((len(query_vectors), K), -np.inf, dtype=np.float32)
        rows = np.zeros((len(query_vectors), K), dtype=np.int64)
        for lo in range(0, len(vectors), block):
            scores = query_vectors @ vectors[lo : lo + block].T  # queries × block
            top = np.argpartition(-scores, min(K, scores.shape[1] - 1), axis=1)[:, :K]
            sims = np.take_along_axis(scores, top, axis=1)
            both_sims = np.concatenate([best, sims], axis=1)
            both_rows = np.concatenate([rows, top + lo], axis=1)
            keep = np.argsort(-both_sims, axis=1)[:, :K]
            best = np.take_along_axis(both_sims, keep, axis=1)
            rows = np.take_along_axis(both_rows, keep, axis=1)
        exact.ids = [{int(i) for i in r} for r in rows]
        exact.sims = [np.asarray(b) for b in best]
        exact.seconds = (time.perf_counter() - start) / len(query_vectors)
        return exact


def build(
    path: Path, vectors: np.ndarray, m: int, ef_construction: int = EF_CONSTRUCTION
) -> dict[str, Any]:
    """A collection of ``vectors`` with M=m (cached on disk with its build time)."""
    meta_path = path / "bench-meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("version") == BUILD_VERSION and meta.get("vectors") == len(vectors):
            return dict(meta)
    shutil.rmtree(path, ignore_errors=True)
    client, system = connect_embedded(path / "chroma")
    hnsw = Hnsw(m, ef_construction, 100)
    collection = create_collection(client, "bench", None, {"bench": "hnsw"}, hnsw)
    assert collection is not None
    log(f"building M={m}, ef_construction {ef_construction}: {len(vectors):,} vectors")
    start = time.perf_counter()
    for lo in range(0, len(vectors), BATCH):
        hi = min(lo + BATCH, len(vectors))
        collection.add(ids=[str(i) for i in range(lo, hi)], embeddings=vectors[lo:hi])
    build_s = time.perf_counter() - start
    assert collection.count() == len(vectors)
    system.stop()
    meta = {"version": BUILD_VERSION, "vectors": len(vectors), "m": m, "build_s": build_s}
    meta.update(index_files(path / "chroma"))
    meta_path.write_text(json.dumps(meta, indent=2))
    log(f"built M={m} in {build_s:.0f} s")
    return meta


def index_files(chroma_dir: Path) -> dict[str, int]:
    """Bytes of the HNSW files (the part of the index a process holds in memory) and of the
    whole directory (the SQLite side keeps the vectors too)."""
    hnsw = sum(
        f.stat().st_size
        for f in chroma_dir.rglob("*")
        if f.is_file() and f.suffix == ".bin"  # data_level0, link_lists, length, header
    )
    total = sum(f.stat().st_size for f in chroma_dir.rglob("*") if f.is_file())
    return {"hnsw_bytes": hnsw, "dir_bytes": total}


def measure(
    path: Path,
    ef: int,
    query_vectors: np.ndarray,
    exact: Exact,
    *,
    name: str = "bench",
    key: Callable[[str], int] = int,
    embedding_function: Any = None,
) -> dict[str, Any]:
    """``path``: a directory holding ``chroma/`` with the collection ``name``, whose ids
    ``key`` maps to the exact search's row numbers (``embedding_function``: the one the
    collection was made with, which Chroma needs to change its configuration)."""
    client, system = connect_embedded(path / "chroma")
    collection = client.get_collection(name, embedding_function=embedding_function)
    if apply_ef_search(collection, ef, f"bench M at {path}"):
        system.stop()  # measure on a client opened after the change
        client, system = connect_embedded(path / "chroma")
        collection = client.get_collection(name, embedding_function=embedding_function)
    assert Hnsw.of(collection.configuration_json).ef_search == ef  # type: ignore[union-attr]
    start = time.perf_counter()
    collection.query(query_embeddings=[query_vectors[0]], n_results=K)  # loads the index
    load_s = time.perf_counter() - start
    latencies: list[float] = []
    recalls: list[float] = []
    tie_recalls: list[float] = []
    score_ratios: list[float] = []
    in_candidates: list[float] = []  # the exact top-10 found among the 50 candidates
    for q, truth, sims in zip(query_vectors, exact.ids, exact.sims, strict=True):
        start = time.perf_counter()
        result = collection.query(query_embeddings=[q], n_results=K, include=["distances"])
        latencies.append((time.perf_counter() - start) * 1000)
        got = {key(i) for i in result["ids"][0]}
        recalls.append(len(got & truth) / K)
        found = 1.0 - np.asarray(result["distances"][0], dtype=np.float64)
        # A miss whose similarity ties the exact 10th is as good an answer (near-duplicates).
        tie_recalls.append(float(np.sum(found >= sims[-1] - 1e-4)) / K)
        score_ratios.append(float(found.sum() / sims.sum()))
        wide = collection.query(query_embeddings=[q], n_results=CANDIDATES, include=[])
        in_candidates.append(len({key(i) for i in wide["ids"][0]} & truth) / K)
    system.stop()
    return {
        "ef_search": ef,
        "recall_at_10": float(np.mean(recalls)),
        "recall_min": float(np.min(recalls)),
        "tie_recall_at_10": float(np.mean(tie_recalls)),
        "similarity_ratio": float(np.mean(score_ratios)),
        "top10_in_candidates": float(np.mean(in_candidates)),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "first_query_s": load_s,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = bench_parser(__doc__, "2*10^4 vectors instead of 10^5")
    parser.add_argument("--vectors", type=int, default=None)
    parser.add_argument("--m", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--ef", type=int, nargs="+", default=list(EF_SEARCH))
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument(
        "--ef-construction",
        type=int,
        default=EF_CONSTRUCTION,
        help="of the collections built (paperbot's default: 200)",
    )
    parser.add_argument("--data-dir", type=Path, help="measure this corpus's collection")
    args = parser.parse_args(argv)
    if args.data_dir is not None:
        return main_data_dir(args)
    n = args.vectors or (20_000 if args.quick else 100_000)
    started = time.perf_counter()
    result = begin()
    settings = make_settings(HNSW_DIR / "settings")
    pool = Pool.load(lambda: local_embedder(settings))
    texts = queries(args.queries)
    embedder = local_embedder(settings)
    query_vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
    log(f"generating {n:,} synthetic vectors; {len(texts)} real questions")
    vectors = synthetic_vectors(pool, n)
    exact = Exact(vectors, query_vectors)
    result.update(
        vectors=n,
        dim=int(vectors.shape[1]),
        queries=len(texts),
        ef_construction=args.ef_construction,
        exact_ms=exact.seconds * 1000,
        runs=[],
    )
    for m in args.m:
        path = HNSW_DIR / f"v{n}-m{m}"
        if args.ef_construction != EF_CONSTRUCTION:
            path = path.with_name(f"{path.name}-efc{args.ef_construction}")
        if args.rebuild:
            shutil.rmtree(path, ignore_errors=True)
        meta = build(path, vectors, m, args.ef_construction)
        for ef in args.ef:
            row = {"m": m, "build_s": meta["build_s"], "hnsw_bytes": meta["hnsw_bytes"]}
            row |= {"dir_bytes": meta["dir_bytes"], **measure(path, ef, query_vectors, exact)}
            log(f"M={m} ef={ef}: {json.dumps(row)}")
            result["runs"].append(row)
    finish("bench_hnsw", result, render(result), started=started, as_json=args.json)
    return result


def corpus_vectors(data_dir: Path, model: str) -> tuple[list[str], np.ndarray]:
    """Every chunk id of a built corpus and its vector, from the state's embedding cache (by
    the hash of the chunk's `embed_text`, as the ingest stored it)."""
    from retrieval.ingest import text_hash
    from retrieval.state import StateStore

    state = StateStore(make_settings(data_dir).state_path)
    ids = sorted(state.chunk_ids())
    vectors = np.zeros((len(ids), 384), dtype=np.float32)
    found = 0
    for lo in range(0, len(ids), 2000):
        chunks = state.get_chunks(ids[lo : lo + 2000])
        hashes = {cid: text_hash(chunk.embed_text) for cid, chunk in chunks.items()}
        cached = state.cached_vectors(model, list(hashes.values()))
        for i, cid in enumerate(ids[lo : lo + 2000], start=lo):
            vector = cached.get(hashes.get(cid, ""))
            if vector is not None:
                vectors[i] = vector
                found += 1
    state.close()
    if found != len(ids):
        raise SystemExit(f"{len(ids) - found} of {len(ids)} chunks have no cached vector")
    return ids, vectors


def main_data_dir(args: Any) -> dict[str, Any]:
    """Recall and latency of a built corpus's own collection at several ef_search values."""
    from retrieval.chroma_function import ChromaEmbeddingFunction
    from retrieval.store import collection_name

    started = time.perf_counter()
    result = begin()
    settings = make_settings(args.data_dir)
    embedder = local_embedder(settings)
    texts = queries(args.queries)
    query_vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
    log(f"reading the vectors of {args.data_dir} from its embedding cache")
    ids, vectors = corpus_vectors(args.data_dir, embedder.model_id)
    row_of = {cid: i for i, cid in enumerate(ids)}
    log(f"exact top-{K} of {len(texts)} questions over {len(ids):,} vectors")
    exact = Exact.blocked(vectors, query_vectors)
    del vectors
    function = ChromaEmbeddingFunction(embedder)
    client, system = connect_embedded(args.data_dir / "chroma")
    names = [c.name for c in client.list_collections()]
    name = (
        names[0]
        if len(names) == 1
        else collection_name(settings.chroma_collection, embedder.model_id)
    )
    built = Hnsw.of(client.get_collection(name, embedding_function=function).configuration_json)
    system.stop()
    assert built is not None
    result.update(
        vectors=len(ids),
        dim=384,
        queries=len(texts),
        ef_construction=built.ef_construction,
        exact_ms=exact.seconds * 1000,
        runs=[],
        data_dir=str(args.data_dir),
    )
    files = index_files(args.data_dir / "chroma")
    try:
        for ef in args.ef:
            row = {"m": built.m, "build_s": None, **files}  # built elsewhere (not timed here)
            row |= measure(
                args.data_dir,
                ef,
                query_vectors,
                exact,
                name=name,
                key=row_of.__getitem__,
                embedding_function=function,
            )
            log(f"M={built.m} ef={ef}: {json.dumps(row)}")
            result["runs"].append(row)
    finally:
        client, system = connect_embedded(args.data_dir / "chroma")
        restored = client.get_collection(name, embedding_function=function)
        apply_ef_search(restored, built.ef_search, "restore")
        system.stop()
    finish("bench_hnsw_corpus", result, render(result), started=started, as_json=args.json)
    return result


def render(result: dict[str, Any]) -> str:
    n, dim = result["vectors"], result["dim"]
    lines = report_header(f"HNSW parameters at {n:,} vectors (dim {dim})", result)
    lines += [
        f"Recall@10 against exact search (brute force, {result['exact_ms']:.1f} ms a query "
        f"in numpy, the baseline), {result['queries']} real questions; embedded Chroma, cosine, "
        f"ef_construction={result['ef_construction']}; latency of `collection.query` alone "
        "(one thread, index loaded); recall with ties counts a returned vector whose "
        "similarity is within 1e-4 of the exact 10th as found; similarity ratio = the summed "
        "similarities of the 10 returned / of the exact 10; exact top-10 in "
        f"{CANDIDATES} candidates: the share of the exact top-10 among the {CANDIDATES} nearest "
        "that paperbot's hybrid search asks Chroma for (PAPERBOT_CANDIDATES); × exact = exact search's latency / HNSW p50, both "
        "measured in this run. Bytes per vector: the HNSW files (what a process holds "
        "in memory) and the whole Chroma directory (with its SQLite: ids, metadata, and the "
        "write log until Chroma compacts it). Build times depend on the load at the time "
        "(load averages below; compare build times within one run only).",
        "",
    ]
    rows = [
        [
            r["m"],
            r["ef_search"],
            r["recall_at_10"],
            r.get("tie_recall_at_10", "-"),
            r.get("similarity_ratio", "-"),
            r.get("top10_in_candidates", "-"),
            r["recall_min"],
            r["p50_ms"],
            r["p95_ms"],
            result["exact_ms"] / r["p50_ms"] if "data_dir" not in result else "–",
            r["build_s"] if r["build_s"] is not None else "–",
            round(r["hnsw_bytes"] / n),
            round(r["dir_bytes"] / n),
        ]
        for r in result["runs"]
    ]
    headers = ["M", "ef_search", "recall@10", "recall@10 with ties", "similarity ratio"]
    headers.append(f"exact top-10 in {CANDIDATES} candidates")
    headers += ["worst query", "p50 ms", "p95 ms", "× exact"]
    headers.append("build s")
    lines.append(md_table([*headers, "HNSW B/vector", "dir B/vector"], rows))
    return "\n".join(lines) + "\n"


def rerender(path: Path) -> str:
    """The markdown of a saved ``--json`` result (e.g. after editing `render`)."""
    return render(json.loads(path.read_text()))


if __name__ == "__main__":
    main()
