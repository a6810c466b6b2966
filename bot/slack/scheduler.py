"""Digest schedules and subscription checks, driven by a periodic tick.

A tick (every PAPERBOT_TICK_SECONDS, run by APScheduler in `paperbot serve`) posts each
channel's digest once its local time has passed today. Because `tick(now)` takes the clock
as an argument, a missed time (paperbot was down at 09:00) is caught up on the next tick
the same day, and tests drive it with any clock. Exactly-once comes from the bot store's
(channel, day) claims, so restarts and several instances are safe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.services import Services
from bot.slack.digest_posting import DigestResult, post_digest
from bot.slack.notify import notify_subscribers
from bot.slack.settings import SlackSettings

log = logging.getLogger(__name__)


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
        """Post every due digest that was not posted yet; then notify subscribers."""
        now = now or self.clock()
        results: dict[str, DigestResult] = {}
        for schedule in self.schedules():
            day = schedule.due_day(now)
            if day is None or self._settled(schedule.channel, day):
                continue
            results[schedule.channel] = post_digest(
                self.services,
                self.client,
                schedule.channel,
                day,
                topic=schedule.topic,
                max_papers=schedule.max_papers,
                lease_seconds=self.settings.digest_lease_seconds,
            )
        try:
            notify_subscribers(self.services, self.client)
        except Exception:
            log.exception("subscription notifications failed; will retry on the next tick")
        return results

    def _settled(self, channel: str, day: date) -> bool:
        status = self.services.store.digest_status(channel, day.isoformat())
        return status is not None and status["status"] in ("posted", "empty")

    def start(self) -> None:
        """Run `tick` in the background every tick_seconds (APScheduler)."""
        from apscheduler.schedulers.background import BackgroundScheduler

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

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)

    def _safe_tick(self) -> None:
        try:
            self.tick()
        except Exception:
            log.exception("scheduler tick failed; retrying on the next tick")
