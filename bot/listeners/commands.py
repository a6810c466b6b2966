"""The `/papers` slash command: ack at once, answer ephemerally from a lazy listener."""

from __future__ import annotations

from typing import Any

from bot import blocks
from bot.handlers import run_command
from bot.services import Services
from bot.settings import SlackSettings
from bot.slash import parse

_INSTANT = ("help", "subscribe", "unsubscribe", "subscriptions")


def register(app: Any, services: Services, settings: SlackSettings) -> None:
    def ack_command(ack: Any, command: dict[str, Any]) -> None:
        cmd = parse(command.get("text", ""))
        if cmd.name in _INSTANT:  # fast: the ack carries the reply itself
            text, blks = run_command(
                services,
                cmd,
                user_id=command["user_id"],
                channel_id=command["channel_id"],
                command=settings.slash_command,
            )
            ack(text=text, blocks=blks, response_type="ephemeral")
        else:
            ack(text=f"⏳ Working on `{blocks.escape(cmd.name)}`…", response_type="ephemeral")

    def run_slow(command: dict[str, Any], respond: Any) -> None:
        cmd = parse(command.get("text", ""))
        if cmd.name in _INSTANT:
            return
        text, blks = run_command(
            services,
            cmd,
            user_id=command["user_id"],
            channel_id=command["channel_id"],
            command=settings.slash_command,
        )
        respond(text=text, blocks=blks, response_type="ephemeral", replace_original=True)

    app.command(settings.slash_command)(ack=ack_command, lazy=[run_slow])
