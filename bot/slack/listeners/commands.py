"""The `/papers` slash command: ack at once, answer ephemerally from a lazy listener."""

from __future__ import annotations

from typing import Any

from bot.services import Services
from bot.slack import blocks
from bot.slack.papers_command import run_command
from bot.slack.settings import SlackSettings
from bot.slack.slash import parse

_INSTANT = ("help", "subscribe", "unsubscribe", "subscriptions")


def register(app: Any, services: Services, settings: SlackSettings) -> None:
    def reply(command: dict[str, Any]) -> blocks.Message:
        return run_command(
            services,
            parse(command.get("text", "")),
            user_id=command["user_id"],
            channel_id=command["channel_id"],
            command=settings.slash_command,
        )

    def ack_command(ack: Any, command: dict[str, Any]) -> None:
        name = parse(command.get("text", "")).name
        if name in _INSTANT:  # fast: the ack carries the reply itself
            text, blks = reply(command)
            ack(text=text, blocks=blks, response_type="ephemeral")
        else:
            ack(text=f"⏳ Working on `{blocks.escape(name)}`…", response_type="ephemeral")

    def run_slow(command: dict[str, Any], respond: Any) -> None:
        if parse(command.get("text", "")).name in _INSTANT:
            return  # already answered in the ack
        text, blks = reply(command)
        respond(text=text, blocks=blks, response_type="ephemeral", replace_original=True)

    app.command(settings.slash_command)(ack=ack_command, lazy=[run_slow])
