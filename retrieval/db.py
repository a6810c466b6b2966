"""Where paperbot's tables live: SQLite files (the zero-config default) or one PostgreSQL
database (`PAPERBOT_DATABASE_URL`) that several `serve` replicas share.

The stores (retrieval/state.py `StateStore`, bot/slack/store.py `BotStore`) keep ONE
implementation of their queries, written in the SQL both engines accept (`INSERT … ON
CONFLICT`, `RETURNING`, `NULLS LAST`, `IS DISTINCT FROM`, `CAST`), with `?` and `:name`
placeholders, rows addressable by column name and by position. This module gives them a
`Database` with that one face:

- `SqliteDatabase`: one `sqlite3` connection (WAL, autocommit); `transaction()` is `BEGIN
  IMMEDIATE`, so one writer at a time per file, as before.
- `PostgresDatabase`: one psycopg 3 connection (imported only when a URL is set) with the
  store's own schema on its `search_path` (`paperbot_corpus`, `paperbot_bot`: the two stores
  share one database without sharing a table). `transaction()` takes a transaction-scoped
  advisory lock per schema, the same one-writer-at-a-time rule as SQLite's `BEGIN IMMEDIATE`
  but across hosts; `transaction(serial=False)` does not, for the claims that lock only the
  rows they take (`FOR UPDATE SKIP LOCKED`, `skip_locked`). A connection that broke (server
  restart, network) is opened again on the next call outside a transaction.

Every PostgreSQL schema has a version row (`schema_version`) instead of `PRAGMA
user_version`: a new schema is created at its latest version in one step, later changes go
through `migrate_postgres`'s ladder. Errors become one line naming the database (never its
password) and the fix (`DatabaseUnavailableError`).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from retrieval.errors import ConfigError, StateFileError

SQLITE = "sqlite"
POSTGRES = "postgres"
Params = Sequence[Any] | Mapping[str, Any]


class DatabaseUnavailableError(StateFileError):
    """PostgreSQL cannot be reached, refused the login, or lacks a privilege."""


class Cursor(Protocol):
    """What a statement returns (both engines)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Database(Protocol):
    """The one face of a store's database (see the module docstring)."""

    dialect: str
    label: str  # where it is, for messages (no password)

    @property
    def skip_locked(self) -> str: ...

    def execute(self, sql: str, params: Params = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Params]) -> Cursor: ...

    def transaction(self, *, serial: bool = True) -> Any: ...

    def close(self) -> None: ...


class Row:
    """A PostgreSQL row like `sqlite3.Row`: by column name, by position, `dict(row)`."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = tuple(values)
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def keys(self) -> list[str]:
        return list(self._index)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values, strict=True))!r})"


# --- SQLite ---
class SqliteDatabase:
    """One SQLite connection in autocommit mode (the caller locks around it)."""

    dialect = SQLITE
    skip_locked = ""  # BEGIN IMMEDIATE already makes the writer the only one

    def __init__(self, conn: sqlite3.Connection, label: str) -> None:
        self.raw = conn
        self.label = label

    def execute(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        return self.raw.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Params]) -> sqlite3.Cursor:
        return self.raw.executemany(sql, rows)

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    @contextmanager
    def transaction(self, *, serial: bool = True) -> Iterator[SqliteDatabase]:
        self.raw.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            if self.raw.in_transaction:
                self.raw.execute("ROLLBACK")
            raise
        self.raw.execute("COMMIT")

    def close(self) -> None:
        self.raw.close()


# --- PostgreSQL ---
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@lru_cache(maxsize=1024)
def to_postgres(sql: str) -> str:
    """`?` → `%s`, `:name` → `%(name)s`, a literal `%` → `%%` (outside quoted strings)."""
    out: list[str] = []
    for i, part in enumerate(re.split(r"('(?:[^']|'')*')", sql)):
        if i % 2:  # a quoted literal: as it is, but psycopg still reads % in it
            out.append(part.replace("%", "%%"))
            continue
        part = part.replace("%", "%%").replace("?", "%s")
        out.append(_NAMED.sub(r"%(\1)s", part))
    return "".join(out)


def redact_url(url: str) -> str:
    """The URL without its password (for messages and `doctor`)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://…"
    if parts.password is None:
        return url.split("?", 1)[0]
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{user}:***@{host}{port}" if user else f"***@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def secret(url: Any) -> str | None:
    """A settings value (SecretStr, str or None) as the plain URL, or None."""
    if url is None:
        return None
    value = url.get_secret_value() if hasattr(url, "get_secret_value") else str(url)
    return value or None


def _row_factory(cursor: Any) -> Any:
    names = [c.name for c in cursor.description or ()]
    index = {name: i for i, name in enumerate(names)}
    return lambda values: Row(values, index)


class PostgresDatabase:
    """One psycopg connection with ``schema`` first on its search_path."""

    dialect = POSTGRES
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(
        self, url: str, schema: str, *, connect_timeout: float = 10.0, create: bool = True
    ) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
            raise ValueError(f"not a schema name: {schema!r}")
        self._url = url
        self.schema = schema
        self.label = f"{redact_url(url)} (schema {schema})"
        self._timeout = connect_timeout
        self._create = create  # CREATE SCHEMA IF NOT EXISTS on connecting (not for checks)
        self._conn: Any = None
        self._depth = 0
        self._connect()

    def _connect(self) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise ConfigError(
                "PAPERBOT_DATABASE_URL is set but psycopg is not installed. Fix: "
                "pip install 'paperbot[postgres]' (or unset PAPERBOT_DATABASE_URL to use the "
                "SQLite files in the data dir)."
            ) from exc
        try:
            conn = psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=max(1, int(self._timeout)),
                row_factory=_row_factory,
                application_name="paperbot",
            )
        except psycopg.Error as exc:
            raise self.unavailable(exc) from exc
        try:
            if self._create:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
        except psycopg.errors.InsufficientPrivilege:
            pass  # created by an administrator: using it is enough
        except psycopg.Error as exc:
            conn.close()
            raise self.unavailable(exc) from exc
        conn.execute(f"SET search_path TO {self.schema}")
        self._conn = conn

    def unavailable(self, exc: BaseException) -> DatabaseUnavailableError:
        """The one-line error for a database error a user can act on."""
        from retrieval.redaction import redact

        detail = " ".join(redact(str(exc)).replace(self._url, redact_url(self._url)).split())
        detail = detail if len(detail) <= 200 else detail[:197] + "..."
        return DatabaseUnavailableError(
            f"PostgreSQL at {self.label} failed: {detail or type(exc).__name__}. Fix: check "
            "that the server runs and PAPERBOT_DATABASE_URL (host, port, user, password, "
            "database) is right and the user may create tables, or unset "
            "PAPERBOT_DATABASE_URL to use the SQLite files in the data dir."
        )

    def _ready(self) -> Any:
        if self._conn is None or ((self._conn.broken or self._conn.closed) and not self._depth):
            if self._conn is not None and not self._conn.closed:
                self._conn.close()
            self._conn = None
            self._connect()
        return self._conn

    def execute(self, sql: str, params: Params = ()) -> Any:
        import psycopg

        conn = self._ready()
        try:
            # always with params (even empty): psycopg then reads the %% to_postgres wrote
            return conn.execute(to_postgres(sql), params)
        except _user_errors(psycopg) as exc:
            raise self.unavailable(exc) from exc

    def executemany(self, sql: str, rows: Iterable[Params]) -> Any:
        import psycopg

        conn = self._ready()
        cur = conn.cursor()
        rows = list(rows)
        if not rows:
            return cur
        try:
            cur.executemany(to_postgres(sql), rows)
        except _user_errors(psycopg) as exc:
            raise self.unavailable(exc) from exc
        return cur

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    @contextmanager
    def transaction(self, *, serial: bool = True) -> Iterator[PostgresDatabase]:
        """All or nothing. ``serial``: one such transaction per schema at a time, across
        every process and host (what BEGIN IMMEDIATE is to a SQLite file)."""
        import psycopg

        conn = self._ready()
        try:
            with conn.transaction():
                self._depth += 1
                try:
                    if serial:
                        conn.execute(
                            "SELECT pg_advisory_xact_lock(hashtext(%s))",
                            (f"paperbot:{self.schema}",),
                        )
                    yield self
                finally:
                    self._depth -= 1
        except _user_errors(psycopg) as exc:
            raise self.unavailable(exc) from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _user_errors(psycopg: Any) -> tuple[type[BaseException], ...]:
    """The database errors a user fixes (not paperbot's bugs): the server is gone or
    unreachable, or the user lacks a privilege (creating the schema, its tables)."""
    errors = psycopg.errors
    return (psycopg.OperationalError, errors.InsufficientPrivilege, errors.InvalidSchemaName)


# --- PostgreSQL schema versions ---
@dataclass(frozen=True, slots=True)
class PgMigration:
    """Brings a PostgreSQL schema from `version - 1` to `version` (statements in order)."""

    version: int
    description: str
    statements: Sequence[str]


def postgres_version(db: PostgresDatabase) -> int:
    """The schema's version (0: not created yet)."""
    found = db.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = ? "
        "AND table_name = 'schema_version'",
        (db.schema,),
    ).fetchone()
    if found is None:
        return 0
    row = db.execute("SELECT MAX(version) AS v FROM schema_version").fetchone()
    return int(row["v"] or 0)


def migrate_postgres(
    db: PostgresDatabase, create: Sequence[str], version: int, steps: Sequence[PgMigration] = ()
) -> list[int]:
    """Create the schema at ``version`` (``create``), or apply the ``steps`` above its
    version; one transaction under the schema's lock, so replicas starting together agree.
    A schema newer than this paperbot raises ConfigError."""
    if [s.version for s in steps] != sorted(s.version for s in steps) or any(
        s.version > version for s in steps
    ):
        raise ValueError("PostgreSQL migration steps must be in order and <= version")
    applied: list[int] = []
    with db.transaction():
        current = postgres_version(db)
        if current > version:
            raise ConfigError(
                f"{db.label} has schema version {current}, but this paperbot knows versions "
                f"up to {version}: it was written by a newer paperbot. Upgrade paperbot, or "
                "point PAPERBOT_DATABASE_URL at another database."
            )
        if current == 0:
            for statement in create:
                db.execute(statement)
            db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            db.execute("INSERT INTO schema_version(version) VALUES (?)", (version,))
            return [version]
        for step in steps:
            if step.version > current:
                for statement in step.statements:
                    db.execute(statement)
                db.execute("UPDATE schema_version SET version = ?", (step.version,))
                applied.append(step.version)
        if current < version and (not applied or applied[-1] != version):
            raise ValueError(f"no PostgreSQL migration step reaches version {version}")
    return applied
