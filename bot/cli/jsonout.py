"""JSON shapes of `--json` output (hits, answers, retrieval scores, errors): pure functions,
and `json_errors`, which makes a --json command answer an error in JSON too."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import typer

if TYPE_CHECKING:
    from answers.evaluate import RetrievalScores
    from answers.models import Answer
    from retrieval import Hit, IngestReport

F = TypeVar("F", bound=Callable[..., Any])


def error_json(exc: BaseException) -> dict[str, str]:
    """An error as JSON: its one line, credentials redacted (options.error_line)."""
    from bot.cli.options import error_line

    return {"error": error_line(exc)}


def json_errors(command: F, debug: Callable[[], bool] = lambda: False) -> F:
    """``command`` (a CLI command), which, when it has a ``--json`` option (``as_json``) and
    was given it, prints a project error (PaperbotError, or the ValueError the CLI shows
    without a traceback) as ``{"error": "..."}`` on standard output and exits 1, instead of
    leaving standard output empty. With --debug the error is raised on as well (traceback)."""
    if "as_json" not in inspect.signature(command).parameters:
        return command

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        from retrieval import PaperbotError

        try:
            return command(*args, **kwargs)
        except (PaperbotError, ValueError) as exc:
            if not kwargs.get("as_json"):
                raise
            typer.echo(json.dumps(error_json(exc)))
            if debug():
                raise
            raise typer.Exit(1) from None

    return run  # type: ignore[return-value]


def hit_json(hit: Hit) -> dict[str, Any]:
    return {
        "rank": hit.rank,
        "score": hit.score,
        "dense_score": hit.dense_score,
        "lexical_score": hit.lexical_score,
        "paper": hit.paper.model_dump(mode="json", exclude={"abstract"}),
        "link": hit.paper.link,
        "chunk_id": hit.chunk.chunk_id,
        "passage": hit.chunk.text,
    }


def scores_json(s: RetrievalScores) -> dict[str, Any]:
    return {
        "mode": s.mode,
        "kind": s.kind,
        "questions": s.questions,
        "mrr": round(s.mrr, 4),
        **{f"recall@{k}": round(s.recall(k), 4) for k in s.recalls},
    }


def answer_json(answer: Answer) -> dict[str, Any]:
    return {
        "question": answer.question,
        "standalone_question": answer.standalone_question,
        "mode": answer.mode,
        "label": answer.label,
        "text": answer.text,
        "citations": [
            {
                "number": c.number,
                "paper_id": c.paper_id,
                "title": c.title,
                "url": c.url,
                "quote": c.quote,
                "support": c.support,
            }
            for c in answer.citations
        ],
        "sentences": [
            {
                "text": s.text,
                "citations": list(s.citations),
                "support": s.support,
                "status": s.status,
                "missing": list(s.missing),
            }
            for s in answer.sentences
        ],
        "verified": answer.verified,
        "fallback": answer.fallback,
        "partial": answer.partial,
        "removed": [
            {"text": s.text, "status": s.status, "missing": list(s.missing)} for s in answer.removed
        ],
        "flags": answer.flags,
        "suggestions": [
            {"paper_id": h.paper.paper_id, "title": h.paper.title, "url": h.paper.link}
            for h in answer.suggestions
        ],
        "retrieval": [
            {
                "paper_id": h.paper.paper_id,
                "score": h.score,
                "dense_score": h.dense_score,
                "lexical_coverage": h.lexical_coverage,
            }
            for h in answer.hits
        ],
        "model": answer.model,
        "tokens_in": answer.tokens_in,
        "tokens_out": answer.tokens_out,
        "cost_usd": answer.cost_usd,
        "timings_ms": answer.timings_ms,
    }


def ingest_json(report: IngestReport | None, failed_feeds: list[str]) -> dict[str, Any]:
    """`paperbot ingest --json`: counts per outcome, the chunks, every problem (for cron)."""

    def problems(items: Any) -> list[dict[str, str]]:
        return [{"source": p.source, "record": p.record, "reason": p.reason} for p in items]

    if report is None:  # nothing was read
        counts = dict.fromkeys(("new", "updated", "metadata_updated", "unchanged"), 0)
        return {
            "papers": {**counts, "skipped": 0, "failed": 0},
            "chunks_embedded": 0,
            "chunks_deleted": 0,
            "listings_added": 0,
            "skipped": [],
            "failed": [],
            "failed_feeds": failed_feeds,
        }
    return {
        "papers": {
            "new": len(report.new),
            "updated": len(report.updated),
            "metadata_updated": len(report.metadata_updated),
            "unchanged": len(report.unchanged),
            "skipped": len(report.skipped),
            "failed": len(report.failed),
        },
        "chunks_embedded": report.chunks_embedded,
        "chunks_deleted": report.chunks_deleted,
        "listings_added": report.listings_added,
        "skipped": problems(report.skipped),
        "failed": problems(report.failed),
        "failed_feeds": failed_feeds,
    }
