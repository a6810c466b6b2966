"""Hostile feed input (issue 12): nesting bombs, endless or special files, oversized files,
records and cells, downloads over the cap. Each one fails alone or with one clear line; the
good records around it still land; memory stays bounded."""

from __future__ import annotations

import json
import os
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from retrieval.errors import SourceError
from retrieval.models import Paper, RecordError
from retrieval.sources import load_path, tabular
from retrieval.sources.http import get_bytes

ABSTRACT = "A method for finding papers that answers questions with citations, tested well."
DEEP = 100_000


def _line(title: str, abstract: str = ABSTRACT) -> str:
    return json.dumps({"title": title, "abstract": abstract})


def test_deeply_nested_jsonl_line_fails_alone(tmp_path: Path) -> None:
    feed = tmp_path / "nested.jsonl"
    lines = [
        _line("First"),
        "[" * DEEP + "]" * DEEP,
        _line("Second"),
        '{"title": ' * DEEP + "1" + "}" * DEEP,
        _line("Third"),
    ]
    feed.write_text("\n".join(lines) + "\n")
    records = list(load_path(feed))
    assert [r.title for r in records if isinstance(r, Paper)] == ["First", "Second", "Third"]
    errors = [r for r in records if isinstance(r, RecordError)]
    assert [e.record for e in errors] == ["line 2", "line 4"]
    assert all("nested too deeply" in e.reason for e in errors)


def test_deeply_nested_json_document_is_one_clear_error(tmp_path: Path) -> None:
    feed = tmp_path / "nested.json"
    feed.write_text("[" * DEEP + "]" * DEEP)
    with pytest.raises(SourceError, match=r"nested\.json is not a feed: nested too deeply"):
        load_path(feed)


def test_dev_zero_is_refused_at_once() -> None:
    with pytest.raises(SourceError, match=r"/dev/zero is a device, not a regular file"):
        load_path(Path("/dev/zero"), fmt="jsonl")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "feed.jsonl"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            list(load_path(fifo))
            outcome.append(None)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=5)
    if reader.is_alive():  # unblock the stuck reader so the test run can end
        with open(fifo, "wb"):
            pass
        pytest.fail("reading a FIFO hung waiting for a writer")
    [error] = outcome
    assert isinstance(error, SourceError) and "named pipe (FIFO), not a regular file" in str(error)


def test_a_file_over_the_input_cap_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    feed = tmp_path / "big.jsonl"
    feed.write_text("\n".join(_line(f"Paper {i}") for i in range(100)) + "\n")
    with pytest.raises(SourceError, match=r"big\.jsonl is larger than 4,096 bytes.*INPUT_BYTES"):
        load_path(feed, max_input_bytes=4096)
    assert len(list(load_path(feed))) == 100  # the default cap is far above it


def test_an_oversized_jsonl_line_fails_alone_and_is_not_kept(tmp_path: Path) -> None:
    feed = tmp_path / "huge-line.jsonl"
    huge = _line("Huge", "word " * 1_000_000)  # 5 MB on one line
    feed.write_text("\n".join([_line("Before"), huge, _line("After")]) + "\n")
    tracemalloc.start()
    try:
        records = list(load_path(feed, max_record_bytes=64 * 1024))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    before, huge_error, after = records
    assert isinstance(before, Paper) and isinstance(after, Paper)
    assert isinstance(huge_error, RecordError) and huge_error.record == "line 2"
    assert "longer than 65,536 bytes" in huge_error.reason
    assert "PAPERBOT_MAX_RECORD_BYTES" in huge_error.reason
    assert peak < 2 * 1024 * 1024, f"peak {peak:,} bytes while skipping a 5 MB line"


def test_jsonl_is_streamed_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    feed = tmp_path / "many.jsonl"
    abstract = "Retrieval with verified citations over many abstracts. " * 200  # ~11 kB
    with feed.open("w") as out:
        for i in range(1500):  # ~17 MB
            out.write(_line(f"Paper number {i}", abstract) + "\n")
    size = feed.stat().st_size
    tracemalloc.start()
    try:
        count = sum(isinstance(r, Paper) for r in load_path(feed))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 1500
    assert peak < size / 4, f"peak {peak:,} bytes for a {size:,}-byte file"


def _csv_rows(*cells: str) -> bytes:
    lines = ["title,abstract"] + [f'{title},"{ABSTRACT}"' for title in cells]
    return ("\n".join(lines) + "\n").encode()


def test_a_csv_field_over_the_cap_stops_with_an_error_never_silently(tmp_path: Path) -> None:
    feed = tmp_path / "huge-field.csv"
    head = _csv_rows("Good one", "Good two")
    feed.write_bytes(head + b'Huge,"' + b"x" * 300_000 + b'"\nLater,"' + ABSTRACT.encode() + b'"\n')
    seen: list[Paper | RecordError] = []
    with pytest.raises(SourceError) as caught:
        for record in load_path(feed, max_record_bytes=100_000):
            seen.append(record)
    assert [r.title for r in seen if isinstance(r, Paper)] == ["Good one", "Good two"]
    message = str(caught.value)
    assert "huge-field.csv: line 4" in message and "longer than 100,000 bytes" in message
    assert "the rest of the file was not" in message and "\n" not in message


def test_a_csv_field_over_the_old_16_mb_limit_is_not_skipped_silently(tmp_path: Path) -> None:
    feed = tmp_path / "17mb.csv"
    with feed.open("wb") as out:
        out.write(_csv_rows("Good"))
        out.write(b'Huge,"' + b"x" * (17 * 1024 * 1024) + b'"\n')
        out.write(b'Later,"' + ABSTRACT.encode() + b'"\n')
    records = load_path(feed)
    assert isinstance(next(records), Paper)
    with pytest.raises(SourceError, match=r"17mb\.csv: line 3: .*PAPERBOT_MAX_RECORD_BYTES"):
        next(records)


@pytest.mark.parametrize(
    ("bad_row", "problem"),
    [
        (b'"Bad"x,"' + ABSTRACT.encode() + b'"\n', "',' expected after '\"'"),
        # a quote never closed would swallow every later row into one cell
        (b'"Open quote,' + ABSTRACT.encode() + b"\nLost,a later row\n", "unexpected end"),
    ],
)
def test_csv_syntax_error_is_a_source_error_after_the_good_rows(
    bad_row: bytes, problem: str
) -> None:
    records = tabular.parse_csv(_csv_rows("Good") + bad_row, origin="p.csv")
    assert isinstance(next(records), Paper)
    with pytest.raises(SourceError, match=r"p\.csv: line 3: CSV error") as caught:
        next(records)
    assert problem in str(caught.value)


def test_a_download_over_the_cap_is_refused_without_reading_it_all() -> None:
    served: list[int] = []

    def endless() -> Iterator[bytes]:
        for _ in range(10_000):  # would be 640 MB
            served.append(1)
            yield b"x" * 65536

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())  # no Content-Length

    client = httpx.Client(transport=httpx.MockTransport(handler))
    with pytest.raises(SourceError, match=r"larger than 1,000,000 bytes, the input limit"):
        get_bytes(
            "http://feeds.test/feed.jsonl", timeout=5, retries=2, client=client, max_bytes=1_000_000
        )
    assert len(served) < 20  # stopped at the cap, and not retried

    declared = httpx.Client(
        transport=httpx.MockTransport(
            lambda r: httpx.Response(200, headers={"Content-Length": "999999999"}, content=b"")
        )
    )
    with pytest.raises(SourceError, match="larger than 1,000,000 bytes"):
        get_bytes("http://feeds.test/x", timeout=5, retries=0, client=declared, max_bytes=1_000_000)


def test_the_caps_are_settings(
    tmp_path: Path, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PAPERBOT_MAX_INPUT_BYTES / PAPERBOT_MAX_RECORD_BYTES reach every reader (feeds.py)."""
    from retrieval import feeds

    line = json.dumps({"title": "A paper", "abstract": "x " * 1000})
    small = tmp_path / "papers.jsonl"
    small.write_text(
        line
        + "\n"
        + json.dumps(
            {
                "title": "Sparse attention for long documents",
                "abstract": "We propose a sparse attention scheme that reads long documents in "
                "linear time and matches dense attention on three summarization benchmarks.",
            }
        )
        + "\n"
    )
    settings = make_settings(max_record_bytes=1024)
    records = list(feeds.from_path(settings, small))
    assert [type(r).__name__ for r in records] == ["RecordError", "Paper"]
    small.write_text(small.read_text() * 2)  # > 2 KB
    tiny = make_settings(max_input_bytes=1024)
    with pytest.raises(SourceError, match="PAPERBOT_MAX_INPUT_BYTES"):
        list(feeds.from_path(tiny, small))
