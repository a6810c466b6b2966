"""Digest schedules and subscription checks, driven by a periodic tick.

A tick (every PAPERBOT_TICK_SECONDS, run by APScheduler in `paperbot serve`) posts each
channel's digest once its local time has passed today. Because `tick(now)` takes the clock
as an argument, a missed time (paperbot was down at 09:00) is caught up on the next tick
the same day, and tests drive it with any clock. Exactly-once comes from the bot store's
(channel, day) claims, so restarts and several instances are safe.

A digest waits for its feeds: while an enabled feed that digests wait for (bot/slack/feeds.py:
HF and arXiv by default) has not delivered the day's listing, and while the day has no papers
at all, it is tried again on every tick until PAPERBOT_DIGEST_WAIT_MINUTES after its time.
At that deadline it posts what exists, or a "No new papers today" note
(PAPERBOT_DIGEST_EMPTY_NOTE), naming the feeds that never delivered. A digest that was started
(its parent sent) and never finished — its poster died just before midnight — is finished in
its thread on a later tick, up to RESUME_DAYS days on, even once its day is no longer due
(tried again once its slot has been idle for RESUME_IDLE_SECONDS, not on every tick).

Stopping (`stop`, SIGTERM of `serve`): no tick starts, the one running sends no new message and
gives its digest back unfinished (it goes on in the same thread at the next start, or on
another replica's next tick), notifications wait for the next start; a digest still being built
after the grace is given back by `stop` itself (bot/slack/digest_stop.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.services import Services
from bot.slack.digest_posting import DigestResult, post_digest
from bot.slack.digest_stop import DigestStop
from bot.slack.feeds import Feed
from bot.slack.notify import notify_subscribers
from bot.slack.settings import SlackSettings

log = logging.getLogger(__name__)

RESUME_DAYS = 3  # a digest started this many days back or less is finished if it stopped halfway
RESUME_IDLE_SECONDS = 600.0  # ...once its slot has been left alone this long (no retry storm)


@dataclass(frozen=True, slots=True)
class Schedule:
    channel: str
    at: time
    timezone: str
    topic: str | None = None
    max_papers: int | None = None

    def due_day(self, now: datetime) -> date | None:
        """The local day whose digest is due at `now` (an aware datetime), if any."""
        local = now.astimezone(ZoneInfo(self.timezone))
        return local.date() if local.time() >= self.at else None

    def due_days(self, now: datetime, wait: timedelta) -> list[date]:
        """Today's day once due, and yesterday's while its wait is not over (a 23:00 digest
        waiting for a late feed goes on after midnight)."""
        local = now.astimezone(ZoneInfo(self.timezone))
        yesterday = local.date() - timedelta(days=1)
        days = [yesterday] if wait and now < self.deadline(yesterday, wait) else []
        today = self.due_day(now)
        return days + ([today] if today else [])

    def deadline(self, day: date, wait: timedelta) -> datetime:
        """When the digest of ``day`` stops waiting for feeds and papers."""
        return datetime.combine(day, self.at, ZoneInfo(self.timezone)) + wait


def parse_schedule(
    channel: str,
    at_time: str,
    timezone: str,
    topic: str | None = None,
    max_papers: int | None = None,
) -> Schedule:
    """Validate user input: 'HH:MM' and an IANA time zone name."""
    try:
        hour, minute = (int(x) for x in at_time.split(":"))
        at = time(hour, minute)
    except ValueError:
        raise ValueError(f"{at_time!r} is not a time; use HH:MM (24-hour), e.g. 09:00") from None
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{timezone!r} is not a time zone; use a name like Europe/Berlin or UTC"
        ) from None
    if max_papers is not None and max_papers < 1:
        raise ValueError("max papers must be at least 1")
    return Schedule(channel, at, timezone, topic or None, max_papers)


class DigestScheduler:
    def __init__(
        self,
        services: Services,
        client: Any,
        settings: SlackSettings,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.services = services
        self.client = client
        self.settings = settings
        self.clock = clock or (lambda: datetime.now().astimezone())
        self._scheduler: Any = None
        self._waiting: set[tuple[str, date]] = set()  # logged once per (channel, day)
        self._stop = DigestStop()
        self._idle = threading.Event()  # no tick running
        self._idle.set()

    def schedules(self) -> list[Schedule]:
        result = []
        for row in self.services.store.schedules():
            try:
                result.append(
                    parse_schedule(
                        row["channel"],
                        row["at_time"],
                        row["timezone"],
                        row["topic"],
                        row["max_papers"],
                    )
                )
            except ValueError as exc:
                log.error("skipping the digest schedule of %s: %s", row["channel"], exc)
        return result

    def tick(self, now: datetime | None = None) -> dict[str, DigestResult]:
        """Post every due digest that was not posted yet (unless it waits for its feeds);
        then notify subscribers."""
        now = now or self.clock()
        wait = timedelta(minutes=self.settings.digest_wait_minutes)
        results: dict[str, DigestResult] = {}
        feeds: list[Feed] | None = None
        for schedule in self.schedules():
            due = schedule.due_days(now, wait)
            for day in self._unfinished(schedule, now, due):
                log.info("going on with the unfinished %s digest for %s", day, schedule.channel)
                results[schedule.channel] = self._post(schedule, day)
            for day in due:
                if self._settled(schedule.channel, day):
                    continue
                if feeds is None:
                    feeds = self._feeds()
                missing = self._missing(feeds, day)
                final = now >= schedule.deadline(day, wait)
                if missing and not final:
                    self._log_wait(schedule, day, missing, wait)
                    results[schedule.channel] = DigestResult("waiting")
                    continue
                if missing:
                    log.warning(
                        "the %s digest for %s goes out without %s: no list by the deadline",
                        day,
                        schedule.channel,
                        ", ".join(missing),
                    )
                results[schedule.channel] = self._post(schedule, day, final, missing)
        if self._stop.requested.is_set():  # stopping: notifications at the next start
            return results
        try:
            # "recent" by this scheduler's clock, like the digests' days
            today = now.astimezone(UTC).date()
            notify_subscribers(self.services, self.client, settings=self.settings, today=today)
        except Exception:
            log.exception("subscription notifications failed; will retry on the next tick")
        return results

    def _unfinished(self, schedule: Schedule, now: datetime, due: list[date]) -> list[date]:
        """Earlier days whose digest was started and never finished (its poster died or
        failed halfway, and the day is no longer due): finished in its thread, not dropped."""
        local = now.astimezone(ZoneInfo(schedule.timezone)).date()
        since = (local - timedelta(days=RESUME_DAYS)).isoformat()
        days = self.services.store.unfinished_digests(
            schedule.channel, since, idle_for=RESUME_IDLE_SECONDS
        )
        return [d for d in map(date.fromisoformat, days) if d not in due and d < local]

    def _post(
        self, schedule: Schedule, day: date, final: bool = True, missing: Sequence[str] = ()
    ) -> DigestResult:
        return post_digest(
            self.services,
            self.client,
            schedule.channel,
            day,
            topic=schedule.topic,
            max_papers=schedule.max_papers,
            lease_seconds=self.settings.digest_lease_seconds,
            final=final,
            empty_note=self.settings.digest_empty_note,
            missing=missing,
            stop=self._stop,
        )

    def _feeds(self) -> list[Feed]:
        try:
            return [Feed.from_row(row) for row in self.services.store.feeds()]
        except Exception:
            log.exception("cannot read the feeds; digests do not wait for them this tick")
            return []

    def _missing(self, feeds: list[Feed], day: date) -> list[str]:
        """The enabled feeds digests wait for that have not delivered ``day``'s listing."""
        waited = [f for f in feeds if f.enabled and f.waits and f.expects(day)]
        if not waited:
            return []
        delivered = self.services.store.feed_days(day.isoformat())
        return [f.name for f in waited if f.name not in delivered]

    def _log_wait(self, schedule: Schedule, day: date, missing: list[str], wait: timedelta) -> None:
        if (schedule.channel, day) not in self._waiting:
            self._waiting.add((schedule.channel, day))
            log.info(
                "the %s digest for %s waits for %s (until %s)",
                day,
                schedule.channel,
                ", ".join(missing),
                schedule.deadline(day, wait).strftime("%H:%M %Z"),
            )

    def _settled(self, channel: str, day: date) -> bool:
        status = self.services.store.digest_status(channel, day.isoformat())
        return status is not None and status["status"] in ("posted", "empty")

    def start(self) -> None:
        """Run `tick` in the background every tick_seconds (APScheduler)."""
        from apscheduler.schedulers.background import BackgroundScheduler

        self._stop.reset()
        self._scheduler = BackgroundScheduler()
        self._scheduler.add_job(
            self._safe_tick,
            "interval",
            seconds=self.settings.tick_seconds,
            next_run_time=datetime.now(),
            max_instances=1,
            coalesce=True,
        )
        self._scheduler.start()

    def request_stop(self) -> None:
        """No new tick, and no new digest message from the running one (it gives its digest
        back unfinished)."""
        self._stop.request()
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.shutdown(wait=False)

    def stop(self, grace: float = 0.0) -> None:
        """`request_stop`, then wait up to ``grace`` s for the running tick; a digest still
        being built then is given back here (its claim would otherwise wait for its lease)."""
        self.request_stop()
        try:
            if self._idle.wait(grace):
                return
        except KeyboardInterrupt:  # a second SIGTERM/Ctrl-C: no more waiting
            pass
        outcome = self._stop.give_back()
        if outcome == "sending":
            log.warning(
                "a digest message was still being sent after the grace; that digest waits for "
                "its claim's lease (PAPERBOT_DIGEST_LEASE_SECONDS) before another start goes on"
            )
        elif outcome == "idle":
            log.info("the scheduler's tick was still running (no digest unfinished)")

    def _safe_tick(self) -> None:
        self._idle.clear()
        try:
            self.tick()
        except Exception:
            log.exception("scheduler tick failed; retrying on the next tick")
        finally:
            self._idle.set()
