"""load_path: the format from the extension and content, and clear errors for bad paths."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest

from retrieval.errors import SourceError
from retrieval.models import Paper
from retrieval.sources import FORMATS, detect_format, load_path

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "sample"
PAYLOADS = Path(__file__).resolve().parent / "payloads"
ABSTRACT = "A method for finding papers that answers questions with citations, tested well."


def _papers(path: Path, **kwargs: object) -> list[Paper]:
    records = list(load_path(path, **kwargs))  # type: ignore[arg-type]
    assert all(isinstance(r, Paper) for r in records), records
    return [r for r in records if isinstance(r, Paper)]


def test_page_text_sample() -> None:
    papers = _papers(SAMPLES / "daily_papers_page.txt", page_date=date(2025, 5, 16))
    assert len(papers) == 30
    assert papers[0].published == date(2025, 5, 16)


def test_hf_api_json_is_told_apart_from_flat_records(tmp_path: Path) -> None:
    api = _papers(SAMPLES / "hf_daily_papers_api_sample.json")
    assert [p.source for p in api] == ["hf_api", "hf_api"]
    flat = tmp_path / "records.json"
    flat.write_text(json.dumps([{"title": "Flat", "summary": ABSTRACT}]))
    [paper] = _papers(flat)
    assert paper.source == "file" and paper.title == "Flat"


def test_jsonl_csv_and_atom(tmp_path: Path) -> None:
    jsonl = tmp_path / "papers.ndjson"
    jsonl.write_text(json.dumps({"title": "Line", "abstract": ABSTRACT}) + "\n")
    table = tmp_path / "papers.csv"
    table.write_text(f'title,abstract\nRow,"{ABSTRACT}"\n')
    assert [p.title for p in _papers(jsonl)] == ["Line"]
    assert [p.title for p in _papers(table)] == ["Row"]
    assert len(_papers(PAYLOADS / "arxiv_two_entries.xml")) == 2


def test_unknown_extension_is_sniffed(tmp_path: Path) -> None:
    atom = tmp_path / "feed.dat"
    shutil.copy(PAYLOADS / "arxiv_two_entries.xml", atom)
    assert detect_format(atom, atom.read_bytes()) == "arxiv"
    lines = tmp_path / "export.log"
    lines.write_text(json.dumps({"title": "A", "abstract": ABSTRACT}) + "\n")
    assert detect_format(lines, lines.read_bytes()) == "jsonl"
    pretty = tmp_path / "export.out"
    pretty.write_text(json.dumps({"title": "A", "abstract": ABSTRACT}, indent=2))
    assert detect_format(pretty, pretty.read_bytes()) == "json"
    assert len(_papers(pretty)) == 1


def test_explicit_format_wins(tmp_path: Path) -> None:
    page = tmp_path / "notes.md"
    shutil.copy(SAMPLES / "daily_papers_page.txt", page)
    assert len(_papers(page, fmt="page")) == 30


def test_unknown_format_is_a_source_error(tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# just some notes\n")
    with pytest.raises(SourceError, match=r"Cannot tell the format of .*notes\.md.*'\.md'"):
        load_path(notes)
    with pytest.raises(SourceError, match="Unknown format 'pdf'; choose one of page, hf_api"):
        load_path(notes, fmt="pdf")
    assert "page" in FORMATS


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"nope\.json: no such file"):
        load_path(tmp_path / "nope.json")
    with pytest.raises(SourceError, match="is a directory"):
        load_path(tmp_path)


def test_malformed_json_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('[{"title": "x",}]')
    with pytest.raises(SourceError, match=r"broken\.json is not valid JSON: .* line 1, column 16"):
        load_path(broken)
