"""`.env.example` documents every setting of every settings class, and nothing else.

The settings are split by owner (the corpus's `RetrievalSettings`, the answering layer's
`AnswerSettings`, the Slack app's `SlackSettings`) but read one environment and one `.env`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from answers.settings import AnswerSettings
from bot.slack.settings import SlackSettings
from retrieval import RetrievalSettings

ROOT = Path(__file__).resolve().parent.parent
CLASSES: tuple[type[BaseSettings], ...] = (RetrievalSettings, AnswerSettings, SlackSettings)
_ASSIGNMENT = re.compile(r"^#?\s*((?:PAPERBOT|SLACK)_[A-Z0-9_]+)=(.*)$")


def variable_names(cls: type[BaseSettings]) -> dict[str, str]:
    """field name -> the variable users set (the first alias, else PAPERBOT_<FIELD>)."""
    names = {}
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names[name] = str(alias.choices[0])
        else:
            names[name] = f"PAPERBOT_{name.upper()}"
    return names


def documented() -> dict[str, str]:
    """Every variable `.env.example` names (set or commented out) with its example value."""
    found = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if match := _ASSIGNMENT.match(line.strip()):
            found[match.group(1)] = match.group(2)
    return found


def test_every_setting_is_documented() -> None:
    known = documented()
    missing = [
        f"{cls.__name__}.{field} ({variable})"
        for cls in CLASSES
        for field, variable in variable_names(cls).items()
        if variable not in known
    ]
    assert missing == []


def test_every_documented_variable_is_a_setting() -> None:
    variables = {v for cls in CLASSES for v in variable_names(cls).values()}
    fallbacks = {
        str(choice)
        for cls in CLASSES
        for field in cls.model_fields.values()
        if isinstance(field.validation_alias, AliasChoices)
        for choice in field.validation_alias.choices
    }
    assert sorted(set(documented()) - variables - fallbacks) == []


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_the_documented_values_are_accepted(
    cls: type[BaseSettings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`.env.example` with every line uncommented loads without a validation error."""
    env = tmp_path / ".env"
    env.write_text(
        "\n".join(
            f"{name}={value}"
            for name, value in documented().items()
            if value.strip() and not value.strip().startswith("#")
        )
    )
    cls(_env_file=env)  # type: ignore[call-arg]


def test_what_a_user_sets_first_comes_first() -> None:
    """`.env.example` opens with the settings a new user sets (Slack, the LLM, feeds, the
    data dir); the knobs they rarely touch follow under their own banner."""
    text = (ROOT / ".env.example").read_text()
    first, _, rest = text.partition(
        "# ================================================================ rarely touched"
    )
    assert rest, "no 'rarely touched' banner"
    for variable in (
        "SLACK_BOT_TOKEN",
        "SLACK_APP_TOKEN",
        "SLACK_SIGNING_SECRET",
        "PAPERBOT_LLM_MODEL",
        "PAPERBOT_OPENAI_API_KEY",
        "PAPERBOT_FEEDS",
        "PAPERBOT_DATA_DIR",
    ):
        assert f"{variable}=" in first, variable
    assert "PAPERBOT_CHUNK_TOKENS=" in rest and "PAPERBOT_RRF_K=" in rest
