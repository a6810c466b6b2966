"""The HF Daily Papers page text: the real sample plus small hand-made pages for edge cases."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from retrieval.models import Paper, RecordError
from retrieval.sources import page_text

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "daily_papers_page.txt"
TODAY = date(2026, 11, 26)
ABSTRACT = (
    "We study a problem that matters. Our method improves the state of the art by a wide "
    "margin on three benchmarks, and we release code and data so that others can build on it. "
    "Experiments show consistent gains across model sizes, languages and domains, with "
    "ablations that isolate each component of the approach."
)


def _parse(data: bytes | str, **kwargs: object) -> list[Paper | RecordError]:
    options: dict[str, object] = {"origin": "page.txt", "today": TODAY, **kwargs}
    return list(page_text.parse(data, **options))  # type: ignore[arg-type]


def _papers(records: list[Paper | RecordError]) -> list[Paper]:
    return [r for r in records if isinstance(r, Paper)]


def _errors(records: list[Paper | RecordError]) -> list[RecordError]:
    return [r for r in records if isinstance(r, RecordError)]


def test_sample_page_yields_thirty_papers_and_skips_the_chrome() -> None:
    records = _parse(SAMPLE.read_bytes())
    papers = _papers(records)
    assert _errors(records) == []
    assert len(papers) == 30
    assert papers[0].title == "GVGEN: Text-to-3D Generation with Volumetric Representation"
    assert papers[0].abstract.startswith("In recent years, 3D Gaussian splatting")
    assert papers[-1].title.startswith("SweetDreamer")
    titles = {p.title for p in papers}
    assert not titles & {"new", "Subscribe", "May 16", "byAK and the research community"}
    assert all(p.source == "hf_page" and p.paper_id.startswith("t:") for p in papers)


def test_year_less_date_is_the_most_recent_one_not_after_today() -> None:
    papers = _papers(_parse(SAMPLE.read_bytes()))
    assert {p.published for p in papers} == {date(2026, 5, 16)}
    earlier = _papers(_parse(SAMPLE.read_bytes(), today=date(2026, 5, 10)))
    assert earlier[0].published == date(2025, 5, 16)


def test_page_date_overrides_the_date_line() -> None:
    papers = _papers(_parse(SAMPLE.read_bytes(), page_date=date(2025, 1, 2)))
    assert {p.published for p in papers} == {date(2025, 1, 2)}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("May 16, 2025", date(2025, 5, 16)),
        ("2024-02-29", date(2024, 2, 29)),
        ("Sept 3", date(2026, 9, 3)),
    ],
)
def test_date_line_formats(line: str, expected: date) -> None:
    page = f"Subscribe\n\n{line}\n\nA Title\n\n{ABSTRACT}\n"
    [paper] = _parse(page)
    assert isinstance(paper, Paper)
    assert paper.published == expected


def test_html_entities_are_unescaped() -> None:
    page = f"new\n\nWhy Models Don&#39;t Listen\n\nIt&#39;s known. {ABSTRACT}\n"
    [paper] = _parse(page)
    assert isinstance(paper, Paper)
    assert paper.title == "Why Models Don't Listen"
    assert paper.abstract.startswith("It's known.")


def test_invalid_utf8_fails_only_the_affected_record() -> None:
    data = SAMPLE.read_bytes().replace(b"HeadSculpt for crafting", b"HeadSculpt \xff\xfe crafting")
    records = _parse(data)
    [error] = _errors(records)
    assert "not valid UTF-8" in error.reason
    assert error.record.startswith('record 2 ("HeadSculpt')
    assert error.source == "page.txt"
    assert len(_papers(records)) == 29


def test_unknown_chrome_before_the_first_paper_is_skipped() -> None:
    page = (
        "Sign in\n\nTrending papers this week\n\nJune 3\n\nFirst Paper Title\n\n"
        f"{ABSTRACT}\n\nSecond Paper Title\n\n{ABSTRACT}\n"
    )
    records = _parse(page)
    assert [p.title for p in _papers(records)] == ["First Paper Title", "Second Paper Title"]
    assert _errors(records) == []
    assert records[0].published == date(2026, 6, 3)  # type: ignore[union-attr]


def test_orphan_title_and_abstract_without_title_are_record_errors() -> None:
    page = (
        f"May 16\n\nGood One\n\n{ABSTRACT}\n\nLonely Title Without Text\n\nGood Two\n\n"
        f"{ABSTRACT}\n\n{ABSTRACT}\n\nTrailing Orphan\n"
    )
    records = _parse(page)
    assert [p.title for p in _papers(records)] == ["Good One", "Good Two"]
    orphan, headless, trailing = _errors(records)
    assert orphan.record.startswith('record 2 ("Lonely Title Without Text")')
    assert "title without an abstract" in orphan.reason
    assert headless.record.startswith("record 4")
    assert "abstract without a title" in headless.reason
    assert trailing.record.startswith('record 5 ("Trailing Orphan")')


def test_prose_like_title_and_short_abstract() -> None:
    # Both are between 100 and 300 characters and have two sentences: only context tells.
    title = (
        "Can Language Models Plan Ahead? A Study of Lookahead in Transformers "
        "Trained on Chess Games and Puzzles"
    )
    short = (
        "We find that they do. Probing shows that a plan forms early in the network, "
        "long before the move is played."
    )
    page = f"{title}\n\n{ABSTRACT}\n\nShort One\n\n{short}\n"
    first, second = _parse(page)
    assert isinstance(first, Paper) and first.title == title
    assert isinstance(second, Paper) and second.abstract == short


def test_windows_line_endings_and_bom() -> None:
    page = f"\ufeffnew\r\n\r\nA Title\r\n\r\n{ABSTRACT}\r\n".encode()
    [paper] = _parse(page)
    assert isinstance(paper, Paper)
    assert paper.title == "A Title"


def test_oversized_abstract_fails_with_make_papers_reason() -> None:
    page = f"A Title\n\n{ABSTRACT}\n\nAnother Title\n\n{ABSTRACT * 3}\n"
    records = _parse(page, max_abstract_chars=500)
    assert isinstance(records[0], Paper)
    assert isinstance(records[1], RecordError)
    assert "the limit is 500" in records[1].reason
