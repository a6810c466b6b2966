"""Synthetic arXiv metadata snapshots (the Kaggle JSON Lines shape) from real abstracts, for the
bulk-ingest tests and benchmarks/bench_bulk_ingest.py.

The 250 ACLSum abstracts, repeated with distinct new-style ids, a variant number in the title and
sentences rotated, so every paper is distinct text; dates walk forward a few minutes per paper
from 2023-01-02, categories rotate through cs.CL / cs.LG / cs.CV / math.ST.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from retrieval import split_sentences
from tests.support.corpora import aclsum_records

CATEGORIES = ("cs.CL cs.LG", "cs.LG stat.ML", "cs.CV", "math.ST stat.TH")
START = datetime(2023, 1, 2, 9, 0, tzinfo=UTC)


def snapshot_record(
    n: int, title: str, abstract: str, *, versions: int = 1, step_minutes: int = 7
) -> dict[str, Any]:
    """The n-th synthetic record: id 23MM.NNNNN, v1 created ``n * step_minutes`` after START."""
    created = START + timedelta(minutes=n * step_minutes)
    month = 1 + (n // 50_000) % 12
    return {
        "id": f"23{month:02d}.{n % 100_000:05d}",
        "submitter": "A. Submitter",
        "authors": "Ada Lovelace, Alan Turing and Grace Hopper",
        "title": title,
        "comments": "8 pages",
        "journal-ref": None,
        "doi": None,
        "report-no": None,
        "categories": CATEGORIES[n % len(CATEGORIES)],
        "license": "http://creativecommons.org/licenses/by/4.0/",
        "abstract": "  " + abstract + "\n",
        "versions": [
            {
                "version": f"v{v + 1}",
                "created": format_datetime(created + timedelta(days=3 * v), usegmt=True),
            }
            for v in range(versions)
        ],
        "update_date": (created + timedelta(days=3 * (versions - 1))).date().isoformat(),
        "authors_parsed": [
            ["Lovelace", "Ada", ""],
            ["Turing", "Alan", ""],
            ["Hopper", "Grace", ""],
        ],
    }


def records(n_papers: int) -> Iterator[dict[str, Any]]:
    base = aclsum_records()
    for n in range(n_papers):
        record = base[n % len(base)]
        variant = n // len(base)
        sentences = split_sentences(record["abstract"])
        shift = variant % max(1, len(sentences))
        abstract = " ".join(sentences[shift:] + sentences[:shift])
        title = record["title"] if not variant else f"{record['title']} (variant {variant})"
        yield snapshot_record(n, title, abstract)


def write_snapshot(path: Path, n_papers: int, *, extra_lines: tuple[str, ...] = ()) -> Path:
    """Write ``n_papers`` records (gzip when the name ends in .gz), then ``extra_lines`` as is."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as out:
        for record in records(n_papers):
            out.write(json.dumps(record) + "\n")
        for line in extra_lines:
            out.write(line + "\n")
    return path


def spy_parse_workers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that gets the worker count of every parse-worker pool started from now on (a test
    asserts that workers really parsed, not the reader in process)."""
    from retrieval.sources.snapshot_workers import ParseWorkers

    started: list[int] = []
    real_start = ParseWorkers._started

    def spy(self: ParseWorkers) -> Any:
        started.append(self.workers)
        return real_start(self)

    monkeypatch.setattr(ParseWorkers, "_started", spy)
    return started
