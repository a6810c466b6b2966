"""@mentions, direct messages and thread follow-ups -> a job in the answer queue.

Bots, and channels outside PAPERBOT_ALLOWED_CHANNELS, are skipped here, before any Slack
call. The ack path only writes the job (bot/slack/answer_queue.py answers it): written before
Slack gets its ack, an accepted question survives a crash or restart. Slack may deliver one
message twice (app_mention and message.im, or a retry): the job's (channel, ts) key is
unique, so only the first delivery becomes a job.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.services import Services
from bot.slack import answer_queue, permissions, user_text
from bot.slack.replies import strip_mentions
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
    queue = answer_queue.for_app(app, services, settings)

    def on_mention(ack: Any, event: dict[str, Any], context: Any) -> None:
        if _should_answer(settings, event, context):
            _enqueue(queue, event, context, "mention")
        ack()

    def on_message(ack: Any, event: dict[str, Any], context: Any) -> None:
        if not (event.get("subtype") in _IGNORED_SUBTYPES or _mentions_us(event, context)):
            im = event.get("channel_type") == "im"
            # in channels, only replies in threads (the worker checks paperbot took part)
            if (im or event.get("thread_ts")) and _should_answer(settings, event, context):
                _enqueue(queue, event, context, "im" if im else "followup")
        ack()

    app.event("app_mention")(on_mention)
    app.event("message")(on_message)


def _enqueue(
    queue: answer_queue.AnswerQueue, event: dict[str, Any], context: Any, kind: str
) -> None:
    channel, ts = event["channel"], str(event["ts"])
    thread_ts = event.get("thread_ts")
    queue.submit(
        f"msg:{channel}:{ts}",
        kind=kind,
        channel=channel,
        thread_ts=str(thread_ts) if thread_ts else None,
        message_ts=ts,
        user_id=event.get("user"),
        bot_user_id=context.get("bot_user_id"),
        question=strip_mentions(user_text.clean(event.get("text", ""))),
    )


def _mentions_us(event: dict[str, Any], context: Any) -> bool:
    """A channel message that @mentions paperbot: the app_mention event handles it."""
    bot_user = context.get("bot_user_id")
    return (
        event.get("channel_type") != "im"
        and bool(bot_user)
        and f"<@{bot_user}>" in event.get("text", "")
    )


def _should_answer(settings: SlackSettings, event: dict[str, Any], context: Any) -> bool:
    if event.get("bot_id") or event.get("user") in (None, context.get("bot_user_id")):
        return False  # never answer ourselves or other bots
    channel = event.get("channel", "")
    if event.get("channel_type") != "im" and not permissions.channel_allowed(settings, channel):
        log.info("ignoring a message in %s: not in PAPERBOT_ALLOWED_CHANNELS", channel)
        return False
    return True
