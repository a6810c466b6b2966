"""BM25's analyzer: how a text becomes index terms, for documents and questions alike.

A text is NFKD-folded and case-folded, split into ``[a-z0-9]+`` words (`words`), and each word
becomes its term (`term`): None for a stopword, else the word with its plural ending folded
('models' -> 'model'). `tokenize` is the two together. `lexical_segments.Segment.from_docs`
takes the two halves apart, so a segment build maps each distinct word to its column once.
"""

from __future__ import annotations

import functools
import re
import unicodedata

_WORD = re.compile(r"[a-z0-9]+")
# fmt: off
STOPWORDS = frozenset(
    {
        "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and",
        "any", "are", "as", "at", "be", "because", "been", "before", "being", "below",
        "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down",
        "during", "each", "few", "for", "from", "further", "had", "has", "have", "having",
        "he", "her", "here", "hers", "him", "his", "how", "i", "if", "in", "into", "introduce",
        "introduces", "is", "it", "its", "itself", "just", "me", "more", "most", "my", "no",
        "nor", "not", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "out",
        "over", "own", "paper", "present", "propose", "proposed", "same", "she", "should",
        "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "then",
        "there", "these", "they", "this", "those", "through", "to", "too", "under", "until",
        "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who",
        "whom", "why", "will", "with", "would", "you", "your",
    }
)
# fmt: on

# Every byte that is not [a-z0-9] becomes a space: ASCII text splits into exactly the words
# `_WORD` finds, ~3x faster than the regex (most abstracts are ASCII once folded).
_NOT_WORD = bytes(c if chr(c) in "abcdefghijklmnopqrstuvwxyz0123456789" else 32 for c in range(256))


def words(text: str) -> list[str]:
    """The text's words, folded (NFKD, casefold), stopwords included."""
    folded = unicodedata.normalize("NFKD", text).casefold()
    if folded.isascii():
        return folded.encode("ascii").translate(_NOT_WORD).decode("ascii").split()
    return _WORD.findall(folded)


def tokenize(text: str) -> list[str]:
    """Lower-case words without stopwords, with plural endings folded ('models' -> 'model')."""
    return [t for w in words(text) if (t := term(w)) is not None]


def stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@functools.lru_cache(maxsize=1 << 17)  # 10⁸ calls over 10⁶ chunks, few distinct words
def term(word: str) -> str | None:
    """A word's index term; None for a stopword."""
    return None if word in STOPWORDS else stem(word)
