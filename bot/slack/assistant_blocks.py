"""What paperbot says when someone opens an assistant thread: pure functions from the newest
papers to a greeting and Slack's suggested prompts (``{"title", "message"}``, at most 4), and
`opening`, which reads those papers through the corpus's public API (the assistant listener
and `paperbot chat` show the same opening)."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Sequence
from datetime import date

from answers.digest import rank_papers
from bot.slack import blocks
from retrieval import STOPWORDS, Corpus, Paper

MAX_PROMPTS = 4  # Slack shows at most four suggested prompts
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_TITLE_CHARS = 75  # a prompt's title: a chip in Slack's UI
#: Title words that name no topic (paper boilerplate, not a subject anyone asks about).
_NOT_TOPICS = frozenset(
    {
        "via", "towards", "toward", "using", "based", "new", "learning", "model", "models",
        "approach", "method", "methods", "framework", "study", "analysis", "data", "large",
        "efficient", "improving", "beyond", "benchmark", "task", "tasks", "deep", "neural",
    }
)  # fmt: skip
GENERIC_PROMPTS: tuple[dict[str, str], ...] = (
    {"title": "What's new?", "message": "What are the main topics of the newest papers?"},
    {
        "title": "Find a paper",
        "message": "Which paper proposes a new method for efficient fine-tuning?",
    },
)


def opening(
    corpus: Corpus, limit: int = MAX_PROMPTS
) -> tuple[blocks.Message, list[dict[str, str]]]:
    """The greeting and suggested prompts from the corpus: its size, its newest listing day,
    and that day's papers ranked best first."""
    latest = corpus.latest_day()
    papers = rank_papers(corpus.papers(since=latest, until=latest)) if latest else []
    return greeting(corpus.count_papers(), latest), suggested_prompts(papers, limit)


def greeting(paper_count: int, latest: date | None) -> blocks.Message:
    """The first message of an assistant thread: what paperbot can do, with what."""
    papers = f"{paper_count:,} paper{'' if paper_count == 1 else 's'}"
    if not paper_count:
        text = (
            "Hi! I answer questions about research papers with cited sources, but my index is "
            "empty yet: ask an admin to add a feed (`paperbot feeds add`)."
        )
    else:
        newest = f" The newest were listed on {latest:%a %-d %b %Y}." if latest else ""
        text = (
            f"Hi! Ask me about the {papers} in the team's index and I answer with cited "
            f"sources.{newest} Try a suggestion below, or ask anything."
        )
    return blocks.plain(text)


def topics(papers: Sequence[Paper], limit: int) -> list[str]:
    """The day's most shared title topics: two-word phrases found in at least two titles
    first, then single words, each as most often written."""
    pairs: Counter[str] = Counter()
    words: Counter[str] = Counter()
    spelled: dict[str, Counter[str]] = {}
    for paper in papers:
        marked = _marked(_WORD.findall(paper.title))
        seen: dict[str, str] = {}
        for (a, a_shown), (b, b_shown) in itertools.pairwise(marked):
            if a and b:
                seen[f"{a} {b}"] = f"{a_shown} {b_shown}"
        for key, shown in seen.items():
            pairs[key] += 1
            spelled.setdefault(key, Counter())[shown] += 1
        for key, shown in dict(marked).items():
            if key:
                words[key] += 1
                spelled.setdefault(key, Counter())[shown] += 1
    chosen: list[str] = []
    covered: set[str] = set()
    for counter in (pairs, words):
        for key, count in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])):
            if count < 2 or len(chosen) >= limit or set(key.split()) & covered:
                continue
            chosen.append(spelled[key].most_common(1)[0][0])
            covered |= set(key.split())
    return chosen


def _marked(tokens: Sequence[str]) -> list[tuple[str, str]]:
    """Each title word as (key, as written); key "" for a word that cannot start or end a
    topic phrase (stopwords, boilerplate, short words)."""
    out = []
    for t in tokens:
        key = t.casefold()
        ok = key not in STOPWORDS and key not in _NOT_TOPICS and len(t) > 2
        out.append((key if ok else "", t))
    return out


def suggested_prompts(papers: Sequence[Paper], limit: int = MAX_PROMPTS) -> list[dict[str, str]]:
    """Prompts from the newest day's papers (ranked best first): its top paper, then
    "What's new on <topic>?" for its most shared topics; generic ones when there are none."""
    limit = max(1, min(limit, MAX_PROMPTS))
    prompts: list[dict[str, str]] = []
    if papers:
        top = papers[0].title
        prompts.append(
            {"title": _short(f"About “{top}”"), "message": f"What does the paper “{top}” propose?"}
        )
    for topic in topics(papers, limit - len(prompts)):
        prompts.append(
            {"title": _short(f"What's new on {topic}?"), "message": f"What's new on {topic}?"}
        )
    for generic in GENERIC_PROMPTS:
        if len(prompts) < min(limit, 2):
            prompts.append(dict(generic))
    return prompts[:limit]


def thread_title(question: str) -> str:
    """An assistant thread's title (its history list entry) from its first question."""
    return _short(" ".join(question.split()), 60) or "Question about papers"


def _short(text: str, most: int = _TITLE_CHARS) -> str:
    return text if len(text) <= most else text[: most - 1].rstrip() + "…"
