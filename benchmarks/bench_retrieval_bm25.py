"""Hybrid retrieval against plain whole-paper BM25, side by side in one run (issue 11).

The baseline is Okapi BM25 (k1 1.2, b 0.75) over each paper's title + abstract as one
document, with no stemming and no stopwords: the bar "hybrid must be at least as good as"
on every evaluation set. Next to it: paperbot's chunk BM25, dense, and hybrid search at several
`paper_lexical_weight`s (0 = chunk-level lexical evidence only, as before issue 11).

- dev: the dev questions over a fresh index of the 30 sample papers;
- held-out: benchmarks/data/factoid_questions.jsonl (16 factoid questions on the sample papers)
  over the 250 ACLSum + 30 sample papers;
- aclsum: each ACLSum paper's three one-sentence summaries (challenge, approach, outcome) as
  queries over the 250 ACLSum + 30 sample papers.

    python benchmarks/bench_retrieval_bm25.py [--fresh]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from answers.evaluate import Question, evaluate_retrieval, load_questions
from benchmarks.answer_corpora import ANSWERS_WORK, corpus_dir
from benchmarks.common import (
    DEV_QUESTIONS,
    PhaseTimer,
    TimedEmbedder,
    acl_docs,
    local_embedder,
    log,
    make_settings,
    md_table,
    save_results,
    verdict,
)
from retrieval import Corpus, Hit, Paper
from retrieval.search import Mode

ASPECTS = ("challenge", "approach", "outcome")
SETS = ("dev", "held-out", "aclsum")
HELD_OUT = Path(__file__).resolve().parent / "data" / "factoid_questions.jsonl"
PAPER_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
_WORD = re.compile(r"\w+")


class PlainPaperBM25:
    """Okapi BM25 over title + abstract per paper: no stemming, no stopwords."""

    def __init__(self, papers: Sequence[Paper], k1: float = 1.2, b: float = 0.75) -> None:
        self.papers = list(papers)
        docs = [Counter(_WORD.findall(f"{p.title} {p.abstract}".lower())) for p in self.papers]
        lengths = np.array([sum(d.values()) for d in docs], dtype=float)
        df: Counter[str] = Counter(t for d in docs for t in d)
        n = len(docs)
        self.idf = {t: float(np.log(1 + (n - f + 0.5) / (f + 0.5))) for t, f in df.items()}
        self.docs, self.k1, self.b = docs, k1, b
        self.norm = k1 * (1 - b + b * lengths / lengths.mean())

    def search(self, query: str, k: int) -> list[Hit]:
        terms = _WORD.findall(query.lower())
        scores = np.zeros(len(self.docs))
        for i, doc in enumerate(self.docs):
            for t in terms:
                tf = doc.get(t, 0)
                if tf:
                    scores[i] += self.idf[t] * tf * (self.k1 + 1) / (tf + self.norm[i])
        order = np.argsort(-scores, kind="stable")[:k]
        return [_hit(self.papers[i], float(scores[i])) for i in order if scores[i] > 0]


def _hit(paper: Paper, score: float) -> Hit:
    from retrieval import Chunk

    chunk = Chunk(f"{paper.paper_id}#0", paper.paper_id, 0, paper.abstract, 0, paper.title)
    return Hit(paper=paper, chunk=chunk, score=score)


def configs() -> list[tuple[str, Mode, dict[str, Any]]]:
    return [
        ("BM25 chunks (paperbot lexical, paper weight 0)", "lexical", {"paper_lexical_weight": 0}),
        ("dense", "dense", {}),
        *[
            (f"hybrid, paper weight {w}", "hybrid", {"paper_lexical_weight": w})
            for w in PAPER_WEIGHTS
        ],
    ]


def evaluate(data_dir: Path, embedder: Any, questions: list[Question]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    corpus = Corpus(make_settings(data_dir), embedder=embedder)
    papers = corpus.state.list_papers()
    corpus.close()
    plain = PlainPaperBM25(papers)
    out["plain whole-paper BM25 (baseline)"] = _scores(
        evaluate_retrieval(questions, lambda q, k, mode: plain.search(q, k), modes=["lexical"])
    )
    for label, mode, overrides in configs():
        corpus = Corpus(make_settings(data_dir, **overrides), embedder=embedder)
        out[label] = _scores(evaluate_retrieval(questions, _searcher(corpus), modes=[mode]))
        corpus.close()
    return out


def _searcher(corpus: Corpus) -> Callable[[str, int, Mode], list[Hit]]:
    def search(query: str, k: int, mode: Mode) -> list[Hit]:
        return corpus.search(query, k, mode=mode)

    return search


def _scores(table: list[Any]) -> dict[str, Any]:
    return {
        s.kind: {"questions": s.questions, "mrr": s.mrr, "r@1": s.recall(1), "r@5": s.recall(5)}
        | {"rr": s.reciprocal_ranks}
        for s in table
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh", action="store_true", help="rebuild the indexes")
    args = parser.parse_args(argv)
    timer = PhaseTimer()
    embedder = TimedEmbedder(
        local_embedder(make_settings(ANSWERS_WORK / "unused")), timer, memo_queries=True
    )
    default_w = make_settings(ANSWERS_WORK / "unused").paper_lexical_weight
    log("dev questions over the 30 sample papers")
    dev = evaluate(
        corpus_dir("sample", embedder, fresh=args.fresh), embedder, load_questions(DEV_QUESTIONS)
    )
    acl_q = [
        Question(d.summaries[a], (d.title,), a)
        for d in acl_docs()
        for a in ASPECTS
        if a in d.summaries
    ]
    mixed = corpus_dir("mixed", embedder, fresh=args.fresh)
    log("held-out factoid questions over 250 ACLSum + 30 sample papers")
    held = evaluate(mixed, embedder, load_questions(HELD_OUT))
    log("ACLSum summaries over 250 ACLSum + 30 sample papers")
    acl = evaluate(mixed, embedder, acl_q)
    result = {"default_paper_weight": default_w, "dev": dev, "held-out": held, "aclsum": acl}
    markdown = render(result)
    save_results("retrieval_bm25", _without_rr(result), markdown)
    print(markdown)
    return result


def _without_rr(result: dict[str, Any]) -> dict[str, Any]:
    def strip(table: dict[str, Any]) -> dict[str, Any]:
        return {
            label: {k: {m: v for m, v in s.items() if m != "rr"} for k, s in kinds.items()}
            for label, kinds in table.items()
        }

    return {**result, **{name: strip(result[name]) for name in SETS}}


def render(result: dict[str, Any]) -> str:
    default = f"hybrid, paper weight {result['default_paper_weight']}"
    baseline = "plain whole-paper BM25 (baseline)"
    out: list[str] = []
    rows = []
    for label in result["dev"]:
        name = f"**{label} (default)**" if label == default else label
        row: list[Any] = [name]
        for set_name in SETS:
            s = result[set_name][label]["all"]
            row += [s["mrr"], s["r@1"]]
        rows.append(row)
    headers = ["configuration"]
    for set_name in SETS:
        headers += [f"{set_name} MRR", f"{set_name} R@1"]
    out += [md_table(headers, rows), ""]
    checks = []
    for name in SETS:
        h, b = result[name][default]["all"], result[name][baseline]["all"]
        ok = h["mrr"] >= b["mrr"] and h["r@1"] >= b["r@1"]
        delta = np.array(h["rr"]) - np.array(b["rr"])
        rng = np.random.default_rng(0)
        means = delta[rng.integers(0, len(delta), size=(2000, len(delta)))].mean(axis=1)
        low, high = np.percentile(means, [2.5, 97.5])
        checks.append(
            f"- {name}: default hybrid ≥ plain whole-paper BM25 (MRR and R@1): {verdict(ok)} "
            f"(MRR {h['mrr']:.3f} vs {b['mrr']:.3f}, ΔMRR {delta.mean():+.3f} "
            f"[{low:+.3f}, {high:+.3f}]; R@1 {h['r@1']:.3f} vs {b['r@1']:.3f})"
        )
    out += checks
    return "\n".join(out)


if __name__ == "__main__":
    main()
