"""Pure parsing of `/papers` command text into a subcommand and its argument."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

SUBCOMMANDS = (
    "ask",
    "search",
    "summary",
    "digest",
    "subscribe",
    "unsubscribe",
    "subscriptions",
    "help",
)
ALIASES = {
    "q": "ask",
    "find": "search",
    "s": "search",
    "tldr": "summary",
    "summarize": "summary",
    "sub": "subscribe",
    "unsub": "unsubscribe",
    "subs": "subscriptions",
}
MAX_ARGUMENT_CHARS = 2000
MAX_TOPIC_CHARS = 200


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # one of SUBCOMMANDS
    argument: str = ""
    here: bool = False  # subscribe/unsubscribe for the channel instead of the user
    day: date | None = None  # digest
    problem: str | None = None  # why the text could not be understood (-> help)


def parse(text: str) -> Command:
    words = (text or "").strip().split(maxsplit=1)
    if not words:
        return Command("help")
    name = ALIASES.get(words[0].lower(), words[0].lower())
    rest = words[1].strip() if len(words) > 1 else ""
    if name not in SUBCOMMANDS:
        return Command("help", problem=f"Unknown command “{words[0][:40]}”.")
    if len(rest) > MAX_ARGUMENT_CHARS:
        return Command(
            "help",
            problem=f"That is {len(rest):,} characters; keep it under {MAX_ARGUMENT_CHARS:,}.",
        )
    return _with_argument(name, rest)


def _with_argument(name: str, rest: str) -> Command:
    if name in ("ask", "search", "summary") and not rest:
        return Command("help", problem=f"`{name}` needs some text after it.")
    if name == "digest":
        return _digest(rest)
    if name in ("subscribe", "unsubscribe"):
        words = rest.split()
        here = bool(words) and words[0].lower() == "here"
        topic = " ".join(words[1:] if here else words)
        if not topic:
            return Command(
                "help", problem=f"`{name}` needs a topic, e.g. `{name} diffusion models`."
            )
        if len(topic) > MAX_TOPIC_CHARS:
            return Command("help", problem=f"Keep topics under {MAX_TOPIC_CHARS} characters.")
        return Command(name, topic, here=here)
    return Command(name, rest)


def _digest(rest: str) -> Command:
    """`digest`, `digest <day>`, or `digest <day> <topic>`: one topic of that day's digest
    (the argument), as the digest's own "one topic on its own" hint writes it."""
    if not rest:
        return Command("digest")
    first, _, topic = rest.partition(" ")
    try:
        day = date.fromisoformat(first)
    except ValueError:
        return Command("help", problem=f"“{rest[:40]}” is not a date; use YYYY-MM-DD.")
    topic = " ".join(topic.split())
    if len(topic) > MAX_TOPIC_CHARS:
        return Command("help", problem=f"Keep topics under {MAX_TOPIC_CHARS} characters.")
    return Command("digest", topic, day=day)
