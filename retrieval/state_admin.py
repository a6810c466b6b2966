"""`paperbot state`: check, back up, restore and rebuild the data dir's SQLite files.

The files are the corpus state (`state.sqlite3`: papers, chunks, listings, the embedding
cache, caches) and the bot's store (`bot.sqlite3`: subscriptions, schedules, feedback, feeds,
the answer queue). The file operations are in retrieval/state_files.py; this module knows the
data dir: which files there are, the writer lock (nothing is replaced while an ingest runs),
and what a rebuilt state means for the vector index.

What a rebuild can and cannot bring back. The state is salvaged from its own readable pages
(papers, chunks, listings, embedding cache rows, its id). The vector index holds each chunk's
vector and paper id but no text, so a paper whose rows were on damaged pages cannot be
recreated from it: the rebuild names those papers (their ids, arXiv ids for most) and
re-ingesting their feeds brings them back (with the embedding cache rows that survived, their
chunks are not embedded again). The bot's file has no other copy: what its damaged pages held
is lost (a backup is the only way back).

With PAPERBOT_DATABASE_URL the state and the bot's store are two schemas of a PostgreSQL
database: `check` reports them (reachable, schema version, rows per table, bytes), and
backup, restore and rebuild refuse with the way to do it there (`pg_dump` / `pg_restore`;
the server keeps its own pages sound).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from retrieval.db import PostgresDatabase, postgres_version, redact_url, secret
from retrieval.errors import StateFileError
from retrieval.freshness import writer_lock
from retrieval.settings import RetrievalSettings
from retrieval.state_files import (
    FileCheck,
    backup_file,
    check_file,
    refuse_if_open,
    restore_file,
    salvage_file,
    set_aside,
)
from retrieval.store import VectorStore

log = logging.getLogger(__name__)

STATE_FILE = "state.sqlite3"
BOT_FILE = "bot.sqlite3"
FILES = (STATE_FILE, BOT_FILE)
# the PostgreSQL schema that holds each file's tables (retrieval/state_schema.py,
# bot/slack/store_schema.py)
SCHEMAS = {STATE_FILE: "paperbot_corpus", BOT_FILE: "paperbot_bot"}
_POSTGRES_WAY = {
    "backup": (
        "back it up with `pg_dump --format=custom --schema=paperbot_corpus "
        '--schema=paperbot_bot -f paperbot.dump "$PAPERBOT_DATABASE_URL"` (consistent while '
        "paperbot runs)."
    ),
    "restore": (
        "stop every paperbot process, then `pg_restore --clean --if-exists -d "
        '"$PAPERBOT_DATABASE_URL" paperbot.dump`.'
    ),
    "rebuild": (
        "PostgreSQL keeps its own pages sound, there is nothing to salvage: restore a pg_dump "
        "(`pg_restore`), or `paperbot state reindex` to rebuild the vector index from the state."
    ),
}


class StateAdmin:
    """The data dir's SQLite files as a whole. `store` (the vector index, for `rebuild`'s
    comparison) may be injected; by default it is opened from the settings when needed."""

    def __init__(self, settings: RetrievalSettings, *, store: VectorStore | None = None) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        self._store = store

    def path(self, name: str) -> Path:
        return self.data_dir / name

    def _evidence(self, name: str) -> list[Path]:
        others = [self.path(f) for f in FILES if f != name]
        lexical = self.settings.lexical_path
        # bm25.npz, or the segmented index's folder beside it (data_dir/bm25)
        return [*others, self.settings.chroma_path, lexical, lexical.with_suffix("")]

    @property
    def database_url(self) -> str | None:
        return secret(self.settings.database_url)

    def _not_on_postgres(self, what: str) -> None:
        url = self.database_url
        if url is None:
            return
        where = redact_url(url)
        raise StateFileError(
            f"The state is in PostgreSQL ({where}), not in files: `paperbot state {what}` "
            f"works on SQLite files only. Fix: {_POSTGRES_WAY[what]}"
        )

    # --- check ---
    def check(self) -> dict[str, Any]:
        """Every file's check (a full `PRAGMA quick_check`, whatever its size); with a
        database URL, each schema's (reachable, version, rows)."""
        if self.database_url is not None:
            files = {name: check_schema(self.database_url, name) for name in FILES}
        else:
            files = {name: check_file(self.path(name), self._evidence(name)) for name in FILES}
        return {
            "data_dir": str(self.data_dir),
            "ok": all(f.ok for f in files.values()),
            "files": {name: f.as_dict() for name, f in files.items()},
        }

    # --- backup ---
    def backup(self, dest: Path | None = None) -> dict[str, Any]:
        """Back up every file that exists into ``dest`` (default: a new timestamped folder
        under data_dir/backups), consistently while other processes use them."""
        self._not_on_postgres("backup")
        target = dest or self.data_dir / "backups" / time.strftime("%Y%m%dT%H%M%S")
        done: dict[str, int] = {}
        for name in FILES:
            source = self.path(name)
            if source.is_file() and source.stat().st_size:
                done[name] = backup_file(source, target / name)
        if not done:
            raise StateFileError(f"Nothing to back up: {self.data_dir} holds neither {FILES}.")
        return {"backup": str(target), "files": done}

    # --- restore ---
    def restore(self, source: Path) -> dict[str, Any]:
        """Put the files of a backup (a folder made by `backup`, or one file named like the
        one it replaces) in place. Refuses while another process writes the index or has a
        file open; each replaced file is kept as `<name>.bak`."""
        self._not_on_postgres("restore")
        found = self._backup_files(source)
        with writer_lock(self.data_dir, wait=False) as locked:
            if not locked:
                raise StateFileError(
                    f"Another paperbot process is writing {self.data_dir} (an ingest or a "
                    "feed poll holds ingest.lock): nothing was restored. Fix: let it finish "
                    "or stop it, then run this again."
                )
            kept = {}
            for name, backup in found.items():
                previous = restore_file(backup, self.path(name))
                kept[name] = str(previous) if previous else None
        return {"restored_from": str(source), "files": sorted(found), "kept": kept}

    def _backup_files(self, source: Path) -> dict[str, Path]:
        if source.is_dir():
            found = {name: source / name for name in FILES if (source / name).is_file()}
        elif source.is_file() and source.name in FILES:
            found = {source.name: source}
        else:
            found = {}
        if not found:
            raise StateFileError(
                f"{source} is not a backup: give the folder `paperbot state backup` printed "
                f"(it holds {' and/or '.join(FILES)}), or one of those files."
            )
        return found

    # --- rebuild ---
    def rebuild(self, name: str = STATE_FILE) -> dict[str, Any]:
        """Salvage the readable rows of a damaged file into a new one, keep the damaged file
        as `<name>.damaged`, and put the new one in its place. For the state, compare with the
        vector index and name what could not be recovered."""
        self._not_on_postgres("rebuild")
        if name not in FILES:
            raise StateFileError(f"No data file {name!r}; choose one of {', '.join(FILES)}.")
        path = self.path(name)
        if not path.is_file():
            raise StateFileError(f"{path} does not exist: there is nothing to rebuild.")
        with writer_lock(self.data_dir, wait=False) as locked:
            if not locked:
                raise StateFileError(
                    f"Another paperbot process is writing {self.data_dir}: nothing was "
                    "changed. Fix: let it finish or stop it, then run this again."
                )
            refuse_if_open(path)
            rebuilt = path.with_name(path.name + ".rebuilt")
            salvage = salvage_file(path, rebuilt)
            if name == STATE_FILE and rebuilt.is_file():
                _mark_for_repair(rebuilt)
            kept = set_aside(path, ".damaged")
            if rebuilt.is_file():
                os.replace(rebuilt, path)
        report: dict[str, Any] = {"file": str(path), "damaged_copy": str(kept), **asdict(salvage)}
        if name == STATE_FILE:
            report["lost"] = self._lost_papers(path)
        else:
            report["lost"] = (
                "rows on damaged pages of the bot's file (subscriptions, schedules, feedback, "
                "digest posts, answer jobs): there is no other copy; restore a backup for them"
                if salvage.damaged_tables or salvage.problems
                else None
            )
        return report

    def _lost_papers(self, path: Path) -> dict[str, Any]:
        """Papers the vector index knows but the rebuilt state does not (their text is gone)."""
        import sqlite3
        from contextlib import closing

        kept: set[str] = set()
        if path.is_file():
            with closing(sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)) as db:
                try:
                    kept = {str(r[0]) for r in db.execute("SELECT paper_id FROM papers")}
                except sqlite3.Error:
                    kept = set()
        try:
            in_index = set(self.store().chunk_papers().values())
        except Exception as exc:  # the index may be unreachable: say so, do not fail
            return {"papers": None, "ids": [], "note": f"the vector index was not read: {exc}"}
        lost = sorted(p for p in in_index - kept if p)
        return {
            "papers": len(lost),
            "ids": lost,
            "note": (
                "the vector index holds no text: re-ingest the feeds that listed these papers "
                "(chunks whose vectors are still in the embedding cache are not embedded again)"
                if lost
                else "every paper in the vector index is in the rebuilt state"
            ),
        }

    def store(self) -> VectorStore:
        if self._store is None:
            from retrieval.embeddings import build_embedder

            model_id = build_embedder(self.settings).model_id  # loads nothing
            self._store = VectorStore.from_settings(self.settings, model_id, None)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def _mark_for_repair(path: Path) -> None:
    """A salvaged state may lack chunks the vector index has: mark the index dirty (the next
    ingest repairs it) and bump the generation (the BM25 index is rebuilt)."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        except sqlite3.OperationalError:  # no meta table survived: a new state
            return
        generation = int(row[0]) + 1 if row else 1
        for key, value in (("generation", str(generation)), ("index_dirty", "1")):
            db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )


def check_schema(url: str, name: str) -> FileCheck:
    """What `paperbot state check` reports about one store's PostgreSQL schema (``name``:
    the file it stands for): reachable, its version, rows per table, bytes on disk."""
    schema = SCHEMAS[name]
    report = FileCheck(f"{redact_url(url)} (schema {schema})", False)
    try:
        db = PostgresDatabase(url, schema, create=False)
    except StateFileError as exc:
        report.ok = False
        report.problems.append(str(exc))
        return report
    try:
        report.schema_version = postgres_version(db) or None
        report.exists = report.schema_version is not None
        tables = [
            str(r["table_name"])
            for r in db.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
                "AND table_type = 'BASE TABLE' ORDER BY table_name",
                (schema,),
            )
        ]
        for table in tables:
            if table != "schema_version":
                count = db.execute(f'SELECT COUNT(*) AS n FROM "{table}"').fetchone()
                report.rows[table] = int(count["n"])
            size = db.execute("SELECT pg_total_relation_size(?) AS n", (f'{schema}."{table}"',))
            report.size += int(size.fetchone()["n"] or 0)
    except StateFileError as exc:
        report.ok = False
        report.problems.append(str(exc))
    finally:
        db.close()
    return report
