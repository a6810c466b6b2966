"""Answering in a Slack thread: streamed draft, final verified answer — always finished.

Two ways to show the answer while it is written, one message either way:

- native streaming (bot/slack/streaming.py): the model's draft is streamed with
  chat.startStream/appendStream from its first words; chat.stopStream ends it with the
  verified answer's blocks and chat.update replaces the draft with the verified answer;
- the fallback (a workspace or conversation where chat.startStream is refused, extractive
  answers, a resumed job): a placeholder posted at once and updated in place.

The message is created once and then only updated, so a failure anywhere still ends with
that same message turned into a clear error: no duplicate and no orphaned "Searching…"
messages. chat.update and chat.appendStream calls are throttled to Slack's pace.
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
from bot.slack.safe_post import REPLY_EVENT, marked_in, post_once
from bot.slack.streaming import NativeStream, StreamSupport, end_stream, slack_error
from retrieval import PaperbotError

log = logging.getLogger(__name__)
_MENTION = re.compile(r"<@[A-Z0-9]+>")
MAX_HISTORY_MESSAGES = 12
THREAD_PAGE = 200  # messages per conversations.replies call (Slack's advice: at most 200)
THREAD_PAGES = 5  # calls per thread read at most


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
        """Post the message once (bot/slack/safe_post.py): it carries a nonce in its metadata,
        so after a lost answer the thread is searched for it before it is sent again."""
        text, blks = message
        nonce, since = uuid.uuid4().hex, time.time() - 60  # clocks may differ by a minute
        meta = {"event_type": REPLY_EVENT, "event_payload": {"nonce": nonce}}
        self.ts = post_once(
            self.client,
            {
                "channel": self.channel,
                "thread_ts": self.thread_ts,
                "text": text,
                "blocks": blks,
                "metadata": meta,
            },
            lambda: self._posted(nonce, since),
        )
        self._last_update = self._clock()
        return self.ts

    def _posted(self, nonce: str, since: float) -> str | None:
        """The ts of the reply carrying ``nonce`` in the thread, if Slack has it (replies
        since just before it was first sent: a long thread's older ones are left out)."""
        try:
            replies = marked_in(
                self.client.conversations_replies,
                REPLY_EVENT,
                pages=1,
                channel=self.channel,
                ts=self.thread_ts,
                oldest=f"{since:.6f}",
            )
        except Exception as exc:
            log.warning("could not check the thread %s (%s): posting again", self.thread_ts, exc)
            return None
        return next((ts for payload, ts in replies if payload.get("nonce") == nonce), None)

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
    streams: StreamSupport | None = None,
    team_id: str | None = None,
    on_writing: Callable[[], None] | None = None,
) -> Answer | None:
    """Answer ``question`` in the thread: streamed natively when ``streams`` says Slack
    allows it (the stream starts with the model's first words), else a placeholder streamed
    into with chat.update; either way finished with the verified answer.

    A resumed answer passes the ``placeholder_ts`` an earlier attempt posted: that message is
    updated instead of posting a second one (an open stream in it is stopped first).
    ``on_placeholder`` gets the ts of a newly posted message at once (the answer queue keeps
    it for a resume); ``on_writing`` hears when the model starts writing."""
    reply = ThreadReply(client, channel, thread_ts, min_interval)
    native: NativeStream | None = None
    if placeholder_ts:
        if streams is not None and streams.enabled:
            end_stream(client, channel, placeholder_ts)
        reply.ts = placeholder_ts
        reply.finish(blocks.placeholder(question))  # posts anew if it was deleted
    elif streams is not None and streams.available(channel) and services.qa.llm is not None:
        native = NativeStream(
            client, channel, thread_ts, user=user, team=team_id, min_interval=min_interval
        )
    else:
        reply.start(blocks.placeholder(question))
    shown = _Shown(reply, placeholder_ts, on_placeholder)
    shown.check()
    run = _Run(services, reply, native, streams, shown, on_writing)
    try:
        answer = asyncio.run(run.stream(question, history))
    except PaperbotError as exc:
        run.finish(blocks.error_message(str(exc)))
        return None
    except Exception:
        incident = uuid.uuid4().hex[:8]
        log.exception(
            "answering failed (incident %s, channel %s, user %s)", incident, channel, user
        )
        run.finish(
            blocks.error_message(
                f"Sorry, something went wrong while answering (incident {incident}). "
                "Please try again in a moment."
            )
        )
        return None
    feedback_id = remember_answer(services, answer)
    run.finish(blocks.answer_message(answer, feedback_id))
    return answer


class _Shown:
    """Tells the answer queue the ts of the message once one is posted (once per ts)."""

    def __init__(
        self, reply: ThreadReply, known: str | None, on_placeholder: Callable[[str], None] | None
    ) -> None:
        self.reply, self.known, self.on_placeholder = reply, known, on_placeholder

    def check(self) -> None:
        ts = self.reply.ts
        if ts and ts != self.known:
            self.known = ts
            if self.on_placeholder is not None:
                self.on_placeholder(ts)


class _Run:
    """One answer being shown: the native stream while it works, else the placeholder."""

    def __init__(
        self,
        services: Services,
        reply: ThreadReply,
        native: NativeStream | None,
        streams: StreamSupport | None,
        shown: _Shown,
        on_writing: Callable[[], None] | None,
    ) -> None:
        self.services, self.reply, self.native = services, reply, native
        self.streams, self.shown, self.on_writing = streams, shown, on_writing

    async def stream(self, question: str, history: Sequence[Turn]) -> Answer:
        partial: list[str] = []
        async for event in self.services.qa.astream(question, history):
            if not isinstance(event, AnswerDelta):
                return event
            if not partial and self.on_writing is not None:
                await asyncio.to_thread(self.on_writing)
            partial.append(event.text)
            if self.native is not None:
                await asyncio.to_thread(self._native, event.text, "".join(partial))
            elif self.services.qa.llm is not None:  # extractive answers arrive whole
                await asyncio.to_thread(self.reply.progress, blocks.streaming("".join(partial)))
            self.shown.check()
        raise PaperbotError("The answer stream ended without an answer; please try again.")

    def _native(self, delta: str, so_far: str) -> None:
        native = self.native
        assert native is not None
        if native.ts is not None:
            native.append(delta)
            return
        try:
            self.reply.ts = native.start(so_far)
        except Exception as exc:  # refused here: the chat.update path, from now on
            error = slack_error(exc)
            if self.streams is None or not self.streams.refused(native.channel, error):
                log.warning(
                    "chat.startStream in %s failed (%s); updating instead",
                    native.channel,
                    error or exc,
                )
            self.native = None
            self.reply.progress(blocks.streaming(so_far))

    def finish(self, message: blocks.Message) -> None:
        """The final state: the stream (if any) stopped with the final blocks, then the whole
        message replaced by ``message`` (posted if nothing was shown yet)."""
        if self.native is not None and self.native.ts is not None:
            self.native.stop(message)
        self.reply.finish(message)
        self.shown.check()


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
    """The messages of a thread, parent first, each once: one conversations.replies call for a
    thread of up to THREAD_PAGE messages, more pages for a longer one (its latest turns are the
    ones a follow-up needs), at most THREAD_PAGES; a longer thread's later messages are left
    out (Slack lists a thread oldest first)."""
    messages: dict[str, dict[str, Any]] = {}
    cursor = None
    for _ in range(THREAD_PAGES):
        page = client.conversations_replies(
            channel=channel, ts=thread_ts, limit=THREAD_PAGE, cursor=cursor
        )
        for message in page.get("messages") or []:
            messages.setdefault(str(message.get("ts")), message)
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not (page.get("has_more") and cursor):
            return list(messages.values())
    log.info(
        "thread %s has over %d messages; its later ones are left out", thread_ts, len(messages)
    )
    return list(messages.values())


def thread_history(
    messages: Sequence[dict[str, Any]], bot_user_id: str | None, before_ts: str
) -> list[Turn]:
    """Earlier turns of a thread: the bot's messages as assistant turns, people's as user turns."""
    turns: list[Turn] = []
    for message in messages:
        if message.get("ts") == before_ts:
            break
        from_bot = bool(bot_user_id) and message.get("user") == bot_user_id  # paperbot only
        text = strip_mentions(message.get("text", ""))
        if text and not text.startswith("🔎"):
            turns.append(Turn("assistant" if from_bot else "user", text[:2000]))
    return turns[-MAX_HISTORY_MESSAGES:]


def bot_in_thread(messages: Sequence[dict[str, Any]], bot_user_id: str | None) -> bool:
    """Did paperbot take part in this thread (so an un-mentioned reply is for it)?

    Only paperbot's own messages count (posted as its bot user): a thread started by another
    bot, or one paperbot is unsure about (its user id unknown), is not for it."""
    return bool(bot_user_id) and any(m.get("user") == bot_user_id for m in messages)
