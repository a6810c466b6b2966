"""SQLite state of the corpus: paper metadata, chunk texts, the embedding cache, caches.

This is the only module that touches the state file. It is the source of truth for which
papers and chunks exist; the Chroma index and the BM25 index are kept in step with it.
The file carries a schema version (`PRAGMA user_version`) and is migrated in place on open
(retrieval/state_schema.py). The Slack bot keeps its bookkeeping in a file of its own.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.migrations import migrate
from retrieval.models import Chunk, Paper
from retrieval.normalize import title_key
from retrieval.state_schema import MIGRATIONS

_PAPER_COLUMNS = (
    "paper_id, title, title_key, abstract, authors, published, updated, source, arxiv_id, "
    "version, url, pdf_url, upvotes, comments, categories, content_hash"
)


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


class StateStore:
    """Thread-safe wrapper over one SQLite connection (WAL, so readers never block writers)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            migrate(self._db, MIGRATIONS, path)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All or nothing: a crash inside leaves the file as it was before."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, params))

    # --- meta ---
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0]["value"]) if rows else default

    def set_meta(self, key: str, value: str, db: sqlite3.Connection | None = None) -> None:
        sql = (
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value"
        )
        if db is not None:
            db.execute(sql, (key, value))
            return
        with self._lock:
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
        ids = list(dict.fromkeys(paper_ids))
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            marks = ",".join("?" * len(batch))
            sql = f"SELECT {_PAPER_COLUMNS} FROM papers WHERE paper_id IN ({marks})"
            for row in self._query(sql, batch):
                paper = _row_to_paper(row)
                found[paper.paper_id] = StoredVersion(row["content_hash"], row["version"], paper)
        return found

    def paper_ids_by_title(self, title: str) -> list[str]:
        rows = self._query("SELECT paper_id FROM papers WHERE title_key = ?", (title_key(title),))
        return [r["paper_id"] for r in rows]

    def get_paper(self, paper_id: str) -> Paper | None:
        rows = self._query(f"SELECT {_PAPER_COLUMNS} FROM papers WHERE paper_id = ?", (paper_id,))
        return _row_to_paper(rows[0]) if rows else None

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
    ) -> list[Paper]:
        where, params = _paper_filters(since, until, source)
        sql = (
            f"SELECT {_PAPER_COLUMNS} FROM papers {where} "
            "ORDER BY published IS NULL, published DESC, upvotes DESC, title LIMIT ? OFFSET ?"
        )
        rows = self._query(sql, [*params, -1 if limit is None else limit, offset])
        return [_row_to_paper(r) for r in rows]

    def papers_ingested_since(self, since: float) -> list[Paper]:
        rows = self._query(
            f"SELECT {_PAPER_COLUMNS} FROM papers WHERE ingested_at > ? ORDER BY ingested_at",
            (since,),
        )
        return [_row_to_paper(r) for r in rows]

    def count_papers(self) -> int:
        return int(self._query("SELECT COUNT(*) AS n FROM papers")[0]["n"])

    def stats(self) -> dict[str, Any]:
        by_source = {
            r["source"]: r["n"]
            for r in self._query("SELECT source, COUNT(*) AS n FROM papers GROUP BY source")
        }
        span = self._query("SELECT MIN(published) AS lo, MAX(published) AS hi FROM papers")[0]
        return {
            "papers": self.count_papers(),
            "chunks": self.count_chunks(),
            "by_source": by_source,
            "earliest": span["lo"],
            "latest": span["hi"],
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
        ids = list(paper_ids)
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            marks = ",".join("?" * len(batch))
            sql = f"SELECT paper_id, chunk_id FROM chunks WHERE paper_id IN ({marks}) ORDER BY idx"
            for row in self._query(sql, batch):
                result.setdefault(row["paper_id"], []).append(row["chunk_id"])
        return result

    def get_chunks(self, chunk_ids: Sequence[str]) -> dict[str, Chunk]:
        found: dict[str, Chunk] = {}
        ids = list(chunk_ids)
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            marks = ",".join("?" * len(batch))
            sql = (
                "SELECT c.chunk_id, c.paper_id, c.idx, c.text, c.n_tokens, p.title FROM chunks c "
                f"JOIN papers p USING (paper_id) WHERE c.chunk_id IN ({marks})"
            )
            for row in self._query(sql, batch):
                found[row["chunk_id"]] = _row_to_chunk(row)
        return found

    def iter_chunks(self) -> Iterator[tuple[Chunk, str | None, str]]:
        """Every chunk with its paper's published date and source, in a stable order."""
        sql = (
            "SELECT c.chunk_id, c.paper_id, c.idx, c.text, c.n_tokens, p.title, p.published, "
            "p.source FROM chunks c JOIN papers p USING (paper_id) ORDER BY c.chunk_id"
        )
        for row in self._query(sql):
            yield _row_to_chunk(row), row["published"], row["source"]

    # --- writes ---
    def apply(self, changes: Sequence[Change], vectors: dict[str, np.ndarray], model: str) -> None:
        """Write papers, their chunks and new embeddings in one transaction.

        Marks the vector index dirty in the same transaction, so a crash before the vector
        store has caught up is repaired by the next reconcile.
        """
        now = time.time()
        with self.transaction() as db:
            for change in changes:
                for old_id in change.replaces:
                    db.execute("DELETE FROM papers WHERE paper_id = ?", (old_id,))
                _upsert_paper(db, change.paper, now, content_changed=change.chunks is not None)
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
            if any(c.chunks is not None or c.replaces for c in changes):
                self._bump(db)

    def delete_papers(self, paper_ids: Sequence[str]) -> int:
        with self.transaction() as db:
            marks = ",".join("?" * len(paper_ids))
            deleted = db.execute(f"DELETE FROM papers WHERE paper_id IN ({marks})", list(paper_ids))
            if deleted.rowcount:
                self._bump(db)
            return int(deleted.rowcount)

    def _bump(self, db: sqlite3.Connection) -> None:
        row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        self.set_meta("generation", str(int(row[0] if row else 0) + 1), db)
        self.set_meta("index_dirty", "1", db)

    # --- cache of recomputable values (TL;DRs, topic names): JSON under (namespace, key) ---
    def cache_get(self, namespace: str, key: str) -> Any | None:
        rows = self._query(
            "SELECT value FROM cache WHERE namespace = ? AND key = ?", (namespace, key)
        )
        return json.loads(rows[0]["value"]) if rows else None

    def cache_put(self, namespace: str, key: str, value: Any) -> None:
        with self._lock:
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
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(text_hashes), 500):
            batch = list(text_hashes[start : start + 500])
            marks = ",".join("?" * len(batch))
            sql = (
                "SELECT text_hash, vector FROM embedding_cache "
                f"WHERE model = ? AND text_hash IN ({marks})"
            )
            for row in self._query(sql, [model, *batch]):
                found[row["text_hash"]] = np.frombuffer(row["vector"], dtype=np.float32)
        return found

    def put_vectors(self, vectors: dict[str, np.ndarray], model: str) -> None:
        with self.transaction() as db:
            self._put_vectors(db, vectors, model)

    @staticmethod
    def _put_vectors(db: sqlite3.Connection, vectors: dict[str, np.ndarray], model: str) -> None:
        db.executemany(
            "INSERT OR IGNORE INTO embedding_cache(model, text_hash, vector) VALUES (?, ?, ?)",
            [(model, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in vectors.items()],
        )


def _upsert_paper(db: sqlite3.Connection, paper: Paper, now: float, content_changed: bool) -> None:
    values = _paper_to_row(paper)
    db.execute(
        f"INSERT INTO papers({_PAPER_COLUMNS}, ingested_at, changed_at) "
        f"VALUES ({','.join('?' * (len(values) + 2))}) "
        "ON CONFLICT(paper_id) DO UPDATE SET "
        + ", ".join(f"{c.strip()}=excluded.{c.strip()}" for c in _PAPER_COLUMNS.split(",")[1:])
        + (", changed_at=excluded.changed_at" if content_changed else ""),
        (*values, now, now),
    )


def _paper_to_row(p: Paper) -> tuple[Any, ...]:
    return (
        p.paper_id,
        p.title,
        title_key(p.title),
        p.abstract,
        json.dumps(list(p.authors)),
        p.published.isoformat() if p.published else None,
        p.updated.isoformat() if p.updated else None,
        p.source,
        p.arxiv_id,
        p.version,
        p.url,
        p.pdf_url,
        p.upvotes,
        p.comments,
        json.dumps(list(p.categories)),
        p.content_hash,
    )


def _row_to_paper(row: sqlite3.Row) -> Paper:
    return Paper(
        paper_id=row["paper_id"],
        title=row["title"],
        abstract=row["abstract"],
        authors=tuple(json.loads(row["authors"])),
        published=date.fromisoformat(row["published"]) if row["published"] else None,
        updated=date.fromisoformat(row["updated"]) if row["updated"] else None,
        source=row["source"],
        arxiv_id=row["arxiv_id"],
        version=row["version"],
        url=row["url"],
        pdf_url=row["pdf_url"],
        upvotes=row["upvotes"],
        comments=row["comments"],
        categories=tuple(json.loads(row["categories"])),
    )


def _row_to_chunk(row: sqlite3.Row) -> Chunk:
    return Chunk(
        row["chunk_id"], row["paper_id"], row["idx"], row["text"], row["n_tokens"], row["title"]
    )


def _paper_filters(
    since: date | None, until: date | None, source: str | None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if since:
        clauses.append("published >= ?")
        params.append(since.isoformat())
    if until:
        clauses.append("published <= ?")
        params.append(until.isoformat())
    if source:
        clauses.append("source = ?")
        params.append(source)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params
