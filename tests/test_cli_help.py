"""Every command's --help ends with examples (bot/cli/examples.py), and every example is a
valid command line: its options and arguments parse."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from bot.cli.examples import EXAMPLES, command_paths
from bot.cli.main import app


def _command(path: str) -> Any:
    """The Click command of a path (typer vendors Click: duck-typed)."""
    command: Any = typer.main.get_command(app)
    for part in path.split():
        command = command.commands[part]
    return command


def test_every_command_has_examples() -> None:
    assert sorted(set(command_paths(app)) - set(EXAMPLES)) == []
    assert sorted(set(EXAMPLES) - set(command_paths(app))) == []  # no stale entries


@pytest.mark.parametrize(
    "example", [e for examples in EXAMPLES.values() for e in examples], ids=lambda e: e[:60]
)
def test_every_example_parses(example: str) -> None:
    words = shlex.split(example)
    assert words[0] == "paperbot"
    while words[1].startswith("-"):  # global options (--debug, --data-dir DIR) come first
        del words[1 : 3 if words[1] == "--data-dir" else 2]
    path = next(p for p in sorted(EXAMPLES, key=len, reverse=True) if example in EXAMPLES[p])
    depth = len(path.split())
    assert words[1 : 1 + depth] == path.split(), example
    command = _command(path)
    with command.make_context(path, words[1 + depth :]) as ctx:  # raises on a bad option
        assert ctx.params is not None


def test_help_shows_the_examples() -> None:
    result = CliRunner().invoke(app, ["ingest", "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    assert "Examples:" in result.output and "paperbot ingest --hf-date yesterday" in result.output
