"""Text typed by Slack users, made safe to store, search and send on.

Slack delivers JSON, which can carry a lone UTF-16 surrogate (``"\\ud83d"``: half an emoji,
from a broken client or a crafted request). Python keeps it in a ``str``, but no UTF-8
encoder takes it: SQLite, the tokenizer and every HTTP client after the ack would fail on
it. `clean` replaces each one with U+FFFD (the replacement character) and drops control
characters other than tab and newline, so the question is still answered.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def clean(text: str | None) -> str:
    """``text`` with lone surrogates replaced and control characters removed."""
    if not text:
        return ""
    return _CONTROL.sub("", _SURROGATE.sub(REPLACEMENT, text))
