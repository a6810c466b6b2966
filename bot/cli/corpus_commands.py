"""Corpus commands: ingest, search, papers list/show/delete, stats."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bot.cli import jsonout, options, render

if TYPE_CHECKING:
    from retrieval import Corpus, IngestReport, Paper, RecordError, RetrievalSettings

Feed = tuple[str, Callable[[], Iterator["Paper | RecordError"]]]
BY_HELP = (
    "Which day --since/--until mean: listed (the day a feed first listed the paper; a paper "
    "no feed listed counts by its publication date) or published."
)
papers_app = typer.Typer(help="Browse the papers in the index.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command()(ingest)
    app.command()(search)
    app.command()(stats)
    app.add_typer(papers_app, name="papers")


# ---------------------------------------------------------------- ingest
MAX_RESULTS = 100  # --max-results unless given


def ingest(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Feed files: HF page text (.txt), HF API JSON, arXiv Atom, JSONL, CSV."
        ),
    ] = None,
    hf_date: Annotated[
        str | None,
        typer.Option(
            "--hf-date",
            help="Fetch the HF Daily Papers of this date (YYYY-MM-DD, today, yesterday, 7d).",
        ),
    ] = None,
    arxiv_query: Annotated[
        str | None,
        typer.Option("--arxiv-query", help="Fetch an arXiv API search, e.g. 'cat:cs.CL'."),
    ] = None,
    arxiv_ids: Annotated[
        str | None, typer.Option("--arxiv-ids", help="Fetch these arXiv ids (comma-separated).")
    ] = None,
    max_results: Annotated[
        int | None, typer.Option(help=f"Most papers to fetch from arXiv (default {MAX_RESULTS}).")
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", help="Force a file format: page, hf_api, arxiv, jsonl, csv, json."
        ),
    ] = None,
    page_date: Annotated[
        str | None,
        typer.Option("--date", help="The day of page-text feeds without a date line."),
    ] = None,
    listed: Annotated[
        str | None,
        typer.Option(
            help="The day a feed listed these papers (YYYY-MM-DD, today, yesterday, 7d), for records that do not "
            "say (HF entries, HF pages and a `listed` column do; --hf-date's day is the "
            "default for its entries)."
        ),
    ] = None,
    feed: Annotated[
        str | None,
        typer.Option(help="Record the listings under this feed name (default: manual)."),
    ] = None,
    strict: Annotated[bool, typer.Option(help="Exit 1 when any record failed.")] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Start over when the state is empty but the vector index is not: drop its "
            "vectors and embed everything again.",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the counts and every problem as JSON (cron).")
    ] = False,
    arxiv_snapshot: Annotated[
        Path | None,
        typer.Option(
            "--arxiv-snapshot",
            help="Backfill from arXiv's bulk metadata (the Kaggle arxiv-metadata-oai-snapshot "
            "JSON lines; .gz and .zip too), streaming and resumable: a second run continues "
            "where an interrupted one stopped. Embeds with PAPERBOT_EMBEDDING_WORKERS local "
            "model processes, or PAPERBOT_EMBEDDING_CONCURRENCY requests in flight to an "
            "endpoint (a 429 waits what the server's Retry-After says, up to "
            "PAPERBOT_MAX_RETRIES times); the result reports the mode's chunks/s.",
        ),
    ] = None,
    categories: Annotated[
        str | None,
        typer.Option(
            help="With --arxiv-snapshot: only papers with a category starting with one of "
            "these (comma-separated, e.g. 'cs.CL,cs.LG' or 'cs.')."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="With --arxiv-snapshot: only papers first submitted (v1) on this day or later."
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="With --arxiv-snapshot: only papers first submitted on or before."),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="With --arxiv-snapshot: stop after this many papers."),
    ] = None,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart", help="With --arxiv-snapshot: read from the start, not the stored cursor."
        ),
    ] = False,
) -> None:
    """Ingest papers from files or live feeds into the index (idempotent).

    Each paper keeps the day its feed listed it (digests and --since/--until go by it).
    """

    settings = options.settings()
    snapshot_only = (categories, since, until, limit, restart or None)
    if arxiv_snapshot is None and any(x is not None for x in snapshot_only):
        raise typer.BadParameter(
            "--categories, --since, --until, --limit and --restart go with --arxiv-snapshot"
        )
    if arxiv_snapshot is not None:
        if paths or hf_date or arxiv_query or arxiv_ids:
            raise typer.BadParameter("--arxiv-snapshot is ingested on its own; give no other feed")
        feed_only = {"--format": fmt, "--date": page_date, "--listed": listed}
        ignored = [name for name, value in feed_only.items() if value is not None]
        ignored += ["--max-results"] if max_results is not None else []
        if ignored:
            raise typer.BadParameter(
                f"{', '.join(ignored)} do not apply to --arxiv-snapshot (its papers are listed "
                "on the day arXiv announced their v1; --categories, --since, --until and --limit "
                "filter it)"
            )
        from bot.cli import bulk_ingest

        bulk_ingest.ingest_snapshot(
            settings,
            arxiv_snapshot,
            categories=categories,
            since=options.parse_date(since, "--since"),
            until=options.parse_date(until, "--until"),
            limit=limit,
            restart=restart,
            feed=feed,
            force=force,
            strict=strict,
            as_json=as_json,
        )
        return
    feeds = _feeds(
        settings,
        paths or [],
        hf_date,
        arxiv_query,
        arxiv_ids,
        MAX_RESULTS if max_results is None else max_results,
        fmt,
        options.parse_date(page_date, "--date"),
    )
    listed_day = options.parse_date(listed, "--listed")
    if not feeds:
        raise typer.BadParameter("give a file, --hf-date, --arxiv-query or --arxiv-ids")
    from retrieval import Corpus

    corpus = Corpus(settings)
    records, failed_feeds = collect_records(feeds)
    failed_records = False
    report = None
    if records:
        report = run_ingest(corpus, records, feed=feed or None, listed=listed_day, force=force)
        if not as_json:
            render.print_ingest_report(report)
        failed_records = bool(report.failed)
    if as_json:
        typer.echo(json.dumps(jsonout.ingest_json(report, failed_feeds), ensure_ascii=False))
    for problem in failed_feeds:
        options.err().print(f"[bold red]Error:[/] {render.safe(problem)}", soft_wrap=True)
    if failed_feeds or (strict and failed_records):
        raise typer.Exit(1)


def _feeds(
    settings: RetrievalSettings,
    paths: list[Path],
    hf_date: str | None,
    arxiv_query: str | None,
    arxiv_ids: str | None,
    max_results: int,
    fmt: str | None,
    page_date: date | None,
) -> list[tuple[str, Callable[[], Iterator[Paper | RecordError]]]]:
    """(label, thunk) per feed; thunks run under the progress display."""
    from retrieval import feeds

    items: list[tuple[str, Callable[[], Iterator[Paper | RecordError]]]] = [
        (
            str(path),
            functools.partial(feeds.from_path, settings, path, fmt=fmt, page_date=page_date),
        )
        for path in paths
    ]
    if hf_date:
        day = options.parse_date(hf_date, "--hf-date")
        assert day is not None
        items.append(
            (f"HF Daily Papers {day}", lambda: _listed_on(feeds.from_hf(settings, day), day))
        )
    if arxiv_query or arxiv_ids:
        ids = [i.strip() for i in (arxiv_ids or "").split(",") if i.strip()] or None
        label = f"arXiv {arxiv_query or ','.join(ids or [])}"
        items.append((label, lambda: feeds.from_arxiv(settings, arxiv_query, ids, max_results)))
    return items


def _listed_on(records: Iterator[Paper | RecordError], day: date) -> Iterator[Paper | RecordError]:
    """The day a list was fetched for is the listing day of its entries that carry none."""
    from retrieval import Paper

    for record in records:
        if isinstance(record, Paper) and record.listed is None:
            record = record.model_copy(update={"listed": day})
        yield record


def collect_records(feeds: Sequence[Feed]) -> tuple[list[Paper | RecordError], list[str]]:
    """Read every feed (with a progress line per feed).

    Returns the records and the feeds that failed as a whole (missing file, dead URL,
    malformed document): those are reported, and the other feeds still land.
    """
    from retrieval import SourceError

    records: list[Paper | RecordError] = []
    failed_feeds: list[str] = []
    with render.progress() as progress:
        for label, read in feeds:
            task = progress.add_task(f"reading {render.safe(label)}", total=None)
            try:
                for record in read():
                    records.append(record)
                    progress.advance(task)
            except SourceError as exc:
                failed_feeds.append(str(exc))
                progress.update(task, description=f"[red]failed[/] {render.safe(label)}")
            progress.update(task, total=progress.tasks[task].completed)
    return records, failed_feeds


def run_ingest(
    corpus: Corpus,
    records: Sequence[Paper | RecordError],
    *,
    feed: str | None = None,
    listed: date | None = None,
    force: bool = False,
) -> IngestReport:
    with render.progress() as progress:
        task = progress.add_task("indexing (chunk, embed, store)", total=None)

        def update(phase: str, done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        report = corpus.ingest(records, progress=update, feed=feed, listed=listed, force=force)
        if progress.tasks[task].total is None:
            progress.update(
                task, total=0, completed=0, description="indexing: nothing new to index"
            )
    return report


# ---------------------------------------------------------------- search
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="Papers to show.")] = 10,
    since: Annotated[
        str | None,
        typer.Option(help="Only papers of this day or later (YYYY-MM-DD, today, yesterday, 7d)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Only papers of this day or earlier (YYYY-MM-DD, today, yesterday, 7d)."),
    ] = None,
    by: Annotated[str, typer.Option("--by", help=BY_HELP)] = "listed",
    source: Annotated[
        list[str] | None, typer.Option(help="Only this source: hf_page, hf_api, arxiv, file.")
    ] = None,
    mode: Annotated[str, typer.Option(help="hybrid, dense or lexical.")] = "hybrid",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Hybrid search over the indexed papers, one line per paper."""
    from retrieval import MODES, SearchFilters

    if mode not in MODES:
        raise typer.BadParameter(f"choose one of {', '.join(MODES)}", param_hint="--mode")
    filters = SearchFilters(
        options.parse_date(since, "--since"),
        options.parse_date(until, "--until"),
        tuple(source or ()),
        by=options.date_field(by),
    )
    corpus = options.corpus()
    hits = corpus.search(query, k, mode=mode, filters=filters)
    if as_json:
        typer.echo(json.dumps([jsonout.hit_json(h) for h in hits], indent=2))
    elif not hits and not corpus.count_papers():
        render.print_papers([])  # explains how to ingest
    else:
        render.print_hits(query, hits)


# ---------------------------------------------------------------- papers
@papers_app.command("list")
def papers_list(
    since: Annotated[
        str | None, typer.Option(help="Of this day or later (YYYY-MM-DD, today, yesterday, 7d).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Of this day or earlier (YYYY-MM-DD, today, yesterday, 7d).")
    ] = None,
    by: Annotated[str, typer.Option("--by", help=BY_HELP)] = "listed",
    source: Annotated[str | None, typer.Option(help="hf_page, hf_api, arxiv or file.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most papers to list.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List papers, newest day first (by the day a feed listed them, unless --by published)."""

    papers = options.corpus().papers(
        since=options.parse_date(since, "--since"),
        until=options.parse_date(until, "--until"),
        source=source,
        limit=limit,
        by=options.date_field(by),
    )
    if as_json:
        typer.echo(json.dumps([p.model_dump(mode="json") for p in papers], indent=2))
    else:
        render.print_papers(papers)


@papers_app.command("show")
def papers_show(
    paper_ref: Annotated[
        str, typer.Argument(metavar="ID", help="Paper id, arXiv id, URL or title.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one paper with its abstract and the days feeds listed it."""

    corpus = options.corpus()
    paper = corpus.paper(paper_ref)
    listings = corpus.listings(paper_ids=[paper.paper_id])
    if as_json:
        data = paper.model_dump(mode="json")
        data["listings"] = [{"feed": x.feed, "day": x.day.isoformat()} for x in listings]
        typer.echo(json.dumps(data, indent=2))
        return
    render.print_paper(paper)
    listed = "; ".join(f"{x.day.isoformat()} by {x.feed}" for x in listings)
    options.out().print(f"[bold]listed[/] {render.safe(listed) or '— (never listed by a feed)'}")


@papers_app.command("delete")
def papers_delete(
    paper_refs: Annotated[list[str], typer.Argument(metavar="ID...", help="Papers to remove.")],
) -> None:
    """Remove papers and their chunks from every index."""
    deleted = options.corpus().delete(paper_refs)
    options.out().print(f"Deleted {len(deleted)} paper(s): {render.safe(', '.join(deleted))}")


# ---------------------------------------------------------------- stats / eval
def stats(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Counts of papers, chunks and vectors, and whether the indexes agree."""

    data = options.corpus().stats()
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        render.print_stats(data)
