"""Flat records from JSON Lines, CSV and JSON lists: one bad record never stops the rest."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from typing import Any

import pytest

from retrieval.errors import SourceError
from retrieval.models import Paper, RecordError
from retrieval.sources import tabular

ABSTRACT = (
    "We propose a retrieval method that ranks papers by their abstracts and shows that it "
    "beats strong baselines on three benchmarks."
)


def _record(title: str, **extra: Any) -> dict[str, Any]:
    return {"title": title, "abstract": ABSTRACT, **extra}


def _csv(rows: list[dict[str, str]], header: list[str]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8-sig")  # with the BOM that Excel writes


def test_jsonl_bad_lines_become_record_errors() -> None:
    lines = [
        json.dumps(_record("First", authors="Ada Lovelace, Alan Turing and Grace Hopper")),
        '{"title": "broken", ',
        "",
        json.dumps(["not", "an", "object"]),
        json.dumps(_record("Latin-1 caf\u00e9"), ensure_ascii=False),
        json.dumps(_record("Last", published="2024-10-22T17:59:30Z", upvotes="12")),
    ]
    data = "\r\n".join(lines).encode("latin-1")  # one line in Latin-1, not UTF-8
    records = list(tabular.parse_jsonl(data, origin="papers.jsonl"))
    first, broken, not_object, latin, last = records
    assert isinstance(first, Paper)
    assert first.authors == ("Ada Lovelace", "Alan Turing", "Grace Hopper")
    assert first.source == "file"
    assert isinstance(broken, RecordError) and broken.record == "line 2"
    assert broken.reason.startswith("invalid JSON")
    assert isinstance(not_object, RecordError) and not_object.record == "line 4"
    assert "expected an object, got list" in not_object.reason
    assert isinstance(latin, RecordError) and latin.record == "line 5"
    assert "not valid UTF-8" in latin.reason
    assert isinstance(last, Paper)
    assert (last.published, last.upvotes) == (date(2024, 10, 22), 12)


def test_jsonl_invalid_record_is_named_with_its_line_and_title() -> None:
    data = json.dumps({"title": "No Abstract Here", "summary": "  "}) + "\n"
    [error] = tabular.parse_jsonl(data, origin="p.jsonl")
    assert isinstance(error, RecordError)
    assert error.record == 'line 1 ("No Abstract Here")'
    assert error.reason == "missing or empty abstract"


def test_ids_arxiv_id_is_checked_other_ids_are_ignored() -> None:
    records = [
        _record("Explicit", arxiv_id="2410.17243v3"),
        _record("Database key", id="row-17"),
        _record("Arxiv in id", id="arXiv:2410.16251"),
        _record("From url", url="https://arxiv.org/abs/1706.03762v7"),
        _record("Bad explicit", arxiv_id="row-18"),
    ]
    explicit, key, in_id, from_url, bad = tabular.parse_json_records(
        json.dumps(records), origin="r.json"
    )
    assert isinstance(explicit, Paper) and (explicit.arxiv_id, explicit.version) == (
        "2410.17243",
        3,
    )
    assert isinstance(key, Paper) and key.arxiv_id is None and key.paper_id.startswith("t:")
    assert isinstance(in_id, Paper) and in_id.arxiv_id == "2410.16251"
    assert isinstance(from_url, Paper) and from_url.arxiv_id == "1706.03762"
    assert isinstance(bad, RecordError) and "'row-18' is not an arXiv id" in bad.reason


def test_field_shapes() -> None:
    record = _record(
        "Shapes",
        summary="ignored because abstract is present",
        authors=[{"name": "A. Author"}, "B. Author"],
        categories="cs.CL; cs.IR",
        date="2024-10-22",
        comments=3.0,
    )
    [paper] = tabular.parse_json_records(json.dumps(record), origin="one.json")
    assert isinstance(paper, Paper)
    assert paper.abstract == ABSTRACT
    assert paper.authors == ("A. Author", "B. Author")
    assert paper.categories == ("cs.CL", "cs.IR")
    assert (paper.published, paper.comments) == (date(2024, 10, 22), 3)


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"published": "22/10/2024"}, "published '22/10/2024' is not an ISO date"),
        ({"upvotes": "lots"}, "upvotes must be a whole number"),
        ({"authors": 42}, "authors must be a list"),
        ({"title": 42}, "title must be text"),
    ],
)
def test_bad_field_values_are_record_errors(extra: dict[str, Any], reason: str) -> None:
    record = {"title": "T", "abstract": ABSTRACT, **extra}
    [error] = tabular.parse_json_records(json.dumps(record), origin="r.json")
    assert isinstance(error, RecordError) and reason in error.reason


def test_semicolon_separated_authors_keep_last_first_names() -> None:
    record = _record("Names", authors="Doe, Jane; Roe, Richard")
    [paper] = tabular.parse_json_records(json.dumps([record]), origin="r.json")
    assert isinstance(paper, Paper) and paper.authors == ("Doe, Jane", "Roe, Richard")


def test_json_records_not_a_list() -> None:
    with pytest.raises(SourceError, match="expected a JSON list of paper records, got str"):
        list(tabular.parse_json_records('"hello"', origin="r.json"))


def test_csv_huge_cell_and_missing_title_fail_alone() -> None:
    header = ["Title", "Summary", "authors", "published"]
    rows = [
        {"Title": "Good", "Summary": ABSTRACT, "authors": "A; B", "published": "2024-10-22"},
        {"Title": "Huge", "Summary": "x" * 100_000, "authors": "", "published": ""},
        {"Title": "", "Summary": ABSTRACT, "authors": "", "published": ""},
        {"Title": "Multi\nline cell", "Summary": ABSTRACT, "authors": "", "published": ""},
        {"Title": "Also good", "Summary": ABSTRACT, "authors": "", "published": ""},
    ]
    records = list(tabular.parse_csv(_csv(rows, header), origin="p.csv"))
    good, huge, untitled, multi, also_good = records
    assert isinstance(good, Paper) and good.authors == ("A", "B")
    assert isinstance(huge, RecordError) and huge.record == 'line 3 ("Huge")'
    assert "abstract is 100,000 characters; the limit is 20,000" in huge.reason
    assert isinstance(untitled, RecordError) and untitled.record == "line 4"
    assert untitled.reason == "missing title"
    assert isinstance(multi, Paper) and multi.title == "Multi line cell"
    assert isinstance(also_good, Paper)


def test_csv_missing_columns_lists_what_was_found() -> None:
    data = _csv([{"name": "x", "text": "y"}], ["name", "text"])
    with pytest.raises(
        SourceError, match=r"missing column\(s\) title, abstract.*found: name, text"
    ):
        list(tabular.parse_csv(data, origin="p.csv"))


def test_csv_empty_file() -> None:
    with pytest.raises(SourceError, match="empty CSV"):
        list(tabular.parse_csv(b"", origin="p.csv"))


def test_csv_non_utf8_byte_fails_only_its_row() -> None:
    rows = [
        {"title": "Caf\u00e9 paper", "abstract": ABSTRACT},
        {"title": "Fine", "abstract": ABSTRACT},
    ]
    data = _csv(rows, ["title", "abstract"]).replace("Caf\u00e9".encode(), b"Caf\xe9")
    bad, fine = tabular.parse_csv(data, origin="p.csv")
    assert isinstance(bad, RecordError) and "not valid UTF-8" in bad.reason
    assert isinstance(fine, Paper)
