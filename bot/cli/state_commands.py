"""`paperbot state check|backup|restore|rebuild|reindex`: the data dir's files as a whole.

The work is `retrieval.StateAdmin`'s; these commands print it (a line per file, or `--json`:
one object on stdout, `{"error": ...}` when the command refused). A check that finds a
problem, and every refusal, exits 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bot.cli import options

if TYPE_CHECKING:
    from retrieval import StateAdmin

state_app = typer.Typer(
    help="Check, back up, restore or rebuild the data dir's SQLite files "
    "(state.sqlite3: the corpus; bot.sqlite3: subscriptions, schedules, feedback, feeds).",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]


def register(app: typer.Typer) -> None:
    app.add_typer(state_app, name="state")


@contextmanager
def _admin() -> Iterator[StateAdmin]:
    from retrieval import StateAdmin

    admin = StateAdmin(options.settings())
    try:
        yield admin
    finally:
        admin.close()


def _run(as_json: bool, work: Callable[[StateAdmin], dict[str, Any]]) -> dict[str, Any]:
    """Run ``work``; with --json a refusal is `{"error": ...}` on stdout and exit code 1."""
    from retrieval import PaperbotError

    try:
        with _admin() as admin:
            return work(admin)
    except PaperbotError as exc:
        if not as_json:
            raise
        typer.echo(json.dumps({"error": str(exc)}))
        raise typer.Exit(1) from None


@state_app.command("check")
def check(as_json: JsonOpt = False) -> None:
    """Check both files (SQLite's quick_check, schema version, rows per table); exit 1 when
    one is damaged or was emptied."""
    report = _run(as_json, lambda admin: admin.check())
    if as_json:
        typer.echo(json.dumps(report))
    else:
        out = options.out()
        for name, found in report["files"].items():
            if not found["exists"]:
                out.print(f"{name}: absent (created on first use)", markup=False)
            elif found["ok"]:
                rows = ", ".join(f"{t} {n:,}" for t, n in found["rows"].items())
                out.print(
                    f"{name}: ok, schema v{found['schema_version']}, "
                    f"{found['size']:,} bytes ({rows or 'no tables'})",
                    markup=False,
                )
            else:
                out.print(f"{name}: DAMAGED: {'; '.join(found['problems'][:3])}", markup=False)
        if not report["ok"]:
            out.print(
                "Fix: `paperbot state restore BACKUP_DIR` (a backup), or `paperbot state "
                "rebuild` / `paperbot state rebuild --bot` (salvage the readable rows).",
                markup=False,
            )
    if not report["ok"]:
        raise typer.Exit(1)


@state_app.command("backup")
def backup(
    dest: Annotated[
        Path | None,
        typer.Argument(help="A new folder for the copies (default: DATA_DIR/backups/<time>)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy state.sqlite3 and bot.sqlite3 consistently, while paperbot runs (SQLite's
    online backup)."""
    report = _run(as_json, lambda admin: admin.backup(dest))
    if as_json:
        typer.echo(json.dumps(report))
        return
    files = ", ".join(f"{name} ({size:,} bytes)" for name, size in report["files"].items())
    options.out().print(
        f"Backed up {files} to {report['backup']}\n"
        f"Restore with: paperbot state restore {report['backup']}",
        markup=False,
    )


@state_app.command("restore")
def restore(
    source: Annotated[Path, typer.Argument(help="A backup folder (or one backed-up file).")],
    as_json: JsonOpt = False,
) -> None:
    """Put a backup in place (refused while paperbot runs on this data dir); the replaced
    files are kept as <name>.bak."""
    report = _run(as_json, lambda admin: admin.restore(source))
    if as_json:
        typer.echo(json.dumps(report))
        return
    out = options.out()
    for name in report["files"]:
        kept = report["kept"].get(name)
        note = f"; the previous file is kept as {kept}" if kept else ""
        out.print(f"Restored {name} from {report['restored_from']}{note}", markup=False)


@state_app.command("rebuild")
def rebuild(
    bot: Annotated[
        bool, typer.Option("--bot", help="Rebuild bot.sqlite3 instead of state.sqlite3.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Salvage the readable rows of a damaged file into a new one (the damaged file is kept
    as <name>.damaged) and say what could not be recovered."""
    name = "bot.sqlite3" if bot else "state.sqlite3"
    report = _run(as_json, lambda admin: admin.rebuild(name))
    if as_json:
        typer.echo(json.dumps(report))
        return
    out = options.out()
    rows = ", ".join(f"{t} {n:,}" for t, n in report["rows"].items())
    out.print(f"Rebuilt {report['file']}: {rows or 'nothing was readable'}", markup=False)
    out.print(f"The damaged file is kept as {report['damaged_copy']}", markup=False)
    if report["damaged_tables"]:
        out.print(
            f"Rows lost on damaged pages of: {', '.join(report['damaged_tables'])}", markup=False
        )
    lost = report.get("lost")
    if isinstance(lost, dict):
        if lost.get("papers"):
            shown = ", ".join(lost["ids"][:10]) + (" …" if len(lost["ids"]) > 10 else "")
            out.print(f"Not recovered: {lost['papers']} papers ({shown})", markup=False)
        out.print(lost["note"], markup=False)
    elif lost:
        out.print(f"Not recovered: {lost}", markup=False)
    if not bot:
        out.print(
            "Next: `paperbot ingest …` (or the feeds) repairs the vector index.", markup=False
        )


@state_app.command("reindex")
def reindex(as_json: JsonOpt = False) -> None:
    """Bring the vector index back in step with the state (after a crash, or into a new
    embedded index after moving a broken one aside): vectors come from the embedding cache."""
    from retrieval import Corpus, PaperbotError

    corpus = Corpus(options.settings())
    try:
        added, removed = corpus.repair_if_needed()
        bm25_chunks = corpus.rebuild_lexical_index()  # derived data too: rebuilt from the state
        where, collection, vectors = corpus.store_status()
    except PaperbotError as exc:
        if not as_json:
            raise
        typer.echo(json.dumps({"error": str(exc)}))
        raise typer.Exit(1) from None
    finally:
        corpus.close()
    report = {
        "added": added,
        "removed": removed,
        "vectors": vectors,
        "collection": collection,
        "bm25_chunks": bm25_chunks,
    }
    if as_json:
        typer.echo(json.dumps({**report, "where": where}))
        return
    options.out().print(
        f"{collection} at {where}: {vectors:,} vectors ({added:,} added, {removed:,} removed)",
        markup=False,
    )
