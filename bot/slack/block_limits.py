"""Slack's documented Block Kit limits, checked: a message in, the broken limits out.

Pure and dependency-free, so the tests apply it to every message paperbot builds (answers,
search results, digests of any size, notifications) and a renderer can assert on its own
output. The numbers are Slack's (docs.slack.dev/reference/block-kit): a message carries at
most 50 blocks; a section's text at most 3,000 characters and at most 10 fields of 2,000; a
header's plain text 150; a context block 10 elements; an actions block 25 elements; a
context_actions block 5; a button's text 75 and value 2,000; an image's URL 3,000 and alt
text 2,000; block ids and action ids 255; the top-level fallback text we cap at 3,900 (Slack
truncates longer ones; 40,000 is its hard limit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MAX_BLOCKS = 50
MAX_TEXT = 3900
SECTION_TEXT = 3000
SECTION_FIELDS = 10
FIELD_TEXT = 2000
HEADER_TEXT = 150
CONTEXT_ELEMENTS = 10
CONTEXT_TEXT = 3000
ACTIONS_ELEMENTS = 25
CONTEXT_ACTIONS_ELEMENTS = 5
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
IMAGE_URL = 3000
ALT_TEXT = 2000
ID_CHARS = 255
INPUT_LABEL = 2000
PLACEHOLDER_TEXT = 150


def violations(text: str | None, blocks: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every limit the message (fallback ``text`` and ``blocks``) breaks, one line each;
    empty when Slack would accept it."""
    found: list[str] = []
    if text is not None and not text.strip():
        found.append("fallback text is empty (notifications and screen readers show nothing)")
    if text is not None and len(text) > MAX_TEXT:
        found.append(f"fallback text has {len(text)} characters (> {MAX_TEXT})")
    if not 1 <= len(blocks) <= MAX_BLOCKS:
        found.append(f"{len(blocks)} blocks (1..{MAX_BLOCKS})")
    for number, block in enumerate(blocks):
        found += [f"block {number} ({block.get('type')}): {v}" for v in _block(block)]
    return found


def _block(block: Mapping[str, Any]) -> list[str]:
    kind = block.get("type")
    found = _id(block, "block_id")
    if kind == "section":
        found += _section(block)
    elif kind == "header":
        found += _plain(block.get("text"), HEADER_TEXT, "header text", required=True)
    elif kind == "context":
        elements = block.get("elements") or []
        found += _count(elements, 1, CONTEXT_ELEMENTS, "context elements")
        for element in elements:
            if element.get("type") == "image":
                found += _image(element)
            else:
                found += _text(element, CONTEXT_TEXT, "context text", required=True)
    elif kind == "actions":
        elements = block.get("elements") or []
        found += _count(elements, 1, ACTIONS_ELEMENTS, "actions elements")
        for element in elements:
            found += _element(element)
    elif kind == "context_actions":
        elements = block.get("elements") or []
        found += _count(elements, 1, CONTEXT_ACTIONS_ELEMENTS, "context_actions elements")
        for element in elements:
            if element.get("type") not in ("feedback_buttons", "icon_button"):
                found.append(f"{element.get('type')} is not allowed in context_actions")
            found += _element(element)
    elif kind == "image":
        found += _image(block)
    elif kind == "input":
        found += _plain(block.get("label"), INPUT_LABEL, "input label", required=True)
        found += _element(block.get("element") or {})
    elif kind not in ("divider", "markdown", "rich_text"):
        found.append(f"unknown block type {kind!r}")
    return found


def _section(block: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    fields = block.get("fields") or []
    if "text" not in block and not fields:
        found.append("a section needs text or fields")
    if "text" in block:
        found += _text(block["text"], SECTION_TEXT, "section text", required=True)
    found += _count(fields, 0, SECTION_FIELDS, "section fields")
    for field in fields:
        found += _text(field, FIELD_TEXT, "section field", required=True)
    accessory = block.get("accessory")
    if accessory is not None:
        found += _image(accessory) if accessory.get("type") == "image" else _element(accessory)
    return found


def _element(element: Mapping[str, Any]) -> list[str]:
    kind = element.get("type")
    found = _id(element, "action_id")
    if kind == "button":
        found += _plain(element.get("text"), BUTTON_TEXT, "button text", required=True)
        found += _length(element.get("value"), BUTTON_VALUE, "button value")
        found += _length(element.get("url"), IMAGE_URL, "button url")
    elif kind == "feedback_buttons":
        for side in ("positive_button", "negative_button"):
            button = element.get(side)
            if not isinstance(button, Mapping):
                found.append(f"feedback_buttons needs {side}")
                continue
            found += _plain(button.get("text"), BUTTON_TEXT, f"{side} text", required=True)
            found += _length(button.get("value"), BUTTON_VALUE, f"{side} value")
            if not button.get("value"):
                found.append(f"{side} needs a value")
    elif kind == "plain_text_input":
        found += _plain(element.get("placeholder"), PLACEHOLDER_TEXT, "input placeholder")
        max_length = element.get("max_length")
        if max_length is not None and not 1 <= int(max_length) <= 3000:
            found.append(f"plain_text_input max_length {max_length} (1..3000)")
    elif kind == "image":
        found += _image(element)
    return found


def _image(image: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    url = image.get("image_url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        found.append(f"image needs an http(s) image_url (got {url!r})")
    found += _length(url, IMAGE_URL, "image_url")
    alt = image.get("alt_text")
    if not isinstance(alt, str) or not alt:
        found.append("image needs alt_text")
    found += _length(alt, ALT_TEXT, "alt_text")
    return found


def _text(obj: Any, limit: int, what: str, *, required: bool = False) -> list[str]:
    if obj is None:
        return [f"{what} is missing"] if required else []
    if not isinstance(obj, Mapping) or obj.get("type") not in ("mrkdwn", "plain_text"):
        return [f"{what} is not a text object"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [f"{what} is empty"]
    return _length(text, limit, what)


def _plain(obj: Any, limit: int, what: str, *, required: bool = False) -> list[str]:
    found = _text(obj, limit, what, required=required)
    if isinstance(obj, Mapping) and obj.get("type") != "plain_text":
        found.append(f"{what} must be plain_text")
    return found


def _length(value: Any, limit: int, what: str) -> list[str]:
    if isinstance(value, str) and len(value) > limit:
        return [f"{what} has {len(value)} characters (> {limit})"]
    return []


def _count(items: Sequence[Any], low: int, high: int, what: str) -> list[str]:
    return [] if low <= len(items) <= high else [f"{len(items)} {what} ({low}..{high})"]


def _id(obj: Mapping[str, Any], key: str) -> list[str]:
    return _length(obj.get(key), ID_CHARS, key)
