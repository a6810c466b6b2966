"""@mentions, direct messages and thread follow-ups -> an answer in the thread.

Slack may deliver one message twice (app_mention and message.im, or a retry): the
(channel, ts) key is claimed in the bot's store and only the first delivery is answered.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.services import Services
from bot.slack.replies import (
    answer_in_thread,
    bot_in_thread,
    strip_mentions,
    thread_history,
    thread_messages,
)
from bot.slack.settings import SlackSettings

log = logging.getLogger(__name__)
_IGNORED_SUBTYPES = {
    "message_changed",
    "message_deleted",
    "bot_message",
    "channel_join",
    "thread_broadcast",
}


def register(app: Any, services: Services, settings: SlackSettings) -> None:
    def ack_event(ack: Any) -> None:
        ack()

    def on_mention(event: dict[str, Any], client: Any, context: Any) -> None:
        if _should_answer(services, settings, event, context):
            thread = _thread(client, event)
            _answer(services, settings, client, event, context, thread)

    def on_message(event: dict[str, Any], client: Any, context: Any) -> None:
        if event.get("subtype") in _IGNORED_SUBTYPES or _mentions_us(event, context):
            return
        thread = _thread(client, event)
        if event.get("channel_type") != "im" and not bot_in_thread(
            thread, context.get("bot_user_id")
        ):
            return  # in channels, only replies in threads paperbot took part in
        if _should_answer(services, settings, event, context):
            _answer(services, settings, client, event, context, thread)

    app.event("app_mention")(ack=ack_event, lazy=[on_mention])
    app.event("message")(ack=ack_event, lazy=[on_message])


def _mentions_us(event: dict[str, Any], context: Any) -> bool:
    """A channel message that @mentions paperbot: the app_mention event handles it."""
    bot_user = context.get("bot_user_id")
    return (
        event.get("channel_type") != "im"
        and bool(bot_user)
        and f"<@{bot_user}>" in event.get("text", "")
    )


def _thread(client: Any, event: dict[str, Any]) -> list[dict[str, Any]]:
    """The thread a message is in (fetched once, for both checks and history); none if top-level."""
    thread_ts = event.get("thread_ts")
    return thread_messages(client, event["channel"], str(thread_ts)) if thread_ts else []


def _should_answer(
    services: Services, settings: SlackSettings, event: dict[str, Any], context: Any
) -> bool:
    if event.get("bot_id") or event.get("user") in (None, context.get("bot_user_id")):
        return False  # never answer ourselves or other bots
    channel = event.get("channel", "")
    if (
        settings.allowed_channels
        and event.get("channel_type") != "im"
        and channel not in settings.allowed_channels
    ):
        log.info("ignoring a message in %s: not in PAPERBOT_ALLOWED_CHANNELS", channel)
        return False
    return services.store.first_time(f"msg:{channel}:{event.get('ts')}")


def _answer(
    services: Services,
    settings: SlackSettings,
    client: Any,
    event: dict[str, Any],
    context: Any,
    thread: list[dict[str, Any]],
) -> None:
    channel, ts = event["channel"], event["ts"]
    thread_ts = event.get("thread_ts") or ts
    history = thread_history(thread, context.get("bot_user_id"), before_ts=ts)
    answer_in_thread(
        services,
        client,
        channel=channel,
        thread_ts=thread_ts,
        question=strip_mentions(event.get("text", "")),
        history=history,
        user=event.get("user"),
        min_interval=settings.stream_update_seconds,
    )
