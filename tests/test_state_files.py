"""Damaged, emptied and replaced SQLite files of a data dir (issue 12, "State").

Each test damages a real file the way an operator's accident does (a half-finished copy, a
disk that overwrote pages, a truncation to 0 bytes, a deleted state) and asserts what the user
sees: one line naming the file and the way out, and no vector deleted behind their back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.slack.store import BotStore
from retrieval import Corpus, Paper, RetrievalSettings, StateAdmin, StateFileError
from retrieval.state import StateStore
from retrieval.store import VectorStore
from tests.support.fakes import FakeEmbedder

pytestmark = pytest.mark.integration


def _papers(n: int = 12) -> list[Paper]:
    return [
        Paper(
            paper_id=f"2501.{i:05d}",
            title=f"Paper {i} on topic {i % 3}",
            abstract=(
                f"We study problem {i} with a new method. It improves accuracy by {i} points. "
                "The method is simple and runs fast on one GPU."
            ),
            authors=("A. Author",),
            source="arxiv",
        )
        for i in range(n)
    ]


@pytest.fixture
def ingested(fake_corpus: Corpus) -> Corpus:
    report = fake_corpus.ingest(_papers())
    assert len(report.new) == 12
    return fake_corpus


def _overwrite_pages(path: Path, first_page: int = 3, pages: int = 4) -> None:
    """A disk (or a careless copy) wrote garbage over a few pages in the middle."""
    with path.open("r+b") as f:
        f.seek(4096 * first_page)
        f.write(b"\xff" * 4096 * pages)


def _checkpoint(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def _assert_one_line_naming(exc: BaseException, path: Path, *fixes: str) -> None:
    text = str(exc)
    assert "\n" not in text and str(path) in text, text
    for fix in fixes:
        assert fix in text, text


def test_a_half_truncated_state_is_one_line_naming_the_file_and_the_way_out(
    ingested: Corpus, settings: RetrievalSettings
) -> None:
    ingested.close()
    path = settings.state_path
    _checkpoint(path)
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(StateFileError) as caught:
        StateStore(path)
    _assert_one_line_naming(caught.value, path, "paperbot state restore", "paperbot state rebuild")


def test_overwritten_pages_are_found_on_open_not_by_a_later_query(
    ingested: Corpus, settings: RetrievalSettings
) -> None:
    ingested.close()
    path = settings.state_path
    _checkpoint(path)
    _overwrite_pages(path)
    with pytest.raises(StateFileError) as caught:
        Corpus(settings, embedder=FakeEmbedder()).count_papers()
    _assert_one_line_naming(caught.value, path, "paperbot state rebuild")


def test_a_damaged_bot_store_is_one_line_at_open(settings: RetrievalSettings) -> None:
    path = settings.data_dir / "bot.sqlite3"
    with BotStore(path) as store:
        store.open()
        for i in range(300):  # enough rows for several pages
            store.subscribe(f"C{i:08d}", f"a longer topic number {i} " * 4, "U1")
    _checkpoint(path)
    _overwrite_pages(path, first_page=2, pages=3)
    with pytest.raises(StateFileError) as caught:
        BotStore(path).open()
    _assert_one_line_naming(caught.value, path, "paperbot state rebuild --bot")


def test_a_zero_byte_state_in_a_used_data_dir_is_refused_not_started_afresh(
    ingested: Corpus, settings: RetrievalSettings
) -> None:
    vectors = ingested.store.count()
    ingested.close()
    settings.state_path.write_bytes(b"")
    for side in ("-wal", "-shm"):
        settings.state_path.with_name(settings.state_path.name + side).unlink(missing_ok=True)
    corpus = Corpus(settings, embedder=FakeEmbedder())
    with pytest.raises(StateFileError) as caught:
        corpus.ingest(_papers(2))
    _assert_one_line_naming(caught.value, settings.state_path, "0 bytes", "state restore")
    assert settings.state_path.stat().st_size == 0  # nothing was written over it
    store = VectorStore.from_settings(settings, FakeEmbedder().model_id, None)
    assert store.count() == vectors  # no vector was touched
    store.close()


def test_a_zero_byte_state_in_a_new_data_dir_is_just_new(settings: RetrievalSettings) -> None:
    settings.data_dir.mkdir(parents=True)
    settings.state_path.write_bytes(b"")
    state = StateStore(settings.state_path)
    assert state.count_papers() == 0
    state.close()


def test_ingest_refuses_to_repair_vectors_against_a_lost_state_and_says_what_it_found(
    ingested: Corpus, settings: RetrievalSettings
) -> None:
    vectors = ingested.store.count()
    assert vectors >= 12
    ingested.close()
    for name in ("state.sqlite3", "state.sqlite3-wal", "state.sqlite3-shm"):
        (settings.data_dir / name).unlink(missing_ok=True)
    corpus = Corpus(settings, embedder=FakeEmbedder())
    with pytest.raises(StateFileError) as caught:
        corpus.ingest(_papers(3))
    message = str(caught.value)
    assert f"Found {vectors} vectors" in message and "0 papers in the state" in message
    assert corpus.store.name in message and "--force" in message
    assert corpus.store.count() == vectors and corpus.count_papers() == 0
    # --force starts over: the old vectors go, the new papers are embedded
    report = corpus.ingest(_papers(3), force=True)
    assert len(report.new) == 3
    assert corpus.store.count() == corpus.state.count_chunks() < vectors
    corpus.close()


def test_backup_restore_round_trip_keeps_the_replaced_file(
    ingested: Corpus, settings: RetrievalSettings
) -> None:
    admin = StateAdmin(settings)
    made = admin.backup(settings.data_dir.parent / "backup")
    assert set(made["files"]) == {"state.sqlite3"}
    ingested.delete(["2501.00001"])
    ingested.close()
    restored = admin.restore(Path(made["backup"]))
    assert restored["kept"]["state.sqlite3"].endswith("state.sqlite3.bak")
    assert StateStore(settings.state_path).count_papers() == 12
    assert StateStore(Path(restored["kept"]["state.sqlite3"])).count_papers() == 11


def test_restore_refuses_while_another_connection_has_the_file_open(
    ingested: Corpus, settings: RetrievalSettings, tmp_path: Path
) -> None:
    import subprocess
    import sys

    admin = StateAdmin(settings)
    made = admin.backup(tmp_path / "backup")
    ingested.close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"db = sqlite3.connect({str(settings.state_path)!r})\n"
            "db.execute('SELECT COUNT(*) FROM papers').fetchall()\n"
            "print('open', flush=True)\n"
            "time.sleep(30)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(StateFileError) as caught:
            admin.restore(Path(made["backup"]))
        assert "open in another process" in str(caught.value)
        assert not settings.state_path.with_name("state.sqlite3.bak").exists()
    finally:
        holder.kill()
        holder.wait()


def test_restore_refuses_while_an_ingest_holds_the_writer_lock(
    ingested: Corpus, settings: RetrievalSettings, tmp_path: Path
) -> None:
    import fcntl

    made = StateAdmin(settings).backup(tmp_path / "backup")
    with open(settings.data_dir / "ingest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(StateFileError) as caught:
            StateAdmin(settings).restore(Path(made["backup"]))
    assert "ingest.lock" in str(caught.value)


def test_rebuild_salvages_readable_rows_and_names_the_lost_papers(
    make_settings: Callable[..., RetrievalSettings], fake_embedder: FakeEmbedder
) -> None:
    settings = make_settings()
    corpus = Corpus(settings, embedder=fake_embedder)
    many = [
        p.model_copy(update={"abstract": p.abstract + " " + "More words here. " * 60})
        for p in _papers(60)
    ]
    corpus.ingest(many)
    corpus.close()
    store = VectorStore.from_settings(settings, fake_embedder.model_id, None)
    _checkpoint(settings.state_path)
    _overwrite_pages(settings.state_path, first_page=20, pages=6)
    admin = StateAdmin(settings, store=store)
    report = admin.rebuild()
    assert report["damaged_copy"].endswith("state.sqlite3.damaged")
    kept = report["rows"]["papers"]
    assert 0 < kept < 60 or report["damaged_tables"]
    lost = report["lost"]
    assert lost["papers"] == 60 - kept and len(lost["ids"]) == lost["papers"]
    assert StateAdmin(settings).check()["ok"]
    # the rebuilt state opens, and the next repair brings the vectors in step with it
    again = Corpus(settings, embedder=fake_embedder)
    assert again.count_papers() == kept
    again.repair_if_needed()
    assert again.stats()["in_step"]
    again.close()


def test_read_commands_work_on_a_read_only_state(
    ingested: Corpus, settings: RetrievalSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same path a user without write access takes (os.access says no): reads work,
    a write is one line saying why not. tests/test_state_cli.py runs it as another user."""
    import retrieval.state_files as state_files

    ingested.close()
    monkeypatch.setattr(state_files, "writable", lambda path: False)
    monkeypatch.setattr("retrieval.state.writable", lambda path: False)
    corpus = Corpus(settings, embedder=FakeEmbedder())
    assert corpus.state.read_only and corpus.count_papers() == 12
    assert corpus.search("problem 3 new method", 3)
    with pytest.raises(StateFileError) as caught:
        corpus.ingest(_papers(1))
    assert "read-only" in str(caught.value) and "\n" not in str(caught.value)
    corpus.close()


def test_a_zero_byte_bot_store_next_to_a_used_state_is_reported(
    ingested: Corpus, settings: RetrievalSettings
) -> None:
    """Subscriptions, schedules and feedback never vanish without a word: `state check` (and
    doctor's "data files" line) names the emptied file; `refuse_emptied` is the open guard."""
    from retrieval import refuse_emptied

    bot = settings.data_dir / "bot.sqlite3"
    with BotStore(bot) as store:
        store.subscribe("C0123456789", "diffusion", "U1")
    bot.write_bytes(b"")
    report = StateAdmin(settings).check()
    assert not report["ok"]
    assert "0 bytes" in report["files"]["bot.sqlite3"]["problems"][0]
    with pytest.raises(StateFileError) as caught:
        refuse_emptied(bot, [settings.state_path])
    _assert_one_line_naming(caught.value, bot, "0 bytes", "paperbot state restore")
    with pytest.raises(StateFileError):  # and the bot store itself refuses to open it
        BotStore(bot).open()
    assert bot.stat().st_size == 0  # nothing written over it


def test_serve_checks_files_too_big_for_the_check_on_open(
    ingested: Corpus, settings: RetrievalSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files over QUICK_CHECK_MAX_BYTES skip the check on every open; `serve` checks them once
    at start (here the limit is lowered so the sample state counts as big)."""
    from bot.cli.bot_commands import check_big_files
    from retrieval import migrations

    ingested.close()
    check_big_files(settings)  # small files: nothing to do
    monkeypatch.setattr(migrations, "QUICK_CHECK_MAX_BYTES", 0)
    check_big_files(settings)  # big and sound: passes
    _checkpoint(settings.state_path)
    _overwrite_pages(settings.state_path)
    with pytest.raises(StateFileError) as caught:
        check_big_files(settings)
    assert "state.sqlite3" in str(caught.value) and "paperbot state rebuild" in str(caught.value)
