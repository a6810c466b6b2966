"""Subscription notifications: newly arrived papers that match a subscriber's topic.

A paper arrives when a feed first lists it (or, never listed, when it is first ingested):
an older paper that a feed lists today is news today, the same paper listed again by a
second feed is not (and `claim_notification` never posts a paper twice to one subscriber).
A paper whose listing (else publication) day is more than `NEWS_DAYS` old is history, not
news: a backfill of past years notifies nobody.
Each paper reads as everywhere else (bot/slack/paper_lines.py): linked, with its authors.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bot.services import Services
from bot.slack import blocks, paper_links, permissions
from bot.slack.settings import SlackSettings
from retrieval import Paper

log = logging.getLogger(__name__)
WATERMARK = "notify_watermark"
# a paper listed (else published) longer ago than this is history, not news: not notified
NEWS_DAYS = 7


def notify_subscribers(
    services: Services,
    client: Any,
    *,
    settings: SlackSettings | None = None,
    now: float | None = None,
    today: date | None = None,
) -> int:
    """Post each subscriber the new papers matching their topics; each paper at most once.

    A channel subscriber is checked when there is something to post (the same rule as every
    other surface, bot/slack/permissions.py): outside PAPERBOT_ALLOWED_CHANNELS, or a channel
    paperbot is not a member of, it gets nothing (and the papers are not marked as sent).
    ``settings`` defaults to the environment's. ``today`` (default: the day of ``now``, UTC) is
    what "recent" is measured from: the scheduler passes its own clock's day. Returns the
    number of notifications posted.
    """
    settings = settings or SlackSettings()
    store = services.store
    since = float(store.get_meta(WATERMARK, "0") or 0)
    now = now if now is not None else time.time()
    subscriptions = store.subscriptions()
    if not subscriptions:  # nothing to match: don't read every new paper into memory
        store.set_meta(WATERMARK, str(now))
        return 0
    # News only: a backfill of past years (`ingest --arxiv-snapshot`) arrives today too
    today = today or datetime.fromtimestamp(now, UTC).date()
    day_from = today - timedelta(days=NEWS_DAYS)
    new = {p.paper_id: p for p in services.corpus.papers_arrived_since(since, day_from=day_from)}
    refused: dict[str, str | None] = {}  # channel -> why not (None: may post); once per run
    posted = 0
    linker = paper_links.of(services)
    if new:
        for subscriber, topic in subscriptions:
            matches = _matching(services, topic, new)
            if not matches or _refused(settings, client, subscriber, refused):
                continue
            fresh = [p for p in matches if store.claim_notification(subscriber, p.paper_id)]
            if fresh:
                # every claimed paper is shown (the message packs a long list, never cuts)
                shown = linker.resolve(fresh) if linker is not None else fresh
                text, blks = blocks.notification_message(topic, shown)
                client.chat_postMessage(
                    channel=subscriber, text=text, blocks=blks, unfurl_links=False
                )
                posted += 1
    store.set_meta(WATERMARK, str(now))
    return posted


def _refused(
    settings: SlackSettings, client: Any, subscriber: str, seen: dict[str, str | None]
) -> bool:
    """Whether a channel subscriber may not be posted to now (a user always may: a DM)."""
    if subscriber[:1] in ("U", "W"):
        return False
    if subscriber not in seen:
        seen[subscriber] = (
            permissions.cannot_post_reason(client, subscriber)
            if permissions.channel_allowed(settings, subscriber)
            else permissions.not_allowed_text(settings)
        )
        if seen[subscriber]:
            log.warning("not notifying %s: %s", subscriber, seen[subscriber])
    return seen[subscriber] is not None


def _matching(services: Services, topic: str, new: dict[str, Paper]) -> list[Paper]:
    hits = services.corpus.search(topic, min(200, max(20, len(new) * 2)))
    return [h.paper for h in hits if h.paper.paper_id in new and services.corpus.relevance(h)]
