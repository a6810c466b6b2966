"""The `paperbot` CLI in-process for tests: a data dir in the environment, and a runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner


@pytest.fixture
def cli_env(tmp_path: Path, tiktoken_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """PAPERBOT_DATA_DIR (a fresh tmp dir) and the session's tiktoken cache, set for the test."""
    env = {
        "PAPERBOT_DATA_DIR": str(tmp_path / "data"),
        "PAPERBOT_TIKTOKEN_CACHE_DIR": str(tiktoken_dir),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def run_cli(*args: str) -> tuple[int, str]:
    """Exit code and stdout (logs and progress go to stderr, so --json output stays parseable)."""
    from bot.cli.main import app

    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout if "--json" in args else result.output
