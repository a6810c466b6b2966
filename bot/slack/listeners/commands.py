"""The `/papers` slash command: instant subcommands answer in the ack; the others (ask,
search, summary, digest, and `[un]subscribe here`, which may ask Slack about the channel or
the user)
become a job in the answer queue, written before the ack, which says "Working on it" — the
queue's worker replies through the command's response_url.

In a channel outside PAPERBOT_ALLOWED_CHANNELS every subcommand gets a one-line refusal,
before anything is stored or queued (bot/slack/permissions.py)."""

from __future__ import annotations

import uuid
from typing import Any

from bot.services import Services
from bot.slack import answer_queue, blocks, permissions, user_text
from bot.slack.papers_command import run_command
from bot.slack.settings import SlackSettings
from bot.slack.slash import parse

_INSTANT = ("help", "subscribe", "unsubscribe", "subscriptions")


def register(app: Any, services: Services, settings: SlackSettings) -> None:
    queue = answer_queue.for_app(app, services, settings)

    def on_command(ack: Any, command: dict[str, Any]) -> None:
        channel = command["channel_id"]
        if not permissions.channel_allowed(settings, channel):
            text, blks = blocks.error_message(permissions.not_allowed_text(settings))
            ack(text=text, blocks=blks, response_type="ephemeral")
            return
        typed = user_text.clean(command.get("text", ""))
        cmd = parse(typed)
        if cmd.name in _INSTANT and not cmd.here:  # `here`: a Slack call (membership, admin)
            text, blks = run_command(  # fast: the ack carries the reply itself
                services,
                cmd,
                user_id=command["user_id"],
                channel_id=channel,
                command=settings.slash_command,
                settings=settings,
            )
            ack(text=text, blocks=blks, response_type="ephemeral")
            return
        queue.submit(
            f"cmd:{command.get('trigger_id') or uuid.uuid4().hex}",
            kind="command",
            channel=channel,
            user_id=command["user_id"],
            question=typed,
            response_url=command.get("response_url"),
        )
        ack(text=f"⏳ Working on `{blocks.escape(cmd.name)}`…", response_type="ephemeral")

    app.command(settings.slash_command)(on_command)
