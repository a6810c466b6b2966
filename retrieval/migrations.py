"""Schema versions for paperbot's SQLite files: an ordered ladder of migrations.

Each file records its schema version in `PRAGMA user_version` (0 for a new file and for
files written before versions existed). `migrate` applies the steps above that version in
order, each in its own transaction together with the new version number, so a crash
mid-step leaves the file at the previous version and the step runs again on the next open.
Several processes may open the same file at once: the version is read again under the
write lock, and a step another process already applied is skipped.

Opening also checks the file (`PRAGMA quick_check`, about 1 ms per MB: 1 ms on the sample
state, 0.19 s on a 200 MB file; files over `QUICK_CHECK_MAX_BYTES` are checked by
`paperbot state check`, `doctor` and `serve` at start instead), and every SQLite error that
means a damaged file becomes a one-line `StateFileError` naming the file and the way out
(`damaged`), for both stores.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from retrieval.errors import ConfigError, StateFileError

log = logging.getLogger(__name__)

QUICK_CHECK_MAX_BYTES = 256 * 2**20  # larger files skip the check on every open

# the ways out of a damaged file, by file name (the CLI's `paperbot state` group)
_WAY_OUT = {
    "state.sqlite3": (
        "restore a backup (`paperbot state restore BACKUP_DIR`), or salvage what is readable "
        "(`paperbot state rebuild`; `paperbot state check` shows what is wrong)"
    ),
    "bot.sqlite3": (
        "restore a backup (`paperbot state restore BACKUP_DIR`), or salvage what is readable "
        "(`paperbot state rebuild --bot`; `paperbot state check` shows what is wrong)"
    ),
}


@dataclass(frozen=True, slots=True)
class Migration:
    """Brings a file from schema version `version - 1` to `version`."""

    version: int
    description: str
    apply: Callable[[sqlite3.Connection], None]
    compact: bool = False  # the step frees many pages: VACUUM afterwards (best effort)


def schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA main.user_version").fetchone()[0])


def db_path(db: sqlite3.Connection) -> str:
    """The file behind a connection's main database ("" for an in-memory one)."""
    try:
        for row in db.execute("PRAGMA database_list"):
            if row[1] == "main":
                return str(row[2])
    except sqlite3.Error:
        pass
    return ""


def is_damage(exc: BaseException) -> bool:
    """True for the SQLite errors that mean the file itself is damaged (not busy, not
    read-only): "file is not a database", "database disk image is malformed", ..."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    text = str(exc).lower()
    return not isinstance(exc, sqlite3.OperationalError) or any(
        word in text for word in ("malformed", "not a database", "corrupt")
    )


def damaged(path: Path | str, detail: str) -> StateFileError:
    """The one-line error for a damaged file: which file, what SQLite said, the way out."""
    name = Path(path).name
    detail = " ".join(detail.split())
    detail = detail if len(detail) <= 160 else detail[:157] + "..."
    way_out = _WAY_OUT.get(name, "restore it from a backup, or move it aside to start a new one")
    return StateFileError(f"{path} is damaged (SQLite: {detail}). Fix: {way_out}.")


def integrity_problems(db: sqlite3.Connection, limit: int = 5) -> list[str]:
    """What `PRAGMA quick_check` finds wrong (empty: the file is sound). A file too damaged
    to be checked at all gives SQLite's error as its one problem."""
    try:
        rows = [str(r[0]) for r in db.execute(f"PRAGMA main.quick_check({int(limit)})")]
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        return [str(exc)]
    if rows == ["ok"]:
        return []
    lines = [line.strip() for row in rows for line in row.splitlines()]
    return [line for line in lines if line and not line.startswith("***")]


def _damaged_file(db: sqlite3.Connection, path: Path | str) -> Path | str:
    """Which file a damage error came from: an attached one (e.g. the legacy file a
    migration imports from) when it is the damaged one, else ``path``."""
    try:
        attached = [(str(r[1]), str(r[2])) for r in db.execute("PRAGMA database_list")]
        for schema, file in attached:
            if schema not in ("main", "temp") and file:
                rows = [str(r[0]) for r in db.execute(f'PRAGMA "{schema}".quick_check(1)')]
                if rows != ["ok"]:
                    return file
    except sqlite3.DatabaseError:
        pass
    return path


def check_integrity(db: sqlite3.Connection, path: Path | str) -> None:
    """Raise `damaged` when quick_check finds a problem; skipped for files over
    QUICK_CHECK_MAX_BYTES (`paperbot state check` checks those)."""
    try:
        size = Path(path).stat().st_size
    except (OSError, ValueError):
        size = 0
    if size > QUICK_CHECK_MAX_BYTES:
        return
    problems = integrity_problems(db)
    if problems:
        more = f" and {len(problems) - 1} more problems" if len(problems) > 1 else ""
        raise damaged(path, problems[0] + more)


def migrate(db: sqlite3.Connection, steps: Sequence[Migration], path: Path | str) -> list[int]:
    """Apply the steps above the file's version; return the versions applied.

    `db` must be in autocommit mode (isolation_level=None). A file newer than the last step
    (written by a newer paperbot) raises ConfigError naming the file.
    """
    if [s.version for s in steps] != list(range(1, len(steps) + 1)):
        raise ValueError("migration steps must be numbered 1, 2, 3, ... in order")
    latest = len(steps)
    check_integrity(db, path)
    try:
        _check_not_newer(schema_version(db), latest, path)
    except sqlite3.DatabaseError as exc:
        if is_damage(exc):
            raise damaged(path, str(exc)) from exc
        raise
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
        except BaseException as exc:
            db.execute("ROLLBACK")
            if is_damage(exc):
                raise damaged(_damaged_file(db, path), str(exc)) from exc
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
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise damaged(db_path(db), str(exc)) from exc
            if not isinstance(exc, sqlite3.OperationalError):
                raise
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
