"""Hostile input at the CLI (issue 12): user and corpus text is never parsed as Rich markup
and never reaches the terminal with its escape sequences; --json errors are JSON; the
feedback export is inert in a spreadsheet; the hostile feed set leaves exactly the good
records in the index, without a traceback."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import render
from bot.cli.main import app, main
from retrieval.models import IngestReport, RecordError
from retrieval.normalize import make_paper

HOSTILE = Path(__file__).parent / "fixtures" / "hostile"
ABSTRACT = "A method for finding papers that answers questions with citations, tested well."
MARKUP = "[/bold] [red]x[/] [link=http://evil]y"


@pytest.fixture
def data_env(tmp_path: Path, tiktoken_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "PAPERBOT_DATA_DIR": str(tmp_path / "data"),
        "PAPERBOT_TIKTOKEN_CACHE_DIR": str(tiktoken_dir),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


# ---------------------------------------------------------------- render: markup and escapes
def test_plain_shows_control_characters_instead_of_obeying_them() -> None:
    shown = render.plain("a\x1b[31mred\x1b]0;title\x07 \x9b2J\r\u202eevil\ttab\nline")
    assert shown == "a\\x1b[31mred\\x1b]0;title\\x07 \\x9b2J\\r\\u202eevil\ttab\nline"


def test_search_output_with_markup_in_the_query_does_not_crash(
    capsys: pytest.CaptureFixture[str],
) -> None:
    render.print_hits(MARKUP, [])  # raised rich.errors.MarkupError before
    assert MARKUP in capsys.readouterr().out


def test_corpus_text_is_shown_as_written_never_as_markup(
    capsys: pytest.CaptureFixture[str],
) -> None:
    paper = make_paper(
        title=f"Title {MARKUP}",
        abstract=f"{ABSTRACT} {MARKUP}",
        source="file",
        categories=["[/cs.CL]"],
        authors=["[bold]Mallory"],
    )
    render.print_paper(paper)
    render.print_papers([paper])
    out = capsys.readouterr().out
    assert "[/cs.CL]" in out and "[bold]Mallory" in out and MARKUP in out


def test_record_errors_with_escape_sequences_are_shown_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = IngestReport(failed=[RecordError("feed.csv", "line 2", "bad \x1b[2J\x1b]0;x\x07")])
    render.print_ingest_report(report)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "bad \\x1b[2J\\x1b]0;x\\x07" in out


def test_an_error_naming_a_hostile_csv_header_is_one_escaped_line(
    data_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    header = HOSTILE / "control_header.csv"
    monkeypatch.setattr(sys, "argv", ["paperbot", "ingest", str(header)])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.startswith("Error:")]
    assert "missing column(s) abstract" in line
    assert line.endswith("columns found: title, \\x1b]0;pwned\\x07\\x1b[31m[/bold][blink]summ")


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_ingest_of_an_endless_or_special_file_stops_with_one_line(
    special: str,
    data_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if special == "fifo":
        special = str(tmp_path / "feed.jsonl")
        os.mkfifo(special)  # no writer: opening it for reading would wait forever
    monkeypatch.setattr(sys, "argv", ["paperbot", "ingest", special, "--format", "jsonl"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 1
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if line.startswith("Error:")]
    assert f"{special} is a " in line and "not a regular file" in line
    assert "Traceback" not in err


def test_log_lines_show_escape_sequences_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from bot.cli import main as cli_main

    cli_main._configure_logging(logging.INFO)
    logging.getLogger("paperbot.test").warning("feed said \x1b]0;pwned\x07\x1b[2J [bold]hi")
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err
    assert "feed said \\x1b]0;pwned\\x07\\x1b[2J [bold]hi" in err


# ---------------------------------------------------------------- --json errors
def test_json_commands_answer_errors_in_json(data_env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["papers", "show", "nope", "--json"])
    assert result.exit_code == 1
    error = json.loads(result.stdout)
    assert list(error) == ["error"] and "No paper 'nope'" in error["error"]
    # without --json the error is still the CLI's one line (raised to main())
    plain = CliRunner().invoke(app, ["papers", "show", "nope"])
    assert plain.exit_code == 1 and plain.stdout == ""
    assert "No paper 'nope'" in str(plain.exception)


# ---------------------------------------------------------------- feedback export
def test_feedback_export_neutralises_formulas(data_env: dict[str, str], tmp_path: Path) -> None:
    from bot.slack.store import BotStore

    hostile = {
        '=HYPERLINK("http://x","y")': "+cmd|' /C calc'!A0",
        "@SUM(1+1)": "-2+3",
        "\t=1+1": "\r=1+1",
        "What is =this?": "Plain answer.",
    }
    with BotStore.in_data_dir(Path(data_env["PAPERBOT_DATA_DIR"])) as store:
        for number, (question, answer) in enumerate(hostile.items()):
            answer_id = store.save_answer(question=question, answer=answer, mode="extractive")
            assert store.add_feedback(
                answer_id=answer_id,
                user_id=f"U{number}",
                vote="up",
                channel="C1",
                message_ts=f"1.{number}",
            )
    out = tmp_path / "votes.csv"
    result = CliRunner().invoke(app, ["feedback", "export", "-o", str(out)])
    assert result.exit_code == 0, result.output
    with out.open(newline="", encoding="utf-8") as handle:
        rows = {row["user_id"]: row for row in csv.DictReader(handle)}
    assert rows["U0"]["question"] == '\'=HYPERLINK("http://x","y")'
    assert rows["U0"]["answer"] == "'+cmd|' /C calc'!A0"
    assert (rows["U1"]["question"], rows["U1"]["answer"]) == ("'@SUM(1+1)", "'-2+3")
    assert (rows["U2"]["question"], rows["U2"]["answer"]) == ("'\t=1+1", "'\r=1+1")
    assert rows["U3"]["question"] == "What is =this?"  # only a leading formula character
    assert rows["U3"]["vote"] == "up"


# ---------------------------------------------------------------- the hostile feed set
GOOD_TITLES = {
    "Nested neighbour one",
    "Nested neighbour two",
    "Nested neighbour three",
    "EscapedNUL title",
    "After the NUL line",
    "Before bad bytes",
    "After bad bytes",
    "Escape title",
    "Carriage return title",
    "Old Mac line end",
    "Bidi gnirts override isolate",
    "Zerowidthspoof softhyphen tags",
    "Coder \U0001f469\u200d\U0001f4bb and \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
    "Good before the break",
    "Good after the break",
    "Before the huge cell",
}


def _paperbot(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env, "COLUMNS": "200"},
        timeout=300,
    )


@pytest.mark.integration
def test_hostile_feed_set_leaves_exactly_the_good_records(
    data_env: dict[str, str], tmp_path: Path
) -> None:
    huge = tmp_path / "huge_cell.csv"  # one cell over csv's old 16 MB limit, then a good row
    with huge.open("wb") as out:
        out.write(f'title,abstract\nBefore the huge cell,"{ABSTRACT}"\n'.encode())
        out.write(b'Huge,"' + b"x" * (17 * 1024 * 1024) + b'"\n')
        out.write(f'Never silently lost,"{ABSTRACT}"\n'.encode())
    feeds = [*sorted(str(p) for p in HOSTILE.iterdir() if p.suffix != ".md"), str(huge)]
    ingest = _paperbot(data_env, "ingest", *feeds)
    printed = ingest.stdout + ingest.stderr
    assert ingest.returncode == 1, printed  # whole feeds failed: said, not hidden
    assert "Traceback" not in printed and "\x1b" not in printed and "\x07" not in printed
    errors = [line for line in ingest.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 3, ingest.stderr
    assert any("nested_document.json is not a feed: nested too deeply" in e for e in errors)
    assert any("control_header.csv: CSV is missing column(s) abstract" in e for e in errors)
    assert any("huge_cell.csv: line 3:" in e and "rest of the file was not" in e for e in errors)

    listed = _paperbot(data_env, "papers", "list", "--json", "--limit", "100")
    assert listed.returncode == 0, listed.stderr
    assert {p["title"] for p in json.loads(listed.stdout)} == GOOD_TITLES

    # the user's text is never markup, whatever the search finds
    search = _paperbot(data_env, "search", "[/bold] x", "--since", "2099-01-01")
    assert search.returncode == 0, search.stderr
    assert "No papers match '[/bold] x'" in search.stdout and "Traceback" not in search.stderr

    again = _paperbot(data_env, "ingest", *feeds)
    assert again.returncode == 1 and "Traceback" not in again.stdout + again.stderr
    relisted = _paperbot(data_env, "papers", "list", "--json", "--limit", "100")
    assert {p["title"] for p in json.loads(relisted.stdout)} == GOOD_TITLES
