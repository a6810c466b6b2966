"""The corpus state file's schema versions (`PRAGMA user_version`), oldest first.

`StateStore` applies the steps above a file's version when it opens the file (see
retrieval/migrations.py). A released step is never edited: a schema change is a new step.
"""

from __future__ import annotations

from retrieval.migrations import Migration, execute_all

# Version 1: the schema of the releases before schema versions (those files have
# user_version 0 and these tables; the statements are no-ops on them, so they are stamped).
# Files of those releases also hold the Slack bot's tables (digest_posts, seen_keys, feedback,
# subscriptions, notified, schedules): the corpus leaves them untouched, and the bot's own
# store (bot/slack/store.py) imports them once.
_V1 = (
    """CREATE TABLE IF NOT EXISTS papers (
        paper_id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        title_key TEXT NOT NULL,
        abstract TEXT NOT NULL,
        authors TEXT NOT NULL,
        published TEXT,
        updated TEXT,
        source TEXT NOT NULL,
        arxiv_id TEXT,
        version INTEGER,
        url TEXT,
        pdf_url TEXT,
        upvotes INTEGER,
        comments INTEGER,
        categories TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        ingested_at REAL NOT NULL,
        changed_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS papers_title_key ON papers(title_key)",
    "CREATE INDEX IF NOT EXISTS papers_published ON papers(published)",
    """CREATE TABLE IF NOT EXISTS chunks (
        chunk_id TEXT PRIMARY KEY,
        paper_id TEXT NOT NULL REFERENCES papers(paper_id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        text TEXT NOT NULL,
        n_tokens INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS chunks_paper ON chunks(paper_id)",
    """CREATE TABLE IF NOT EXISTS embedding_cache (
        model TEXT NOT NULL,
        text_hash TEXT NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (model, text_hash)
    ) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # values that can be computed again (TL;DRs, topic names): JSON under (namespace, key)
    """CREATE TABLE IF NOT EXISTS cache (
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (namespace, key)
    ) WITHOUT ROWID""",
)

# Version 2: the embedding cache as a rowid table. WITHOUT ROWID stores each ~1.5 KB vector
# in the primary-key b-tree, where it spills into a mostly empty overflow page; a rowid
# table packs the vectors and keeps (model, text_hash) in a small index.
_V2 = (
    """CREATE TABLE embedding_cache_v2 (
        model TEXT NOT NULL,
        text_hash TEXT NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (model, text_hash)
    )""",
    "INSERT INTO embedding_cache_v2(model, text_hash, vector) "
    "SELECT model, text_hash, vector FROM embedding_cache",
    "DROP TABLE embedding_cache",
    "ALTER TABLE embedding_cache_v2 RENAME TO embedding_cache",
)

MIGRATIONS = (
    Migration(1, "the corpus tables", lambda db: execute_all(db, _V1)),
    Migration(
        2,
        "the embedding cache as a rowid table",
        lambda db: execute_all(db, _V2),
        compact=True,
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
