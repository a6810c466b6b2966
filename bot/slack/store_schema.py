"""The bot store's schema versions (`PRAGMA user_version`), oldest first.

`BotStore` applies the steps above its file's version on first use (see
retrieval/migrations.py). A released step is never edited: a schema change is a new step.

Version 2 imports, once, what the bot kept in the corpus state file (state.sqlite3) before
it had a file of its own: the six bookkeeping tables, the answers behind the feedback
buttons and the digest progress (rows of the corpus's generic `cache` table) and the
notification watermark (its `meta` table). `BotStore` attaches that file read-only as
`legacy` for the migration; the corpus keeps its copy (it never drops data it does not own).

Version 3 adds the feeds the bot polls by itself (bot/slack/feeds.py): their definitions, how
each is doing (for backoff, `paperbot doctor` and /healthz) and which listing days each has
delivered (scheduled digests wait for them).

Version 4 adds the durable answer queue (bot/slack/answer_queue.py): every accepted question
is a job, written before Slack gets its ack, and claimed by workers with a lease.

Version 5 indexes subscriptions by their creator: `/papers subscribe` counts a user's
subscriptions against PAPERBOT_MAX_SUBSCRIPTIONS_PER_USER in the transaction that adds one,
and only the creator may remove a channel's subscription.

Version 6 adds the reason a user may give after a 👎 ("what was wrong?") to each vote.

Version 7 adds `digest_parent_sends`: a digest whose parent message is being sent, written just
before the send and removed once Slack's answer (the parent's ts) is in `digest_progress`. A
poster that takes over from one that died in between asks Slack whether the parent arrived
(bot/slack/digest_posting.py). A table of its own, so an earlier paperbot still running beside
this one during an upgrade never reads a half-recorded digest.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from typing import Any

from retrieval import db as database
from retrieval import migrations

log = logging.getLogger(__name__)
LEGACY = "legacy"  # schema name of the attached legacy file during the v2 import

_V1 = (
    """CREATE TABLE digest_posts (
        channel TEXT NOT NULL,
        day TEXT NOT NULL,  -- YYYY-MM-DD
        status TEXT NOT NULL,  -- claimed | posted | failed | empty
        owner TEXT NOT NULL,  -- host:pid of the poster holding the claim
        claimed_at REAL NOT NULL,
        ts TEXT,  -- the digest's parent message, once posted
        error TEXT,
        PRIMARY KEY (channel, day)
    ) WITHOUT ROWID""",
    # what of a digest was already posted: a retry goes on in the same thread, same digest
    """CREATE TABLE digest_progress (
        channel TEXT NOT NULL,
        day TEXT NOT NULL,
        digest TEXT NOT NULL,  -- the Digest as JSON (Digest.to_json)
        ts TEXT NOT NULL,  -- the parent message
        replies INTEGER NOT NULL,  -- threaded replies posted so far
        updated_at REAL NOT NULL,
        PRIMARY KEY (channel, day)
    )""",
    "CREATE TABLE seen_keys (key TEXT PRIMARY KEY, seen_at REAL NOT NULL) WITHOUT ROWID",
    # the answers behind the feedback buttons (the buttons carry the id)
    """CREATE TABLE answers (
        id TEXT PRIMARY KEY,
        question TEXT NOT NULL,
        answer TEXT NOT NULL,
        mode TEXT NOT NULL,  -- llm | extractive | refused
        model TEXT,
        citations TEXT NOT NULL DEFAULT '[]',  -- JSON: [{number, paper_id, title, url}]
        created_at REAL NOT NULL
    )""",
    # question and answer are copied from the answer at vote time (what the export shows)
    """CREATE TABLE feedback (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        answer_id TEXT REFERENCES answers(id),
        question TEXT NOT NULL,
        answer TEXT NOT NULL,
        user_id TEXT NOT NULL,
        vote TEXT NOT NULL,  -- up | down
        channel TEXT,
        message_ts TEXT,
        created_at REAL NOT NULL,
        UNIQUE (user_id, channel, message_ts)
    )""",
    """CREATE TABLE subscriptions (
        subscriber TEXT NOT NULL,  -- a Slack user id (DM) or channel id
        topic TEXT NOT NULL,
        created_by TEXT,
        created_at REAL NOT NULL,
        PRIMARY KEY (subscriber, topic)
    ) WITHOUT ROWID""",
    """CREATE TABLE notified (
        subscriber TEXT NOT NULL,
        paper_id TEXT NOT NULL,
        notified_at REAL NOT NULL,
        PRIMARY KEY (subscriber, paper_id)
    ) WITHOUT ROWID""",
    """CREATE TABLE schedules (
        channel TEXT PRIMARY KEY,
        at_time TEXT NOT NULL,  -- HH:MM local time
        timezone TEXT NOT NULL,
        topic TEXT,
        max_papers INTEGER,
        created_at REAL NOT NULL
    )""",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",  # notify_watermark
)

# legacy table -> the columns copied as they are
_LEGACY_TABLES = {
    "digest_posts": "channel, day, status, owner, claimed_at, ts, error",
    "seen_keys": "key, seen_at",
    "subscriptions": "subscriber, topic, created_by, created_at",
    "notified": "subscriber, paper_id, notified_at",
    "schedules": "channel, at_time, timezone, topic, max_papers, created_at",
}
_LEGACY_META_KEYS = ("notify_watermark",)


def _import_legacy(db: sqlite3.Connection) -> None:
    """Copy the bot's data out of a pre-v2 corpus file attached as `legacy`, if any.

    Idempotent (INSERT OR IGNORE), and it runs in the migration's transaction: a crash
    leaves this file at v1 and the import runs again from the start.
    """
    attached = {row[1] for row in db.execute("PRAGMA database_list")}
    if LEGACY not in attached:
        return
    tables = {
        row[0]
        for row in db.execute(f"SELECT name FROM {LEGACY}.sqlite_master WHERE type = 'table'")
    }
    counts: dict[str, int] = {}
    for table, columns in _LEGACY_TABLES.items():
        if table in tables:
            cur = db.execute(
                f"INSERT OR IGNORE INTO main.{table}({columns}) "
                f"SELECT {columns} FROM {LEGACY}.{table}"
            )
            counts[table] = cur.rowcount
    if "feedback" in tables:
        columns = "id, question, answer, user_id, vote, channel, message_ts, created_at"
        cur = db.execute(
            f"INSERT OR IGNORE INTO main.feedback({columns}) "
            f"SELECT {columns} FROM {LEGACY}.feedback"
        )
        counts["feedback"] = cur.rowcount
    if "cache" in tables:
        counts["answers"] = _import_legacy_answers(db)
        counts["digest_progress"] = _import_legacy_progress(db)
    if "meta" in tables:
        marks = ",".join("?" * len(_LEGACY_META_KEYS))
        cur = db.execute(
            f"INSERT OR IGNORE INTO main.meta(key, value) "
            f"SELECT key, value FROM {LEGACY}.meta WHERE key IN ({marks})",
            _LEGACY_META_KEYS,
        )
        counts["meta"] = cur.rowcount
    log.info("imported the bot's data from the corpus state file: %s", counts)


def _legacy_cache(db: sqlite3.Connection, namespace: str) -> Iterator[tuple[str, Any, float]]:
    rows = db.execute(
        f"SELECT key, value, created_at FROM {LEGACY}.cache WHERE namespace = ?", (namespace,)
    )
    for key, value, created_at in rows.fetchall():
        try:
            yield key, json.loads(value), created_at
        except json.JSONDecodeError:
            log.warning("skipping a damaged %s cache entry %r", namespace, key)


def _import_legacy_answers(db: sqlite3.Connection) -> int:
    """Cache namespace "answer": {question, answer, mode} under the feedback buttons' id."""
    rows = [
        (key, str(v.get("question", "")), str(v.get("answer", "")), str(v.get("mode", "")), at)
        for key, v, at in _legacy_cache(db, "answer")
        if isinstance(v, dict)
    ]
    cur = db.executemany(
        "INSERT OR IGNORE INTO answers(id, question, answer, mode, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        rows,
    )
    return cur.rowcount


def _import_legacy_progress(db: sqlite3.Connection) -> int:
    """Cache namespace "digest_progress": {digest, ts, replies} under "channel:day"."""
    rows = []
    for key, v, at in _legacy_cache(db, "digest_progress"):
        channel, _, day = key.rpartition(":")
        if channel and isinstance(v, dict) and v.get("digest") and v.get("ts") is not None:
            rows.append((channel, day, v["digest"], str(v["ts"]), int(v.get("replies", 0)), at))
    cur = db.executemany(
        "INSERT OR IGNORE INTO digest_progress(channel, day, digest, ts, replies, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    return cur.rowcount


_V3 = (
    """CREATE TABLE feeds (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,  -- hf | arxiv | url | file
        params TEXT NOT NULL DEFAULT '{}',  -- JSON, per kind (tz, categories, query, url, path…)
        every_minutes REAL,  -- poll interval; NULL = the kind's default
        enabled INTEGER NOT NULL DEFAULT 1,
        wait INTEGER,  -- do scheduled digests wait for it? NULL = the kind's default
        origin TEXT NOT NULL DEFAULT 'cli',  -- cli | env (declared in PAPERBOT_FEEDS)
        created_at REAL NOT NULL
    )""",
    # one row per feed once it was polled (times are UNIX seconds)
    """CREATE TABLE feed_status (
        name TEXT PRIMARY KEY REFERENCES feeds(name) ON DELETE CASCADE,
        last_attempt REAL,
        last_success REAL,
        last_error TEXT,  -- one line, secrets redacted; NULL after a success
        failures INTEGER NOT NULL DEFAULT 0,  -- consecutive failed polls
        next_due REAL,  -- NULL = due now
        last_seen INTEGER,  -- papers the last successful poll saw
        last_new INTEGER,  -- of them new to the index
        owner TEXT,  -- host:pid polling it now (several `serve` replicas share this file)
        lease_until REAL
    )""",
    # the listing days a feed delivered (papers seen with that day), for digests to wait on
    """CREATE TABLE feed_days (
        name TEXT NOT NULL REFERENCES feeds(name) ON DELETE CASCADE,
        day TEXT NOT NULL,  -- YYYY-MM-DD, the listing day
        papers INTEGER NOT NULL,  -- most papers of that day seen in one poll
        new INTEGER NOT NULL DEFAULT 0,  -- papers of that day new to the index, all polls
        first_at REAL NOT NULL,
        last_at REAL NOT NULL,
        PRIMARY KEY (name, day)
    ) WITHOUT ROWID""",
)

_V4 = (
    # one row per accepted Slack message or slash command (its seen-key is claimed with it)
    """CREATE TABLE answer_jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,  -- msg:<channel>:<ts> | cmd:<trigger_id>
        kind TEXT NOT NULL,  -- mention | im | followup | assistant | command
        channel TEXT NOT NULL,
        thread_ts TEXT,  -- the thread the message was in (NULL: top level)
        message_ts TEXT,  -- the question's own message
        user_id TEXT,
        bot_user_id TEXT,
        question TEXT NOT NULL,  -- the message text, or the slash command's text
        response_url TEXT,  -- slash commands answer here
        placeholder_ts TEXT,  -- the "Searching…" message, once posted (resumes update it)
        state TEXT NOT NULL DEFAULT 'queued',  -- queued | running | done | failed
        attempts INTEGER NOT NULL DEFAULT 0,
        owner TEXT,  -- host:pid:n of the queue answering it
        lease_expires REAL,  -- running: presumed dead after; queued: not before (retry backoff)
        error TEXT,  -- the last attempt's failure, one line
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    "CREATE INDEX answer_jobs_state ON answer_jobs(state, id)",
)

_V5 = ("CREATE INDEX subscriptions_by_creator ON subscriptions(created_by)",)

_V6 = (
    "ALTER TABLE feedback ADD COLUMN reason TEXT",  # "what was wrong?" after a 👎 (optional)
    "CREATE INDEX feedback_by_answer ON feedback(answer_id, user_id)",
)

# a digest's parent being sent: its answer (the ts) not recorded yet
_V7 = (
    """CREATE TABLE digest_parent_sends (
        channel TEXT NOT NULL,
        day TEXT NOT NULL,
        digest TEXT NOT NULL,  -- the Digest as JSON, as sent
        sent_at REAL NOT NULL,  -- UNIX seconds, just before the send
        PRIMARY KEY (channel, day)
    )""",
)

MIGRATIONS = (
    migrations.Migration(1, "the bot's tables", lambda db: migrations.execute_all(db, _V1)),
    migrations.Migration(2, "import the bot's data from the corpus state file", _import_legacy),
    migrations.Migration(
        3, "feeds, their run status and delivered days", lambda db: migrations.execute_all(db, _V3)
    ),
    migrations.Migration(4, "the answer queue", lambda db: migrations.execute_all(db, _V4)),
    migrations.Migration(5, "subscriptions by creator", lambda db: migrations.execute_all(db, _V5)),
    migrations.Migration(6, "feedback reasons", lambda db: migrations.execute_all(db, _V6)),
    migrations.Migration(
        7, "digest parents being sent", lambda db: migrations.execute_all(db, _V7)
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

# PostgreSQL (PAPERBOT_DATABASE_URL): the schema `paperbot_bot` is created at the latest
# version in one step (retrieval/db.py `migrate_postgres`); a later change adds a
# `PgMigration` to PG_MIGRATIONS as well as a step to MIGRATIONS. There is no legacy file to
# import. Times are UNIX seconds as DOUBLE PRECISION, so every query of the store runs on both.
PG_SCHEMA = "paperbot_bot"
_PG_PARENT_SENDS = """CREATE TABLE digest_parent_sends (
        channel TEXT NOT NULL,
        day TEXT NOT NULL,
        digest TEXT NOT NULL,
        sent_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (channel, day)
    )"""
PG_CREATE: tuple[str, ...] = (
    """CREATE TABLE digest_posts (
        channel TEXT NOT NULL,
        day TEXT NOT NULL,
        status TEXT NOT NULL,
        owner TEXT NOT NULL,
        claimed_at DOUBLE PRECISION NOT NULL,
        ts TEXT,
        error TEXT,
        PRIMARY KEY (channel, day)
    )""",
    """CREATE TABLE digest_progress (
        channel TEXT NOT NULL,
        day TEXT NOT NULL,
        digest TEXT NOT NULL,
        ts TEXT NOT NULL,
        replies INTEGER NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (channel, day)
    )""",
    "CREATE TABLE seen_keys (key TEXT PRIMARY KEY, seen_at DOUBLE PRECISION NOT NULL)",
    """CREATE TABLE answers (
        id TEXT PRIMARY KEY,
        question TEXT NOT NULL,
        answer TEXT NOT NULL,
        mode TEXT NOT NULL,
        model TEXT,
        citations TEXT NOT NULL DEFAULT '[]',
        created_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE feedback (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        answer_id TEXT REFERENCES answers(id),
        question TEXT NOT NULL,
        answer TEXT NOT NULL,
        user_id TEXT NOT NULL,
        vote TEXT NOT NULL,
        channel TEXT,
        message_ts TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        reason TEXT,
        UNIQUE (user_id, channel, message_ts)
    )""",
    "CREATE INDEX feedback_by_answer ON feedback(answer_id, user_id)",
    """CREATE TABLE subscriptions (
        subscriber TEXT NOT NULL,
        topic TEXT NOT NULL,
        created_by TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (subscriber, topic)
    )""",
    "CREATE INDEX subscriptions_by_creator ON subscriptions(created_by)",
    """CREATE TABLE notified (
        subscriber TEXT NOT NULL,
        paper_id TEXT NOT NULL,
        notified_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (subscriber, paper_id)
    )""",
    """CREATE TABLE schedules (
        channel TEXT PRIMARY KEY,
        at_time TEXT NOT NULL,
        timezone TEXT NOT NULL,
        topic TEXT,
        max_papers INTEGER,
        created_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE feeds (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        every_minutes DOUBLE PRECISION,
        enabled INTEGER NOT NULL DEFAULT 1,
        wait INTEGER,
        origin TEXT NOT NULL DEFAULT 'cli',
        created_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE feed_status (
        name TEXT PRIMARY KEY REFERENCES feeds(name) ON DELETE CASCADE,
        last_attempt DOUBLE PRECISION,
        last_success DOUBLE PRECISION,
        last_error TEXT,
        failures INTEGER NOT NULL DEFAULT 0,
        next_due DOUBLE PRECISION,
        last_seen INTEGER,
        last_new INTEGER,
        owner TEXT,
        lease_until DOUBLE PRECISION
    )""",
    """CREATE TABLE feed_days (
        name TEXT NOT NULL REFERENCES feeds(name) ON DELETE CASCADE,
        day TEXT NOT NULL,
        papers INTEGER NOT NULL,
        new INTEGER NOT NULL DEFAULT 0,
        first_at DOUBLE PRECISION NOT NULL,
        last_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (name, day)
    )""",
    """CREATE TABLE answer_jobs (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        channel TEXT NOT NULL,
        thread_ts TEXT,
        message_ts TEXT,
        user_id TEXT,
        bot_user_id TEXT,
        question TEXT NOT NULL,
        response_url TEXT,
        placeholder_ts TEXT,
        state TEXT NOT NULL DEFAULT 'queued',
        attempts INTEGER NOT NULL DEFAULT 0,
        owner TEXT,
        lease_expires DOUBLE PRECISION,
        error TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX answer_jobs_state ON answer_jobs(state, id)",
    _PG_PARENT_SENDS,
)
PG_MIGRATIONS: tuple[database.PgMigration, ...] = (
    database.PgMigration(7, "digest parents being sent", (_PG_PARENT_SENDS,)),
)
