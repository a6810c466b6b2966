"""Whole-file operations on the data dir's SQLite files (state.sqlite3, bot.sqlite3).

Checking (`check_file`: `PRAGMA quick_check`, the schema version, rows per table), backing up
(`backup_file`: SQLite's online backup API, consistent while other processes write),
restoring (`restore_file`: refuses while another process has the file open, keeps the
replaced file as `.bak`), salvaging what is readable from a damaged file (`salvage_file`:
table by table, reading forward and backward around damaged pages), and the guards the
stores run on open (`refuse_emptied`, `open_read_only`). Nothing here knows what the tables
mean: retrieval/state_admin.py and the stores do.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from retrieval.errors import StateFileError
from retrieval.migrations import damaged, integrity_problems, is_damage, schema_version


@dataclass(slots=True)
class FileCheck:
    """What `paperbot state check` reports about one file."""

    path: str
    exists: bool
    size: int = 0
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    schema_version: int | None = None
    rows: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_file(path: Path, evidence: Sequence[Path] = ()) -> FileCheck:
    """Check one SQLite file without writing it (a missing file is fine: it is created on
    first use; a 0-byte one is a problem when ``evidence`` shows the data dir was used)."""
    if not path.exists():
        return FileCheck(str(path), False)
    size = path.stat().st_size
    report = FileCheck(str(path), True, size)
    if size == 0:
        used = [p.name for p in evidence if in_use(p)]
        if used:
            report.ok = False
            report.problems.append(
                f"empty (0 bytes) although the data dir has been used ({', '.join(used)})"
            )
        return report
    try:
        with closing(_connect_ro(path)) as db:
            report.problems = integrity_problems(db, limit=20)
            report.schema_version = schema_version(db)
            tables = [
                str(r[0])
                for r in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )
            ]
            for table in tables:
                try:
                    count = db.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
                    report.rows[table] = int(count)
                except sqlite3.DatabaseError as exc:
                    report.problems.append(f"{table}: {exc}")
    except sqlite3.DatabaseError as exc:
        report.problems.append(str(exc))
    report.ok = not report.problems
    return report


def backup_file(source: Path, dest: Path) -> int:
    """Copy a live SQLite file to ``dest`` with the online backup API (a consistent copy
    while other processes write). Refuses a damaged source and an existing ``dest``.
    Returns the backup's size in bytes."""
    if dest.exists():
        raise StateFileError(f"{dest} exists already; choose another backup directory.")
    with closing(_connect_ro(source)) as src:
        problems = integrity_problems(src)
        if problems:
            raise damaged(source, "; ".join(problems[:2]))
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".partial")
        partial.unlink(missing_ok=True)
        with closing(sqlite3.connect(partial)) as out:
            src.backup(out)
    os.replace(partial, dest)
    return dest.stat().st_size


def restore_file(backup: Path, dest: Path) -> Path | None:
    """Put a backup in place of ``dest``; returns where the replaced file was kept (`.bak`)
    or None when there was none. Refuses a damaged backup and a ``dest`` another process has
    open (a running `paperbot serve` or ingest would keep writing to the old file)."""
    with closing(_connect_ro(backup)) as src:
        problems = integrity_problems(src)
        if problems:
            raise damaged(backup, "; ".join(problems[:2]))
        partial = dest.with_name(dest.name + ".restoring")
        partial.unlink(missing_ok=True)
        with closing(sqlite3.connect(partial)) as out:
            src.backup(out)
    refuse_if_open(dest)
    kept = set_aside(dest, ".bak")
    os.replace(partial, dest)
    return kept


def refuse_if_open(path: Path) -> None:
    """Refuse when another process has ``path`` open: a whole-file operation that replaced
    it would leave that process writing to the old file. The probe takes SQLite's exclusive
    lock (refused while any other connection is open) and lets it go, which also folds the
    WAL into the file."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with closing(sqlite3.connect(path, isolation_level=None, timeout=0)) as db:
        try:
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            db.execute("BEGIN EXCLUSIVE")
            db.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StateFileError(
                    f"{path} is open in another process (a running `paperbot serve`, an "
                    "ingest or a feed poll): nothing was changed. Fix: stop it, then run this "
                    "again."
                ) from exc
            if not is_damage(exc):
                raise
        except sqlite3.DatabaseError as exc:  # damaged: nobody can be using it sensibly
            if not is_damage(exc):
                raise


def set_aside(path: Path, suffix: str) -> Path | None:
    """Rename a file (with its -wal and -shm) to a free name ending in ``suffix``."""
    if not path.exists():
        return None
    target = path.with_name(path.name + suffix)
    if target.exists():
        target = path.with_name(f"{path.name}{suffix}-{time.strftime('%Y%m%dT%H%M%S')}")
    for extra in ("-wal", "-shm"):
        side = path.with_name(path.name + extra)
        if side.exists():
            os.replace(side, target.with_name(target.name + extra))
    os.replace(path, target)
    return target


@dataclass(slots=True)
class Salvage:
    """What `salvage_file` copied: rows per table, and the tables it could not read whole."""

    rows: dict[str, int] = field(default_factory=dict)
    damaged_tables: list[str] = field(default_factory=list)
    schema_version: int | None = None
    problems: list[str] = field(default_factory=list)


def salvage_file(source: Path, dest: Path) -> Salvage:
    """Copy every readable row of ``source`` into a new file ``dest``: its schema, then each
    table's rows read forward until a damaged page and backward from the end down to one,
    then its indexes and triggers. Rows on damaged pages (and, in a table damaged in several
    places, between them) are lost; the result says which tables lost some."""
    result = Salvage()
    dest.unlink(missing_ok=True)
    try:
        src = _connect_ro(source)
        src.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError:  # e.g. a WAL index it may not create: the file alone
        src = _connect_ro(source, immutable=True)
    with closing(src), closing(sqlite3.connect(dest, isolation_level=None)) as out:
        try:
            result.schema_version = schema_version(src)
            schema = list(
                src.execute(
                    "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                    "AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
                )
            )
        except sqlite3.DatabaseError as exc:
            result.problems.append(f"the schema cannot be read: {exc}")
            return result
        out.execute("PRAGMA foreign_keys=OFF")
        out.execute("BEGIN")
        for kind, _, sql in schema:
            if kind == "table":
                out.execute(sql)
        for kind, name, _ in schema:
            if kind == "table":
                rows, whole = _copy_rows(src, out, name)
                result.rows[name] = rows
                if not whole:
                    result.damaged_tables.append(name)
        for kind, _, sql in schema:
            if kind in ("index", "trigger", "view"):
                out.execute(sql)
        if result.schema_version is not None:
            out.execute(f"PRAGMA user_version = {int(result.schema_version)}")
        out.execute("COMMIT")
    return result


def _copy_rows(src: sqlite3.Connection, out: sqlite3.Connection, table: str) -> tuple[int, bool]:
    columns = [str(r[1]) for r in src.execute(f'PRAGMA table_info("{table}")')]
    keys = [str(r[1]) for r in src.execute(f'PRAGMA table_info("{table}")') if r[5]]
    has_rowid = _has_rowid(src, table)
    order = ["rowid"] if has_rowid else [f'"{k}"' for k in keys] or [f'"{columns[0]}"']
    select = ", ".join(["rowid"] if has_rowid else []) + (", " if has_rowid else "")
    select += ", ".join(f'"{c}"' for c in columns)
    marks = ",".join("?" * (len(columns) + (1 if has_rowid else 0)))
    names = (["rowid"] if has_rowid else []) + [f'"{c}"' for c in columns]
    insert = f'INSERT OR IGNORE INTO "{table}" ({", ".join(names)}) VALUES ({marks})'
    copied = 0
    for direction in ("ASC", "DESC"):  # backward only when forward met a damaged page
        ordering = ", ".join(f"{o} {direction}" for o in order)
        try:
            for row in src.execute(f'SELECT {select} FROM "{table}" ORDER BY {ordering}'):
                copied += out.execute(insert, tuple(row)).rowcount
        except sqlite3.DatabaseError:
            continue
        return copied, direction == "ASC"
    return copied, False


def _has_rowid(db: sqlite3.Connection, table: str) -> bool:
    try:
        db.execute(f'SELECT rowid FROM "{table}" LIMIT 0')
        return True
    except sqlite3.OperationalError:
        return False


def _connect_ro(path: Path, *, immutable: bool = False) -> sqlite3.Connection:
    """A read-only connection (never creates the file, never writes it)."""
    if not path.is_file():
        raise StateFileError(f"{path} does not exist.")
    query = "?immutable=1" if immutable else "?mode=ro"
    return sqlite3.connect(path.resolve().as_uri() + query, uri=True, isolation_level=None)


def in_use(path: Path) -> bool:
    """A non-empty file, or a directory with something in it."""
    try:
        if path.is_dir():
            return any(path.iterdir())
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


def refuse_emptied(path: Path, evidence: Sequence[Path]) -> None:
    """Refuse a 0-byte SQLite file when files beside it show the data dir was used: the data
    was lost (a truncation, a bad copy), and starting a new file there would hide it."""
    if not _stays_empty(path):
        return
    found = [p.name for p in evidence if in_use(p)]
    if not found:
        return
    raise StateFileError(
        f"{path} is empty (0 bytes) but this data dir has been used ({', '.join(found)} "
        "beside it): its data was lost, and paperbot will not silently start a new file. "
        "Fix: restore a backup (`paperbot state restore BACKUP_DIR`), or, to start afresh, "
        f"delete {path} (`paperbot state check` shows what the data dir holds)."
    )


def _stays_empty(path: Path, settle: float = 2.0) -> bool:
    """True for an existing 0-byte file that stays so: a file another process has just
    created is empty for the moment before SQLite writes its header."""
    deadline = time.monotonic() + settle
    while True:
        try:
            if not path.is_file():
                return False
            stat = path.stat()
        except OSError:
            return False
        if stat.st_size:
            return False
        if time.time() - stat.st_mtime > settle or time.monotonic() > deadline:
            return True
        time.sleep(0.05)


def writable(path: Path) -> bool:
    """Whether this process may write the file and create files beside it (WAL, journal)."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


def open_read_only(path: Path, latest: int) -> sqlite3.Connection:
    """Open a state this process may not write: `mode=ro` (reads the WAL when its index can
    be opened), else `immutable=1` (the file as last checkpointed). No migration runs: a file
    that needs one says so."""
    uri = path.resolve().as_uri()
    last: sqlite3.Error | None = None
    for query in ("?mode=ro", "?immutable=1"):
        db = sqlite3.connect(uri + query, uri=True, check_same_thread=False, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            problems = integrity_problems(db)
            if problems:
                db.close()
                raise damaged(path, "; ".join(problems[:2]))
            version = schema_version(db)
        except sqlite3.OperationalError as exc:  # e.g. the WAL index cannot be created
            db.close()
            last = exc
            continue
        if version != latest:
            db.close()
            raise StateFileError(
                f"{path} is read-only for this user and needs a schema upgrade (v{version} -> "
                f"v{latest}), which must write it. Fix: run any paperbot command once as a "
                "user who may write the data dir."
            )
        return db
    raise StateFileError(
        f"{path} is read-only for this user and cannot be opened read-only either ({last}). "
        "Fix: make the data dir readable and writable by this user."
    )
