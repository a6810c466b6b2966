"""The `paperbot` command line. Heavy libraries are imported inside commands so --help is fast."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from retrieval import Corpus, Paper, RecordError, RetrievalSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

app = typer.Typer(
    help="paperbot: keep a research team on top of new papers (ingest, search, answers, digests).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
papers_app = typer.Typer(help="Browse the papers in the index.", no_args_is_help=True)
eval_app = typer.Typer(help="Measure retrieval and answer quality.", no_args_is_help=True)
app.add_typer(papers_app, name="papers")
app.add_typer(eval_app, name="eval")

_state: dict[str, Any] = {"debug": False}


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
) -> None:
    _state["debug"] = debug
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    _configure_logging(level)


def _configure_logging(level: int) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(
        console=Console(stderr=True),
        show_path=False,
        rich_tracebacks=_state["debug"],
        markup=False,
    )
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    # Library chatter (HTTP requests, telemetry) only in debug mode.
    for noisy in ("httpx", "chromadb", "urllib3", "httpcore", "openai", "posthog"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if _state["debug"] else logging.WARNING)


def main() -> None:
    """Console-script entry point: project errors are printed without a traceback."""
    try:
        app()
    except Exception as exc:  # the last line of defence; PaperbotError is the usual case
        from retrieval.errors import PaperbotError

        if _state["debug"] or not isinstance(exc, PaperbotError | ValueError):
            raise
        _err().print(f"[bold red]Error:[/] {exc}", highlight=False)
        sys.exit(1)


def _out() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def _err() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _settings() -> RetrievalSettings:
    from pydantic import ValidationError

    from retrieval.errors import ConfigError
    from retrieval.settings import RetrievalSettings

    try:
        return RetrievalSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"PAPERBOT_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"Invalid settings: {problems}") from None


def _corpus() -> Corpus:
    from retrieval import Corpus

    return Corpus(_settings())


def _parse_date(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date (use YYYY-MM-DD)", param_hint=flag
        ) from None


# ---------------------------------------------------------------- ingest
@app.command()
def ingest(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Feed files: HF page text (.txt), HF API JSON, arXiv Atom, JSONL, CSV."
        ),
    ] = None,
    hf_date: Annotated[
        str | None,
        typer.Option("--hf-date", help="Fetch the HF Daily Papers of this date (YYYY-MM-DD)."),
    ] = None,
    arxiv_query: Annotated[
        str | None,
        typer.Option("--arxiv-query", help="Fetch an arXiv API search, e.g. 'cat:cs.CL'."),
    ] = None,
    arxiv_ids: Annotated[
        str | None, typer.Option("--arxiv-ids", help="Fetch these arXiv ids (comma-separated).")
    ] = None,
    max_results: Annotated[int, typer.Option(help="Most papers to fetch from arXiv.")] = 100,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", help="Force a file format: page, hf_api, arxiv, jsonl, csv, json."
        ),
    ] = None,
    page_date: Annotated[
        str | None, typer.Option("--date", help="Publication date for page-text feeds without one.")
    ] = None,
    strict: Annotated[bool, typer.Option(help="Exit 1 when any record failed.")] = False,
) -> None:
    """Ingest papers from files or live feeds into the index (idempotent)."""
    from bot import console

    settings = _settings()
    feeds = _feeds(
        settings,
        paths or [],
        hf_date,
        arxiv_query,
        arxiv_ids,
        max_results,
        fmt,
        _parse_date(page_date, "--date"),
    )
    if not feeds:
        raise typer.BadParameter("give a file, --hf-date, --arxiv-query or --arxiv-ids")
    from retrieval import Corpus

    corpus = Corpus(settings)
    records, failed_feeds = console.collect_records(feeds)
    failed_records = False
    if records:
        report = console.run_ingest(corpus, records)
        console.print_ingest_report(report)
        failed_records = bool(report.failed)
    for problem in failed_feeds:
        _err().print(f"[bold red]Error:[/] {problem}", highlight=False)
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
        day = _parse_date(hf_date, "--hf-date")
        assert day is not None
        items.append((f"HF Daily Papers {day}", lambda: feeds.from_hf(settings, day)))
    if arxiv_query or arxiv_ids:
        ids = [i.strip() for i in (arxiv_ids or "").split(",") if i.strip()] or None
        label = f"arXiv {arxiv_query or ','.join(ids or [])}"
        items.append((label, lambda: feeds.from_arxiv(settings, arxiv_query, ids, max_results)))
    return items


# ---------------------------------------------------------------- search
@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="Papers to show.")] = 10,
    since: Annotated[
        str | None, typer.Option(help="Only papers published on/after (YYYY-MM-DD).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only papers published on/before (YYYY-MM-DD).")
    ] = None,
    source: Annotated[
        list[str] | None, typer.Option(help="Only this source: hf_page, hf_api, arxiv, file.")
    ] = None,
    mode: Annotated[str, typer.Option(help="hybrid, dense or lexical.")] = "hybrid",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Hybrid search over the indexed papers, one line per paper."""
    from bot import console
    from retrieval.search import MODES, SearchFilters

    if mode not in MODES:
        raise typer.BadParameter(f"choose one of {', '.join(MODES)}", param_hint="--mode")
    filters = SearchFilters(
        _parse_date(since, "--since"), _parse_date(until, "--until"), tuple(source or ())
    )
    corpus = _corpus()
    hits = corpus.search(query, k, mode=mode, filters=filters)
    if as_json:
        typer.echo(json.dumps([console.hit_json(h) for h in hits], indent=2))
    elif not hits and not corpus.state.count_papers():
        console.print_papers([])  # explains how to ingest
    else:
        console.print_hits(query, hits)


# ---------------------------------------------------------------- ask
@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="A question about the indexed papers.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the full answer as JSON.")] = False,
    stream: Annotated[bool, typer.Option(help="Print the answer as it is generated.")] = False,
) -> None:
    """Answer from the indexed papers, with numbered, verified citations."""
    from bot import console

    qa = _qa()
    answer = console.stream_answer(qa, question) if stream and not as_json else qa.answer(question)
    if as_json:
        typer.echo(json.dumps(console.answer_json(answer), indent=2))
    else:
        console.print_answer(answer)


def _qa() -> Any:
    from retrieval import Corpus
    from retrieval.llm import build_chat_model
    from retrieval.qa import QAService

    settings = _settings()
    return QAService(Corpus(settings), build_chat_model(settings), settings)


# ---------------------------------------------------------------- papers
@papers_app.command("list")
def papers_list(
    since: Annotated[str | None, typer.Option(help="Published on/after (YYYY-MM-DD).")] = None,
    until: Annotated[str | None, typer.Option(help="Published on/before (YYYY-MM-DD).")] = None,
    source: Annotated[str | None, typer.Option(help="hf_page, hf_api, arxiv or file.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most papers to list.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List papers, newest first."""
    from bot import console

    papers = _corpus().papers(
        since=_parse_date(since, "--since"),
        until=_parse_date(until, "--until"),
        source=source,
        limit=limit,
    )
    if as_json:
        typer.echo(json.dumps([p.model_dump(mode="json") for p in papers], indent=2))
    else:
        console.print_papers(papers)


@papers_app.command("show")
def papers_show(
    paper_ref: Annotated[
        str, typer.Argument(metavar="ID", help="Paper id, arXiv id, URL or title.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one paper with its abstract."""
    from bot import console

    paper = _corpus().paper(paper_ref)
    if as_json:
        typer.echo(json.dumps(paper.model_dump(mode="json"), indent=2))
    else:
        console.print_paper(paper)


@papers_app.command("delete")
def papers_delete(
    paper_refs: Annotated[list[str], typer.Argument(metavar="ID...", help="Papers to remove.")],
) -> None:
    """Remove papers and their chunks from every index."""
    deleted = _corpus().delete(paper_refs)
    _out().print(f"Deleted {len(deleted)} paper(s): {', '.join(deleted)}")


# ---------------------------------------------------------------- stats / eval
@app.command()
def stats(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Counts of papers, chunks and vectors, and whether the indexes agree."""
    from bot import console

    data = _corpus().stats()
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        console.print_stats(data)


def _require_papers(corpus: Corpus) -> None:
    from retrieval.errors import PaperbotError

    if not corpus.state.count_papers():
        raise PaperbotError("The index is empty: ingest the papers the questions are about first.")


@eval_app.command("retrieval")
def eval_retrieval(
    file: Annotated[Path, typer.Argument(help="JSONL: question, titles, kind.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """MRR and Recall@1/5/10 for BM25-only, dense-only and hybrid, side by side."""
    from bot import console
    from retrieval.evaluate import evaluate_retrieval, load_questions

    questions = load_questions(file)
    corpus = _corpus()
    _require_papers(corpus)
    table = evaluate_retrieval(questions, lambda q, k, mode: corpus.search(q, k, mode=mode))
    if as_json:
        typer.echo(json.dumps([console.scores_json(s) for s in table], indent=2))
    else:
        console.print_retrieval_scores(table)


@eval_app.command("answers")
def eval_answers(
    file: Annotated[Path, typer.Argument(help="JSONL: question, titles, kind.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Citation precision, gold-paper recall and refusal accuracy per question kind, with the
    configured answer mode (extractive without an LLM)."""
    from bot import console
    from retrieval.evaluate import evaluate_answers, load_questions

    questions = load_questions(file)
    qa = _qa()
    _require_papers(qa.corpus)
    rows = evaluate_answers(questions, qa.answer)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        console.print_answer_scores(rows, qa.model)


@eval_app.command("summaries")
def eval_summaries(
    split: Annotated[str, typer.Option(help="ACLSum split: train, val or test.")] = "test",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N documents.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """ROUGE-1 of extractive summaries vs the lead-sentence baseline on ACLSum (offline)."""
    from bot import console
    from retrieval.evaluate import (
        aspect_summarizer,
        evaluate_summaries,
        extractive_summarizer,
        load_aclsum,
    )

    if split not in ("train", "val", "test"):
        raise typer.BadParameter("choose train, val or test", param_hint="--split")
    docs = load_aclsum(split)[:limit]
    rows = evaluate_summaries(docs, extractive_summarizer(), aspect_fn=aspect_summarizer())
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        console.print_summary_scores(rows, split, len(docs))


def _register_bot_commands() -> None:
    from bot import cli_bot

    cli_bot.register(app)


_register_bot_commands()

if __name__ == "__main__":
    main()
