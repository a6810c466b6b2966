"""The README tells the truth: its demo block is what `make demo` prints (scripts/demo.py
re-runs the demo and compares, timings aside), `make demo` installs no dev tools, and every
environment value the README shows is accepted by the settings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from tests.test_settings_docs import CLASSES, variable_names

ROOT = Path(__file__).resolve().parent.parent
# PAPERBOT_X=value in prose or code; a value may continue on the next line after "=\n"
_SETTING = re.compile(r"\b((?:PAPERBOT|SLACK)_[A-Z0-9_]+)=\s*([^\s`'\"|)]+)")
_NOT_SETTINGS = {"PAPERBOT_HOME", "PAPERBOT_ENV_FILE"}  # where settings are looked up


@pytest.mark.integration
def test_the_readme_shows_what_make_demo_prints(tiktoken_dir: Path) -> None:
    env = {**os.environ, "PAPERBOT_TIKTOKEN_CACHE_DIR": str(tiktoken_dir)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--check-readme"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_make_demo_installs_no_dev_tools() -> None:
    recipe = subprocess.run(
        ["make", "-n", "demo", "VENV=/nonexistent/venv"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installs = [line for line in recipe.splitlines() if "pip install" in line and " -e " in line]
    assert installs, recipe
    assert all("[dev]" not in line for line in installs), installs
    assert "scripts/demo.py" in recipe


def _class_of(variable: str) -> type[BaseSettings] | None:
    for cls in CLASSES:
        if variable in variable_names(cls).values():
            return cls
        for field in cls.model_fields.values():
            alias = field.validation_alias
            if alias is not None and variable in getattr(alias, "choices", ()):
                return cls
    return None


def readme_settings() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return sorted({(m.group(1), m.group(2).rstrip(".,")) for m in _SETTING.finditer(text)})


def test_the_readme_documents_settings() -> None:
    found = dict(readme_settings())
    assert {"PAPERBOT_FUSION", "PAPERBOT_LOG_FORMAT", "PAPERBOT_FEEDS"} <= set(found)


@pytest.mark.parametrize(("variable", "value"), readme_settings())
def test_every_value_the_readme_shows_is_accepted(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if variable in _NOT_SETTINGS:
        return
    cls = _class_of(variable)
    assert cls is not None, f"README.md documents {variable}, which no settings class reads"
    monkeypatch.setenv(variable, value)
    cls(_env_file=None)  # type: ignore[call-arg]  # raises ValidationError for a bad value
