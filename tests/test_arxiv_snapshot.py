"""arXiv's Kaggle metadata snapshot, read streaming: field mapping, filters, bad lines,
compressed files, and the resumable position."""

from __future__ import annotations

import json
import zipfile
from datetime import date
from itertools import islice
from pathlib import Path

import pytest

from retrieval.errors import SourceError
from retrieval.models import Paper, RecordError
from retrieval.sources.arxiv_snapshot import SnapshotFilter, SnapshotReader, parse_categories
from tests.support.snapshots import write_snapshot

OLD_STYLE = {
    "id": "hep-th/9901001",
    "submitter": "Jane Doe",
    "authors": "J. Doe and R. Roe",
    "title": "  A  Note on\n Strings ",
    "comments": "10 pages",
    "journal-ref": "Phys.Lett. B450 (1999) 1",
    "doi": "10.1016/S0370-2693(99)00001-1",
    "report-no": None,
    "categories": "hep-th gr-qc",
    "license": None,
    "abstract": "  We study strings on curved backgrounds and find\nthree new solutions.\n",
    "versions": [
        {"version": "v1", "created": "Fri, 1 Jan 1999 19:18:42 GMT"},
        {"version": "v2", "created": "Mon, 15 Feb 1999 10:00:00 GMT"},
    ],
    "update_date": "2008-11-13",
    "authors_parsed": [["Doe", "Jane", ""], ["Roe", "Richard", "Jr"]],
}


def _write(path: Path, *lines: object) -> Path:
    path.write_text(
        "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines),
        encoding="utf-8",
    )
    return path


def _papers(reader: SnapshotReader) -> list[Paper]:
    return [r for r in reader if isinstance(r, Paper)]


def test_a_record_maps_like_the_arxiv_feed(tmp_path: Path) -> None:
    path = _write(tmp_path / "snap.json", OLD_STYLE)
    (paper,) = _papers(SnapshotReader(path))
    assert paper.paper_id == paper.arxiv_id == "hep-th/9901001"
    assert paper.version == 2  # the last version listed
    assert paper.title == "A Note on Strings"
    assert paper.abstract == "We study strings on curved backgrounds and find three new solutions."
    assert paper.authors == ("Jane Doe", "Richard Roe Jr")
    assert paper.categories == ("hep-th", "gr-qc")
    assert paper.source == "arxiv"
    # published: the first version's day; updated: the last version's; update_date unused
    assert paper.published == date(1999, 1, 1)
    assert paper.updated == date(1999, 2, 15)
    # Friday 14:18 New York time is after the 14:00 cutoff: announced on Tuesday
    assert paper.listed == date(1999, 1, 5)
    assert paper.url == "https://arxiv.org/abs/hep-th/9901001v2"
    assert paper.pdf_url == "https://arxiv.org/pdf/hep-th/9901001v2"


def test_authors_fall_back_to_the_authors_string(tmp_path: Path) -> None:
    record = {**OLD_STYLE, "authors_parsed": None, "authors": "A. One, B. Two and C. Three"}
    (paper,) = _papers(SnapshotReader(_write(tmp_path / "s.json", record)))
    assert paper.authors == ("A. One", "B. Two", "C. Three")


def test_filters_by_category_prefix_day_and_limit(tmp_path: Path) -> None:
    path = write_snapshot(tmp_path / "snap.json", 40)
    everything = _papers(SnapshotReader(path))
    assert len(everything) == 40
    cl = _papers(SnapshotReader(path, filters=SnapshotFilter(parse_categories("cs.CL"))))
    assert cl and all("cs.CL" in p.categories for p in cl)
    cs = _papers(SnapshotReader(path, filters=SnapshotFilter(("cs.",))))
    assert len(cs) == 30  # every 4th paper is math.ST stat.TH
    some_day = everything[10].published
    assert some_day is not None
    window = SnapshotFilter(since=some_day, until=some_day)
    on_day = _papers(SnapshotReader(path, filters=window))
    assert on_day and {p.published for p in on_day} == {some_day}
    reader = SnapshotReader(path, limit=5)
    assert len(_papers(reader)) == 5
    assert reader.counts.papers == 5


def test_a_category_filter_leaves_lines_out_before_decoding_them(tmp_path: Path) -> None:
    other = {**OLD_STYLE, "id": "hep-th/9901009"}
    path = _write(tmp_path / "snap.json", other, '{"categories": "hep-th", broken', OLD_STYLE)
    reader = SnapshotReader(path, filters=SnapshotFilter(("gr-qc",)))
    assert [p.paper_id for p in _papers(reader)] == ["hep-th/9901009", "hep-th/9901001"]
    assert (reader.counts.filtered, reader.counts.bad) == (1, 0)  # the broken line never read
    cs = SnapshotReader(path, filters=SnapshotFilter(("cs.",)))
    assert _papers(cs) == [] and (cs.counts.filtered, cs.counts.bad) == (3, 0)


def test_bad_lines_are_counted_and_the_rest_still_land(tmp_path: Path) -> None:
    no_abstract = {**OLD_STYLE, "id": "hep-th/9901002", "abstract": ""}
    no_versions = {**OLD_STYLE, "id": "hep-th/9901003", "versions": []}
    bad_id = {**OLD_STYLE, "id": "not an id"}
    huge = {**OLD_STYLE, "id": "hep-th/9901004", "abstract": "x" * 5000}
    path = _write(
        tmp_path / "snap.json",
        "{not json",
        "[1, 2]",
        no_abstract,
        no_versions,
        bad_id,
        huge,
        "",
        OLD_STYLE,
    )
    reader = SnapshotReader(path, max_record_bytes=4096)
    out = list(reader)
    papers = [r for r in out if isinstance(r, Paper)]
    errors = [r for r in out if isinstance(r, RecordError)]
    assert [p.paper_id for p in papers] == ["hep-th/9901001"]
    assert reader.counts.bad == len(errors) == 6
    reasons = " | ".join(e.reason for e in errors)
    assert "invalid JSON" in reasons and "expected an object" in reasons
    assert "missing or empty abstract" in reasons and "no versions" in reasons
    assert "not an arXiv id" in reasons and "PAPERBOT_MAX_RECORD_BYTES" in reasons
    assert any("hep-th/9901002" in e.record for e in errors)  # the arXiv id names the line


def test_gzip_and_zip_read_the_same_papers(tmp_path: Path) -> None:
    plain = write_snapshot(tmp_path / "snap.json", 12)
    gz = write_snapshot(tmp_path / "snap.json.gz", 12)
    zipped = tmp_path / "snap.zip"
    with zipfile.ZipFile(zipped, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(plain, "arxiv-metadata-oai-snapshot.json")
    expected = _papers(SnapshotReader(plain))
    assert _papers(SnapshotReader(gz)) == expected
    reader = SnapshotReader(zipped)
    assert _papers(reader) == expected
    assert reader.offset == plain.stat().st_size


def test_a_zip_of_several_files_is_refused(tmp_path: Path) -> None:
    zipped = tmp_path / "two.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("a.json", "{}\n")
        archive.writestr("b.json", "{}\n")
    with pytest.raises(SourceError, match="holds 2 files"):
        list(SnapshotReader(zipped))


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        SnapshotReader(tmp_path / "nope.json")


@pytest.mark.parametrize("name", ["snap.json", "snap.json.gz"])
def test_resume_continues_after_the_stored_position(tmp_path: Path, name: str) -> None:
    path = write_snapshot(tmp_path / name, 30)
    first = SnapshotReader(path)
    head = [r for r in islice(iter(first), 12) if isinstance(r, Paper)]
    saved = first.position()
    second = SnapshotReader(path)
    assert second.cursor_key == first.cursor_key
    second.resume(saved)
    rest = _papers(second)
    everything = _papers(SnapshotReader(path))
    assert head + rest == everything
    # --restart, other filters and another file ignore the stored position
    again = SnapshotReader(path, restart=True)
    again.resume(saved)
    assert len(_papers(again)) == 30
    other = SnapshotReader(path, filters=SnapshotFilter(("cs.",)))
    assert other.cursor_key != first.cursor_key
    rewritten = write_snapshot(tmp_path / f"new-{name}", 31)
    assert SnapshotReader(rewritten).cursor_key != first.cursor_key
    stranger = SnapshotReader(rewritten)
    stranger.resume(saved)
    assert stranger.offset == 0
