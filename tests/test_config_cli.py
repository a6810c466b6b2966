"""`paperbot config show`: effective settings with their sources, secrets masked, and where the
`.env` and the data dir are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli.main import app


def _show(*args: str) -> str:
    result = CliRunner().invoke(app, ["config", "show", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_sources_env_dotenv_default_and_masked_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "conf" / ".env"
    env_file.parent.mkdir()
    env_file.write_text("PAPERBOT_RETRIEVAL_K=7\nSLACK_BOT_TOKEN=xoxb-from-dotenv-123\n")
    monkeypatch.setenv("PAPERBOT_ENV_FILE", str(env_file))
    monkeypatch.setenv("PAPERBOT_LLM_API_KEY", "sk-live-secret-456")
    monkeypatch.setenv("PAPERBOT_DATA_DIR", str(tmp_path / "data"))
    out = _show()
    assert "sk-live-secret-456" not in out and "xoxb-from-dotenv-123" not in out
    lines = {line.split("=", 1)[0]: line for line in out.splitlines() if "=" in line}
    assert lines["PAPERBOT_LLM_API_KEY"].split("#")[-1].strip() == "env"
    assert "********" in lines["PAPERBOT_LLM_API_KEY"]
    assert lines["PAPERBOT_RETRIEVAL_K"].startswith("PAPERBOT_RETRIEVAL_K=7 ")
    assert lines["PAPERBOT_RETRIEVAL_K"].endswith("# .env")
    assert lines["SLACK_BOT_TOKEN"].endswith("# .env") and "********" in lines["SLACK_BOT_TOKEN"]
    assert lines["PAPERBOT_FUSION"].endswith("# default")
    assert f"# .env: {env_file} (PAPERBOT_ENV_FILE)" in out
    assert f"# data dir: {tmp_path / 'data'} (PAPERBOT_DATA_DIR or --data-dir)" in out


def test_json_output_and_a_relative_data_dir_in_the_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PAPERBOT_DATA_DIR=store\n")
    monkeypatch.chdir(tmp_path)  # ./.env is found
    data = json.loads(_show("--json"))
    assert data["env_file"] == str(env_file)
    assert data["data_dir"] == str(tmp_path / "store")  # relative to the .env file
    assert "PAPERBOT_DATA_DIR in" in data["data_dir_text"]
    by_name = {row["variable"]: row for row in data["settings"]}
    assert by_name["PAPERBOT_DATA_DIR"]["source"] == ".env"
    assert by_name["SLACK_SIGNING_SECRET"] == {
        "variable": "SLACK_SIGNING_SECRET",
        "value": "(not set)",
        "source": "default",
        "secret": False,
    }


def test_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"paperbot {version('paperbot')}"


def test_doctor_says_where_the_env_and_the_data_dir_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.cli.doctor import run_checks
    from bot.cli.options import answer_settings, settings, slack_settings

    env_file = tmp_path / "team.env"
    env_file.write_text(f"PAPERBOT_DATA_DIR={tmp_path / 'store'}\n")
    monkeypatch.setenv("PAPERBOT_ENV_FILE", str(env_file))
    checks = {c.name: c for c in run_checks(settings(), answer_settings(), slack_settings())}
    config = checks["config"]
    assert config.ok
    assert f".env: {env_file} (PAPERBOT_ENV_FILE)" in config.detail
    assert f"data dir: {tmp_path / 'store'} (PAPERBOT_DATA_DIR in {env_file})" in config.detail
