"""Examples for every command's `--help` (one home; main.py attaches them as epilogs, and
tests/test_cli_help.py checks that every command has some and that they parse)."""

from __future__ import annotations

from typing import Any

EXAMPLES: dict[str, tuple[str, ...]] = {
    "ingest": (
        "paperbot ingest data/sample/daily_papers_page.txt --date 2025-05-16",
        "paperbot ingest --hf-date yesterday",
        "paperbot ingest --arxiv-query 'cat:cs.CL AND ti:retrieval' --max-results 200",
        "paperbot ingest export.jsonl --feed team-picks --listed today --json",
        "paperbot ingest papers.jsonl --force",
        "paperbot ingest --arxiv-snapshot arxiv-metadata-oai-snapshot.json --categories cs.CL,cs.LG "
        "--since 2023-01-01",
        "paperbot ingest --arxiv-snapshot arxiv-metadata-oai-snapshot.json.gz --limit 100000 --json",
    ),
    "search": (
        'paperbot search "gaussian splatting for avatars" -k 5',
        'paperbot search "mixture of experts" --since 7d --json',
    ),
    "stats": ("paperbot stats", "paperbot stats --json"),
    "papers list": ("paperbot papers list --since 7d", "paperbot papers list --limit 20 --json"),
    "papers show": ("paperbot papers show 2410.17243", "paperbot papers show 'GVGEN'"),
    "papers delete": ("paperbot papers delete 2410.17243",),
    "ask": (
        'paperbot ask "Which paper introduces the Candidate Pool Strategy?"',
        'paperbot ask "What is new in mixture-of-experts training?" --json',
    ),
    "summarize": ("paperbot summarize 2410.17243", "paperbot summarize 'GVGEN' --json"),
    "digest": (
        "paperbot digest --date 2025-05-16",
        "paperbot digest --since 7d --json",
        "paperbot digest --post C0123456789",
    ),
    "eval retrieval": ("paperbot eval retrieval data/sample/dev_questions.jsonl",),
    "eval answers": ("paperbot eval answers data/sample/dev_questions.jsonl --json",),
    "eval summaries": ("paperbot eval summaries --split test",),
    "serve": ("paperbot serve", "paperbot serve --port 3000"),
    "chat": ("paperbot chat",),
    "doctor": ("paperbot doctor", "paperbot --data-dir /srv/paperbot/data doctor"),
    "schedule add": ("paperbot schedule add C0123456789 --time 09:00 --tz Europe/Berlin",),
    "schedule list": ("paperbot schedule list",),
    "schedule remove": ("paperbot schedule remove C0123456789",),
    "feedback export": ("paperbot feedback export --out feedback.csv",),
    "feeds add hf": ("paperbot feeds add hf", "paperbot feeds add hf --every 2h --tz UTC"),
    "feeds add arxiv": ("paperbot feeds add arxiv -c cs.CL -c cs.LG",),
    "feeds add url": ("paperbot feeds add url https://example.org/papers.jsonl --format jsonl",),
    "feeds add file": ("paperbot feeds add file /srv/drop/papers.csv",),
    "feeds list": ("paperbot feeds list", "paperbot feeds list --json"),
    "feeds remove": ("paperbot feeds remove hf",),
    "feeds enable": ("paperbot feeds enable hf",),
    "feeds disable": ("paperbot feeds disable hf",),
    "feeds run": ("paperbot feeds run", "paperbot feeds run hf"),
    "config show": ("paperbot config show", "paperbot config show --json"),
    "state check": ("paperbot state check", "paperbot state check --json"),
    "state backup": ("paperbot state backup", "paperbot state backup /srv/backups/paperbot"),
    "state restore": ("paperbot state restore /srv/backups/paperbot",),
    "state rebuild": ("paperbot state rebuild", "paperbot state rebuild --bot"),
    "state reindex": ("paperbot state reindex",),
}


def epilog(path: str) -> str | None:
    examples = EXAMPLES.get(path)
    if not examples:
        return None
    # one paragraph per example: Click/Rich keep them on their own lines
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in examples)


def attach(app: Any, prefix: str = "") -> None:
    """Set the epilog of every command of a typer app (and its sub-apps) that has none."""
    for command in app.registered_commands:
        name = command.name or (command.callback.__name__ if command.callback else "")
        path = f"{prefix}{name.replace('_', '-')}"
        if command.epilog is None:
            command.epilog = epilog(path)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            attach(group.typer_instance, f"{prefix}{group.name} ")


def command_paths(app: Any, prefix: str = "") -> list[str]:
    """Every command of the app as "group sub" paths (for the tests)."""
    paths = []
    for command in app.registered_commands:
        name = command.name or (command.callback.__name__ if command.callback else "")
        paths.append(f"{prefix}{name.replace('_', '-')}")
    for group in app.registered_groups:
        if group.typer_instance is not None:
            paths += command_paths(group.typer_instance, f"{prefix}{group.name} ")
    return paths
