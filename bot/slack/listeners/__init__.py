"""Slack listeners, one module per surface; each exposes `register(app, services, settings)`."""

from __future__ import annotations

from typing import Any

from bot.services import Services
from bot.slack.listeners import actions, assistant, commands, events
from bot.slack.settings import SlackSettings


def register_all(app: Any, services: Services, settings: SlackSettings) -> None:
    events.register(app, services, settings)
    commands.register(app, services, settings)
    actions.register(app, services, settings)
    assistant.register(app, services, settings)
