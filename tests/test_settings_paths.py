"""Where paperbot finds its `.env` and its data dir does not depend on the working directory,
and a command that needs papers never answers silently from a new, empty data dir."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli.main import app
from retrieval import PaperbotError, RetrievalSettings
from retrieval.settings import default_data_dir, env_file_path


def test_env_file_lookup_order(tmp_path: Path) -> None:
    cwd, home, xdg = tmp_path / "cwd", tmp_path / "home", tmp_path / "xdg"
    for folder in (cwd, home, xdg / "paperbot"):
        folder.mkdir(parents=True)
    environ = {"PAPERBOT_HOME": str(home), "XDG_CONFIG_HOME": str(xdg)}
    assert env_file_path(environ, cwd) is None
    (xdg / "paperbot" / ".env").write_text("")
    assert env_file_path(environ, cwd) == xdg / "paperbot" / ".env"
    (home / ".env").write_text("")
    assert env_file_path(environ, cwd) == home / ".env"
    (cwd / ".env").write_text("")
    assert env_file_path(environ, cwd) == cwd / ".env"
    explicit = {**environ, "PAPERBOT_ENV_FILE": str(tmp_path / "elsewhere.env")}
    assert env_file_path(explicit, cwd) == tmp_path / "elsewhere.env"


def test_data_dir_defaults(tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    xdg = {"XDG_DATA_HOME": str(tmp_path / "share")}
    assert default_data_dir(xdg, cwd) == tmp_path / "share" / "paperbot"
    (cwd / "paperbot-data").mkdir()  # the old default keeps working where it exists
    assert default_data_dir(xdg, cwd) == cwd / "paperbot-data"
    home = {**xdg, "PAPERBOT_HOME": str(tmp_path / "home")}
    assert default_data_dir(home, cwd) == tmp_path / "home" / "data"


def test_a_relative_data_dir_in_a_env_file_is_relative_to_that_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / ".env").write_text("PAPERBOT_DATA_DIR=team-index\nPAPERBOT_CHUNK_TOKENS=200\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("PAPERBOT_HOME", str(config))
    settings = RetrievalSettings()
    assert settings.data_dir == config / "team-index"
    assert settings.chunk_tokens == 200
    # an explicit variable wins, relative to where the command runs
    monkeypatch.setenv("PAPERBOT_DATA_DIR", "local")
    assert RetrievalSettings().data_dir == Path("local")


def test_commands_that_need_papers_refuse_an_empty_data_dir(tmp_path: Path) -> None:
    runner = CliRunner()
    empty = tmp_path / "new-dir"
    for args in (["ask", "What is GVGEN?"], ["digest"], ["digest", "--post", "C123"]):
        result = runner.invoke(app, ["--data-dir", str(empty), *args])
        assert isinstance(result.exception, PaperbotError), (args, result.output)
        assert f"The index at {empty} is empty" in str(result.exception)
    # the installed command prints it as one line, exit 1, no traceback
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "-q", "--data-dir", str(empty), "digest"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "is empty" in done.stderr and "Traceback" not in done.stderr


def test_data_dir_option_is_used_by_every_command(tmp_path: Path, sample_page: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "chosen"
    ingest = runner.invoke(
        app, ["--data-dir", str(data), "ingest", str(sample_page), "--date", "2025-05-16"]
    )
    assert ingest.exit_code == 0, ingest.output
    assert (data / "state.sqlite3").exists()
    stats = runner.invoke(app, ["--data-dir", str(data), "stats", "--json"])
    assert stats.exit_code == 0 and '"papers": 30' in stats.output


def test_serve_refuses_an_empty_index_that_no_feed_will_fill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.slack_api import FakeSlackAPI

    empty = tmp_path / "new-dir"
    with FakeSlackAPI() as api:
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1-test")
        monkeypatch.setenv("SLACK_SIGNING_SECRET", "secret")
        monkeypatch.setenv("PAPERBOT_SLACK_API_URL", api.base_url)
        result = CliRunner().invoke(app, ["--data-dir", str(empty), "serve"])
    assert isinstance(result.exception, PaperbotError), result.output
    assert f"The index at {empty} is empty" in str(result.exception)
