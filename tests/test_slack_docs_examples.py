"""The Block Kit examples in docs/slack/ are real, within Slack's limits, and their Block Kit
Builder links open exactly them (docs/slack/render_examples.py writes both)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from bot.slack import block_limits

DOCS = Path(__file__).resolve().parent.parent / "docs" / "slack"
EXAMPLES = sorted(DOCS.glob("*.json"))
_ROW = re.compile(r"\[([\w.-]+\.json)\]\(\1\) \| \[Block Kit Builder\]\((\S+)\)")
BUILDER = "https://app.slack.com/block-kit-builder/#"


def test_there_is_an_answer_a_digest_and_search_results() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"answer.json", "digest-parent.json", "digest-topic.json", "search.json"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_is_within_slacks_limits(path: Path) -> None:
    message = json.loads(path.read_text(encoding="utf-8"))
    assert block_limits.violations(None, message["blocks"]) == []
    assert "more blocks not shown" not in path.read_text(encoding="utf-8")


def test_the_readme_links_open_exactly_the_saved_messages() -> None:
    links = dict(_ROW.findall((DOCS / "README.md").read_text(encoding="utf-8")))
    assert set(links) == {p.name for p in EXAMPLES}
    for name, url in links.items():
        assert url.startswith(BUILDER)
        opened = json.loads(unquote(url.removeprefix(BUILDER)))
        assert opened == json.loads((DOCS / name).read_text(encoding="utf-8")), name


def test_the_answer_and_the_digest_carry_the_feedback_buttons() -> None:
    for name in ("answer.json", "digest-parent.json"):
        last = json.loads((DOCS / name).read_text(encoding="utf-8"))["blocks"][-1]
        assert last["type"] == "context_actions"
        assert last["elements"][0]["type"] == "feedback_buttons"
