from __future__ import annotations

from datetime import date
from pathlib import Path

from retrieval.lexical import BM25Index, LexicalDoc, tokenize

DOCS = [
    LexicalDoc("a", "Gaussian splatting for text-to-3D generation", date(2025, 5, 16), "hf_page"),
    LexicalDoc(
        "b", "Contrastive loss with near infinite batch sizes", date(2024, 10, 22), "hf_api"
    ),
    LexicalDoc("c", "Head avatars from text prompts with Gaussians", None, "arxiv"),
]


def test_tokenize_drops_stopwords_and_folds_plurals() -> None:
    assert tokenize("The Models of Gaussians and studies") == ["model", "gaussian", "study"]


def test_bm25_ranks_the_matching_document_first() -> None:
    index = BM25Index.build(DOCS, generation=1)
    results = index.search("batch size contrastive", 3)
    assert results[0][0] == "b"
    assert all(score > 0 for _, score in results)


def test_unknown_terms_and_empty_index_return_nothing() -> None:
    assert BM25Index.build(DOCS, 1).search("zebra", 3) == []
    assert BM25Index.build([], 1).search("gaussian", 3) == []


def test_filters_by_date_and_source() -> None:
    index = BM25Index.build(DOCS, generation=1)
    assert [i for i, _ in index.search("gaussian", 3, since=date(2025, 1, 1))] == ["a"]
    assert [i for i, _ in index.search("gaussian", 3, sources=["arxiv"])] == ["c"]
    # undated chunks never satisfy an upper bound
    assert [i for i, _ in index.search("gaussian", 3, until=date(2030, 1, 1))] == ["a"]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    index = BM25Index.build(DOCS, generation=7)
    path = tmp_path / "bm25.npz"
    index.save(path)
    loaded = BM25Index.load(path)
    assert loaded is not None and loaded.generation == 7
    assert loaded.search("gaussian head", 3) == index.search("gaussian head", 3)


def test_a_corrupt_file_loads_as_none(tmp_path: Path) -> None:
    path = tmp_path / "bm25.npz"
    path.write_bytes(b"not a numpy file")
    assert BM25Index.load(path) is None


def test_the_fast_word_split_finds_exactly_the_regex_words() -> None:
    """ASCII text is split by a byte table, other text by the regex: both give the words
    ``[a-z0-9]+`` finds in the folded text, so documents and questions tokenize alike."""
    import random
    import re
    import unicodedata

    from retrieval.lexical_terms import words

    rng = random.Random(7)
    alphabet = [chr(c) for c in range(128)] + list("éÉßﬁ½²Ωα–—\u00a0\u200bİı")
    texts = ["", "GPT-4o's 3.5x gain (n=12) vs. BERT_base!", "Naïve Café ﬁne-tuning ½ α"]
    texts += ["".join(rng.choices(alphabet, k=rng.randint(0, 80))) for _ in range(2000)]
    for text in texts:
        folded = unicodedata.normalize("NFKD", text).casefold()
        assert words(text) == re.findall(r"[a-z0-9]+", folded), text


def test_a_segment_counts_what_tokenize_yields() -> None:
    """`Segment.from_docs` maps each distinct word to its column once: its postings are the
    counts of `tokenize`'s terms, folded plurals and stopwords included."""
    from collections import Counter

    from retrieval.lexical import segment_of

    docs = [
        LexicalDoc("a", "Models and the model: MODELS of models.", date(2024, 1, 2), "hf"),
        LexicalDoc("b", "the of and", None, "arxiv"),
        LexicalDoc("c", "Studies study studies; café CAFE", date(2023, 12, 31), "hf"),
    ]
    seg = segment_of(docs)
    assert seg.published.tolist() == [20240102, 0, 20231231]
    for row, doc in enumerate(docs):
        expected = Counter(tokenize(doc.text))
        assert int(seg.lengths[row]) == sum(expected.values())
        got = {}
        for col in range(len(seg.terms)):
            rows, tfs = seg.postings_of(col)
            pairs = zip(rows.tolist(), tfs.tolist(), strict=True)
            got.update({seg.terms[col].decode(): t for r, t in pairs if r == row})
        assert got == dict(expected)
