"""Sources: turn a feed or a file into `Paper | RecordError` records.

A bad record never stops the good ones (it comes out as a RecordError); a SourceError is raised
only when the whole source is unusable.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Final

from retrieval.errors import SourceError
from retrieval.models import Paper, RecordError
from retrieval.normalize import DEFAULT_MAX_ABSTRACT_CHARS
from retrieval.sources import arxiv, hf_api, page_text, tabular
from retrieval.sources.tabular import (
    DEFAULT_MAX_INPUT_BYTES,
    DEFAULT_MAX_RECORD_BYTES,
    input_too_large,
    load_json,
    parse_csv,
    parse_json_records,
    parse_jsonl,
)

_SNIFF_BYTES: Final = 64 * 1024  # what detect_format sees of a file without a known extension
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
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Iterator[Paper | RecordError]:
    """Records of one file, its format given by ``fmt`` or told by extension and content.

    Only a regular file is read (a FIFO or a device such as /dev/zero would hang or never
    end), and only up to ``max_input_bytes``. JSON Lines and CSV are read record by record;
    the other formats are one document, read whole.
    """
    if fmt is not None and fmt not in FORMATS:
        raise SourceError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    origin = str(path)
    handle = _open(path, max_input_bytes)
    try:
        fmt = fmt or detect_format(path, handle.peek(_SNIFF_BYTES)[:_SNIFF_BYTES])
    except BaseException:
        handle.close()
        raise
    if fmt in ("jsonl", "csv"):
        reader = parse_jsonl if fmt == "jsonl" else parse_csv
        return _closing(
            handle,
            reader(
                handle,
                origin=origin,
                max_abstract_chars=max_abstract_chars,
                max_record_bytes=max_record_bytes,
                max_input_bytes=max_input_bytes,
            ),
        )
    with handle:
        data = handle.read(max_input_bytes + 1)
    if len(data) > max_input_bytes:  # it grew since it was opened
        raise SourceError(input_too_large(origin, max_input_bytes))
    limit = max_abstract_chars
    if fmt == "page":
        return page_text.parse(data, origin=origin, page_date=page_date, max_abstract_chars=limit)
    if fmt in ("json", "hf_api"):
        document = load_json(data, origin)  # decoded once, then handed to the right reader
        del data
        if fmt == "hf_api" or _json_format(document) == "hf_api":
            return hf_api.parse_entries(document, origin=origin, max_abstract_chars=limit)
        return tabular.parse_records(document, origin=origin, max_abstract_chars=limit)
    return arxiv.parse(data, origin=origin, max_abstract_chars=limit)


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


def _open(path: Path, max_input_bytes: int) -> io.BufferedReader:
    """The file, opened for reading, if it is a regular file within the input limit."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except OSError as exc:
        raise SourceError(f"Cannot read {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise SourceError(f"{path} is a directory; give one file (.txt, .json, .jsonl, .csv, .xml)")
    _check_regular(path, info)
    try:
        # O_NONBLOCK: should the path have become a FIFO since stat(), open() must not wait
        # for a writer; the check on the opened file below then refuses it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise SourceError(f"Cannot read {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        _check_regular(path, info)
        if info.st_size > max_input_bytes:
            raise SourceError(input_too_large(str(path), max_input_bytes))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return io.BufferedReader(io.FileIO(fd, "rb"), buffer_size=_SNIFF_BYTES)
    except BaseException:
        os.close(fd)
        raise


def _check_regular(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = (
            "a named pipe (FIFO)"
            if stat.S_ISFIFO(info.st_mode)
            else "a device"
            if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
            else "a socket or other special file"
        )
        raise SourceError(
            f"{path} is {kind}, not a regular file; paperbot reads feed files only "
            "(save the feed to a file first)"
        )


def _closing(
    handle: io.BufferedReader, records: Iterator[Paper | RecordError]
) -> Iterator[Paper | RecordError]:
    """The records, closing the file once they are read (or the reader is dropped)."""
    with handle:
        yield from records
