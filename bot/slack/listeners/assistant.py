"""Assistant threads (Slack's split-view AI app) -> a greeting, and questions as jobs.

- ``assistant_thread_started``: a greeting and suggested prompts built from the newest
  papers (after the ack, in a lazy listener: reading the corpus is no work for the ack path);
- ``assistant_thread_context_changed``: the channel the user is looking at, kept by Bolt's
  default store (in the greeting's message metadata);
- a user's message in the thread: a job of kind "assistant" in the answer queue, like a
  mention or a DM, so it survives a restart; the queue's worker sets the thread's title and
  status and streams the answer (bot/slack/answer_queue.py `SlackAnswers`).
"""

from __future__ import annotations

import logging
from typing import Any

from bot.services import Services
from bot.slack import answer_queue, assistant_blocks, user_text
from bot.slack.replies import strip_mentions
from bot.slack.settings import SlackSettings

log = logging.getLogger(__name__)


def register(app: Any, services: Services, settings: SlackSettings) -> None:
    from slack_bolt import Assistant

    queue = answer_queue.for_app(app, services, settings)
    assistant = Assistant()

    def acked() -> None:
        """Acked at once (Bolt's auto-acknowledgement); the greeting follows lazily."""

    def greet(say: Any, set_suggested_prompts: Any) -> None:
        (text, blks), prompts = assistant_blocks.opening(
            services.corpus, settings.assistant_prompts
        )
        say(text=text, blocks=blks)
        set_suggested_prompts(prompts=prompts)

    def on_question(payload: dict[str, Any], context: Any) -> None:
        channel, ts = payload["channel"], str(payload["ts"])
        queue.submit(
            f"msg:{channel}:{ts}",
            kind="assistant",
            channel=channel,
            thread_ts=str(payload["thread_ts"]),
            message_ts=ts,
            user_id=payload.get("user"),
            bot_user_id=context.get("bot_user_id"),
            question=strip_mentions(user_text.clean(payload.get("text", ""))),
        )

    assistant.thread_started(lazy=[greet])(acked)
    assistant.user_message(on_question)
    app.assistant(assistant)
