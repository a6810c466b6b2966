"""BM25 segments: incremental updates score exactly like a rebuild, files are shared safely."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from retrieval import lexical_terms
from retrieval.lexical import BM25Index, LexicalDoc, tokenize
from retrieval.lexical_segments import Segment, as_bytes, merge
from retrieval.lexical_store import SegmentStore, live_ids

WORDS = [
    "gaussian",
    "splatting",
    "text",
    "diffusion",
    "avatar",
    "contrastive",
    "batch",
    "retrieval",
    "transformer",
    "attention",
    "sparse",
    "graph",
    "protein",
    "folding",
    "speech",
    "emotion",
    "sarcasm",
    "translation",
    "summary",
]


def _docs(n: int, seed: int, prefix: str = "d") -> list[LexicalDoc]:
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        words = rng.choice(WORDS, int(rng.integers(3, 12)))
        day = date(2024, 1 + i % 12, 1 + i % 28) if i % 5 else None
        docs.append(LexicalDoc(f"{prefix}{i:04d}", " ".join(words), day, ("arxiv", "file")[i % 2]))
    return docs


def _same(a: BM25Index, b: BM25Index, query: str, **filters: object) -> None:
    top_a = a.search(query, 10, **filters)  # type: ignore[arg-type]
    top_b = b.search(query, 10, **filters)  # type: ignore[arg-type]
    assert [i for i, _ in top_a] == [i for i, _ in top_b]
    assert [s for _, s in top_a] == pytest.approx([s for _, s in top_b], rel=1e-5)
    assert a.query_ceiling(query) == pytest.approx(b.query_ceiling(query), rel=1e-9)


QUERIES = ("gaussian splatting", "protein folding speech", "sarcasm translation summary")


def test_updates_by_segment_score_exactly_like_a_rebuild(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path / "chunks", max_segments=3)
    docs = {d.chunk_id: d for d in _docs(300, seed=1)}
    index = store.rebuild(1, docs.values())
    for step in range(6):  # each step: delete some, change some, add some
        rng = np.random.default_rng(100 + step)
        ids = sorted(docs)
        removed = list(rng.choice(ids, 15, replace=False))
        for doc_id in removed:
            del docs[doc_id]
        changed = [
            LexicalDoc(d.chunk_id, d.text + " attention graph", d.published, d.source)
            for d in (docs[i] for i in rng.choice(sorted(docs), 10, replace=False))
        ]
        added = changed + _docs(40, seed=200 + step, prefix=f"n{step}-")
        docs.update({d.chunk_id: d for d in added})
        index = store.apply(index, 2 + step, as_bytes(removed), added)
        assert len(index.segments) <= 3  # merged when more than max_segments
        full = BM25Index.build(docs.values(), 2 + step)
        assert len(index) == len(full) == len(docs)
        for query in QUERIES:
            _same(index, full, query)
            _same(index, full, query, since=date(2024, 6, 1), sources=["arxiv"])
            for term in tokenize(query):
                assert index.document_frequency(term) == full.document_frequency(term)
        some = sorted(docs)[:50] + removed[:5]
        assert index.score_ids("attention graph", some) == pytest.approx(
            full.score_ids("attention graph", some), rel=1e-5
        )
        assert live_ids(index).tolist() == sorted(i.encode() for i in docs)
    reopened = store.open()
    assert reopened is not None and reopened.generation == index.generation
    for query in QUERIES:
        _same(reopened, index, query)


def test_a_removed_or_replaced_document_is_never_found_in_its_old_form(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path / "papers")
    index = store.rebuild(
        1,
        [
            LexicalDoc("a", "protein folding", None, "file"),
            LexicalDoc("b", "speech emotion", None, "file"),
        ],
    )
    index = store.apply(
        index, 2, as_bytes(["b"]), [LexicalDoc("a", "sarcasm detection", None, "file")]
    )
    assert index.search("protein", 5) == [] and index.search("speech", 5) == []
    assert [i for i, _ in index.search("sarcasm", 5)] == ["a"]
    assert index.terms_in(["a", "b"], {"sarcasm", "protein", "speech"}) == {
        "a": {"sarcasm"},
        "b": set(),
    }
    assert len(index) == 1 and index.document_frequency("protein") == 0


def test_a_reader_keeps_its_mapping_while_a_writer_replaces_the_index(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path / "chunks", max_segments=1)
    store.rebuild(1, _docs(100, seed=3))
    reader = store.open()
    assert reader is not None
    before = reader.search("protein folding", 5)
    writer = store.open()
    assert writer is not None
    store.apply(writer, 2, as_bytes(["d0000"]), _docs(50, seed=4, prefix="x"))  # merges
    names = {p.name for p in (tmp_path / "chunks").iterdir()}
    assert not {s.name for s in reader.segments} & names  # the old files are gone ...
    assert reader.search("protein folding", 5) == before  # ... and still read from the map
    fresh = store.open()
    assert fresh is not None and fresh.generation == 2 and len(fresh) == 149


def test_segment_files_round_trip_and_merge(tmp_path: Path) -> None:
    docs = _docs(120, seed=5)
    seg = Segment.from_docs(
        ((d.chunk_id, d.text, 0, d.source) for d in docs),
        lexical_terms.words,
        lexical_terms.term,
        name="seg-test",
    )
    opened = Segment.open(seg.write(tmp_path))
    assert not opened.rows.flags.owndata and not opened.rows.flags.writeable  # mapped
    assert opened.terms.find("gaussian") >= 0
    assert opened.terms.find("zebra") == -1
    dead = np.zeros(len(opened), dtype=bool)
    dead[:20] = True
    merged = merge([opened], [dead])
    expected = BM25Index.build(docs[20:], 1)
    _same(BM25Index([merged], 1), expected, "gaussian splatting")


def test_locate_ids_longer_or_shorter_than_the_segments_own() -> None:
    """Ids are looked up in the segment's own width: one longer than its longest id is not in
    it even when its first bytes are (e.g. "2301.00001#1:…" against "2301.00001")."""
    docs = [("p-1", "alpha beta", 0, "hf"), ("p-22", "beta gamma", 0, "hf")]
    seg = Segment.from_docs(iter(docs), lexical_terms.words, lexical_terms.term, name="ids")
    assert seg.ids.dtype.itemsize == 4
    found = seg.locate(as_bytes(["p-1", "p-22", "p-221", "p-1x", "p-2", "zz"]))
    assert found.tolist() == [0, 1, -1, -1, -1, -1]
    assert seg.locate(as_bytes(["p-22"])).tolist() == [1]  # same width
    assert seg.locate(as_bytes(["p-1"])).tolist() == [0]  # narrower


def test_save_and_load_keep_a_segmented_index_whole(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path / "chunks")
    index = store.rebuild(3, _docs(80, seed=6))
    index = store.apply(index, 4, as_bytes(["d0001"]), _docs(10, seed=7, prefix="y"))
    assert len(index.segments) == 2
    index.save(tmp_path / "one.npz")
    loaded = BM25Index.load(tmp_path / "one.npz")
    assert loaded is not None and loaded.generation == 4 and len(loaded.segments) == 1
    _same(loaded, index, "speech emotion")


def test_a_field_of_no_documents_is_written_and_mapped_like_any_other(tmp_path: Path) -> None:
    """A first ingest whose every record was bad leaves both fields empty: still files on
    disk (shared by every process), not an index each process builds in memory."""
    store = SegmentStore(tmp_path / "fresh" / "chunks")
    index = store.rebuild(1, [])
    assert index.generation == 1 and len(index) == 0
    assert index.query("speech emotion").top(5) == []
    reopened = SegmentStore(tmp_path / "fresh" / "chunks").open()
    assert reopened is not None and reopened.generation == 1 and len(reopened) == 0


def _corpus_docs(corpus: object) -> tuple[BM25Index, BM25Index]:
    """Both fields built from scratch from the corpus's state (what a rebuild would give)."""
    from retrieval.lexical_sync import LexicalIndexes

    state = corpus.state  # type: ignore[attr-defined]
    fresh = LexicalIndexes(Path("/nonexistent"), state)
    chunk_ids = fresh._all_chunk_ids()
    return (
        BM25Index.build(fresh._chunk_docs(chunk_ids), 0),
        BM25Index.build(fresh._paper_docs(fresh._all_paper_ids()), 0),
    )


@pytest.mark.integration
def test_the_corpus_updates_its_fields_by_what_changed(
    fake_corpus: object, sample_page: Path
) -> None:
    from retrieval import Corpus
    from retrieval.normalize import make_paper
    from retrieval.sources import page_text

    assert isinstance(fake_corpus, Corpus)
    records = list(
        page_text.parse(sample_page.read_bytes(), origin="page", page_date=date(2025, 5, 16))
    )
    fake_corpus.ingest(records)
    indexes = fake_corpus._lexical_indexes
    assert indexes is not None and indexes.last_update["kind"] == "rebuild"
    first = fake_corpus.lexical_index()
    paper = fake_corpus.papers()[0]
    changed = make_paper(
        title=paper.title,
        abstract=paper.abstract + " We also study sarcasm in tweets.",
        source=paper.source,
        arxiv_id=f"{paper.arxiv_id}v9" if paper.arxiv_id else None,
        published=paper.published,
    )
    new = make_paper(title="Zebra stripes", abstract="Zebra stripes confuse flies.", source="file")
    fake_corpus.ingest([changed, new])
    assert indexes.last_update["kind"] == "segments"
    assert int(indexes.last_update["added"]) >= 2
    chunks, papers = fake_corpus.lexical_index(), fake_corpus.paper_lexical_index()
    assert chunks.generation == fake_corpus.state.generation and len(chunks.segments) == 2
    full_chunks, full_papers = _corpus_docs(fake_corpus)
    for query in ("sarcasm tweets", "zebra stripes", "gaussian splatting 3D", "contrastive loss"):
        _same(chunks, full_chunks, query)
        _same(papers, full_papers, query)
    assert [i for i, _ in papers.search("sarcasm", 3)] == [paper.paper_id]
    assert first.search("zebra", 3) == []  # a mapping taken before stays as it was

    fake_corpus.delete([new.paper_id])
    assert fake_corpus.lexical_index().search("zebra", 3) == []
    assert fake_corpus.paper_lexical_index().search("zebra", 3) == []
    assert fake_corpus.rebuild_lexical_index() == fake_corpus.state.count_chunks()
    assert len(fake_corpus.lexical_index().segments) == 1
    reopened = Corpus(fake_corpus.settings, embedder=fake_corpus.embedder)
    index = reopened.lexical_index()  # mapped from the data dir, not rebuilt
    assert reopened._lexical_indexes is not None and not reopened._lexical_indexes.last_update
    assert index.generation == fake_corpus.state.generation
    _same(index, _corpus_docs(reopened)[0], "gaussian splatting 3D")
    reopened.close()


def test_threads_share_one_index_and_its_term_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import retrieval.lexical as lexical

    monkeypatch.setattr(lexical, "COLUMN_CACHE_BYTES", 2048)  # constant eviction
    store = SegmentStore(tmp_path / "chunks")
    index = store.rebuild(1, _docs(400, seed=8))
    queries = [" ".join(WORDS[i : i + 3]) for i in range(len(WORDS) - 2)]
    expected = {q: BM25Index.build(_docs(400, seed=8), 1).search(q, 10) for q in queries}
    failures: list[str] = []

    def run() -> None:
        for _ in range(20):
            for q in queries:
                if index.search(q, 10) != expected[q]:
                    failures.append(q)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_two_writers_on_one_data_dir_agree(tmp_path: Path) -> None:
    """Two processes' indexes noticing one new generation at once: one writes the segment
    under the lock, the other maps what it wrote."""
    import threading

    from retrieval.lexical_sync import LexicalIndexes
    from retrieval.models import Chunk
    from retrieval.normalize import make_paper
    from retrieval.state import Change, StateStore

    state = StateStore(tmp_path / "state.sqlite3")
    papers = [
        make_paper(title=f"Paper {w}", abstract=f"We study {w} with {w} models.", source="file")
        for w in WORDS
    ]
    changes = [
        Change(p, [Chunk(f"{p.paper_id}#0:{i:012x}", p.paper_id, 0, p.abstract, 8, p.title)])
        for i, p in enumerate(papers)
    ]
    state.apply(changes[:10], {}, "m")
    LexicalIndexes(tmp_path / "bm25", state).current(state.generation)
    state.apply(changes[10:], {}, "m")
    results: list[dict[str, BM25Index]] = []

    def update() -> None:
        results.append(LexicalIndexes(tmp_path / "bm25", state).current(state.generation))

    threads = [threading.Thread(target=update) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2
    for fields in results:
        assert len(fields["chunks"]) == len(fields["papers"]) == len(WORDS)
        assert [i for i, _ in fields["papers"].search("sarcasm", 1)] == [papers[16].paper_id]
    manifest = (tmp_path / "bm25" / "chunks" / "manifest.json").read_text()
    assert manifest.count('"seg-') == 2  # the first build and one update, not two
    state.close()


def test_a_papers_chunks_are_found_by_id_prefix_across_segments_and_tombstones(
    tmp_path: Path,
) -> None:
    """`chunk_ids_of` reads a paper's chunks from the chunk field's sorted ids: every live
    "{paper}#…" id of every segment, none of a removed one, none of a paper whose id only
    begins the same way ("2301.0001" is not "2301.00011")."""
    from retrieval.search import chunk_ids_of

    def chunk(paper: str, i: int) -> LexicalDoc:
        return LexicalDoc(f"{paper}#{i}:abc{i}", "speech translation", None, "arxiv")

    store = SegmentStore(tmp_path / "chunks")
    first = [chunk(p, i) for p in ("2301.0001", "2301.00011", "2301.0002") for i in range(3)]
    index = store.rebuild(1, first)
    later = [chunk("2301.0001", 3), chunk("2301.0003", 0)]  # a second segment
    index = store.apply(index, 2, as_bytes(["2301.0001#1:abc1"]), later)
    assert len(index.segments) == 2
    assert sorted(chunk_ids_of(index, ["2301.0001"])) == [
        "2301.0001#0:abc0",
        "2301.0001#2:abc2",
        "2301.0001#3:abc3",
    ]
    assert chunk_ids_of(index, ["2301.0003", "nope", "2301.00011"]) == [
        "2301.00011#0:abc0",
        "2301.00011#1:abc1",
        "2301.00011#2:abc2",
        "2301.0003#0:abc0",
    ]
    wide = "x" * 64  # longer than any id here
    assert chunk_ids_of(index, [wide]) == []
