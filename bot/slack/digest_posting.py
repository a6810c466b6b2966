"""Posting a digest to a channel exactly once per (channel, day).

The slot is claimed in the bot's store before anything is posted, so restarts,
retries and several running instances post each digest once. A failed post releases the
slot as "failed" (the next attempt may retry); a crashed poster's claim expires after a lease.

The parent carries the overview, the topics with their counts and the 👍/👎 feedback
buttons (the digest is stored like an answer, so a vote keeps what it was about); each topic
is one threaded reply. Progress is saved after every message: a retry goes on in the same
thread and posts each reply exactly once. Title-only papers get their arXiv link first when
the services can look titles up (bot/slack/paper_links.py).

A day without papers is final ("empty", optionally with a short note) only when the caller
says so (`final`): before a scheduled digest's deadline the slot is released as "waiting" and
tried again on a later tick, so papers that arrive late still make the day's digest.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from answers.digest import Digest
from bot.services import Services
from bot.slack import blocks, paper_links
from bot.slack.store import BotStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DigestResult:
    # posted | empty | skipped (already posted or claimed) | failed | waiting (not yet: the
    # day has no papers before its deadline, or feeds have not delivered; see scheduler.py)
    status: str
    ts: str | None = None
    error: str | None = None


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def post_digest(
    services: Services,
    client: Any,
    channel: str,
    day: date,
    *,
    topic: str | None = None,
    max_papers: int | None = None,
    lease_seconds: float = 600.0,
    final: bool = True,
    empty_note: bool = False,
    missing: Sequence[str] = (),
) -> DigestResult:
    """Post the digest of ``day`` once. A day without papers: with ``final``, settled as
    "empty" (with a "no new papers" note when ``empty_note``), else left "waiting" to be
    tried again. ``missing`` names the feeds that have not delivered the day (shown)."""
    store = services.store
    key = day.isoformat()
    if not store.claim_digest(channel, key, owner_id(), lease_seconds):
        log.info("digest %s for %s already posted or being posted; skipping", day, channel)
        return DigestResult("skipped")
    progress = _Progress(store, channel, key)
    try:
        digest = progress.digest() or services.digests.build(
            day, day, topic=topic, max_papers=max_papers
        )
        if not digest.groups:
            if not final:
                store.release_digest(channel, key, "no papers yet")
                log.info("no papers for %s yet: the digest for %s waits", day, channel)
                return DigestResult("waiting")
            note_ts = _post_note(client, channel, day, topic, missing) if empty_note else None
            store.finish_digest(channel, key, "empty", ts=note_ts)
            log.info(
                "no papers for %s: %s posted to %s",
                day,
                "a note" if note_ts else "nothing",
                channel,
            )
            return DigestResult("empty", note_ts)
        linker = paper_links.of(services)
        if linker is not None and progress.saved.get("ts") is None:  # as posted, on resumes
            digest = linker.resolve_digest(digest)
        ts = _post(client, channel, digest, progress, missing)
    except Exception as exc:
        store.finish_digest(channel, key, "failed", error=str(exc)[:500])
        log.exception("posting the %s digest to %s failed; it can be retried", day, channel)
        return DigestResult("failed", error=str(exc))
    store.finish_digest(channel, key, "posted", ts=ts)
    return DigestResult("posted", ts)


class _Progress:
    """What of a digest was already posted, saved after every message.

    A retry after a failure halfway (the parent posted, a reply failed) goes on in the same
    thread with the same digest instead of posting a second parent.
    """

    def __init__(self, store: BotStore, channel: str, day: str) -> None:
        self.store = store
        self._channel = channel
        self._day = day
        self.saved: dict[str, Any] = store.digest_progress(channel, day) or {}

    def digest(self) -> Digest | None:
        text = self.saved.get("digest")
        return Digest.from_json(text) if text else None

    def save(self, digest: Digest, ts: str, replies: int) -> None:
        self.saved = {"digest": digest.to_json(), "ts": ts, "replies": replies}
        self.store.save_digest_progress(self._channel, self._day, **self.saved)


def _post_note(
    client: Any, channel: str, day: date, topic: str | None, missing: Sequence[str]
) -> str:
    text, note_blocks = blocks.no_papers_note(day, topic, missing)
    return str(client.chat_postMessage(channel=channel, text=text, blocks=note_blocks)["ts"])


def _post(
    client: Any, channel: str, digest: Digest, progress: _Progress, missing: Sequence[str] = ()
) -> str:
    """Parent message with the overview, one threaded reply per topic group."""
    ts = progress.saved.get("ts")
    if ts is None:
        feedback_id = save_for_feedback(progress.store, digest)
        text, parent_blocks = blocks.digest_parent(digest, missing, feedback_id=feedback_id)
        parent = client.chat_postMessage(
            channel=channel, text=text, blocks=parent_blocks, unfurl_links=False
        )
        ts = str(parent["ts"])
        progress.save(digest, ts, 0)
    replies = [reply for group in digest.groups for reply in blocks.digest_group_replies(group)]
    done = int(progress.saved.get("replies", 0))
    for number, (reply_text, reply_blocks) in enumerate(replies[done:], start=done + 1):
        client.chat_postMessage(
            channel=channel, thread_ts=ts, text=reply_text, blocks=reply_blocks, unfurl_links=False
        )
        progress.save(digest, str(ts), number)
    return str(ts)


def save_for_feedback(store: BotStore, digest: Digest) -> str:
    """The digest kept like an answer (question: which digest; answer: its overview;
    sources: its papers; model: who wrote the overview): the id its feedback buttons carry."""
    about = f" on {digest.topic}" if digest.topic else ""
    return store.save_answer(
        question=f"digest {digest.period}{about}",
        answer=digest.overview,
        mode="digest",
        model=digest.model,
        citations=[
            {
                "number": number,
                "paper_id": item.paper.paper_id,
                "title": item.paper.title,
                "url": item.paper.link,
            }
            for number, item in enumerate(digest.papers, start=1)
        ],
    )
