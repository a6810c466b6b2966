"""The claim verifier: what an answer sentence states must be in the source it cites.

The model is not trusted. A sentence of its answer passes only when it cites a source that was
given to it, every number (with its unit) and every named entity in it (method, dataset and
model names: capitalised, CamelCase, acronym or alphanumeric tokens) occurs in the text of the
cited sources, and its support score reaches the threshold (`answers.qa` measures that).

Numbers are compared after normalisation, so the same quantity written differently matches:
``~7 s`` = ``∼7 seconds`` = ``sim7 seconds`` (LaTeX residue in abstracts), ``8x`` = ``8×`` =
``8 times``, ``52 %`` = ``52%`` = ``52 percent``, ``1,000`` = ``1000``, ``7B`` = ``7 billion``.
Pure functions: no model, no store.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from answers.citations import answer_sentences, strip_citations
from answers.models import SentenceCheck

# Unit spellings -> canonical unit, or a scale factor for counts (k, M, B).
_UNITS: dict[str, str] = {
    "%": "%",
    "percent": "%",
    "per cent": "%",
    "percentage points": "pp",
    "pp": "pp",
    "x": "x",
    "times": "x",
    "fold": "x",
    "s": "s",
    "sec": "s",
    "secs": "s",
    "second": "s",
    "seconds": "s",
    "ms": "ms",
    "millisecond": "ms",
    "milliseconds": "ms",
    "min": "min",
    "mins": "min",
    "minute": "min",
    "minutes": "min",
    "h": "h",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "hours": "h",
    "day": "day",
    "days": "day",
    "gb": "gb",
    "tb": "tb",
    "mb": "mb",
}
_SCALES: dict[str, float] = {
    "k": 1e3,
    "thousand": 1e3,
    "m": 1e6,
    "million": 1e6,
    "b": 1e9,
    "billion": 1e9,
    "t": 1e12,
    "trillion": 1e12,
}
_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
        ]
    )
} | {"twenty": 20, "thirty": 30, "fifty": 50, "hundred": 100}
# Longest spellings first, so "seconds" wins over "s" and "percentage points" over "pp".
_UNIT_ALT = "|".join(
    re.escape(u) for u in sorted([*_UNITS, *_SCALES], key=len, reverse=True) if u != "%"
)
_NUMBER = r"\d{1,3}(?:,\d{3})+(?!\d)|\d+(?:\.\d+)?"
_QUANTITY = re.compile(
    rf"(?<![\w.,])(?:(?<![A-Za-z]-)|(?<=\dx-))(?P<num>{_NUMBER})\s?(?:(?P<pct>%)|(?P<unit>{_UNIT_ALT})(?![\w]))?(?![\w%])",
    re.IGNORECASE,
)
_WORD_QUANTITY = re.compile(
    rf"\b(?P<num>{'|'.join(_NUMBER_WORDS)})[\s-](?P<unit>{_UNIT_ALT})\b", re.IGNORECASE
)
# Words that start with a capital without naming anything (sentence openers, pronouns, months).
_COMMON = frozenset(
    [
        "a",
        "an",
        "and",
        "as",
        "at",
        "but",
        "by",
        "both",
        "each",
        "for",
        "from",
        "further",
        "furthermore",
        "here",
        "however",
        "i",
        "if",
        "in",
        "instead",
        "it",
        "its",
        "moreover",
        "no",
        "not",
        "of",
        "on",
        "one",
        "our",
        "overall",
        "so",
        "such",
        "than",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "thus",
        "to",
        "together",
        "unlike",
        "we",
        "when",
        "where",
        "which",
        "while",
        "with",
        "yes",
        "finally",
        "first",
        "second",
        "third",
        "also",
        "additionally",
        "specifically",
        "compared",
    ]
)
_TOKEN = re.compile(r"[^\s/()\[\]{}\"“”‘’«»,;:!?]+")


@dataclass(frozen=True, slots=True)
class Quantity:
    """A number as stated, with its canonical unit ("" = a bare number)."""

    value: float
    unit: str
    text: str  # as written in the sentence, for messages

    def matches(self, other: Quantity) -> bool:
        if abs(self.value - other.value) > 1e-9 * max(1.0, abs(self.value)):
            return False
        return self.unit == other.unit or not self.unit or not other.unit


def normalize(text: str) -> str:
    """NFKC, one tilde for every "approximately" sign, one ``x`` for every multiplication
    sign, LaTeX residue (``sim7``, ``1.42times``) spelled out, no thin or no-break spaces."""
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"[∼≈~]|\\sim\b|\bsim(?=\d)|\bapprox(?=\d)", " ~", text)
    text = re.sub(r"(?<=\d)\s?(?:×|\\times|times)(?![a-z])", "x", text)
    text = re.sub(r"(?<=\d)[\u2009\u202f\u00a0](?=\d)", "", text)  # 1 000 (thin space)
    return text.replace("\u2212", "-")


def quantities(text: str) -> list[Quantity]:
    """Every number with its unit in ``text`` (citation markers excluded)."""
    text = normalize(strip_citations(text))
    found: list[Quantity] = []
    for match in _QUANTITY.finditer(text):
        value = float(match.group("num").replace(",", ""))
        unit = "%" if match.group("pct") else (match.group("unit") or "")
        found.append(_quantity(value, unit, match.group(0).strip()))
    for match in _WORD_QUANTITY.finditer(text):
        value = float(_NUMBER_WORDS[match.group("num").lower()])
        found.append(_quantity(value, match.group("unit"), match.group(0)))
    return found


def _quantity(value: float, unit: str, text: str) -> Quantity:
    # "M" and "T" count millions and trillions only in capitals ("5 m" is not 5 million).
    lower = unit.lower()
    if unit in ("M", "T") or lower in ("k", "b", "thousand", "million", "billion", "trillion"):
        return Quantity(value * _SCALES[lower], "", text)
    return Quantity(value, _UNITS.get(lower, ""), text)


def entities(sentence: str) -> list[str]:
    """Named things in a sentence: CamelCase, acronyms, alphanumeric tokens (``GPT-4``,
    ``3D``), and capitalised words that do not open the sentence."""
    text = normalize(strip_citations(sentence))
    found: list[str] = []
    for i, match in enumerate(_TOKEN.finditer(text)):
        token = re.sub(r"(?:'s|’s)$", "", match.group(0).strip(".'-*_`"))
        if not token or not re.search(r"[A-Za-z]", token) or _QUANTITY.fullmatch(token):
            continue
        letters = re.sub(r"[^A-Za-z]", "", token)
        alnum = bool(re.search(r"\d", token))
        camel = bool(re.search(r"[a-z][A-Z]", token))
        acronym = sum(c.isupper() for c in letters) >= 2
        capital = token[0].isupper() and i > 0 and token.lower() not in _COMMON
        if alnum or camel or acronym or capital:
            found.append(token)
    return list(dict.fromkeys(found))


def missing_facts(sentence: str, source_texts: Iterable[str]) -> tuple[str, ...]:
    """The numbers and names of ``sentence`` that none of ``source_texts`` contains."""
    source = " ".join(source_texts)
    have = quantities(source)
    missing = [q.text for q in quantities(sentence) if not any(q.matches(h) for h in have)]
    known = _compact_forms(source)
    for name in entities(sentence):
        key = _compact(name)
        forms = {key, key + "s", key + "es", key.removesuffix("s"), key.removesuffix("es")}
        if key.endswith("ies"):
            forms.add(key[:-3] + "y")
        if key and not forms & known:
            missing.append(name)
    return tuple(dict.fromkeys(missing))


def _compact(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", unicodedata.normalize("NFKC", text).casefold())


def _compact_forms(text: str) -> set[str]:
    """Each word, each hyphen part, and each run of up to three words, compacted."""
    words = [w.strip(".'-*_`") for w in _TOKEN.findall(normalize(text))]
    words = [re.sub(r"(?:'s|’s)$", "", w) for w in words if w]
    forms: set[str] = set()
    for i, word in enumerate(words):
        forms.update(_compact(part) for part in re.split(r"[-‐–]", word))
        for n in (1, 2, 3):
            forms.add(_compact("".join(words[i : i + n])))
    forms.discard("")
    return forms


class SentenceBuffer:
    """Streamed text in, finished sentences out: a sentence is finished once the next one
    has begun (end punctuation, space, a capital) or its line has ended."""

    _END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"“])|\n")

    def __init__(self) -> None:
        self._text = ""

    def feed(self, piece: str) -> list[str]:
        self._text += piece
        ends = list(self._END.finditer(self._text))
        if not ends:
            return []
        done, self._text = self._text[: ends[-1].end()], self._text[ends[-1].end() :]
        return answer_sentences(done)


def complete_part(text: str) -> str:
    """The text up to its last finished sentence (a stream cut off mid-sentence)."""
    cut = max(text.rfind(". "), text.rfind(".\n"), text.rfind("]"), text.rfind("\n"))
    if text.rstrip().endswith((".", "!", "?", "]")):
        return text.strip()
    return text[: cut + 1].strip() if cut >= 0 else ""


def failures(checks: Sequence[tuple[str, str, tuple[str, ...]]]) -> str:
    """The verifier's objections, one line each, for the model's second attempt.

    ``checks`` are (sentence, status, missing) of the sentences that failed."""
    lines = []
    for sentence, status, missing in checks:
        short = strip_citations(sentence)[:160]
        if missing:
            why = "not in the cited source: " + ", ".join(missing)
        elif status == "uncited":
            why = "no valid source number"
        elif status == "repeated":
            why = "repeats an earlier sentence"
        else:
            why = "the cited source does not support it"
        lines.append(f"- “{short}”: {why}")
    return "\n".join(lines)


def retry_feedback(failures: str) -> str:
    return (
        "Your previous answer could not be verified against the sources:\n"
        f"{failures}\n"
        "Answer again. Every sentence must cite the source it comes from, and every number and "
        "name in it must appear in that source.\n"
    )


def sentence_flags(checks: Sequence[SentenceCheck]) -> list[str]:
    flags = []
    for i, check in enumerate(checks, start=1):
        short = strip_citations(check.text)[:80]
        if check.status == "uncited":
            flags.append(f"Sentence {i} states a claim without a citation: “{short}”")
        elif check.status == "unsupported" and check.missing:
            flags.append(
                f"Sentence {i} states {', '.join(check.missing)}, which its cited source does "
                f"not contain: “{short}”"
            )
        elif check.status == "unsupported":
            flags.append(
                f"Sentence {i} is weakly supported by its citation "
                f"(support {check.support:.2f}): “{short}”"
            )
    return flags


REMOVED_FLAG = "Removed an unverified sentence"  # how each removal's flag starts


def removal_flags(removed: Sequence[SentenceCheck]) -> list[str]:
    flags = []
    for check in removed:
        short = check.text[:80]
        if check.missing:
            why = f"{', '.join(check.missing)} not in its cited source"
        elif check.status == "uncited":
            why = "no valid citation"
        else:
            why = f"weak support {check.support or 0:.2f}"
        flags.append(f"{REMOVED_FLAG} ({why}): “{short}”")
    return flags
