"""Schema versions for paperbot's SQLite files: an ordered ladder of migrations.

Each file records its schema version in `PRAGMA user_version` (0 for a new file and for
files written before versions existed). `migrate` applies the steps above that version in
order, each in its own transaction together with the new version number, so a crash
mid-step leaves the file at the previous version and the step runs again on the next open.
Several processes may open the same file at once: the version is read again under the
write lock, and a step another process already applied is skipped.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from retrieval.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    """Brings a file from schema version `version - 1` to `version`."""

    version: int
    description: str
    apply: Callable[[sqlite3.Connection], None]
    compact: bool = False  # the step frees many pages: VACUUM afterwards (best effort)


def schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA main.user_version").fetchone()[0])


def migrate(db: sqlite3.Connection, steps: Sequence[Migration], path: Path | str) -> list[int]:
    """Apply the steps above the file's version; return the versions applied.

    `db` must be in autocommit mode (isolation_level=None). A file newer than the last step
    (written by a newer paperbot) raises ConfigError naming the file.
    """
    if [s.version for s in steps] != list(range(1, len(steps) + 1)):
        raise ValueError("migration steps must be numbered 1, 2, 3, ... in order")
    latest = len(steps)
    _check_not_newer(schema_version(db), latest, path)
    applied: list[int] = []
    while schema_version(db) < latest:
        db.execute("BEGIN IMMEDIATE")
        try:
            current = schema_version(db)  # again, under the write lock
            _check_not_newer(current, latest, path)
            if current < latest:
                step = steps[current]
                # a new file climbs the whole ladder: only upgrades of existing data are news
                log.log(
                    logging.INFO if current else logging.DEBUG,
                    "%s: schema v%d -> v%d (%s)",
                    path,
                    current,
                    step.version,
                    step.description,
                )
                step.apply(db)
                db.execute(f"PRAGMA main.user_version = {int(step.version)}")
                applied.append(step.version)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    if any(steps[v - 1].compact for v in applied):
        _compact(db, path)
    return applied


def use_wal(db: sqlite3.Connection, timeout: float = 30.0) -> None:
    """Switch a connection's file to WAL (readers never block the writer).

    Switching a new file needs a moment of exclusive access, and SQLite reports "database is
    locked" at once, without its busy handler, when several processes open the same new file
    together (two `serve` replicas starting): retry for up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def execute_all(db: sqlite3.Connection, statements: Sequence[str]) -> None:
    """Run DDL statements one by one (executescript would commit the open transaction)."""
    for statement in statements:
        db.execute(statement)


def _compact(db: sqlite3.Connection, path: Path | str) -> None:
    """Give the pages a migration freed back to the file system (else only reused later)."""
    try:
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.OperationalError as exc:  # busy: the file stays correct, only larger
        log.warning("%s: could not compact after the migration (%s); VACUUM it later", path, exc)


def _check_not_newer(version: int, latest: int, path: Path | str) -> None:
    if version > latest:
        raise ConfigError(
            f"{path} has schema version {version}, but this paperbot knows versions up to "
            f"{latest}: it was written by a newer paperbot. Upgrade paperbot, or set "
            "PAPERBOT_DATA_DIR to another directory."
        )
