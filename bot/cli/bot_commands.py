"""Slack bot commands: serve, chat, doctor, schedule add/list/remove, feedback export."""

from __future__ import annotations

import csv
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bot.cli import options, render

if TYPE_CHECKING:
    from bot.services import Services
    from bot.slack.feed_watcher import FeedWatcher
    from bot.slack.settings import SlackSettings
    from bot.slack.store import BotStore
    from retrieval import RetrievalSettings

log = logging.getLogger(__name__)
schedule_app = typer.Typer(help="Daily digest schedules per channel.", no_args_is_help=True)
feedback_app = typer.Typer(help="Feedback collected from 👍/👎 buttons.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(chat)
    app.command()(doctor)
    app.add_typer(schedule_app, name="schedule")
    app.add_typer(feedback_app, name="feedback")


# ---------------------------------------------------------------- the bot
def serve(
    port: Annotated[
        int | None, typer.Option(help="HTTP mode port (default PAPERBOT_HTTP_PORT).")
    ] = None,
) -> None:
    """Run the Slack bot: Socket Mode when SLACK_APP_TOKEN is set, else HTTP mode. It polls
    the feeds (`paperbot feeds`), posts scheduled digests and notifies subscribers."""
    slack = options.slack_settings()
    missing = slack.missing_for(slack.mode)
    if missing:
        typer.echo(
            f"Cannot start in {slack.mode} mode: missing {', '.join(missing)}. "
            "Set them in the environment or .env (see .env.example and the README's "
            "'Connect to Slack').",
            err=True,
        )
        raise typer.Exit(2)
    from bot.slack.app import create_app
    from bot.slack.feed_watcher import watch_feeds
    from bot.slack.scheduler import DigestScheduler

    settings = _serving_settings(options.settings(), slack)
    check_big_files(settings)
    services = options.services(settings)
    services.warm_up()
    app = create_app(slack, services)
    watcher = watch_feeds(services, slack)
    _check_not_empty(services, watcher)
    scheduler = DigestScheduler(services, app.client, slack)
    queue = services.answer_queue  # made with the app's listeners (bot/slack/answer_queue.py)
    _stop_on_sigterm()
    queue.start()  # resumes the questions a stopped or crashed `serve` left unanswered
    scheduler.start()
    if watcher is not None:
        watcher.start()
    try:
        if slack.mode == "socket":
            _serve_socket(app, slack, services, watcher, queue.stats)
        else:
            _serve_http(app, slack, services, port or slack.http_port, watcher, queue.stats)
    finally:
        # the server stopped accepting; now the answers and the digest in flight, then the rest
        scheduler.request_stop()
        draining = time.monotonic()
        _drain(queue, slack.shutdown_grace_seconds)
        scheduler.stop(max(0.0, slack.shutdown_grace_seconds - (time.monotonic() - draining)))
        if watcher is not None:
            watcher.stop()
        log.info("stopped")
    _exit_after_stop(queue)


def _exit_after_stop(queue: Any) -> None:
    """Leave at once (exit 0) once the stop is done: every write is committed, the answers
    still in flight were handed back (the next start resumes them). Python's own exit would
    wait for every non-daemon thread, e.g. an answer stuck in a model or Slack call, or a
    library's pool, and then finalize the native extensions (ONNX, Chroma, the Socket Mode
    client): a Socket Mode `serve` was seen to hang there for good after closing its output
    (CI, twice). So flush the logs and exit now."""
    stuck = queue.stuck_workers()
    if stuck:
        log.info("exiting without waiting for %d answer thread(s) stuck in a call", stuck)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _drain(queue: Any, grace: float) -> None:
    """Let the answers in progress finish for up to ``grace`` seconds, then hand the rest back
    to the queue (the next start resumes them). A second SIGTERM/Ctrl-C hands back at once."""
    running = queue.stats()["running"]
    if running:
        log.info("stopping: finishing %d answer(s) in progress (up to %.0f s)", running, grace)
    try:
        queue.stop(grace)
    except KeyboardInterrupt:
        queue.stop(0)


def _stop_on_sigterm() -> None:
    """`docker stop` and systemd send SIGTERM: stop as cleanly as on Ctrl-C."""
    if threading.current_thread() is threading.main_thread():

        def interrupt(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, interrupt)


def check_big_files(settings: RetrievalSettings) -> None:
    """Opening a store checks it (`PRAGMA quick_check`) unless it is over
    QUICK_CHECK_MAX_BYTES; a long-running `serve` checks those big files once, at start."""
    from retrieval import StateAdmin, StateFileError, migrations

    paths = [settings.state_path, settings.data_dir / "bot.sqlite3"]
    if not any(p.is_file() and p.stat().st_size > migrations.QUICK_CHECK_MAX_BYTES for p in paths):
        return
    log.info("checking the data files (large files are not checked on every open)")
    report = StateAdmin(settings).check()
    bad = [
        f"{name}: {'; '.join(file['problems'][:2])}"
        for name, file in report["files"].items()
        if not file["ok"]
    ]
    if bad:
        raise StateFileError(
            f"{'; '.join(bad)} in {settings.data_dir}. `paperbot state check` shows the details; "
            "`paperbot state restore DIR` puts a backup back, `paperbot state rebuild` "
            "salvages what is readable."
        )


def _serving_settings(settings: RetrievalSettings, slack: SlackSettings) -> RetrievalSettings:
    """Unless PAPERBOT_EMBEDDING_THREADS says otherwise, an answer's embedding may use only its
    share of the cores (cores / answer workers), so a burst of answers never starves the
    threads that ack Slack within its 3 s."""
    if settings.embedding_threads:
        return settings
    from bot.slack.answer_queue import embedding_threads_per_job

    threads = embedding_threads_per_job(slack.answer_workers)
    log.info("embedding threads per answer: %d", threads)
    return settings.model_copy(update={"embedding_threads": threads})


def _check_not_empty(services: Services, watcher: FeedWatcher | None) -> None:
    """An empty index is fine when feeds will fill it; with nothing to fill it, `serve` would
    only ever answer "not in the indexed papers" — most likely the wrong data dir."""
    if services.corpus.count_papers():
        return
    where = services.settings.data_dir
    if watcher is not None and any(f.enabled for f, _ in watcher.runner.feeds()):
        log.warning("the index at %s is empty: the feeds will fill it", where)
        return
    options.require_papers(services.corpus)  # raises, naming the data dir and the fixes


def _serve_socket(
    app: Any,
    slack: SlackSettings,
    services: Services | None = None,
    watcher: FeedWatcher | None = None,
    queue: Any = None,
) -> None:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from bot.slack.socket_mode import close_socket_mode

    assert slack.app_token is not None
    health = None
    if services is not None and slack.health_port:
        health = _health_server(app, slack, services, slack.health_port, watcher, queue)
        _start_health(health, "health")
        log.info(
            "health checks on http://%s:%d/healthz and /readyz",
            slack.http_host,
            health.server_address[1],
        )
    log.info("paperbot is connecting to Slack in Socket Mode")
    handler = SocketModeHandler(app, slack.app_token.get_secret_value())
    try:
        handler.start()
    except KeyboardInterrupt:  # SIGTERM or Ctrl-C: a normal stop (exit 0), as in HTTP mode
        log.info("stopping: closing the Socket Mode connection")
        close_socket_mode(handler)
    finally:
        if health is not None:
            health.shutdown()


def _serve_http(
    app: Any,
    slack: SlackSettings,
    services: Services,
    port: int,
    watcher: FeedWatcher | None,
    queue: Any = None,
) -> None:
    """uvicorn in this thread until SIGTERM/SIGINT (it finishes the requests in flight, then
    re-raises the signal: KeyboardInterrupt here) or `server.stop()`."""
    server = _health_server(app, slack, services, port, watcher, queue, slack_events=True)
    log.info(
        "paperbot listens on http://%s:%d/slack/events (health: /healthz, /readyz)",
        slack.http_host,
        server.server_address[1],
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        server.server_close()


def _health_server(
    app: Any,
    slack: SlackSettings,
    services: Services,
    port: int,
    watcher: FeedWatcher | None,
    queue: Any,
    *,
    slack_events: bool = False,
) -> Any:
    """uvicorn serving /healthz and /readyz (and /slack/events in HTTP mode). Slack's auth.test
    result is taken once, now: a bad token already stopped `create_app`."""
    from bot.slack.asgi import SlackASGI, liveness_check, readiness_check, slack_auth
    from bot.slack.server import HttpServer, PortInUseError
    from retrieval import PaperbotError

    auth = slack_auth(app.client)
    secret = slack.signing_secret.get_secret_value() if slack.signing_secret else None
    asgi = SlackASGI(
        app if slack_events else _NoSlack(),
        gate=services.answer_queue.gate if services.answer_queue is not None else None,
        signing_secret=secret if slack_events else None,
        liveness=liveness_check(services, slack, watcher),
        readiness=readiness_check(services, slack, watcher=watcher, auth=auth, queue=queue),
        max_body_bytes=slack.http_max_body_bytes,
        body_timeout=slack.http_body_timeout_seconds,
    )
    try:
        return HttpServer(
            asgi, slack.http_host, port, header_timeout=slack.http_header_timeout_seconds
        )
    except PortInUseError as exc:
        raise PaperbotError(str(exc)) from None


class _NoSlack:
    """Socket Mode's health port: Slack requests are not served there."""

    def dispatch(self, request: Any) -> Any:
        from slack_bolt.response import BoltResponse

        return BoltResponse(status=404, body="Not Found")


def _start_health(server: Any, name: str) -> None:
    threading.Thread(target=server.serve_forever, daemon=True, name=f"paperbot-{name}").start()


def chat() -> None:
    """Try the bot in the terminal: questions get answers (follow-ups keep context);
    lines starting with /papers run the slash command."""
    from bot.cli.chat import ChatSession

    session = ChatSession(options.services())
    render.chat_banner()
    render.print_chat_reply(session.greeting())  # as an assistant thread opens in Slack
    while True:
        try:
            line = input("you › ")
        except (EOFError, KeyboardInterrupt):
            typer.echo()
            return
        if line.strip() in ("exit", "quit", ":q"):
            return
        render.print_chat_reply(session.handle(line))


def doctor() -> None:
    """Check settings, data dir, tokenizer, embedding model, vector store, index, LLM and
    Slack; print a pass/fail line with a fix for each."""
    from bot.cli.doctor import iter_checks

    checks = []  # each line printed as its check completes (some take a minute at 10⁶ chunks)
    settings, answer_settings = options.settings(), options.answer_settings()
    for check in iter_checks(settings, answer_settings, options.slack_settings()):
        checks.append(check)
        mark = "PASS" if check.ok else "FAIL"
        typer.echo(render.plain(f"[{mark}] {check.name}: {check.detail}"))
        if not check.ok:
            typer.echo(render.plain(f"       fix: {check.fix}"))
    failed = [c.name for c in checks if not c.ok]
    typer.echo(f"{len(checks) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise typer.Exit(1)


# ---------------------------------------------------------------- schedules
def _store() -> BotStore:
    from bot.slack.store import BotStore

    return BotStore.from_settings(options.settings())


@schedule_app.command("add")
def schedule_add(
    channel: Annotated[str, typer.Argument(help="Slack channel id, e.g. C0123456789.")],
    at: Annotated[str, typer.Option("--time", help="Local time HH:MM.")] = "09:00",
    tz: Annotated[str, typer.Option("--tz", help="IANA time zone, e.g. Europe/Berlin.")] = "UTC",
    topic: Annotated[str | None, typer.Option(help="Only papers about this topic.")] = None,
    max_papers: Annotated[int | None, typer.Option(min=1, help="At most this many papers.")] = None,
) -> None:
    """Post the daily digest to CHANNEL at a local time (set again to change it)."""
    from bot.slack.scheduler import parse_schedule

    schedule = parse_schedule(channel, at, tz, topic, max_papers)
    with _store() as store:
        store.set_schedule(
            channel,
            schedule.at.strftime("%H:%M"),
            schedule.timezone,
            schedule.topic,
            schedule.max_papers,
        )
    typer.echo(
        render.plain(
            f"Digest for {channel} at {schedule.at:%H:%M} {schedule.timezone}"
            + (f", topic {topic!r}" if topic else "")
        )
    )


@schedule_app.command("list")
def schedule_list() -> None:
    """The configured digest schedules."""
    with _store() as store:
        rows = store.schedules()
    if not rows:
        typer.echo(
            "No digest schedules. Add one: paperbot schedule add C0123456789 --time 09:00 --tz Europe/Berlin"
        )
    for row in rows:
        extra = "".join(f", {k} {row[k]}" for k in ("topic", "max_papers") if row[k])
        typer.echo(render.plain(f"{row['channel']}: {row['at_time']} {row['timezone']}{extra}"))


@schedule_app.command("remove")
def schedule_remove(channel: Annotated[str, typer.Argument(help="Slack channel id.")]) -> None:
    """Stop posting the digest to CHANNEL."""
    with _store() as store:
        removed = store.remove_schedule(channel)
    typer.echo(
        render.plain(
            f"Removed the schedule of {channel}." if removed else f"{channel} had no schedule."
        )
    )


# ---------------------------------------------------------------- feedback
@feedback_app.command("export")
def feedback_export(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="CSV file; default: standard output.")
    ] = None,
) -> None:
    """Write every 👍/👎 vote (question, answer, user, vote, time, the reason given after a
    👎, the model and the sources) as CSV."""
    with _store() as store:
        rows = store.feedback_rows()
    fields = ["created_at", "user_id", "vote", "channel", "message_ts", "question", "answer"]
    fields += ["reason", "model", "sources"]
    handle = open(out, "w", newline="", encoding="utf-8") if out else sys.stdout  # noqa: SIM115
    try:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({key: _inert_cell(value) for key, value in row.items()} for row in rows)
    finally:
        if out:
            handle.close()
    if out:
        typer.echo(f"Wrote {len(rows)} vote(s) to {out}", err=True)


# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _inert_cell(value: Any) -> Any:
    """A user-written cell (a question, an answer) that a spreadsheet would run as a formula
    (``=HYPERLINK(...)``) gets a leading single quote: shown as text, never evaluated
    (OWASP's advice against CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value
