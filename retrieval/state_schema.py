"""The corpus state file's schema versions (`PRAGMA user_version`), oldest first.

`StateStore` applies the steps above a file's version when it opens the file (see
retrieval/migrations.py). A released step is never edited: a schema change is a new step.
"""

from __future__ import annotations

from retrieval.db import PgMigration
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

# Version 3: when each feed listed each paper, apart from its publication date. A paper's
# first listing day is kept in papers.listed by a trigger (an index serves digests and date
# filters: a paper never listed is picked by its publication date). Papers of the HF page
# source were dated by their page, so that date is their listing day ("manual": no feed
# named it); other sources' dates are publication dates: those papers get a listing when a
# feed lists them, and until then are picked by publication date as before.
_V3 = (
    """CREATE TABLE listings (
        paper_id TEXT NOT NULL REFERENCES papers(paper_id) ON DELETE CASCADE,
        feed TEXT NOT NULL,
        day TEXT NOT NULL,
        first_seen_at REAL NOT NULL,
        PRIMARY KEY (paper_id, feed, day)
    ) WITHOUT ROWID""",
    "CREATE INDEX listings_day ON listings(day, feed)",
    "CREATE INDEX listings_seen ON listings(first_seen_at)",
    "ALTER TABLE papers ADD COLUMN listed TEXT",
    "CREATE INDEX papers_day ON papers(COALESCE(listed, published))",
    "CREATE INDEX papers_ingested ON papers(ingested_at)",  # what arrived since (notify)
    """CREATE TRIGGER listings_first_day AFTER INSERT ON listings BEGIN
        UPDATE papers SET listed = NEW.day
        WHERE paper_id = NEW.paper_id AND (listed IS NULL OR listed > NEW.day);
    END""",
    "INSERT INTO listings(paper_id, feed, day, first_seen_at) "
    "SELECT paper_id, 'manual', published, ingested_at FROM papers "
    "WHERE source = 'hf_page' AND published IS NOT NULL",
)

MIGRATIONS = (
    Migration(1, "the corpus tables", lambda db: execute_all(db, _V1)),
    Migration(
        2,
        "the embedding cache as a rowid table",
        lambda db: execute_all(db, _V2),
        compact=True,
    ),
    Migration(
        3, "feed listings: the day each feed listed each paper", lambda db: execute_all(db, _V3)
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

# PostgreSQL (PAPERBOT_DATABASE_URL): the schema `paperbot_corpus` is created at the latest
# version in one step (retrieval/db.py `migrate_postgres`); a later change adds a
# `PgMigration` to PG_MIGRATIONS as well as a step to MIGRATIONS. Times are UNIX seconds as
# DOUBLE PRECISION (PostgreSQL's REAL is 4 bytes), days ISO text as in SQLite, so every query
# of retrieval/state.py runs on both.
PG_SCHEMA = "paperbot_corpus"
PG_CREATE = (
    """CREATE TABLE papers (
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
        ingested_at DOUBLE PRECISION NOT NULL,
        changed_at DOUBLE PRECISION NOT NULL,
        listed TEXT
    )""",
    "CREATE INDEX papers_title_key ON papers(title_key)",
    "CREATE INDEX papers_published ON papers(published)",
    "CREATE INDEX papers_day ON papers((COALESCE(listed, published)))",
    "CREATE INDEX papers_ingested ON papers(ingested_at)",
    """CREATE TABLE chunks (
        chunk_id TEXT PRIMARY KEY,
        paper_id TEXT NOT NULL REFERENCES papers(paper_id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        text TEXT NOT NULL,
        n_tokens INTEGER NOT NULL
    )""",
    "CREATE INDEX chunks_paper ON chunks(paper_id)",
    """CREATE TABLE embedding_cache (
        model TEXT NOT NULL,
        text_hash TEXT NOT NULL,
        vector BYTEA NOT NULL,
        PRIMARY KEY (model, text_hash)
    )""",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE cache (
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (namespace, key)
    )""",
    """CREATE TABLE listings (
        paper_id TEXT NOT NULL REFERENCES papers(paper_id) ON DELETE CASCADE,
        feed TEXT NOT NULL,
        day TEXT NOT NULL,
        first_seen_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (paper_id, feed, day)
    )""",
    "CREATE INDEX listings_day ON listings(day, feed)",
    "CREATE INDEX listings_seen ON listings(first_seen_at)",
    """CREATE FUNCTION listings_first_day() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE papers SET listed = NEW.day
        WHERE paper_id = NEW.paper_id AND (listed IS NULL OR listed > NEW.day);
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER listings_first_day AFTER INSERT ON listings
        FOR EACH ROW EXECUTE FUNCTION listings_first_day()""",
)
PG_MIGRATIONS: tuple[PgMigration, ...] = ()
