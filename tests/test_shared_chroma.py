"""Several data dirs on one Chroma server never delete each other's vectors.

The model (retrieval/ownership.py): a collection is owned by one corpus state; another state
may search it but its ingest, delete and repair refuse, writing nothing anywhere. A legacy
collection (no owner stamp) is adopted only by the state that holds every one of its
vectors; repair deletes only vectors its own state wrote. Real `chroma run`, two data dirs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from retrieval import Corpus, Paper, PaperbotError, RetrievalSettings, StateFileError
from retrieval.ingest import Ingester
from retrieval.ownership import state_id
from retrieval.sources import page_text
from retrieval.store import ChunkMeta, CollectionOwnedError, Owner
from tests.support.chroma_server import ChromaServer, free_port
from tests.support.fakes import FakeEmbedder

pytestmark = pytest.mark.integration

QUERY = "identity-aware editing score distillation head avatars"


def _sample(sample_page: Path) -> list[Paper]:
    records = page_text.parse(sample_page.read_bytes(), origin="s", page_date=date(2025, 5, 16))
    return [r for r in records if isinstance(r, Paper)]


@pytest.fixture
def on_server(
    chroma_server: ChromaServer, make_settings: Callable[..., RetrievalSettings], tmp_path: Path
) -> Callable[..., RetrievalSettings]:
    """Settings for a data dir under tmp_path on the shared server; the same collection for
    every data dir of one test unless told otherwise."""
    collection = f"shared{free_port()}"

    def make(name: str, **overrides: object) -> RetrievalSettings:
        values: dict[str, object] = {
            "data_dir": tmp_path / name,
            "chroma_host": chroma_server.host,
            "chroma_port": chroma_server.port,
            "chroma_collection": collection,
        }
        values.update(overrides)
        return make_settings(**values)

    return make


def _corpus(settings: RetrievalSettings) -> Corpus:
    return Corpus(settings, embedder=FakeEmbedder())


def test_a_second_data_dir_cannot_write_the_first_ones_collection(
    on_server: Callable[..., RetrievalSettings], sample_page: Path
) -> None:
    papers = _sample(sample_page)
    a, b = _corpus(on_server("a")), _corpus(on_server("b"))
    a.ingest(papers)
    vectors = a.store.count()
    ids = a.store.ids()
    assert vectors == a.state.count_chunks() > 0
    assert set(a.store.stamps(sorted(ids)).values()) == {a.owner.state_id}
    assert a.ownership().mine and a.ownership().owner_label == a.owner.label

    with pytest.raises(CollectionOwnedError) as refused:
        b.ingest(papers[:3])
    message = str(refused.value)
    assert "\n" not in message
    assert a.store.name in message and a.store.where in message  # which collection, where
    assert a.owner.label in message and b.owner.label in message  # whose, and who asked
    assert "PAPERBOT_CHROMA_COLLECTION=" in message  # the fix
    with pytest.raises(CollectionOwnedError):
        b.repair_if_needed()  # the old "repair" deleted every vector B did not know

    assert b.state.count_papers() == 0  # nothing written to B's state either
    assert a.store.count() == vectors and a.store.ids() == ids
    assert a.search(QUERY, 3, mode="dense")[0].paper.title.startswith("HeadSculpt")
    assert a.stats()["in_step"]


def test_the_other_data_dir_searches_read_only_and_finds_only_its_own_papers(
    on_server: Callable[..., RetrievalSettings],
    sample_page: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Documented behaviour: B reads A's vectors, but a hit needs its chunk and paper from
    B's own state, which has none of A's papers: B's searches come back empty, its stats say
    whose collection it is, and its log says why once."""
    a, b = _corpus(on_server("a")), _corpus(on_server("b"))
    a.ingest(_sample(sample_page))
    query = b.embedder.embed_query(QUERY)
    assert b.store.query(query, 3)  # A's vectors, read through B's handle
    with caplog.at_level(logging.WARNING, logger="retrieval"):
        assert b.search(QUERY, 5) == []
        assert b.search(QUERY, 5, mode="dense") == []
    foreign = [r for r in caplog.records if "searches it read-only" in r.getMessage()]
    assert len(foreign) == 1 and a.owner.label in foreign[0].getMessage()
    stats = b.stats()
    assert stats["collection_owner"] == a.owner.label and not stats["collection_writable"]
    assert not stats["in_step"]
    assert a.stats()["collection_writable"]


def test_a_data_dir_with_its_own_collection_works_beside_the_first(
    on_server: Callable[..., RetrievalSettings], sample_page: Path
) -> None:
    papers = _sample(sample_page)
    a = _corpus(on_server("a"))
    b = _corpus(on_server("b", chroma_collection="paperbot-hostb"))
    a.ingest(papers[:20])
    before = a.store.ids()
    b.ingest(papers[20:])
    assert b.store.name != a.store.name
    assert b.store.count() == b.state.count_chunks() > 0
    assert a.store.ids() == before
    b.ingest(papers[20:25] + papers[:2])  # B's own papers, plus two that A also has
    assert a.store.ids() == before and b.stats()["in_step"] and a.stats()["in_step"]
    hit = b.search(papers[21].title, 1)[0]
    assert hit.paper.paper_id == papers[21].paper_id


def _legacy_ingest(corpus: Corpus, papers: list[Paper]) -> None:
    """Ingest as paperbot did before collections had owners: no stamps anywhere."""
    Ingester(
        corpus.state,
        corpus.store,
        corpus.embedder,
        corpus.codec,
        chunk_tokens=corpus.settings.chunk_tokens,
        chunk_overlap=corpus.settings.chunk_overlap,
    ).run(papers)
    assert corpus.store.metadata() in ({}, None) or "paperbot_owner" not in (
        corpus.store.metadata() or {}
    )


def test_a_legacy_collection_is_adopted_by_the_state_that_wrote_it_and_refused_by_another(
    on_server: Callable[..., RetrievalSettings], sample_page: Path
) -> None:
    papers = _sample(sample_page)
    legacy = _corpus(on_server("a"))
    _legacy_ingest(legacy, papers[:20])
    vectors = legacy.store.ids()
    assert set(legacy.store.stamps(sorted(vectors)).values()) == {None}
    legacy.close()

    other = _corpus(on_server("b"))
    with pytest.raises(CollectionOwnedError, match="before collections had owners") as refused:
        other.ingest(papers[20:])
    assert f"{len(vectors)} of them are not chunks of this data dir" in str(refused.value)
    assert other.store.ids() == vectors and other.state.count_papers() == 0

    a = _corpus(on_server("a"))  # the state that wrote it, reopened by a newer paperbot
    report = a.ingest(papers[20:])
    assert len(report.new) == 10
    assert a.ownership().mine
    assert a.store.ids() >= vectors and a.stats()["in_step"]
    with pytest.raises(CollectionOwnedError, match="belongs to another paperbot data dir"):
        other.ingest(papers[20:])


def test_a_legacy_collection_with_missing_vectors_is_adopted_and_repaired(
    on_server: Callable[..., RetrievalSettings], sample_page: Path
) -> None:
    a = _corpus(on_server("a"))
    _legacy_ingest(a, _sample(sample_page))
    dropped = sorted(a.store.ids())[:4]
    a.store.delete(dropped)  # as if a crash lost them: the state still has these chunks
    a.state.set_meta("index_dirty", "1")
    assert a.repair_if_needed() == (4, 0)
    assert a.ownership().mine and a.stats()["in_step"]


@pytest.mark.parametrize("mode", ["embedded", "server"])
def test_an_empty_new_state_next_to_an_owned_collection_never_wipes_it(
    mode: str,
    on_server: Callable[..., RetrievalSettings],
    make_settings: Callable[..., RetrievalSettings],
    sample_page: Path,
) -> None:
    settings = on_server("a") if mode == "server" else make_settings()
    a = _corpus(settings)
    a.ingest(_sample(sample_page))
    vectors = a.store.ids()
    a.close()
    for suffix in ("", "-wal", "-shm"):  # state.sqlite3 truncated to 0 bytes
        path = Path(f"{settings.state_path}{suffix}")
        if path.exists():
            path.write_bytes(b"")
    with pytest.raises(StateFileError, match="0 bytes"):  # a used data dir: lost, not new
        _corpus(settings).count_papers()
    for suffix in ("", "-wal", "-shm"):  # the user deletes it, as the error says, to start anew
        Path(f"{settings.state_path}{suffix}").unlink(missing_ok=True)
    fresh = _corpus(settings)
    assert fresh.state.count_papers() == 0
    with pytest.raises(CollectionOwnedError, match="earlier state of this data dir"):
        fresh.repair_if_needed()
    with pytest.raises(CollectionOwnedError, match=r"state\.sqlite3 has been replaced"):
        fresh.ingest(_sample(sample_page)[:2])
    assert fresh.store.ids() == vectors


def test_repair_never_deletes_vectors_another_state_wrote(
    on_server: Callable[..., RetrievalSettings], fake_embedder: FakeEmbedder, sample_page: Path
) -> None:
    a = _corpus(on_server("a"))
    a.ingest(_sample(sample_page))
    store = a.store
    mine = store.writer
    vector = fake_embedder.embed(["stray vector"])
    store.writer = Owner("another-state", "elsewhere:/data")
    store.upsert(["foreign#0:1"], vector, [ChunkMeta("foreign", None, "file")])
    store.writer = None
    store.upsert(["legacy#0:1"], vector, [ChunkMeta("legacy", None, "file")])
    store.writer = mine
    store.upsert(["ghost#0:1"], vector, [ChunkMeta("ghost", None, "file")])
    a.state.set_meta("index_dirty", "1")
    assert a.repair_if_needed() == (0, 2)  # its own orphan and the unstamped one
    left = store.ids() - a.state.chunk_ids()
    assert left == {"foreign#0:1"}


def test_two_data_dirs_claiming_a_new_collection_at_once_get_one_owner(
    on_server: Callable[..., RetrievalSettings], sample_page: Path
) -> None:
    papers = _sample(sample_page)
    corpora = [_corpus(on_server(name)) for name in ("a", "b")]
    for corpus in corpora:  # open the state and the model outside the race
        corpus.search("warm up", 1)
    barrier = threading.Barrier(2)
    outcomes: dict[int, BaseException | None] = {}

    def ingest(i: int) -> None:
        barrier.wait()
        try:
            corpora[i].ingest(papers[i * 10 : i * 10 + 10])
            outcomes[i] = None
        except PaperbotError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=ingest, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    winners = [i for i, exc in outcomes.items() if exc is None]
    losers = [exc for exc in outcomes.values() if exc is not None]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    assert isinstance(losers[0], CollectionOwnedError)
    winner = corpora[winners[0]]
    assert winner.store.ids() == winner.state.chunk_ids()
    assert set(winner.store.stamps(sorted(winner.store.ids())).values()) == {winner.owner.state_id}


def test_the_state_id_is_created_once_and_kept(settings: RetrievalSettings) -> None:
    first = _corpus(settings)
    ident = state_id(first.state)
    assert len(ident) == 32 and state_id(first.state) == ident
    first.close()
    assert _corpus(settings).owner.state_id == ident


def test_an_unowned_empty_collection_is_claimed_by_the_first_writer(
    on_server: Callable[..., RetrievalSettings], sample_page: Path
) -> None:
    """Reading never claims: B only searched (creating the empty collection), A writes."""
    a, b = _corpus(on_server("a")), _corpus(on_server("b"))
    assert b.search(QUERY, 3) == [] and b.store.count() == 0
    assert not b.ownership().foreign and b.ownership().owner_id is None
    a.ingest(_sample(sample_page)[:5])
    assert a.ownership().mine and b.ownership().foreign
    np.testing.assert_equal(a.store.count(), a.state.count_chunks())


def test_a_moved_data_dir_keeps_its_collection_and_the_label_follows(
    on_server: Callable[..., RetrievalSettings], sample_page: Path
) -> None:
    papers = _sample(sample_page)
    a = _corpus(on_server("a"))
    a.ingest(papers[:10])
    a.close()
    moved_settings = on_server("a-moved")
    a.settings.data_dir.rename(moved_settings.data_dir)
    moved = _corpus(moved_settings)
    assert len(moved.ingest(papers[10:]).new) == 20  # same state id: still the owner
    owned = moved.ownership()
    assert owned.mine and owned.owner_label == moved.owner.label
    assert str(moved_settings.data_dir.resolve()) in moved.owner.label
    assert moved.stats()["in_step"]
