"""The Hugging Face Daily Papers page, copied as text: title line, blank line, abstract.

The copy starts with page chrome ("new", "Subscribe", "byAK and the research community") and a
date line ("May 16"). Rather than hard-coding those lines, a paper is recognised by its shape:
a short single line (the title) directly followed by a long paragraph (the abstract).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

from retrieval.models import Paper, RecordError
from retrieval.normalize import (
    DEFAULT_MAX_ABSTRACT_CHARS,
    InvalidRecord,
    describe,
    make_paper,
    split_sentences,
)

# Titles on the page stay far below this; abstracts far above it.
TITLE_MAX_CHARS = 300
# A paragraph this long is an abstract even if it is a single sentence.
ABSTRACT_MIN_CHARS = 300

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}
_MONTH_DAY = re.compile(r"^(?P<month>[A-Za-z]{3,9})\.? (?P<day>\d{1,2})(?:, (?P<year>\d{4}))?$")
_ISO_DAY = re.compile(r"^(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})$")
# Chrome that can also appear *between* or *after* papers (pagination, footers): never a title.
_KNOWN_CHROME = re.compile(
    r"^(?:new|subscribe|daily papers|get trending papers in your email inbox!?|"
    r"by ?ak and the research community|previous|next|load more|"
    r"(?:submitted by|upvote|view arxiv page|view pdf)\b.*)$",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class _Block:
    """A run of non-blank lines."""

    line: int  # 1-based line number of its first line
    text: str
    n_lines: int


def parse(
    data: bytes | str,
    *,
    origin: str,
    page_date: date | None = None,
    today: date | None = None,
    max_abstract_chars: int = DEFAULT_MAX_ABSTRACT_CHARS,
) -> Iterator[Paper | RecordError]:
    """Yield one Paper (or RecordError) per title + abstract pair on the page.

    ``page_date`` sets ``published`` and ``listed`` (the page's day is the day HF listed the
    paper, and the only date the page gives) for every paper; without it a date line on the
    page ("May 16", "May 16, 2025", "2025-05-16") does, a year-less date taking the most recent
    such day not after ``today``. Short lines before the first paper are chrome; after it, a short
    line not followed by an abstract is an orphan title and reported as a RecordError.
    """
    # errors="replace" keeps a bad byte local: make_paper rejects only the record holding it.
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    today = today or date.today()
    current_date = page_date
    pending: list[_Block] = []  # short lines waiting to see whether an abstract follows
    seen_paper = False
    number = 0
    blocks = list(_blocks(text.removeprefix("\ufeff")))
    for index, block in enumerate(blocks):
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        if _is_abstract(block, following):
            title = pending[-1] if pending else None
            orphans = pending[:-1]  # before the first paper these are chrome
            if seen_paper:
                for orphan in orphans:
                    number += 1
                    yield _orphan_title(origin, number, orphan)
            pending = []
            number += 1
            yield _record(origin, number, title, block, current_date, max_abstract_chars)
            seen_paper = True
            continue
        day = _parse_date(block.text, today) if block.n_lines == 1 else None
        if day is not None:
            current_date = page_date or day
        elif not _KNOWN_CHROME.match(block.text):
            pending.append(block)
    if seen_paper:
        for orphan in pending:
            number += 1
            yield _orphan_title(origin, number, orphan)


def _blocks(text: str) -> Iterator[_Block]:
    lines: list[str] = []
    start = 0
    for number, raw in enumerate([*text.splitlines(), ""], start=1):
        line = raw.strip()
        if line:
            start = start or number
            lines.append(line)
        elif lines:
            yield _Block(line=start, text=" ".join(lines), n_lines=len(lines))
            lines, start = [], 0


def _is_abstract(block: _Block, following: _Block | None) -> bool:
    """A paragraph: several lines or very long; or a short one of prose not before an abstract.

    The look-ahead keeps a long two-part title ("Can LLMs Plan? A Study of ...") a title:
    what comes right before a clear abstract is its title.
    """
    if _is_long(block):
        return True
    prose = len(block.text) > TITLE_MAX_CHARS // 3 and len(split_sentences(block.text)) >= 2
    return prose and not (following and _is_long(following))


def _is_long(block: _Block) -> bool:
    return block.n_lines > 1 or len(block.text) >= ABSTRACT_MIN_CHARS


def _record(
    origin: str,
    number: int,
    title: _Block | None,
    abstract: _Block,
    published: date | None,
    max_abstract_chars: int,
) -> Paper | RecordError:
    if title is None:
        return RecordError(
            origin,
            f"{describe(number)} (line {abstract.line})",
            f"abstract without a title: {_snippet(abstract.text)}",
        )
    try:
        return make_paper(
            title=title.text,
            abstract=abstract.text,
            source="hf_page",
            published=published,
            listed=published,
            max_abstract_chars=max_abstract_chars,
        )
    except InvalidRecord as exc:
        return RecordError(origin, describe(number, title.text), str(exc))


def _orphan_title(origin: str, number: int, block: _Block) -> RecordError:
    return RecordError(
        origin,
        f"{describe(number, block.text)} (line {block.line})",
        "title without an abstract (expected a paragraph after it)",
    )


def _snippet(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _parse_date(line: str, today: date) -> date | None:
    """'May 16', 'May 16, 2025' or '2025-05-16' -> a date; None for anything else."""
    iso = _ISO_DAY.match(line)
    match = iso or _MONTH_DAY.match(line)
    if match is None:
        return None
    month = int(match["month"]) if iso else _MONTHS.get(match["month"].lower())
    if month is None:
        return None
    day = int(match["day"])
    if match["year"]:
        return _safe_date(int(match["year"]), month, day)
    # No year: the most recent such day not after today (Feb 29 may need a few years back).
    for year in range(today.year, today.year - 8, -1):
        candidate = _safe_date(year, month, day)
        if candidate is not None and candidate <= today:
            return candidate
    return None


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None
