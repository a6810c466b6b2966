"""Offline (extractive) answers and the refusal gate on a corpus that grew (issue 11).

Corpora (benchmarks/answer_corpora.py): ``sample`` (the 30 sample papers), ``mixed`` (the same
+ the 250 ACLSum abstracts), ``acl`` (the 250 ACLSum abstracts alone: one domain).

Question sets:
- dev: data/sample/dev_questions.jsonl; the facts its single-paper questions ask for are
  regular expressions in benchmarks/data/dev_facts.jsonl;
- held-out factoid: benchmarks/data/factoid_questions.jsonl (16 questions on the sample
  papers, most asking for a number, with a fact regex each);
- unanswerable, grown corpus: benchmarks/data/unanswerable_mixed.jsonl (named benchmarks,
  datasets and settings no indexed abstract mentions, in the sample papers' vocabulary);
- unanswerable, one domain: benchmarks/data/unanswerable_aclsum.jsonl (NLP questions about
  datasets, languages and tasks no ACLSum abstract mentions), against ACLSum's own summary
  sentences as answerable queries over the same corpus (750 queries: false refusals).

1. Answer quality: extractive answers through `QAService` (no LLM) on each set: fact recall
   (the answer text matches the fact regex), citation precision, gold recall, refusals,
   latency.
2. Refusal calibration: every question's gate signals (best lexical coverage, best cosine,
   distinctive terms in no retrieved paper), swept over the thresholds; the precision/recall
   of "refuse" on the grown corpus (answerable: dev + held-out factoid + ACLSum summaries;
   unanswerable: dev + the grown-corpus set) and on the one-domain corpus.

    python benchmarks/bench_offline_answers.py [--fresh] [--skip-sweep]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from answers.evaluate import Question, load_questions
from answers.qa import QAService
from benchmarks.answer_corpora import ANSWERS_WORK, corpus_dir
from benchmarks.common import (
    DEV_QUESTIONS,
    PhaseTimer,
    TimedEmbedder,
    acl_docs,
    answer_settings,
    local_embedder,
    log,
    make_settings,
    md_table,
    save_results,
    verdict,
)
from retrieval import Corpus, Hit, Relevance, title_key
from retrieval.search import unfound

DATA = Path(__file__).resolve().parent / "data"
ASPECTS = ("challenge", "approach", "outcome")
COVERAGES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
DENSES = (0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
DISTINCTIVE = (0.0, 0.005, 0.01, 0.02)
TOPIC_DENSES = (0.0, 0.4, 0.45, 0.5, 0.52, 0.55, 0.6, 1.0)


@dataclass(frozen=True, slots=True)
class Case:
    question: Question
    fact: str | None = None  # a regex the answer text must match


@dataclass
class AnswerRow:
    label: str
    questions: int = 0
    facts: int = 0
    facts_found: int = 0
    cited: int = 0
    cited_gold: int = 0
    gold_recalls: list[float] = field(default_factory=list)
    answerable: int = 0
    false_refusals: int = 0
    unanswerable: int = 0
    refused_unanswerable: int = 0
    latencies: list[float] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        def ratio(a: float, b: float) -> float | None:
            return round(a / b, 4) if b else None

        return {
            "label": self.label,
            "questions": self.questions,
            "fact_recall": ratio(self.facts_found, self.facts),
            "facts": self.facts,
            "citation_precision": ratio(self.cited_gold, self.cited),
            "gold_recall": ratio(sum(self.gold_recalls), len(self.gold_recalls)),
            "false_refusals": self.false_refusals,
            "answerable": self.answerable,
            "refused_unanswerable": self.refused_unanswerable,
            "unanswerable": self.unanswerable,
            "mean_latency_ms": ratio(sum(self.latencies), len(self.latencies)),
            "misses": self.misses,
        }


def load_cases(path: Path, facts: dict[str, str] | None = None) -> list[Case]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    facts = facts or {}
    return [
        Case(
            Question(r["question"], tuple(r.get("titles") or ()), r.get("kind", "single")),
            r.get("answer") or facts.get(r["question"]),
        )
        for r in rows
    ]


def dev_cases() -> list[Case]:
    facts = {
        r["question"]: r["answer"]
        for r in map(json.loads, (DATA / "dev_facts.jsonl").read_text().splitlines())
    }
    return [Case(q, facts.get(q.question)) for q in load_questions(DEV_QUESTIONS)]


def acl_summary_cases() -> list[Case]:
    return [
        Case(Question(d.summaries[a], (d.title,), a))
        for d in acl_docs()
        for a in ASPECTS
        if a in d.summaries
    ]


def answer_quality(label: str, qa: QAService, cases: Sequence[Case]) -> AnswerRow:
    row = AnswerRow(label)
    for case in cases:
        q = case.question
        start = time.perf_counter()
        answer = qa.answer(q.question)
        row.latencies.append((time.perf_counter() - start) * 1000)
        row.questions += 1
        refused = answer.mode == "refused"
        if not q.titles:
            row.unanswerable += 1
            row.refused_unanswerable += refused
            if not refused:
                row.misses.append(f"answered: {q.question}")
            continue
        row.answerable += 1
        if refused:
            row.false_refusals += 1
            row.misses.append(f"refused: {q.question}")
        cited = {title_key(c.title) for c in answer.citations}
        gold = {title_key(t) for t in q.titles}
        row.cited += len(cited)
        row.cited_gold += len(cited & gold)
        row.gold_recalls.append(len(cited & gold) / len(gold))
        if case.fact is not None:
            row.facts += 1
            found = re.search(case.fact, answer.text) is not None
            row.facts_found += found
            if not found:
                row.misses.append(f"fact /{case.fact}/ missing: {q.question}")
    return row


@dataclass(frozen=True, slots=True)
class Signals:
    summary: bool  # an ACLSum summary sentence (written from the full paper, not the abstract)
    answerable: bool
    coverage: float
    dense: float
    unfound: bool


def gate_signals(corpus: Corpus, cases: Sequence[Case]) -> list[Signals]:
    out = []
    for case in cases:
        hits: list[Hit] = corpus.search(case.question.question)
        out.append(
            Signals(
                case.question.kind in ASPECTS,
                bool(case.question.titles),
                max((h.lexical_coverage or 0.0 for h in hits), default=0.0),
                max((h.dense_score or -1.0 for h in hits), default=-1.0),
                any(unfound(h) for h in hits),
            )
        )
    return out


def sweep(signals: dict[float, list[Signals]]) -> list[dict[str, Any]]:
    """Precision / recall of "refuse" for every threshold combination."""
    rows = []
    for df, sig in signals.items():
        for cov in COVERAGES:
            for dense in DENSES:
                gate = Relevance(cov, dense)
                refused = [
                    s.unfound or not _accepts(gate, s) for s in sig
                ]  # the gate's rule on the best signals
                pairs = list(zip(refused, sig, strict=True))
                tp = sum(r and not s.answerable for r, s in pairs)
                fp = sum(r and s.answerable for r, s in pairs)
                fp_summaries = sum(r and s.answerable and s.summary for r, s in pairs)
                neg = sum(not s.answerable for s in sig)
                rows.append(
                    {
                        "distinctive_df": df,
                        "min_coverage": cov,
                        "min_dense": dense,
                        "refused": tp + fp,
                        "false_refusals": fp,
                        "false_refusals_summaries": fp_summaries,
                        "answerable": sum(s.answerable for s in sig),
                        "answerable_summaries": sum(s.answerable and s.summary for s in sig),
                        "unanswerable": neg,
                        "precision": tp / (tp + fp) if tp + fp else 1.0,
                        "recall": tp / neg if neg else 1.0,
                    }
                )
    return rows


def topic_sweep(
    names_only: list[Signals], with_topics: list[Signals], gate: Relevance
) -> list[dict[str, Any]]:
    """Precision / recall of "refuse" for every PAPERBOT_REFUSAL_TOPIC_MAX_DENSE: a question
    with a lower-case topic no paper mentions (``with_topics``: the topic check always on)
    is refused when its best cosine is below the threshold."""
    rows = []
    for limit in TOPIC_DENSES:
        refused = [
            n.unfound or (t.unfound and t.dense < limit) or not _accepts(gate, n)
            for n, t in zip(names_only, with_topics, strict=True)
        ]
        pairs = list(zip(refused, names_only, strict=True))
        tp = sum(r and not s.answerable for r, s in pairs)
        fp = sum(r and s.answerable for r, s in pairs)
        neg = sum(not s.answerable for s in names_only)
        rows.append(
            {
                "topic_max_dense": limit,
                "refused": tp + fp,
                "false_refusals": sum(r and s.answerable and not s.summary for r, s in pairs),
                "false_refusals_summaries": sum(r and s.answerable and s.summary for r, s in pairs),
                "unanswerable_refused": tp,
                "unanswerable": neg,
                "precision": tp / (tp + fp) if tp + fp else 1.0,
                "recall": tp / neg if neg else 1.0,
            }
        )
    return rows


def _accepts(gate: Relevance, s: Signals) -> bool:
    return gate.accepts(s.coverage, s.dense)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh", action="store_true", help="rebuild the indexes")
    parser.add_argument("--skip-sweep", action="store_true", help="answers only")
    parser.add_argument("--sweep-only", action="store_true", help="the threshold sweeps only")
    args = parser.parse_args(argv)
    settings = make_settings(ANSWERS_WORK / "unused")
    embedder = TimedEmbedder(local_embedder(settings), PhaseTimer(), memo_queries=True)
    dirs = {n: corpus_dir(n, embedder, fresh=args.fresh) for n in ("sample", "mixed", "acl")}
    dev = dev_cases()
    held = load_cases(DATA / "factoid_questions.jsonl")
    unans_mixed = load_cases(DATA / "unanswerable_mixed.jsonl")
    unans_acl = load_cases(DATA / "unanswerable_aclsum.jsonl")
    acl_summaries = acl_summary_cases()

    runs = [
        ("dev factoid questions, 30 sample papers", "sample", [c for c in dev if c.fact]),
        ("dev questions, 30 sample papers", "sample", dev),
        ("dev questions, 30 sample + 250 ACLSum papers", "mixed", dev),
        ("held-out factoid questions, 30 sample + 250 ACLSum papers", "mixed", held),
        ("unanswerable (grown corpus), 30 sample + 250 ACLSum papers", "mixed", unans_mixed),
        ("unanswerable (one domain), 250 ACLSum papers", "acl", unans_acl),
        ("ACLSum summaries as questions, 250 ACLSum papers", "acl", acl_summaries),
    ]
    answers: list[AnswerRow] = []
    for label, name, cases in [] if args.sweep_only else runs:
        log(f"answers: {label} ({len(cases)} questions)")
        corpus = Corpus(make_settings(dirs[name]), embedder=embedder)
        answers.append(answer_quality(label, QAService(corpus, None, answer_settings()), cases))
        corpus.close()
        log(json.dumps({k: v for k, v in answers[-1].as_dict().items() if k != "misses"}))
    result: dict[str, Any] = {"answers": [a.as_dict() for a in answers]}

    if not args.skip_sweep:
        sweeps: dict[str, list[dict[str, Any]]] = {}
        for label, name, cases in [
            ("grown", "mixed", [*dev, *held, *unans_mixed, *acl_summary_cases()]),
            ("one domain", "acl", [*unans_acl, *acl_summaries]),
        ]:
            signals = {}
            for df in DISTINCTIVE:
                log(f"gate signals: {label}, distinctive df {df}")
                corpus = Corpus(
                    make_settings(dirs[name], refusal_distinctive_df=df), embedder=embedder
                )
                signals[df] = gate_signals(corpus, cases)
                corpus.close()
            sweeps[label] = sweep(signals)
        result["sweep"] = sweeps
        topics: dict[str, list[dict[str, Any]]] = {}
        defaults = make_settings(ANSWERS_WORK / "unused")
        for label, name, cases in [
            ("grown", "mixed", [*dev, *held, *unans_mixed, *acl_summaries]),
            ("one domain", "acl", [*unans_acl, *acl_summaries]),
        ]:
            runs_ = []
            for limit in (0.0, 1.0):  # the topic check off, and on whatever the cosine
                log(f"gate signals: {label}, topic check {'on' if limit else 'off'}")
                corpus = Corpus(
                    make_settings(dirs[name], refusal_topic_max_dense=limit), embedder=embedder
                )
                runs_.append(gate_signals(corpus, cases))
                corpus.close()
            topics[label] = topic_sweep(runs_[0], runs_[1], Relevance.from_settings(defaults))
        result["topic_sweep"] = topics
    defaults = make_settings(ANSWERS_WORK / "unused")
    result["defaults"] = {
        "min_coverage": defaults.refusal_min_coverage,
        "min_dense": defaults.refusal_min_dense,
        "distinctive_df": defaults.refusal_distinctive_df,
        "topic_max_dense": defaults.refusal_topic_max_dense,
    }
    markdown = render(result)
    save_results("offline_answers", result, markdown)
    print(markdown)
    return result


def render(result: dict[str, Any]) -> str:
    rows = []
    for a in result["answers"]:
        rows.append(
            [
                a["label"],
                a["questions"],
                _fmt(a["fact_recall"], f" ({a['facts']})" if a["facts"] else ""),
                _fmt(a["citation_precision"]),
                _fmt(a["gold_recall"]),
                f"{a['false_refusals']} / {a['answerable']}" if a["answerable"] else "–",
                f"{a['refused_unanswerable']} / {a['unanswerable']}" if a["unanswerable"] else "–",
                round(a["mean_latency_ms"] or 0),
            ]
        )
    out = [
        md_table(
            [
                "set",
                "questions",
                "fact recall",
                "citation precision",
                "gold recall",
                "false refusals",
                "unanswerable refused",
                "mean latency (ms)",
            ],
            rows,
        ),
        "",
    ]
    if not result["answers"]:
        return "\n".join([*out, *_render_sweeps(result)])
    dev_fact = result["answers"][0]
    dev_grown = result["answers"][2]
    out.append(
        "- Dev factoid questions, extractive: fact recall ≥ 0.90, gold recall 1.00, citation "
        f"precision ≥ 0.85: {verdict(_ok(dev_fact))} (fact recall {dev_fact['fact_recall']}, "
        f"gold recall {dev_fact['gold_recall']}, citation precision "
        f"{dev_fact['citation_precision']})"
    )
    for a in (dev_grown, result["answers"][4], result["answers"][5]):
        ok = a["false_refusals"] == 0 and a["refused_unanswerable"] == a["unanswerable"]
        out.append(
            f"- {a['label']}: every unanswerable question refused, no false refusal: {verdict(ok)}"
        )
    for a in result["answers"]:
        for miss in a["misses"][:12]:
            out.append(f"  - {a['label']}: {miss}")
    return "\n".join([*out, *_render_sweeps(result)])


def _render_sweeps(result: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if "sweep" in result:
        d = result["defaults"]
        for label, rows_ in result["sweep"].items():
            first = rows_[0]
            out += [
                "",
                f"Refusal precision / recall, {label} corpus ({first['unanswerable']} unanswerable, "
                f"{first['answerable']} answerable of which {first['answerable_summaries']} "
                "ACLSum summary sentences):",
                "",
            ]
            table = []
            for r in rows_:
                curve = r["min_dense"] == d["min_dense"]
                dense_row = r["distinctive_df"] == d["distinctive_df"] and (
                    r["min_coverage"] == d["min_coverage"]
                )
                if not (curve or dense_row):
                    continue
                is_default = curve and dense_row
                table.append(
                    [
                        ("**default** " if is_default else "") + f"{r['distinctive_df']}",
                        r["min_coverage"],
                        r["min_dense"],
                        r["refused"],
                        r["false_refusals"] - r["false_refusals_summaries"],
                        r["false_refusals_summaries"],
                        round(r["precision"], 3),
                        round(r["recall"], 3),
                    ]
                )
            out.append(
                md_table(
                    [
                        "distinctive df",
                        "min coverage",
                        "min cosine",
                        "refused",
                        "false refusals (questions)",
                        "false refusals (ACLSum summaries)",
                        "precision",
                        "recall",
                    ],
                    table,
                )
            )
    for label, rows_ in result.get("topic_sweep", {}).items():
        out += [
            "",
            f"Lower-case topics no paper mentions, {label} corpus: refuse when the best cosine "
            "is below PAPERBOT_REFUSAL_TOPIC_MAX_DENSE (0 = the check off):",
            "",
            md_table(
                [
                    "topic max cosine",
                    "unanswerable refused",
                    "false refusals (questions)",
                    "false refusals (ACLSum summaries)",
                    "precision",
                    "recall",
                ],
                [
                    [
                        (
                            "**default** "
                            if r["topic_max_dense"] == result["defaults"]["topic_max_dense"]
                            else ""
                        )
                        + str(r["topic_max_dense"]),
                        f"{r['unanswerable_refused']} / {r['unanswerable']}",
                        r["false_refusals"],
                        r["false_refusals_summaries"],
                        round(r["precision"], 3),
                        round(r["recall"], 3),
                    ]
                    for r in rows_
                ],
            ),
        ]
    return out


def _ok(a: dict[str, Any]) -> bool:
    return (
        (a["fact_recall"] or 0) >= 0.9
        and (a["gold_recall"] or 0) >= 1.0
        and (a["citation_precision"] or 0) >= 0.85
    )


def _fmt(value: float | None, suffix: str = "") -> str:
    return "–" if value is None else f"{value:.3f}{suffix}"


if __name__ == "__main__":
    main()
