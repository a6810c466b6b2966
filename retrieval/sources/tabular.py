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
from typing import Any

from retrieval.errors import SourceError
from retrieval.models import Paper, RecordError
from retrieval.normalize import (
    DEFAULT_MAX_ABSTRACT_CHARS,
    InvalidRecord,
    describe,
    make_paper,
    parse_arxiv_id,
)

# Large enough for a 100 kB+ cell, so an oversized abstract fails as *one* record (make_paper
# explains the limit) instead of csv.Error stopping the whole file.
CSV_FIELD_LIMIT = 16 * 1024 * 1024
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


def parse_jsonl(
    data: bytes | str,
    *,
    origin: str,
    max_abstract_chars: int = DEFAULT_MAX_ABSTRACT_CHARS,
) -> Iterator[Paper | RecordError]:
    """One JSON object per line; a bad line becomes a RecordError and the rest still land."""
    # Split on "\n" only: str.splitlines() would also break on U+2028 inside JSON strings.
    raw_lines: list[bytes] = (data if isinstance(data, bytes) else data.encode()).split(b"\n")
    for number, raw in enumerate(raw_lines, start=1):
        label = f"line {number}"
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
        yield record_to_paper(
            record, origin=origin, label=label, max_abstract_chars=max_abstract_chars
        )


def parse_csv(
    data: bytes | str,
    *,
    origin: str,
    max_abstract_chars: int = DEFAULT_MAX_ABSTRACT_CHARS,
) -> Iterator[Paper | RecordError]:
    """A CSV with a header row naming at least title and abstract (or summary)."""
    # utf-8-sig drops the BOM Excel writes; "replace" keeps a bad byte local to its record.
    text = data.decode("utf-8-sig", errors="replace") if isinstance(data, bytes) else data
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    _check_header(reader.fieldnames, origin)
    line = reader.line_num
    while True:
        start = line + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The reader cannot resynchronise after a syntax error: report and stop.
            yield RecordError(origin, f"line {start}", f"CSV error, rest of file not read: {exc}")
            return
        line = reader.line_num
        record = {str(key).strip().lower(): value for key, value in row.items() if key is not None}
        yield record_to_paper(
            record, origin=origin, label=f"line {start}", max_abstract_chars=max_abstract_chars
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
