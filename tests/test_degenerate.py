"""The checks on generated text (answers/degenerate.py): loops, prompt echo, names and numbers
the sources do not give, topic names that are not topics; and no false alarm on text taken
from the sources or written as a careful model would."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from answers.clustering import group_label
from answers.degenerate import (
    check_overview,
    check_tldr,
    check_topic_name,
    prompt_echo,
    repetition,
    unknown_names,
    unknown_numbers,
)
from answers.summarize import extractive_tldr
from retrieval import Paper
from retrieval.sources import page_text

SAMPLE = Path(__file__).resolve().parent.parent / "data/sample/daily_papers_page.txt"


@pytest.fixture(scope="module")
def papers() -> dict[str, Paper]:
    """The 30 sample papers by short name ('MoS', 'GVGEN')."""
    records = page_text.parse(SAMPLE.read_bytes(), origin=SAMPLE.name, page_date=date(2025, 5, 16))
    return {p.title.split(":")[0]: p for p in records if isinstance(p, Paper)}


def _text(paper: Paper) -> str:
    return f"{paper.title}. {paper.abstract}"


# --------------------------------------------------------------------------- repetition
def test_a_looping_overview_is_caught() -> None:
    loop = " ".join(["Today brings many new papers on diffusion models."] * 68)
    assert len(loop.split()) >= 540  # the 546-word overview of issue 11
    problem = repetition(loop)
    assert problem and problem.kind == "repetition"
    assert str(problem) == (
        "repeats the sentence “Today brings many new papers on diffusion models.” 68 times"
    )
    stuck = repetition("GVGEN turns text into 3D Gaussians fast fast fast fast fast fast.")
    assert stuck and str(stuck) == "repeats “fast fast fast fast” 3 times"


def test_ordinary_prose_is_not_a_loop() -> None:
    overview = (
        "Text-to-3D generation leads the day: GVGEN builds 3D Gaussian volumes from text and "
        "SweetDreamer aligns 2D diffusion priors with geometry. On the systems side, Tutel "
        "adapts mixture-of-experts training at scale, and FSMoE schedules its communication. "
        "The most upvoted paper, GVGEN, generates a scene in about 7 seconds."
    )
    assert repetition(overview) is None


# --------------------------------------------------------------------------- prompt echo
def test_prompt_echo_is_caught() -> None:
    name = prompt_echo("Papers in the group:", "topic")
    assert name and name.kind == "prompt echo" and str(name) == "is copied from the prompt"
    assert prompt_echo("Topic Label", "topic")  # a line of the template without its colon
    tldr = prompt_echo("Title: GVGEN Abstract: In recent years, 3D Gaussian splatting", "tldr")
    assert tldr and str(tldr) == "echoes the prompt (“Title:”)"
    overview = "Here is what the day brought: the main themes and the one or two most notable."
    assert prompt_echo(overview, "digest")


def test_the_templates_quoted_examples_and_ordinary_words_are_not_echo() -> None:
    assert prompt_echo("Text-to-3D Generation", "topic") is None  # the prompt's own example
    assert prompt_echo("GVGEN writes 3D Gaussian volumes from a text prompt.", "tldr") is None
    assert (
        prompt_echo("The day brought two themes: 3D generation and MoE training.", "digest") is None
    )


# --------------------------------------------------------------------------- names
def test_an_invented_method_name_is_caught(papers: dict[str, Paper]) -> None:
    mos = papers["MoS"]
    problem = check_tldr(
        "Mismatch of Shards (MoS) shares LoRA parameters across layers, saving about 8x "
        "parameters.",
        mos.title,
        mos.abstract,
    )
    assert problem and problem.kind == "unknown name"
    assert str(problem) == "names “Mismatch of Shards”, which the abstract does not mention"
    google = check_tldr("GVGEN, by Google, makes 3D Gaussians.", "GVGEN", papers["GVGEN"].abstract)
    assert google and "“Google”" in str(google)


def test_names_the_abstract_gives_pass_in_any_form(papers: dict[str, Paper]) -> None:
    mos, gvgen = papers["MoS"], papers["GVGEN"]
    for text in (
        "Mixture of Shards (MoS) makes low-rank adaptation more parameter-efficient by sharing "
        "shards across layers; it saves about 8× parameters.",
        "MoS shares LoRA parameters across layers with a Mixture-of-Experts-like router.",
        "MoS cuts the GPU memory of serving many customised LLMs.",  # LLM = large language model
    ):
        assert check_tldr(text, mos.title, mos.abstract) is None, text
    text = "GVGEN turns text into a GaussianVolume and generates 3D objects in about 7 seconds."
    assert check_tldr(text, gvgen.title, gvgen.abstract) is None


def test_a_number_the_abstract_does_not_give_is_caught(papers: dict[str, Paper]) -> None:
    gvgen = papers["GVGEN"]
    problem = check_tldr("GVGEN makes 3D objects within 10 seconds.", gvgen.title, gvgen.abstract)
    assert problem and problem.kind == "unknown number"
    assert str(problem) == "gives the number “10”, which the abstract does not give"
    assert unknown_numbers("about ~7 s", [gvgen.abstract]) is None
    assert unknown_numbers("it uses four strategies", ["four nearly cost-free"]) is None
    assert unknown_numbers("4 strategies", ["four nearly cost-free strategies"]) is None


def test_an_overview_may_count_papers_but_not_invent_results(papers: dict[str, Paper]) -> None:
    sources = [_text(p) for p in papers.values()]
    counted = "The 30 papers fall into 5 topics; GVGEN generates a scene in about 7 seconds."
    assert check_overview(counted, sources, papers=30) is None
    invented = "GVGEN generates a scene in 2 seconds, DeepMind reports."
    problem = check_overview(invented, sources, papers=30)
    assert problem and problem.kind == "unknown name" and "“DeepMind”" in str(problem)


# --------------------------------------------------------------------------- topic names
@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("Papers in the group:", "is copied from the prompt"),
        ("Topic Label", "is copied from the prompt"),
        ("Here is a label", "is not a topic name"),
        ("Miscellaneous Papers", "says nothing about what the papers are about"),
        ("Machine Learning", "says nothing about what the papers are about"),
        ("Quantum Chemistry", "is not about what its papers say"),
        ("Efficient LLM Training", "names “LLM”, which its papers do not mention"),
        ("NeRF-based 3D Generation", "names “NeRF”, which its papers do not mention"),
    ],
)
def test_topic_names_that_are_not_topics(papers: dict[str, Paper], name: str, why: str) -> None:
    texts = [_text(papers[n]) for n in ("GVGEN", "SweetDreamer", "HeadSculpt")]
    problem = check_topic_name(name, texts)
    assert problem and str(problem) == why


@pytest.mark.parametrize(
    "name", ["Text-to-3D Generation", "3D Gaussian Generation", "Text-Guided 3D Avatars"]
)
def test_topic_names_that_are_topics(papers: dict[str, Paper], name: str) -> None:
    texts = [_text(papers[n]) for n in ("GVGEN", "SweetDreamer", "HeadSculpt")]
    assert check_topic_name(name, texts) is None


def test_moe_group_names(papers: dict[str, Paper]) -> None:
    texts = [_text(papers[n]) for n in ("FSMoE", "Tutel", "DynMoLE")]
    for name in ("Mixture-of-Experts Training", "Efficient MoE Training Systems"):
        assert check_topic_name(name, texts) is None, name
    assert check_topic_name("Diffusion Image Editing", texts)


# --------------------------------------------------------------------------- no false alarms
def test_text_taken_from_the_sources_always_passes(papers: dict[str, Paper]) -> None:
    """Extractive TL;DRs (verbatim sentences) of the 30 sample papers and of the 250 ACLSum
    abstracts, and the extractive names of sample groups, are never flagged."""
    from tests.support.corpora import aclsum_records

    for paper in papers.values():
        tldr = extractive_tldr(paper.title, paper.abstract)
        assert check_tldr(tldr, paper.title, paper.abstract) is None, paper.title
    for record in aclsum_records():
        tldr = extractive_tldr(record["title"], record["abstract"])
        assert check_tldr(tldr, record["title"], record["abstract"]) is None, record["title"]
    for group in (("GVGEN", "SweetDreamer", "HeadSculpt"), ("FSMoE", "Tutel", "DynMoLE")):
        texts = [_text(papers[n]) for n in group]
        label = group_label(texts, [_text(p) for p in papers.values()])
        assert check_topic_name(label, texts) is None, label


def test_unknown_names_lists_a_few_and_counts_the_rest() -> None:
    problem = unknown_names("Alpha uses Beta, Gamma, Delta and Epsilon.", ["nothing here"])
    assert problem and str(problem) == (
        "names “Beta”, “Gamma”, “Delta” and 1 more, which the sources do not mention"
    )
