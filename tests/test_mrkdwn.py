"""Markdown from a model becomes Slack mrkdwn; Slack's control characters stay escaped."""

from __future__ import annotations

import pytest

from bot.slack.mrkdwn import to_mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**GVGEN** is fast", "*GVGEN* is fast"),
        ("__bold__ and *italic* and _also_", "*bold* and _italic_ and _also_"),
        ("~~old~~ new", "~old~ new"),
        (
            "see [the paper](https://arxiv.org/abs/2403.12957)",
            "see <https://arxiv.org/abs/2403.12957|the paper>",
        ),
        ("## Results\nIt works.", "*Results*\nIt works."),
        ("- one\n* two\n+ three", "• one\n• two\n• three"),
        ("  - nested", "  • nested"),
        ("1. first\n2. second", "1. first\n2. second"),
        ("a * b * c and 2*3*4", "a * b * c and 2*3*4"),
        ("x < y && z > 0", "x &lt; y &amp;&amp; z &gt; 0"),
        ("`**not bold**` and **bold**", "`**not bold**` and *bold*"),
        ("```\n**code** <b>\n```", "```\n**code** &lt;b&gt;\n```"),
        ("rate of 52% [1]", "rate of 52% [1]"),
    ],
)
def test_markdown_to_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    "hostile",
    [
        "<!channel> look",
        "<@U123> hi",
        "<https://evil.example|click>",
        "[x](javascript:alert(1))",
        "**<!here>**",
    ],
)
def test_a_model_cannot_ping_or_inject_links(hostile: str) -> None:
    out = to_mrkdwn(hostile)
    assert "<!" not in out and "<@" not in out and "<https://evil" not in out
    assert "javascript:" not in out or "<javascript" not in out


def test_a_link_label_or_url_cannot_break_out() -> None:
    out = to_mrkdwn("[a|b](https://example.org/x|y)")
    assert out == "<https://example.org/x%7Cy|a/b>"
