"""Posting a digest to a channel exactly once per (channel, day).

The slot is claimed in the shared state store before anything is posted, so restarts,
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

from bot import blocks
from bot.services import Services

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
    state = services.state
    if not state.claim_digest(channel, day.isoformat(), owner_id(), lease_seconds):
        log.info("digest %s for %s already posted or being posted; skipping", day, channel)
        return DigestResult("skipped")
    try:
        digest = services.digests.build(day, day, topic=topic, max_papers=max_papers)
        if not digest.groups:
            state.finish_digest(channel, day.isoformat(), "empty")
            log.info("no papers for %s: no digest posted to %s", day, channel)
            return DigestResult("empty")
        ts = _post(client, channel, digest)
    except Exception as exc:
        state.finish_digest(channel, day.isoformat(), "failed", error=str(exc)[:500])
        log.exception("posting the %s digest to %s failed; it can be retried", day, channel)
        return DigestResult("failed", error=str(exc))
    state.finish_digest(channel, day.isoformat(), "posted", ts=ts)
    return DigestResult("posted", ts)


def _post(client: Any, channel: str, digest: Any) -> str:
    """Parent message with the overview, one threaded reply per topic group."""
    text, parent_blocks = blocks.digest_parent(digest)
    parent = client.chat_postMessage(
        channel=channel, text=text, blocks=parent_blocks, unfurl_links=False
    )
    ts = str(parent["ts"])
    for group in digest.groups:
        for reply_text, reply_blocks in blocks.digest_group_replies(group):
            client.chat_postMessage(
                channel=channel,
                thread_ts=ts,
                text=reply_text,
                blocks=reply_blocks,
                unfurl_links=False,
            )
    return ts
