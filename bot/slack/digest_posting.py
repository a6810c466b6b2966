"""Posting a digest to a channel exactly once per (channel, day).

The slot is claimed in the bot's store before anything is posted, so restarts,
retries and several running instances post each digest once. A failed post releases the
slot as "failed" (the next attempt may retry); a crashed poster's claim expires after a lease.

The parent carries the overview, the topics with their counts and the 👍/👎 feedback
buttons (the digest is stored like an answer, so a vote keeps what it was about); each topic
is one threaded reply. Progress is saved after every message: a retry goes on in the same
thread and posts each reply exactly once. Title-only papers get their arXiv link first when
the services can look titles up (bot/slack/paper_links.py).

A poster can die (kill -9, a crash) after Slack took a message and before it recorded the
answer. So the digest is saved before its parent is sent (ts `PARENT_SENT` until Slack's
answer is recorded), and every digest message carries Slack message metadata naming its slot
and part (`DIGEST_EVENT`: channel, day, part 0 for the parent, n for the n-th reply). The
attempt that takes over asks Slack before sending again: the channel's history since the
save for a parent it does not know (`conversations.history`), the thread for replies past the
saved count (`conversations.replies`). If Slack cannot be asked (a missing history scope), it
sends again: a message twice rather than a digest never finished.

A stopping `serve` (SIGTERM on a deploy) does not leave a claim to expire: through
`DigestStop` the poster sends no new message once a stop is requested and gives the slot back
("waiting", its progress kept), so the next start, or another replica, goes on at once in the
same thread; a digest still being built when the grace ends is given back by the stopping
process itself (`DigestStop.give_back`).

A day without papers is final ("empty", optionally with a short note) only when the caller
says so (`final`): before a scheduled digest's deadline the slot is released as "waiting" and
tried again on a later tick, so papers that arrive late still make the day's digest.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

from answers.digest import Digest
from bot.services import Services
from bot.slack import blocks, paper_links
from bot.slack.store import BotStore

log = logging.getLogger(__name__)

DIGEST_EVENT = "paperbot_digest"  # the event_type of every digest message's metadata
PARENT_SENT = ""  # the saved ts while the parent's post is sent and its answer not recorded
LOOKUP_MARGIN_SECONDS = 60.0  # history looked up from this long before the save (clock skew)


@dataclass(frozen=True, slots=True)
class DigestResult:
    # posted | empty | skipped (already posted or claimed) | failed | waiting (not yet: the
    # day has no papers before its deadline, or feeds have not delivered; see scheduler.py)
    status: str
    ts: str | None = None
    error: str | None = None


class DigestStopped(Exception):
    """A stop was requested: the poster sends nothing more and gives its slot back."""


class DigestStop:
    """Between a digest poster (the scheduler's tick) and the process stopping it. The poster
    sends each message inside `sending`, which refuses once `request` was called; the stopping
    process, if the poster is still busy after its grace (building the digest), takes the same
    lock — so no message is in flight — and gives the slot back itself (`give_back`)."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._sending = threading.Lock()
        self._slot: tuple[BotStore, str, str] | None = None  # the digest being posted

    def request(self) -> None:
        self.requested.set()

    def check(self) -> None:
        if self.requested.is_set():
            raise DigestStopped

    @contextmanager
    def sending(self) -> Iterator[None]:
        """Around one message and the record of it: refused once a stop was requested."""
        with self._sending:
            self.check()
            yield

    @contextmanager
    def posting(self, store: BotStore, channel: str, day: str) -> Iterator[None]:
        self._slot = (store, channel, day)
        try:
            yield
        finally:
            self._slot = None

    def give_back(self, timeout: float = 2.0) -> bool:
        """After `request`: give the slot being posted back, once no message is in flight
        (waits up to ``timeout`` for one being sent). True when a slot was given back."""
        if not self._sending.acquire(timeout=timeout):
            return False
        try:
            slot = self._slot
            if slot is None:
                return False
            store, channel, day = slot
            store.release_digest(channel, day, STOPPED)
            log.info("the %s digest for %s was given back unfinished (stopping)", day, channel)
            return True
        finally:
            self._sending.release()


STOPPED = "stopped before it was finished; it goes on at the next tick or start"


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
    stop: DigestStop | None = None,
) -> DigestResult:
    """Post the digest of ``day`` once. A day without papers: with ``final``, settled as
    "empty" (with a "no new papers" note when ``empty_note``), else left "waiting" to be
    tried again. ``missing`` names the feeds that have not delivered the day (shown).
    ``stop``: a stopping process's (`DigestStop`); its request gives the slot back."""
    stop = stop or DigestStop()
    if stop.requested.is_set():  # stopping: not claimed, tried again at the next start
        return DigestResult("waiting")
    store = services.store
    key = day.isoformat()
    if not store.claim_digest(channel, key, owner_id(), lease_seconds):
        log.info("digest %s for %s already posted or being posted; skipping", day, channel)
        return DigestResult("skipped")
    with stop.posting(store, channel, key):
        return _claimed(
            services, client, channel, day, stop, topic, max_papers, final, empty_note, missing
        )


def _claimed(
    services: Services,
    client: Any,
    channel: str,
    day: date,
    stop: DigestStop,
    topic: str | None,
    max_papers: int | None,
    final: bool,
    empty_note: bool,
    missing: Sequence[str],
) -> DigestResult:
    store = services.store
    key = day.isoformat()
    progress = _Progress(store, channel, key, stop)
    try:
        digest = progress.digest() or services.digests.build(
            day, day, topic=topic, max_papers=max_papers
        )
        if not digest.groups:
            if not final:
                store.release_digest(channel, key, "no papers yet")
                log.info("no papers for %s yet: the digest for %s waits", day, channel)
                return DigestResult("waiting")
            with stop.sending():
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
        if linker is not None and not progress.saved:  # a resume has it as saved (and posted)
            digest = linker.resolve_digest(digest)
        ts = _post(client, channel, digest, progress, missing)
    except DigestStopped:  # nothing in flight; what was sent is recorded
        store.release_digest(channel, key, STOPPED)
        log.info("the %s digest for %s stops unfinished (stopping); it goes on later", day, channel)
        return DigestResult("waiting")
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

    def __init__(self, store: BotStore, channel: str, day: str, stop: DigestStop) -> None:
        self.store = store
        self.stop = stop
        self.channel = channel
        self.day = day
        self.saved: dict[str, Any] = store.digest_progress(channel, day) or {}
        self.resumed = bool(self.saved)  # an earlier attempt may have sent more than it saved

    def digest(self) -> Digest | None:
        text = self.saved.get("digest")
        return Digest.from_json(text) if text else None

    def save(self, digest: Digest, ts: str, replies: int) -> None:
        self.saved = {"digest": digest.to_json(), "ts": ts, "replies": replies}
        self.store.save_digest_progress(self.channel, self.day, **self.saved)

    def metadata(self, part: int) -> dict[str, Any]:
        """Slack message metadata of the digest's ``part`` (0: the parent, n: the n-th reply)."""
        payload = {"channel": self.channel, "day": self.day, "part": part}
        return {"event_type": DIGEST_EVENT, "event_payload": payload}

    def parts_in(self, messages: Iterable[dict[str, Any]]) -> dict[int, str]:
        """The parts of this digest among Slack's ``messages``, with their ts."""
        found: dict[int, str] = {}
        for message in messages:
            meta = message.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            if meta.get("event_type") == DIGEST_EVENT and (
                payload.get("channel"),
                payload.get("day"),
            ) == (self.channel, self.day):
                found.setdefault(int(payload.get("part", -1)), str(message.get("ts")))
        return found


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
    if ts == PARENT_SENT:  # an earlier attempt sent the parent; did Slack take it?
        ts = _posted_parent(client, progress)
        if ts:
            progress.save(digest, ts, 0)
    if not ts:
        feedback_id = save_for_feedback(progress.store, digest)
        text, parent_blocks = blocks.digest_parent(digest, missing, feedback_id=feedback_id)
        with progress.stop.sending():
            progress.save(digest, PARENT_SENT, 0)
            parent = client.chat_postMessage(
                channel=channel,
                text=text,
                blocks=parent_blocks,
                unfurl_links=False,
                metadata=progress.metadata(0),
            )
            ts = str(parent["ts"])
            progress.save(digest, ts, 0)
    replies = [reply for group in digest.groups for reply in blocks.digest_group_replies(group)]
    done = int(progress.saved.get("replies", 0))
    if progress.resumed and done < len(replies):  # the next one may have gone out unrecorded
        done = _posted_replies(client, progress, str(ts), done)
    for number, (reply_text, reply_blocks) in enumerate(replies[done:], start=done + 1):
        with progress.stop.sending():
            client.chat_postMessage(
                channel=channel,
                thread_ts=ts,
                text=reply_text,
                blocks=reply_blocks,
                unfurl_links=False,
                metadata=progress.metadata(number),
            )
            progress.save(digest, str(ts), number)
    return str(ts)


def _posted_parent(client: Any, progress: _Progress) -> str | None:
    """The ts of this digest's parent if Slack has it (the channel's history since the
    parent was about to be sent), else None; None too when Slack cannot be asked."""
    since = float(progress.saved.get("updated_at") or 0.0) - LOOKUP_MARGIN_SECONDS
    try:
        history = client.conversations_history(
            channel=progress.channel, oldest=f"{since:.6f}", include_all_metadata=True, limit=200
        )
    except Exception as exc:
        log.warning(
            "could not check whether the %s digest's parent reached %s (%s): sending it again",
            progress.day,
            progress.channel,
            exc,
        )
        return None
    return progress.parts_in(history.get("messages") or []).get(0)


def _posted_replies(client: Any, progress: _Progress, ts: str, done: int) -> int:
    """How many replies the thread holds in a row (at least ``done``, the saved count)."""
    try:
        thread = client.conversations_replies(
            channel=progress.channel, ts=ts, include_all_metadata=True, limit=200
        )
    except Exception as exc:
        log.warning(
            "could not check the %s digest's thread in %s (%s): reply %d is sent again",
            progress.day,
            progress.channel,
            exc,
            done + 1,
        )
        return done
    parts = progress.parts_in(thread.get("messages") or [])
    while done + 1 in parts:
        done += 1
    return done


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
