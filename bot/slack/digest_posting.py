"""Posting a digest to a channel exactly once per (channel, day).

The slot is claimed in the bot's store before anything is posted, so restarts,
retries and several running instances post each digest once. A failed post releases the
slot as "failed" (the next attempt may retry); a crashed poster's claim expires after a lease.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import date
from typing import Any

from answers.digest import Digest
from bot.services import Services
from bot.slack import blocks
from bot.slack.store import BotStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DigestResult:
    status: str  # posted | empty | skipped (already posted or claimed) | failed
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
) -> DigestResult:
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
            store.finish_digest(channel, key, "empty")
            log.info("no papers for %s: no digest posted to %s", day, channel)
            return DigestResult("empty")
        ts = _post(client, channel, digest, progress)
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
        self._store = store
        self._channel = channel
        self._day = day
        self.saved: dict[str, Any] = store.digest_progress(channel, day) or {}

    def digest(self) -> Digest | None:
        text = self.saved.get("digest")
        return Digest.from_json(text) if text else None

    def save(self, digest: Digest, ts: str, replies: int) -> None:
        self.saved = {"digest": digest.to_json(), "ts": ts, "replies": replies}
        self._store.save_digest_progress(self._channel, self._day, **self.saved)


def _post(client: Any, channel: str, digest: Digest, progress: _Progress) -> str:
    """Parent message with the overview, one threaded reply per topic group."""
    ts = progress.saved.get("ts")
    if ts is None:
        text, parent_blocks = blocks.digest_parent(digest)
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
