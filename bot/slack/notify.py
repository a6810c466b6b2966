"""Subscription notifications: newly arrived papers that match a subscriber's topic.

A paper arrives when a feed first lists it (or, never listed, when it is first ingested):
an older paper that a feed lists today is news today, the same paper listed again by a
second feed is not (and `claim_notification` never posts a paper twice to one subscriber).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bot.services import Services
from bot.slack import blocks
from retrieval import Paper

log = logging.getLogger(__name__)
WATERMARK = "notify_watermark"
MAX_PER_MESSAGE = 10


def notify_subscribers(services: Services, client: Any, *, now: float | None = None) -> int:
    """Post each subscriber the new papers matching their topics; each paper at most once.

    Returns the number of notifications posted.
    """
    store = services.store
    since = float(store.get_meta(WATERMARK, "0") or 0)
    now = now if now is not None else time.time()
    subscriptions = store.subscriptions()
    if not subscriptions:  # nothing to match: don't read every new paper into memory
        store.set_meta(WATERMARK, str(now))
        return 0
    new = {p.paper_id: p for p in services.corpus.papers_arrived_since(since)}
    posted = 0
    if new:
        for subscriber, topic in subscriptions:
            matches = _matching(services, topic, new)
            fresh = [p for p in matches if store.claim_notification(subscriber, p.paper_id)]
            if fresh:
                text, blks = blocks.notification_message(topic, fresh[:MAX_PER_MESSAGE])
                client.chat_postMessage(
                    channel=subscriber, text=text, blocks=blks, unfurl_links=False
                )
                posted += 1
    store.set_meta(WATERMARK, str(now))
    return posted


def _matching(services: Services, topic: str, new: dict[str, Paper]) -> list[Paper]:
    hits = services.corpus.search(topic, min(200, max(20, len(new) * 2)))
    return [h.paper for h in hits if h.paper.paper_id in new and services.corpus.relevance(h)]
