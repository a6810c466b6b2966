"""Shared helpers for the benchmark scripts: paths, settings, corpora, timers, tables.

Every script runs on its own data dir under ``benchmarks/.work/`` (gitignored), never on the
repository's ``paperbot-data``, and never reads ``.env``.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests.corpora (the ACLSum loader) lives at the repo root
    sys.path.insert(0, str(ROOT))

from retrieval import Paper, RecordError, RetrievalSettings  # noqa: E402
from retrieval.normalize import split_sentences  # noqa: E402

WORK = ROOT / "benchmarks" / ".work"
RESULTS = WORK / "results"
SAMPLE_PAGE = ROOT / "data" / "sample" / "daily_papers_page.txt"
DEV_QUESTIONS = ROOT / "data" / "sample" / "dev_questions.jsonl"
SAMPLE_DATE = date(2025, 5, 16)
TIKTOKEN_DIR = WORK / "tiktoken"

for _key in [k for k in os.environ if k.startswith("PAPERBOT_")]:
    del os.environ[_key]  # a developer's PAPERBOT_* must not change what is measured


# --------------------------------------------------------------------------------------------
# settings and data dirs
# --------------------------------------------------------------------------------------------


def make_settings(data_dir: Path, **overrides: Any) -> RetrievalSettings:
    """Settings on `data_dir`, defaults otherwise, no .env: what a fresh install would use."""
    values: dict[str, Any] = {"data_dir": data_dir, "tiktoken_cache_dir": TIKTOKEN_DIR}
    values.update(overrides)
    return RetrievalSettings(_env_file=None, **values)  # type: ignore[call-arg]


def fresh_dir(path: Path) -> Path:
    """An empty directory at `path` (only ever under benchmarks/.work)."""
    path = path.resolve()
    if WORK.resolve() not in path.parents:
        raise ValueError(f"refusing to wipe {path}: not under {WORK}")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


# --------------------------------------------------------------------------------------------
# real abstracts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AclDoc:
    """One ACLSum paper: its abstract and the three one-sentence summaries."""

    doc_id: str
    title: str
    abstract: str
    summaries: dict[str, str]


@functools.lru_cache(maxsize=1)
def acl_docs() -> tuple[AclDoc, ...]:
    """The 250 ACLSum papers (train + val + test), as `tests.corpora.aclsum_records` reads them."""
    from aclsum import ACLSum

    from tests.corpora import aclsum_records

    records = {r["id"]: r for r in aclsum_records()}
    docs: list[AclDoc] = []
    for split in ("train", "val", "test"):
        for doc in ACLSum(split):
            record = records.get(doc.id)
            if record is None:
                continue
            summaries = {k: str(v).strip() for k, v in doc.summaries.items() if str(v).strip()}
            docs.append(AclDoc(doc.id, record["title"], record["abstract"], summaries))
    return tuple(docs)


def sample_papers() -> list[Paper]:
    """The 30 papers of the bundled HF Daily Papers page."""
    from retrieval.sources import page_text

    records = page_text.parse(
        SAMPLE_PAGE.read_bytes(), origin=str(SAMPLE_PAGE), page_date=SAMPLE_DATE
    )
    return [r for r in records if not isinstance(r, RecordError)]


def base_records() -> list[dict[str, str]]:
    """280 real abstracts as flat records: 250 ACLSum + the 30 sample papers."""
    records = [{"title": d.title, "abstract": d.abstract} for d in acl_docs()]
    records += [{"title": p.title, "abstract": p.abstract} for p in sample_papers()]
    return records


def rotate_sentences(abstract: str, shift: int) -> str:
    sentences = split_sentences(abstract)
    if len(sentences) < 2:
        return abstract
    shift %= len(sentences)
    return " ".join(sentences[shift:] + sentences[:shift])


def write_jsonl(records: Sequence[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else 0.0


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


@dataclass
class PhaseTimer:
    """Wall time spent inside patched functions, per phase name.

    Times are exclusive: when a timed function calls another timed one, the inner call's time
    is counted in its own phase only, so the phases add up to at most the total.
    """

    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    _children: list[float] = field(default_factory=list)  # time of timed calls, per open frame

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds
        self.calls[phase] = self.calls.get(phase, 0) + 1

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    @contextmanager
    def measure(self, phase: str) -> Iterator[None]:
        self._children.append(0.0)
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            inner = self._children.pop()
            self.add(phase, elapsed - inner)
            if self._children:
                self._children[-1] += elapsed

    def wrap(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.measure(phase):
                return fn(*args, **kwargs)

        return timed

    @contextmanager
    def patch(self, targets: Sequence[tuple[object, str, str]]) -> Iterator[PhaseTimer]:
        """Time calls to ``owner.attr`` as ``phase`` for each (owner, attr, phase); restores after.

        Targets that do not exist (the code under test changed) are skipped.
        """
        present = [(o, a, p) for o, a, p in targets if a in vars(o)]
        saved = [(owner, attr, vars(owner)[attr]) for owner, attr, _ in present]
        try:
            for owner, attr, phase in present:
                setattr(owner, attr, self.wrap(phase, getattr(owner, attr)))
            yield self
        finally:
            for owner, attr, original in saved:
                setattr(owner, attr, original)


class TimedEmbedder:
    """Wraps an embedder, timing its calls (an `Embedder` itself)."""

    def __init__(self, inner: Any, timer: PhaseTimer, *, memo_queries: bool = False) -> None:
        self.inner = inner
        self.model_id: str = inner.model_id
        self.timer = timer
        self.texts_embedded = 0
        self.calls: list[list[str]] = []  # the texts of every embed() call, in order
        self._memo: dict[str, np.ndarray] | None = {} if memo_queries else None

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts_embedded += len(texts)
        self.calls.append(list(texts))
        with self.timer.measure("embed"):
            return np.asarray(self.inner.embed(texts))

    def embed_query(self, text: str) -> np.ndarray:
        if self._memo is not None and text in self._memo:
            return self._memo[text]
        with self.timer.measure("query embedding"):
            vector = np.asarray(self.inner.embed_query(text))
        if self._memo is not None:
            self._memo[text] = vector
        return vector


def local_embedder(settings: RetrievalSettings, *, warm: bool = True) -> Any:
    """A LocalMiniLMEmbedder as the settings would build it, with the model loaded."""
    from retrieval.embeddings import LocalMiniLMEmbedder

    embedder = LocalMiniLMEmbedder(
        threads=settings.embedding_threads, batch_size=settings.embedding_batch_size
    )
    if warm:
        embedder.embed(["warm-up: load the ONNX session and the tokenizer"] * 4)
    return embedder


# --------------------------------------------------------------------------------------------
# the machine, results and tables
# --------------------------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
                break
    except OSError:
        pass
    versions = {}
    for module in ("onnxruntime", "chromadb", "numpy", "scipy", "tiktoken"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:
            versions[module] = "?"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": ram,
        "python": platform.python_version(),
        **versions,
        "platform": platform.platform(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "?"
    return f"{one:.2f}/{five:.2f}/{fifteen:.2f}"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def save_results(name: str, data: dict[str, Any], markdown: str) -> Path:
    """Write ``<name>.json`` and ``<name>.md`` under benchmarks/.work/results/."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"machine": machine_info(), **data}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    path = RESULTS / f"{name}.md"
    path.write_text(markdown + "\n")
    return path


def verdict(met: bool) -> str:
    return "**met**" if met else "**NOT met**"


def log(message: str) -> None:
    """Progress to stderr, so stdout stays the markdown report."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
