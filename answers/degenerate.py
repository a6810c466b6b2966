"""Is a generated text degenerate? Pure checks for what a small model does to a TL;DR, a topic
name or a digest overview.

A small model loops (one sentence 14 times over), echoes its prompt ("Papers in the group:"
as a topic name), names things its sources never mention ("Mismatch of Shards" for MoS, a
number the abstract does not give), or answers a naming request with something that is not a
topic ("Research Papers"). Each check returns a `Problem` (what is wrong, in words a reader
can follow) or None; answers/summarize.py and answers/digest.py replace a degenerate text by
its extractive version and show the problem as a note.

Names are what a method, dataset or model is called: a word with a capital inside it or a
digit in it (MoS, GVGEN, LoRA, GPT4, 3D), a capitalised word inside a sentence (Gaussian,
Google), a run of capitalised words ("Mixture of Shards"). Each must occur in the sources,
case-insensitively and singular or plural alike, an acronym also as the words it abbreviates
(NER: "named entity recognition"); a run must occur as a run. Numbers must occur in the
sources as numbers (or spelled out: "four" supports 4).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Literal

from prompts import load
from retrieval import STOPWORDS, split_sentences

ProblemKind = Literal["repetition", "prompt echo", "unknown name", "unknown number", "not a topic"]

LOOP_NGRAM = 4  # a run of this many words ...
LOOP_REPEATS = 3  # ... seen this often is a loop
ECHO_RUN = 6  # this many consecutive words of a template in the output is an echo
MAX_LISTED = 3  # names or numbers quoted in one problem
QUOTE_CHARS = 60
MAX_INITIALS = 5  # an acronym of up to this many words of a source counts as used by it

# Field and calendar words an overview may use without a source (its prompt speaks of an "ML
# team" and gives a date); TL;DRs and topic names get only "TL;DR" for free.
_COMMON_WORDS = """
    ai ml nlp llm vlm mllm gpu cpu rl cv 1d 2d 3d 4d sota api tl dr tldr arxiv hugging face
    january february march april may june july august september october november december
    monday tuesday wednesday thursday friday saturday sunday today
"""
_COMMON_NAMES = frozenset(_COMMON_WORDS.split())
_TLDR_NAMES = frozenset({"tl", "dr", "tldr"})
# Words that say a text is about papers in general, not what they are about.
_META = """
    paper papers group groups topic topics label labels title titles research study studies
    various miscellaneous misc other others general related work works list collection
    assorted diverse mixed selected set sets day daily digest article articles area areas
    field fields theme themes recent latest new
"""
_META_WORDS = frozenset(_META.split())
_TOO_BROAD = {"machine learning", "deep learning", "artificial intelligence", "ai research"}
_CHATTY = re.compile(
    r"^(?:here|sure|certainly|okay|ok|i|i'm|as an|the (?:topic|label)|this group|these papers)\b",
    re.IGNORECASE,
)
_UNITS = """zero one two three four five six seven eight nine ten eleven twelve thirteen
    fourteen fifteen sixteen seventeen eighteen nineteen twenty"""
_SPELLED = {w: str(i) for i, w in enumerate(_UNITS.split())} | {"hundred": "100"}
_COUNT_NOUN = re.compile(
    r"\s*(?:new\s+)?(?:papers?|topics?|groups?|themes?|works?|stud(?:y|ies)|articles?)\b", re.I
)

_TOKEN = re.compile(r"[A-Za-z0-9]+")
_ECHO_WORD = re.compile(r"[a-z0-9]+(?:[;'’][a-z0-9]+)*")
_WITH_UNIT = re.compile(r"\d+(?:x|k|m|b|bn|s|ms|h|gb|tb)", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![A-Za-z0-9_.])\d+(?:[.,]\d+)*")
_OPENERS = ":;“\"‘(['—–\n"  # a capital after one of these starts a phrase, like a sentence
_CONNECTORS = frozenset({"of", "for", "to"})
_PLACEHOLDER = re.compile(r"\{[a-z_][a-z0-9_]*\}")
_QUOTED = re.compile(r"\"[^\"\n]*\"|“[^”\n]*”")
_LABEL_LINE = re.compile(r"^([^\s:{][^:{]{0,40}):\s*(?:\{[a-z_][a-z0-9_]*\})?\s*$")


@dataclass(frozen=True)
class Problem:
    """Why a generated text is not shown: its kind and a verb phrase for a note
    ('repeats the sentence “…” 14 times')."""

    kind: ProblemKind
    detail: str

    def __str__(self) -> str:
        return self.detail


# ---------------------------------------------------------------------------- the checks
def check_tldr(text: str, title: str, abstract: str) -> Problem | None:
    """A TL;DR: no loop, no prompt echo, only names and numbers of its paper."""
    sources = (title, abstract)
    return (
        repetition(text)
        or prompt_echo(text, "tldr")
        or unknown_names(text, sources, where="the abstract", common=False)
        or unknown_numbers(text, sources, where="the abstract")
    )


def check_topic_name(name: str, texts: Sequence[str]) -> Problem | None:
    """A topic name for the papers ``texts`` (titles and abstracts): not copied from the
    prompt, and a topic: a few content words its papers use, no name they do not."""
    return prompt_echo(name, "topic") or not_a_topic(name, texts)


def check_overview(text: str, sources: Sequence[str], *, papers: int = 0) -> Problem | None:
    """A digest overview: no loop, no prompt echo, only names and numbers of the digest's
    ``sources`` (what the prompt showed, the papers); a count of up to ``papers`` papers or
    topics ('3 papers') needs no source."""
    return (
        repetition(text)
        or prompt_echo(text, "digest")
        or unknown_names(text, sources, where="the day's papers")
        or unknown_numbers(text, sources, where="the day's papers", counts_up_to=papers)
    )


# ---------------------------------------------------------------------------- repetition
def repetition(text: str) -> Problem | None:
    """A sentence said twice, or a run of LOOP_NGRAM words said LOOP_REPEATS times."""
    seen: Counter[tuple[str, ...]] = Counter()
    first: dict[tuple[str, ...], str] = {}
    for sentence in split_sentences(" ".join(text.split())):
        words = tuple(_words(sentence))
        if len(words) >= 3:
            seen[words] += 1
            first.setdefault(words, sentence)
    if seen:
        words, count = seen.most_common(1)[0]
        if count >= 2:
            return Problem(
                "repetition", f"repeats the sentence “{_shorten(first[words])}” {count} times"
            )
    words_all = _words(text)
    grams = Counter(
        tuple(words_all[i : i + LOOP_NGRAM]) for i in range(len(words_all) - LOOP_NGRAM + 1)
    )
    if grams:
        gram, count = grams.most_common(1)[0]
        if count >= LOOP_REPEATS:
            return Problem("repetition", f"repeats “{' '.join(gram)}” {count} times")
    return None


# ---------------------------------------------------------------------------- prompt echo
def prompt_echo(text: str, prompt: str) -> Problem | None:
    """Text copied from the template ``prompt`` (see prompts/): one of its labels
    ('Papers in the group:'), a line that is part of one of its lines, or ECHO_RUN
    consecutive words of it. Quoted examples in a template ("Text-to-3D Generation") are
    content a model may rightly produce, so they do not count."""
    labels, lines = _template(prompt)
    folded = text.casefold()
    for label in labels:
        match = re.search(rf"(?<![\w;]){re.escape(label)}\s*:", folded)
        if match:
            return Problem("prompt echo", _echo_detail(text, text[match.start() : match.end()]))
    for line in text.splitlines():
        words = _echo_words(line)
        needle = f" {' '.join(words)} "
        if len(words) >= 2 and any(needle in f" {' '.join(t)} " for t in lines):
            return Problem("prompt echo", _echo_detail(text, line.strip()))
    words = _echo_words(text)
    for template in lines:
        runs = {tuple(template[i : i + ECHO_RUN]) for i in range(len(template) - ECHO_RUN + 1)}
        for i in range(len(words) - ECHO_RUN + 1):
            if tuple(words[i : i + ECHO_RUN]) in runs:
                return Problem("prompt echo", _echo_detail(text, " ".join(words[i : i + ECHO_RUN])))
    return None


def _echo_detail(text: str, fragment: str) -> str:
    if _echo_words(fragment) == _echo_words(text):
        return "is copied from the prompt"
    return f"echoes the prompt (“{_shorten(fragment)}”)"


@cache
def _template(prompt: str) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """A template's labels ('title', 'papers in the group') and its fixed lines as words,
    without placeholders and quoted examples."""
    labels: list[str] = []
    lines: list[tuple[str, ...]] = []
    for _, body in load(prompt).messages:
        for raw in body.splitlines():
            label = _LABEL_LINE.match(raw.strip())
            if label:
                labels.append(label.group(1).strip().casefold())
            for piece in _QUOTED.split(_PLACEHOLDER.sub("\n", raw)):
                words = tuple(_echo_words(piece))
                if words:
                    lines.append(words)
    return tuple(dict.fromkeys(labels)), tuple(lines)


def _echo_words(text: str) -> list[str]:
    return _ECHO_WORD.findall(text.casefold())


# ---------------------------------------------------------------------------- names
def unknown_names(
    text: str,
    sources: Sequence[str],
    *,
    where: str = "the sources",
    runs: bool = True,
    common: bool = True,
) -> Problem | None:
    """Names in ``text`` that no source uses (see the module docstring); ``runs=False``
    skips capitalised words and runs of them (a title-case label capitalises every word);
    ``common=False`` wants a source even for field and calendar words (ML, 3D, May)."""
    allowed = _COMMON_NAMES if common else _TLDR_NAMES
    vocabulary, joined = _vocabulary(sources)
    missing: list[str] = []
    for sentence in split_sentences(" ".join(text.split())) or [text]:
        tokens, covered = _tokens(sentence), set[int]()
        if runs:
            for start, end in _capital_runs(tokens):
                words = [_fold(t.text) for t in tokens[start:end]]
                if f" {' '.join(words)} " not in joined:
                    missing.append(" ".join(t.text for t in tokens[start:end]))
                    covered.update(range(start, end))
        for i, token in enumerate(tokens):
            if i in covered or not _is_name(token, capitalised=runs):
                continue
            if _fold(token.text) not in vocabulary and token.text.casefold() not in allowed:
                missing.append(token.text)
    if not missing:
        return None
    verb = "does" if where.startswith("the abstract") else "do"
    names = _listing(list(dict.fromkeys(missing)))
    return Problem("unknown name", f"names {names}, which {where} {verb} not mention")


@dataclass(frozen=True)
class _Token:
    text: str
    opens: bool  # first of its sentence, or right after a colon, quote or bracket
    joined: bool  # only spaces or a hyphen since the previous word (a run may go on)


def _tokens(sentence: str) -> list[_Token]:
    tokens, end = [], 0
    for match in _TOKEN.finditer(sentence):
        before = sentence[: match.start()].rstrip()
        opens = not before or before[-1] in _OPENERS
        joined = sentence[end : match.start()].strip() in ("", "-")
        tokens.append(_Token(match.group(), opens, joined))
        end = match.end()
    return tokens


def _is_name(token: _Token, *, capitalised: bool) -> bool:
    word = token.text
    if len(word) < 2 or word.isdigit() or _WITH_UNIT.fullmatch(word):
        return False  # 12x, 7B: a number, checked as one
    if any(c.isdigit() for c in word) or any(c.isupper() for c in word[1:]):
        return True  # 3D, GPT4, MoS, GVGEN, LoRA
    return capitalised and word[0].isupper() and not token.opens


def _capital_runs(tokens: Sequence[_Token]) -> list[tuple[int, int]]:
    """(start, end) of each run of two or more capitalised words ('Mixture of Shards'),
    joined directly or by of/for/to; a leading stop word ('The', 'Our') is not part of it."""
    runs: list[tuple[int, int]] = []
    i = 0
    while i < len(tokens):
        if not _title_word(tokens[i].text) or tokens[i].text.casefold() in STOPWORDS:
            i += 1
            continue
        end, capitals = i + 1, 1
        while end < len(tokens) and tokens[end].joined:
            if _title_word(tokens[end].text):
                end, capitals = end + 1, capitals + 1
            elif (
                tokens[end].text in _CONNECTORS
                and end + 1 < len(tokens)
                and tokens[end + 1].joined
                and _title_word(tokens[end + 1].text)
            ):
                end, capitals = end + 2, capitals + 1
            else:
                break
        if capitals >= 3 and tokens[i].opens:
            i += 1  # 'Although Probabilistic Context Free Grammars': the run starts after it
        if capitals >= 2:
            runs.append((i, end))
        i = end
    return runs


def _title_word(word: str) -> bool:
    return len(word) > 1 and word[0].isupper() and word[1:].islower()


@lru_cache(maxsize=4096)
def _vocabulary_of(source: str) -> tuple[frozenset[str], str]:
    words = [_fold(t) for t in _TOKEN.findall(source)]
    return frozenset(words) | _initialisms(words), f" {' '.join(words)} "


def _initialisms(words: Sequence[str]) -> frozenset[str]:
    """What runs of words abbreviate to ('named entity recognition' -> 'ner', 'part of
    speech' -> 'pos' and 'ps'), so an acronym of a phrase the source spells out is known."""
    found: set[str] = set()
    for i in range(len(words)):
        for n in range(2, MAX_INITIALS + 1):
            run = words[i : i + n]
            if len(run) < n or run[0] in STOPWORDS or run[-1] in STOPWORDS:
                continue
            if sum(w in STOPWORDS for w in run) > 1:  # 'mixture of experts', not a clause
                break
            found.add("".join(w[0] for w in run))
            found.add("".join(w[0] for w in run if w not in STOPWORDS))
    return frozenset(found)


def _vocabulary(sources: Iterable[str]) -> tuple[frozenset[str], str]:
    """Every folded word of the sources and their initialisms, and their word sequences
    joined (runs are looked up in it; a separator keeps a run from spanning two sources)."""
    parts = [_vocabulary_of(s) for s in sources]
    words = frozenset().union(*(w for w, _ in parts)) if parts else frozenset()
    return words, " | ".join(j for _, j in parts)


def _fold(word: str) -> str:
    """Case-folded and singular: 'Shards' -> 'shard', 'LLMs' -> 'llm', 'studies' -> 'study'."""
    word = word.casefold()
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    if len(word) > 2 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


# ---------------------------------------------------------------------------- numbers
def unknown_numbers(
    text: str, sources: Sequence[str], *, where: str = "the sources", counts_up_to: int = 0
) -> Problem | None:
    """Numbers in ``text`` that no source gives ('10 seconds' when the abstract says 7).
    A number glued to letters that a source uses as a whole (3D, 8x) is not checked; a
    count of at most ``counts_up_to`` papers or topics needs no source."""
    vocabulary, _ = _vocabulary(sources)
    known = {n for s in sources for n in _numbers(s)}
    words = {w.casefold() for s in sources for w in _TOKEN.findall(s)}
    known |= {digits for word, digits in _SPELLED.items() if word in words}
    missing: list[str] = []
    for match in _NUMBER.finditer(text):
        glued = re.match(r"[A-Za-z0-9]*", text[match.start() :])
        whole = glued.group() if glued else match.group()
        if whole != match.group() and (
            _fold(whole) in vocabulary or whole.casefold() in _COMMON_NAMES
        ):
            continue
        value = _number(match.group())
        if value in known:
            continue
        if value.isdigit() and int(value) <= counts_up_to and _COUNT_NOUN.match(text, match.end()):
            continue
        missing.append(match.group())
    if not missing:
        return None
    missing = list(dict.fromkeys(missing))
    what = f"the number{'s' if len(missing) > 1 else ''} {_listing(missing)}"
    verb = "does" if where.startswith("the abstract") else "do"
    return Problem("unknown number", f"gives {what}, which {where} {verb} not give")


def _numbers(text: str) -> set[str]:
    return {_number(m) for m in re.findall(r"\d+(?:[.,]\d+)*", text)}


def _number(raw: str) -> str:
    """'1,000' -> '1000', '7.0' -> '7', '05' -> '5', '3,5' -> '3.5'."""
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+", raw):
        raw = raw.replace(",", "")
    raw = raw.replace(",", ".")
    if "." in raw:
        raw = raw.rstrip("0").rstrip(".")
    return raw.lstrip("0") or "0"


# ---------------------------------------------------------------------------- topics
def not_a_topic(name: str, texts: Sequence[str]) -> Problem | None:
    """A topic name says what the papers ``texts`` are about: a few content words (not
    'Research Papers'), not a sentence or a heading, at least half of its words used by the
    papers (in some form: 'Generation' for 'generates'), and no acronym or CamelCase name
    they do not use."""
    stripped = name.strip()
    words = _echo_words(stripped)
    content = [w for w in words if w not in STOPWORDS and w not in _META_WORDS]
    if stripped.endswith((":", "?")) or _CHATTY.match(stripped):
        return Problem("not a topic", "is not a topic name")
    if not content or " ".join(words) in _TOO_BROAD:
        return Problem("not a topic", "says nothing about what the papers are about")
    vocabulary, _ = _vocabulary(texts)
    stems = {_stem(w) for w in vocabulary}
    used = [w for w in content if _related(_stem(w), stems)]
    if 2 * len(used) < len(content):
        return Problem("not a topic", "is not about what its papers say")
    return unknown_names(stripped, texts, where="its papers", runs=False, common=False)


_SUFFIX_LIST = """
    ational ations ation ities ity ments ment ness ings ing ively ive ized izes ize ised ises
    ise ally al ers er ed es ly s e y ency ence ent ance ant
"""
_SUFFIXES = sorted(_SUFFIX_LIST.split(), key=len, reverse=True)


def _stem(word: str) -> str:
    """A crude stem for relating a label's words to the papers' ('generation', 'generates'
    and 'generative' all start with 'gener')."""
    word = word.casefold()
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def _related(stem: str, stems: set[str]) -> bool:
    if stem in stems:
        return True
    if len(stem) < 4:
        return False
    return any(s.startswith(stem) or (len(s) >= 4 and stem.startswith(s)) for s in stems)


# ---------------------------------------------------------------------------- text
def _words(text: str) -> list[str]:
    return _TOKEN.findall(text.casefold())


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 1].rstrip() + "…"


def _listing(items: Sequence[str]) -> str:
    """'“A”', '“A” and “B”', '“A”, “B”, “C” and 2 more'."""
    quoted = [f"“{_shorten(i)}”" for i in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        return ", ".join(quoted) + f" and {len(items) - MAX_LISTED} more"
    return " and ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)
