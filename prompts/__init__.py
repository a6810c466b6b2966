"""Prompt templates as Markdown files, loaded by name. No project imports.

A template file starts with a small header (``version: N``) between ``---`` lines, then one
section per chat role (``## system``, ``## user``). Placeholders are ``{name}``; any other brace
is literal text, so LaTeX or JSON in a template needs no escaping. The version is part of
every cache key built from a prompt's output, so editing a template invalidates its cache.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

# The exact words the answer prompt asks the model to use when the sources do not answer;
# the QA layer and the tests recognise a refusal by this sentinel.
CANNOT_ANSWER = "The indexed papers do not answer this question."

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_SECTION = re.compile(r"^## (system|user|assistant)\s*$", re.MULTILINE)


class PromptError(ValueError):
    """A template is missing, malformed, or rendered with the wrong values."""


@dataclass(frozen=True)
class Prompt:
    name: str
    version: int
    messages: tuple[tuple[str, str], ...]  # (role, template text)

    @property
    def placeholders(self) -> frozenset[str]:
        return frozenset(p for _, text in self.messages for p in _PLACEHOLDER.findall(text))

    @property
    def key(self) -> str:
        """Name and version, for cache keys: 'tldr@2'."""
        return f"{self.name}@{self.version}"

    def render(self, **values: str) -> list[tuple[str, str]]:
        """The chat messages with every placeholder filled; missing or unknown values fail."""
        missing = self.placeholders - values.keys()
        unknown = values.keys() - self.placeholders
        if missing or unknown:
            raise PromptError(
                f"prompt {self.name!r}: missing values {sorted(missing)}, unknown {sorted(unknown)}"
            )
        return [
            (role, _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text))
            for role, text in self.messages
        ]


def names() -> list[str]:
    """Every template shipped in this package."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name[:-3] for f in files if f.name.endswith(".md"))


@cache
def load(name: str) -> Prompt:
    """The template ``prompts/<name>.md``."""
    resource = resources.files(__name__) / f"{name}.md"
    if not resource.is_file():
        raise PromptError(f"no prompt template named {name!r} (have: {', '.join(names())})")
    return parse(name, resource.read_text(encoding="utf-8"))


def parse(name: str, text: str) -> Prompt:
    header, body = _split_header(name, text)
    try:
        version = int(header["version"])
    except (KeyError, ValueError):
        raise PromptError(f"prompt {name!r}: the header needs 'version: <integer>'") from None
    parts = _SECTION.split(body)
    messages = tuple(
        (role, content.strip()) for role, content in zip(parts[1::2], parts[2::2], strict=True)
    )
    if not messages or parts[0].strip():
        raise PromptError(f"prompt {name!r}: the body must be '## system' / '## user' sections")
    return Prompt(name, version, messages)


def _split_header(name: str, text: str) -> tuple[dict[str, str], str]:
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.DOTALL)
    if not match:
        raise PromptError(f"prompt {name!r}: missing the '---' header")
    header = {}
    for line in match.group(1).splitlines():
        key, _, value = line.partition(":")
        header[key.strip()] = value.strip()
    return header, match.group(2)
