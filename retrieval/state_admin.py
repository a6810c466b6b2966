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
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from retrieval.errors import StateFileError
from retrieval.freshness import writer_lock
from retrieval.settings import RetrievalSettings
from retrieval.state_files import (
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
        return [*others, self.settings.chroma_path, self.settings.lexical_path]

    # --- check ---
    def check(self) -> dict[str, Any]:
        """Every file's check (a full `PRAGMA quick_check`, whatever its size)."""
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
