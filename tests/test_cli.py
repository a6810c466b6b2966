"""The `paperbot` CLI end to end, offline, with the real local embedding model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli.main import app

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_env(tmp_path: Path, tiktoken_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "PAPERBOT_DATA_DIR": str(tmp_path / "data"),
        "PAPERBOT_TIKTOKEN_CACHE_DIR": str(tiktoken_dir),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def _run(*args: str) -> tuple[int, str]:
    """Exit code and stdout (logs and progress go to stderr, so --json output stays parseable)."""
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout if "--json" in args else result.output


@pytest.fixture
def ingested(cli_env: dict[str, str], sample_page: Path) -> Path:
    code, out = _run("ingest", str(sample_page), "--date", "2025-05-16")
    assert code == 0, out
    return sample_page


def test_ingest_prints_a_summary_and_is_idempotent(ingested: Path) -> None:
    code, out = _run("ingest", str(ingested), "--date", "2025-05-16")
    assert code == 0
    assert "unchanged" in out and "30" in out
    assert "0 chunks embedded" in out


def test_search_finds_the_right_paper(ingested: Path) -> None:
    code, out = _run(
        "search", "Candidate Pool Strategy pruning densifying Gaussians", "-k", "3", "--json"
    )
    assert code == 0
    hits = json.loads(out)
    assert hits[0]["paper"]["title"].startswith("GVGEN")
    assert len(hits) == 3 and hits[0]["passage"]


def test_search_with_since_filter_and_bad_date(ingested: Path) -> None:
    code, out = _run("search", "Gaussian", "--since", "2026-01-01", "--json")
    assert code == 0 and json.loads(out) == []
    code, out = _run("search", "Gaussian", "--since", "yesterday")
    assert code != 0 and "YYYY-MM-DD" in out


def test_papers_list_show_and_stats(ingested: Path) -> None:
    code, out = _run("papers", "list", "--json", "--limit", "5")
    papers = json.loads(out)
    assert code == 0 and len(papers) == 5 and papers[0]["published"] == "2025-05-16"
    code, out = _run("papers", "show", papers[0]["paper_id"])
    assert code == 0 and papers[0]["title"][:20] in out
    code, out = _run("stats", "--json")
    stats = json.loads(out)
    assert stats["papers"] == 30 and stats["in_step"] and stats["vectors"] == stats["chunks"]


def test_unknown_paper_and_missing_file_give_clear_errors(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**os.environ, **cli_env}
    shown = subprocess.run(
        [sys.executable, "-m", "bot.cli", "papers", "show", "9999.99999"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert (
        shown.returncode == 1
        and "No paper '9999.99999'" in shown.stderr
        and "Traceback" not in shown.stderr
    )
    missing = subprocess.run(
        [sys.executable, "-m", "bot.cli", "ingest", str(tmp_path / "nope.jsonl")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert (
        missing.returncode == 1
        and "nope.jsonl" in missing.stderr
        and "Traceback" not in missing.stderr
    )


def test_eval_retrieval_prints_three_modes(ingested: Path, dev_questions: Path) -> None:
    code, out = _run("eval", "retrieval", str(dev_questions), "--json")
    assert code == 0
    rows = {(r["mode"], r["kind"]): r for r in json.loads(out)}
    assert {m for m, _ in rows} == {"lexical", "dense", "hybrid"}
    assert rows[("hybrid", "all")]["mrr"] >= rows[("lexical", "all")]["mrr"]
    assert rows[("hybrid", "all")]["mrr"] >= 0.9


def test_help_is_fast_and_lists_commands() -> None:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--help"], capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    assert done.returncode == 0
    for command in ("ingest", "search", "papers", "stats", "eval"):
        assert command in done.stdout
    # not a timing assertion on the machine: the heavy libraries must simply not be imported
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, bot.cli.main; heavy = ('chromadb', 'onnxruntime', 'langchain_core', 'scipy'); "
            "print(sorted(m for m in heavy if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "[]", probe.stdout
    assert elapsed < 30
