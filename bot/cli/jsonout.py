"""JSON shapes of `--json` output (hits, answers, retrieval scores): pure functions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from answers.evaluate import RetrievalScores
    from answers.models import Answer
    from retrieval import Hit


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
            }
            for s in answer.sentences
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
