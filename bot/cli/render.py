"""Terminal rendering for the CLI (rich): tables, progress bars, reports. Pure output: the
commands call services and hand the results here.

Text that comes from input (feeds, questions, answers, file names, error messages) is never
parsed as Rich markup and never reaches the terminal with its control characters: it goes
through `safe` (for markup strings) or `plain` (for plain output), which show ESC, CR, C1
controls and bidi overrides as visible escapes (``\\x1b``) instead of obeying them.

Size: every terminal view of the CLI in one place, so the one escaping rule above covers all
of them; each function is a short, pure table or panel.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
# C0 controls but tab and newline, DEL, C1 controls, bidi embeddings/overrides/isolates.
_TERMINAL_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def plain(text: object) -> str:
    """``text`` made harmless for a terminal: control characters shown, not obeyed
    (ESC -> ``\\x1b``). For output that Rich does not parse (typer.echo, markup=False)."""
    return _TERMINAL_UNSAFE.sub(_shown, str(text))


def safe(text: object) -> str:
    """``text`` for a Rich markup string: `plain`, with its brackets escaped."""
    return escape(plain(text))


def _shown(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def _console() -> Console:
    return Console(highlight=False, emoji=False)  # ":smile:" in a title stays text


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


@contextmanager
def working(description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """A spinner (a bar when ``total`` is known) with the elapsed time on stderr while a long
    step runs; yields ``update(description=None, advance=0)``."""
    with progress() as bar:
        task = bar.add_task(safe(description), total=total)

        def update(text: str | None = None, advance: int = 0) -> None:
            if text:
                bar.update(task, description=safe(text))
            bar.update(task, advance=advance)

        yield update
        if total is None:
            bar.update(task, total=bar.tasks[task].completed)


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
        console.print(f"  • {safe(str(problem))}")
    if len(problems) > MAX_LISTED_PROBLEMS:
        console.print(f"  … and {len(problems) - MAX_LISTED_PROBLEMS} more")


def print_hits(query: str, hits: Sequence[Hit]) -> None:
    console = _console()
    if not hits:
        console.print(
            f"No papers match {safe(repr(query))}. Try other words, or `paperbot stats` to "
            "check the index."
        )
        return
    table = Table(title=f"Results for {safe(repr(query))}", show_lines=True)
    table.add_column("#", justify="right")
    for col in ("score", "paper", "best passage"):
        table.add_column(col)
    for hit in hits:
        paper = hit.paper
        when = paper.published.isoformat() if paper.published else "—"
        head = (
            f"[bold]{safe(paper.title)}[/]\n{safe(paper.paper_id)} · {when}\n"
            f"{safe(paper.link or '')}"
        )
        table.add_row(str(hit.rank), _score_text(hit), head, safe(_snippet(hit.chunk.text)))
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
            safe(p.paper_id),
            p.listed.isoformat() if p.listed else "—",
            p.published.isoformat() if p.published else "—",
            safe(p.source),
            "" if p.upvotes is None else str(p.upvotes),
            safe(p.title),
        )
    console.print(table)


def print_paper(paper: Paper) -> None:
    lines = [
        f"[bold]id[/] {safe(paper.paper_id)}" + (f" (v{paper.version})" if paper.version else ""),
        f"[bold]authors[/] {safe(', '.join(paper.authors) or '—')}",
        f"[bold]listed[/] {paper.listed or '—'}   [bold]published[/] {paper.published or '—'}"
        f"   [bold]source[/] {safe(paper.source)}",
    ]
    if paper.categories:
        lines.append(f"[bold]categories[/] {safe(', '.join(paper.categories))}")
    if paper.upvotes is not None:
        lines.append(f"[bold]upvotes[/] {paper.upvotes}   [bold]comments[/] {paper.comments or 0}")
    if paper.link:
        lines.append(f"[bold]link[/] {safe(paper.link)}")
    lines += ["", safe(paper.abstract)]
    _console().print(Panel("\n".join(lines), title=safe(paper.title), title_align="left"))


def _near(where: Any) -> Any:
    """A path under the current directory, relative to it (`paperbot-data/chroma`)."""
    from pathlib import Path

    path = Path(str(where))
    if not path.is_absolute():
        return where
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return where


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
        value = stats.get(key, "—")
        if key == "vector_store":
            value = _near(value)
        table.add_row(key.replace("_", " "), safe(value))
    for source, count in sorted(stats.get("by_source", {}).items()):
        table.add_row(f"  from {safe(source)}", str(count))
    ok = stats.get("in_step")
    if ok:
        verdict = "[green]yes[/]"
    elif not stats.get("papers") and stats.get("vectors"):  # vectors, but no papers
        verdict = (
            "[red]no — the state is empty but the vector index is not: `paperbot state check`[/]"
        )
    else:
        verdict = "[red]no — run `paperbot ingest` to repair[/]"
    table.add_row("indexes in step", verdict)
    _console().print(table)


def print_retrieval_scores(table_rows: Sequence[RetrievalScores]) -> None:
    table = Table(title="Retrieval quality (paper level)")
    for col in ("mode", "kind", "questions", "MRR", "R@1", "R@5", "R@10"):
        table.add_column(col, justify="right" if col not in ("mode", "kind") else "left")
    for s in table_rows:
        table.add_row(
            safe(s.mode),
            safe(s.kind),
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
    console.print(f"[dim]{safe(answer.label)}[/]")
    console.print()
    if answer.mode == "llm" and answer.sentences:
        for check in answer.sentences:
            console.print(safe(check.text) + _STATUS_MARK.get(check.status, ""))
    else:
        console.print(safe(answer.text))
    if answer.citations:
        console.print("\n[bold]Sources[/]")
        for c in answer.citations:
            link = f" — {safe(c.url)}" if c.url else f" ({safe(c.paper_id)})"
            console.print(f"  [{c.number}] {safe(c.title)}{link}")
            console.print(f"      [dim]“{safe(_snippet(c.quote, 240))}”[/]")
    if answer.suggestions:
        console.print("\n[bold]Closest papers[/]")
        for hit in answer.suggestions:
            console.print(f"  • {safe(hit.paper.title)} ({safe(hit.paper.paper_id)})")
    for flag in answer.flags:
        console.print(f"[yellow]⚠ {safe(flag)}[/]")
    console.print(f"\n[dim]{safe(_answer_footer(answer))}[/]")


def _answer_footer(answer: Answer) -> str:
    parts = [answer.model, f"{answer.timings_ms.get('total_ms', 0):.0f} ms"]
    if answer.tokens_in or answer.tokens_out:
        parts.append(f"{answer.tokens_in} tokens in / {answer.tokens_out} out")
        parts.append(f"≈ ${answer.cost_usd:.4f}")
    return " · ".join(parts)


# ---------------------------------------------------------------- summaries, digests, chat
def print_tldr(paper: Paper, summary: Summary) -> None:
    console = _console()
    console.print(f"[bold]{safe(paper.title)}[/]  [dim]{safe(paper.paper_id)}[/]")
    console.print(safe(summary.text))
    if summary.note:
        console.print(f"[yellow]• {safe(summary.note)}[/]")
    note = " (cached)" if summary.cached else ""
    console.print(
        f"[dim]TL;DR · {safe(summary.mode)}{note}"
        f"{' · ' + safe(paper.link) if paper.link else ''}[/]"
    )


def print_digest(digest: Digest) -> None:
    console = _console()
    span = str(digest.start) if digest.start == digest.end else f"{digest.start} – {digest.end}"
    count = f"{digest.paper_count} paper{'' if digest.paper_count == 1 else 's'}"
    console.rule(f"Paper digest · {safe(span)} · {count}")
    console.print(safe(digest.overview))
    for group in digest.groups:
        console.print(f"\n[bold]{safe(group.name)}[/] ({len(group.papers)})")
        for item in group.papers:
            votes = f" ▲{item.paper.upvotes}" if item.paper.upvotes is not None else ""
            console.print(f"  • [bold]{safe(item.paper.title)}[/]{votes}")
            console.print(f"    {safe(item.tldr.text)}")
            if item.paper.link:
                console.print(f"    [dim]{safe(item.paper.link)}[/]")
    for note in digest.notes:
        console.print(f"[yellow]• {safe(note)}[/]")
    console.print(f"\n[dim]{safe(digest.mode)} · {safe(digest.model)}[/]")


def chat_banner() -> None:
    _console().print(
        "[bold]paperbot chat[/] — ask a question, follow up in the same conversation, "
        "or type /papers help. /new starts over, exit quits."
    )


def print_chat_reply(reply: Answer | Message) -> None:
    if isinstance(reply, tuple):
        _console().print(safe(reply[0]))
    else:
        print_answer(reply)


def print_answer_scores(rows: Sequence[AnswerScores], model: str) -> None:
    table = Table(title=f"Answer quality ({safe(model)})")
    columns = (
        ("kind", "kind"),
        ("questions", "questions"),
        ("citation precision", "citation_precision"),
        ("gold recall", "gold_recall"),
        ("fact recall", "fact_recall"),
        ("refusal accuracy", "refusal_accuracy"),
        ("unsupported", "unsupported_sentence_rate"),
        ("llm", "llm"),
        ("fallbacks", "fallbacks"),
        ("errors", "errors"),
        ("mean ms", "mean_latency_ms"),
        ("max ms", "max_latency_ms"),
    )
    for title, _ in columns:
        table.add_column(title, justify="left" if title == "kind" else "right")
    for row in rows:
        d = row.as_dict()
        cells = []
        for _, key in columns:
            value = d.get(key)
            if key == "kind":
                cells.append(safe(value))
            elif key.endswith("_ms"):
                cells.append(_fmt(value, "{:.0f}"))
            elif isinstance(value, int) and not isinstance(value, bool):
                cells.append(str(value))
            else:
                cells.append(_fmt(value))
        table.add_row(*cells)
    console = _console()
    console.print(table)
    for row in rows:
        if row.kind == "all":
            for miss in row.misses[:10]:
                console.print(f"[yellow]• {safe(miss)}[/]")


def print_summary_scores(rows: Sequence[SummaryScores], split: str, docs: int) -> None:
    table = Table(title=f"ROUGE-1 F1 on ACLSum {safe(split)} ({docs} documents)")
    for col in ("aspect", "pairs", "lead-1 baseline", "TL;DR", "aspect summary"):
        table.add_column(col, justify="left" if col == "aspect" else "right")
    for row in rows:
        table.add_row(
            safe(row.aspect),
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
            f"[bold]{safe(r['name'])}[/]  {safe(r['what'])} · polled {safe(r['every'])}{waits}"
        )
        parts = [f"[{style}]{safe(status)}[/]" if style else safe(status)]
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
            console.print(f"    [red]last error:[/] {safe(r['last_error'])}")


def _local(stamp: str | None) -> str:
    """An ISO time from a report, in the local time zone ('—' when none)."""
    if not stamp:
        return "—"
    from datetime import datetime

    return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M")
