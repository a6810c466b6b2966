"""Schema versions: a data dir of the release before them opens, migrated in place.

tests/fixtures/legacy_state_v0.sql is the state file that release wrote (papers, chunks,
vectors and caches, plus the Slack bot's bookkeeping in the same file). Opened with today's
code, the corpus file is stamped and migrated, the bot's data moves to its own file, and
everything a user relies on (votes, subscriptions, schedules, half-posted digests, the
answers behind old feedback buttons) still works.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from bot.services import Services
from bot.slack import store as bot_store
from bot.slack import store_schema
from bot.slack.digest_posting import post_digest
from bot.slack.store import BotStore
from retrieval import Corpus, RetrievalSettings
from retrieval.errors import ConfigError
from retrieval.migrations import Migration, migrate, schema_version
from retrieval.state import StateStore
from tests.support.fakes import FakeEmbedder
from tests.support.slack_fixtures import SECRET, harness_factory
from tests.support.slack_requests import block_actions, post

__all__ = ["harness_factory"]
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "legacy_state_v0.sql"
OLD_ANSWER_ID = "ff48fd679fe2497e861d9cb218d9bf01"
OLD_DIGEST_PARENT = "1747382400.000001"
CORPUS_TABLES = ("papers", "chunks", "embedding_cache", "meta", "cache")
BOT_TABLES = ("digest_posts", "seen_keys", "feedback", "subscriptions", "notified", "schedules")


def rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return sorted(db.execute(f"SELECT * FROM {table}").fetchall(), key=repr)


def version_of(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return schema_version(db)


def table_sql(path: Path, table: str) -> str:
    with sqlite3.connect(path) as db:
        found = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()
        return str(found[0])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def legacy_settings(make_settings: Callable[..., RetrievalSettings]) -> RetrievalSettings:
    """A data dir holding only the old release's state file."""
    settings = make_settings()
    settings.data_dir.mkdir(parents=True)
    with sqlite3.connect(settings.state_path) as db:
        db.executescript(FIXTURE.read_text(encoding="utf-8"))
    db.close()
    assert version_of(settings.state_path) == 0
    return settings


def bot_path(settings: RetrievalSettings) -> Path:
    return settings.data_dir / bot_store.FILENAME


# ------------------------------------------------------------------------- the corpus file
def test_corpus_state_is_stamped_and_keeps_every_row(legacy_settings: RetrievalSettings) -> None:
    path = legacy_settings.state_path
    before = {t: rows(path, t) for t in CORPUS_TABLES + BOT_TABLES}
    assert "WITHOUT ROWID" in table_sql(path, "embedding_cache")

    state = StateStore(path)
    state.close()

    assert version_of(path) == 3
    assert "WITHOUT ROWID" not in table_sql(path, "embedding_cache")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA freelist_count").fetchone()[0] == 0, "compacted"
    db.close()
    for table, old_rows in before.items():  # bot tables too: the corpus drops nothing
        # v3 adds papers.listed (the first listing day) after the old columns
        new_rows = [r[: len(old_rows[0])] for r in rows(path, table)] if old_rows else []
        assert sorted(new_rows, key=repr) == old_rows, table
    # the page's date was the day HF listed these papers (tests/test_listings.py)
    assert [r[-1] for r in rows(path, "papers")] == ["2025-05-16", "2025-05-16"]
    assert len(before["papers"]) == 2 and len(before["chunks"]) == 4
    assert len(before["embedding_cache"]) == 24


def test_the_migrated_corpus_answers_searches_from_its_cached_vectors(
    legacy_settings: RetrievalSettings,
) -> None:
    embedder = FakeEmbedder()
    corpus = Corpus(legacy_settings, embedder=embedder)
    try:
        assert corpus.count_papers() == 2
        assert corpus.repair_if_needed() == (4, 0)  # the fixture has no Chroma index
        assert embedder.texts_embedded == 0, "the chunks' vectors came from the migrated cache"
        hits = corpus.search("Candidate Pool Strategy for Gaussians", 2)
        assert hits and hits[0].paper.title.startswith("GVGEN")
    finally:
        corpus.close()


# ------------------------------------------------------------------------- the bot's file
def test_bot_store_imports_the_old_bookkeeping(legacy_settings: RetrievalSettings) -> None:
    legacy = legacy_settings.state_path
    legacy_hash = sha256(legacy)
    old_feedback = rows(legacy, "feedback")

    with BotStore.in_data_dir(legacy_settings.data_dir) as store:
        assert store.schema_version == store_schema.SCHEMA_VERSION
        assert store.schedules() == [
            {
                "channel": "C0DIGEST",
                "at_time": "09:00",
                "timezone": "Europe/Berlin",
                "topic": None,
                "max_papers": None,
                "created_at": pytest.approx(1796121771.502065),
            },
            {
                "channel": "C0TOPIC",
                "at_time": "17:30",
                "timezone": "UTC",
                "topic": "diffusion",
                "max_papers": 5,
                "created_at": pytest.approx(1796121771.502127),
            },
        ]
        assert store.subscriptions() == [
            ("C0PAPERS", "diffusion models"),
            ("U0SUB", "gaussian splatting"),
        ]
        assert not store.first_time("msg:C0PAPERS:1747382500.000000")
        assert not store.first_time("msg:D0USER:1747382700.000000")
        assert store.first_time("msg:C0PAPERS:1747382999.000000")
        assert not store.claim_notification("U0SUB", "t:7482eabc931c8f3c")
        assert not store.claim_notification("U0SUB", "t:3e3a75ce8eaa4ca4")
        assert store.get_meta("notify_watermark") == "1747382400.5"

        feedback = store.feedback_rows()
        columns = ("id", "question", "answer", "user_id", "vote", "channel", "message_ts")
        assert [tuple(r[c] for c in columns) for r in feedback] == [r[:7] for r in old_feedback]
        assert all(r["answer_id"] is None for r in feedback)

        answer = store.get_answer(OLD_ANSWER_ID)
        assert answer is not None
        assert answer["question"] == "Which paper introduces the Candidate Pool Strategy?"
        assert "Candidate Pool Strategy" in answer["answer"] and answer["mode"] == "extractive"

        posted = store.digest_status("C0DONE", "2025-05-15")
        assert posted is not None and posted["status"] == "posted"
        assert posted["ts"] == "1747296000.000100"
        failed = store.digest_status("C0DIGEST", "2025-05-16")
        assert failed is not None and failed["status"] == "failed"
        progress = store.digest_progress("C0DIGEST", "2025-05-16")
        assert progress is not None
        assert progress["ts"] == OLD_DIGEST_PARENT and progress["replies"] == 0
        assert progress["digest"].startswith('{"start": "2025-05-16"')

    assert sha256(legacy) == legacy_hash, "the old state file is only read"
    assert version_of(legacy) == 0


class RecordingClient:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []

    def chat_postMessage(self, **params: Any) -> dict[str, Any]:
        self.posts.append(params)
        return {"ok": True, "ts": f"1747390000.{len(self.posts):06d}"}

    def conversations_replies(self, **params: Any) -> dict[str, Any]:
        """The thread as Slack would list it, of what this client posted (the old paperbot's
        messages carry no metadata, so a resumed digest finds none of them)."""
        thread = [p for p in self.posts if p.get("thread_ts") == params["ts"]]
        return {"ok": True, "messages": thread, "has_more": False}


def test_a_half_posted_old_digest_goes_on_in_its_thread(
    legacy_settings: RetrievalSettings,
) -> None:
    corpus = Corpus(legacy_settings, embedder=FakeEmbedder())
    services = Services.build(legacy_settings, corpus=corpus, llm=None)
    client = RecordingClient()
    try:
        result = post_digest(services, client, "C0DIGEST", date(2025, 5, 16))
        assert result.status == "posted" and result.ts == OLD_DIGEST_PARENT
        assert client.posts, "the missing replies were posted"
        assert all(p.get("thread_ts") == OLD_DIGEST_PARENT for p in client.posts), (
            "no second parent message"
        )
        progress = services.store.digest_progress("C0DIGEST", "2025-05-16")
        assert progress is not None and progress["replies"] == len(client.posts)
    finally:
        services.store.close()
        corpus.close()


@pytest.fixture
def services(legacy_settings: RetrievalSettings) -> Any:
    """Services on the migrated data dir (the feedback button needs no search)."""
    corpus = Corpus(legacy_settings, embedder=FakeEmbedder())
    built = Services.build(legacy_settings, corpus=corpus, llm=None)
    yield built
    built.store.close()
    corpus.close()


@pytest.mark.integration
def test_a_feedback_click_on_an_old_answer_is_stored_with_it(
    harness_factory: Any, services: Services
) -> None:
    h = harness_factory()
    body = block_actions(
        "feedback_up",
        OLD_ANSWER_ID,
        user_id="U0LATER",
        message_ts="1747382500.000009",
        response_url=h.api.response_url("fb"),
    )
    response = post(h.url, body, secret=SECRET)
    assert response.status_code == 200, response.text
    h.api.wait_for("response_url")
    [row] = [r for r in services.store.feedback_rows() if r["user_id"] == "U0LATER"]
    assert row["vote"] == "up" and row["answer_id"] == OLD_ANSWER_ID
    assert row["question"] == "Which paper introduces the Candidate Pool Strategy?"
    assert "Candidate Pool Strategy" in row["answer"]


def test_a_v4_bot_file_gains_the_creator_index_and_its_limits_count_old_rows(
    tmp_path: Path,
) -> None:
    """v5: the subscriptions a user made before the limit existed count against it, and
    only their creator may remove a channel's (the last release's file, rows kept)."""
    path = tmp_path / "data" / bot_store.FILENAME
    path.parent.mkdir()
    db = sqlite3.connect(path, isolation_level=None)
    migrate(db, store_schema.MIGRATIONS[:4], path)  # what the last release wrote
    db.executemany(
        "INSERT INTO subscriptions(subscriber, topic, created_by, created_at) VALUES (?, ?, ?, 1)",
        [("C0PAPERS", "rag", "U0A"), ("U0A", "agents", "U0A"), ("C0PAPERS", "old", None)],
    )
    db.close()
    before = rows(path, "subscriptions")
    with BotStore(path) as store:
        assert store.schema_version == store_schema.SCHEMA_VERSION >= 5
        assert rows(path, "subscriptions") == before
        with pytest.raises(bot_store.SubscriptionLimitError):
            store.subscribe("U0A", "robotics", "U0A", max_per_user=2)
        assert not store.unsubscribe("C0PAPERS", "rag", by="U0B")
        assert store.unsubscribe("C0PAPERS", "rag", by="U0A")
    with sqlite3.connect(path) as db:
        plan = " ".join(
            str(r[-1])
            for r in db.execute(
                "EXPLAIN QUERY PLAN SELECT count(*) FROM subscriptions WHERE created_by = ?",
                ("U0A",),
            )
        )
    db.close()
    assert "subscriptions_by_creator" in plan, plan


def test_a_v5_bot_file_keeps_its_votes_and_takes_a_reason_for_a_thumbs_down(
    tmp_path: Path,
) -> None:
    """v6: votes cast before the "what was wrong?" follow-up existed are kept (no reason),
    a 👎 can get one, and the export shows it with the answer's model and sources."""
    path = tmp_path / "data" / bot_store.FILENAME
    path.parent.mkdir()
    db = sqlite3.connect(path, isolation_level=None)
    migrate(db, store_schema.MIGRATIONS[:5], path)  # what the last release wrote
    db.execute(
        "INSERT INTO answers(id, question, answer, mode, model, citations, created_at) "
        "VALUES ('a1', 'What is GPipe?', 'Pipeline parallelism [1].', 'llm', 'gpt-x', "
        '\'[{"number": 1, "paper_id": "1811.06965", "title": "GPipe"}]\', 1)'
    )
    db.executemany(
        "INSERT INTO feedback(answer_id, question, answer, user_id, vote, channel, message_ts, "
        "created_at) VALUES ('a1', 'What is GPipe?', 'Pipeline parallelism [1].', ?, ?, 'C1', "
        "'1.1', 1)",
        [("U0UP", "up"), ("U0DOWN", "down")],
    )
    db.close()
    with BotStore(path) as store:
        assert store.schema_version == store_schema.SCHEMA_VERSION >= 6
        before = store.feedback_rows()
        assert [(r["user_id"], r["vote"], r["reason"]) for r in before] == [
            ("U0UP", "up", None),
            ("U0DOWN", "down", None),
        ]
        assert not store.set_feedback_reason(answer_id="a1", user_id="U0UP", reason="meh")
        assert store.set_feedback_reason(answer_id="a1", user_id="U0DOWN", reason=" cited\nGPipe ")
        [_, down] = store.feedback_rows()
        assert down["reason"] == "cited GPipe" and down["model"] == "gpt-x"
        assert "1811.06965" in down["sources"]


# ------------------------------------------------------------------------- reopening
def snapshot(path: Path) -> tuple[int, list[str]]:
    with sqlite3.connect(path) as db:
        dump = list(db.iterdump())
    db.close()
    return version_of(path), dump


def test_opening_twice_changes_nothing(legacy_settings: RetrievalSettings) -> None:
    data_dir = legacy_settings.data_dir
    StateStore(legacy_settings.state_path).close()
    with BotStore.in_data_dir(data_dir) as store:
        assert store.unsubscribe("U0SUB", "gaussian splatting")  # a change after the import
    first = snapshot(legacy_settings.state_path), snapshot(bot_path(legacy_settings))

    StateStore(legacy_settings.state_path).close()
    with BotStore.in_data_dir(data_dir) as store:
        assert store.subscriptions() == [("C0PAPERS", "diffusion models")], "imported once"
    assert (snapshot(legacy_settings.state_path), snapshot(bot_path(legacy_settings))) == first


def test_a_crash_during_the_import_leaves_nothing_half_done(
    legacy_settings: RetrievalSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(db: sqlite3.Connection) -> int:
        raise RuntimeError("killed mid-import")

    monkeypatch.setattr(store_schema, "_import_legacy_progress", crash)
    with pytest.raises(RuntimeError, match="mid-import"):
        BotStore.in_data_dir(legacy_settings.data_dir).open()
    path = bot_path(legacy_settings)
    assert version_of(path) == 1
    assert rows(path, "subscriptions") == [] and rows(path, "answers") == []

    monkeypatch.undo()
    with BotStore.in_data_dir(legacy_settings.data_dir) as store:
        assert store.schema_version == store_schema.SCHEMA_VERSION
        assert len(store.subscriptions()) == 2 and store.get_answer(OLD_ANSWER_ID) is not None
        assert store.digest_progress("C0DIGEST", "2025-05-16") is not None


def test_two_processes_opening_at_once_import_once(legacy_settings: RetrievalSettings) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_store() -> None:
        barrier.wait()
        try:
            BotStore.in_data_dir(legacy_settings.data_dir).open().close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(rows(bot_path(legacy_settings), "feedback")) == 2
    assert version_of(bot_path(legacy_settings)) == store_schema.SCHEMA_VERSION


def test_a_fresh_data_dir_gets_both_files_at_the_latest_version(
    make_settings: Callable[..., RetrievalSettings],
) -> None:
    settings = make_settings()
    with BotStore.in_data_dir(settings.data_dir) as store:
        assert store.schema_version == store_schema.SCHEMA_VERSION and store.schedules() == []
    assert not settings.state_path.exists(), "the bot store never creates the corpus file"
    StateStore(settings.state_path).close()
    assert version_of(settings.state_path) == 3
    with sqlite3.connect(settings.state_path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert tables.isdisjoint(BOT_TABLES), "the corpus no longer creates the bot's tables"


# ------------------------------------------------------------------------- newer files
@pytest.mark.parametrize("which", ["corpus", "bot"])
def test_a_file_from_a_newer_paperbot_is_refused_with_its_name(
    which: str, make_settings: Callable[..., RetrievalSettings]
) -> None:
    settings = make_settings()
    settings.data_dir.mkdir(parents=True)
    path = settings.state_path if which == "corpus" else bot_path(settings)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")  # past every step either store knows
    db.close()
    with pytest.raises(ConfigError) as raised:
        if which == "corpus":
            StateStore(path)
        else:
            BotStore(path).open()
    message = str(raised.value)
    assert str(path) in message and "version 99" in message and "newer paperbot" in message
    assert "\n" not in message
    assert version_of(path) == 99


def test_migration_steps_must_be_numbered_in_order(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "x.sqlite3", isolation_level=None)
    try:
        steps = [Migration(2, "skips v1", lambda db: None)]
        with pytest.raises(ValueError, match="in order"):
            migrate(db, steps, tmp_path / "x.sqlite3")
        done = migrate(db, [Migration(1, "one", lambda db: None)], tmp_path / "x.sqlite3")
        assert done == [1] and schema_version(db) == 1
        assert migrate(db, [Migration(1, "one", lambda db: None)], tmp_path / "x.sqlite3") == []
    finally:
        db.close()
