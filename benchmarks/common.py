"""Shared helpers for the benchmark scripts: paths, settings, corpora, timers, tables, and the
peers of the Slack bot benchmarks (data dirs, the stand-in LLM, process probes).

Every script runs on its own data dir under ``benchmarks/.work/`` (gitignored), never on the
repository's ``paperbot-data``, and never reads ``.env``. The fake servers (Slack Web API,
OpenAI-compatible LLM) come from ``tests/support``, shared with the tests.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import shutil
import socket
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
if str(ROOT) not in sys.path:  # tests.support.corpora (the ACLSum loader) lives at the repo root
    sys.path.insert(0, str(ROOT))

from answers.settings import AnswerSettings  # noqa: E402
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


LLM_MODEL = "gpt-test"  # the model name the fake LLM server is asked for


def _settings(cls: Any, values: dict[str, Any]) -> Any:
    """`cls(**values)` without .env; unknown names raise (pydantic-settings ignores extras)."""
    unknown = sorted(set(values) - set(cls.model_fields))
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {', '.join(unknown)}")
    return cls(_env_file=None, **values)


def make_settings(data_dir: Path, **overrides: Any) -> RetrievalSettings:
    """Corpus settings on `data_dir`, defaults otherwise, no .env: what a fresh install would
    use. The LLM is configured apart, in `answer_settings`."""
    values: dict[str, Any] = {"data_dir": data_dir, "tiktoken_cache_dir": TIKTOKEN_DIR}
    values.update(overrides)
    return _settings(RetrievalSettings, values)


def answer_settings(llm_url: str | None = None, **overrides: Any) -> AnswerSettings:
    """Answer settings, no .env: the chat model at `llm_url` (an OpenAI-compatible server such
    as FakeOpenAIServer, model LLM_MODEL), or extractive answers when `llm_url` is None."""
    values: dict[str, Any] = (
        {"llm_provider": "extractive"}
        if llm_url is None
        else {"llm_provider": "openai", "llm_base_url": llm_url, "llm_model": LLM_MODEL}
    )
    values.update(overrides)
    return _settings(AnswerSettings, values)


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
    """The 250 ACLSum papers (train + val + test), as `tests.support.corpora.aclsum_records` reads them."""
    from aclsum import ACLSum

    from tests.support.corpora import aclsum_records

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


def stats(values: Sequence[float]) -> dict[str, float]:
    """n, p50, p95, p99, max and mean of `values` (zeros when empty)."""
    if not values:
        return {"n": 0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    return {
        "n": len(values),
        **{f"p{q}": percentile(values, q) for q in (50, 95, 99)},
        "max": max(values),
        "mean": sum(values) / len(values),
    }


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
# the Slack bot benchmarks: data dirs, the stand-in LLM, processes
# --------------------------------------------------------------------------------------------

BOT_WORK = WORK / "bot"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # the Slack signing secret
BOT_TOKEN = "xoxb-1-bench"
SAMPLE_VERSION = 1
PLACEHOLDER_PREFIX = "🔎"
STREAMING_SUFFIX = "▌"
PAPERBOT = [sys.executable, "-m", "bot.cli"]  # the `paperbot` command of this checkout

_SOURCE = re.compile(r"^\[(\d+)\] [^\n]*\n(.+?)(?=\n\n\[\d+\] |\n\nQuestion:|\Z)", re.M | re.S)


def cited_reply(delay: float) -> Callable[[dict[str, Any]], str]:
    """A stand-in LLM for FakeOpenAIServer: waits `delay` seconds, then answers with the first
    sentence of source [1] and of source [2], each cited (what a well-behaved model does)."""

    def reply(body: dict[str, Any]) -> str:
        if delay:
            time.sleep(delay)
        messages = [m for m in body.get("messages", []) if m["role"] == "user"]
        user = str(messages[-1].get("content", "")) if messages else ""
        sentences = []
        for number, text in _SOURCE.findall(user)[:2]:
            first = split_sentences(" ".join(text.split()))[:1]
            if first:
                sentences.append(f"{first[0].rstrip('.')} [{number}].")
        return " ".join(sentences) or "The indexed papers do not answer this question."

    return reply


def classify(text: str, blocks: Any) -> str:
    """What a bot message is: llm | fallback | refused | pending (placeholder, streaming) | error."""
    blob = json.dumps(blocks or []) + text
    if "Answer generated by" in blob:
        return "llm"
    if "Extractive answer" in blob:
        return "fallback"
    if "Not in the indexed papers" in blob:
        return "refused"
    if text.startswith(PLACEHOLDER_PREFIX) or text.rstrip().endswith(STREAMING_SUFFIX):
        return "pending"
    return "error"


def slack_settings(api_url: str, **overrides: Any) -> Any:
    """SlackSettings (no .env) talking to the fake Slack Web API at `api_url`."""
    from bot.slack.settings import SlackSettings

    values = {"bot_token": BOT_TOKEN, "signing_secret": SECRET, "slack_api_url": api_url}
    return _settings(SlackSettings, values | overrides)


def sample_template() -> Path:
    """The 30 sample papers ingested with the local embedder (built once, then copied)."""
    from retrieval import Corpus

    path = BOT_WORK / "sample-30"
    meta = path / "bench-meta.json"
    if meta.exists() and json.loads(meta.read_text()).get("version") == SAMPLE_VERSION:
        return path
    log("ingesting the 30 sample papers with the local embedder")
    fresh_dir(path)
    settings = make_settings(path)
    corpus = Corpus(settings, embedder=local_embedder(settings))
    report = corpus.ingest(sample_papers())
    corpus.close()
    meta.write_text(json.dumps({"version": SAMPLE_VERSION, "papers": len(report.new)}))
    return path


def copy_dir(src: Path, name: str, *, reuse: bool) -> Path:
    """A private copy of a data dir under benchmarks/.work/bot/ (so runs never write into the
    other benchmarks' indexes); with `reuse`, an existing copy of the same build is kept."""
    dst = BOT_WORK / name
    src_meta, dst_meta = src / "bench-meta.json", dst / "bench-meta.json"
    if reuse and dst_meta.exists() and dst_meta.read_text() == src_meta.read_text():
        return dst
    log(f"copying {src} -> {dst}")
    fresh_dir(dst)
    shutil.copytree(src, dst, dirs_exist_ok=True)
    return dst


def index_dir(chunks: int, *, fresh: bool = False) -> tuple[Path, dict[str, Any]]:
    """bench_search.py's cached index of `chunks` chunks (built the same way if missing), as a
    private copy; `fresh` copies it again (answers write to the state's caches)."""
    from benchmarks.bench_search import cached_index

    src, meta = cached_index(chunks, rebuild=False)
    return copy_dir(src, f"chunks-{chunks}", reuse=not fresh), meta


def paperbot_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a `paperbot` subprocess on `data_dir`: no PAPERBOT_*/SLACK_* or proxy
    of the developer's, this checkout on PYTHONPATH; `extra` on top."""
    drop = ("PAPERBOT_", "SLACK_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(drop)}
    env.update(
        {
            "PAPERBOT_DATA_DIR": str(data_dir),
            "PAPERBOT_TIKTOKEN_CACHE_DIR": str(TIKTOKEN_DIR),
            "PYTHONPATH": str(ROOT),
            **extra,
        }
    )
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile, RssShmem (kB) and Threads of a process, from /proc."""
    wanted = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads")
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in wanted:
                out[name] = int(value.split()[0])
    except (OSError, ValueError):
        pass
    return out


def mib(kb: int | None) -> float:
    return (kb or 0) / 1024


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


def bench_parser(doc: str | None, quick: str) -> argparse.ArgumentParser:
    """The parser every bot benchmark starts from: --quick (`quick` says what it does), --json."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument(
        "--json", action="store_true", help="print the result as JSON instead of markdown"
    )
    return parser


def begin() -> dict[str, Any]:
    """A bot benchmark's result, to start with: the machine and its load."""
    return {"machine": machine_info(), "load_start": load_average()}


def report_header(title: str, result: dict[str, Any]) -> list[str]:
    """The first lines of a report: its title and the machine it ran on."""
    m = result["machine"]
    return [
        f"## {title}",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['ram']} RAM, Python {m['python']}; "
        f"{m['date']}.",
        "",
    ]


def finish(name: str, result: dict[str, Any], body: str, *, started: float, as_json: bool) -> None:
    """Complete `result` (load at the end, runtime), save it as ``<name>.{json,md}`` and print
    the markdown, or with `as_json` the result as JSON."""
    result["load_end"] = load_average()
    result["runtime_s"] = time.perf_counter() - started
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0].endswith(".py") else name
    markdown = body + (
        f"\n_{script} took {result['runtime_s']:.0f} s; load avg "
        f"{result.get('load_start', '?')} at the start, {result['load_end']} at the end._\n"
    )
    save_results(name, result, markdown)
    print(json.dumps(result, indent=2, default=str) if as_json else markdown)


def log(message: str) -> None:
    """Progress to stderr, so stdout stays the markdown report."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
