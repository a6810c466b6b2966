"""The answer queue's table in the bot's store (bot.sqlite3, schema v4). Mixed into `BotStore`
(bot/slack/store.py), which provides the connection; bot/slack/answer_queue.py runs the jobs.

A job is one accepted question. It is written with its Slack message's seen-key in one
transaction, so a Slack retry of a message that has a job is a no-op, while a job whose
worker died is still there to resume. Claims carry a lease (owner and expiry): several
`serve` processes may share the file, and a job held by a dead process is taken over once
its lease expired. Times are UNIX seconds from the caller's clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from retrieval import db as database

JOB_FIELDS = (
    "kind",
    "channel",
    "thread_ts",
    "message_ts",
    "user_id",
    "bot_user_id",
    "question",
    "response_url",
)
# a job a worker may take: queued (and past its retry backoff) or held by a dead worker
_CLAIMABLE = (
    "(state = 'queued' AND (lease_expires IS NULL OR lease_expires <= :now)) "
    "OR (state = 'running' AND lease_expires < :now)"
)


class JobTables:
    if TYPE_CHECKING:  # provided by BotStore

        def _execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any: ...

        def _query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]: ...

        def _transaction(
            self, *, serial: bool = True
        ) -> AbstractContextManager[database.Database]: ...

    def add_job(self, key: str, now: float, **fields: Any) -> int | None:
        """Write a job for a Slack delivery (``fields``: see JOB_FIELDS). None when ``key`` was
        seen before (a retry, the same message delivered as mention and message, or a
        message answered before the queue existed)."""
        unknown = set(fields) - set(JOB_FIELDS)
        if unknown:
            raise ValueError(f"unknown job fields: {sorted(unknown)}")
        columns = ", ".join(fields)
        marks = ", ".join("?" * len(fields))
        # not serial: both inserts decide by their unique keys (a second replica inserting
        # the same key waits for the first's commit, then inserts nothing)
        with self._transaction(serial=False) as db:
            seen = db.execute(
                "INSERT INTO seen_keys(key, seen_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (key, now),
            )
            if seen.rowcount != 1:
                return None
            row = db.execute(
                f"INSERT INTO answer_jobs(key, {columns}, created_at, updated_at) "
                f"VALUES (?, {marks}, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
                (key, *fields.values(), now, now),
            ).fetchone()
            return int(row["id"]) if row is not None else None

    def claim_job(self, owner: str, now: float, lease_seconds: float) -> dict[str, Any] | None:
        """Take the oldest claimable job for ``lease_seconds`` (its attempts count up). On
        PostgreSQL a job another replica is taking right now is skipped (SKIP LOCKED), not
        waited for; SQLite has one writer at a time anyway."""
        params = {"now": now}
        with self._transaction(serial=False) as db:
            row = db.execute(
                f"SELECT id FROM answer_jobs WHERE {_CLAIMABLE} ORDER BY id LIMIT 1"
                + db.skip_locked,
                params,
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE answer_jobs SET state = 'running', owner = :owner, "
                "lease_expires = :until, attempts = attempts + 1, updated_at = :now "
                "WHERE id = :id",
                {"owner": owner, "until": now + lease_seconds, "now": now, "id": row["id"]},
            )
            job = db.execute("SELECT * FROM answer_jobs WHERE id = ?", (row["id"],)).fetchone()
            return dict(job)

    def renew_jobs(self, owner: str, until: float) -> int:
        """Extend the leases of the jobs ``owner`` is answering."""
        cur = self._execute(
            "UPDATE answer_jobs SET lease_expires = ? WHERE owner = ? AND state = 'running'",
            (until, owner),
        )
        return cur.rowcount

    def set_job_placeholder(self, job_id: int, owner: str, ts: str, now: float) -> None:
        self._execute(
            "UPDATE answer_jobs SET placeholder_ts = ?, updated_at = ? WHERE id = ? AND owner = ?",
            (ts, now, job_id, owner),
        )

    def finish_job(
        self, job_id: int, owner: str, now: float, *, failed: bool = False, error: str | None = None
    ) -> bool:
        """done (or failed: given up). False when ``owner`` no longer holds the job."""
        cur = self._execute(
            "UPDATE answer_jobs SET state = ?, error = COALESCE(?, error), owner = NULL, "
            "lease_expires = NULL, updated_at = ? WHERE id = ? AND owner = ? AND state = 'running'",
            ("failed" if failed else "done", error, now, job_id, owner),
        )
        return cur.rowcount == 1

    def retry_job(self, job_id: int, owner: str, now: float, *, error: str, delay: float) -> None:
        """Back to the queue after a failed attempt, not before ``now + delay``."""
        self._execute(
            "UPDATE answer_jobs SET state = 'queued', owner = NULL, lease_expires = ?, "
            "error = ?, updated_at = ? WHERE id = ? AND owner = ? AND state = 'running'",
            (now + delay, error, now, job_id, owner),
        )

    def release_jobs(self, owner: str, now: float) -> int:
        """Hand ``owner``'s running jobs back (shutdown): queued again, the attempt uncounted."""
        cur = self._execute(
            "UPDATE answer_jobs SET state = 'queued', owner = NULL, lease_expires = NULL, "
            "attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, updated_at = ? "
            "WHERE owner = ? AND state = 'running'",
            (now, owner),
        )
        return cur.rowcount

    def prune_jobs(self, before: float) -> int:
        """Forget finished jobs last updated before ``before`` (their seen-keys stay)."""
        cur = self._execute(
            "DELETE FROM answer_jobs WHERE state IN ('done', 'failed') AND updated_at < ?",
            (before,),
        )
        return cur.rowcount

    def job(self, job_id: int) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM answer_jobs WHERE id = ?", (job_id,))
        return dict(rows[0]) if rows else None

    def jobs(self, state: str | None = None) -> list[dict[str, Any]]:
        if state:
            rows = self._query("SELECT * FROM answer_jobs WHERE state = ? ORDER BY id", (state,))
        else:
            rows = self._query("SELECT * FROM answer_jobs ORDER BY id")
        return [dict(r) for r in rows]

    def claimable_jobs(self, now: float) -> int:
        sql = f"SELECT COUNT(*) AS n FROM answer_jobs WHERE {_CLAIMABLE}"
        rows = self._query(sql, {"now": now})
        return int(rows[0]["n"])

    def job_stats(self, now: float) -> dict[str, Any]:
        """queued, running and the age in seconds of the oldest unfinished job (for /readyz)."""
        rows = self._query(
            "SELECT state, COUNT(*) AS n, MIN(created_at) AS oldest FROM answer_jobs "
            "WHERE state IN ('queued', 'running') GROUP BY state"
        )
        by_state = {r["state"]: r for r in rows}
        oldest = [r["oldest"] for r in rows if r["oldest"] is not None]
        return {
            "queued": int(by_state["queued"]["n"]) if "queued" in by_state else 0,
            "running": int(by_state["running"]["n"]) if "running" in by_state else 0,
            "oldest_age_seconds": round(now - min(oldest), 1) if oldest else 0.0,
        }
