"""Polling feeds: one poll of one feed (`FeedRunner`), and the background thread inside
`paperbot serve` that polls whatever is due (`FeedWatcher`).

A poll fetches the feed (bot/slack/feeds.py says what and when), gives every paper the day
the feed listed it, and ingests in-process through `Corpus.ingest(records, feed=name)`: the
corpus's single-writer lock serialises it with a `paperbot ingest` or `paperbot feeds run`
started elsewhere, and the next question in `serve` sees the new papers. The outcome goes to
the bot's store: last success or error (one line, secrets redacted), consecutive failures, the
next due time (backoff on failure) and the listing days delivered, which scheduled digests
wait for. Each poll is claimed in the store first, so several `serve` replicas on one data
dir, or `serve` and a cron `paperbot feeds run`, never poll one feed at once.

The watcher never takes the bot down: a failing feed backs off and shows up in
`paperbot doctor` and /healthz; answering runs in its own pool and never waits for a poll.
Every time is an argument (`poll(now)`), so tests drive it with any clock.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.services import Services
from bot.slack.feeds import Feed, FeedStatus, feed_report, iso, parse_spec
from bot.slack.settings import SlackSettings
from bot.slack.store import BotStore
from retrieval import Corpus, Paper, PaperbotError, RecordError, RetrievalSettings
from retrieval import feeds as readers

log = logging.getLogger(__name__)
Record = Paper | RecordError
Fetch = Callable[[Feed, datetime, FeedStatus], Iterable[Record]]
POLL_LEASE_SECONDS = 900.0  # a poller that died mid-poll holds a feed this long at most
_SECRET_SHAPES = re.compile(r"\b(xox[a-z]-[\w-]+|xapp-[\w-]+|sk-[\w-]{8,}|hf_[A-Za-z0-9]{8,})")
_URL_USERINFO = re.compile(r"(https?://)[^/\s@]+@")
_URL_QUERY = re.compile(r"(https?://[^\s?#]+)[?#][^\s'\"]*?(?=[:,;.)\]]?(?:\s|$))")


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """One line without credentials: known secret values, token shapes, URL user:password@
    and query strings (which carry API keys) are removed; at most 300 characters."""
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "***")
    text = _SECRET_SHAPES.sub("***", text)
    text = _URL_USERINFO.sub(r"\1", text)
    text = _URL_QUERY.sub(r"\1", text)
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:299] + "…"


@dataclass
class FeedRun:
    """What one poll of one feed did."""

    feed: str
    at: datetime
    ok: bool = True
    next_due: datetime | None = None
    days: dict[date, tuple[int, int]] = field(default_factory=dict)  # day -> (papers, new)
    seen: int = 0
    new: int = 0
    updated: int = 0
    bad_records: int = 0
    error: str | None = None
    skipped: str | None = None  # why it was not polled (not due, polled by another process)

    def line(self) -> str:
        """'hf: 12 papers listed 2025-05-16, 3 new' (the log line and `feeds run` output)."""
        if self.skipped:
            return f"{self.feed}: skipped ({self.skipped})"
        if not self.ok:
            return f"{self.feed}: FAILED: {self.error}"
        if not self.seen:
            text = f"{self.feed}: no papers"
        elif not self.days:
            text = f"{self.feed}: {self.seen} papers"
        else:
            listed = ", ".join(
                f"{n} listed {day}" for day, (n, _) in sorted(self.days.items(), reverse=True)
            )
            text = (
                f"{self.feed}: {self.seen} papers ({listed})"
                if len(self.days) > 1
                else (f"{self.feed}: {self.seen} papers listed {next(iter(self.days))}")
            )
        extras = [f"{self.new} new"]
        if self.updated:
            extras.append(f"{self.updated} updated")
        if self.bad_records:
            extras.append(f"{self.bad_records} bad records skipped")
        return f"{text}, {', '.join(extras)}"


class FeedRunner:
    """Polls feeds into a corpus and records the outcome in the bot's store."""

    def __init__(
        self,
        corpus: Corpus,
        store: BotStore,
        settings: RetrievalSettings,
        slack: SlackSettings,
        *,
        fetch: Fetch | None = None,
        owner: str | None = None,
    ) -> None:
        self.corpus = corpus
        self.store = store
        self.settings = settings
        self.slack = slack
        self.fetch = fetch or default_fetch(settings)
        self.owner = owner or owner_id()
        self._secrets = [
            s.get_secret_value()
            for s in (
                settings.openai_api_key,
                slack.bot_token,
                slack.app_token,
                slack.signing_secret,
            )
            if s is not None
        ]

    def feeds(self) -> list[tuple[Feed, FeedStatus]]:
        return [(Feed.from_row(r), FeedStatus.from_row(r)) for r in self.store.feeds()]

    def run_due(
        self,
        now: datetime,
        *,
        names: Sequence[str] = (),
        due_only: bool = True,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> list[FeedRun]:
        """Poll the named feeds (default: every enabled feed); with ``due_only`` only those
        due at ``now``. Feeds not polled come back with `skipped` set."""
        known = self.feeds()
        missing = sorted(set(names) - {f.name for f, _ in known})
        if missing:
            raise PaperbotError(
                f"No feed named {missing[0]!r}; `paperbot feeds list` shows the feeds."
            )
        runs: list[FeedRun] = []
        for feed, status in known:
            if should_stop():
                break
            if (names and feed.name not in names) or (not names and not feed.enabled):
                continue
            runs.append(self.run(feed, status, now, due_only=due_only))
        return runs

    def run(
        self, feed: Feed, status: FeedStatus, now: datetime, *, due_only: bool = False
    ) -> FeedRun:
        """Poll one feed now (unless, with ``due_only``, it is not due), if no other process
        is polling it."""
        run = FeedRun(feed.name, now)
        if not self.store.claim_feed(
            feed.name, self.owner, now.timestamp(), POLL_LEASE_SECONDS, due_only=due_only
        ):
            run.skipped = self._why_not(feed, now)
            return run
        finished = False
        try:
            self._poll(feed, status, now, run)
            failures = 0 if run.ok else status.failures + 1
            run.next_due = feed.next_due(
                now,
                ok=run.ok,
                failures=failures,
                delivered_today=feed.today(now) in run.days,
                max_backoff=timedelta(minutes=self.slack.feed_max_backoff_minutes),
            )
            self.store.finish_feed(
                feed.name,
                at=now.timestamp(),
                ok=run.ok,
                next_due=run.next_due.timestamp(),
                error=run.error,
                seen=run.seen,
                new=run.new,
                days={day.isoformat(): counts for day, counts in run.days.items()},
            )
            finished = True
        finally:
            if not finished:
                self.store.release_feed(feed.name, self.owner)
        if run.ok:
            log.info("feed %s", run.line())
        else:
            log.warning("feed %s (next try %s)", run.line(), iso(run.next_due))
        return run

    def _why_not(self, feed: Feed, now: datetime) -> str:
        row = next((r for r in self.store.feeds() if r["name"] == feed.name), None)
        if row and row.get("lease_until") and row["lease_until"] > now.timestamp():
            return f"being polled by {row['owner']}"
        if row and not row["enabled"]:
            return "disabled"
        status = FeedStatus.from_row(row)
        return f"due at {status.next_due:%Y-%m-%d %H:%M %Z}" if status.next_due else "not due"

    def _poll(self, feed: Feed, status: FeedStatus, now: datetime, run: FeedRun) -> None:
        try:
            records = self._dated(feed, now, list(self.fetch(feed, now, status)))
            papers = [r for r in records if isinstance(r, Paper)]
            bad = [r for r in records if isinstance(r, RecordError)]
            report = self.corpus.ingest(records, feed=feed.name) if records else None
        except Exception as exc:  # a feed's failure is recorded, never raised into serve
            run.ok = False
            run.error = redact(f"{exc}" or type(exc).__name__, self._secrets)
            # an expected failure (dead URL, bad feed, store down) is its one line; anything
            # else is a bug worth its traceback in the log
            expected = isinstance(exc, PaperbotError)
            log.log(
                logging.DEBUG if expected else logging.ERROR,
                "feed %s failed",
                feed.name,
                exc_info=True,
            )
            return
        new_ids = set(report.new) if report else set()
        days: dict[date, list[int]] = {}
        for paper in {p.paper_id: p for p in papers}.values():
            if paper.listed is not None:
                counts = days.setdefault(paper.listed, [0, 0])
                counts[0] += 1
                counts[1] += paper.paper_id in new_ids
        run.days = {day: (n, fresh) for day, (n, fresh) in days.items()}
        run.seen = len({p.paper_id for p in papers})
        run.new = len(new_ids)
        run.updated = len(report.updated) if report else 0
        run.bad_records = len(bad)
        if bad:
            log.warning("feed %s: %d records skipped, e.g. %s", feed.name, len(bad), bad[0].reason)

    def _dated(self, feed: Feed, now: datetime, records: list[Record]) -> list[Record]:
        """Give each paper without a listing day of its own the day this poll stands for.

        A url or file feed is read whole at every poll: there only the papers it brings for
        the first time get the poll's day (a stored paper keeps the listings it has, and the
        listings do not grow by the whole file every day).
        """
        undated = [r.paper_id for r in records if isinstance(r, Paper) and r.listed is None]
        stored = (
            self.corpus.papers_by_id(undated) if undated and feed.kind in ("url", "file") else {}
        )
        today = feed.today(now)
        return [
            r.model_copy(update={"listed": today})
            if isinstance(r, Paper) and r.listed is None and r.paper_id not in stored
            else r
            for r in records
        ]


def seed_declared(store: BotStore, spec: str) -> list[str]:
    """Make the feeds declared in PAPERBOT_FEEDS (``spec``) the store's `env` feeds: added
    or updated, and env feeds no longer declared removed. Returns the declared names."""
    declared = parse_spec(spec)
    names = {f.name for f in declared}
    current = {r["name"]: r for r in store.feeds()}
    for feed in declared:
        row = current.get(feed.name)
        if row is not None and row.get("origin") != "env":
            log.warning("PAPERBOT_FEEDS declares %s, a feed added with the CLI: kept", feed.name)
            continue
        values = feed.row()
        if row is not None:  # `paperbot feeds disable` of a declared feed holds
            values["enabled"] = row["enabled"]
        store.add_feed(values, replace=True)
    for name, row in current.items():
        if row.get("origin") == "env" and name not in names:
            store.remove_feed(name)
    return sorted(names)


def default_fetch(settings: RetrievalSettings) -> Fetch:
    """The real sources, by feed kind (URLs from settings: PAPERBOT_HF_API_URL, …)."""

    def fetch(feed: Feed, now: datetime, status: FeedStatus) -> Iterable[Record]:
        p = feed.params
        if feed.kind == "hf":
            return _hf(settings, feed, now, status)
        if feed.kind == "arxiv":
            query = readers.arxiv_search_query(p.get("categories") or (), p.get("query"))
            return list(
                readers.from_arxiv(
                    settings, query, None, int(p.get("max_results", 200)), newest_first=True
                )
            )
        # (HF page text dates itself by its date line; undated papers get the poll's day)
        if feed.kind == "url":
            return list(readers.from_url(settings, str(p["url"]), fmt=p.get("format")))
        if feed.kind == "file":
            return list(readers.from_path(settings, Path(str(p["path"])), fmt=p.get("format")))
        raise ValueError(f"unknown feed kind {feed.kind!r}")

    return fetch


def _hf(settings: RetrievalSettings, feed: Feed, now: datetime, status: FeedStatus) -> list[Record]:
    """Today's list, and the days since the last successful poll (best effort: a failure
    there is logged, a failure of today's list fails the poll)."""
    days = feed.hf_days(now, status.last_success)
    records: list[Record] = []
    for day in days:
        try:
            fetched = list(readers.from_hf(settings, day))
        except Exception as exc:
            if day == days[-1]:
                raise
            log.warning("feed %s: could not catch up on %s: %s", feed.name, day, exc)
            continue
        records += [
            r.model_copy(update={"listed": day}) if isinstance(r, Paper) and r.listed is None else r
            for r in fetched
        ]
    return records


class FeedWatcher:
    """Polls due feeds in a background thread until stopped (inside `paperbot serve`)."""

    def __init__(
        self,
        runner: FeedRunner,
        *,
        clock: Callable[[], datetime] | None = None,
        max_sleep: float = 60.0,
    ) -> None:
        self.runner = runner
        self.clock = clock or (lambda: datetime.now().astimezone())
        self.max_sleep = max_sleep  # feeds added by the CLI are noticed this quickly
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self, now: datetime | None = None) -> list[FeedRun]:
        """Poll every due feed once; never raises."""
        try:
            runs = self.runner.run_due(now or self.clock(), should_stop=self._stop.is_set)
        except Exception:
            log.exception("polling the feeds failed; trying again shortly")
            return []
        return [r for r in runs if not r.skipped]

    def seconds_to_next(self, now: datetime) -> float:
        """How long the thread may sleep: until the next feed is due, at most max_sleep."""
        try:
            dues = [s.next_due for f, s in self.runner.feeds() if f.enabled]
        except Exception:  # the store is down: not more often than a due feed is looked at
            return max(5.0, self.max_sleep)
        # a feed due now but not polled is being polled by another process: look again soon
        waits = [0.0 if d is None else (d - now).total_seconds() for d in dues]
        return max(5.0, min([self.max_sleep, *waits]))

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="paperbot-feeds", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop after the poll in progress (if any); True when the thread has ended."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the feed watcher is still ingesting; leaving it to exit with serve")
            return False
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.seconds_to_next(self.clock()))


def watch_feeds(
    services: Services, slack: SlackSettings, *, clock: Callable[[], datetime] | None = None
) -> FeedWatcher | None:
    """The watcher `paperbot serve` runs (not started), or None with
    PAPERBOT_FEEDS_ENABLED=false. PAPERBOT_FEEDS is added to the feeds first, so a bad
    declaration stops serve at once."""
    seed_declared(services.store, slack.feeds)
    if not slack.feeds_enabled:
        log.info("feeds: not polled here (PAPERBOT_FEEDS_ENABLED=false)")
        return None
    runner = FeedRunner(services.corpus, services.store, services.settings, slack)
    names = [f.name for f, _ in runner.feeds() if f.enabled]
    if names:
        log.info("feeds: polling %s", ", ".join(names))
    else:
        log.warning(
            "feeds: none configured, so nothing brings new papers in; add one with "
            "`paperbot feeds add hf` (or ingest from cron)"
        )
    # a feed added or enabled with the CLI (another process) is noticed at the next tick
    return FeedWatcher(runner, clock=clock, max_sleep=min(60.0, slack.tick_seconds))


def health(store: BotStore, alert_after: int, watcher: FeedWatcher | None) -> dict[str, Any]:
    """The feeds part of /healthz: the watcher (running, stopped, off), each feed's status
    and the failing ones. Never raises: a failing feed is not a failing bot (liveness)."""
    try:
        rows = store.feeds()
    except Exception as exc:
        return {"feed_watcher": _watcher_state(watcher), "feeds_error": redact(str(exc))}
    feeds = [feed_report(Feed.from_row(r), FeedStatus.from_row(r), alert_after) for r in rows]
    return {
        "feed_watcher": _watcher_state(watcher),
        "failing_feeds": [
            f["name"] for f in feeds if f["status"] in ("failing", "never-succeeded")
        ],
        "feeds": feeds,
    }


def _watcher_state(watcher: FeedWatcher | None) -> str:
    if watcher is None:
        return "off"
    return "running" if watcher.running else "stopped"
