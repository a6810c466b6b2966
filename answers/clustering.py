"""Topic groups for a digest: agglomerative clustering of paper vectors (scipy's Ward
linkage) and distinctive terms that name a group without a language model.

Ward linkage is deterministic (no random seeds, unlike k-means) and makes groups of similar
size. Average linkage, tried first, chained a day of ML papers into two blobs ("generation" and
"systems"): every ML abstract is fairly close to every other, so only a variance criterion
splits them into readable topics. Papers that fit their group poorly are taken out of it, so
the caller can file them under "Other papers" instead of in the wrong topic.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from retrieval import STOPWORDS

log = logging.getLogger(__name__)

# A member must be this much closer to its group than to the other papers (see _drop_outliers).
# On the 30-paper sample every member scores 0.15 or more except an object detector filed with
# the fine-tuning papers, at 0.0.
MIN_FIT = 0.1

# Words every abstract uses: never distinctive, never a good topic name.
_GENERIC_WORDS = """
    ability able achieve achieves achieving across address addressing allows approach
    approaches art available based benchmark benchmarks better capabilities capability
    challenge challenges code compare compared comparing comparison demonstrate demonstrates
    demonstrating design different difficult effective effectively efficiency efficient employ
    employs enable enables enhance enhances enhancing existing experiment experiments
    extensive first framework frameworks furthermore github help high high-quality however
    improve improved improvement improvements improves including issue issues key large
    leverage leverages like limited made make makes many may method methods model models
    moreover much new novel often one outstanding performance previous problem problems
    propose proposes provide provides publicly quality recent remarkable result results robust
    show shows significant significantly simple specific state-of-the-art study superior task
    tasks technique techniques three training-free two use used uses using various via well
    within without work works
"""
_GENERIC = frozenset(_GENERIC_WORDS.split())
_PHRASE_BREAK = re.compile(r"[,.;:!?()\[\]{}\"“”]|\s[-–—]\s")
TITLE_BONUS = 0.5  # a title mention counts half again as much as a mention anywhere
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*[A-Za-z0-9]|[A-Za-z0-9]")


# --------------------------------------------------------------------------- clustering
def cluster(
    vectors: np.ndarray,
    max_groups: int,
    min_size: int = 2,
    threshold: float = MIN_FIT,
) -> list[list[int]]:
    """A partition of the rows of ``vectors`` into groups of row indices.

    Ward linkage cut at ``max_groups`` groups (fewer when there are too few rows to fill them
    with ``min_size`` each, or when merges tie at the cut). A member that fits its group by
    less than ``threshold`` leaves it (see _drop_outliers); groups left below ``min_size`` are
    split into singletons. Groups come largest first (ties: lowest index first), singletons
    last; members ascending.
    """
    n = len(vectors)
    if n == 0:
        return []
    unit = _normalise(np.asarray(vectors, dtype=np.float64))
    k = max(1, min(max_groups, n // max(min_size, 1)))
    groups = _drop_outliers(ward_groups(unit, k), unit, threshold)
    real = [g for g in groups if len(g) >= min_size]
    singles = sorted([i] for g in groups if len(g) < min_size for i in g)
    return sorted(real, key=lambda g: (-len(g), g[0])) + singles


def ward_groups(unit: np.ndarray, k: int) -> list[list[int]]:
    """The Ward-linkage tree of the rows cut into at most ``k`` groups (scipy's ``linkage``
    and ``fcluster(maxclust)``), each group's members ascending, groups by first member.
    Euclidean distance between unit vectors orders pairs as cosine similarity does."""
    from scipy.cluster.hierarchy import fcluster, linkage  # late: ~0.5 s, for digests only

    n = len(unit)
    if n == 1 or k <= 1:
        return [list(range(n))]
    labels = fcluster(linkage(unit, method="ward"), t=k, criterion="maxclust")
    groups: dict[int, list[int]] = {}
    for row, label in enumerate(labels.tolist()):
        groups.setdefault(label, []).append(row)
    return sorted(groups.values(), key=lambda g: g[0])


def _drop_outliers(groups: list[list[int]], unit: np.ndarray, margin: float) -> list[list[int]]:
    """Take out of its group each member that is not clearly closer to the group than to the
    other papers: (a - r) / (1 - r) < margin, with a its mean cosine to the rest of its group
    and r its mean cosine to everything outside it. Relative to r, because how similar two
    unrelated papers look depends on the embedder (and on the day: all ML papers are close)."""
    similarity = unit @ unit.T
    everyone = set(range(len(unit)))
    kept: list[list[int]] = []
    for group in groups:
        outside = sorted(everyone - set(group))
        if len(group) < 2 or not outside:
            kept.append(group)
            continue
        inside = [i for i in group if _fit(similarity, i, group, outside) >= margin]
        kept.append(inside)
        kept += [[i] for i in group if i not in inside]
    return [g for g in kept if g]


def _fit(similarity: np.ndarray, i: int, group: list[int], outside: list[int]) -> float:
    rest = [j for j in group if j != i]
    a = float(similarity[i, rest].mean())
    r = float(similarity[i, outside].mean())
    return (a - r) / max(1.0 - r, 1e-9)


def paper_vector(chunk_vectors: Sequence[np.ndarray]) -> np.ndarray | None:
    """A paper's vector: the mean of its chunk vectors, renormalised (None without chunks)."""
    if not chunk_vectors:
        return None
    mean = np.mean(np.stack(chunk_vectors), axis=0)
    norm = float(np.linalg.norm(mean))
    return (mean / norm).astype(np.float32) if norm > 0 else None


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


# --------------------------------------------------------------------------- labels
def label_terms(
    texts: Sequence[str],
    k: int = 3,
    background: Sequence[str] | None = None,
    *,
    titles: Sequence[str] | None = None,
) -> list[str]:
    """The ``k`` terms (words or two-word phrases) most distinctive of ``texts`` against
    ``background`` (all texts of the digest; default: ``texts`` alone), spelled as written.

    tf-idf on document frequencies: a term scores by the share of the group's texts that use it
    times its rarity in the background, with a bonus for terms in the group's ``titles`` (a
    title names what a paper is about; an abstract also says what it is not). A term must be
    shared by two of the group's texts when the group has two or more, so one paper's jargon
    does not name the group.
    """
    if not texts or k <= 0:
        return []
    group_docs = [_terms(t) for t in texts]
    background_docs = [_terms(t) for t in background] if background else group_docs
    title_docs = [_terms(t) for t in titles or ()]
    surface = _surface_forms([*texts, *(titles or ())])
    chosen: list[str] = []
    for term, _ in _score_terms(group_docs, background_docs, title_docs):
        if len(chosen) == k:
            break
        if not any(_overlaps(term, other) for other in chosen):
            chosen.append(term)
    return [_display(term, surface) for term in chosen]


def group_label(
    texts: Sequence[str],
    background: Sequence[str] | None = None,
    k: int = 3,
    *,
    titles: Sequence[str] | None = None,
) -> str:
    """A readable name for a group from its distinctive terms ('Text-to-3D, Gaussian splatting')."""
    terms = label_terms(texts, k, background, titles=titles)
    if not terms:
        return "Miscellaneous"
    label = ", ".join(terms)
    return label[0].upper() + label[1:]


def _terms(text: str) -> set[str]:
    """Content words and adjacent pairs of them within a phrase, case-folded and singular."""
    terms: set[str] = set()
    for phrase in _PHRASE_BREAK.split(text):
        previous: str | None = None
        for word in (_fold(w) for w in _WORD.findall(phrase)):
            if not _is_content(word):
                previous = None
                continue
            terms.add(word)
            if previous is not None:
                terms.add(f"{previous} {word}")
            previous = word
    return terms


def _is_content(word: str) -> bool:
    return (
        len(word) > 1
        and word not in STOPWORDS
        and word not in _GENERIC
        and not word.replace("-", "").isdigit()
    )


def _fold(word: str) -> str:
    word = word.casefold()
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _score_terms(
    group: Sequence[set[str]], background: Sequence[set[str]], titles: Sequence[set[str]]
) -> list[tuple[str, float]]:
    group_df = Counter(t for doc in group for t in doc)
    title_df = Counter(t for doc in titles for t in doc)
    background_df = Counter(t for doc in background for t in doc)
    n_background = len(background)
    need = 2 if len(group) >= 2 else 1
    scores: dict[str, float] = {}
    for term, df in group_df.items():
        if df < need:
            continue
        idf = math.log((n_background + 1) / (background_df.get(term, 0) + 0.5))
        # Two-word phrases are more specific and read better as names ("Gaussian splatting").
        phrase = 1.5 if " " in term else 1.0
        share = (df + TITLE_BONUS * title_df.get(term, 0)) / len(group)
        scores[term] = share * max(idf, 0.0) * phrase
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def _overlaps(a: str, b: str) -> bool:
    """Terms sharing a word ('spatial' and 'spatial-temporal') would repeat themselves."""
    return bool(set(re.split(r"[\s-]+", a)) & set(re.split(r"[\s-]+", b)))


def _surface_forms(texts: Sequence[str]) -> Mapping[str, str]:
    """For each folded word, its most common spelling in the texts ('llm' -> 'LLM')."""
    counts: dict[str, Counter[str]] = {}
    for text in texts:
        for raw in _WORD.findall(text):
            counts.setdefault(_fold(raw), Counter())[_singular_surface(raw)] += 1
    forms: dict[str, str] = {}
    for folded, spellings in counts.items():
        # Prefer lower case over sentence-initial capitals when both are common.
        forms[folded] = max(spellings.items(), key=lambda kv: (kv[1] + (kv[0].islower()), kv[0]))[0]
    return forms


def _singular_surface(raw: str) -> str:
    folded = _fold(raw)
    return raw[: len(folded)] if raw.casefold().startswith(folded) else raw


def _display(term: str, surface: Mapping[str, str]) -> str:
    return " ".join(surface.get(w, w) for w in term.split())
