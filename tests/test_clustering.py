"""Topic clustering (Ward linkage, outliers out) and extractive group labels."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from answers.clustering import cluster, group_label, label_terms, paper_vector, ward_groups
from retrieval import Paper
from retrieval.sources import page_text
from tests.support.fakes import FakeEmbedder

SAMPLE = Path(__file__).resolve().parent.parent / "data/sample/daily_papers_page.txt"


def _blobs(sizes: list[int], dim: int = 32, spread: float = 0.15, seed: int = 0) -> np.ndarray:
    """Unit vectors around len(sizes) random centres."""
    rng = np.random.default_rng(seed)
    rows = []
    for size in sizes:
        centre = rng.normal(size=dim)
        rows += [
            centre + spread * np.linalg.norm(centre) * rng.normal(size=dim) / np.sqrt(dim)
            for _ in range(size)
        ]
    matrix = np.array(rows)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_separated_topics_are_recovered_and_groups_are_ordered() -> None:
    vectors = _blobs([6, 4, 3])
    groups = cluster(vectors, max_groups=3)
    assert groups == [list(range(0, 6)), list(range(6, 10)), list(range(10, 13))]


def test_result_is_a_partition_and_deterministic() -> None:
    vectors = np.random.default_rng(3).normal(size=(40, 16))
    groups = cluster(vectors, max_groups=6)
    assert sorted(i for g in groups for i in g) == list(range(40))
    assert groups == cluster(vectors.copy(), max_groups=6)
    assert sum(1 for g in groups if len(g) >= 2) <= 6
    sizes = [len(g) for g in groups]
    assert sizes == sorted(sizes, reverse=True)


def test_matches_scipy_ward_linkage() -> None:
    from scipy.cluster.hierarchy import fcluster, linkage

    vectors = np.random.default_rng(7).normal(size=(50, 8))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = fcluster(linkage(unit, method="ward"), 5, "maxclust")
    expected = sorted(sorted(np.flatnonzero(labels == c).tolist()) for c in set(labels))
    # No outlier removal: the raw Ward cut.
    assert sorted(cluster(unit, max_groups=5, threshold=-np.inf)) == expected


def _textbook_ward(unit: np.ndarray, ks: Sequence[int]) -> dict[int, list[list[int]]]:
    """Ward by its definition, as an independent oracle: merge the two groups whose union
    adds the least within-group sum of squares, n_a n_b / (n_a + n_b) |c_a - c_b|^2; the
    partition when ``k`` groups are left, for each k in ``ks``."""
    groups = [[i] for i in range(len(unit))]
    cuts: dict[int, list[list[int]]] = {}
    while len(groups) > min(ks):
        if len(groups) in ks:
            cuts[len(groups)] = sorted(groups, key=lambda g: g[0])
        centres = np.stack([unit[g].mean(axis=0) for g in groups])
        sizes = np.array([len(g) for g in groups], dtype=np.float64)
        norms = (centres**2).sum(axis=1)
        gaps = norms[:, None] + norms[None, :] - 2.0 * centres @ centres.T
        cost = sizes[:, None] * sizes[None, :] / (sizes[:, None] + sizes[None, :]) * gaps
        np.fill_diagonal(cost, np.inf)
        a, b = sorted(np.unravel_index(int(np.argmin(cost)), cost.shape))
        groups[a] = sorted(groups[a] + groups.pop(b))
    cuts[len(groups)] = sorted(groups, key=lambda g: g[0])
    return cuts


def _unit(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def sample_texts() -> list[str]:
    records = page_text.parse(SAMPLE.read_bytes(), origin=SAMPLE.name, page_date=date(2025, 5, 16))
    return [f"{p.title}. {p.abstract}" for p in records if isinstance(p, Paper)]


def test_ward_partitions_of_the_sample_papers_match_the_definition(
    sample_texts: list[str], local_embedder: Any
) -> None:
    """The 30 sample abstracts with the real MiniLM model: scipy's cut equals textbook Ward
    at every group count a digest uses, and the digest's six topics keep the 3D papers
    together."""
    unit = _unit(local_embedder.embed(sample_texts))
    assert len(unit) == 30
    expected = _textbook_ward(unit, range(2, 13))
    for k in range(2, 13):
        assert ward_groups(unit, k) == expected[k], k
    groups = cluster(unit, max_groups=6)
    assert sorted(i for g in groups for i in g) == list(range(30))
    three_d = [i for i, t in enumerate(sample_texts) if t.startswith(("GVGEN", "SweetDreamer"))]
    assert len(three_d) == 2 and any(set(three_d) <= set(g) for g in groups)


def test_ward_partitions_of_aclsum_match_the_definition() -> None:
    """250 real ACL abstracts (bag-of-words vectors): the same partitions as textbook Ward."""
    from tests.support.corpora import aclsum_records

    texts = [f"{r['title']}. {r['abstract']}" for r in aclsum_records()]
    unit = _unit(FakeEmbedder(dim=128).embed(texts))
    assert len(unit) == 250
    expected = _textbook_ward(unit, (2, 6, 12))
    for k in (2, 6, 12):
        assert ward_groups(unit, k) == expected[k], k


def test_an_outlier_leaves_its_group() -> None:
    vectors = _blobs([5, 5])
    # A paper unrelated to all the others: orthogonal to every one of them.
    basis, _ = np.linalg.qr(vectors.T)
    noise = np.random.default_rng(99).normal(size=vectors.shape[1])
    stranger = noise - basis @ (basis.T @ noise)
    groups = cluster(np.vstack([vectors, stranger[None, :]]), max_groups=2)
    assert [10] in groups  # alone, for the caller's "Other" bucket
    assert groups[:2] == [list(range(0, 5)), list(range(5, 10))]


@pytest.mark.parametrize(
    ("n", "expected"), [(0, []), (1, [[0]]), (3, [[0, 1, 2]])], ids=["empty", "one", "three"]
)
def test_tiny_inputs(n: int, expected: list[list[int]]) -> None:
    vectors = _blobs([n]) if n else np.zeros((0, 32))
    assert cluster(vectors, max_groups=6) == expected


def test_small_groups_become_singletons() -> None:
    groups = cluster(_blobs([5, 1, 1]), max_groups=3, min_size=2)
    assert groups[0] == [0, 1, 2, 3, 4]
    assert groups[1:] == [[5], [6]]


def test_paper_vector_is_the_renormalised_mean() -> None:
    vec = paper_vector([np.array([1.0, 0.0]), np.array([0.0, 1.0])])
    assert vec is not None
    assert np.allclose(vec, [np.sqrt(0.5), np.sqrt(0.5)])
    assert paper_vector([]) is None


GROUP = [
    "GVGEN: Text-to-3D Generation. We generate 3D Gaussian splatting volumes from text.",
    "SweetDreamer: Text-to-3D with geometric priors. 2D diffusion lifted to 3D.",
    "HeadSculpt: 3D head avatars from text. Gaussian splatting avatars with identity.",
]
OTHERS = [
    "GPipe: pipeline parallelism for giant neural networks on many accelerators.",
    "Tutel: adaptive mixture-of-experts training at scale with pipeline parallelism.",
    "LoRA experts: parameter-efficient fine-tuning with a mixture of adapters.",
]


def test_label_terms_are_distinctive_and_spelled_as_written() -> None:
    terms = label_terms(GROUP, 3, GROUP + OTHERS, titles=[t.split(".")[0] for t in GROUP])
    assert "Text-to-3D" in terms
    assert "Gaussian splatting" in terms
    # Shared by the group, not one paper's jargon; no term repeats another's words.
    assert not {"avatar", "identity", "volume"} & {t.casefold() for t in terms}
    words = [w.casefold() for t in terms for w in t.split()]
    assert len(words) == len(set(words))


def test_group_label_is_readable() -> None:
    label = group_label(OTHERS[:2], GROUP + OTHERS)
    assert label[0].isupper()
    assert "pipeline parallelism" in label.casefold()
    assert group_label([""], None) == "Miscellaneous"
    assert label_terms([], 3) == []
