"""The `paperbot` command line: the typer app, logging, and the error boundary.

Commands live by area in corpus_commands, answer_commands, bot_commands and feed_commands;
each registers itself here. Heavy libraries are imported inside commands so `--help` is fast.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from bot.cli import (
    answer_commands,
    bot_commands,
    config_commands,
    corpus_commands,
    examples,
    feed_commands,
    jsonout,
    options,
    render,
    state_commands,
)

app = typer.Typer(
    help="paperbot: keep a research team on top of new papers (ingest, search, answers, digests).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_state: dict[str, Any] = {"debug": False}


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"paperbot {version('paperbot')}")
        except PackageNotFoundError:  # running from a checkout that was never installed
            typer.echo("paperbot (not installed; run `make venv`)")
        raise typer.Exit()


@app.callback()
def _main(
    _show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="The data dir (default: PAPERBOT_DATA_DIR, $PAPERBOT_HOME/data, "
            "./paperbot-data if it exists, else ~/.local/share/paperbot).",
        ),
    ] = None,
) -> None:
    _state["debug"] = debug
    if data_dir is not None:  # the settings of every command read it from here
        os.environ["PAPERBOT_DATA_DIR"] = str(data_dir.expanduser().resolve())
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    _configure_logging(level)


def _configure_logging(level: int) -> None:
    handler: logging.Handler
    if _log_format() == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_JsonFormatter(with_traceback=_state["debug"]))
    else:
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(
            console=Console(stderr=True),
            show_path=False,
            rich_tracebacks=_state["debug"],
            markup=False,
        )
        handler.setFormatter(_TerminalFormatter("%(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Library chatter (HTTP requests, telemetry) only in debug mode.
    for noisy in ("httpx", "chromadb", "urllib3", "httpcore", "openai", "posthog", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if _state["debug"] else logging.WARNING)


def _log_format() -> str:
    """PAPERBOT_LOG_FORMAT (SlackSettings.log_format) from the environment or the .env;
    settings errors are reported by the command that needs the settings, not here."""
    try:
        return options.slack_settings().log_format
    except Exception:  # a broken .env must not break logging setup
        return os.environ.get("PAPERBOT_LOG_FORMAT", "text").strip().lower()


class _TerminalFormatter(logging.Formatter):
    """Log lines for a terminal: control characters from input (a feed's ESC sequences) are
    shown escaped, never obeyed."""

    def format(self, record: logging.LogRecord) -> str:
        return render.plain(super().format(record))


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and
    exc_info (the traceback) only with --debug; otherwise the exception's one line."""

    def __init__(self, with_traceback: bool) -> None:
        super().__init__()
        self.with_traceback = with_traceback

    def format(self, record: logging.LogRecord) -> str:
        import json
        from datetime import UTC, datetime

        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[1] is not None:
            if self.with_traceback:
                out["exc_info"] = self.formatException(record.exc_info)
            else:
                out["error"] = str(record.exc_info[1]).strip().split("\n")[0]
        return json.dumps(out, ensure_ascii=False, default=str)


def main() -> None:
    """Console-script entry point: project errors are printed without a traceback."""
    try:
        app()
    except Exception as exc:  # the last line of defence; PaperbotError is the usual case
        from retrieval import PaperbotError

        if _state["debug"] or not isinstance(exc, PaperbotError | ValueError):
            raise
        # soft_wrap: one line however long, for the terminal to wrap and for grep to find
        line = options.error_line(exc)  # credentials redacted
        options.err().print(f"[bold red]Error:[/] {render.safe(line)}", soft_wrap=True)
        sys.exit(1)


def _json_errors(typer_app: typer.Typer) -> None:
    """Every command with a --json option answers an error in JSON too (jsonout.json_errors),
    the commands of sub-apps (`papers list`, `feeds list`, `eval …`) included."""
    for command in typer_app.registered_commands:
        if command.callback is not None:
            command.callback = jsonout.json_errors(command.callback, lambda: _state["debug"])
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _json_errors(group.typer_instance)


for _module in (
    corpus_commands,
    answer_commands,
    bot_commands,
    feed_commands,
    state_commands,
    config_commands,
):
    _module.register(app)
_json_errors(app)
examples.attach(app)

if __name__ == "__main__":
    main()
