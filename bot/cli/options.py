"""What every CLI command shares: settings loaded with one-line errors, the composed
services, date options and the two consoles. Commands import this module, never each other."""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

    from answers.settings import AnswerSettings
    from bot.services import Services
    from bot.slack.settings import SlackSettings
    from retrieval import Corpus, DateField, RetrievalSettings

S = TypeVar("S", bound="BaseSettings")


def load(cls: type[S], what: str) -> S:
    """Settings from the environment and `.env`; a bad value is a one-line ConfigError."""
    from pydantic import ValidationError

    from retrieval import ConfigError

    try:
        return cls()
    except ValidationError as exc:
        problems = "; ".join(f"{_variable(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"Invalid {what}: {problems}") from None


def _variable(loc: tuple[Any, ...]) -> str:
    name = "_".join(str(p) for p in loc).upper()
    return name if name.startswith(("PAPERBOT_", "SLACK_")) else f"PAPERBOT_{name}"


def settings() -> RetrievalSettings:
    from retrieval import RetrievalSettings

    return load(RetrievalSettings, "settings")


def answer_settings() -> AnswerSettings:
    from answers.settings import AnswerSettings

    return load(AnswerSettings, "settings")


def slack_settings() -> SlackSettings:
    from bot.slack.settings import SlackSettings

    return load(SlackSettings, "Slack settings")


def corpus() -> Corpus:
    from retrieval import Corpus

    return Corpus(settings())


def services(corpus_settings: RetrievalSettings | None = None) -> Services:
    """The same services `paperbot serve` runs (bot/services.py)."""
    from bot.services import Services

    return Services.build(corpus_settings or settings(), answer_settings())


def require_papers(corpus: Corpus) -> None:
    """Commands that need papers fail with the data dir's path instead of answering from an
    empty index (e.g. when run from another directory than usual)."""
    from retrieval import PaperbotError

    if not corpus.count_papers():
        raise PaperbotError(
            f"The index at {corpus.settings.data_dir} is empty. Ingest papers first "
            "(`paperbot ingest …`), or point paperbot at your data dir with --data-dir, "
            "PAPERBOT_DATA_DIR or PAPERBOT_HOME (`paperbot doctor` shows which one is used)."
        )


def out() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def err() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def parse_date(value: str | None, flag: str, today: date | None = None) -> date | None:
    """A day option: YYYY-MM-DD, or relative to today: `today`, `yesterday`, `7d` (7 days
    ago), `2w` (2 weeks ago)."""
    if value is None:
        return None
    text = value.strip().lower()
    today = today or date.today()
    if text in ("today", "yesterday"):
        return today - timedelta(days=0 if text == "today" else 1)
    if len(text) > 1 and text[:-1].isdigit() and text[-1] in "dw":
        return today - timedelta(days=int(text[:-1]) * (7 if text[-1] == "w" else 1))
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date (use YYYY-MM-DD, today, yesterday, 7d or 2w)",
            param_hint=flag,
        ) from None


def date_field(value: str) -> DateField:
    """--by's value, checked: 'listed' or 'published'."""
    from retrieval import DATE_FIELDS

    for field in DATE_FIELDS:
        if value == field:
            return field
    raise typer.BadParameter(f"choose one of {', '.join(DATE_FIELDS)}", param_hint="--by")


def error_line(exc: BaseException) -> str:
    """The one line the CLI prints for an error, credentials redacted (an error body may echo
    a key; the configured secrets' values are blanked too). Settings that cannot be loaded
    contribute no secrets: the patterns still apply."""
    from retrieval import redact, secret_values

    secrets: list[str] = []
    for make in (settings, answer_settings, slack_settings):
        try:
            secrets += secret_values(make())
        except Exception:  # a broken setting is reported by the command that needs it
            continue
    return redact(str(exc), secrets)


def locations() -> dict[str, Any]:
    """Where the `.env` and the data dir are, and why (for `config show` and `doctor`)."""
    from retrieval import default_data_dir, env_file_path

    env_path = env_file_path()
    if os.environ.get("PAPERBOT_ENV_FILE"):
        env_text = f"{env_path} (PAPERBOT_ENV_FILE)"
    elif env_path is not None:
        env_text = f"{env_path}"
    else:
        env_text = "none found (looked for ./.env, $PAPERBOT_HOME/.env, ~/.config/paperbot/.env)"
    data_dir = settings().data_dir
    if "PAPERBOT_DATA_DIR" in os.environ:
        why = "PAPERBOT_DATA_DIR or --data-dir"
    elif "PAPERBOT_DATA_DIR" in dotenv_vars(env_path):
        why = f"PAPERBOT_DATA_DIR in {env_path}"
    elif os.environ.get("PAPERBOT_HOME"):
        why = "$PAPERBOT_HOME/data"
    elif Path(data_dir) == default_data_dir() and Path("paperbot-data").is_dir():
        why = "./paperbot-data exists"
    else:
        why = "the default, $XDG_DATA_HOME/paperbot"
    return {
        "env_file": str(env_path) if env_path else None,
        "env_file_text": env_text,
        "data_dir": str(data_dir),
        "data_dir_text": f"{data_dir} ({why})",
    }


def dotenv_vars(path: Path | None) -> dict[str, str]:
    """The variables a `.env` file sets (names upper-cased), or none without a file."""
    if path is None or not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k.upper(): v or "" for k, v in dotenv_values(path).items()}
