"""Flat paper records from JSON Lines, CSV or a JSON list.

A record needs a title and an abstract. Recognised fields (case-insensitive names):

- ``abstract`` or ``summary``;
- ``arxiv_id`` (must be an arXiv id, else the record fails) or ``id`` (used only when it *is*
  an arXiv id: other ids, e.g. a database key, are ignored rather than failing the record);
  without either, an arxiv.org ``url`` gives the id;
- ``authors``: a list (of names or ``{"name": ...}``), or a string "A; B" or "A, B and C";
- ``published`` or ``date``, and ``updated``: ISO date or datetime;
- ``listed``: the day a feed listed the paper (ISO date or datetime), when the file knows it
  (e.g. an export of a feed); without it, the ingest's own listing day applies, if any;
- ``url``, ``pdf_url``, ``upvotes``, ``comments``, ``categories`` (list or "cs.CL; cs.AI").
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from typing import IO, Any, AnyStr, BinaryIO

from retrieval.errors import SourceError
from retrieval.models import Paper, RecordError
from retrieval.normalize import (
    DEFAULT_MAX_ABSTRACT_CHARS,
    InvalidRecord,
    describe,
    make_paper,
    parse_arxiv_id,
)

# One record (a JSON Lines line, a CSV row) longer than this fails alone
# (PAPERBOT_MAX_RECORD_BYTES); a cell under it but over the abstract limit fails as *one*
# record (make_paper explains the limit).
DEFAULT_MAX_RECORD_BYTES = 2 * 1024 * 1024
# A feed file or download larger than this fails with one line (PAPERBOT_MAX_INPUT_BYTES).
DEFAULT_MAX_INPUT_BYTES = 200 * 1024 * 1024
_SKIP_CHUNK = 64 * 1024
# json.loads recurses per nesting level: a deeper document stops it with RecursionError.
TOO_DEEP = "nested too deeply (JSON arrays/objects inside each other beyond Python's limit)"
REQUIRED_COLUMNS = ("title", "abstract")
_ABSTRACT_KEYS = ("abstract", "summary")
_DATE_KEYS = ("published", "date")
# "A, B and C" / "A, B, and C"; when a ";" is present it alone separates ("Doe, J.; Roe, R.").
_AUTHOR_SPLIT = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+")
_CATEGORY_SPLIT = re.compile(r"[;,\s]+")


def load_json(data: bytes | str, origin: str) -> Any:
    """Decode a whole JSON document, or raise SourceError saying where it breaks."""
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise SourceError(
            f"{origin} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{origin} is not valid UTF-8 JSON (bad byte at offset {exc.start})"
        ) from None
    except RecursionError:
        raise SourceError(f"{origin} is not a feed: {TOO_DEEP}") from None


def parse_jsonl(
    data: bytes | str | BinaryIO,
    *,
    origin: str,
    max_abstract_chars: int = DEFAULT_MAX_ABSTRACT_CHARS,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    max_input_bytes: int | None = None,
) -> Iterator[Paper | RecordError]:
    """One JSON object per line; a bad line becomes a RecordError and the rest still land.

    ``data`` may be an open binary file: it is read line by line (memory stays bounded by
    ``max_record_bytes``); a line longer than that fails alone, without being kept.
    """
    # Lines end at "\n" only: str.splitlines() would also break on U+2028 in JSON strings.
    lines = _lines(_binary(data), origin, max_record_bytes, max_input_bytes, (b"\n",))
    for number, raw in lines:
        label = f"line {number}"
        if raw is None:
            yield RecordError(origin, label, _too_long(max_record_bytes))
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield RecordError(
                origin,
                label,
                f"contains bytes that are not valid UTF-8 (at byte {exc.start + 1} of the line)",
            )
            continue
        line = line.removeprefix("\ufeff").strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield RecordError(origin, label, f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        except RecursionError:
            yield RecordError(origin, label, TOO_DEEP)
            continue
        yield record_to_paper(
            record, origin=origin, label=label, max_abstract_chars=max_abstract_chars
        )


def parse_csv(
    data: bytes | str | BinaryIO,
    *,
    origin: str,
    max_abstract_chars: int = DEFAULT_MAX_ABSTRACT_CHARS,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    max_input_bytes: int | None = None,
) -> Iterator[Paper | RecordError]:
    """A CSV with a header row naming at least title and abstract (or summary).

    ``data`` may be an open binary file, read row by row. A row the reader cannot get past
    (a syntax error, a row over ``max_record_bytes``) raises SourceError after the rows before
    it: the reader cannot resynchronise, and the rest of the file must not vanish silently.
    """
    # A cell may be as long as a whole record; the record cap itself is enforced by _Rows.
    csv.field_size_limit(max(csv.field_size_limit(), max_record_bytes + 1))
    # Lines end at \n, \r\n or a lone \r (old Mac exports), as csv expects (newline="");
    # "replace" keeps a bad byte local to its record (make_paper then rejects it).
    text = io.TextIOWrapper(_binary(data), encoding="utf-8-sig", errors="replace", newline="")
    lines = _lines(text, origin, max_record_bytes, max_input_bytes, ("\n", "\r"))
    rows = _Rows(lines, max_record_bytes)
    # strict: a quote left open would otherwise swallow the rest of the file into one cell.
    reader = csv.DictReader(rows, strict=True)
    try:
        columns = reader.fieldnames
    except (csv.Error, _RecordTooLong) as exc:
        raise SourceError(f"{origin}: unreadable CSV header: {_csv_problem(exc)}") from None
    _check_header(columns, origin)
    while True:
        rows.start_record()
        start = rows.line + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except (csv.Error, _RecordTooLong) as exc:
            raise SourceError(
                f"{origin}: line {start}: {_csv_problem(exc)}; the rows before it were read, "
                "the rest of the file was not (fix that row and ingest the file again)"
            ) from None
        record = {str(key).strip().lower(): value for key, value in row.items() if key is not None}
        yield record_to_paper(
            record, origin=origin, label=f"line {start}", max_abstract_chars=max_abstract_chars
        )


class _RecordTooLong(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(_too_long(limit))


class _Rows:
    """The lines of a CSV for csv.reader, counting the characters of the current record: a
    record (a row, quoted line breaks included) over the cap stops the reader."""

    def __init__(self, lines: Iterator[tuple[int, str | None]], limit: int) -> None:
        self._lines = lines
        self._limit = limit
        self.line = 0
        self._record_size = 0

    def start_record(self) -> None:
        self._record_size = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        number, text = next(self._lines)
        self.line = number
        if text is None:
            raise _RecordTooLong(self._limit)
        self._record_size += len(text)
        if self._record_size > self._limit:
            raise _RecordTooLong(self._limit)
        return text


def _csv_problem(exc: Exception) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return "a cell is larger than the CSV field limit"
    return text if isinstance(exc, _RecordTooLong) else f"CSV error: {text}"


def _too_long(limit: int) -> str:
    return (
        f"longer than {limit:,} bytes, the limit for one record "
        "(raise PAPERBOT_MAX_RECORD_BYTES if this is really one paper)"
    )


def _binary(data: bytes | str | BinaryIO) -> BinaryIO:
    if isinstance(data, str):
        return io.BytesIO(data.encode())
    if isinstance(data, bytes | bytearray):
        return io.BytesIO(data)
    return data


def _lines(
    handle: IO[AnyStr],
    origin: str,
    max_record_bytes: int,
    max_input_bytes: int | None,
    ends: tuple[AnyStr, ...],
) -> Iterator[tuple[int, AnyStr | None]]:
    """(line number, line) for each line of ``handle`` (a line ends with one of ``ends``); the
    line is None when it is longer than ``max_record_bytes``, and is then skipped without
    being kept. More than ``max_input_bytes`` in all (a file that grows while it is read)
    raises SourceError."""
    total = 0
    number = 0
    while True:
        raw = handle.readline(max_record_bytes + 1)
        if not raw:
            return
        number += 1
        total += len(raw)
        too_long = len(raw) > max_record_bytes and not raw.endswith(ends)
        while too_long and raw and not raw.endswith(ends):
            raw = handle.readline(_SKIP_CHUNK)
            total += len(raw)
            _check_total(total, origin, max_input_bytes)
        _check_total(total, origin, max_input_bytes)
        yield number, None if too_long else raw


def _check_total(total: int, origin: str, max_input_bytes: int | None) -> None:
    if max_input_bytes is not None and total > max_input_bytes:
        raise SourceError(input_too_large(origin, max_input_bytes))


def input_too_large(origin: str, limit: int) -> str:
    """The one-line error for a feed over PAPERBOT_MAX_INPUT_BYTES."""
    return (
        f"{origin} is larger than {limit:,} bytes, the input limit; split it, or raise "
        "PAPERBOT_MAX_INPUT_BYTES if it really is one feed"
    )


def parse_json_records(
    data: bytes | str,
    *,
    origin: str,
    max_abstract_chars: int = DEFAULT_MAX_ABSTRACT_CHARS,
) -> Iterator[Paper | RecordError]:
    """A JSON list of flat records (or a single record object)."""
    return parse_records(
        load_json(data, origin), origin=origin, max_abstract_chars=max_abstract_chars
    )


def parse_records(
    document: Any, *, origin: str, max_abstract_chars: int = DEFAULT_MAX_ABSTRACT_CHARS
) -> Iterator[Paper | RecordError]:
    """Records from an already decoded JSON document (a list, or one object)."""
    if isinstance(document, dict):
        document = [document]
    if not isinstance(document, list):
        raise SourceError(
            f"{origin}: expected a JSON list of paper records, got {type(document).__name__}"
        )
    for number, record in enumerate(document, start=1):
        yield record_to_paper(
            record, origin=origin, label=f"record {number}", max_abstract_chars=max_abstract_chars
        )


def record_to_paper(
    record: Any, *, origin: str, label: str, max_abstract_chars: int = DEFAULT_MAX_ABSTRACT_CHARS
) -> Paper | RecordError:
    """One flat record -> Paper; ``label`` ('line 3', 'record 3') names it in the RecordError."""
    if not isinstance(record, dict):
        return RecordError(origin, label, f"expected an object, got {type(record).__name__}")
    fields = {str(key).lower(): value for key, value in record.items()}
    try:
        return make_paper(
            title=_text(fields, "title"),
            abstract=_first_text(fields, _ABSTRACT_KEYS),
            source="file",
            arxiv_id=_arxiv_id(fields),
            authors=_names(fields.get("authors")),
            categories=_categories(fields.get("categories")),
            published=_date(fields, _DATE_KEYS),
            updated=_date(fields, ("updated",)),
            url=_text(fields, "url"),
            pdf_url=_text(fields, "pdf_url"),
            upvotes=_count(fields, "upvotes"),
            comments=_count(fields, "comments"),
            listed=_date(fields, ("listed",)),
            max_abstract_chars=max_abstract_chars,
        )
    except InvalidRecord as exc:
        return RecordError(origin, _named(label, fields.get("title")), str(exc))


def _named(label: str, title: Any) -> str:
    """'line 3' + title -> 'line 3 ("Title…")', shortened the way describe() does it."""
    described = describe(1, title if isinstance(title, str) else None)
    return label + described.removeprefix("record 1")


def _check_header(columns: Iterable[str] | None, origin: str) -> None:
    found = [c.strip().lower() for c in columns or () if c is not None]
    if not found:
        raise SourceError(f"{origin}: empty CSV (no header row with title and abstract)")
    missing = [
        name
        for name, options in (("title", ("title",)), ("abstract", _ABSTRACT_KEYS))
        if not any(option in found for option in options)
    ]
    if missing:
        raise SourceError(
            f"{origin}: CSV is missing column(s) {', '.join(missing)} "
            f"(abstract may be called summary); columns found: {', '.join(found)}"
        )


def _text(fields: Mapping[str, Any], key: str) -> str | None:
    value = fields.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    raise InvalidRecord(f"{key} must be text, got {type(value).__name__}")


def _first_text(fields: Mapping[str, Any], keys: Iterable[str]) -> str | None:
    for key in keys:
        value = _text(fields, key)
        if value is not None:
            return value
    return None


def _arxiv_id(fields: Mapping[str, Any]) -> str | None:
    explicit = _text(fields, "arxiv_id")
    if explicit:
        return explicit  # make_paper rejects it if it is not an arXiv id
    for key in ("id", "url"):
        value = fields.get(key)
        if isinstance(value, str) and parse_arxiv_id(value):
            return value
    return None


def _names(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        parts = value.split(";") if ";" in value else _AUTHOR_SPLIT.split(value.strip())
        return [name.strip() for name in parts if name.strip()]
    if isinstance(value, list):
        names = [item.get("name") if isinstance(item, dict) else item for item in value]
        if all(isinstance(name, str) for name in names):
            return [str(name) for name in names]
    raise InvalidRecord("authors must be a list of names or a string like 'A; B'")


def _categories(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [c for c in _CATEGORY_SPLIT.split(value) if c]
    if isinstance(value, list) and all(isinstance(c, str) for c in value):
        return value
    raise InvalidRecord("categories must be a list or a string like 'cs.CL; cs.AI'")


def _date(fields: Mapping[str, Any], keys: Iterable[str]) -> date | None:
    for key in keys:
        value = _text(fields, key)
        if value is not None:
            return parse_iso_date(value, key)
    return None


def parse_iso_date(value: str, key: str = "date") -> date:
    """'2024-10-22' or '2024-10-22T17:59:30.000Z' -> date(2024, 10, 22)."""
    text = value.strip()
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        raise InvalidRecord(f"{key} {value!r} is not an ISO date (e.g. 2024-10-22)") from None


def parse_utc_day(value: str, key: str = "date") -> date:
    """The UTC day of a timestamp ('2024-10-25T00:57:09.392Z' -> 2024-10-25); a date or a
    naive datetime is taken as it is."""
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return parse_iso_date(value, key)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.date()


def _count(fields: Mapping[str, Any], key: str) -> int | None:
    value = fields.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidRecord(f"{key} must be a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        return int(str(value).strip())
    except ValueError:
        raise InvalidRecord(f"{key} must be a whole number, got {value!r}") from None
