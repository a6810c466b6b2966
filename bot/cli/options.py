"""What every CLI command shares: settings loaded with one-line errors, the composed
services, date options and the two consoles. Commands import this module, never each other."""

from __future__ import annotations

from datetime import date
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


def parse_date(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date (use YYYY-MM-DD)", param_hint=flag
        ) from None


def date_field(value: str) -> DateField:
    """--by's value, checked: 'listed' or 'published'."""
    from retrieval import DATE_FIELDS

    for field in DATE_FIELDS:
        if value == field:
            return field
    raise typer.BadParameter(f"choose one of {', '.join(DATE_FIELDS)}", param_hint="--by")
