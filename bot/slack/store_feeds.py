"""The feed tables of the bot's store (bot.sqlite3, schema v3): feed definitions, each feed's
run status and the listing days it delivered. Mixed into `BotStore` (bot/slack/store.py),
which provides the connection; bot/slack/feeds.py turns the rows into `Feed`s."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from retrieval import db as database


class FeedTables:
    if TYPE_CHECKING:  # provided by BotStore

        def _execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any: ...

        def _query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]: ...

        def _transaction(
            self, *, serial: bool = True
        ) -> AbstractContextManager[database.Database]: ...

    def add_feed(self, row: dict[str, Any], *, replace: bool = False) -> bool:
        """Add a feed definition (see bot/slack/feeds.py `Feed.row`). An existing name is kept
        (returns False) unless ``replace``, which keeps its run status."""
        values = (
            row["name"],
            row["kind"],
            row["params"],
            row.get("every_minutes"),
            int(bool(row.get("enabled", True))),
            None if row.get("wait") is None else int(bool(row["wait"])),
            row.get("origin", "cli"),
            time.time(),
        )
        sql = (
            "INSERT INTO feeds(name, kind, params, every_minutes, enabled, wait, origin, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        if replace:
            sql += (
                " ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, params = excluded.params,"
                " every_minutes = excluded.every_minutes, enabled = excluded.enabled,"
                " wait = excluded.wait, origin = excluded.origin"
            )
            self._execute(sql, values)
            return True
        return self._execute(sql + " ON CONFLICT DO NOTHING", values).rowcount == 1

    def remove_feed(self, name: str) -> bool:
        """Delete a feed with its status and delivered days (its papers stay indexed)."""
        return self._execute("DELETE FROM feeds WHERE name = ?", (name,)).rowcount > 0

    def set_feed_enabled(self, name: str, enabled: bool) -> bool:
        cur = self._execute("UPDATE feeds SET enabled = ? WHERE name = ?", (int(enabled), name))
        if enabled and cur.rowcount:  # due at once, whatever backoff it had
            self._execute("UPDATE feed_status SET next_due = NULL WHERE name = ?", (name,))
        return cur.rowcount > 0

    def feeds(self) -> list[dict[str, Any]]:
        """Every feed definition with its status columns (NULL before its first poll)."""
        rows = self._query(
            "SELECT f.*, s.last_attempt, s.last_success, s.last_error, "
            "COALESCE(s.failures, 0) AS failures, s.next_due, s.last_seen, s.last_new, "
            "s.owner, s.lease_until FROM feeds f LEFT JOIN feed_status s USING (name) "
            "ORDER BY f.name"
        )
        return [dict(r) for r in rows]

    def claim_feed(
        self, name: str, owner: str, now: float, lease_seconds: float, *, due_only: bool = True
    ) -> bool:
        """Take a feed's poll for ``lease_seconds`` so two processes (two `serve` replicas,
        serve and cron) never poll one feed at once. ``due_only``: only when it is due. On
        PostgreSQL the feed's row is locked first; a feed another process is claiming right
        now is not waited for (SKIP LOCKED): not claimed."""
        with self._transaction(serial=False) as db:
            locked = db.execute(
                "SELECT name FROM feeds WHERE name = ?" + db.skip_locked, (name,)
            ).fetchone()
            if locked is None:
                return False
            row = db.execute(
                "SELECT f.enabled, s.next_due, s.owner, s.lease_until FROM feeds f "
                "LEFT JOIN feed_status s USING (name) WHERE f.name = ?",
                (name,),
            ).fetchone()
            if row is None:
                return False
            leased = row["lease_until"] is not None and row["lease_until"] > now
            if leased and row["owner"] != owner:
                return False
            if due_only and (not row["enabled"] or (row["next_due"] or 0) > now):
                return False
            db.execute(
                "INSERT INTO feed_status(name, owner, lease_until) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, "
                "lease_until = excluded.lease_until",
                (name, owner, now + lease_seconds),
            )
            return True

    def finish_feed(
        self,
        name: str,
        *,
        at: float,
        ok: bool,
        next_due: float,
        error: str | None = None,
        seen: int = 0,
        new: int = 0,
        days: dict[str, tuple[int, int]] | None = None,
    ) -> int:
        """Record a poll's outcome and release its claim; ``days``: listing day -> (papers
        seen, new) of a successful poll. Returns the consecutive failures now."""
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM feeds WHERE name = ?", (name,)).fetchone() is None:
                return 0  # removed while it was polled
            if ok:
                db.execute(
                    "INSERT INTO feed_status(name, last_attempt, last_success, last_error, "
                    "failures, next_due, last_seen, last_new, owner, lease_until) "
                    "VALUES (?, ?, ?, NULL, 0, ?, ?, ?, NULL, NULL) ON CONFLICT(name) DO UPDATE "
                    "SET last_attempt = excluded.last_attempt, last_success = "
                    "excluded.last_success, last_error = NULL, failures = 0, next_due = "
                    "excluded.next_due, last_seen = excluded.last_seen, last_new = "
                    "excluded.last_new, owner = NULL, lease_until = NULL",
                    (name, at, at, next_due, seen, new),
                )
                db.executemany(
                    "INSERT INTO feed_days(name, day, papers, new, first_at, last_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name, day) DO UPDATE SET "
                    "papers = CASE WHEN excluded.papers > feed_days.papers THEN excluded.papers "
                    "ELSE feed_days.papers END, new = feed_days.new + excluded.new, "
                    "last_at = excluded.last_at",
                    [(name, day, n, fresh, at, at) for day, (n, fresh) in (days or {}).items()],
                )
                return 0
            db.execute(
                "INSERT INTO feed_status(name, last_attempt, last_error, failures, next_due) "
                "VALUES (?, ?, ?, 1, ?) ON CONFLICT(name) DO UPDATE SET last_attempt = "
                "excluded.last_attempt, last_error = excluded.last_error, failures = "
                "feed_status.failures + 1, next_due = excluded.next_due, owner = NULL, lease_until = NULL",
                (name, at, error, next_due),
            )
            row = db.execute("SELECT failures FROM feed_status WHERE name = ?", (name,)).fetchone()
            return int(row["failures"])

    def release_feed(self, name: str, owner: str) -> None:
        """Drop a claim without recording a poll (the poll was interrupted)."""
        self._execute(
            "UPDATE feed_status SET owner = NULL, lease_until = NULL WHERE name = ? AND owner = ?",
            (name, owner),
        )

    def feed_days(self, day: str) -> dict[str, int]:
        """Feed name -> papers it listed on ``day`` (feeds that delivered that day)."""
        rows = self._query(
            "SELECT name, papers FROM feed_days WHERE day = ? AND papers > 0", (day,)
        )
        return {r["name"]: int(r["papers"]) for r in rows}
