"""The bot's bookkeeping store: exactly-once claims, votes, subscriptions, schedules.

The tests that take the `store` fixture run against both backends: the SQLite file and a
real PostgreSQL (tests/support/postgres.py), the same contract.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.slack.store import BotStore
from tests.support.postgres import backend_url, postgres_server

__all__ = ["backend_url", "postgres_server"]  # fixtures


@pytest.fixture
def store(tmp_path: Path, backend_url: str | None) -> Iterator[BotStore]:
    with BotStore.in_data_dir(tmp_path / "data", database_url=backend_url) as opened:
        yield opened


def test_building_opens_nothing_until_first_use(tmp_path: Path) -> None:
    store = BotStore.in_data_dir(tmp_path / "data")
    assert not (tmp_path / "data").exists()
    assert store.first_time("k")
    assert (tmp_path / "data" / "bot.sqlite3").is_file()
    store.close()


def test_a_key_is_new_once(store: BotStore) -> None:
    assert store.first_time("msg:C1:1.1")
    assert not store.first_time("msg:C1:1.1")
    assert store.first_time("msg:C1:1.2")


def test_digest_claims_are_exclusive_until_settled_or_expired(store: BotStore) -> None:
    assert store.claim_digest("C1", "2025-05-16", "a", lease_seconds=600)
    assert not store.claim_digest("C1", "2025-05-16", "b", lease_seconds=600), "live claim"
    assert store.claim_digest("C1", "2025-05-16", "b", lease_seconds=0), "expired claim"
    store.finish_digest("C1", "2025-05-16", "failed", error="boom")
    assert store.claim_digest("C1", "2025-05-16", "c", lease_seconds=600), "failed: retry"
    status = store.digest_status("C1", "2025-05-16")
    assert status is not None and status["owner"] == "c" and status["error"] is None
    store.finish_digest("C1", "2025-05-16", "posted", ts="1.5")
    assert not store.claim_digest("C1", "2025-05-16", "d", lease_seconds=0), "posted"
    assert store.claim_digest("C2", "2025-05-16", "d", lease_seconds=600), "other channel"
    store.finish_digest("C2", "2025-05-16", "empty")
    assert not store.claim_digest("C2", "2025-05-16", "e", lease_seconds=0), "empty"
    assert store.digest_status("C3", "2025-05-16") is None


def test_digest_progress_is_kept_per_channel_and_day(store: BotStore) -> None:
    assert store.digest_progress("C1", "2025-05-16") is None
    store.save_digest_progress("C1", "2025-05-16", digest="{}", ts="1.0", replies=0)
    store.save_digest_progress("C1", "2025-05-16", digest="{}", ts="1.0", replies=2)
    assert store.digest_progress("C1", "2025-05-16") == {"digest": "{}", "ts": "1.0", "replies": 2}
    assert store.digest_progress("C1", "2025-05-17") is None


def test_a_parent_being_sent_is_kept_until_its_ts_is_saved(store: BotStore) -> None:
    assert store.parent_send("C1", "2025-05-16") is None
    before = time.time()
    store.mark_parent_send("C1", "2025-05-16", digest='{"a": 1}')
    sent = store.parent_send("C1", "2025-05-16")
    assert sent is not None and sent["digest"] == '{"a": 1}' and sent["sent_at"] >= before - 1
    assert store.parent_send("C1", "2025-05-17") is None
    store.save_digest_progress("C1", "2025-05-16", digest='{"a": 1}', ts="2.0", replies=0)
    assert store.parent_send("C1", "2025-05-16") is None  # its answer is recorded


def test_only_the_poster_holding_the_claim_marks_a_parent_or_saves_progress(
    store: BotStore,
) -> None:
    day = "2025-05-16"
    assert store.mark_parent_send("C1", day, digest="{}", owner="a") is None, "no claim yet"
    assert store.claim_digest("C1", day, "a", lease_seconds=600)
    assert store.mark_parent_send("C1", day, digest='{"by": "a"}', owner="a") is not None
    assert store.claim_digest("C1", day, "b", lease_seconds=0)  # a's lease ran out
    assert store.mark_parent_send("C1", day, digest='{"by": "late a"}', owner="a") is None
    assert not store.save_digest_progress("C1", day, digest="{}", ts="1.0", replies=0, owner="a")
    sent = store.parent_send("C1", day)
    assert sent is not None and sent["digest"] == '{"by": "a"}', "b resumes what a sent"
    assert store.save_digest_progress("C1", day, digest="{}", ts="1.0", replies=1, owner="b")
    assert store.digest_progress("C1", day) == {"digest": "{}", "ts": "1.0", "replies": 1}
    assert store.parent_send("C1", day) is None


def test_unfinished_digests_are_the_started_ones_never_settled(store: BotStore) -> None:
    for day in ("2025-05-13", "2025-05-14", "2025-05-15", "2025-05-16", "2025-05-17"):
        assert store.claim_digest("C1", day, "a", lease_seconds=600)
    store.save_digest_progress("C1", "2025-05-13", digest="{}", ts="1.0", replies=1)  # too old
    store.save_digest_progress("C1", "2025-05-14", digest="{}", ts="2.0", replies=1)
    store.finish_digest("C1", "2025-05-14", "failed", error="died")
    store.mark_parent_send("C1", "2025-05-15", digest="{}")  # being sent when it died
    store.save_digest_progress("C1", "2025-05-16", digest="{}", ts="3.0", replies=4)
    store.finish_digest("C1", "2025-05-16", "posted", ts="3.0")  # done
    store.release_digest("C1", "2025-05-17", "no papers yet")  # never started
    assert store.unfinished_digests("C1", "2025-05-14") == ["2025-05-14", "2025-05-15"]
    assert store.unfinished_digests("C2", "2025-05-01") == []
    assert store.unfinished_digests("C1", "2025-05-14", idle_for=600) == [], "claimed just now"


def test_a_poster_settles_only_the_slot_its_own_claim_holds(store: BotStore) -> None:
    assert store.claim_digest("C1", "2025-05-16", "a", lease_seconds=600)
    assert store.release_digest("C1", "2025-05-16", "stopping", owner="a")
    assert store.claim_digest("C1", "2025-05-16", "b", lease_seconds=600)  # taken over
    assert not store.release_digest("C1", "2025-05-16", "late", owner="a")
    assert not store.finish_digest("C1", "2025-05-16", "failed", error="late", owner="a")
    status = store.digest_status("C1", "2025-05-16")
    assert status is not None and (status["status"], status["owner"]) == ("claimed", "b")
    assert store.renew_digest("C1", "2025-05-16", "b") and not store.renew_digest(
        "C1", "2025-05-16", "a"
    )
    assert store.finish_digest("C1", "2025-05-16", "posted", ts="3.0", owner="b")
    assert not store.release_digest("C1", "2025-05-16", "stale", owner="b")  # settled
    assert not store.renew_digest("C1", "2025-05-16", "b")


def test_a_renewed_claim_counts_its_lease_from_the_renewal(store: BotStore) -> None:
    assert store.claim_digest("C1", "2025-05-16", "a", lease_seconds=600)
    status = store.digest_status("C1", "2025-05-16")
    assert status is not None
    time.sleep(0.05)
    assert store.renew_digest("C1", "2025-05-16", "a")
    renewed = store.digest_status("C1", "2025-05-16")
    assert renewed is not None and renewed["claimed_at"] > status["claimed_at"]
    assert not store.claim_digest("C1", "2025-05-16", "b", lease_seconds=600), "still live"


def test_one_vote_per_user_and_message_with_its_answer(store: BotStore) -> None:
    answer_id = store.save_answer(
        question="Q?",
        answer="A [1].",
        mode="llm",
        model="gpt-test",
        citations=[{"number": 1, "paper_id": "2401.1", "title": "T", "url": None}],
    )
    stored = store.get_answer(answer_id)
    assert stored is not None and stored["model"] == "gpt-test"
    assert stored["citations"] == [{"number": 1, "paper_id": "2401.1", "title": "T", "url": None}]

    store.add_feedback(answer_id=answer_id, user_id="U1", vote="up", channel="C1", message_ts="2")
    store.add_feedback(answer_id=answer_id, user_id="U1", vote="down", channel="C1", message_ts="2")
    store.add_feedback(answer_id=answer_id, user_id="U2", vote="up", channel="C1", message_ts="2")
    rows = store.feedback_rows()
    assert [(r["user_id"], r["vote"]) for r in rows] == [("U1", "down"), ("U2", "up")]
    assert rows[0]["question"] == "Q?" and rows[0]["answer"] == "A [1]."
    assert rows[0]["answer_id"] == answer_id


def test_a_vote_on_an_unknown_answer_stores_nothing(store: BotStore) -> None:
    assert not store.add_feedback(
        answer_id="made-up", user_id="U1", vote="up", channel="C1", message_ts="3"
    )
    assert not store.add_feedback(
        answer_id=None, user_id="U2", vote="down", channel="C1", message_ts="3"
    )
    assert store.feedback_rows() == []


def test_subscriptions(store: BotStore) -> None:
    assert store.subscribe("U1", "Diffusion Models", created_by="U1")
    assert not store.subscribe("U1", "Diffusion Models", created_by="U1")
    assert store.subscribe("C1", "RAG", created_by="U1")
    assert store.subscriptions() == [("C1", "RAG"), ("U1", "Diffusion Models")]
    assert store.subscriptions("U1") == [("U1", "Diffusion Models")]
    assert store.unsubscribe("U1", "diffusion models"), "case-insensitive"
    assert not store.unsubscribe("U1", "diffusion models")
    assert store.claim_notification("U1", "p1") and not store.claim_notification("U1", "p1")
    assert store.claim_notification("U2", "p1")


def test_only_the_creator_removes_a_subscription(store: BotStore) -> None:
    store.subscribe("C1", "RAG", created_by="U1")
    store.subscribe("U2", "agents", created_by="U2")
    assert not store.unsubscribe("C1", "rag", by="U2"), "not U2's"
    found = store.subscription("C1", "rag")
    assert found is not None and (found["topic"], found["created_by"]) == ("RAG", "U1")
    assert store.unsubscribe("U2", "agents", by="U2"), "one's own"
    assert store.unsubscribe("C1", "rag", by="U1") and store.subscriptions() == []
    store.subscribe("C1", "legacy", created_by=None)  # a row from before creators were kept
    assert store.unsubscribe("C1", "legacy", by="U3")


def test_subscriptions_are_capped_per_creator_and_per_subscriber(store: BotStore) -> None:
    from bot.slack.store import SubscriptionLimitError

    assert store.subscribe("U1", "a", "U1", max_per_user=2)
    assert store.subscribe("C1", "b", "U1", max_per_user=2, max_per_subscriber=5)
    assert not store.subscribe("U1", "A", "U1", max_per_user=2), "exists (any case): no error"
    with pytest.raises(SubscriptionLimitError) as raised:
        store.subscribe("U1", "c", "U1", max_per_user=2)
    assert raised.value.which == "user" and raised.value.limit == 2
    assert store.subscribe("C1", "c", "U2", max_per_user=2, max_per_subscriber=2)
    with pytest.raises(SubscriptionLimitError) as raised:
        store.subscribe("C1", "d", "U3", max_per_user=2, max_per_subscriber=2)
    assert raised.value.which == "subscriber"
    assert len(store.subscriptions()) == 3


def test_concurrent_subscriptions_never_overshoot_the_cap(
    tmp_path: Path, backend_url: str | None
) -> None:
    import contextlib
    import threading

    from bot.slack.store import SubscriptionLimitError

    path = tmp_path / "data" / "bot.sqlite3"
    BotStore(path, database_url=backend_url).open().close()
    barrier = threading.Barrier(8)

    def subscribe(n: int) -> None:
        # one connection each, like several processes
        with BotStore(path, database_url=backend_url) as store:
            barrier.wait()
            for i in range(5):
                with contextlib.suppress(SubscriptionLimitError):
                    store.subscribe("U1", f"topic {n}-{i}", "U1", max_per_user=10)

    threads = [threading.Thread(target=subscribe, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with BotStore(path, database_url=backend_url) as store:
        assert len(store.subscriptions("U1")) == 10


def test_schedules_and_meta(store: BotStore) -> None:
    store.set_schedule("C1", "09:00", "UTC", None, None)
    store.set_schedule("C1", "10:30", "Europe/Berlin", "rag", 5)
    [row] = store.schedules()
    assert (row["at_time"], row["timezone"], row["topic"], row["max_papers"]) == (
        "10:30",
        "Europe/Berlin",
        "rag",
        5,
    )
    assert row["created_at"] <= time.time()
    assert store.remove_schedule("C1") and not store.remove_schedule("C1")
    assert store.get_meta("notify_watermark", "0") == "0"
    store.set_meta("notify_watermark", "12.5")
    assert store.get_meta("notify_watermark") == "12.5"


# ---------------------------------------------------------------- feeds (schema v3)
def _feed(name: str = "hf") -> dict[str, object]:
    return {"name": name, "kind": "hf", "params": '{"tz": "UTC"}', "every_minutes": None}


def test_a_v2_file_gains_the_feed_tables_and_keeps_its_rows(tmp_path: Path) -> None:
    import sqlite3

    from bot.slack import store_schema
    from retrieval import migrations

    path = tmp_path / "data" / "bot.sqlite3"
    path.parent.mkdir()
    db = sqlite3.connect(path, isolation_level=None)
    migrations.migrate(db, store_schema.MIGRATIONS[:2], path)  # what the last release wrote
    db.execute(
        "INSERT INTO schedules(channel, at_time, timezone, created_at) "
        "VALUES ('C1', '09:00', 'UTC', 1.0)"
    )
    db.close()
    with BotStore(path) as store:
        assert store.schema_version == store_schema.SCHEMA_VERSION
        assert [r["channel"] for r in store.schedules()] == ["C1"]
        assert store.feeds() == [] and store.feed_days("2025-05-16") == {}


def test_feed_definitions(store: BotStore) -> None:
    assert store.add_feed(_feed())
    assert not store.add_feed({**_feed(), "params": '{"tz": "Europe/Berlin"}'}), "name taken"
    assert store.add_feed({**_feed(), "params": '{"tz": "Europe/Berlin"}'}, replace=True)
    [row] = store.feeds()
    assert row["params"] == '{"tz": "Europe/Berlin"}' and row["enabled"] == 1
    assert row["last_attempt"] is None and row["failures"] == 0 and row["origin"] == "cli"
    assert store.set_feed_enabled("hf", False) and not store.feeds()[0]["enabled"]
    assert not store.set_feed_enabled("nope", True)


def test_feed_polls_are_claimed_recorded_and_backed_off(store: BotStore) -> None:
    store.add_feed(_feed())
    assert store.claim_feed("hf", "a", now=100.0, lease_seconds=60)
    assert not store.claim_feed("hf", "b", now=110.0, lease_seconds=60), "a holds it"
    failures = store.finish_feed("hf", at=110.0, ok=False, next_due=230.0, error="HTTP 503")
    assert failures == 1
    assert not store.claim_feed("hf", "b", now=200.0, lease_seconds=60), "not due before 230"
    assert store.claim_feed("hf", "b", now=200.0, lease_seconds=60, due_only=False), "forced"
    assert store.finish_feed("hf", at=200.0, ok=False, next_due=300.0, error="HTTP 503") == 2
    assert store.claim_feed("hf", "c", now=300.0, lease_seconds=60)
    store.finish_feed(
        "hf",
        at=300.0,
        ok=True,
        next_due=2100.0,
        seen=12,
        new=3,
        days={"2025-05-16": (12, 3)},
    )
    [row] = store.feeds()
    assert (row["failures"], row["last_error"], row["last_success"]) == (0, None, 300.0)
    assert (row["last_seen"], row["last_new"], row["owner"]) == (12, 3, None)
    store.claim_feed("hf", "c", now=2100.0, lease_seconds=60)
    store.finish_feed("hf", at=2100.0, ok=True, next_due=3900.0, days={"2025-05-16": (10, 1)})
    assert store.feed_days("2025-05-16") == {"hf": 12}, "the most seen in one poll"
    store.claim_feed("hf", "d", now=3900.0, lease_seconds=60)
    store.release_feed("hf", "d")  # interrupted: free again, nothing recorded
    assert store.claim_feed("hf", "e", now=3900.0, lease_seconds=60)
    assert store.remove_feed("hf") and store.feeds() == []
    assert store.feed_days("2025-05-16") == {}, "its days go with it"
    assert store.finish_feed("hf", at=4000.0, ok=True, next_due=5000.0) == 0  # removed mid-poll


def test_a_scheduled_digest_can_wait(store: BotStore) -> None:
    assert store.claim_digest("C1", "2025-05-16", "a", lease_seconds=600)
    store.release_digest("C1", "2025-05-16", "no papers yet")
    status = store.digest_status("C1", "2025-05-16")
    assert status is not None and status["status"] == "waiting"
    assert store.claim_digest("C1", "2025-05-16", "b", lease_seconds=600), "tried again"
