"""`paperbot config show`: the effective settings, where each value comes from (the
environment, the `.env` file, or the default), with secrets masked; and where the `.env` and
the data dir were found (`options.locations()`, which `doctor` prints too)."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bot.cli import options, render

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

config_app = typer.Typer(
    help="Show paperbot's effective configuration.",
    no_args_is_help=True,
)
MASK = "********"


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")


@config_app.command("show")
def show(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every setting with its value and source (env, .env, default); secrets masked."""
    rows = settings_rows()
    where = options.locations()
    if as_json:
        typer.echo(json.dumps({**where, "settings": rows}, indent=2, default=str))
        return
    lines = [f"# .env: {where['env_file_text']}", f"# data dir: {where['data_dir_text']}"]
    width = min(60, max(len(f"{r['variable']}={r['value']}") for r in rows))
    for row in rows:
        setting = f"{row['variable']}={row['value']}"
        lines.append(f"{setting:<{width}}  # {row['source']}")
    for line in lines:
        typer.echo(render.plain(line))


def _classes() -> list[BaseSettings]:
    return [options.settings(), options.answer_settings(), options.slack_settings()]


def settings_rows() -> list[dict[str, Any]]:
    """One row per setting (variable, value, source, secret), sorted by variable."""
    from pydantic import AliasChoices, SecretStr

    from retrieval import env_file_path

    env_path = env_file_path()
    dotenv = options.dotenv_vars(env_path)
    environ = {k.upper(): v for k, v in os.environ.items()}
    rows: dict[str, dict[str, Any]] = {}
    for instance in _classes():
        for name, field in type(instance).model_fields.items():
            alias = field.validation_alias
            names = (
                [str(c) for c in alias.choices]
                if isinstance(alias, AliasChoices)
                else [f"PAPERBOT_{name.upper()}"]
            )
            value = getattr(instance, name)
            secret = isinstance(value, SecretStr)
            if name in ("data_dir",) and "PAPERBOT_DATA_DIR" not in environ | dotenv:
                source = "default (see the data dir above)"
            elif set_in := next((n for n in names if n in environ), None):
                source = "env" + ("" if set_in == names[0] else f" ({set_in})")
            elif set_in := next((n for n in names if n in dotenv), None):
                source = ".env" + ("" if set_in == names[0] else f" ({set_in})")
            else:
                source = "default"
            rows[names[0]] = {
                "variable": names[0],
                "value": _shown(value),
                "source": source,
                "secret": secret,
            }
    return [rows[k] for k in sorted(rows)]


def _shown(value: Any) -> str:
    from pydantic import SecretStr

    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else "(empty)"
    if value is None:
        return "(not set)"
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(v) for v in value) if value else "(none)"
    return str(value)
