"""Sources: turn a feed or a file into `Paper | RecordError` records.

A bad record never stops the good ones (it comes out as a RecordError); a SourceError is raised
only when the whole source is unusable.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Final

from retrieval.errors import SourceError
from retrieval.models import Paper, RecordError
from retrieval.normalize import DEFAULT_MAX_ABSTRACT_CHARS
from retrieval.sources import arxiv, hf_api, page_text, tabular
from retrieval.sources.tabular import load_json, parse_csv, parse_json_records, parse_jsonl

# page = HF Daily Papers page text; hf_api = its JSON API; json = a list of flat records.
FORMATS: Final = ("page", "hf_api", "json", "jsonl", "csv", "arxiv")
_BY_SUFFIX: Final = {
    ".txt": "page",
    ".json": "json",  # or hf_api: decided by the content, see _json_format()
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".xml": "arxiv",
    ".atom": "arxiv",
}

__all__ = [
    "FORMATS",
    "arxiv",
    "detect_format",
    "hf_api",
    "load_path",
    "page_text",
    "parse_csv",
    "parse_json_records",
    "parse_jsonl",
    "tabular",
]


def load_path(
    path: Path,
    *,
    fmt: str | None = None,
    page_date: date | None = None,
    max_abstract_chars: int = DEFAULT_MAX_ABSTRACT_CHARS,
) -> Iterator[Paper | RecordError]:
    """Records of one file, its format given by ``fmt`` or told by extension and content."""
    if fmt is not None and fmt not in FORMATS:
        raise SourceError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    data = _read(path)
    origin = str(path)
    fmt = fmt or detect_format(path, data)
    limit = max_abstract_chars
    if fmt == "page":
        return page_text.parse(data, origin=origin, page_date=page_date, max_abstract_chars=limit)
    if fmt in ("json", "hf_api"):
        document = load_json(data, origin)  # decoded once, then handed to the right reader
        if fmt == "hf_api" or _json_format(document) == "hf_api":
            return hf_api.parse_entries(document, origin=origin, max_abstract_chars=limit)
        return tabular.parse_records(document, origin=origin, max_abstract_chars=limit)
    reader = {"jsonl": parse_jsonl, "csv": parse_csv, "arxiv": arxiv.parse}[fmt]
    return reader(data, origin=origin, max_abstract_chars=limit)


def detect_format(path: Path, data: bytes) -> str:
    """The format by extension, else by the first character of the content."""
    by_suffix = _BY_SUFFIX.get(path.suffix.lower())
    if by_suffix:
        return by_suffix
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head == b"<":
        return "arxiv"
    if head == b"[":
        return "json"
    if head == b"{":
        # One object spread over the file is JSON; one object per line is JSON Lines.
        first_line = data.lstrip().split(b"\n", 1)[0].strip()
        return "jsonl" if first_line.endswith(b"}") else "json"
    raise SourceError(
        f"Cannot tell the format of {path} (extension {path.suffix or 'none'!r}); use one of "
        f"{', '.join(sorted(_BY_SUFFIX))} or name the format ({', '.join(FORMATS)})"
    )


def _json_format(document: object) -> str:
    """hf_api when the entries wrap a "paper" object (the Daily Papers API shape)."""
    first = document[0] if isinstance(document, list) and document else document
    return "hf_api" if isinstance(first, dict) and "paper" in first else "json"


def _read(path: Path) -> bytes:
    if not path.exists():
        raise SourceError(f"{path}: no such file")
    if path.is_dir():
        raise SourceError(f"{path} is a directory; give one file (.txt, .json, .jsonl, .csv, .xml)")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SourceError(f"Cannot read {path}: {exc.strerror or exc}") from None
