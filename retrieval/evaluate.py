"""Retrieval metrics on a question file: MRR and Recall@k at the paper level."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from retrieval.errors import SourceError
from retrieval.models import Hit
from retrieval.normalize import title_key
from retrieval.search import MODES, Mode

RECALL_AT = (1, 5, 10)


@dataclass(frozen=True, slots=True)
class Question:
    question: str
    titles: tuple[str, ...]
    kind: str


@dataclass
class RetrievalScores:
    mode: str
    kind: str
    questions: int = 0
    reciprocal_ranks: list[float] = field(default_factory=list)
    recalls: dict[int, list[float]] = field(default_factory=lambda: {k: [] for k in RECALL_AT})

    @property
    def mrr(self) -> float:
        return (
            sum(self.reciprocal_ranks) / len(self.reciprocal_ranks)
            if self.reciprocal_ranks
            else 0.0
        )

    def recall(self, k: int) -> float:
        values = self.recalls[k]
        return sum(values) / len(values) if values else 0.0


def load_questions(path: Path) -> list[Question]:
    if not path.is_file():
        raise SourceError(f"Question file {path} does not exist.")
    questions: list[Question] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            questions.append(
                Question(row["question"], tuple(row.get("titles") or ()), row.get("kind", "single"))
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SourceError(f"{path}: line {number} is not a question record ({exc}).") from exc
    return questions


def score_ranking(
    ranked_titles: Sequence[str], gold: Sequence[str]
) -> tuple[float, dict[int, float]]:
    """Reciprocal rank of the first gold paper and the share of gold papers in the top k."""
    gold_keys = {title_key(t) for t in gold}
    keys = [title_key(t) for t in ranked_titles]
    first = next((i for i, key in enumerate(keys, start=1) if key in gold_keys), None)
    recalls = {k: len(gold_keys & set(keys[:k])) / len(gold_keys) for k in RECALL_AT}
    return (1.0 / first if first else 0.0), recalls


def evaluate_retrieval(
    questions: Sequence[Question],
    search: Callable[[str, int, Mode], list[Hit]],
    modes: Sequence[Mode] = MODES,
) -> list[RetrievalScores]:
    """Scores per mode, for each answerable kind and overall ('all')."""
    answerable = [q for q in questions if q.titles]
    kinds = sorted({q.kind for q in answerable})
    table: list[RetrievalScores] = []
    for mode in modes:
        per_kind = {kind: RetrievalScores(mode, kind) for kind in [*kinds, "all"]}
        for q in answerable:
            hits = search(q.question, max(RECALL_AT), mode)
            rr, recalls = score_ranking([h.paper.title for h in hits], q.titles)
            for bucket in (per_kind[q.kind], per_kind["all"]):
                bucket.questions += 1
                bucket.reciprocal_ranks.append(rr)
                for k, value in recalls.items():
                    bucket.recalls[k].append(value)
        table.extend(per_kind.values())
    return table
