"""Answering in a Slack thread: placeholder, streamed updates, final answer — always finished.

The placeholder message is created once and then only updated, so a failure anywhere still
ends with that same message turned into a clear error: no duplicate and no orphaned
"Searching…" messages. chat.update calls are throttled to Slack's pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from answers.models import Answer, Turn
from answers.qa import AnswerDelta
from bot.services import Services
from bot.slack import blocks
from retrieval import PaperbotError

log = logging.getLogger(__name__)
_MENTION = re.compile(r"<@[A-Z0-9]+>")
MAX_HISTORY_MESSAGES = 12


def strip_mentions(text: str) -> str:
    return " ".join(_MENTION.sub(" ", text or "").split())


class ThreadReply:
    """One bot message in a thread that is posted once and updated in place."""

    def __init__(
        self,
        client: Any,
        channel: str,
        thread_ts: str,
        min_interval: float = 1.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.min_interval = min_interval
        self._clock = clock
        self.ts: str | None = None
        self._last_update = 0.0

    def start(self, message: blocks.Message) -> str:
        text, blks = message
        response = self.client.chat_postMessage(
            channel=self.channel, thread_ts=self.thread_ts, text=text, blocks=blks
        )
        self.ts = str(response["ts"])
        self._last_update = self._clock()
        return self.ts

    def progress(self, message: blocks.Message) -> None:
        """An intermediate update, skipped when the previous one was too recent. A failed
        one is skipped too: the final update carries everything anyway."""
        if self._clock() - self._last_update >= self.min_interval:
            try:
                self._update(message)
            except Exception:
                log.warning(
                    "a streaming update in %s failed; going on", self.channel, exc_info=True
                )

    def finish(self, message: blocks.Message) -> None:
        """The final state. If updating the placeholder fails even after the client's
        retries, replace it: delete it (best effort) and post the message anew, so the
        thread never keeps a "Searching…" placeholder."""
        try:
            self._update(message)
        except Exception:
            if self.ts is None:
                raise
            stale, self.ts = self.ts, None
            log.warning("updating %s failed; posting the reply anew", stale, exc_info=True)
            with contextlib.suppress(Exception):
                self.client.chat_delete(channel=self.channel, ts=stale)
            self.start(message)

    def _update(self, message: blocks.Message) -> None:
        text, blks = message
        if self.ts is None:
            self.start(message)
            return
        self.client.chat_update(channel=self.channel, ts=self.ts, text=text, blocks=blks)
        self._last_update = self._clock()


def answer_in_thread(
    services: Services,
    client: Any,
    *,
    channel: str,
    thread_ts: str,
    question: str,
    history: Sequence[Turn] = (),
    user: str | None = None,
    min_interval: float = 1.2,
    placeholder_ts: str | None = None,
    on_placeholder: Callable[[str], None] | None = None,
) -> Answer | None:
    """Post a placeholder in the thread, stream the answer into it, finish with the answer.

    A resumed answer passes the ``placeholder_ts`` an earlier attempt posted: that message is
    updated instead of posting a second one. ``on_placeholder`` gets a new placeholder's ts
    at once (the answer queue keeps it for a resume)."""
    reply = ThreadReply(client, channel, thread_ts, min_interval)
    if placeholder_ts:
        reply.ts = placeholder_ts
        reply.finish(blocks.placeholder(question))  # posts anew if it was deleted
    else:
        reply.start(blocks.placeholder(question))
    if on_placeholder is not None and reply.ts and reply.ts != placeholder_ts:
        on_placeholder(reply.ts)
    try:
        answer = asyncio.run(_stream(services, reply, question, history))
    except PaperbotError as exc:
        reply.finish(blocks.error_message(str(exc)))
        return None
    except Exception:
        incident = uuid.uuid4().hex[:8]
        log.exception(
            "answering failed (incident %s, channel %s, user %s)", incident, channel, user
        )
        reply.finish(
            blocks.error_message(
                f"Sorry, something went wrong while answering (incident {incident}). "
                "Please try again in a moment."
            )
        )
        return None
    feedback_id = remember_answer(services, answer)
    reply.finish(blocks.answer_message(answer, feedback_id))
    return answer


async def _stream(
    services: Services, reply: ThreadReply, question: str, history: Sequence[Turn]
) -> Answer:
    partial: list[str] = []
    async for event in services.qa.astream(question, history):
        if isinstance(event, AnswerDelta):
            partial.append(event.text)
            if services.qa.llm is not None:  # extractive answers arrive whole
                await asyncio.to_thread(reply.progress, blocks.streaming("".join(partial)))
        else:
            return event
    raise PaperbotError("The answer stream ended without an answer; please try again.")


def remember_answer(services: Services, answer: Answer) -> str:
    """Keep the answer under an id that the feedback buttons carry."""
    return services.store.save_answer(
        question=answer.question,
        answer=answer.text,
        mode=answer.mode,
        model=answer.model,
        citations=[
            {"number": c.number, "paper_id": c.paper_id, "title": c.title, "url": c.url}
            for c in answer.citations
        ],
    )


def thread_messages(client: Any, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    """The messages of a thread, parent first (one conversations.replies call)."""
    response = client.conversations_replies(channel=channel, ts=thread_ts, limit=50)
    return list(response.get("messages", []))


def thread_history(
    messages: Sequence[dict[str, Any]], bot_user_id: str | None, before_ts: str
) -> list[Turn]:
    """Earlier turns of a thread: the bot's messages as assistant turns, people's as user turns."""
    turns: list[Turn] = []
    for message in messages:
        if message.get("ts") == before_ts:
            break
        from_bot = bool(message.get("bot_id")) or (
            bot_user_id and message.get("user") == bot_user_id
        )
        text = strip_mentions(message.get("text", ""))
        if text and not text.startswith("🔎"):
            turns.append(Turn("assistant" if from_bot else "user", text[:2000]))
    return turns[-MAX_HISTORY_MESSAGES:]


def bot_in_thread(messages: Sequence[dict[str, Any]], bot_user_id: str | None) -> bool:
    """Did paperbot take part in this thread (so an un-mentioned reply is for it)?"""
    return any(
        m.get("bot_id") and (not bot_user_id or m.get("user") in (bot_user_id, None))
        for m in messages
    )
