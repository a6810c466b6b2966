"""Credentials out of messages: the one place text is scrubbed before a user sees it.

An error body from an LLM server, a Chroma server or Slack may echo the request, key
included; `doctor` and the CLI's error line print such text. `redact` replaces anything that
looks like a credential (OpenAI-style `sk-…` keys, Slack `xoxb-`/`xoxp-`/`xapp-`… tokens,
`Bearer …`/`Basic …` authorization values, `api_key=…`-style assignments) and the exact
values of the secrets the settings hold (`secret_values`) with a marker that keeps the kind.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MARK = "[redacted]"

_PATTERNS = (
    # OpenAI and compatible keys: sk-..., sk-proj-..., sk-ant-...
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), f"sk-{MARK}"),
    # Slack tokens: bot, user, app-level, refresh, config (xoxb-, xoxp-, xapp-, xoxe-, ...)
    (re.compile(r"\bx(?:ox[a-z]|app)-[A-Za-z0-9\-]{6,}"), f"xox-{MARK}"),
    # Authorization header values
    (re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=\-]{8,}", re.IGNORECASE), rf"\1 {MARK}"),
    # api_key=..., "api-key": "...", token: ..., secret=..., password=...
    (
        re.compile(
            r"""(?P<key>\b(?:api[_-]?key|access[_-]?token|auth[_-]?token|token|secret|password"""
            r"""|client[_-]?secret|signing[_-]?secret)["']?\s*[:=]\s*["']?)"""
            r"""(?P<value>[^\s"',;&}]{6,})""",
            re.IGNORECASE,
        ),
        rf"\g<key>{MARK}",
    ),
)

# a configured secret shorter than this is not searched for on its own (it would blank out
# ordinary words); the patterns above still catch it in its usual shapes
_MIN_SECRET = 6


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every credential-looking substring and every value in ``secrets``
    replaced by a marker."""
    for secret in sorted({s for s in secrets if s and len(s) >= _MIN_SECRET}, key=len)[::-1]:
        text = text.replace(secret, MARK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def secret_values(*settings: Any) -> list[str]:
    """The plain values of every `SecretStr` field of these settings objects (pydantic
    settings; any object with `model_fields` works), to pass to `redact`."""
    from pydantic import SecretStr

    values: list[str] = []
    for obj in settings:
        if obj is None:
            continue
        for name in getattr(type(obj), "model_fields", {}):
            value = getattr(obj, name, None)
            if isinstance(value, SecretStr):
                values.append(value.get_secret_value())
    return values
