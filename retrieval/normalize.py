"""Text clean-up and paper identity, shared by every source."""

from __future__ import annotations

import functools
import hashlib
import html
import re
import unicodedata
from collections.abc import Iterable
from datetime import date
from typing import Any

from retrieval.models import Paper, SourceName

# Real abstracts stay well under 5,000 characters; anything far larger is a scraping accident.
DEFAULT_MAX_ABSTRACT_CHARS = 20_000
MIN_ABSTRACT_CHARS = 20
MAX_TITLE_CHARS = 500

_JOINERS = frozenset("\u200c\u200d")
# CSI (ESC [ ... final, or C1 CSI), OSC (ESC ] ... BEL or ESC \\), and two-character escapes.
_ANSI_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]{0,512}(?:\x07|\x1b\\|\x9c)"
    r"|\x1b[ -/]*[0-~]"
)
_NO_JOINERS = dict.fromkeys(map(ord, _JOINERS))
_JOINER_RUN = re.compile("[\u200c\u200d]+")
# Old-style (hep-th/9901001) and new-style (2410.17243) arXiv ids, optional version.
_ARXIV_ID = re.compile(
    r"^(?:arxiv:)?(?P<id>(?:\d{4}\.\d{4,5})|(?:[a-z\-]+(?:\.[A-Z]{2})?/\d{7}))(?:v(?P<v>\d+))?$",
    re.IGNORECASE,
)
_ARXIV_URL = re.compile(r"arxiv\.org/(?:abs|pdf)/(?P<rest>[^?#\s]+?)(?:\.pdf)?/?$", re.IGNORECASE)
# A sentence ends at . ! ? followed by space and an upper-case letter, digit or opening bracket.
# Common abbreviations (e.g., i.e., et al.) must not split a sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[\"'“])")
_NO_SPLIT_BEFORE = re.compile(r"(?:\b(?:e\.g|i\.e|et al|etc|vs|cf|Fig|Eq|Sec|approx|resp)\.)$")


class InvalidRecord(ValueError):
    """A record cannot become a Paper; the message is the reason shown to the user."""


def clean_text(text: str) -> str:
    """Unescape HTML entities (feeds carry &#39;), NFC-normalise, collapse whitespace.

    LaTeX is kept as is: ``$O(n^2)$`` means something to the reader.
    """
    # A terminal escape sequence goes whole: dropping only its ESC would leave "[31m" behind.
    unescaped = html.unescape(text)
    if "\x1b" in unescaped or "\x9b" in unescaped or "\x9d" in unescaped:
        unescaped = _ANSI_SEQUENCE.sub("", unescaped)
    # Control and format characters other than whitespace are never meaningful in an
    # abstract, and some only deceive: bidi overrides, embeddings and isolates
    # (U+202A-U+202E, U+2066-U+2069), zero-width spaces (U+200B, U+2060, U+FEFF, U+180E),
    # soft hyphens, tag characters (U+E0000 block). Only the joiners are kept, where they
    # join: inside a word of a script that spells with them or inside an emoji sequence.
    if unescaped.isascii():  # the common case, at C speed
        visible = unescaped.translate(_ASCII_HIDDEN)
    else:  # decided once per distinct character (an abstract has ~60), not per character
        hidden = [ch for ch in set(unescaped) if not _shown(ch)]
        visible = unescaped.translate(dict.fromkeys(map(ord, hidden))) if hidden else unescaped
    if "\u200c" in visible or "\u200d" in visible:
        visible = _JOINER_RUN.sub(_joiner_in_place, visible)
    # Whitespace runs to one space: str.split() splits on exactly what `\s` matches
    # (str.isspace), ~5x faster than a regex substitution over an abstract.
    return " ".join(unicodedata.normalize("NFC", visible).split())


def _shown(ch: str) -> bool:
    return ch.isprintable() or ch.isspace() or ch in _JOINERS


_ASCII_HIDDEN = dict.fromkeys(i for i in range(128) if not _shown(chr(i)))


def _joiner_in_place(match: re.Match[str]) -> str:
    """One joiner (ZWNJ U+200C, ZWJ U+200D) between two characters it can join, else none."""
    text, start, end = match.string, match.start(), match.end()
    if start > 0 and end < len(text) and _joins(text[start - 1]) and _joins(text[end]):
        return match.group()[0]
    return ""


def _joins(ch: str) -> bool:
    """Emoji and their modifiers (So, Sk), and the letters and marks of the scripts that
    spell with joiners (Persian, Devanagari, ...); not Latin, where a joiner only hides."""
    category = unicodedata.category(ch)
    if category in ("So", "Sk"):
        return True
    return category[0] in "LM" and not ch.isascii() and "LATIN" not in unicodedata.name(ch, "")


@functools.lru_cache(maxsize=4096)  # an ingest asks for each title's key three times
def title_key(title: str) -> str:
    """A case- and punctuation-insensitive key for matching titles across sources."""
    # Without the joiners clean_text keeps: a paper's id stays what it was before they were.
    folded = unicodedata.normalize("NFKD", clean_text(title).translate(_NO_JOINERS)).casefold()
    return " ".join(re.findall(r"\w+", folded))


def title_hash_id(title: str) -> str:
    return "t:" + hashlib.sha1(title_key(title).encode()).hexdigest()[:16]


def parse_arxiv_id(raw: str | None) -> tuple[str, int | None] | None:
    """'2410.17243v2', 'https://arxiv.org/abs/2410.17243v2' -> ('2410.17243', 2).

    Also accepts 'arXiv:' prefixes and old-style ids; returns None for anything else.
    """
    if not raw:
        return None
    text = raw.strip()
    url_match = _ARXIV_URL.search(text)
    if url_match:
        text = url_match.group("rest")
    match = _ARXIV_ID.match(text)
    if not match:
        return None
    version = match.group("v")
    return match.group("id"), int(version) if version else None


def split_sentences(text: str) -> list[str]:
    """Split an abstract into sentences, keeping abbreviations like 'e.g.' intact."""
    pieces = _SENTENCE_END.split(text.strip())
    sentences: list[str] = []
    for piece in pieces:
        if sentences and _NO_SPLIT_BEFORE.search(sentences[-1]):
            sentences[-1] = f"{sentences[-1]} {piece}"
        elif piece:
            sentences.append(piece)
    return sentences


def _clean_names(authors: Iterable[str] | None) -> tuple[str, ...]:
    names = (clean_text(a) for a in authors or ())
    return tuple(n for n in names if n)


def make_paper(
    *,
    title: str | None,
    abstract: str | None,
    source: SourceName,
    arxiv_id: str | None = None,
    max_abstract_chars: int = DEFAULT_MAX_ABSTRACT_CHARS,
    authors: Iterable[str] | None = None,
    categories: Iterable[str] | None = None,
    published: date | None = None,
    updated: date | None = None,
    url: str | None = None,
    pdf_url: str | None = None,
    upvotes: int | None = None,
    comments: int | None = None,
    listed: date | None = None,
) -> Paper:
    """Validate and normalise one record into a Paper, or raise InvalidRecord with the reason."""
    clean_title = clean_text(title or "")
    clean_abstract = clean_text(abstract or "")
    _check_text(clean_title, clean_abstract, max_abstract_chars)
    parsed = parse_arxiv_id(arxiv_id) if arxiv_id else None
    if arxiv_id and parsed is None:
        raise InvalidRecord(
            f"{arxiv_id!r} is not an arXiv id (expected e.g. 2410.17243 or 2410.17243v2)"
        )
    fields: dict[str, Any] = {
        "title": clean_title,
        "abstract": clean_abstract,
        "source": source,
        "authors": _clean_names(authors),
        "categories": _clean_names(categories),
        "published": published,
        "updated": updated,
        "url": url or None,
        "pdf_url": pdf_url or None,
        "upvotes": upvotes,
        "comments": comments,
        "listed": listed,
    }
    if parsed:
        fields.update(paper_id=parsed[0], arxiv_id=parsed[0], version=parsed[1])
    else:
        fields["paper_id"] = title_hash_id(clean_title)
    return Paper(**fields)


def _check_text(title: str, abstract: str, max_abstract_chars: int) -> None:
    if not title:
        raise InvalidRecord("missing title")
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidRecord(
            f"title is {len(title):,} characters; a title has at most {MAX_TITLE_CHARS}"
        )
    if not abstract:
        raise InvalidRecord("missing or empty abstract")
    if len(abstract) < MIN_ABSTRACT_CHARS:
        raise InvalidRecord(
            f"abstract is only {len(abstract)} characters; at least {MIN_ABSTRACT_CHARS} are needed"
        )
    if len(abstract) > max_abstract_chars:
        raise InvalidRecord(
            f"abstract is {len(abstract):,} characters; the limit is {max_abstract_chars:,} "
            "(raise PAPERBOT_MAX_ABSTRACT_CHARS if this is really one abstract)"
        )
    if "\ufffd" in title or "\ufffd" in abstract:
        raise InvalidRecord("text contains bytes that are not valid UTF-8")


def describe(index: int, title: str | None = None) -> str:
    """How a record is named in error messages: 'record 3 ("Some title…")'."""
    if title:
        short = clean_text(title)
        short = short if len(short) <= 60 else short[:57] + "…"
        return f'record {index} ("{short}")'
    return f"record {index}"
