"""Topic words a question uses that the corpus never does ("sarcasm", "emoji", "code-switching").

`lexical.distinctive_terms` finds the names a question asks about (capitals, digits). A topic
written in lower case is harder: an absent lower-case word is as often a paraphrase
("hindering", "unrealistic") as a subject. Measured on the 750 ACLSum summary sentences used as
questions over their own 250 abstracts (docs/benchmarks.md), 136 contain a word absent from
the index; dropping words shaped like verbs, adjectives and adverbs (suffixes, negating
prefixes) leaves 67, and most of those are paraphrases of a paper the search finds well. So
an absent topic word refuses only together with a weak best dense match (the searcher's
``topic_max_dense``): the question is about something the corpus does not cover, not
a rewording of a paper it has.

A topic word here:
- a lower-case content word of the question (not a stopword, question word or name) that no
  document of the index has, and no index term shares its first five letters with ("switching"
  is covered by "switch"); words shaped like verbs, adjectives or adverbs ("-ing", "-ed",
  "-ly", "-ive", "un-", ...) are paraphrases more often than topics and are skipped;
- or a hyphenated compound ("code-switching", "fake-news") that neither the retrieved papers
  nor the papers where the corpus would write it (the best BM25 matches of its parts) write,
  with or without its hyphen; compounds that describe ("retrieval-based", "hand-crafted")
  are skipped.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Protocol

from retrieval.lexical import QUESTION_WORDS, name_terms
from retrieval.lexical_terms import STOPWORDS, tokenize

PREFIX_LETTERS = 5
# word shapes that are rarely a topic noun: inflected verbs, adjectives, adverbs
_NOT_NOUN_SUFFIXES = (
    "ing", "ed", "ly", "ous", "ive", "ful", "less", "able", "ible", "al", "ic", "ish", "est",
    "ize", "ise", "ier",
)  # fmt: skip
_NEGATING_PREFIXES = ("un", "non", "dis", "mis", "over", "under", "re")
# function words the short BM25 stopword list lacks (prepositions, adverbs, determiners)
_GENERIC = frozenset(
    {
        "above", "across", "actually", "almost", "along", "already", "although", "always",
        "among", "amongst", "another", "anyone", "anything", "around", "away", "behind",
        "beside", "besides", "beyond", "cannot", "despite", "either", "else", "elsewhere",
        "enough", "even", "ever", "every", "everything", "exactly", "hence", "however",
        "indeed", "instead", "least", "less", "like", "many", "maybe", "might", "much", "must",
        "near", "neither", "never", "nevertheless", "next", "nothing", "often", "onto",
        "otherwise", "perhaps", "please", "quite", "rather", "really", "seem", "seems",
        "several", "since", "someone", "something", "sometimes", "somewhere", "still", "thus",
        "together", "toward", "towards", "unless", "upon", "whatever", "whenever", "whereas",
        "whether", "within", "without", "whose", "yet",
        # how people ask about research: the asking, not the subject
        "advance", "article", "author", "breakthrough", "contribution", "corpus", "development",
        "field", "finding", "idea", "insight", "landscape", "latest", "literature", "overview",
        "progress", "publication", "recent", "research", "researcher", "state", "summary",
        "survey", "thought", "topic", "trend", "update", "writing",
        # common verbs in their base form (the suffix rule catches the inflected ones)
        "allow", "appear", "ask", "begin", "believe", "bring", "build", "call", "come",
        "consider", "continue", "cope", "create", "deal", "decide", "differ", "expect",
        "feel", "follow", "give", "happen", "hear", "hold", "keep", "know", "lead", "learn",
        "leave", "let", "look", "lose", "make", "meet", "move", "need", "offer", "open",
        "pass", "provide", "put", "raise", "reach", "read", "remain", "remember", "run",
        "see", "send", "serve", "set", "solve", "speak", "spend", "stand", "start", "stay",
        "stop", "suggest", "take", "talk", "tell", "think", "try", "turn", "understand",
        "want", "watch", "write",
        # comparatives (nouns end in -er too: "encoder", "speaker")
        "bigger", "cheaper", "closer", "deeper", "faster", "fewer", "greater", "harder",
        "higher", "larger", "later", "longer", "lower", "newer", "older", "quicker", "shorter",
        "slower", "smaller", "smarter", "stronger", "weaker", "wider", "worse",
    }
)  # fmt: skip
_COMPOUND = re.compile(r"\b([a-z]{2,}(?:-[a-z]{2,})+)\b")
# compound tails that make an adjective of a noun ("retrieval-based", "task-specific"): the
# compound describes, it does not name a topic
_DESCRIBING_TAILS = frozenset(
    {
        "agnostic", "aware", "based", "dependent", "driven", "free", "level", "like",
        "oriented", "prone", "related", "scale", "shot", "specific", "style", "wise",
    }
)  # fmt: skip


class Vocabulary(Protocol):
    """What the check reads of a BM25 index (retrieval/lexical.py)."""

    def document_frequency(self, term: str) -> int: ...

    def has_prefix(self, prefix: str) -> bool: ...


def absent_words(query: str, index: Vocabulary) -> list[str]:
    """The question's lower-case topic words that the index has never seen (see module doc)."""
    names = name_terms(query)
    out: list[str] = []
    for term in dict.fromkeys(tokenize(query)):
        if (
            len(term) < 4
            or any(ch.isdigit() for ch in term)  # amounts and names with digits: not this check
            or term in names
            or term in QUESTION_WORDS
            or term in STOPWORDS  # a plural the stopword list has in the singular ("papers")
            or term in _GENERIC
            or term.endswith(_NOT_NOUN_SUFFIXES)
            or term.startswith(_NEGATING_PREFIXES)
            or index.document_frequency(term) > 0
        ):
            continue
        if len(term) >= PREFIX_LETTERS and index.has_prefix(term[:PREFIX_LETTERS]):
            continue
        out.append(term)
    return out


def compounds(query: str) -> list[str]:
    """The question's hyphenated compounds that may name a topic ("code-switching"; not
    "retrieval-based", "hand-crafted")."""
    folded = unicodedata.normalize("NFKC", query).casefold()
    return [
        c
        for c in dict.fromkeys(_COMPOUND.findall(folded))
        if (tail := c.rsplit("-", 1)[1]) not in _DESCRIBING_TAILS
        and not tail.endswith("ed")
        and not c.startswith("non-")
    ]


def absent_compounds(query: str, texts: Iterable[str]) -> list[str]:
    """The question's compounds (`compounds`) that none of ``texts`` writes (hyphen, space or
    nothing between the parts; the last part may be inflected: "code-switched")."""
    found = compounds(query)
    if not found:
        return []
    haystack = [unicodedata.normalize("NFKC", t).casefold() for t in texts]
    out = []
    for compound in found:
        parts = compound.split("-")
        parts[-1] = parts[-1][:PREFIX_LETTERS]
        pattern = re.compile(r"\b" + r"[\s-]?".join(re.escape(p) for p in parts))
        if not any(pattern.search(text) for text in haystack):
            out.append(compound)
    return out


def absent_topics(query: str, index: Vocabulary, texts: Sequence[str]) -> tuple[str, ...]:
    """Topic words and compounds of the question that neither the index nor ``texts`` (the
    retrieved papers' titles and abstracts) contain."""
    return tuple(dict.fromkeys([*absent_words(query, index), *absent_compounds(query, texts)]))
