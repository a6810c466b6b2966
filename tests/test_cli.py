"""The `paperbot` CLI end to end, offline, with the real local embedding model."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli.main import app
from tests.support.cli import cli_env
from tests.support.cli import run_cli as _run

pytestmark = pytest.mark.integration

__all__ = ["cli_env"]


@pytest.fixture(scope="module")
def ingested_template(tmp_path_factory: pytest.TempPathFactory, tiktoken_dir: Path) -> Path:
    """The sample ingested once per module by a real `paperbot ingest` (its own process, so
    every file is closed); each test gets a copy."""
    data = tmp_path_factory.mktemp("cli-template") / "data"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PAPERBOT_")},
        "PAPERBOT_DATA_DIR": str(data),
        "PAPERBOT_TIKTOKEN_CACHE_DIR": str(tiktoken_dir),
    }
    sample = Path(__file__).resolve().parent.parent / "data" / "sample" / "daily_papers_page.txt"
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "ingest", str(sample), "--date", "2025-05-16"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return data


@pytest.fixture
def ingested(cli_env: dict[str, str], sample_page: Path, ingested_template: Path) -> Path:
    shutil.copytree(ingested_template, cli_env["PAPERBOT_DATA_DIR"])
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
    code, out = _run("search", "Gaussian", "--since", "last tuesday")
    assert code != 0 and "YYYY-MM-DD" in out and "7d" in out
    code, out = _run("search", "Gaussian", "--since", "7d", "--json")  # relative days work
    assert code == 0 and json.loads(out) == []  # the sample papers are from 2025


def test_relative_days() -> None:
    from datetime import date

    from bot.cli.options import parse_date

    today = date(2026, 12, 1)
    assert parse_date("today", "--since", today) == today
    assert parse_date("Yesterday", "--since", today) == date(2026, 11, 30)
    assert parse_date("7d", "--since", today) == date(2026, 11, 24)
    assert parse_date("2w", "--since", today) == date(2026, 11, 17)
    assert parse_date("2025-05-16", "--since", today) == date(2025, 5, 16)


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


def test_long_commands_show_progress_on_stderr(ingested: Path, dev_questions: Path) -> None:
    """digest, eval and ingest say what they are doing (stderr, so --json stays clean)."""
    runner = CliRunner()
    digest = runner.invoke(app, ["digest", "--date", "2025-05-16", "--json"])
    assert digest.exit_code == 0, digest.output
    json.loads(digest.stdout)
    assert "writing the overview" in digest.stderr  # the last of the digest's steps
    evaluated = runner.invoke(app, ["eval", "retrieval", str(dev_questions), "--json"])
    assert evaluated.exit_code == 0
    done = re.search(r"(\d+)/(\d+)", evaluated.stderr)
    assert done and done.group(1) == done.group(2) and int(done.group(1)) >= 3 * 18
    report = runner.invoke(app, ["ingest", str(ingested), "--date", "2025-05-16", "--json"])
    assert report.exit_code == 0
    assert json.loads(report.stdout)["papers"]["unchanged"] == 30
    assert "reading" in report.stderr


def test_ingest_json_reports_counts_and_problems(cli_env: dict[str, str], tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    good = {
        "title": "Sparse attention for long documents",
        "abstract": "We propose a sparse attention scheme that reads long documents in linear "
        "time and matches dense attention on three summarization benchmarks.",
    }
    feed.write_text(json.dumps(good) + "\n" + '{"title": "no abstract"}\n')
    code, out = _run("ingest", str(feed), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["papers"]["new"] == 1 and data["papers"]["failed"] == 1
    assert data["failed"][0]["record"].startswith("line 2") and data["chunks_embedded"] >= 1
    assert data["failed_feeds"] == []
    code, out = _run("ingest", str(tmp_path / "missing.jsonl"), "--json")
    assert code == 1 and json.loads(out)["failed_feeds"]


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
