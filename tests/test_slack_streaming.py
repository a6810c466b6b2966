"""Native streaming's memory of refusals, a resumed streamed answer, and the assistant
greeting's prompts (pure)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from slack_sdk import WebClient

from bot.services import Services
from bot.slack import assistant_blocks
from bot.slack.replies import answer_in_thread
from bot.slack.streaming import StreamSupport
from retrieval import Corpus
from tests.support.slack_api import FakeSlackAPI
from tests.support.slack_fixtures import BOT_TOKEN, corpus, services

__all__ = ["corpus", "services"]


def test_refusals_are_remembered_for_the_process() -> None:
    streams = StreamSupport()
    assert streams.available("C1") and streams.available("D1")
    assert not streams.refused("C1", "ratelimited"), "a passing failure is not remembered"
    assert streams.available("C1")
    assert streams.refused("C1", "channel_type_not_supported")
    assert not streams.available("C2") and streams.available("D1"), "per conversation kind"
    assert streams.refused("D1", "not_allowed")
    assert not streams.available("D9") and not streams.available("G1")
    assert not StreamSupport(enabled=False).available("D1")


def test_a_resumed_stream_is_finished_in_the_same_message(services: Services) -> None:
    """A process died mid-stream: the resumed job stops that stream and puts the answer in
    the same message; no second message in the thread."""
    with FakeSlackAPI(ts_start=1700000000.0) as api:
        client = WebClient(token=BOT_TOKEN, base_url=api.base_url)
        question = api.add_message("D0USER", "What is GVGEN?")
        left = client.chat_startStream(
            channel="D0USER", thread_ts=question.ts, markdown_text="GVGEN is a"
        )["ts"]
        answer = answer_in_thread(
            services,
            client,
            channel="D0USER",
            thread_ts=question.ts,
            question="What is GVGEN?",
            placeholder_ts=left,
            streams=StreamSupport(),
            on_placeholder=lambda ts: pytest.fail(f"a second message was posted: {ts}"),
        )
        assert answer is not None
        [reply] = api.bot_messages("D0USER", thread_ts=question.ts)
        assert reply.ts == left and not reply.streaming and "GVGEN" in reply.text
        assert not api.calls_to("chat.postMessage")


def test_greeting_counts_papers_and_names_the_newest_day() -> None:
    text, _ = assistant_blocks.greeting(1, date(2025, 5, 16))
    assert "1 paper " in text and "Fri 16 May 2025" in text
    assert "12,480 papers" in assistant_blocks.greeting(12480, None)[0]
    assert "empty" in assistant_blocks.greeting(0, None)[0]


def test_prompts_come_from_the_newest_papers(corpus: Corpus) -> None:
    day = corpus.latest_day()
    papers = corpus.papers(since=day, until=day)
    prompts = assistant_blocks.suggested_prompts(papers)
    assert len(prompts) == 4
    assert papers[0].title in prompts[0]["message"]
    assert all(len(p["title"]) <= 75 and p["message"] for p in prompts)
    assert any(p["message"].startswith("What's new on ") for p in prompts[1:])


def test_prompts_without_papers_are_generic() -> None:
    prompts: list[dict[str, Any]] = assistant_blocks.suggested_prompts([], 4)
    assert prompts == [dict(p) for p in assistant_blocks.GENERIC_PROMPTS]
    assert assistant_blocks.thread_title("  a   b ") == "a b"


def test_chat_opens_like_an_assistant_thread(services: Services) -> None:
    from bot.cli.chat import ChatSession

    text, _ = ChatSession(services).greeting()
    (greeting, _), prompts = assistant_blocks.opening(services.corpus)
    assert text.startswith(greeting) and "30 papers" in text
    assert all(p["message"] in text for p in prompts)
