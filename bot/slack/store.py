"""The Slack bot's own bookkeeping: a SQLite file next to the corpus (data_dir/bot.sqlite3),
or, with PAPERBOT_DATABASE_URL, the `paperbot_bot` schema of a PostgreSQL database that
several `serve` replicas share (one implementation of the queries: retrieval/db.py).

What lives here cannot be computed again: which digests were posted (and how far a
half-posted one got), which Slack deliveries were already answered, the answers behind the
👍/👎 buttons and the votes on them, subscriptions and what was sent to them, digest
schedules, the feeds the bot polls and how each is doing, and the answer queue (every
accepted question until it is answered). The corpus state
(retrieval/state.py) keeps only papers, chunks, listings and caches.

The file carries a schema version (`PRAGMA user_version`) and is migrated in place on
first use (bot/slack/store_schema.py). Version 2 imports, once, the bot's data of a data dir
written before the bot had its own file: it sat in the corpus file (state.sqlite3), which is
only read. Like the corpus state, one connection is shared by threads (WAL: readers never
block the writer), and several processes may use the same file.

Size: one method per bookkeeping query of one store; the feed tables and the answer queue
are already mixins of their own (store_feeds.py, store_jobs.py).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from bot.slack.store_feeds import FeedTables
from bot.slack.store_jobs import JobTables
from bot.slack.store_schema import (
    LEGACY,
    MIGRATIONS,
    PG_CREATE,
    PG_MIGRATIONS,
    PG_SCHEMA,
    SCHEMA_VERSION,
)
from retrieval import PaperbotError, migrations
from retrieval import db as database

FILENAME = "bot.sqlite3"
LEGACY_FILENAME = "state.sqlite3"  # the corpus file, which held the bot's tables before v2
MAX_REASON_CHARS = 500  # a 👎 reason ("what was wrong?") is kept up to this long


class SubscriptionLimitError(PaperbotError):
    """A subscription past PAPERBOT_MAX_SUBSCRIPTIONS_PER_USER / _PER_CHANNEL."""

    def __init__(self, which: str, limit: int) -> None:
        self.which = which  # "user" (the creator's) | "subscriber" (the channel's or user's)
        self.limit = limit
        super().__init__(f"subscription limit reached ({which}: {limit})")


def _held(channel: str, day: str, owner: str | None) -> tuple[str, tuple[str, ...]]:
    """A WHERE condition (and its parameters): ``owner``'s claim still holds the (channel,
    day) slot; always true without an owner."""
    if owner is None:
        return "TRUE", ()
    return (
        "EXISTS (SELECT 1 FROM digest_posts WHERE channel = ? AND day = ? "
        "AND status = 'claimed' AND owner = ?)"
    ), (channel, day, owner)


class BotStore(FeedTables, JobTables):
    """Thread-safe bookkeeping of the Slack bot. Opens (and migrates) the file on first use.

    The feed tables' methods are in bot/slack/store_feeds.py, the answer queue's in
    bot/slack/store_jobs.py."""

    def __init__(
        self, path: Path, *, legacy_path: Path | None = None, database_url: Any = None
    ) -> None:
        self.path = path
        self.legacy_path = legacy_path or path.with_name(LEGACY_FILENAME)
        self._url = database.secret(database_url)  # PostgreSQL instead of the file
        self._lock = threading.RLock()
        self._conn: database.Database | None = None

    @classmethod
    def in_data_dir(cls, data_dir: Path, *, database_url: Any = None) -> BotStore:
        return cls(data_dir / FILENAME, database_url=database_url)

    @classmethod
    def from_settings(cls, settings: Any) -> BotStore:
        """The store the settings name: PAPERBOT_DATABASE_URL, else the data dir's file."""
        return cls.in_data_dir(settings.data_dir, database_url=settings.database_url)

    @property
    def backend(self) -> str:
        """ "sqlite" or "postgres"."""
        return database.POSTGRES if self._url else database.SQLITE

    @property
    def location(self) -> str:
        """Where the store is, for messages: the file, or the database (no password)."""
        if self._url:
            return f"{database.redact_url(self._url)} (schema {PG_SCHEMA})"
        return str(self.path)

    def __enter__(self) -> BotStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- the connection ---
    def open(self) -> BotStore:
        """Open and migrate now (errors show at startup rather than at the first event)."""
        self._db()
        return self

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def schema_version(self) -> int:
        with self._lock:
            db = self._db()
            if isinstance(db, database.PostgresDatabase):
                return database.postgres_version(db)
            assert isinstance(db, database.SqliteDatabase)
            return migrations.schema_version(db.raw)

    def _db(self) -> database.Database:
        with self._lock:
            if self._conn is None:
                self._conn = self._connect_postgres() if self._url else self._connect()
            return self._conn

    def _connect_postgres(self) -> database.Database:
        assert self._url is not None
        pg = database.PostgresDatabase(self._url, PG_SCHEMA)
        try:
            database.migrate_postgres(pg, PG_CREATE, SCHEMA_VERSION, PG_MIGRATIONS)
        except BaseException:
            pg.close()
            raise
        return pg

    def _connect(self) -> database.Database:
        from retrieval import refuse_emptied

        # a 0-byte bot.sqlite3 beside a used state lost its data: never start afresh silently
        refuse_emptied(self.path, [self.path.with_name("state.sqlite3")])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            self.path.resolve().as_uri(),
            uri=True,  # also lets ATTACH open the legacy file read-only by URI
            check_same_thread=False,
            isolation_level=None,
            timeout=30,
        )
        try:
            db.row_factory = sqlite3.Row
            migrations.use_wal(db)
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA synchronous=NORMAL")
            self._migrate(db)
        except BaseException:
            db.close()
            raise
        return database.SqliteDatabase(db, str(self.path))

    def _migrate(self, db: sqlite3.Connection) -> None:
        legacy = migrations.schema_version(db) < SCHEMA_VERSION and self.legacy_path.is_file()
        if legacy:
            try:
                uri = self.legacy_path.resolve().as_uri() + "?mode=ro"
                db.execute(f"ATTACH DATABASE ? AS {LEGACY}", (uri,))
            except sqlite3.Error as exc:
                raise PaperbotError(
                    f"Cannot read {self.legacy_path} to import the bot's data from it: {exc}"
                ) from exc
        try:
            migrations.migrate(db, MIGRATIONS, self.path)
        finally:
            if legacy:
                db.execute(f"DETACH DATABASE {LEGACY}")

    @contextmanager
    def _transaction(self, *, serial: bool = True) -> Iterator[database.Database]:
        """All or nothing. ``serial``: one writer at a time (SQLite's BEGIN IMMEDIATE; on
        PostgreSQL a lock on the schema across hosts); else PostgreSQL locks only the rows
        the statements lock (`skip_locked` claims)."""
        with self._lock, self._db().transaction(serial=serial) as db:
            yield db

    def _execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        with self._lock:
            return self._db().execute(sql, params)

    def _query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        with self._lock:
            return list(self._db().execute(sql, params))

    # --- meta (the notification watermark) ---
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0]["value"]) if rows else default

    def set_meta(self, key: str, value: str) -> None:
        self._execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # --- exactly-once bookkeeping ---
    def first_time(self, key: str) -> bool:
        """True the first time a key is seen (Slack retries, duplicate deliveries)."""
        cur = self._execute(
            "INSERT INTO seen_keys(key, seen_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (key, time.time()),
        )
        return cur.rowcount == 1

    def claim_digest(self, channel: str, day: str, owner: str, lease_seconds: float) -> bool:
        """Claim the (channel, day) digest slot. Fails if it was posted, is empty, or another
        poster holds a live claim; a failed or waiting post, or an expired claim, can be
        taken over. One statement decides, so two replicas (or hosts) never both win."""
        now = time.time()
        cur = self._execute(
            "INSERT INTO digest_posts(channel, day, status, owner, claimed_at) "
            "VALUES (?, ?, 'claimed', ?, ?) ON CONFLICT(channel, day) DO UPDATE SET "
            "status = 'claimed', owner = excluded.owner, claimed_at = excluded.claimed_at, "
            "error = NULL WHERE digest_posts.status NOT IN ('posted', 'empty') AND NOT "
            "(digest_posts.status = 'claimed' AND ? - digest_posts.claimed_at < ?)",
            (channel, day, owner, now, now, lease_seconds),
        )
        return int(cur.rowcount) == 1

    def finish_digest(
        self,
        channel: str,
        day: str,
        status: str,
        ts: str | None = None,
        error: str | None = None,
        *,
        owner: str | None = None,
    ) -> bool:
        """Settle the slot. With ``owner``: only while that poster's claim holds it (a poster
        whose slot was given back, or taken over, changes nothing). True when it changed."""
        sql = "UPDATE digest_posts SET status = ?, ts = ?, error = ? WHERE channel = ? AND day = ?"
        params: tuple[Any, ...] = (status, ts, error, channel, day)
        if owner is not None:
            sql += " AND status = 'claimed' AND owner = ?"
            params += (owner,)
        return int(self._execute(sql, params).rowcount) == 1

    def renew_digest(self, channel: str, day: str, owner: str) -> bool:
        """Renew ``owner``'s claim on the slot (its lease counts from now); False when the
        claim is no longer its own."""
        cur = self._execute(
            "UPDATE digest_posts SET claimed_at = ? WHERE channel = ? AND day = ? "
            "AND status = 'claimed' AND owner = ?",
            (time.time(), channel, day, owner),
        )
        return int(cur.rowcount) == 1

    def release_digest(
        self, channel: str, day: str, reason: str, *, owner: str | None = None
    ) -> bool:
        """Give a claimed slot back unposted ("waiting"): the digest is tried again later."""
        return self.finish_digest(channel, day, "waiting", error=reason, owner=owner)

    def digest_status(self, channel: str, day: str) -> dict[str, Any] | None:
        rows = self._query(
            "SELECT * FROM digest_posts WHERE channel = ? AND day = ?", (channel, day)
        )
        return dict(rows[0]) if rows else None

    def digest_progress(self, channel: str, day: str) -> dict[str, Any] | None:
        """{digest (JSON), ts (the parent), replies (posted so far)} of a half-posted digest."""
        rows = self._query(
            "SELECT digest, ts, replies FROM digest_progress WHERE channel = ? AND day = ?",
            (channel, day),
        )
        return dict(rows[0]) if rows else None

    def unfinished_digests(self, channel: str, since: str, idle_for: float = 0.0) -> list[str]:
        """Days (from ``since``, ISO) of the channel whose digest was started — its parent
        sent or being sent — and never settled: a poster died or failed halfway. Only slots
        claimed (or renewed) at least ``idle_for`` seconds ago: not one being posted, nor one
        that failed a moment ago."""
        rows = self._query(
            "SELECT day FROM digest_posts p WHERE channel = ? AND day >= ? "
            "AND status NOT IN ('posted', 'empty') AND COALESCE(claimed_at, 0) <= ? AND ("
            "EXISTS (SELECT 1 FROM digest_progress g WHERE g.channel = p.channel "
            "AND g.day = p.day) OR EXISTS (SELECT 1 FROM digest_parent_sends s "
            "WHERE s.channel = p.channel AND s.day = p.day)) ORDER BY day",
            (channel, since, time.time() - idle_for),
        )
        return [str(r["day"]) for r in rows]

    def save_digest_progress(
        self,
        channel: str,
        day: str,
        *,
        digest: str,
        ts: str,
        replies: int,
        owner: str | None = None,
    ) -> bool:
        """Record how far the digest got. With ``owner``: only while that poster's claim holds
        the slot (a poster that lost it changes nothing). True when it was recorded."""
        held, bound = _held(channel, day, owner)
        cur = self._execute(
            "INSERT INTO digest_progress(channel, day, digest, ts, replies, updated_at) "
            f"SELECT ?, ?, ?, ?, ?, ? WHERE {held} "
            "ON CONFLICT(channel, day) DO UPDATE SET "
            "digest = excluded.digest, ts = excluded.ts, replies = excluded.replies, "
            "updated_at = excluded.updated_at",
            (channel, day, digest, ts, replies, time.time(), *bound),
        )
        if int(cur.rowcount) != 1:
            return False
        self.forget_parent_send(channel, day)  # its ts is known: no longer "being sent"
        return True

    def forget_parent_send(self, channel: str, day: str) -> None:
        self._execute(
            "DELETE FROM digest_parent_sends WHERE channel = ? AND day = ?", (channel, day)
        )

    def mark_parent_send(
        self, channel: str, day: str, *, digest: str, owner: str | None = None
    ) -> dict[str, Any] | None:
        """The digest's parent is about to be sent (`parent_send` until its ts is saved);
        returns what `parent_send` would. With ``owner``: only while that poster's claim holds
        the slot, else None (one statement decides, so a poster whose claim was taken over
        never marks, and so never sends, a second parent)."""
        sent_at = time.time()
        held, bound = _held(channel, day, owner)
        cur = self._execute(
            "INSERT INTO digest_parent_sends(channel, day, digest, sent_at) "
            f"SELECT ?, ?, ?, ? WHERE {held} "
            "ON CONFLICT(channel, day) DO UPDATE SET digest = excluded.digest, "
            "sent_at = excluded.sent_at",
            (channel, day, digest, sent_at, *bound),
        )
        return {"digest": digest, "sent_at": sent_at} if int(cur.rowcount) == 1 else None

    def parent_send(self, channel: str, day: str) -> dict[str, Any] | None:
        """{digest (JSON), sent_at} of a parent sent without its answer recorded, if any."""
        rows = self._query(
            "SELECT digest, sent_at FROM digest_parent_sends WHERE channel = ? AND day = ?",
            (channel, day),
        )
        return dict(rows[0]) if rows else None

    # --- answers and feedback ---
    def save_answer(
        self,
        *,
        question: str,
        answer: str,
        mode: str,
        model: str | None = None,
        citations: Sequence[dict[str, Any]] = (),
    ) -> str:
        """Keep an answer under a new id, which its feedback buttons carry."""
        answer_id = uuid.uuid4().hex
        self._execute(
            "INSERT INTO answers(id, question, answer, mode, model, citations, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (answer_id, question, answer, mode, model, json.dumps(list(citations)), time.time()),
        )
        return answer_id

    def get_answer(self, answer_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM answers WHERE id = ?", (answer_id,))
        if not rows:
            return None
        found = dict(rows[0])
        found["citations"] = json.loads(found["citations"])
        return found

    def add_feedback(
        self,
        *,
        answer_id: str | None,
        user_id: str,
        vote: str,
        channel: str | None,
        message_ts: str | None,
    ) -> bool:
        """One vote per user and message; a second click changes the vote. A vote for an
        answer id this store never handed out (a damaged or forged button) stores nothing:
        False."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT id, question, answer FROM answers WHERE id = ?", (answer_id or "",)
            ).fetchone()
            if row is None:
                return False
            db.execute(
                "INSERT INTO feedback(answer_id, question, answer, user_id, vote, channel, "
                "message_ts, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(user_id, channel, message_ts) "
                "DO UPDATE SET vote = excluded.vote, created_at = excluded.created_at, "
                "answer_id = excluded.answer_id, question = excluded.question, "
                "answer = excluded.answer, "
                "reason = CASE WHEN excluded.vote = 'up' OR excluded.answer_id IS DISTINCT "
                "FROM feedback.answer_id THEN NULL ELSE feedback.reason END",
                (
                    row["id"],
                    row["question"],
                    row["answer"],
                    user_id,
                    vote,
                    channel,
                    message_ts,
                    time.time(),
                ),
            )
            return True

    def set_feedback_reason(self, *, answer_id: str, user_id: str, reason: str) -> bool:
        """What was wrong, for the user's latest 👎 on that answer (or digest); False when
        there is no such vote (nothing stored)."""
        reason = " ".join(reason.split())[:MAX_REASON_CHARS]
        if not reason:
            return False
        cursor = self._execute(
            "UPDATE feedback SET reason = ? WHERE id = (SELECT id FROM feedback "
            "WHERE answer_id = ? AND user_id = ? AND vote = 'down' ORDER BY created_at DESC, "
            "id DESC LIMIT 1)",
            (reason, answer_id, user_id),
        )
        return cursor.rowcount > 0

    def feedback_rows(self) -> list[dict[str, Any]]:
        """Every vote with what it was about: the question and answer (copied at vote time),
        the model and the sources (from the stored answer), and the reason given."""
        rows = self._query(
            "SELECT f.*, a.model AS model, a.citations AS sources FROM feedback f "
            "LEFT JOIN answers a ON a.id = f.answer_id ORDER BY f.id"
        )
        return [dict(r) for r in rows]

    # --- subscriptions ---
    def subscribe(
        self,
        subscriber: str,
        topic: str,
        created_by: str | None,
        *,
        max_per_user: int | None = None,
        max_per_subscriber: int | None = None,
    ) -> bool:
        """Add a subscription; False when it exists. Past a limit (the creator's
        subscriptions anywhere, or the subscriber's) raises `SubscriptionLimitError`; the
        count and the insert share one transaction, so concurrent requests cannot overshoot."""
        with self._transaction() as db:
            exists = db.execute(
                "SELECT 1 FROM subscriptions WHERE subscriber = ? AND lower(topic) = lower(?)",
                (subscriber, topic),
            ).fetchone()
            if exists:
                return False
            if max_per_user is not None and created_by is not None:
                mine = db.execute(
                    "SELECT count(*) FROM subscriptions WHERE created_by = ?", (created_by,)
                ).fetchone()[0]
                if mine >= max_per_user:
                    raise SubscriptionLimitError("user", max_per_user)
            if max_per_subscriber is not None:
                theirs = db.execute(
                    "SELECT count(*) FROM subscriptions WHERE subscriber = ?", (subscriber,)
                ).fetchone()[0]
                if theirs >= max_per_subscriber:
                    raise SubscriptionLimitError("subscriber", max_per_subscriber)
            db.execute(
                "INSERT INTO subscriptions(subscriber, topic, created_by, created_at) "
                "VALUES (?, ?, ?, ?)",
                (subscriber, topic, created_by, time.time()),
            )
            return True

    def unsubscribe(self, subscriber: str, topic: str, *, by: str | None = None) -> bool:
        """Remove a subscription (the topic matched case-insensitively). With ``by``, only
        when that user created it, it is their own (subscriber == by), or its creator is not
        known (a row from before creators were recorded)."""
        sql = "DELETE FROM subscriptions WHERE subscriber = ? AND lower(topic) = lower(?)"
        params: tuple[Any, ...] = (subscriber, topic)
        if by is not None:
            sql += " AND (created_by = ? OR created_by IS NULL OR subscriber = ?)"
            params += (by, by)
        return self._execute(sql, params).rowcount > 0

    def subscription(self, subscriber: str, topic: str) -> dict[str, Any] | None:
        """{subscriber, topic, created_by, created_at} of one subscription, if it exists."""
        rows = self._query(
            "SELECT * FROM subscriptions WHERE subscriber = ? AND lower(topic) = lower(?)",
            (subscriber, topic),
        )
        return dict(rows[0]) if rows else None

    def subscriptions(self, subscriber: str | None = None) -> list[tuple[str, str]]:
        sql = "SELECT subscriber, topic FROM subscriptions"
        rows = (
            self._query(sql + " WHERE subscriber = ? ORDER BY topic", (subscriber,))
            if subscriber
            else self._query(sql + " ORDER BY subscriber, topic")
        )
        return [(r["subscriber"], r["topic"]) for r in rows]

    def claim_notification(self, subscriber: str, paper_id: str) -> bool:
        cur = self._execute(
            "INSERT INTO notified(subscriber, paper_id, notified_at) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (subscriber, paper_id, time.time()),
        )
        return cur.rowcount == 1

    # --- digest schedules ---
    def set_schedule(
        self, channel: str, at_time: str, timezone: str, topic: str | None, max_papers: int | None
    ) -> None:
        self._execute(
            "INSERT INTO schedules(channel, at_time, timezone, topic, max_papers, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(channel) DO UPDATE SET "
            "at_time = excluded.at_time, timezone = excluded.timezone, topic = excluded.topic, "
            "max_papers = excluded.max_papers",
            (channel, at_time, timezone, topic, max_papers, time.time()),
        )

    def remove_schedule(self, channel: str) -> bool:
        return self._execute("DELETE FROM schedules WHERE channel = ?", (channel,)).rowcount > 0

    def schedules(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._query("SELECT * FROM schedules ORDER BY channel")]
