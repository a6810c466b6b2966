"""The durable answer queue: an acked question is never lost.

The ack path only writes a job (a SQLite insert, with the Slack message's seen-key, see
bot/slack/store_jobs.py) and wakes a worker; a bounded pool of worker threads answers the
jobs through `answer_in_thread` (placeholder → streamed answer → final update) or, for slash
commands, through the command's response_url. A job is claimed with a lease that its
process renews while it runs, so:

- a restart resumes every unfinished job (queued, or running under an expired lease of a
  dead process), updating the placeholder the earlier attempt posted, never a second one;
- several `serve` processes on one data dir answer each job once;
- after `max_attempts` tries a job gives up with a clear message in its thread;
- `stop(grace)` (SIGTERM) lets running answers finish for `grace` seconds, then hands the
  rest back to the queue for the next start.

Workers are started on demand (a submitted job) and exit when the queue is empty;
`start()` (what `serve` calls) adds the resumer, which renews leases and picks up jobs of
dead processes, retries due after a backoff and jobs other processes wrote.

Size: the queue and what a job means in Slack (`SlackAnswers`: threads, assistant threads'
title and status, slash commands, give-ups) share the job row and its resume rules.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.services import Services
from bot.slack import assistant_blocks, blocks, permissions
from bot.slack.ack_gate import AckGate
from bot.slack.papers_command import run_command
from bot.slack.replies import (
    ThreadReply,
    answer_in_thread,
    bot_in_thread,
    thread_history,
    thread_messages,
)
from bot.slack.settings import SlackSettings
from bot.slack.slash import parse
from bot.slack.store import BotStore
from bot.slack.streaming import StreamSupport, end_stream

log = logging.getLogger(__name__)
Job = dict[str, Any]  # a row of answer_jobs
RESTARTED = "the bot restarted while answering"
KEEP_FINISHED_SECONDS = 30 * 86400  # finished jobs are kept this long (for inspection)


def default_workers() -> int:
    return min(4, 2 * (os.cpu_count() or 1))


def embedding_threads_per_job(workers: int) -> int:
    """ONNX threads one answer may use: the cores shared out between the answer workers, so
    concurrent answers never take every core from the threads that ack Slack's requests."""
    return max(1, (os.cpu_count() or 1) // max(1, workers or default_workers()))


def give_up_text(attempts: int, reason: str) -> str:
    tries = "try" if attempts == 1 else "tries"
    return f"Sorry, I could not answer this after {attempts} {tries}: {reason}. Please ask again."


@dataclass
class _Handlers:
    answer: Callable[[Job, Callable[[str], None]], None]  # job, on_placeholder(ts)
    give_up: Callable[[Job, str], None]  # job, the message


class AnswerQueue:
    def __init__(
        self,
        store: BotStore,
        answer: Callable[[Job, Callable[[str], None]], None],
        give_up: Callable[[Job, str], None],
        *,
        workers: int = 0,
        max_attempts: int = 3,
        lease_seconds: float = 60.0,
        poll_seconds: float = 1.0,
        retry_seconds: float = 2.0,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
        gate: AckGate | None = None,
    ) -> None:
        self.store = store
        # acks first: a worker about to start a job waits while Slack requests are acked
        self.gate = gate or AckGate()
        self._handlers = _Handlers(answer, give_up)
        self.workers = workers or default_workers()
        self.max_attempts = max_attempts
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.retry_seconds = retry_seconds
        self._clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._lock = threading.Lock()
        self._active = 0  # live worker threads
        self._wakeups = 0  # bumped by every submit/kick: a worker exits only when unchanged
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._resumer: threading.Thread | None = None
        self.client: Any = None  # the Slack client of the app it serves (for_app)

    # ---------------------------------------------------------------- the ack path
    def submit(self, key: str, **fields: Any) -> bool:
        """Write a job (before the ack) and wake a worker. False for a delivery seen before."""
        job_id = self.store.add_job(key, self._clock(), **fields)
        if job_id is None:
            log.info("ignoring a repeated delivery of %s", key)
            return False
        self.kick()
        return True

    def kick(self) -> None:
        """Make sure a worker looks at the queue (unless stopping)."""
        with self._lock:
            self._wakeups += 1
            if self._stopping.is_set() or self._active >= self.workers:
                return
            self._active += 1
            thread = threading.Thread(target=self._work, name="answer-worker", daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> AnswerQueue:
        """Resume unfinished jobs now and keep looking (leases, retries, other processes)."""
        if self._resumer is None:
            self._stopping.clear()
            self.store.prune_jobs(self._clock() - KEEP_FINISHED_SECONDS)
            self._resumer = threading.Thread(
                target=self._resume, name="answer-resumer", daemon=True
            )
            self._resumer.start()
        self.kick()
        return self

    def stop(self, grace: float = 20.0) -> int:
        """Take no more jobs; let running ones finish within ``grace`` seconds; hand the rest
        back (queued again, the attempt uncounted). Returns how many were handed back."""
        self._stopping.set()
        deadline = time.monotonic() + grace
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._resumer is not None:
            self._resumer.join(max(0.0, deadline - time.monotonic()) + 1)
            self._resumer = None
        handed_back = self.store.release_jobs(self.owner, self._clock())
        if handed_back:
            log.warning(
                "handed %d unfinished answer(s) back; the next start resumes them", handed_back
            )
        return handed_back

    def stuck_workers(self) -> int:
        """Worker threads still alive (after `stop`: stuck in a call, their jobs handed back)."""
        with self._lock:
            return sum(t.is_alive() for t in self._threads)

    def stats(self) -> dict[str, Any]:
        """queued, running, oldest_age_seconds (the whole file), and this process's workers."""
        return {**self.store.job_stats(self._clock()), "workers": self.workers}

    def wait_idle(self, timeout: float) -> bool:
        """Tests and benchmarks: wait until no job is queued or running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self.store.job_stats(self._clock())
            if not stats["queued"] and not stats["running"]:
                return True
            time.sleep(0.05)
        return False

    # ---------------------------------------------------------------- workers
    def _work(self) -> None:
        try:
            while not self._stopping.is_set():
                with self._lock:
                    seen = self._wakeups
                self.gate.wait_quiet(self._stopping)
                if self._stopping.is_set():
                    break
                job = self.store.claim_job(self.owner, self._clock(), self.lease_seconds)
                if job is None:
                    with self._lock:
                        if self._wakeups == seen or self._stopping.is_set():
                            self._active -= 1
                            return
                    continue
                self._run(job)
        except BaseException:
            log.exception("an answer worker stopped")
        with self._lock:
            self._active -= 1

    def _run(self, job: Job) -> None:
        job_id, attempts = int(job["id"]), int(job["attempts"])
        if attempts > self.max_attempts:  # earlier attempts died with their process
            self._give_up(job, job.get("error") or RESTARTED, attempts - 1)
            return

        def on_placeholder(ts: str) -> None:
            job["placeholder_ts"] = ts
            self.store.set_job_placeholder(job_id, self.owner, ts, self._clock())

        try:
            self._handlers.answer(job, on_placeholder)
        except Exception as exc:
            reason = _one_line(exc)
            log.warning("answering job %d failed (attempt %d): %s", job_id, attempts, reason)
            if attempts >= self.max_attempts:
                self._give_up(job, reason, attempts)
            else:
                self.store.retry_job(
                    job_id, self.owner, self._clock(), error=reason, delay=self.retry_seconds
                )
            return
        if not self.store.finish_job(job_id, self.owner, self._clock()):
            log.warning("job %d was taken over while it was answered here", job_id)

    def _give_up(self, job: Job, reason: str, attempts: int) -> None:
        message = give_up_text(attempts, reason)
        log.error("giving up on job %d: %s", job["id"], message)
        try:
            self._handlers.give_up(job, message)
        except Exception as exc:
            log.warning("could not post the give-up message of job %d: %s", job["id"], exc)
        self.store.finish_job(int(job["id"]), self.owner, self._clock(), failed=True, error=reason)

    def _resume(self) -> None:
        """Renew this process's leases; wake workers for claimable jobs (resumes, retries)."""
        every = max(0.05, min(self.poll_seconds, self.lease_seconds / 3))
        while not self._stopping.wait(every):
            try:
                now = self._clock()
                self.store.renew_jobs(self.owner, now + self.lease_seconds)
                if self.store.claimable_jobs(now):
                    self.kick()
            except Exception:
                log.warning("checking the answer queue failed; trying again", exc_info=True)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


# ---------------------------------------------------------------- answering Slack jobs
class SlackAnswers:
    """What a job means in Slack: an answer in its thread (natively streamed where Slack
    allows it; in an assistant thread with its title and status), or a slash command's reply.
    """

    def __init__(
        self,
        services: Services,
        client: Any,
        settings: SlackSettings,
        streams: StreamSupport | None = None,
    ) -> None:
        self.services = services
        self.client = client
        self.settings = settings
        # learnt once per process: is chat.startStream refused here?
        self.streams = streams or StreamSupport(settings.native_streaming)
        self._team_id: str | None = None

    def answer(self, job: Job, on_placeholder: Callable[[str], None]) -> None:
        channel = job["channel"]
        # the allow-list again, before any Slack call: it may have changed since the ack
        # (a job resumed by a restart with a new PAPERBOT_ALLOWED_CHANNELS)
        allowed = permissions.channel_allowed(self.settings, channel)
        if job["kind"] == "command":
            if allowed:
                self._command(job)
            else:
                self._respond(
                    job, *blocks.error_message(permissions.not_allowed_text(self.settings))
                )
            return
        if not allowed:
            log.info("dropping job %s: %s is not in %s", job["id"], channel, permissions.SETTING)
            return
        ts, thread_ts = job["message_ts"], job["thread_ts"]
        thread = thread_messages(self.client, channel, thread_ts) if thread_ts else []
        if job["kind"] == "followup" and not bot_in_thread(thread, job["bot_user_id"]):
            return  # a reply in a thread paperbot took no part in: not for it
        if not job["placeholder_ts"] and job["attempts"] > 1:
            # a process may have died between posting the placeholder and recording it
            try:
                found = _orphan_placeholder(
                    thread or thread_messages(self.client, channel, ts),
                    job["question"],
                    job["bot_user_id"],
                )
            except Exception as exc:
                log.warning("could not look for an earlier placeholder: %s", _one_line(exc))
                found = None
            if found:
                on_placeholder(found)
        history = thread_history(thread, job["bot_user_id"], before_ts=ts)
        status = _Status(self.client, channel, thread_ts) if job["kind"] == "assistant" else None
        if status is not None:
            # the greeting opens an assistant thread: no earlier turn of the conversation
            while history and history[0].role == "assistant":
                history = history[1:]
            if not history:  # the thread's first question
                status.title(assistant_blocks.thread_title(job["question"]))
            status.set(f"is searching {_papers(self.services.corpus.count_papers())}…")
        answer_in_thread(
            self.services,
            self.client,
            channel=channel,
            thread_ts=thread_ts or ts,
            question=job["question"],
            history=history,
            user=job["user_id"],
            min_interval=self.settings.stream_update_seconds,
            placeholder_ts=job["placeholder_ts"],
            on_placeholder=on_placeholder,
            streams=self.streams,
            team_id=self._team() if channel[:1] != "D" else None,
            on_writing=(lambda: status.set("is writing…")) if status is not None else None,
        )
        if status is not None:
            status.set("")  # cleared (Slack clears it on a reply too; a stream may keep it)

    def _team(self) -> str | None:
        """The workspace id (auth.test, once): chat.startStream's recipient_team_id."""
        if self._team_id is None:
            try:
                self._team_id = str(self.client.auth_test().get("team_id") or "") or None
            except Exception as exc:
                log.warning("auth.test failed: %s", _one_line(exc))
        return self._team_id

    def _command(self, job: Job) -> None:
        cmd = parse(job["question"])
        if cmd.name == "subscribe" and cmd.here:  # posts into the channel later: a member?
            refusal = permissions.cannot_post_reason(self.client, job["channel"])
            if refusal:
                self._respond(job, *blocks.error_message(refusal))
                return
        text, blks = run_command(
            self.services,
            cmd,
            user_id=job["user_id"],
            channel_id=job["channel"],
            command=self.settings.slash_command,
            settings=self.settings,
            is_admin=self._is_admin,
        )
        self._respond(job, text, blks)

    def _is_admin(self, user_id: str) -> bool:
        """A workspace admin or owner (users.info; False when it cannot be told)."""
        try:
            user = self.client.users_info(user=user_id).get("user") or {}
        except Exception as exc:
            log.warning("users.info %s failed: %s", user_id, _one_line(exc))
            return False
        return bool(user.get("is_admin") or user.get("is_owner"))

    def _respond(self, job: Job, text: str, blks: Any) -> None:
        from slack_sdk.webhook import WebhookClient

        response = WebhookClient(job["response_url"], timeout=30).send(
            text=text, blocks=blks, response_type="ephemeral", replace_original=True
        )
        if response.status_code >= 400:
            raise RuntimeError(f"the response_url answered HTTP {response.status_code}")

    def give_up(self, job: Job, message: str) -> None:
        text, blks = blocks.error_message(message)
        if job["kind"] == "command":
            self._respond(job, text, blks)
        elif job["placeholder_ts"]:
            end_stream(self.client, job["channel"], job["placeholder_ts"])  # if one is open
            self.client.chat_update(
                channel=job["channel"], ts=job["placeholder_ts"], text=text, blocks=blks
            )
        else:  # posted once even when Slack's answer is lost (bot/slack/safe_post.py)
            ThreadReply(self.client, job["channel"], job["thread_ts"] or job["message_ts"]).start(
                (text, blks)
            )


def _papers(count: int) -> str:
    return f"{count:,} paper{'' if count == 1 else 's'}"


class _Status:
    """An assistant thread's status line and title (assistant.threads.*; best effort: a
    failure is logged, never fatal to the answer)."""

    def __init__(self, client: Any, channel: str, thread_ts: str | None) -> None:
        self.client, self.channel, self.thread_ts = client, channel, thread_ts

    def set(self, status: str) -> None:
        self._call("setStatus", status=status)

    def title(self, title: str) -> None:
        self._call("setTitle", title=title)

    def _call(self, method: str, **fields: str) -> None:
        if not self.thread_ts:
            return
        try:
            getattr(self.client, f"assistant_threads_{method}")(
                channel_id=self.channel, thread_ts=self.thread_ts, **fields
            )
        except Exception as exc:
            log.warning("assistant.threads.%s failed: %s", method, _one_line(exc))


def _orphan_placeholder(
    thread: list[dict[str, Any]], question: str, bot_user_id: str | None = None
) -> str | None:
    """The ts of paperbot's "Searching…" message for ``question`` in the thread, if any (a
    bot's when paperbot's user id is unknown; never another bot's when it is known)."""
    text = blocks.placeholder(question)[0]
    for message in thread:
        ours = (
            message.get("user") == bot_user_id
            if bot_user_id
            else bool(message.get("bot_id") or message.get("app_id"))
        )
        if ours and message.get("text") == text:
            return str(message["ts"])
    return None


def for_app(app: Any, services: Services, settings: SlackSettings) -> AnswerQueue:
    """The app's answer queue, kept on Services (serve starts it, /readyz reads its stats)."""
    queue = services.answer_queue
    if queue is None or queue.client is not app.client:  # one queue per app (and client)
        slack = SlackAnswers(services, app.client, settings)
        queue = AnswerQueue(
            services.store,
            slack.answer,
            slack.give_up,
            workers=settings.answer_workers,
            max_attempts=settings.answer_max_attempts,
            lease_seconds=settings.answer_lease_seconds,
        )
        queue.client = app.client
        app.use(queue.gate.middleware)  # Socket Mode's acks (HTTP: bot/slack/asgi.py too)
        services.answer_queue = queue
    return queue
