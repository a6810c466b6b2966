"""Feeds as configuration: what a feed is, when it is due, and how it is doing.

A feed is a named source the bot polls by itself (`paperbot serve`) or on demand
(`paperbot feeds run`): the HF Daily Papers of the current day (`hf`), an arXiv search by
category and/or query, newest first (`arxiv`), a document on the web (`url`) or a file
re-read each poll (`file`). Definitions and run status live in the bot's store
(bot.sqlite3, tables `feeds`, `feed_status`, `feed_days`); this module is pure: rows in,
decisions out, every time an argument.

When a feed is polled respects its source:

- `hf`: every 30 minutes (the day's list fills during the day); the first poll of a day also
  fetches the days since the last successful poll (at most two), which may have grown after
  it.
- `arxiv`: once per announcement (Sunday to Thursday, 20:00 America/New_York) shortly after
  it; when the day's listing has not shown up yet (the API can lag), again every hour until it
  does or the next announcement is due. Requests are ≥ PAPERBOT_ARXIV_DELAY_SECONDS apart.
- `url`, `file`: every hour.

`--every` changes the interval (for arXiv: the retry interval). A failed poll is retried after
2, 4, 8 … minutes, never later than the feed's interval or PAPERBOT_FEED_MAX_BACKOFF_MINUTES.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from retrieval import PaperbotError
from retrieval import feeds as readers

KINDS = ("hf", "arxiv", "url", "file")
DEFAULT_EVERY_MINUTES = {"hf": 30.0, "arxiv": 60.0, "url": 60.0, "file": 60.0}
MIN_EVERY_MINUTES = {"hf": 5.0, "arxiv": 15.0, "url": 5.0, "file": 1.0}
ARXIV_SETTLE = timedelta(minutes=15)  # poll this long after an announcement
BACKOFF_BASE = timedelta(minutes=2)
HF_CATCHUP_DAYS = 2
DEFAULT_ARXIV_MAX_RESULTS = 200
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_CATEGORY = re.compile(r"^[a-z-]+(\.[A-Za-z-]+)?$")
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\s*$")


class FeedError(PaperbotError):
    """A feed definition that cannot work (bad name, time zone, category, interval...)."""


@dataclass(frozen=True)
class Feed:
    name: str
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    every_minutes: float | None = None  # None: the kind's default
    enabled: bool = True
    wait: bool | None = None  # do digests wait for it? None: the kind's default
    origin: str = "cli"  # cli | env (declared in PAPERBOT_FEEDS)

    # --- what it is ---
    @property
    def interval(self) -> timedelta:
        return timedelta(minutes=self.every_minutes or DEFAULT_EVERY_MINUTES[self.kind])

    @property
    def waits(self) -> bool:
        """Scheduled digests wait for its day's listing (feeds with a daily list do)."""
        return self.wait if self.wait is not None else self.kind in ("hf", "arxiv")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(str(self.params.get("tz") or "UTC"))

    def describe(self) -> str:
        p = self.params
        if self.kind == "hf":
            return f"HF Daily Papers ({p.get('tz') or 'UTC'} days)"
        if self.kind == "arxiv":
            what = " OR ".join(p.get("categories") or [])
            if p.get("query"):
                what = f"{what} AND {p['query']!r}" if what else repr(p["query"])
            return f"arXiv {what}, newest {p.get('max_results', DEFAULT_ARXIV_MAX_RESULTS)}"
        target = _shown_url(str(p["url"])) if self.kind == "url" else str(p.get("path"))
        return target + (f" ({p['format']})" if p.get("format") else "")

    def every_text(self) -> str:
        text = format_minutes(self.interval.total_seconds() / 60)
        return f"after each announcement, retry {text}" if self.kind == "arxiv" else text

    # --- its days ---
    def today(self, now: datetime) -> date:
        """The listing day a poll at ``now`` asks for (arXiv: the latest announced one)."""
        if self.kind == "arxiv":
            return readers.arxiv_current_listing_day(now)
        return now.astimezone(self.tz).date()

    def expects(self, day: date) -> bool:
        """Does the source list papers on this day? (arXiv lists Monday to Friday.)"""
        return day.weekday() < 5 if self.kind == "arxiv" else True

    def hf_days(self, now: datetime, last_success: datetime | None) -> list[date]:
        """The HF days to fetch: today, and the days since the last successful poll (at most
        HF_CATCHUP_DAYS back), whose lists may have grown after that poll."""
        today = self.today(now)
        if last_success is None:
            return [today]
        since = last_success.astimezone(self.tz).date()
        back = max(0, min((today - since).days, HF_CATCHUP_DAYS))
        return [today - timedelta(days=n) for n in range(back, -1, -1)]

    # --- when it is due ---
    def next_due(
        self,
        now: datetime,
        *,
        ok: bool,
        failures: int = 0,
        delivered_today: bool = True,
        max_backoff: timedelta = timedelta(hours=1),
    ) -> datetime:
        """When to poll next after a poll at ``now`` (``failures``: consecutive ones, this
        included; ``delivered_today``: the poll saw papers of `today(now)`)."""
        if not ok:
            cap = min(self.interval, max_backoff)
            return now + min(BACKOFF_BASE * 2 ** max(0, failures - 1), cap)
        if self.kind != "arxiv":
            return now + self.interval
        after_next = readers.arxiv_next_announcement(now) + ARXIV_SETTLE
        return after_next if delivered_today else min(now + self.interval, after_next)

    # --- storage ---
    def row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "params": json.dumps(dict(self.params), sort_keys=True),
            "every_minutes": self.every_minutes,
            "enabled": self.enabled,
            "wait": self.wait,
            "origin": self.origin,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Feed:
        wait = row.get("wait")
        return cls(
            name=str(row["name"]),
            kind=str(row["kind"]),
            params=json.loads(row.get("params") or "{}"),
            every_minutes=row.get("every_minutes"),
            enabled=bool(row.get("enabled", True)),
            wait=None if wait is None else bool(wait),
            origin=str(row.get("origin") or "cli"),
        )


def _shown_url(url: str) -> str:
    """A URL as listings and /healthz show it: no user:password@, no query (API keys)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    hidden = " (query hidden)" if parts.query else ""
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}{hidden}"


# ---------------------------------------------------------------- building feeds from input
def format_minutes(minutes: float) -> str:
    if minutes >= 60 and minutes % 60 == 0:
        return f"every {minutes / 60:g}h"
    return f"every {minutes:g}m"


def parse_interval(text: str) -> float:
    """'30m', '2h', '90s', '1d' or a number of minutes -> minutes."""
    match = _INTERVAL.match(text)
    if not match:
        raise FeedError(f"{text!r} is not an interval; use e.g. 30m, 2h or 1d")
    value = float(match.group(1))
    unit = match.group(2) or "m"
    return value * {"s": 1 / 60, "m": 1, "min": 1, "h": 60, "d": 1440}[unit]


def _check_every(kind: str, every: str | None) -> float | None:
    if every is None:
        return None
    minutes = parse_interval(every)
    if minutes < MIN_EVERY_MINUTES[kind]:
        floor = format_minutes(MIN_EVERY_MINUTES[kind]).removeprefix("every ")
        raise FeedError(f"--every {every} is too often for a {kind} feed; use {floor} or more")
    return minutes


def _check_tz(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise FeedError(
            f"{tz!r} is not a time zone; use a name like Europe/Berlin or UTC"
        ) from None
    return tz


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise FeedError(
            f"{name!r} is not a feed name; use letters, digits, '.', '_' or '-' (at most 64)"
        )
    return name


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:64] or "feed"


def hf_feed(
    name: str | None = None, *, tz: str = "UTC", every: str | None = None, wait: bool | None = None
) -> Feed:
    return Feed(
        check_name(name or "hf"), "hf", {"tz": _check_tz(tz)}, _check_every("hf", every), wait=wait
    )


def arxiv_feed(
    name: str | None = None,
    *,
    categories: Sequence[str] = (),
    query: str | None = None,
    max_results: int = DEFAULT_ARXIV_MAX_RESULTS,
    every: str | None = None,
    wait: bool | None = None,
) -> Feed:
    cats = list(dict.fromkeys(c.strip() for c in categories if c.strip()))
    bad = [c for c in cats if not _CATEGORY.match(c)]
    if bad:
        raise FeedError(f"{bad[0]!r} is not an arXiv category; use e.g. cs.CL, cs.LG or stat.ML")
    query = (query or "").strip() or None
    if not cats and not query:
        raise FeedError("an arXiv feed needs --category (e.g. cs.CL) and/or --query")
    if not 1 <= max_results <= 2000:
        raise FeedError(f"--max-results {max_results}: use 1 to 2000")
    default_name = "arxiv-" + ("-".join(cats) if cats else _slug(query or ""))
    params: dict[str, Any] = {"categories": cats, "max_results": max_results}
    if query:
        params["query"] = query
    return Feed(
        check_name(name or _slug(default_name)),
        "arxiv",
        params,
        _check_every("arxiv", every),
        wait=wait,
    )


def url_feed(
    url: str,
    name: str | None = None,
    *,
    fmt: str | None = None,
    tz: str = "UTC",
    every: str | None = None,
    wait: bool | None = None,
) -> Feed:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise FeedError(f"{url!r} is not an http(s) URL")
    _check_format(fmt)
    params = {"url": url, "format": fmt, "tz": _check_tz(tz)}
    default_name = _slug(f"{parts.hostname}{parts.path}".rstrip("/"))
    return Feed(
        check_name(name or default_name), "url", params, _check_every("url", every), wait=wait
    )


def file_feed(
    path: str,
    name: str | None = None,
    *,
    fmt: str | None = None,
    tz: str = "UTC",
    every: str | None = None,
    wait: bool | None = None,
) -> Feed:
    from pathlib import Path

    resolved = Path(path).expanduser().resolve()
    if resolved.is_dir():
        raise FeedError(f"{path} is a directory; give one file (.jsonl, .csv, .json, .xml, .txt)")
    _check_format(fmt)
    params = {"path": str(resolved), "format": fmt, "tz": _check_tz(tz)}
    return Feed(
        check_name(name or _slug(resolved.stem)),
        "file",
        params,
        _check_every("file", every),
        wait=wait,
    )


def _check_format(fmt: str | None) -> None:
    if fmt is not None and fmt not in readers.FORMATS:
        raise FeedError(f"unknown format {fmt!r}; choose one of {', '.join(readers.FORMATS)}")


def parse_spec(spec: str) -> list[Feed]:
    """Feeds declared in PAPERBOT_FEEDS: ';'-separated `hf`, `hf:Europe/Berlin`,
    `arxiv:cs.CL,cs.LG`, `url:https://…`, `file:/path/papers.jsonl`."""
    declared: list[Feed] = []
    for item in (part.strip() for part in spec.split(";")):
        if not item:
            continue
        kind, _, arg = item.partition(":")
        kind, arg = kind.strip().lower(), arg.strip()
        if kind == "hf":
            feed = hf_feed(tz=arg or "UTC")
        elif kind == "arxiv":
            feed = arxiv_feed(categories=[c for c in re.split(r"[,\s]+", arg) if c])
        elif kind == "url":
            feed = url_feed(arg)
        elif kind == "file":
            feed = file_feed(arg)
        else:
            raise FeedError(
                f"PAPERBOT_FEEDS: {item!r} is not a feed; use hf, arxiv:cs.CL,cs.LG, "
                "url:https://… or file:/path (separated by ';')"
            )
        declared.append(Feed(feed.name, feed.kind, feed.params, origin="env"))
    return declared


# ---------------------------------------------------------------- status
@dataclass(frozen=True, slots=True)
class FeedStatus:
    """How a feed is doing, from its `feed_status` row (times as aware datetimes)."""

    last_attempt: datetime | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    failures: int = 0
    next_due: datetime | None = None
    last_seen: int | None = None
    last_new: int | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | None) -> FeedStatus:
        if not row:
            return cls()
        return cls(
            last_attempt=_when(row.get("last_attempt")),
            last_success=_when(row.get("last_success")),
            last_error=row.get("last_error"),
            failures=int(row.get("failures") or 0),
            next_due=_when(row.get("next_due")),
            last_seen=row.get("last_seen"),
            last_new=row.get("last_new"),
        )

    def health(self, alert_after: int) -> str:
        """ok | erroring (the last poll failed) | failing (the last `alert_after` polls
        failed) | never-succeeded (polled, never succeeded) | pending (not polled yet)."""
        if self.last_attempt is None:
            return "pending"
        if self.failures >= alert_after:
            return "failing"
        if self.last_success is None:
            return "never-succeeded"
        return "erroring" if self.failures else "ok"


def _when(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(float(value), UTC)


def iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def feed_report(feed: Feed, status: FeedStatus, alert_after: int) -> dict[str, Any]:
    """One feed as `paperbot feeds list --json` and /healthz show it."""
    return {
        "name": feed.name,
        "kind": feed.kind,
        "what": feed.describe(),
        "enabled": feed.enabled,
        "waited_for": feed.waits,
        "every": feed.every_text(),
        "status": status.health(alert_after) if feed.enabled else "disabled",
        "last_attempt": iso(status.last_attempt),
        "last_success": iso(status.last_success),
        "last_error": status.last_error,
        "failures": status.failures,
        "next_due": iso(status.next_due) if feed.enabled else None,
        "last_seen": status.last_seen,
        "last_new": status.last_new,
        "origin": feed.origin,
    }
