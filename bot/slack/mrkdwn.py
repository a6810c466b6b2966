"""Markdown (what LLMs write) to Slack mrkdwn, with Slack's escaping kept.

Slack's mrkdwn is not Markdown: bold is `*x*`, italics `_x_`, strike `~x~`, links
`<url|text>`, there are no headings and lists are plain lines. Model output arrives as
Markdown, and `**bold**` shown raw reads as noise. `to_mrkdwn` converts the common forms and
leaves code (inline and fenced) untouched; every `&`, `<` and `>` of the text is escaped
first, so a model (or an abstract it quotes) can never inject a mention, a channel ping or a
link of its own. Pure functions; bot/slack/blocks.py uses them.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"```.*?(?:```|\Z)", re.S)
_CODE = re.compile(r"`[^`\n]+`")
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^\s)]+)\)")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_BULLET = re.compile(r"^(\s*)[-*+]\s+", re.M)
_PLACEHOLDER = "\x00{}\x00"


def escape(text: str) -> str:
    """Slack's three control characters, escaped (text shown as written)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    """Slack mrkdwn for Markdown text: bold, italics, strike, links, headings and bullets
    converted; code spans and fenced blocks kept verbatim (escaped)."""
    kept: list[str] = []

    def keep(match: re.Match[str]) -> str:
        kept.append(escape(match.group(0)))
        return _PLACEHOLDER.format(len(kept) - 1)

    text = _FENCE.sub(keep, markdown.replace("\x00", "").replace("\x01", ""))
    text = _CODE.sub(keep, text)
    text = escape(text)
    links: list[str] = []

    def link(match: re.Match[str]) -> str:
        label, url = match.group(1), match.group(2)
        # the URL was escaped with the text; Slack wants `|` and `>` out of it
        links.append(f"<{url.replace('|', '%7C')}|{label.replace('|', '/')}>")
        return _PLACEHOLDER.format(f"L{len(links) - 1}")

    text = _LINK.sub(link, text)
    text = _HEADING.sub(lambda m: f"\x01{m.group(1).strip('*_ ')}\x01", text)  # bold, later
    text = _BULLET.sub(lambda m: f"{m.group(1)}• ", text)
    text = _ITALIC_STAR.sub(r"_\1_", text)  # before bold: `*x*` is Markdown italics
    text = _BOLD.sub(r"*\2*", text)
    text = _STRIKE.sub(r"~\1~", text).replace("\x01", "*")
    for i, value in enumerate(links):
        text = text.replace(_PLACEHOLDER.format(f"L{i}"), value)
    for i, value in enumerate(kept):
        text = text.replace(_PLACEHOLDER.format(i), value)
    return text
