"""The `/papers` slash command: instant subcommands answer in the ack; the others (ask,
search, summary, digest) become a job in the answer queue, written before the ack, which says
"Working on it" — the queue's worker replies through the command's response_url."""

from __future__ import annotations

import uuid
from typing import Any

from bot.services import Services
from bot.slack import answer_queue, blocks
from bot.slack.papers_command import run_command
from bot.slack.settings import SlackSettings
from bot.slack.slash import parse

_INSTANT = ("help", "subscribe", "unsubscribe", "subscriptions")


def register(app: Any, services: Services, settings: SlackSettings) -> None:
    queue = answer_queue.for_app(app, services, settings)

    def on_command(ack: Any, command: dict[str, Any]) -> None:
        name = parse(command.get("text", "")).name
        if name in _INSTANT:  # fast: the ack carries the reply itself
            text, blks = run_command(
                services,
                parse(command.get("text", "")),
                user_id=command["user_id"],
                channel_id=command["channel_id"],
                command=settings.slash_command,
            )
            ack(text=text, blocks=blks, response_type="ephemeral")
            return
        queue.submit(
            f"cmd:{command.get('trigger_id') or uuid.uuid4().hex}",
            kind="command",
            channel=command["channel_id"],
            user_id=command["user_id"],
            question=command.get("text", ""),
            response_url=command.get("response_url"),
        )
        ack(text=f"⏳ Working on `{blocks.escape(name)}`…", response_type="ephemeral")

    app.command(settings.slash_command)(on_command)
