"""The tests docs/robustness.md names exist (a row without its test is a claim, not a fact)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_REF = re.compile(r"`(?:(test_\w+\.py))?::(test_\w+)`|`(test_\w+\.py)`")


def referenced(doc: Path) -> list[tuple[str, str | None]]:
    """(test file, test name or None) for every reference; `::name` continues the last file."""
    refs: list[tuple[str, str | None]] = []
    for line in doc.read_text(encoding="utf-8").splitlines():
        current = None
        for match in _REF.finditer(line):
            file, name, bare = match.groups()
            if bare:
                refs.append((bare, None))
                continue
            current = file or current
            if current is not None:
                refs.append((current, name))
    return refs


def test_every_test_named_in_the_robustness_doc_exists() -> None:
    missing = []
    for file, name in referenced(ROOT / "docs" / "robustness.md"):
        path = ROOT / "tests" / file
        if not path.is_file():
            missing.append(file)
        elif name and not re.search(rf"^(async )?def {name}\(", path.read_text(), re.M):
            missing.append(f"{file}::{name}")
    assert missing == []
