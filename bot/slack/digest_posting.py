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
answer. So every digest message carries Slack message metadata naming its slot and part
(`DIGEST_EVENT`: channel, day, part 0 for the parent, n for the n-th reply), and the digest is
recorded as being sent (`BotStore.mark_parent_send`) just before its parent (or its "no new
papers" note) goes out, until Slack's answer is saved. The attempt that takes over asks Slack
before sending again: the channel's history around that moment for a parent it does not know
(`conversations.history`), the thread for replies past the saved count
(`conversations.replies`). If Slack refuses to be asked (a missing history scope:
`safe_post.LOOKUP_REFUSALS`), it sends again: a message twice rather than a digest never
finished; any other failure (a 5xx, a 429, a broken connection) fails the attempt and a later
tick asks again.

Only the poster whose claim holds the slot sends: the claim is renewed while the digest is built
and posted (`_renewing`, for an hour at most), before every message (`_Progress.sending`), and
marking the parent or saving progress applies only while the claim is the poster's. A claim
taken over (its lease ran out: a process paused or cut off) stops the poster before its next
message.

A stopping `serve` gives an unfinished digest back at once (bot/slack/digest_stop.py).

A day without papers is final ("empty", optionally with a short note) only when the caller
says so (`final`): before a scheduled digest's deadline the slot is released as "waiting" and
tried again on a later tick, so papers that arrive late still make the day's digest.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from answers.digest import Digest
from bot.services import Services
from bot.slack import blocks, paper_links
from bot.slack.digest_stop import STOPPED, DigestStop, DigestStopped
from bot.slack.safe_post import DIGEST_EVENT, marked_in, post_once, refused
from bot.slack.store import BotStore

log = logging.getLogger(__name__)

# A parent sent at T is looked for in the channel's history from T - BEFORE (clocks differ) to
# T + AFTER (post_once's sends and waits), at most safe_post.LOOKUP_PAGES pages.
LOOKUP_BEFORE_SECONDS = 60.0
LOOKUP_AFTER_SECONDS = 300.0
RENEW_FOR_SECONDS = 3600.0  # a claim is kept alive this long at most while its poster runs


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
    owner = owner_id()
    with stop.posting(store, channel, key, owner):  # from the claim on: give_back knows it
        if not store.claim_digest(channel, key, owner, lease_seconds):
            log.info("digest %s for %s already posted or being posted; skipping", day, channel)
            return DigestResult("skipped")
        with _renewing(store, channel, key, owner, lease_seconds):
            progress = _Progress(store, channel, key, stop, owner)
            return _claimed(
                services, client, day, progress, topic, max_papers, final, empty_note, missing
            )


@contextlib.contextmanager
def _renewing(
    store: BotStore, channel: str, day: str, owner: str, lease_seconds: float
) -> Iterator[None]:
    """Renew the claim's lease every third of it while the digest is built and posted (an
    LLM writing TL;DRs, or Slack's rate limits, can take longer than the lease; the lease is
    for a poster that died). Stops when the claim is no longer this poster's, and after
    RENEW_FOR_SECONDS: a poster stuck longer than that is let go of like a dead one (if it
    wakes up, its next message finds the claim taken and stops)."""
    done = threading.Event()
    until = time.monotonic() + max(RENEW_FOR_SECONDS, lease_seconds)

    def renew() -> None:
        while not done.wait(max(lease_seconds / 3, 0.05)) and time.monotonic() < until:
            try:
                if not store.renew_digest(channel, day, owner):
                    return  # settled, given back or taken over
            except Exception as exc:  # the store unreachable for a moment: try again
                log.warning("could not renew the %s digest's claim in %s: %s", day, channel, exc)

    thread = threading.Thread(target=renew, name="digest-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)


def _claimed(
    services: Services,
    client: Any,
    day: date,
    progress: _Progress,
    topic: str | None,
    max_papers: int | None,
    final: bool,
    empty_note: bool,
    missing: Sequence[str],
) -> DigestResult:
    """The claimed slot's digest; every write to the slot only while this claim holds it."""
    store, channel, key, owner, stop = (
        progress.store,
        progress.channel,
        progress.day,
        progress.owner,
        progress.stop,
    )
    try:
        saved = progress.digest()
        digest = saved or services.digests.build(day, day, topic=topic, max_papers=max_papers)
        if not digest.groups:
            if not final:
                store.release_digest(channel, key, "no papers yet", owner=owner)
                log.info("no papers for %s yet: the digest for %s waits", day, channel)
                return DigestResult("waiting")
            if empty_note:
                note_ts: str | None = _post_note(client, day, digest, progress, topic, missing)
            else:
                note_ts = None
                with stop.sending():
                    _settle_empty(progress, None)
            log.info(
                "no papers for %s: %s posted to %s",
                day,
                "a note" if note_ts else "nothing",
                channel,
            )
            return DigestResult("empty", note_ts)
        linker = paper_links.of(services)
        if linker is not None and saved is None:  # a resume has it as saved (and sent)
            digest = linker.resolve_digest(digest)
        ts = _post(client, channel, digest, progress, missing)
    except DigestStopped as exc:  # nothing in flight; what was sent is recorded
        store.release_digest(channel, key, STOPPED, owner=owner)
        why = exc.args[0] if exc.args else "stopping"
        log.info("the %s digest for %s stops unfinished (%s); it goes on later", day, channel, why)
        return DigestResult("waiting")
    except Exception as exc:
        store.finish_digest(channel, key, "failed", error=str(exc)[:500], owner=owner)
        log.exception("posting the %s digest to %s failed; it can be retried", day, channel)
        return DigestResult("failed", error=str(exc))
    store.finish_digest(channel, key, "posted", ts=ts, owner=owner)
    return DigestResult("posted", ts)


class _Progress:
    """What of a digest was already posted, saved after every message.

    A retry after a failure halfway (the parent posted, a reply failed) goes on in the same
    thread with the same digest instead of posting a second parent.
    """

    def __init__(
        self, store: BotStore, channel: str, day: str, stop: DigestStop, owner: str
    ) -> None:
        self.store = store
        self.stop = stop
        self.owner = owner
        self.channel = channel
        self.day = day
        self.saved: dict[str, Any] = store.digest_progress(channel, day) or {}
        self.resumed = bool(self.saved)  # an earlier attempt may have sent more than it saved
        # an earlier attempt sent the parent and never recorded Slack's answer
        self.parent_sent: dict[str, Any] | None = (
            None if self.saved else store.parent_send(channel, day)
        )

    def digest(self) -> Digest | None:
        text = self.saved.get("digest") or (self.parent_sent or {}).get("digest")
        return Digest.from_json(text) if text else None

    def save(self, digest: Digest, ts: str, replies: int) -> None:
        """Record a sent message (inside `sending`, which renewed the claim just before); a
        claim another poster took over meanwhile stops this one."""
        text = digest.to_json()
        if not self.store.save_digest_progress(
            self.channel, self.day, digest=text, ts=ts, replies=replies, owner=self.owner
        ):
            raise DigestStopped("its claim was taken over")
        self.saved = {"digest": text, "ts": ts, "replies": replies}

    @contextlib.contextmanager
    def sending(self) -> Iterator[None]:
        """Around one message and its record: refused once a stop was requested, or when the
        claim is no longer this poster's (its lease ran out and another took the slot over:
        that one sends, this one stops). The lease counts afresh from here."""
        with self.stop.sending():
            if not self.store.renew_digest(self.channel, self.day, self.owner):
                raise DigestStopped("its claim was taken over")
            yield

    def metadata(self, part: int) -> dict[str, Any]:
        """Slack message metadata of the digest's ``part`` (0: the parent, n: the n-th reply)."""
        payload = {"channel": self.channel, "day": self.day, "part": part}
        return {"event_type": DIGEST_EVENT, "event_payload": payload}

    def parts_in(self, method: Callable[..., Any], what: str, **args: Any) -> dict[int, str]:
        """The parts of this digest a conversations.* ``method`` lists, with their ts. When
        Slack refuses to be asked (a missing history scope: `safe_post.LOOKUP_REFUSALS`), none:
        the part is sent again; any other failure raises `LookupFailed` (never guess).
        ``what``: what is being checked, for the log."""
        try:
            listed = marked_in(method, DIGEST_EVENT, **args)
        except Exception as exc:
            if not refused(exc):  # Slack may have it: ask again later
                raise LookupFailed(f"could not ask Slack {what}: {exc}") from exc
            log.warning("could not check %s (%s): sending it again", what, exc)
            return {}
        found: dict[int, str] = {}
        for payload, ts in listed:
            if (payload.get("channel"), payload.get("day")) == (self.channel, self.day):
                found.setdefault(int(payload.get("part", -1)), ts)
        return found


def _post_note(
    client: Any,
    day: date,
    digest: Digest,
    progress: _Progress,
    topic: str | None,
    missing: Sequence[str],
) -> str:
    """The "no new papers" note, sent once like a digest's parent (part 0); the slot is
    settled "empty" with it."""

    def note() -> dict[str, Any]:
        text, note_blocks = blocks.no_papers_note(day, topic, missing)
        return {"text": text, "blocks": note_blocks}

    return _send_first(client, progress, digest, note, functools.partial(_settle_empty, progress))


def _settle_empty(progress: _Progress, note_ts: str | None) -> None:
    if progress.store.finish_digest(
        progress.channel, progress.day, "empty", ts=note_ts, owner=progress.owner
    ):
        progress.store.forget_parent_send(progress.channel, progress.day)


def _post(
    client: Any, channel: str, digest: Digest, progress: _Progress, missing: Sequence[str] = ()
) -> str:
    """Parent message with the overview, one threaded reply per topic group."""
    ts = progress.saved.get("ts")
    if ts is None:

        def parent() -> dict[str, Any]:
            feedback_id = save_for_feedback(progress.store, digest)
            text, parent_blocks = blocks.digest_parent(digest, missing, feedback_id=feedback_id)
            return {"text": text, "blocks": parent_blocks}

        record = functools.partial(_record, progress, digest, 0, None)
        ts = _send_first(client, progress, digest, parent, record)
    replies = [reply for group in digest.groups for reply in blocks.digest_group_replies(group)]
    done = int(progress.saved.get("replies", 0))
    if progress.resumed and done < len(replies):  # the next one may have gone out unrecorded
        done = _posted_replies(client, progress, str(ts), done)
    for number, (reply_text, reply_blocks) in enumerate(replies[done:], start=done + 1):
        _send(
            client,
            progress,
            number,
            functools.partial(_reply_ts, client, progress, str(ts), number),
            functools.partial(_record, progress, digest, number, str(ts)),
            channel=channel,
            thread_ts=ts,
            text=reply_text,
            blocks=reply_blocks,
        )
    return str(ts)


def _record(progress: _Progress, digest: Digest, part: int, parent: str | None, sent: str) -> None:
    """What a sent ``part`` changes in the progress (the parent's ts is ``sent`` itself)."""
    progress.save(digest, parent or sent, part)


def _send_first(
    client: Any,
    progress: _Progress,
    digest: Digest,
    message: Callable[[], dict[str, Any]],
    record: Callable[[str], None],
) -> str:
    """The digest's first message (its parent, or its note): one an earlier attempt sent is
    found in Slack and recorded; else it is recorded as being sent — from then on a poster
    that takes over asks Slack — and sent once (``message`` makes it only then)."""
    find = functools.partial(_posted_parent, client, progress)
    if progress.parent_sent and (found := find()):
        with progress.sending():
            record(found)
        return found
    marked = progress.store.mark_parent_send(
        progress.channel, progress.day, digest=digest.to_json(), owner=progress.owner
    )
    if marked is None:
        raise DigestStopped("its claim was taken over")
    progress.parent_sent = marked
    return _send(client, progress, 0, find, record, channel=progress.channel, **message())


def _send(
    client: Any,
    progress: _Progress,
    part: int,
    found: Callable[[], str | None],
    record: Callable[[str], None],
    **message: Any,
) -> str:
    """One part of the digest, sent once (bot/slack/safe_post.py), each send and its
    ``record`` inside the stop's lock (a stop asked meanwhile: `DigestStopped`)."""
    message |= {"unfurl_links": False, "metadata": progress.metadata(part)}
    return post_once(client, message, found, guard=progress.sending, record=record)


class LookupFailed(Exception):
    """Slack could not be asked whether it has a digest message (a 5xx, a 429, a dropped
    connection): the attempt fails, its records kept, and a later tick asks again."""


def _posted_parent(client: Any, progress: _Progress) -> str | None:
    """The ts of this digest's parent if Slack has it (the channel's history around the
    moment it was sent), else None; None too when Slack refuses to be asked (a missing
    history scope); `LookupFailed` when it could not answer now."""
    sent_at = float((progress.parent_sent or {}).get("sent_at") or 0.0)
    window = {  # not up to now: a takeover long after must not page through what came since
        "oldest": f"{sent_at - LOOKUP_BEFORE_SECONDS:.6f}",
        "latest": f"{sent_at + LOOKUP_AFTER_SECONDS:.6f}",
    }
    what = f"whether the {progress.day} digest's parent reached {progress.channel}"
    history = client.conversations_history
    return progress.parts_in(history, what, channel=progress.channel, **window).get(0)


def _posted_replies(client: Any, progress: _Progress, ts: str, done: int) -> int:
    """How many replies the thread holds in a row (at least ``done``, the saved count)."""
    parts = _thread_parts(client, progress, ts)
    while done + 1 in parts:
        done += 1
    return done


def _reply_ts(client: Any, progress: _Progress, ts: str, number: int) -> str | None:
    """The ts of reply ``number`` in the digest's thread, if Slack has it."""
    return _thread_parts(client, progress, ts).get(number)


def _thread_parts(client: Any, progress: _Progress, ts: str) -> dict[int, str]:
    """The digest's parts in its thread (`_Progress.parts_in`: none when Slack refuses to be
    asked, `LookupFailed` when it could not answer now)."""
    what = f"the {progress.day} digest's thread in {progress.channel}"
    return progress.parts_in(client.conversations_replies, what, channel=progress.channel, ts=ts)


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
