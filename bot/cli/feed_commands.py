"""Feed commands: `paperbot feeds add|list|remove|enable|disable|run`.

Feeds are kept in the bot's store (bot.sqlite3) of the data dir; `paperbot serve` polls them
in the background, and `paperbot feeds run` polls them now (for cron, or to see why a feed
fails). Feeds declared in PAPERBOT_FEEDS are added before every command here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from bot.cli import options, render

if TYPE_CHECKING:
    from bot.slack.feeds import Feed
    from bot.slack.store import BotStore

feeds_app = typer.Typer(
    help="Feeds paperbot polls by itself: HF Daily Papers, arXiv categories, a URL or a file.",
    no_args_is_help=True,
)
add_app = typer.Typer(help="Add a feed (then `paperbot serve` polls it).", no_args_is_help=True)
feeds_app.add_typer(add_app, name="add")

NameOpt = Annotated[str | None, typer.Option("--name", help="Feed name (default from the source).")]
EveryOpt = Annotated[
    str | None, typer.Option("--every", help="Poll interval, e.g. 30m, 2h (default: per source).")
]
TzOpt = Annotated[str, typer.Option("--tz", help="IANA time zone of the feed's days.")]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", help="page, hf_api, json, jsonl, csv or arxiv (default: detected)."),
]
WaitOpt = Annotated[
    bool | None,
    typer.Option(
        "--wait/--no-wait",
        help="Scheduled digests wait for this feed's daily list (default: yes for hf and "
        "arxiv, no for url and file).",
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(feeds_app, name="feeds")


@contextmanager
def _store() -> Iterator[BotStore]:
    """The data dir's bot store, with the feeds of PAPERBOT_FEEDS added."""
    from bot.slack.feed_watcher import seed_declared
    from bot.slack.store import BotStore

    with BotStore.from_settings(options.settings()) as store:
        seed_declared(store, options.slack_settings().feeds)
        yield store


def _add(feed: Feed) -> None:
    from retrieval import PaperbotError

    with _store() as store:
        if not store.add_feed(feed.row()):
            raise PaperbotError(
                f"A feed named {feed.name!r} exists already; choose another --name, or "
                f"`paperbot feeds remove {feed.name}` first."
            )
    typer.echo(
        render.plain(
            f"Added feed {feed.name}: {feed.describe()}, polled {feed.every_text()}. "
            f"`paperbot serve` polls it; `paperbot feeds run {feed.name}` polls it now."
        )
    )


# ---------------------------------------------------------------- add
@add_app.command("hf")
def add_hf(
    name: NameOpt = None, every: EveryOpt = None, tz: TzOpt = "UTC", wait: WaitOpt = None
) -> None:
    """HF Daily Papers: the current day's list (in --tz), every 30 minutes by default."""
    from bot.slack.feeds import hf_feed

    _add(hf_feed(name, tz=tz, every=every, wait=wait))


@add_app.command("arxiv")
def add_arxiv(
    category: Annotated[
        list[str] | None,
        typer.Option("--category", "-c", help="arXiv category, e.g. cs.CL (repeat for more)."),
    ] = None,
    query: Annotated[
        str | None, typer.Option("--query", help="arXiv search, e.g. 'abs:\"retrieval\"'.")
    ] = None,
    max_results: Annotated[
        int, typer.Option(help="Newest papers fetched per poll (pages of 100, 3 s apart).")
    ] = 200,
    name: NameOpt = None,
    every: EveryOpt = None,
    wait: WaitOpt = None,
) -> None:
    """arXiv, newest first: polled after each announcement (Sun–Thu 20:00 New York), hourly
    until the day's listing shows up."""
    from bot.slack.feeds import arxiv_feed

    categories = [c for value in category or [] for c in value.replace(",", " ").split()]
    _add(
        arxiv_feed(
            name,
            categories=categories,
            query=query,
            max_results=max_results,
            every=every,
            wait=wait,
        )
    )


@add_app.command("url")
def add_url(
    url: Annotated[str, typer.Argument(help="An http(s) URL of a JSONL, CSV, JSON or Atom feed.")],
    fmt: FormatOpt = None,
    name: NameOpt = None,
    every: EveryOpt = None,
    tz: TzOpt = "UTC",
    wait: WaitOpt = None,
) -> None:
    """A document on the web, fetched every hour by default."""
    from bot.slack.feeds import url_feed

    _add(url_feed(url, name, fmt=fmt, tz=tz, every=every, wait=wait))


@add_app.command("file")
def add_file(
    path: Annotated[str, typer.Argument(help="A feed file (.jsonl, .csv, .json, .xml, .txt).")],
    fmt: FormatOpt = None,
    name: NameOpt = None,
    every: EveryOpt = None,
    tz: TzOpt = "UTC",
    wait: WaitOpt = None,
) -> None:
    """A file re-read at every poll (every hour by default); new papers in it are ingested."""
    from bot.slack.feeds import file_feed

    _add(file_feed(path, name, fmt=fmt, tz=tz, every=every, wait=wait))


# ---------------------------------------------------------------- list, remove, enable
@feeds_app.command("list")
def list_feeds(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The feeds with their status: last success, last error, next poll."""
    from bot.slack.feeds import Feed, FeedStatus, feed_report

    slack = options.slack_settings()
    with _store() as store:
        rows = store.feeds()
    reports = [
        feed_report(Feed.from_row(r), FeedStatus.from_row(r), slack.feed_alert_failures)
        for r in rows
    ]
    if as_json:
        typer.echo(json.dumps(reports, indent=2))
    elif not reports:
        typer.echo(
            "No feeds. Add one: paperbot feeds add hf, or paperbot feeds add arxiv "
            "--category cs.CL (see paperbot feeds add --help)."
        )
    else:
        render.print_feeds(reports)


@feeds_app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="The feed's name.")]) -> None:
    """Stop polling a feed (the papers it brought stay in the index)."""
    with _store() as store:
        removed = store.remove_feed(name)
    if not removed:
        _no_such_feed(name)
    typer.echo(render.plain(f"Removed feed {name}."))


@feeds_app.command("enable")
def enable(name: Annotated[str, typer.Argument(help="The feed's name.")]) -> None:
    """Poll a disabled feed again (due at once)."""
    with _store() as store:
        if not store.set_feed_enabled(name, True):
            _no_such_feed(name)
    typer.echo(render.plain(f"Feed {name} enabled."))


@feeds_app.command("disable")
def disable(name: Annotated[str, typer.Argument(help="The feed's name.")]) -> None:
    """Stop polling a feed without forgetting it; digests no longer wait for it."""
    with _store() as store:
        if not store.set_feed_enabled(name, False):
            _no_such_feed(name)
    typer.echo(render.plain(f"Feed {name} disabled."))


def _no_such_feed(name: str) -> None:
    from retrieval import PaperbotError

    raise PaperbotError(f"No feed named {name!r}; `paperbot feeds list` shows the feeds.")


# ---------------------------------------------------------------- run
@feeds_app.command("run")
def run(
    names: Annotated[
        list[str] | None, typer.Argument(help="Feeds to poll (default: every enabled feed).")
    ] = None,
    due_only: Annotated[
        bool,
        typer.Option(
            "--due-only", help="Only feeds due now (keeps each source's schedule and backoff)."
        ),
    ] = False,
) -> None:
    """Poll feeds now and ingest what they list (from cron, or to see an error).

    Prints one line per feed; exits 1 when a feed failed."""
    from bot.slack.feed_watcher import FeedRunner
    from retrieval import Corpus, PaperbotError

    settings = options.settings()
    corpus = Corpus(settings)
    try:
        with _store() as store:
            runner = FeedRunner(corpus, store, settings, options.slack_settings())
            if not runner.feeds():
                raise PaperbotError(
                    "No feeds to run. Add one: paperbot feeds add hf, or paperbot feeds add "
                    "arxiv --category cs.CL (see paperbot feeds add --help)."
                )
            runs = runner.run_due(datetime.now().astimezone(), names=names or (), due_only=due_only)
    finally:
        corpus.close()
    for done in runs:
        typer.echo(render.plain(done.line()))
    if any(not r.ok for r in runs):
        raise typer.Exit(1)
