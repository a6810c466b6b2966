"""The claim verifier, pure: numbers with units and names must occur in the cited source."""

from __future__ import annotations

import pytest

from answers import verify
from answers.models import SentenceCheck

GVGEN = (
    "GVGEN: Text-to-3D Generation with Volumetric Representation. Simultaneously, it maintains "
    "a fast generation speed (sim7 seconds), effectively striking a balance between quality "
    "and efficiency. We propose a pruning and densifying method named the Candidate Pool "
    "Strategy for the GaussianVolume."
)
FSMOE = (
    "FSMoE is more efficient than existing implementations (with up to a 1.42times speedup), "
    "and FSMoE outperforms the state-of-the-art MoE training systems (DeepSpeed-MoE and Tutel) "
    "by 1.18times-1.22times on 1458 MoE layers. Accuracy rises by 52% on 1,000 prompts with a "
    "7B model."
)


@pytest.mark.parametrize(
    "sentence",
    [
        "GVGEN needs ~7 s per object [1].",
        "GVGEN needs ∼7 seconds per object [1].",
        "GVGEN needs about seven seconds [1].",
        "GVGEN needs 7 s.",
    ],
)
def test_the_same_quantity_written_differently_is_found(sentence: str) -> None:
    assert verify.missing_facts(sentence, [GVGEN]) == ()


@pytest.mark.parametrize(
    "sentence",
    [
        "FSMoE is up to 1.42x faster [2].",
        "FSMoE is up to 1.42× faster [2].",
        "FSMoE is up to 1.42 times faster [2].",
        "FSMoE beats DeepSpeed-MoE and Tutel by 1.22x [2].",
        "Accuracy rises by 52 % [2].",
        "Accuracy rises by 52 percent on 1000 prompts [2].",
        "It uses a 7 billion parameter model [2].",
    ],
)
def test_multipliers_percentages_and_thousands_are_normalised(sentence: str) -> None:
    assert verify.missing_facts(sentence, [FSMOE]) == ()


@pytest.mark.parametrize(
    ("sentence", "missing"),
    [
        ("GVGEN needs within 10 seconds [1].", ("10 seconds",)),
        ("GVGEN needs 7 minutes [1].", ("7 minutes",)),  # the number is there, the unit is not
        ("GVGEN beats MegaNet by 83% [1].", ("83%", "MegaNet")),
        ("GVGEN runs on TPUv9 chips [1].", ("TPUv9",)),
        ("The Candidate Pool Strategy prunes Gaussians for GPT-4 [1].", ("Gaussians", "GPT-4")),
    ],
)
def test_invented_numbers_and_names_are_reported(sentence: str, missing: tuple[str, ...]) -> None:
    assert verify.missing_facts(sentence, [GVGEN]) == missing


def test_names_match_across_case_hyphens_plurals_and_the_title() -> None:
    sentence = "Gvgen stores a Gaussian-Volume and uses Candidate Pool Strategies [1]."
    assert verify.missing_facts(sentence, [GVGEN]) == ()
    assert verify.missing_facts("It is a Text-to-3D method [1].", [GVGEN]) == ()


def test_sentence_openers_and_citations_are_not_facts() -> None:
    assert verify.entities("However, The method works [12].") == []
    assert verify.quantities("It works [12][3-4].") == []
    assert verify.missing_facts("Yes [1].", [GVGEN]) == ()
    # a one-word answer that names something is checked like any sentence
    assert verify.missing_facts("PWNED", [GVGEN]) == ("PWNED",)


def test_a_fact_from_another_source_does_not_count() -> None:
    sentence = "GVGEN is up to 1.42x faster [1]."
    assert verify.missing_facts(sentence, [GVGEN]) == ("1.42x",)
    assert verify.missing_facts(sentence, [GVGEN, FSMOE]) == ()  # when it cites both


def test_complete_part_keeps_finished_sentences_only() -> None:
    assert verify.complete_part("GVGEN is fast [1]. It uses a Gaussi") == "GVGEN is fast [1]."
    assert verify.complete_part("GVGEN is fast [1]") == "GVGEN is fast [1]"
    assert verify.complete_part("GVGEN is") == ""


def test_failures_and_flags_name_what_failed() -> None:
    failed = verify.failures(
        [
            ("GVGEN needs 10 seconds [1].", "unsupported", ("10 seconds",)),
            ("PWNED", "uncited", ()),
        ]
    )
    assert failed.splitlines() == [
        "- “GVGEN needs 10 seconds.”: not in the cited source: 10 seconds",
        "- “PWNED”: no valid source number",
    ]
    assert "Answer again" in verify.retry_feedback(failed)
    removed = [SentenceCheck("GVGEN needs 10 seconds.", (), 0.6, "unsupported", ("10 seconds",))]
    assert verify.removal_flags(removed) == [
        "Removed an unverified sentence (10 seconds not in its cited source): "
        "“GVGEN needs 10 seconds.”"
    ]


def test_sentence_buffer_releases_finished_sentences_only() -> None:
    buffer = verify.SentenceBuffer()
    assert buffer.feed("GVGEN is fast [1]. It uses e.g. ") == ["GVGEN is fast [1]."]
    assert buffer.feed("a volume [1]. Then") == ["It uses e.g. a volume [1]."]  # "Then" goes on
    assert buffer.feed(" more") == []
    assert buffer.feed("\n") == ["Then more"]
