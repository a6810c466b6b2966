"""Feeds as configuration and the watcher that polls them inside `paperbot serve`.

Poll policies (source-aware intervals, the arXiv announcement cycle, backoff), one poll of a
feed against fakes and against the local feed server, exactly-one poller per feed, the
thread's clean start and stop, the health report and digests that wait for their feeds.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.services import Services
from bot.slack.feed_watcher import (
    FeedRunner,
    FeedWatcher,
    health,
    redact,
    seed_declared,
)
from bot.slack.feeds import (
    Feed,
    FeedError,
    FeedStatus,
    arxiv_feed,
    file_feed,
    hf_feed,
    parse_interval,
    parse_spec,
    url_feed,
)
from bot.slack.scheduler import DigestScheduler
from bot.slack.settings import SlackSettings
from bot.slack.store import BotStore
from retrieval import Corpus, Paper, RecordError, RetrievalSettings, SourceError
from retrieval import feeds as readers
from tests.support.feed_server import FeedServer

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def ny(day: str, hh: int, mm: int = 0) -> datetime:
    return datetime.fromisoformat(f"{day}T{hh:02d}:{mm:02d}").replace(tzinfo=NY)


def slack(**overrides: Any) -> SlackSettings:
    return SlackSettings(_env_file=None, **overrides)  # type: ignore[call-arg]


def paper(n: int, listed: date | None = None) -> Paper:
    return Paper(
        paper_id=f"2505.{n:05d}",
        arxiv_id=f"2505.{n:05d}",
        title=f"Paper number {n} on sparse retrieval",
        abstract=f"We study sparse retrieval variant {n}. It works well on benchmarks.",
        source="arxiv",
        listed=listed,
    )


# ---------------------------------------------------------------- the arXiv calendar
@pytest.mark.parametrize(
    ("submitted", "listing"),
    [
        (ny("2025-05-13", 9), "2025-05-14"),  # Tue before 14:00 -> announced Tue 20:00 -> Wed
        (ny("2025-05-13", 15), "2025-05-15"),  # after the cutoff: Wednesday's batch
        (ny("2025-05-15", 13, 59), "2025-05-16"),  # Thu -> Friday's listing
        (ny("2025-05-16", 10), "2025-05-19"),  # Fri -> announced Sunday -> Monday
        (ny("2025-05-17", 12), "2025-05-20"),  # Saturday -> Monday's cutoff -> Tuesday
        (datetime(2025, 5, 15, 17, 59, tzinfo=UTC), "2025-05-16"),  # 13:59 EDT
    ],
)
def test_an_arxiv_paper_is_listed_on_the_day_after_its_announcement(
    submitted: datetime, listing: str
) -> None:
    assert readers.arxiv_listing_day(submitted) == date.fromisoformat(listing)


def test_the_arxiv_cycle_announces_sunday_to_thursday_evenings() -> None:
    assert readers.arxiv_next_announcement(ny("2025-05-15", 19, 59)) == ny("2025-05-15", 20)
    assert readers.arxiv_next_announcement(ny("2025-05-15", 20)) == ny("2025-05-18", 20)
    assert readers.arxiv_current_listing_day(ny("2025-05-15", 19)) == date(2025, 5, 15)
    assert readers.arxiv_current_listing_day(ny("2025-05-15", 20, 1)) == date(2025, 5, 16)
    assert readers.arxiv_current_listing_day(ny("2025-05-17", 12)) == date(2025, 5, 16)
    assert readers.arxiv_current_listing_day(ny("2025-05-18", 21)) == date(2025, 5, 19)


def test_arxiv_search_queries() -> None:
    assert readers.arxiv_search_query(["cs.CL"]) == "cat:cs.CL"
    assert readers.arxiv_search_query(["cs.CL", "cs.LG"], "abs:rag") == (
        "(cat:cs.CL OR cat:cs.LG) AND (abs:rag)"
    )
    with pytest.raises(SourceError, match="categories"):
        readers.arxiv_search_query([])


# ---------------------------------------------------------------- poll policies
def test_hf_polls_every_half_hour_and_backs_off_up_to_its_interval() -> None:
    feed = hf_feed()
    now = datetime(2025, 5, 16, 8, 0, tzinfo=UTC)
    assert feed.next_due(now, ok=True) == now + timedelta(minutes=30)
    waits = [feed.next_due(now, ok=False, failures=n) - now for n in range(1, 7)]
    assert [w.total_seconds() / 60 for w in waits] == [2, 4, 8, 16, 30, 30]
    hourly = arxiv_feed(categories=["cs.CL"])
    capped = hourly.next_due(now, ok=False, failures=9, max_backoff=timedelta(minutes=45))
    assert capped - now == timedelta(minutes=45)


def test_arxiv_polls_after_each_announcement_and_hourly_until_the_listing_shows() -> None:
    feed = arxiv_feed(categories=["cs.CL"])
    after = ny("2025-05-15", 20, 15)
    assert feed.today(after) == date(2025, 5, 16)
    # Friday's listing seen: nothing new before Sunday's announcement
    assert feed.next_due(after, ok=True, delivered_today=True) == ny("2025-05-18", 20, 15)
    # not there yet (the API lags): again in an hour
    assert feed.next_due(after, ok=True, delivered_today=False) == after + timedelta(hours=1)
    # ... but never past the next announcement
    late = ny("2025-05-18", 19, 50)
    assert feed.next_due(late, ok=True, delivered_today=False) == ny("2025-05-18", 20, 15)
    assert feed.expects(date(2025, 5, 16)) and not feed.expects(date(2025, 5, 17))


def test_hf_catches_up_on_the_days_since_its_last_success() -> None:
    feed = hf_feed(tz="Europe/Berlin")
    now = datetime(2025, 5, 16, 0, 20, tzinfo=BERLIN)
    assert feed.hf_days(now, None) == [date(2025, 5, 16)]
    assert feed.hf_days(now, now - timedelta(hours=1)) == [date(2025, 5, 15), date(2025, 5, 16)]
    assert feed.hf_days(now, now - timedelta(days=9)) == [
        date(2025, 5, 14),
        date(2025, 5, 15),
        date(2025, 5, 16),
    ]


def test_bad_feed_definitions_name_the_fix(tmp_path: Path) -> None:
    assert parse_interval("90s") == 1.5 and parse_interval("2h") == 120
    assert parse_interval("45") == 45
    for make, message in [
        (lambda: hf_feed(tz="Mars/Olympus"), "time zone"),
        (lambda: hf_feed(every="1m"), "too often"),
        (lambda: hf_feed(every="soon"), "30m"),
        (lambda: hf_feed("bad name!"), "feed name"),
        (lambda: arxiv_feed(categories=["CL"]), "cs.CL"),
        (lambda: arxiv_feed(), "--category"),
        (lambda: arxiv_feed(categories=["cs.CL"], max_results=0), "1 to 2000"),
        (lambda: url_feed("ftp://example.org/x"), "http"),
        (lambda: url_feed("https://example.org/x.jsonl", fmt="xls"), "jsonl"),
        (lambda: file_feed(str(tmp_path)), "directory"),
    ]:
        with pytest.raises(FeedError, match=message):
            make()


def test_feeds_declared_in_settings(tmp_path: Path) -> None:
    hf, arxiv, local = parse_spec(f"hf:Europe/Berlin; arxiv:cs.CL,cs.LG ;file:{tmp_path}/a.jsonl")
    assert (hf.name, hf.params["tz"]) == ("hf", "Europe/Berlin")
    assert arxiv.name == "arxiv-cs.CL-cs.LG" and arxiv.params["categories"] == ["cs.CL", "cs.LG"]
    assert local.kind == "file" and local.name == "a" and local.origin == "env"
    with pytest.raises(FeedError, match="PAPERBOT_FEEDS"):
        parse_spec("rss:https://example.org")
    with BotStore.in_data_dir(tmp_path / "data") as store:
        store.add_feed(hf_feed("mine").row())
        assert seed_declared(store, "hf;arxiv:cs.CL") == ["arxiv-cs.CL", "hf"]
        assert store.set_feed_enabled("hf", False)
        seed_declared(store, "hf")  # arxiv no longer declared: removed; hf stays disabled
        rows = {r["name"]: r for r in store.feeds()}
        assert set(rows) == {"hf", "mine"} and not rows["hf"]["enabled"]


# ---------------------------------------------------------------- one poll
class ScriptedFetch:
    """A fetcher that returns (or raises) what the test queued, and records its calls."""

    def __init__(self) -> None:
        self.script: list[list[Paper | RecordError] | Exception] = []
        self.calls: list[tuple[str, datetime]] = []

    def __call__(
        self, feed: Feed, now: datetime, status: FeedStatus
    ) -> Iterable[Paper | RecordError]:
        self.calls.append((feed.name, now))
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        return step


@pytest.fixture
def store(settings: RetrievalSettings) -> Iterator[BotStore]:
    with BotStore.in_data_dir(settings.data_dir) as opened:
        yield opened


@pytest.fixture
def fetch() -> ScriptedFetch:
    return ScriptedFetch()


@pytest.fixture
def runner(
    fake_corpus: Corpus, store: BotStore, settings: RetrievalSettings, fetch: ScriptedFetch
) -> FeedRunner:
    return FeedRunner(
        fake_corpus, store, settings, slack(bot_token="xoxb-1-secret-token"), fetch=fetch
    )


def _feed_row(store: BotStore, name: str) -> dict[str, Any]:
    return next(r for r in store.feeds() if r["name"] == name)


def test_a_poll_ingests_with_listing_days_and_records_its_status(
    runner: FeedRunner, store: BotStore, fetch: ScriptedFetch, fake_corpus: Corpus
) -> None:
    store.add_feed(arxiv_feed("arxiv", categories=["cs.CL"]).row())
    friday = date(2025, 5, 16)
    fetch.script = [
        [
            paper(1, friday),
            paper(2, friday),
            paper(3, date(2025, 5, 15)),
            RecordError("arxiv", "entry 4", "no title"),
        ]
    ]
    now = ny("2025-05-15", 20, 15)
    [run] = runner.run_due(now)
    assert run.ok and run.seen == 3 and run.new == 3 and run.bad_records == 1
    assert run.days == {friday: (2, 2), date(2025, 5, 15): (1, 1)}
    assert run.line() == (
        "arxiv: 3 papers (2 listed 2025-05-16, 1 listed 2025-05-15), 3 new, 1 bad records skipped"
    )
    assert fake_corpus.paper("2505.00001").listed == friday
    assert store.feed_days("2025-05-16") == {"arxiv": 2}
    row = _feed_row(store, "arxiv")
    assert row["last_success"] == now.timestamp() and row["failures"] == 0
    assert row["last_seen"] == 3 and row["last_new"] == 3 and row["owner"] is None
    assert row["next_due"] == ny("2025-05-18", 20, 15).timestamp()  # Friday's listing was there
    assert (runner.run_due(now + timedelta(hours=1))[0].skipped or "").startswith("due at")
    # the same list again: nothing new, nothing re-listed
    [again] = runner.run_due(ny("2025-05-18", 20, 15))
    assert again.ok and again.new == 0 and again.line().endswith("0 new, 1 bad records skipped")


def test_a_failing_feed_backs_off_redacts_its_error_and_recovers(
    runner: FeedRunner, store: BotStore, fetch: ScriptedFetch
) -> None:
    store.add_feed(hf_feed().row())
    fetch.script = [
        SourceError("Could not fetch https://user:pw@hf.example/api?key=s3cr3t: HTTP 503"),
        RuntimeError("token xoxb-1-secret-token refused"),
        [paper(7)],
    ]
    now = datetime(2025, 5, 16, 8, 0, tzinfo=UTC)
    [first] = runner.run_due(now)
    assert not first.ok and first.next_due == now + timedelta(minutes=2)
    assert first.error == "Could not fetch https://hf.example/api: HTTP 503"
    assert first.line().startswith("hf: FAILED: Could not fetch")
    later = now + timedelta(minutes=2)
    [second] = runner.run_due(later)
    assert second.next_due == later + timedelta(minutes=4)
    assert "xoxb" not in (second.error or "") and "***" in (second.error or "")
    row = _feed_row(store, "hf")
    assert row["failures"] == 2 and row["last_success"] is None
    assert FeedStatus.from_row(row).health(alert_after=2) == "failing"
    [third] = runner.run_due(later + timedelta(minutes=4))
    assert third.ok and third.days == {date(2025, 5, 16): (1, 1)}  # dated by the poll's day
    row = _feed_row(store, "hf")
    assert row["failures"] == 0 and row["last_error"] is None


def test_redaction() -> None:
    assert redact("GET https://a:b@x.org/p?token=1 failed\n  at line 2", ["zzzzzz"]) == (
        "GET https://x.org/p failed at line 2"
    )
    assert redact("key sk-abcdefghijklmnop and my-api-key-value", ["my-api-key-value"]) == (
        "key *** and ***"
    )


def test_one_poller_per_feed_across_processes(
    runner: FeedRunner,
    store: BotStore,
    fetch: ScriptedFetch,
    fake_corpus: Corpus,
    settings: RetrievalSettings,
) -> None:
    """Two `serve` replicas (or serve and cron) on one data dir: a feed being polled by one
    is skipped by the other; a poller that died holds it no longer than its lease."""
    store.add_feed(hf_feed().row())
    fetch.script = [[paper(1)]]
    now = datetime(2025, 5, 16, 8, 0, tzinfo=UTC)
    assert store.claim_feed("hf", "other-host:1", now.timestamp(), 900)
    [run] = runner.run_due(now, due_only=False)
    assert run.skipped == "being polled by other-host:1" and fetch.calls == []
    [later] = runner.run_due(now + timedelta(minutes=16))  # the lease ran out
    assert later.ok and fetch.calls


def test_url_and_file_feeds_date_only_what_they_bring_first(
    runner: FeedRunner, store: BotStore, fake_corpus: Corpus, tmp_path: Path
) -> None:
    """A file is read whole at every poll: a paper gets the day of the poll that first
    brought it, and later polls add no listing (the table does not grow by the file daily)."""
    feed_file = tmp_path / "picks.jsonl"
    lines = [
        {"title": f"Pick {n} on sparse retrieval", "abstract": f"Abstract number {n}. It is fine."}
        for n in (1, 2)
    ]
    feed_file.write_text("\n".join(json.dumps(x) for x in lines))
    store.add_feed(file_feed(str(feed_file), "picks").row())
    real = FeedRunner(fake_corpus, store, runner.settings, runner.slack)  # the real readers
    monday = datetime(2025, 5, 19, 9, 0, tzinfo=UTC)
    [run] = real.run_due(monday)
    assert run.ok and run.days == {date(2025, 5, 19): (2, 2)}
    lines.append(
        {"title": "Pick 3 on sparse retrieval", "abstract": "Abstract number 3. It is fine."}
    )
    feed_file.write_text("\n".join(json.dumps(x) for x in lines))
    [tuesday] = real.run_due(monday + timedelta(days=1))
    assert tuesday.days == {date(2025, 5, 20): (1, 1)} and tuesday.seen == 3
    days = sorted(str(p.listed) for p in fake_corpus.papers())
    assert days == ["2025-05-19", "2025-05-19", "2025-05-20"]


def test_a_url_feed_from_the_local_server(
    runner: FeedRunner, store: BotStore, fake_corpus: Corpus
) -> None:
    with FeedServer() as server:
        rows = [
            {"title": "Served paper on rerankers", "abstract": "All about rerankers. It is good."}
        ]
        server.enqueue("/export", 200, "\n".join(json.dumps(r) for r in rows))
        store.add_feed(url_feed(server.url + "/export?token=abc", "export").row())
        real = FeedRunner(fake_corpus, store, runner.settings, runner.slack)
        [run] = real.run_due(datetime(2025, 5, 16, 8, 0, tzinfo=UTC))
        assert run.ok and run.new == 1
        assert server.requests_to("/export")[0].params == {"token": "abc"}
        server.enqueue("/gone", 404, "no")
        store.add_feed(url_feed(server.url + "/gone?token=abc", "gone").row())
        [gone] = real.run_due(datetime(2025, 5, 16, 8, 1, tzinfo=UTC), names=["gone"])
        assert not gone.ok and "404" in (gone.error or "") and "abc" not in (gone.error or "")


# ---------------------------------------------------------------- the thread
def test_the_watcher_never_raises_and_stops_cleanly(
    runner: FeedRunner, store: BotStore, fetch: ScriptedFetch, fake_corpus: Corpus
) -> None:
    store.add_feed(hf_feed().row())
    fetch.script = [[paper(1)]]
    watcher = FeedWatcher(runner, max_sleep=0.05)
    watcher.start()
    try:
        deadline = time.monotonic() + 20
        while not fake_corpus.count_papers() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake_corpus.count_papers() == 1 and watcher.running
    finally:
        assert watcher.stop(timeout=10)
    assert not watcher.running
    assert not any(t.name == "paperbot-feeds" and t.is_alive() for t in threading.enumerate())


def test_a_broken_store_is_logged_not_raised(
    runner: FeedRunner, store: BotStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> list[dict[str, Any]]:
        raise OSError("disk I/O error")

    monkeypatch.setattr(store, "feeds", broken)
    watcher = FeedWatcher(runner, max_sleep=30)
    assert watcher.poll(datetime(2025, 5, 16, tzinfo=UTC)) == []
    assert watcher.seconds_to_next(datetime(2025, 5, 16, tzinfo=UTC)) == 30


def test_the_watcher_sleeps_until_the_next_feed_is_due(
    runner: FeedRunner, store: BotStore, fetch: ScriptedFetch
) -> None:
    watcher = FeedWatcher(runner, max_sleep=60)
    now = datetime(2025, 5, 16, 8, 0, tzinfo=UTC)
    assert watcher.seconds_to_next(now) == 60  # no feeds: check again in a minute
    store.add_feed(hf_feed().row())
    fetch.script = [[paper(1)]]
    assert watcher.seconds_to_next(now) == 5  # due now (not polled here yet)
    watcher.poll(now)
    assert watcher.seconds_to_next(now + timedelta(minutes=29, seconds=30)) == 30


def test_health_reports_each_feed_without_failing(
    runner: FeedRunner, store: BotStore, fetch: ScriptedFetch, tmp_path: Path
) -> None:
    store.add_feed(hf_feed().row())
    store.add_feed(arxiv_feed(categories=["cs.CL"]).row())
    store.add_feed(url_feed("https://example.org/a.jsonl", "off").row())
    store.set_feed_enabled("off", False)
    fetch.script = [SourceError("arXiv API error: bad query"), [paper(1)]]
    runner.run_due(datetime(2025, 5, 16, 8, 0, tzinfo=UTC))
    report = health(store, 3, None)
    statuses = {f["name"]: f["status"] for f in report["feeds"]}
    assert statuses == {"arxiv-cs.CL": "never-succeeded", "hf": "ok", "off": "disabled"}
    assert report["failing_feeds"] == ["arxiv-cs.CL"] and report["feed_watcher"] == "off"
    arxiv = next(f for f in report["feeds"] if f["name"] == "arxiv-cs.CL")
    assert arxiv["last_error"] == "arXiv API error: bad query" and arxiv["next_due"]
    (tmp_path / "a-file").write_text("")
    unreadable = BotStore(tmp_path / "a-file" / "bot.sqlite3")  # its directory is a file
    assert "feeds_error" in health(unreadable, 3, None)


# ---------------------------------------------------------------- digests wait for feeds
class RecordingClient:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []

    def chat_postMessage(self, **params: Any) -> dict[str, Any]:
        self.posts.append(params)
        return {"ts": f"{len(self.posts)}.0"}


def test_a_digest_waits_only_for_feeds_that_list_that_day(
    fake_corpus: Corpus, store: BotStore, settings: RetrievalSettings
) -> None:
    """arXiv lists Monday to Friday: a Saturday digest does not wait for it; a disabled feed
    or one digests do not wait for (--no-wait) is never waited for."""
    services = Services.build(settings, corpus=fake_corpus, llm=None, store=store)
    store.add_feed(arxiv_feed("arxiv", categories=["cs.CL"]).row())
    store.add_feed(hf_feed("hf", wait=False).row())
    store.add_feed(hf_feed("hf-off").row())
    store.set_feed_enabled("hf-off", False)
    store.set_schedule("C1", "09:00", "UTC", None, None)
    fake_corpus.ingest([paper(1, date(2025, 5, 17)), paper(2, date(2025, 5, 16))])
    client = RecordingClient()
    scheduler = DigestScheduler(services, client, slack(digest_wait_minutes=60))
    friday = datetime(2025, 5, 16, 9, 5, tzinfo=UTC)
    assert scheduler.tick(friday)["C1"].status == "waiting" and not client.posts
    saturday = datetime(2025, 5, 17, 9, 5, tzinfo=UTC)
    assert scheduler.tick(saturday)["C1"].status == "posted"
    # Friday's deadline (10:00) passes: posted without arXiv, saying so
    assert scheduler.tick(friday.replace(hour=10))["C1"].status == "posted"
    parent = next(p for p in client.posts if "2025-05-16" in p["text"])
    assert "arxiv has not delivered" in json.dumps(parent["blocks"])


def test_an_empty_day_is_not_final_before_the_deadline(
    fake_corpus: Corpus, store: BotStore, settings: RetrievalSettings
) -> None:
    """Without feeds (cron ingests at 09:30): the 09:00 digest of an empty day is tried
    again, and posted once when the papers come; `empty` is final only at the deadline."""
    services = Services.build(settings, corpus=fake_corpus, llm=None, store=store)
    store.set_schedule("C1", "09:00", "UTC", None, None)
    client = RecordingClient()
    scheduler = DigestScheduler(services, client, slack(digest_wait_minutes=120))
    nine = datetime(2025, 5, 16, 9, 0, tzinfo=UTC)
    assert scheduler.tick(nine)["C1"].status == "waiting"
    assert store.digest_status("C1", "2025-05-16")["status"] == "waiting"  # type: ignore[index]
    fake_corpus.ingest([paper(1, date(2025, 5, 16))], feed="cron")
    assert scheduler.tick(nine.replace(minute=30))["C1"].status == "posted"
    assert scheduler.tick(nine.replace(hour=11)) == {}
    assert len(client.posts) == 2  # the parent and one topic reply
    # the next day stays empty: at its deadline the note, once
    saturday = nine + timedelta(days=1)
    assert scheduler.tick(saturday + timedelta(minutes=119))["C1"].status == "waiting"
    assert scheduler.tick(saturday + timedelta(minutes=120))["C1"].status == "empty"
    assert scheduler.tick(saturday + timedelta(minutes=150)) == {}
    assert "No new papers today (2025-05-17)" in client.posts[-1]["text"]
    assert len(client.posts) == 3
