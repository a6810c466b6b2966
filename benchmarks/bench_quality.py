"""Retrieval quality: dev questions on the 30 sample papers, and ACLSum summaries as queries.

Target (from the project's issue): on the dev questions, hybrid MRR >= BM25-only MRR and
>= 0.95 (fresh index of the 30 sample papers, local MiniLM embedder).

The harder set: each ACLSum paper's three one-sentence summaries (challenge, approach, outcome)
are queries that should retrieve that paper, over an index of all 250 ACLSum + 30 sample
papers. Lexical, dense and hybrid with every fusion method the settings accept (weighted ones at
dense_weight 0.3 ... 0.7, RRF once) are compared: the evidence for the default `fusion` /
`dense_weight` settings, with a paired-bootstrap interval for each difference from the default.

    python benchmarks/bench_quality.py
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from answers.evaluate import (
    Question,
    RetrievalScores,
    evaluate_retrieval,
    load_questions,
)
from benchmarks.common import (
    DEV_QUESTIONS,
    SAMPLE_DATE,
    SAMPLE_PAGE,
    WORK,
    PhaseTimer,
    TimedEmbedder,
    acl_docs,
    fresh_dir,
    local_embedder,
    log,
    make_settings,
    md_table,
    save_results,
    verdict,
    write_jsonl,
)
from retrieval import Corpus, Hit
from retrieval.search import Mode
from retrieval.settings import RetrievalSettings
from retrieval.sources import load_path

MRR_TARGET = 0.95
ASPECTS = ("challenge", "approach", "outcome")
DENSE_WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)


def fusions() -> list[tuple[str, str, float]]:
    """(label, fusion, dense_weight) for every fusion method the settings accept.

    Weighted methods are tried at each of DENSE_WEIGHTS; rank fusion ignores the weight.
    """
    choices = get_args(RetrievalSettings.model_fields["fusion"].annotation)
    default_w = RetrievalSettings.model_fields["dense_weight"].default
    out: list[tuple[str, str, float]] = []
    for fusion in choices:
        if fusion == "rrf":
            out.append(("hybrid rrf", fusion, default_w))
        else:
            out += [(f"hybrid {fusion} w={w}", fusion, w) for w in DENSE_WEIGHTS]
    return out


FUSIONS = fusions()


def default_label() -> str:
    defaults = RetrievalSettings(_env_file=None)  # type: ignore[call-arg]
    for label, fusion, weight in FUSIONS:
        if fusion == defaults.fusion and (fusion == "rrf" or weight == defaults.dense_weight):
            return label
    return "?"


def evaluate_configs(
    data_dir: Path, embedder: Any, questions: list[Question]
) -> dict[str, list[RetrievalScores]]:
    """Scores per configuration: lexical, dense (fusion-independent), then each hybrid fusion."""
    results: dict[str, list[RetrievalScores]] = {}
    runs: list[tuple[str, Mode, dict[str, Any]]] = [
        ("lexical", "lexical", {}),
        ("dense", "dense", {}),
        *[(label, "hybrid", {"fusion": f, "dense_weight": w}) for label, f, w in FUSIONS],
    ]
    for label, mode, overrides in runs:
        corpus = Corpus(make_settings(data_dir, **overrides), embedder=embedder)
        results[label] = evaluate_retrieval(questions, searcher(corpus), modes=[mode])
        corpus.close()
    return results


def searcher(corpus: Corpus) -> Callable[[str, int, Mode], list[Hit]]:
    def search(query: str, k: int, mode: Mode) -> list[Hit]:
        return corpus.search(query, k, mode=mode)

    return search


def score_rows(results: dict[str, list[RetrievalScores]], default: str) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for label, table in results.items():
        name = f"{label} (default)" if label == default else label
        for s in table:
            rows.append([name, s.kind, s.questions, s.mrr, s.recall(1), s.recall(5), s.recall(10)])
    return rows


def as_json(results: dict[str, list[RetrievalScores]]) -> dict[str, Any]:
    return {
        label: [
            {
                "kind": s.kind,
                "questions": s.questions,
                "mrr": s.mrr,
                **{f"r@{k}": s.recall(k) for k in (1, 5, 10)},
            }
            for s in table
        ]
        for label, table in results.items()
    }


def delta_ci(
    results: dict[str, list[RetrievalScores]], label: str, default: str
) -> tuple[float, float, float]:
    """MRR of `label` minus the default's, with a 95% paired-bootstrap interval."""
    a = np.array(overall(results, label).reciprocal_ranks)
    b = np.array(overall(results, default).reciprocal_ranks)
    diff = a - b
    rng = np.random.default_rng(0)
    means = diff[rng.integers(0, len(diff), size=(2000, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


def overall(results: dict[str, list[RetrievalScores]], label: str) -> RetrievalScores:
    return next(s for s in results[label] if s.kind == "all")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-aclsum", action="store_true", help="dev questions only")
    args = parser.parse_args(argv)

    settings = make_settings(WORK / "quality" / "sample")
    timer = PhaseTimer()
    # Memoised query vectors: each query is embedded once, whatever the number of configs.
    embedder = TimedEmbedder(local_embedder(settings), timer, memo_queries=True)
    default = default_label()

    log("dev questions: fresh index of the 30 sample papers")
    fresh_dir(settings.data_dir)
    corpus = Corpus(settings, embedder=embedder)
    report = corpus.ingest(load_path(SAMPLE_PAGE, page_date=SAMPLE_DATE))
    corpus.close()
    dev_questions = load_questions(DEV_QUESTIONS)
    dev = evaluate_configs(settings.data_dir, embedder, dev_questions)
    result: dict[str, Any] = {
        "default": default,
        "dev": {"papers": len(report.new), "results": as_json(dev)},
    }

    acl: dict[str, list[RetrievalScores]] | None = None
    if not args.skip_aclsum:
        log("ACLSum: index of 250 ACLSum + 30 sample papers")
        acl_dir = fresh_dir(WORK / "quality" / "aclsum")
        docs = acl_docs()
        jsonl = write_jsonl(
            [{"title": d.title, "abstract": d.abstract} for d in docs],
            WORK / "quality" / "aclsum.jsonl",
        )
        corpus = Corpus(make_settings(acl_dir), embedder=embedder)
        n_papers = len(corpus.ingest(load_path(jsonl)).new)
        n_papers += len(corpus.ingest(load_path(SAMPLE_PAGE, page_date=SAMPLE_DATE)).new)
        n_chunks = corpus.state.count_chunks()
        corpus.close()
        questions = [
            Question(d.summaries[a], (d.title,), a)
            for d in docs
            for a in ASPECTS
            if a in d.summaries
        ]
        log(f"ACLSum: {len(questions)} summary queries x {2 + len(FUSIONS)} configurations")
        acl = evaluate_configs(acl_dir, embedder, questions)
        result["aclsum"] = {
            "papers": n_papers,
            "chunks": n_chunks,
            "queries": len(questions),
            "results": as_json(acl),
        }

    markdown = render(dev, acl, default, result)
    save_results("quality", result, markdown)
    print(markdown)
    return result


def render(
    dev: dict[str, list[RetrievalScores]],
    acl: dict[str, list[RetrievalScores]] | None,
    default: str,
    result: dict[str, Any],
) -> str:
    headers = ["configuration", "kind", "questions", "MRR", "R@1", "R@5", "R@10"]
    out = [
        f"### Retrieval quality: dev questions ({result['dev']['papers']} sample papers)",
        "",
        md_table(headers, score_rows(dev, default)),
        "",
    ]
    if acl is not None:
        info = result["aclsum"]
        overall_rows = []
        for label in acl:
            s = overall(acl, label)
            delta, low, high = delta_ci(acl, label, default)
            overall_rows.append(
                [
                    f"{label} (default)" if label == default else label,
                    s.mrr,
                    s.recall(1),
                    s.recall(5),
                    s.recall(10),
                    "–" if label == default else f"{delta:+.3f} [{low:+.3f}, {high:+.3f}]",
                ]
            )
        out += [
            f"### Retrieval quality: ACLSum summaries as queries ({info['queries']} queries, "
            f"{info['papers']} papers, {info['chunks']} chunks)",
            "",
            "All aspects together:",
            "",
            md_table(
                ["configuration", "MRR", "R@1", "R@5", "R@10", "ΔMRR vs default [95% CI]"],
                overall_rows,
            ),
            "",
            "MRR per aspect:",
            "",
            md_table(
                ["configuration", *ASPECTS],
                [
                    [
                        f"{label} (default)" if label == default else label,
                        *[next((s.mrr for s in acl[label] if s.kind == a), 0.0) for a in ASPECTS],
                    ]
                    for label in acl
                ],
            ),
            "",
        ]
        best = max(FUSIONS, key=lambda f: overall(acl, f[0]).mrr)[0]
        out.append(
            f"Best hybrid configuration on ACLSum by MRR: {best} "
            f"({overall(acl, best).mrr:.3f}); the default ({default}) has "
            f"{overall(acl, default).mrr:.3f}."
        )
        out.append("")
    hybrid, lexical = overall(dev, default).mrr, overall(dev, "lexical").mrr
    out.append(
        f"- Dev questions, hybrid MRR ≥ BM25-only MRR and ≥ {MRR_TARGET}: "
        f"{verdict(hybrid >= lexical and hybrid >= MRR_TARGET)} "
        f"(hybrid {hybrid:.3f}, BM25 {lexical:.3f}, dense {overall(dev, 'dense').mrr:.3f})"
    )
    return "\n".join(out)


if __name__ == "__main__":
    main()
