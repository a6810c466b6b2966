"""One storage contract, two backends: the corpus state (`StateStore`) and the bot's claims
behave the same on the SQLite file and on a real PostgreSQL (tests/support/postgres.py), and
on PostgreSQL several replicas (separate connections, as separate processes or hosts have)
share one state: the generation, the state's id (so the Chroma collection's owner), the
answer queue, feed polls and digest claims, each taken once.

The BotStore's every method runs on both backends in tests/test_bot_store.py and
tests/test_answer_queue.py (their `store` fixture is parametrized the same way).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.slack.store import BotStore
from retrieval.models import Chunk, Paper
from retrieval.ownership import state_id
from retrieval.state import Change, StateStore
from tests.support.postgres import PostgresServer, backend_url, postgres_server

__all__ = ["backend_url", "postgres_server"]  # fixtures

MODEL = "test-model"


def paper(n: int, *, day: date | None = None, title: str | None = None) -> Paper:
    return Paper(
        paper_id=f"2501.{n:05d}",
        title=title or f"Paper number {n}",
        abstract=f"Abstract of paper {n}. It has two sentences.",
        authors=("Ada Lovelace", "Alan Turing"),
        published=day or date(2025, 1, 1 + n % 28),
        source="arxiv",
        arxiv_id=f"2501.{n:05d}",
        version=1,
        upvotes=n,
        categories=("cs.CL",),
    )


def chunks_of(p: Paper, n: int = 2) -> list[Chunk]:
    return [Chunk(f"{p.paper_id}#{i}", p.paper_id, i, f"chunk {i}", 3, p.title) for i in range(n)]


def add(state: StateStore, *papers: Paper, listings: Any = ()) -> int:
    changes = [Change(p, chunks_of(p)) for p in papers]
    vectors = {
        f"h{p.paper_id}": np.full(4, float(i), dtype=np.float32) for i, p in enumerate(papers)
    }
    return state.apply(changes, vectors, MODEL, listings)


@pytest.fixture
def open_state(tmp_path: Path, backend_url: str | None) -> Iterator[Callable[[], StateStore]]:
    """Opens the test's state (each call: a new connection, as another process would)."""
    opened: list[StateStore] = []
    clock = iter(float(t) for t in range(1000, 100000))

    def make() -> StateStore:
        state = StateStore(
            tmp_path / "data" / "state.sqlite3", clock=lambda: next(clock), database_url=backend_url
        )
        opened.append(state)
        return state

    yield make
    for state in opened:
        state.close()


@pytest.fixture
def state(open_state: Callable[[], StateStore]) -> StateStore:
    return open_state()


# ---------------------------------------------------------------- the corpus state
def test_papers_chunks_and_vectors_round_trip(state: StateStore) -> None:
    first, second = paper(1), paper(2, title="Second paper")
    assert state.generation == 0 and state.count_papers() == 0
    add(state, first, second)
    assert state.generation == 1 and state.index_dirty
    assert state.count_papers() == 2 and state.count_chunks() == 4
    assert state.get_paper(first.paper_id) == first
    assert state.get_papers([first.paper_id, "nope"]) == {first.paper_id: first}
    stored = state.stored_versions([second.paper_id])[second.paper_id]
    assert (stored.content_hash, stored.version) == (second.content_hash, 1)
    assert state.paper_ids_by_title("second PAPER") == [second.paper_id]
    assert state.chunk_ids() == {c.chunk_id for p in (first, second) for c in chunks_of(p)}
    assert state.chunk_ids_for([first.paper_id]) == {
        first.paper_id: [c.chunk_id for c in chunks_of(first)]
    }
    got = state.get_chunks([f"{first.paper_id}#1"])
    assert got[f"{first.paper_id}#1"] == chunks_of(first)[1]
    # what the BM25 fields index, read without building papers
    wanted = [*sorted(state.chunk_ids()), "nope#0"]
    rows = state.chunk_texts(wanted)
    assert sorted(c.chunk_id for c, _, _ in rows) == wanted[:-1]
    assert all(c == state.get_chunks([c.chunk_id])[c.chunk_id] for c, _, _ in rows)
    days = {c.paper_id: (day, source) for c, day, source in rows}
    assert days == {
        first.paper_id: (first.published, "arxiv"),
        second.paper_id: (second.published, "arxiv"),
    }
    texts = state.paper_texts([second.paper_id, "nope"])
    assert texts == [
        (second.paper_id, f"{second.title}\n\n{second.abstract}", second.published, "arxiv")
    ]
    vectors = state.cached_vectors(MODEL, [f"h{second.paper_id}", "missing"])
    assert list(vectors) == [f"h{second.paper_id}"]
    assert vectors[f"h{second.paper_id}"].tolist() == [1.0] * 4
    state.put_vectors({"x": np.arange(4, dtype=np.float32)}, MODEL)
    state.put_vectors({"x": np.zeros(4, dtype=np.float32)}, MODEL)  # first one kept
    assert state.cached_vectors(MODEL, ["x"])["x"].tolist() == [0.0, 1.0, 2.0, 3.0]
    state.mark_index_clean()
    assert not state.index_dirty
    stats = state.stats()
    assert (stats["papers"], stats["chunks"], stats["cached_embeddings"]) == (2, 4, 3)
    assert stats["by_source"] == {"arxiv": 2} and stats["generation"] == 1


def test_a_changed_paper_replaces_its_chunks_and_a_merged_one_its_listings(
    state: StateStore,
) -> None:
    old = paper(1)
    add(state, old, listings=[(old.paper_id, "hf", date(2025, 3, 1))])
    merged = paper(2)
    changes = [Change(merged, chunks_of(merged, 3), replaces=(old.paper_id,))]
    state.apply(changes, {}, MODEL)
    assert state.get_paper(old.paper_id) is None and state.generation == 2
    assert state.chunk_ids_for([merged.paper_id])[merged.paper_id][-1] == f"{merged.paper_id}#2"
    [listing] = state.listings(paper_ids=[merged.paper_id])
    assert (listing.feed, listing.day) == ("hf", date(2025, 3, 1))
    assert state.get_paper(merged.paper_id).listed == date(2025, 3, 1)  # type: ignore[union-attr]
    metadata_only = Change(merged.model_copy(update={"upvotes": 99}), None)
    state.apply([metadata_only], {}, MODEL)
    assert state.generation == 2, "metadata alone bumps no generation"
    assert state.get_paper(merged.paper_id).upvotes == 99  # type: ignore[union-attr]
    assert state.count_chunks() == 3


def test_listings_days_and_date_filters(state: StateStore) -> None:
    a, b, c = paper(1), paper(2), paper(3)
    add(state, a, b, c)
    assert state.add_listings([(a.paper_id, "hf", date(2025, 5, 2))]) == 1
    assert state.add_listings([(a.paper_id, "hf", date(2025, 5, 2))]) == 0, "known"
    assert state.add_listings([("unknown", "hf", date(2025, 5, 2))]) == 0, "not stored"
    assert state.add_listings([(a.paper_id, "arxiv", date(2025, 5, 1))]) == 1
    assert state.get_paper(a.paper_id).listed == date(2025, 5, 1)  # type: ignore[union-attr]
    assert state.latest_day() == date(2025, 5, 1)
    assert state.latest_day("published") == date(2025, 1, 4)
    listed = state.list_papers(since=date(2025, 5, 1))
    assert [p.paper_id for p in listed] == [a.paper_id]
    newest_first = state.list_papers()
    assert [p.paper_id for p in newest_first] == [a.paper_id, c.paper_id, b.paper_id]
    assert [p.paper_id for p in state.list_papers(limit=1, offset=1)] == [c.paper_id]
    assert state.list_papers(source="hf_api") == []
    between = state.paper_ids_between(date(2025, 1, 3), None, ["arxiv"])
    assert sorted(between) == [a.paper_id, b.paper_id, c.paper_id], "a by its listing day"
    published = state.paper_ids_between(None, date(2025, 1, 3), by="published")
    assert sorted(published) == [a.paper_id, b.paper_id]
    feeds = [x.feed for x in state.listings(paper_ids=[a.paper_id])]
    assert feeds == ["arxiv", "hf"], "oldest day first"
    assert state.listings(feed="hf", since=date(2025, 5, 2), until=date(2025, 5, 2))[0].paper_id
    assert state.listings(paper_ids=[]) == []
    ingested = state.papers_ingested_since(0)
    assert sorted(p.paper_id for p in ingested) == [a.paper_id, b.paper_id, c.paper_id]
    assert state.papers_ingested_since(1e12) == []
    arrived = state.papers_arrived_since(0)
    assert {p.paper_id for p in arrived} == {a.paper_id, b.paper_id, c.paper_id}
    assert state.delete_papers([b.paper_id, "nope"]) == 1 and state.generation == 2
    assert state.get_chunks([f"{b.paper_id}#0"]) == {}, "chunks go with their paper"


def test_meta_and_the_recomputable_cache(state: StateStore) -> None:
    assert state.get_meta("k") is None and state.get_meta("k", "d") == "d"
    state.set_meta("k", "1")
    state.set_meta("k", "2")
    assert state.get_meta("k") == "2"
    state.set_meta("j", "x")
    assert state.get_metas(["k", "j", "absent"]) == {"k": "2", "j": "x"}
    assert state.cache_get("tldr", "p1") is None
    state.cache_put("tldr", "p1", {"text": "short 100%"})
    state.cache_put("tldr", "p1", {"text": "shorter"})
    assert state.cache_get("tldr", "p1") == {"text": "shorter"}
    assert state.cache_count("tldr") == 1 and state.cache_count("topic") == 0
    assert state.integrity_problems() == []


def test_a_failed_transaction_leaves_the_state_as_it_was(state: StateStore) -> None:
    add(state, paper(1))
    with pytest.raises(RuntimeError), state.transaction() as db:
        db.execute("DELETE FROM papers")
        raise RuntimeError("crash")
    assert state.count_papers() == 1 and state.count_chunks() == 2


# ---------------------------------------------------------------- several replicas
def test_replicas_share_the_generation_and_the_state_id(
    open_state: Callable[[], StateStore], backend_url: str | None
) -> None:
    one, two = open_state(), open_state()
    assert state_id(one) == state_id(two), "one owner of the Chroma collection"
    add(one, paper(1))
    assert two.generation == 1 and two.get_paper(paper(1).paper_id) is not None
    add(two, paper(2))
    assert one.generation == 2 and one.count_papers() == 2


def test_concurrent_writers_never_lose_a_generation(
    open_state: Callable[[], StateStore],
) -> None:
    states = [open_state() for _ in range(4)]
    barrier = threading.Barrier(len(states))

    def write(k: int, state: StateStore) -> None:
        barrier.wait()
        for i in range(5):
            add(state, paper(100 * k + i))

    threads = [threading.Thread(target=write, args=(k, s)) for k, s in enumerate(states)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert states[0].generation == 20 and states[0].count_papers() == 20


def test_two_databases_are_two_owners(tmp_path: Path, postgres_server: PostgresServer) -> None:
    """Replicas with different databases are different states: they get different ids, so
    one refuses to write the other's collection (retrieval/ownership.py); the same database
    is one state wherever its data dir is."""
    url = postgres_server.new_database()
    other = StateStore(tmp_path / "x", database_url=postgres_server.new_database())
    mine = StateStore(tmp_path / "y", database_url=url)
    again = StateStore(tmp_path / "z", database_url=url)
    try:
        assert state_id(other) != state_id(mine) == state_id(again)
    finally:
        for state in (other, mine, again):
            state.close()


def _race(n: int, attempt: Callable[[BotStore, int], Any], url: str | None, path: Path) -> list:
    """``n`` stores (one connection each, like processes) run ``attempt`` at once."""
    stores = [BotStore(path, database_url=url).open() for _ in range(n)]
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        results[i] = attempt(stores[i], i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    return results


def test_a_digest_claim_and_a_feed_poll_go_to_one_replica(
    tmp_path: Path, backend_url: str | None
) -> None:
    path = tmp_path / "bot.sqlite3"
    with BotStore(path, database_url=backend_url) as store:
        store.add_feed({"name": "hf", "kind": "hf", "params": "{}"})
    for round_ in range(5):
        day = f"2025-05-{10 + round_:02d}"
        won = _race(6, lambda s, i, d=day: s.claim_digest("C1", d, f"r{i}", 600), backend_url, path)
        assert sum(won) == 1, f"one replica posts the digest of {day}"
        now = 1000.0 * (round_ + 1)
        polls = _race(6, lambda s, i, t=now: s.claim_feed("hf", f"r{i}", t, 60), backend_url, path)
        assert sum(polls) == 1, "one replica polls the feed"
        with BotStore(path, database_url=backend_url) as store:
            store.finish_feed("hf", at=now, ok=True, next_due=now + 1)


def test_jobs_taken_by_several_replicas_are_each_taken_once(
    tmp_path: Path, backend_url: str | None
) -> None:
    path = tmp_path / "bot.sqlite3"
    with BotStore(path, database_url=backend_url) as store:
        for i in range(60):
            store.add_job(f"msg:C1:{i}", 1.0, kind="mention", channel="C1", question=f"q{i}")

    def drain(store: BotStore, i: int) -> list[int]:
        taken = []
        while (job := store.claim_job(f"r{i}", 10.0, 60.0)) is not None:
            taken.append(job["id"])
            assert store.finish_job(job["id"], f"r{i}", 11.0)
        return taken

    results = _race(4, drain, backend_url, path)
    counts = Counter(job for taken in results for job in taken)
    assert len(counts) == 60 and set(counts.values()) == {1}, "every job once"
    with BotStore(path, database_url=backend_url) as store:
        assert {j["state"] for j in store.jobs()} == {"done"}


def test_one_corpus_writer_at_a_time_across_replicas(
    open_state: Callable[[], StateStore], backend_url: str | None
) -> None:
    """On PostgreSQL the state's writer lock spans hosts (the data dir's file lock cannot);
    on SQLite it leaves serialising to that file lock."""
    one, two = open_state(), open_state()
    with one.writer_lock() as held:
        assert held
        with two.writer_lock(wait=False) as other:
            assert other is (backend_url is None), "PostgreSQL: the other replica waits"
    with two.writer_lock(wait=False) as other:
        assert other, "released when the writer is done"


def test_a_lost_postgres_connection_is_one_error_then_opened_again(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """A server restart or a dropped connection inside a long `serve`: the call that meets it
    fails with one line naming the fix, the next one reconnects."""
    import psycopg

    from retrieval.db import DatabaseUnavailableError

    url = postgres_server.new_database()
    with BotStore(tmp_path / "bot.sqlite3", database_url=url) as store:
        assert store.first_time("before")
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'paperbot' AND pid <> pg_backend_pid()"
            )
        with pytest.raises(DatabaseUnavailableError) as raised:
            store.first_time("during")
        assert "PAPERBOT_DATABASE_URL" in str(raised.value) and "\n" not in str(raised.value)
        assert store.first_time("after"), "reconnected"
        assert not store.first_time("before"), "the same database"


def test_postgres_schemas_are_created_at_their_version_then_climb_a_ladder(
    postgres_server: PostgresServer,
) -> None:
    from retrieval.db import PgMigration, PostgresDatabase, migrate_postgres, postgres_version
    from retrieval.errors import ConfigError

    db = PostgresDatabase(postgres_server.new_database(), "ladder_test")
    try:
        create = ("CREATE TABLE t (a INTEGER)",)
        assert migrate_postgres(db, create, 1) == [1] and postgres_version(db) == 1
        assert migrate_postgres(db, create, 1) == [], "created once"
        step = PgMigration(2, "a column", ("ALTER TABLE t ADD COLUMN b TEXT",))
        assert migrate_postgres(db, create, 2, [step]) == [2] and postgres_version(db) == 2
        db.execute("INSERT INTO t(a, b) VALUES (?, ?)", (1, "100%"))
        assert db.execute("SELECT b FROM t WHERE b LIKE '%\\%'").fetchone()["b"] == "100%"
        with pytest.raises(ConfigError, match="newer paperbot"):
            migrate_postgres(db, create, 1)
    finally:
        db.close()


def test_a_bot_schema_of_version_6_gains_the_digest_parent_sends(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """PostgreSQL: a `paperbot_bot` schema an earlier paperbot created (version 6) is brought
    to the latest version by its `PgMigration`s when this paperbot opens it."""
    from bot.slack import store_schema
    from bot.slack.store import BotStore
    from retrieval.db import PostgresDatabase, migrate_postgres, postgres_version

    url = postgres_server.new_database()
    db = PostgresDatabase(url, store_schema.PG_SCHEMA)
    try:
        created = [s for s in store_schema.PG_CREATE if "digest_parent_sends" not in s]
        assert migrate_postgres(db, created, 6) == [6]
    finally:
        db.close()
    with BotStore.in_data_dir(tmp_path / "data", database_url=url) as store:
        assert store.schema_version == store_schema.SCHEMA_VERSION == 7
        store.mark_parent_send("C1", "2025-05-16", digest="{}")
        assert store.parent_send("C1", "2025-05-16") is not None
    db = PostgresDatabase(url, store_schema.PG_SCHEMA)
    try:
        assert postgres_version(db) == 7
    finally:
        db.close()
