"""The state of the corpus: paper metadata, chunk texts, the embedding cache, caches.

It lives in a SQLite file (the default) or, with `PAPERBOT_DATABASE_URL`, in the
`paperbot_corpus` schema of a PostgreSQL database that several replicas share (the same
queries on both, through retrieval/db.py; a new PostgreSQL schema is created at the latest
version). This is the only module that touches the state. It is the source of truth for which
papers and chunks exist; the Chroma index and the BM25 index are kept in step with it.
The file carries a schema version (`PRAGMA user_version`) and is migrated in place on open
(retrieval/state_schema.py). The Slack bot keeps its bookkeeping in a file of its own.

A damaged file is a one-line `StateFileError` naming the file and the way out, on open
(`PRAGMA quick_check`) and on any later read or write that meets a damaged page. A 0-byte file
in a data dir that has been used (vectors, a BM25 index, the bot's file) is refused, never
taken for a new state. A file or data dir this process may not write is opened read-only
(`mode=ro`, or `immutable=1` when SQLite cannot even create its WAL index): reads work, and a
write says why it cannot happen (retrieval/state_files.py).

Size: one class with one method per query of one file; how rows map to papers is already in
state_rows.py and the whole-file operations (backup, restore, salvage) in state_files.py.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.db import Database, PostgresDatabase, SqliteDatabase, migrate_postgres, secret
from retrieval.errors import StateFileError
from retrieval.migrations import damaged, integrity_problems, is_damage, migrate, use_wal
from retrieval.models import Chunk, DateField, Listing, Paper
from retrieval.normalize import title_key
from retrieval.state_files import open_read_only, refuse_emptied, writable
from retrieval.state_rows import (
    DAY_SQL,
    READ_COLUMNS,
    insert_listings,
    paper_filters,
    row_day,
    row_to_chunk,
    row_to_paper,
    upsert_paper,
    upsert_papers,
)
from retrieval.state_schema import MIGRATIONS, PG_CREATE, PG_MIGRATIONS, PG_SCHEMA, SCHEMA_VERSION


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """What ingest compares an incoming paper against."""

    content_hash: str
    version: int | None
    paper: Paper


@dataclass(frozen=True, slots=True)
class Change:
    """One paper's new state plus the chunks it replaces (applied atomically with others)."""

    paper: Paper
    chunks: Sequence[Chunk] | None  # None: metadata only, chunks stay
    replaces: Sequence[str] = ()  # paper ids merged into this one (e.g. a title-hash duplicate)


# files beside the state that show a data dir has been used (a 0-byte state next to them
# was lost, not created)
_EVIDENCE = ("chroma", "bm25.npz", "bm25", "bot.sqlite3")  # bm25/: the segmented index
_now = time.time  # this host's clock (`clock_skew`; a test moves it)
_NO_LIMIT = 2**62  # LIMIT ? without a limit (SQLite's -1 is not PostgreSQL's)


class StateStore:
    """Thread-safe wrapper over one connection: a SQLite file (WAL, so readers never block
    writers) or, with ``database_url``, a PostgreSQL database (``path`` then only names the
    data dir in messages)."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        database_url: Any = None,
        mmap_mb: int = 1024,
    ) -> None:
        self.path = path
        self._mmap_bytes = max(0, mmap_mb) << 20
        self._clock = clock  # when papers are ingested and listings first seen
        self._lock = threading.RLock()
        url = secret(database_url)
        self._url = url
        self.read_only = False
        if url is not None:
            pg = PostgresDatabase(url, PG_SCHEMA)
            try:
                migrate_postgres(pg, PG_CREATE, SCHEMA_VERSION, PG_MIGRATIONS)
            except BaseException:
                pg.close()
                raise
            self._db: Database = pg
            return
        refuse_emptied(path, [path.parent / name for name in _EVIDENCE])
        self.read_only = path.is_file() and not writable(path)
        if not self.read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._connect()

    @classmethod
    def from_settings(cls, settings: Any, *, clock: Callable[[], float] = time.time) -> StateStore:
        """The state the settings name: PAPERBOT_DATABASE_URL, else the data dir's file."""
        return cls(
            settings.state_path,
            clock=clock,
            database_url=settings.database_url,
            mmap_mb=settings.sqlite_mmap_mb,
        )

    @property
    def backend(self) -> str:
        """ "sqlite" or "postgres"."""
        return self._db.dialect

    @property
    def location(self) -> str:
        """Where the state is, for messages: the file, or the database (no password)."""
        return self._db.label

    def _connect(self) -> SqliteDatabase:
        if self.read_only:  # not mapped: an immutable=1 reader takes no locks, and a file
            # another user's writer shrinks under a map is a SIGBUS instead of an error
            return SqliteDatabase(open_read_only(self.path, len(MIGRATIONS)), str(self.path))
        try:
            db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30
            )
        except sqlite3.OperationalError as exc:
            raise StateFileError(
                f"Cannot open or create {self.path} ({exc}). Fix: make {self.path.parent} "
                "writable by this user, or point PAPERBOT_DATA_DIR at a data dir it may use."
            ) from exc
        try:
            db.row_factory = sqlite3.Row
            use_wal(db)
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA synchronous=NORMAL")
            # random row reads (a search's chunks) through the page cache without a read()
            # call per page: a search's chunk rows 1.8x faster at 10⁵ chunks (the SQL alone
            # 3.6x; docs/benchmarks.md §6)
            db.execute(f"PRAGMA mmap_size={self._mmap_bytes}")
            migrate(db, MIGRATIONS, self.path)
        except BaseException:
            db.close()
            raise
        return SqliteDatabase(db, str(self.path))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """SQLite errors a user can act on become one line naming this file."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise damaged(self.path, str(exc)) from exc
            if self.read_only or "readonly" in str(exc):
                raise StateFileError(
                    f"{self.path} cannot be written ({exc}): this command needs a writable "
                    "data dir. Fix: make the data dir and its files writable by this user, or "
                    "run read-only commands (stats, search, ask, papers) only."
                ) from exc
            raise

    def integrity_problems(self) -> list[str]:
        """What `PRAGMA quick_check` finds wrong with the file now (empty: sound). A
        PostgreSQL state has no file to check: the server keeps its own pages sound."""
        if not isinstance(self._db, SqliteDatabase):
            return []
        with self._lock:
            return integrity_problems(self._db.raw)

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """All or nothing: a crash inside leaves the state as it was before. One writer at a
        time (SQLite's BEGIN IMMEDIATE; PostgreSQL's lock on the schema, across hosts)."""
        with self._lock, self._guard(), self._db.transaction() as db:
            yield db

    @contextmanager
    def writer_lock(self, *, wait: bool = True) -> Iterator[bool]:
        """One corpus writer at a time across every host that shares this PostgreSQL state
        (a session advisory lock, on a connection of its own, held for the whole write);
        yields False, without the lock, when ``wait`` is off and another writer holds it.
        A SQLite state yields True at once: the data dir's `ingest.lock` serialises its
        writers (retrieval/freshness.py `writer_lock`)."""
        if self._url is None:
            yield True
            return
        lock = PostgresDatabase(self._url, PG_SCHEMA, create=False)
        key = f"paperbot:{PG_SCHEMA}:writer"
        try:
            if wait:
                lock.execute("SELECT pg_advisory_lock(hashtext(?))", (key,))
            else:
                row = lock.execute("SELECT pg_try_advisory_lock(hashtext(?)) AS ok", (key,))
                if not row.fetchone()["ok"]:
                    yield False
                    return
            yield True
        finally:
            lock.close()  # the session ends: its advisory lock is released with it

    def clock_skew(self) -> float | None:
        """The database's clock minus this host's, in seconds (against the middle of the
        round trip); None for a SQLite file, which has no clock of its own. Replicas compare
        leases (answer jobs, digest and feed claims) with their own clocks, so their skew
        must stay well below the shortest lease."""
        if self.backend != "postgres":
            return None
        best: tuple[float, float] | None = None  # (round trip, skew): the shortest trip wins
        with self._lock, self._guard():
            for _ in range(3):
                before = _now()
                row = self._db.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp()) AS now")
                database = float(row.fetchone()["now"])
                after = _now()
                if best is None or after - before < best[0]:
                    best = (after - before, database - (before + after) / 2)
        return best[1] if best is not None else None

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock, self._guard():
            return list(self._db.execute(sql, params))

    def _query_in(self, sql: str, keys: Sequence[str], before: Sequence[Any] = ()) -> Iterator[Any]:
        """The rows of ``sql`` (its ``{marks}`` an ``IN`` list after the ``before`` parameters)
        for the keys, 500 at a time."""
        for start in range(0, len(keys), 500):
            batch = keys[start : start + 500]
            marks = ",".join("?" * len(batch))
            yield from self._query(sql.format(marks=marks), [*before, *batch])

    # --- meta ---
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0]["value"]) if rows else default

    def get_metas(self, keys: Sequence[str]) -> dict[str, str]:
        """Several meta values in one read (one round trip to PostgreSQL); absent keys left out."""
        rows = self._query_in("SELECT key, value FROM meta WHERE key IN ({marks})", list(keys))
        return {row["key"]: str(row["value"]) for row in rows}

    def set_meta(self, key: str, value: str, db: Database | None = None) -> None:
        sql = (
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value"
        )
        if db is not None:
            db.execute(sql, (key, value))
            return
        with self._lock, self._guard():
            self._db.execute(sql, (key, value))

    @property
    def generation(self) -> int:
        """Bumped by every change to chunks: derived indexes compare it to know they are stale."""
        return int(self.get_meta("generation", "0") or 0)

    @property
    def index_dirty(self) -> bool:
        """True between a chunk commit and the vector store catching up (or after a crash)."""
        return self.get_meta("index_dirty", "0") == "1"

    def mark_index_clean(self) -> None:
        self.set_meta("index_dirty", "0")

    # --- papers ---
    def stored_versions(self, paper_ids: Iterable[str]) -> dict[str, StoredVersion]:
        found: dict[str, StoredVersion] = {}
        sql = f"SELECT {READ_COLUMNS} FROM papers WHERE paper_id IN ({{marks}})"
        for row in self._query_in(sql, list(dict.fromkeys(paper_ids))):
            paper = row_to_paper(row)
            found[paper.paper_id] = StoredVersion(row["content_hash"], row["version"], paper)
        return found

    def paper_ids_by_title(self, title: str) -> list[str]:
        rows = self._query("SELECT paper_id FROM papers WHERE title_key = ?", (title_key(title),))
        return [r["paper_id"] for r in rows]

    def get_paper(self, paper_id: str) -> Paper | None:
        rows = self._query(f"SELECT {READ_COLUMNS} FROM papers WHERE paper_id = ?", (paper_id,))
        return row_to_paper(rows[0]) if rows else None

    def get_papers(self, paper_ids: Sequence[str]) -> dict[str, Paper]:
        return {pid: v.paper for pid, v in self.stored_versions(paper_ids).items()}

    def list_papers(
        self,
        *,
        since: date | None = None,
        until: date | None = None,
        source: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        by: DateField = "listed",
    ) -> list[Paper]:
        """Papers whose day (see `state_rows.DAY_SQL`) is in [since, until], newest day first."""
        where, params = paper_filters(since, until, source, by)
        day = DAY_SQL[by]
        sql = (
            f"SELECT {READ_COLUMNS} FROM papers {where} "
            # papers without a day come last (SQLite's order, said for PostgreSQL), and the
            # day index serves the order
            f"ORDER BY {day} DESC NULLS LAST, upvotes DESC NULLS LAST, title LIMIT ? OFFSET ?"
        )
        rows = self._query(sql, [*params, _NO_LIMIT if limit is None else limit, offset])
        return [row_to_paper(r) for r in rows]

    def paper_ids_between(
        self,
        since: date | None,
        until: date | None,
        sources: Sequence[str] = (),
        by: DateField = "listed",
    ) -> list[str]:
        """Ids of the papers whose day is in [since, until] (and of one of these sources)."""
        where, params = paper_filters(since, until, None, by)
        if sources:
            clause = f"source IN ({','.join('?' * len(sources))})"
            where = f"{where} AND {clause}" if where else f"WHERE {clause}"
            params = [*params, *sources]
        return [r["paper_id"] for r in self._query(f"SELECT paper_id FROM papers {where}", params)]

    def latest_day(self, by: DateField = "listed") -> date | None:
        """The most recent day any paper has (its first listing day, else publication)."""
        return row_day(self._query(f"SELECT MAX({DAY_SQL[by]}) AS day FROM papers")[0]["day"])

    def papers_ingested_since(self, since: float) -> list[Paper]:
        rows = self._query(
            f"SELECT {READ_COLUMNS} FROM papers WHERE ingested_at > ? ORDER BY ingested_at",
            (since,),
        )
        return [row_to_paper(r) for r in rows]

    def papers_arrived_since(self, since: float, *, day_from: date | None = None) -> list[Paper]:
        """Papers that arrived after a UNIX time, oldest first. A paper arrives when a feed
        first lists it (else, never listed, when it is first ingested): an old paper a feed
        lists today is new today; one a second feed lists again is not. ``day_from``: only
        papers whose day (listing, else publication; none known counts) is that day or later,
        so a backfill of past years arrives without being news."""
        arrived = (
            "COALESCE((SELECT MIN(l.first_seen_at) FROM listings l "
            "WHERE l.paper_id = papers.paper_id), ingested_at)"
        )
        day = DAY_SQL["listed"]
        recent = f"AND ({day} IS NULL OR {day} >= ?) " if day_from else ""
        params: list[Any] = [since, since, since]
        if day_from:
            params.append(day_from.isoformat())
        rows = self._query(
            f"SELECT {READ_COLUMNS}, {arrived} AS arrived FROM papers "
            "WHERE (ingested_at > ? OR paper_id IN "
            "(SELECT paper_id FROM listings WHERE first_seen_at > ?)) "
            f"AND {arrived} > ? {recent}ORDER BY arrived, paper_id",
            params,
        )
        return [row_to_paper(r) for r in rows]

    # --- listings ---
    def listings(
        self,
        *,
        paper_ids: Sequence[str] | None = None,
        feed: str | None = None,
        since: date | None = None,
        until: date | None = None,
    ) -> list[Listing]:
        """Listings by paper, feed and/or day range, oldest day first."""
        clauses: list[str] = []
        params: list[Any] = []
        if paper_ids is not None:
            if not paper_ids:
                return []
            clauses.append(f"paper_id IN ({','.join('?' * len(paper_ids))})")
            params.extend(paper_ids)
        if feed is not None:
            clauses.append("feed = ?")
            params.append(feed)
        if since:
            clauses.append("day >= ?")
            params.append(since.isoformat())
        if until:
            clauses.append("day <= ?")
            params.append(until.isoformat())
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._query(
            f"SELECT paper_id, feed, day, first_seen_at FROM listings {where} "
            "ORDER BY day, feed, paper_id",
            params,
        )
        return [
            Listing(r["paper_id"], r["feed"], date.fromisoformat(r["day"]), r["first_seen_at"])
            for r in rows
        ]

    def add_listings(self, listings: Iterable[tuple[str, str, date]]) -> int:
        """Record (paper id, feed, day) listings of stored papers; returns how many were new.
        A listing changes no chunk: the generation stays, readers see it at once."""
        rows = list(listings)
        if not rows:
            return 0
        with self.transaction() as db:
            return insert_listings(db, rows, self._clock())

    def count_papers(self) -> int:
        return int(self._query("SELECT COUNT(*) AS n FROM papers")[0]["n"])

    def stats(self) -> dict[str, Any]:
        by_source = {
            r["source"]: r["n"]
            for r in self._query("SELECT source, COUNT(*) AS n FROM papers GROUP BY source")
        }
        span = self._query("SELECT MIN(published) AS lo, MAX(published) AS hi FROM papers")[0]
        listed = self._query("SELECT COUNT(*) AS n, MIN(day) AS lo, MAX(day) AS hi FROM listings")[
            0
        ]
        return {
            "papers": self.count_papers(),
            "chunks": self.count_chunks(),
            "by_source": by_source,
            "earliest": span["lo"],
            "latest": span["hi"],
            "listings": int(listed["n"]),
            "earliest_listed": listed["lo"],
            "latest_listed": listed["hi"],
            "cached_embeddings": int(
                self._query("SELECT COUNT(*) AS n FROM embedding_cache")[0]["n"]
            ),
            "generation": self.generation,
        }

    # --- chunks ---
    def count_chunks(self) -> int:
        return int(self._query("SELECT COUNT(*) AS n FROM chunks")[0]["n"])

    def chunk_ids(self) -> set[str]:
        return {r["chunk_id"] for r in self._query("SELECT chunk_id FROM chunks")}

    def chunk_ids_for(self, paper_ids: Iterable[str]) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {}
        sql = "SELECT paper_id, chunk_id FROM chunks WHERE paper_id IN ({marks}) ORDER BY idx"
        for row in self._query_in(sql, list(paper_ids)):
            result.setdefault(row["paper_id"], []).append(row["chunk_id"])
        return result

    def get_chunks(self, chunk_ids: Sequence[str]) -> dict[str, Chunk]:
        sql = (
            "SELECT c.chunk_id, c.paper_id, c.idx, c.text, c.n_tokens, p.title FROM chunks c "
            "JOIN papers p USING (paper_id) WHERE c.chunk_id IN ({marks})"
        )
        return {row["chunk_id"]: row_to_chunk(row) for row in self._query_in(sql, list(chunk_ids))}

    def chunk_texts(self, chunk_ids: Sequence[str]) -> list[tuple[Chunk, date | None, str]]:
        """The chunks (those that exist) with their paper's published day and source: what
        the BM25 chunk field indexes (no `Paper` is built)."""
        sql = (
            "SELECT c.chunk_id, c.paper_id, c.idx, c.text, c.n_tokens, p.title, p.published, "
            "p.source FROM chunks c JOIN papers p USING (paper_id) WHERE c.chunk_id IN ({marks})"
        )
        return [
            (row_to_chunk(row), row_day(row["published"]), row["source"])
            for row in self._query_in(sql, list(chunk_ids))
        ]

    def paper_texts(self, paper_ids: Sequence[str]) -> list[tuple[str, str, date | None, str]]:
        """(paper id, title + abstract, published day, source) of the papers that exist: what
        the BM25 paper field indexes (no `Paper` is built)."""
        sql = (
            "SELECT paper_id, title, abstract, published, source FROM papers "
            "WHERE paper_id IN ({marks})"
        )
        return [
            (
                r["paper_id"],
                f"{r['title']}\n\n{r['abstract']}",
                row_day(r["published"]),
                r["source"],
            )
            for r in self._query_in(sql, list(paper_ids))
        ]

    # --- writes ---
    def apply(
        self,
        changes: Sequence[Change],
        vectors: dict[str, np.ndarray],
        model: str,
        listings: Iterable[tuple[str, str, date]] = (),
    ) -> int:
        """Write papers, their chunks, new embeddings and listings in one transaction.

        Marks the vector index dirty in the same transaction, so a crash before the vector
        store has caught up is repaired by the next reconcile. A paper that replaces another
        (a title-hash duplicate) takes over its listings. Returns the new listings' count.
        """
        now = self._clock()
        ids = [c.paper.paper_id for c in changes]
        if not any(c.replaces for c in changes) and len(set(ids)) == len(ids):
            return self._apply_batch(changes, vectors, model, listings, now)
        with self.transaction() as db:
            for change in changes:
                new_id = change.paper.paper_id
                upsert_paper(db, change.paper, now, content_changed=change.chunks is not None)
                for old_id in change.replaces:
                    db.execute(
                        "INSERT INTO listings(paper_id, feed, day, first_seen_at) "
                        "SELECT ?, feed, day, first_seen_at FROM listings WHERE paper_id = ? "
                        "ON CONFLICT DO NOTHING",
                        (new_id, old_id),
                    )
                    db.execute("DELETE FROM papers WHERE paper_id = ?", (old_id,))
                if change.chunks is not None:
                    db.execute("DELETE FROM chunks WHERE paper_id = ?", (change.paper.paper_id,))
                    db.executemany(
                        "INSERT INTO chunks(chunk_id, paper_id, idx, text, n_tokens) "
                        "VALUES (?,?,?,?,?)",
                        [
                            (c.chunk_id, c.paper_id, c.index, c.text, c.n_tokens)
                            for c in change.chunks
                        ],
                    )
            self._put_vectors(db, vectors, model)
            added = insert_listings(db, list(listings), now)
            if any(c.chunks is not None or c.replaces for c in changes):
                self._bump(db)
        return added

    def _apply_batch(
        self,
        changes: Sequence[Change],
        vectors: dict[str, np.ndarray],
        model: str,
        listings: Iterable[tuple[str, str, date]],
        now: float,
    ) -> int:
        """`apply` of distinct papers that replace none: the same writes, a few statements
        per batch instead of a few per paper (PostgreSQL pays a round trip per statement)."""
        changed = [c for c in changes if c.chunks is not None]
        with self.transaction() as db:
            upsert_papers(db, [c.paper for c in changed], now, content_changed=True)
            upsert_papers(
                db, [c.paper for c in changes if c.chunks is None], now, content_changed=False
            )
            for start in range(0, len(changed), 500):
                batch = [c.paper.paper_id for c in changed[start : start + 500]]
                marks = ",".join("?" * len(batch))
                db.execute(f"DELETE FROM chunks WHERE paper_id IN ({marks})", batch)
            db.executemany(
                "INSERT INTO chunks(chunk_id, paper_id, idx, text, n_tokens) VALUES (?,?,?,?,?)",
                [
                    (c.chunk_id, c.paper_id, c.index, c.text, c.n_tokens)
                    for change in changed
                    for c in change.chunks or ()
                ],
            )
            self._put_vectors(db, vectors, model)
            added = insert_listings(db, list(listings), now)
            if changed:
                self._bump(db)
        return added

    def delete_papers(self, paper_ids: Sequence[str]) -> int:
        with self.transaction() as db:
            marks = ",".join("?" * len(paper_ids))
            deleted = db.execute(f"DELETE FROM papers WHERE paper_id IN ({marks})", list(paper_ids))
            if deleted.rowcount:
                self._bump(db)
            return int(deleted.rowcount)

    def _bump(self, db: Database) -> None:
        """One step up, in the database (replicas sharing a PostgreSQL state never lose one)."""
        db.execute(
            "INSERT INTO meta(key, value) VALUES ('generation', '1') ON CONFLICT(key) DO UPDATE "
            "SET value = CAST(CAST(meta.value AS BIGINT) + 1 AS TEXT)"
        )
        self.set_meta("index_dirty", "1", db)

    # --- cache of recomputable values (TL;DRs, topic names): JSON under (namespace, key) ---
    def cache_get(self, namespace: str, key: str) -> Any | None:
        rows = self._query(
            "SELECT value FROM cache WHERE namespace = ? AND key = ?", (namespace, key)
        )
        return json.loads(rows[0]["value"]) if rows else None

    def cache_put(self, namespace: str, key: str, value: Any) -> None:
        if self.read_only:
            return  # a recomputable value: not kept when the data dir is read-only
        with self._lock, self._guard():
            self._db.execute(
                "INSERT INTO cache(namespace, key, value, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(namespace, key) DO UPDATE SET value = excluded.value",
                (namespace, key, json.dumps(value), time.time()),
            )

    def cache_count(self, namespace: str) -> int:
        rows = self._query("SELECT COUNT(*) AS n FROM cache WHERE namespace = ?", (namespace,))
        return int(rows[0]["n"])

    # --- embedding cache ---
    def cached_vectors(self, model: str, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        sql = "SELECT text_hash, vector FROM embedding_cache WHERE model = ? AND text_hash IN ({marks})"
        return {
            row["text_hash"]: np.frombuffer(row["vector"], dtype=np.float32)
            for row in self._query_in(sql, list(text_hashes), (model,))
        }

    def put_vectors(self, vectors: dict[str, np.ndarray], model: str) -> None:
        if self.read_only:
            return  # a cache: the vectors are simply computed again next time
        with self.transaction() as db:
            self._put_vectors(db, vectors, model)

    @staticmethod
    def _put_vectors(db: Database, vectors: dict[str, np.ndarray], model: str) -> None:
        db.executemany(
            "INSERT INTO embedding_cache(model, text_hash, vector) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            [(model, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in vectors.items()],
        )
