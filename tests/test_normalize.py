from __future__ import annotations

import pytest

from retrieval.normalize import (
    InvalidRecord,
    clean_text,
    make_paper,
    parse_arxiv_id,
    split_sentences,
    title_hash_id,
    title_key,
)


def test_clean_text_unescapes_entities_collapses_whitespace_and_keeps_latex() -> None:
    raw = "We study  the model&#39;s\n  behaviour &amp; cost $O(n^2)$\t."
    assert clean_text(raw) == "We study the model's behaviour & cost $O(n^2)$ ."


def test_clean_text_normalises_unicode_to_nfc() -> None:
    decomposed = "Cafe\u0301"
    assert clean_text(decomposed) == "Café"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2410.17243", ("2410.17243", None)),
        ("2410.17243v2", ("2410.17243", 2)),
        ("arXiv:2410.17243v3", ("2410.17243", 3)),
        ("https://arxiv.org/abs/2410.17243v2", ("2410.17243", 2)),
        ("http://arxiv.org/pdf/2410.17243v1.pdf", ("2410.17243", 1)),
        ("hep-th/9901001v1", ("hep-th/9901001", 1)),
        ("not-an-id", None),
        ("", None),
    ],
)
def test_parse_arxiv_id(raw: str, expected: tuple[str, int | None] | None) -> None:
    assert parse_arxiv_id(raw) == expected


def test_title_identity_ignores_case_punctuation_and_spacing() -> None:
    assert title_key("GVGEN: Text-to-3D  Generation") == title_key("gvgen text to 3d generation")
    assert title_hash_id("A Title") == title_hash_id("a   title!")
    assert title_hash_id("A Title").startswith("t:")


def test_split_sentences_keeps_abbreviations() -> None:
    text = "We use e.g. Gaussians. Results improve by 3%. (1) First step. Done!"
    assert split_sentences(text) == [
        "We use e.g. Gaussians.",
        "Results improve by 3%.",
        "(1) First step.",
        "Done!",
    ]


def test_make_paper_uses_arxiv_id_without_version() -> None:
    paper = make_paper(
        title="T",
        abstract="An abstract long enough to pass.",
        source="arxiv",
        arxiv_id="2410.17243v2",
    )
    assert (paper.paper_id, paper.arxiv_id, paper.version) == ("2410.17243", "2410.17243", 2)
    assert paper.link == "https://arxiv.org/abs/2410.17243"


def test_make_paper_without_arxiv_id_uses_title_hash() -> None:
    paper = make_paper(
        title="Some Title", abstract="An abstract long enough to pass.", source="file"
    )
    assert paper.paper_id == title_hash_id("Some Title")


@pytest.mark.parametrize(
    ("title", "abstract", "reason"),
    [
        ("", "An abstract long enough to pass.", "missing title"),
        ("T", "   ", "missing or empty abstract"),
        ("T", "short", "only 5 characters"),
        ("T", "x" * 100_000, "100,000 characters; the limit is 20,000"),
        ("T\ufffd", "An abstract long enough to pass.", "not valid UTF-8"),
    ],
)
def test_make_paper_rejects_bad_records_with_a_reason(
    title: str, abstract: str, reason: str
) -> None:
    with pytest.raises(InvalidRecord, match=reason):
        make_paper(title=title, abstract=abstract, source="file")


def test_make_paper_rejects_a_malformed_arxiv_id() -> None:
    with pytest.raises(InvalidRecord, match="not an arXiv id"):
        make_paper(
            title="T", abstract="An abstract long enough to pass.", source="file", arxiv_id="x1"
        )


@pytest.mark.parametrize(
    "kept",
    [
        "Coder \U0001f469\u200d\U0001f4bb at work",  # woman technologist: one emoji
        "Flag \U0001f3f3\ufe0f\u200d\U0001f308 sequence",  # rainbow flag (variation selector)
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 in Persian",  # ZWNJ inside a word
        "\u0915\u094d\u200d\u0937 in Devanagari",  # ZWJ after a virama
    ],
)
def test_clean_text_keeps_joiners_inside_words_and_emoji(kept: str) -> None:
    assert clean_text(kept) == kept


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("pay\u200dpal", "paypal"),  # a joiner inside a Latin word only hides
        ("\u200cstray\u200d joiners \u200d", "stray joiners"),
        ("Bidi \u202egnirts\u202c and \u202a\u202b\u202d embeddings", "Bidi gnirts and embeddings"),
        ("\u2066isolates\u2067 \u2068x\u2069", "isolates x"),
        ("zero\u200bwidth\u2060join\ufeffer\u180eX", "zerowidthjoinerX"),
        ("soft\u00adhyphen", "softhyphen"),
        ("tags\U000e0041\U000e007f here", "tags here"),
    ],
)
def test_clean_text_strips_bidi_controls_and_invisible_spoofing(raw: str, expected: str) -> None:
    assert clean_text(raw) == expected


def test_clean_text_drops_terminal_escape_sequences_whole() -> None:
    raw = "\x1b[2J\x1b[31mRed\x1b[0m title \x1b]0;pwned\x07and \x9b1mC1\x1b\\ done\x07"
    assert clean_text(raw) == "Red title and C1 done"


def test_title_identity_is_the_same_with_or_without_joiners() -> None:
    """Papers stored before joiners were kept keep their ids."""
    with_zwnj = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 retrieval"
    assert title_hash_id(with_zwnj) == title_hash_id(with_zwnj.replace("\u200c", ""))
