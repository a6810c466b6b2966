"""Answer commands: ask, summarize, digest (print, or post with --post), eval."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bot.cli import jsonout, options, render

if TYPE_CHECKING:
    from answers.models import Answer
    from answers.qa import QAService
    from bot.services import Services
    from retrieval import Hit, Mode

eval_app = typer.Typer(help="Measure retrieval and answer quality.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command()(ask)
    app.command()(summarize)
    app.command()(digest)
    app.add_typer(eval_app, name="eval")


# ---------------------------------------------------------------- ask
def ask(
    question: Annotated[str, typer.Argument(help="A question about the indexed papers.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the full answer as JSON.")] = False,
    stream: Annotated[bool, typer.Option(help="Print the answer as it is generated.")] = False,
) -> None:
    """Answer from the indexed papers, with numbered, verified citations."""

    qa = options.services().qa
    options.require_papers(qa.corpus)
    answer = stream_answer(qa, question) if stream and not as_json else qa.answer(question)
    if as_json:
        typer.echo(json.dumps(jsonout.answer_json(answer), indent=2))
    else:
        render.print_answer(answer)


def stream_answer(qa: QAService, question: str) -> Answer:
    """Show partial text while it is generated; return the verified answer."""
    import asyncio

    from answers.models import Answer as AnswerType

    async def run() -> AnswerType:
        final: AnswerType | None = None
        err = options.err()
        async for event in qa.astream(question):
            if isinstance(event, AnswerType):
                final = event
            else:
                err.print(render.plain(event.text), end="", markup=False)
        err.print()
        assert final is not None  # astream always ends with the Answer
        return final

    return asyncio.run(run())


# ---------------------------------------------------------------- summaries and digests
def summarize(
    paper_ref: Annotated[
        str, typer.Argument(metavar="PAPER_ID", help="Paper id, arXiv id, URL or title.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A one- or two-sentence TL;DR of one paper (cached)."""
    from bot.slack.papers_command import find_paper

    services = options.services()
    paper = find_paper(services, paper_ref)
    with render.working(f"summarizing “{paper.title[:60]}”"):
        summary = services.summarizer.tldr(paper)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "paper_id": paper.paper_id,
                    "title": paper.title,
                    "tldr": summary.text,
                    "mode": summary.mode,
                    "cached": summary.cached,
                },
                indent=2,
            )
        )
        return

    render.print_tldr(paper, summary)


def digest(
    day: Annotated[
        str | None,
        typer.Option(
            "--date",
            help="The day (YYYY-MM-DD, today, yesterday, 7d): the papers feeds listed that day; default: the latest "
            "listing day in the index.",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Start of a window (YYYY-MM-DD, today, yesterday, 7d), up to --until or today."
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="End of the window (YYYY-MM-DD, today, yesterday, 7d).")
    ] = None,
    by: Annotated[
        str,
        typer.Option(
            "--by",
            help="Which day picks the papers: listed (the day a feed first listed them; a "
            "paper no feed listed counts by its publication date) or published.",
        ),
    ] = "listed",
    topic: Annotated[str | None, typer.Option(help="Only papers about this topic.")] = None,
    max_papers: Annotated[int | None, typer.Option(min=1, help="At most this many papers.")] = None,
    post: Annotated[
        str | None,
        typer.Option(
            help="Post to this Slack channel id (once per day), e.g. from cron; the day "
            "defaults to today."
        ),
    ] = None,
    final: Annotated[
        bool | None,
        typer.Option(
            "--final/--no-final",
            help="With --post: settle a day without papers now (posting the 'no new papers' "
            "note when PAPERBOT_DIGEST_EMPTY_NOTE is on). Default: only for past days, so a "
            "later cron run still posts today's papers once they arrive.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the digest of a day or window, or post it to Slack with --post CHANNEL."""
    from bot.slack.papers_command import latest_day

    date_by = options.date_field(by)
    services = options.services()
    options.require_papers(services.corpus)
    start = (
        options.parse_date(since, "--since")
        or options.parse_date(day, "--date")
        or (latest_day(services) if date_by == "listed" else services.corpus.latest_day(date_by))
        or date.today()
    )
    end = options.parse_date(until, "--until") or (date.today() if since else start)
    if post:
        if date_by != "listed":
            raise typer.BadParameter(
                "a posted digest holds the papers feeds listed that day; drop --by",
                param_hint="--by",
            )
        day_to_post = (
            options.parse_date(day, "--date")
            or options.parse_date(since, "--since")
            or date.today()
        )
        settle = final if final is not None else day_to_post < date.today()
        _post_digest(services, post, day_to_post, topic, max_papers, settle)
        return
    with render.working("building the digest") as step:
        result = services.digests.build(
            start, end, topic=topic, max_papers=max_papers, by=date_by, progress=step
        )
    if as_json:
        typer.echo(result.to_json(indent=2))
    else:
        render.print_digest(result)


def _post_digest(
    services: Services,
    channel: str,
    day: date,
    topic: str | None,
    max_papers: int | None,
    final: bool,
) -> None:
    from bot.slack.app import make_client
    from bot.slack.digest_posting import post_digest
    from retrieval import ConfigError

    slack = options.slack_settings()
    if not slack.bot_token:
        raise ConfigError("Posting needs SLACK_BOT_TOKEN (the bot token, xoxb-…).")
    result = post_digest(
        services,
        make_client(slack),
        channel,
        day,
        topic=topic,
        max_papers=max_papers,
        lease_seconds=slack.digest_lease_seconds,
        final=final,
        empty_note=slack.digest_empty_note,
    )
    typer.echo(
        render.plain(
            f"digest {day} → {channel}: {result.status}"
            + (f" ({result.error})" if result.error else "")
        )
    )
    if result.status == "failed":
        raise typer.Exit(1)


@eval_app.command("retrieval")
def eval_retrieval(
    file: Annotated[Path, typer.Argument(help="JSONL: question, titles, kind.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """MRR and Recall@1/5/10 for BM25-only, dense-only and hybrid, side by side."""
    from answers.evaluate import evaluate_retrieval, load_questions

    questions = load_questions(file)
    corpus = options.corpus()
    options.require_papers(corpus)
    with render.working("searching (3 modes per question)") as step:

        def search(q: str, k: int, mode: Mode) -> list[Hit]:
            step(advance=1)
            return corpus.search(q, k, mode=mode)

        table = evaluate_retrieval(questions, search)
    if as_json:
        typer.echo(json.dumps([jsonout.scores_json(s) for s in table], indent=2))
    else:
        render.print_retrieval_scores(table)


@eval_app.command("answers")
def eval_answers(
    file: Annotated[
        Path,
        typer.Argument(
            help="JSONL: question, titles, kind, and optionally answer (a regular expression "
            "the answer text must match)."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Citation precision, gold-paper recall and refusal accuracy per question kind, with the
    configured answer mode (extractive without an LLM)."""
    from answers.evaluate import evaluate_answers, load_questions

    questions = load_questions(file)
    qa = options.services().qa
    options.require_papers(qa.corpus)
    with render.working("answering the questions", total=len(questions)) as step:

        def answer(*args: Any, **kwargs: Any) -> Any:
            try:
                return qa.answer(*args, **kwargs)
            finally:
                step(advance=1)

        rows = evaluate_answers(questions, answer)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        render.print_answer_scores(rows, qa.model)


@eval_app.command("summaries")
def eval_summaries(
    split: Annotated[str, typer.Option(help="ACLSum split: train, val or test.")] = "test",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N documents.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """ROUGE-1 of extractive summaries vs the lead-sentence baseline on ACLSum (offline)."""
    from answers.evaluate import (
        aspect_summarizer,
        evaluate_summaries,
        extractive_summarizer,
        load_aclsum,
    )

    if split not in ("train", "val", "test"):
        raise typer.BadParameter("choose train, val or test", param_hint="--split")
    docs = load_aclsum(split)[:limit]
    with render.working(f"summarizing {len(docs)} ACLSum documents"):
        rows = evaluate_summaries(docs, extractive_summarizer(), aspect_fn=aspect_summarizer())
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        render.print_summary_scores(rows, split, len(docs))
