"""Terminal rendering for the CLI (rich): tables, progress bars, reports. Pure output: the
commands call services and hand the results here."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    from answers.digest import Digest
    from answers.evaluate import AnswerScores, RetrievalScores, SummaryScores
    from answers.models import Answer
    from answers.summarize import Summary
    from bot.slack.blocks import Message
    from retrieval import Hit, IngestReport, Paper, RecordError

Feed = tuple[str, Callable[[], Iterator["Paper | RecordError"]]]
MAX_LISTED_PROBLEMS = 25


def _console() -> Console:
    return Console(highlight=False)


def progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def print_ingest_report(report: IngestReport) -> None:
    console = _console()
    table = Table(title="Ingest summary", show_header=True)
    table.add_column("outcome")
    table.add_column("papers", justify="right")
    for label, count in (
        ("new", len(report.new)),
        ("updated (new text, re-chunked)", len(report.updated)),
        ("metadata updated", len(report.metadata_updated)),
        ("unchanged", len(report.unchanged)),
        ("skipped", len(report.skipped)),
        ("failed", len(report.failed)),
    ):
        table.add_row(label, str(count))
    table.caption = (
        f"{report.chunks_embedded} chunks embedded, {report.chunks_deleted} old chunks removed"
    )
    console.print(table)
    _print_problems(console, "Skipped", "yellow", report.skipped)
    _print_problems(console, "Failed", "red", report.failed)


def _print_problems(
    console: Console, title: str, colour: str, problems: Sequence[RecordError]
) -> None:
    if not problems:
        return
    console.print(f"[bold {colour}]{title}:[/]")
    for problem in problems[:MAX_LISTED_PROBLEMS]:
        console.print(f"  • {escape(str(problem))}")
    if len(problems) > MAX_LISTED_PROBLEMS:
        console.print(f"  … and {len(problems) - MAX_LISTED_PROBLEMS} more")


def print_hits(query: str, hits: Sequence[Hit]) -> None:
    console = _console()
    if not hits:
        console.print(
            f"No papers match {query!r}. Try other words, or `paperbot stats` to check the index."
        )
        return
    table = Table(title=f"Results for {escape(query)!r}", show_lines=True)
    table.add_column("#", justify="right")
    for col in ("score", "paper", "best passage"):
        table.add_column(col)
    for hit in hits:
        paper = hit.paper
        when = paper.published.isoformat() if paper.published else "—"
        head = (
            f"[bold]{escape(paper.title)}[/]\n{paper.paper_id} · {when}\n{escape(paper.link or '')}"
        )
        table.add_row(str(hit.rank), _score_text(hit), head, escape(_snippet(hit.chunk.text)))
    console.print(table)


def _score_text(hit: Hit) -> str:
    parts = [f"{hit.score:.4f}"]
    if hit.dense_score is not None:
        parts.append(f"cos {hit.dense_score:.2f}")
    if hit.lexical_score is not None:
        parts.append(f"bm25 {hit.lexical_score:.1f}")
    return "\n".join(parts)


def _snippet(text: str, limit: int = 280) -> str:
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def print_papers(papers: Sequence[Paper]) -> None:
    console = _console()
    if not papers:
        console.print(
            "No papers yet. Ingest some: `paperbot ingest FILE` "
            "or `paperbot ingest --hf-date YYYY-MM-DD`."
        )
        return
    table = Table(title=f"{len(papers)} paper(s)")
    for col in ("id", "listed", "published", "source", "upvotes", "title"):
        table.add_column(col)
    for p in papers:
        table.add_row(
            p.paper_id,
            p.listed.isoformat() if p.listed else "—",
            p.published.isoformat() if p.published else "—",
            p.source,
            "" if p.upvotes is None else str(p.upvotes),
            escape(p.title),
        )
    console.print(table)


def print_paper(paper: Paper) -> None:
    lines = [
        f"[bold]id[/] {paper.paper_id}" + (f" (v{paper.version})" if paper.version else ""),
        f"[bold]authors[/] {escape(', '.join(paper.authors) or '—')}",
        f"[bold]listed[/] {paper.listed or '—'}   [bold]published[/] {paper.published or '—'}"
        f"   [bold]source[/] {paper.source}",
    ]
    if paper.categories:
        lines.append(f"[bold]categories[/] {', '.join(paper.categories)}")
    if paper.upvotes is not None:
        lines.append(f"[bold]upvotes[/] {paper.upvotes}   [bold]comments[/] {paper.comments or 0}")
    if paper.link:
        lines.append(f"[bold]link[/] {escape(paper.link)}")
    lines += ["", escape(paper.abstract)]
    _console().print(Panel("\n".join(lines), title=escape(paper.title), title_align="left"))


def print_stats(stats: dict[str, Any]) -> None:
    table = Table(title="paperbot index", show_header=False)
    table.add_column("what")
    table.add_column("value")
    for key in (
        "papers",
        "chunks",
        "vectors",
        "cached_embeddings",
        "earliest",
        "latest",
        "embedding_model",
        "vector_store",
        "collection",
        "generation",
    ):
        table.add_row(key.replace("_", " "), str(stats.get(key, "—")))
    for source, count in sorted(stats.get("by_source", {}).items()):
        table.add_row(f"  from {source}", str(count))
    ok = stats.get("in_step")
    table.add_row(
        "indexes in step", "[green]yes[/]" if ok else "[red]no — run `paperbot ingest` to repair[/]"
    )
    _console().print(table)


def print_retrieval_scores(table_rows: Sequence[RetrievalScores]) -> None:
    table = Table(title="Retrieval quality (paper level)")
    for col in ("mode", "kind", "questions", "MRR", "R@1", "R@5", "R@10"):
        table.add_column(col, justify="right" if col not in ("mode", "kind") else "left")
    for s in table_rows:
        table.add_row(
            s.mode,
            s.kind,
            str(s.questions),
            f"{s.mrr:.3f}",
            *(f"{s.recall(k):.3f}" for k in (1, 5, 10)),
        )
    _console().print(table)


# ---------------------------------------------------------------- answers
_STATUS_MARK = {
    "unsupported": " [yellow](weakly supported)[/]",
    "uncited": " [yellow](no source)[/]",
}


def print_answer(answer: Answer) -> None:
    console = _console()
    console.print(f"[dim]{escape(answer.label)}[/]")
    console.print()
    if answer.mode == "llm" and answer.sentences:
        for check in answer.sentences:
            console.print(escape(check.text) + _STATUS_MARK.get(check.status, ""))
    else:
        console.print(escape(answer.text))
    if answer.citations:
        console.print("\n[bold]Sources[/]")
        for c in answer.citations:
            link = f" — {escape(c.url)}" if c.url else f" ({c.paper_id})"
            console.print(f"  [{c.number}] {escape(c.title)}{link}")
            console.print(f"      [dim]“{escape(_snippet(c.quote, 240))}”[/]")
    if answer.suggestions:
        console.print("\n[bold]Closest papers[/]")
        for hit in answer.suggestions:
            console.print(f"  • {escape(hit.paper.title)} ({hit.paper.paper_id})")
    for flag in answer.flags:
        console.print(f"[yellow]⚠ {escape(flag)}[/]")
    console.print(f"\n[dim]{escape(_answer_footer(answer))}[/]")


def _answer_footer(answer: Answer) -> str:
    parts = [answer.model, f"{answer.timings_ms.get('total_ms', 0):.0f} ms"]
    if answer.tokens_in or answer.tokens_out:
        parts.append(f"{answer.tokens_in} tokens in / {answer.tokens_out} out")
        parts.append(f"≈ ${answer.cost_usd:.4f}")
    return " · ".join(parts)


# ---------------------------------------------------------------- summaries, digests, chat
def print_tldr(paper: Paper, summary: Summary) -> None:
    console = _console()
    console.print(f"[bold]{escape(paper.title)}[/]  [dim]{paper.paper_id}[/]")
    console.print(escape(summary.text))
    if summary.note:
        console.print(f"[yellow]• {escape(summary.note)}[/]")
    note = " (cached)" if summary.cached else ""
    console.print(
        f"[dim]TL;DR · {summary.mode}{note}{' · ' + escape(paper.link) if paper.link else ''}[/]"
    )


def print_digest(digest: Digest) -> None:
    console = _console()
    span = str(digest.start) if digest.start == digest.end else f"{digest.start} – {digest.end}"
    console.rule(f"Paper digest · {span} · {digest.paper_count} papers")
    console.print(escape(digest.overview))
    for group in digest.groups:
        console.print(f"\n[bold]{escape(group.name)}[/] ({len(group.papers)})")
        for item in group.papers:
            votes = f" ▲{item.paper.upvotes}" if item.paper.upvotes is not None else ""
            console.print(f"  • [bold]{escape(item.paper.title)}[/]{votes}")
            console.print(f"    {escape(item.tldr.text)}")
            if item.paper.link:
                console.print(f"    [dim]{escape(item.paper.link)}[/]")
    for note in digest.notes:
        console.print(f"[yellow]• {escape(note)}[/]")
    console.print(f"\n[dim]{digest.mode} · {digest.model}[/]")


def chat_banner() -> None:
    _console().print(
        "[bold]paperbot chat[/] — ask a question, follow up in the same conversation, "
        "or type /papers help. /new starts over, exit quits."
    )


def print_chat_reply(reply: Answer | Message) -> None:
    if isinstance(reply, tuple):
        _console().print(escape(reply[0]))
    else:
        print_answer(reply)


def print_answer_scores(rows: Sequence[AnswerScores], model: str) -> None:
    table = Table(title=f"Answer quality ({model})")
    for col in (
        "kind",
        "questions",
        "citation precision",
        "gold recall",
        "refusal accuracy",
        "mean ms",
    ):
        table.add_column(col, justify="left" if col == "kind" else "right")
    for row in rows:
        d = row.as_dict()
        table.add_row(
            str(d["kind"]),
            str(d["questions"]),
            *(_fmt(d.get(k)) for k in ("citation_precision", "gold_recall", "refusal_accuracy")),
            _fmt(d.get("mean_latency_ms"), "{:.0f}"),
        )
    console = _console()
    console.print(table)
    for row in rows:
        if row.kind == "all":
            for miss in row.misses[:10]:
                console.print(f"[yellow]• {escape(miss)}[/]")


def print_summary_scores(rows: Sequence[SummaryScores], split: str, docs: int) -> None:
    table = Table(title=f"ROUGE-1 F1 on ACLSum {split} ({docs} documents)")
    for col in ("aspect", "pairs", "lead-1 baseline", "TL;DR", "aspect summary"):
        table.add_column(col, justify="left" if col == "aspect" else "right")
    for row in rows:
        table.add_row(
            row.aspect,
            str(row.scored),
            f"{row.baseline_rouge1:.3f}",
            _versus(row.summary_rouge1, row.baseline_rouge1),
            _versus(row.aspect_rouge1, row.baseline_rouge1),
        )
    _console().print(table)
    _console().print(
        "[dim]TL;DR: paperbot's one-paper summary compared with every aspect; aspect summary: "
        "paperbot's extractive summary of that aspect. Green = beats the lead sentence.[/]"
    )


def _versus(value: float | None, baseline: float) -> str:
    if value is None:
        return "—"
    colour = "green" if value > baseline else "red"
    return f"[{colour}]{value:.3f}[/]"


def _fmt(value: Any, pattern: str = "{:.3f}") -> str:
    return "—" if value is None else pattern.format(value)


# ---------------------------------------------------------------- feeds
_FEED_STATUS_STYLE = {  # feeds list
    "ok": "green",
    "erroring": "yellow",
    "pending": "dim",
    "disabled": "dim",
    "never-succeeded": "red",
    "failing": "red",
}


def print_feeds(reports: Sequence[dict[str, Any]]) -> None:
    """`paperbot feeds list`: two lines per feed (reports as bot/slack/feeds.py feed_report):
    what and how often; status, last success, next poll and the last error."""
    console = _console()
    for r in reports:
        style = _FEED_STATUS_STYLE.get(r["status"], "")
        failed = r["failures"]
        status = r["status"] + (f" ({failed} failed poll{'s' * (failed > 1)})" if failed else "")
        waits = "" if r["waited_for"] else " · digests don't wait for it"
        console.print(
            f"[bold]{escape(r['name'])}[/]  {escape(r['what'])} · polled {escape(r['every'])}"
            f"{waits}"
        )
        parts = [f"[{style}]{status}[/]" if style else status]
        if r["last_success"]:
            seen = (
                f" ({r['last_seen']} seen, {r['last_new']} new)"
                if r["last_seen"] is not None
                else ""
            )
            parts.append(f"last success {_local(r['last_success'])}{seen}")
        if r["enabled"]:
            parts.append(f"next poll {_local(r['next_due']) if r['next_due'] else 'now'}")
        console.print("    " + " · ".join(parts))
        if r["last_error"]:
            console.print(f"    [red]last error:[/] {escape(r['last_error'])}")


def _local(stamp: str | None) -> str:
    """An ISO time from a report, in the local time zone ('—' when none)."""
    if not stamp:
        return "—"
    from datetime import datetime

    return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M")
