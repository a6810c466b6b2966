"""Assistant threads and native streaming through the real Bolt app, over signed HTTP and
Socket Mode, against the fake Slack Web API (assistant.threads.*, chat.*Stream) and a fake
OpenAI-compatible model."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from slack_bolt.adapter.socket_mode import SocketModeHandler

from answers.llm import build_chat_model
from answers.settings import AnswerSettings
from bot.services import Services
from bot.slack.app import create_app
from retrieval import Corpus
from tests.support.openai_server import FakeOpenAIServer, obedient, unknown_ids
from tests.support.slack_api import FakeSlackAPI
from tests.support.slack_fixtures import (
    SECRET,
    SlackHarness,
    corpus,
    harness_factory,
    slack_settings,
)
from tests.support.slack_requests import (
    CHANNEL_ID,
    DM_CHANNEL_ID,
    TEAM_ID,
    USER_ID,
    app_mention_event,
    event_callback,
    event_callback_payload,
    message_im_event,
    new_ts,
    post,
)
from tests.support.socket_mode import FakeSocketModeServer, close_handler

__all__ = ["corpus", "harness_factory"]
pytestmark = pytest.mark.integration
QUESTION = (
    "Which paper introduces the Candidate Pool Strategy for pruning and densifying Gaussians?"
)


@pytest.fixture
def model() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(default_reply=obedient) as server:
        yield server


@pytest.fixture
def services(corpus: Corpus, model: FakeOpenAIServer) -> Services:
    """The services with a (fake) model whose draft streams as it is written ("annotate":
    the strict policy streams only sentences the verifier already passed)."""
    settings = AnswerSettings(
        _env_file=None,  # type: ignore[call-arg]
        llm_provider="openai",
        llm_base_url=model.base_url,
        llm_model="gpt-test",
        llm_api_key=SecretStr("sk-test"),
        llm_max_retries=1,
        verify_policy="annotate",
    )
    return Services.build(corpus.settings, settings, corpus=corpus, llm=build_chat_model(settings))


@pytest.fixture
def slack(harness_factory: Any) -> SlackHarness:
    return harness_factory()


def thread_started(channel: str = DM_CHANNEL_ID, thread_ts: str | None = None) -> dict[str, Any]:
    """An ``assistant_thread_started`` event, as Slack documents it."""
    ts = thread_ts or new_ts()
    return {
        "type": "assistant_thread_started",
        "assistant_thread": {
            "user_id": USER_ID,
            "context": {"channel_id": CHANNEL_ID, "team_id": TEAM_ID, "enterprise_id": None},
            "channel_id": channel,
            "thread_ts": ts,
        },
        "event_ts": new_ts(),
    }


def _send(h: SlackHarness, event: dict[str, Any]) -> None:
    response = post(h.url, event_callback(event), secret=SECRET)
    assert response.status_code == 200, response.text
    assert response.elapsed.total_seconds() < 3


def _order(api: FakeSlackAPI, *methods: str) -> list[str]:
    return [c.method for c in api.requests if c.method in methods]


def _citations_are_listed(text: str, blocks: Any) -> None:
    """Every [n] in the final text is a listed source (no unverified citation stays)."""
    listed = len(re.findall(r"^\s*\[?(\d+)\]?", _sources(blocks), re.M)) or 0
    for number in map(int, re.findall(r"\[(\d+)\]", text)):
        assert 1 <= number <= max(listed, 1), (number, text)


def _sources(blocks: Any) -> str:
    for block in blocks or []:
        body = json.dumps(block)
        if "Sources" in body:
            return str(block.get("text", {}).get("text", ""))
    return ""


def _feedback_element(blocks: Any) -> bool:
    body = json.dumps(blocks)
    return "feedback" in body and ("actions" in body or "context_actions" in body)


def test_assistant_thread_start_greets_with_prompts_from_the_corpus(slack: SlackHarness) -> None:
    thread = new_ts()
    _send(slack, thread_started(thread_ts=thread))
    [call] = slack.api.wait_for("assistant.threads.setSuggestedPrompts", timeout=10)
    assert call.params["channel_id"] == DM_CHANNEL_ID and call.params["thread_ts"] == thread
    prompts = slack.api.threads[(DM_CHANNEL_ID, thread)]["prompts"][-1]
    assert 1 <= len(prompts) <= 4
    assert all(p["title"] and p["message"] and len(p["title"]) <= 75 for p in prompts)
    titles = {p.title for p in slack.services.corpus.papers()}
    assert any(title in prompts[0]["message"] for title in titles), prompts
    [greeting] = slack.api.bot_messages(DM_CHANNEL_ID, thread_ts=thread)
    assert "30 papers" in greeting.text


def test_the_context_the_user_looks_at_is_kept_with_the_thread(slack: SlackHarness) -> None:
    thread = new_ts()
    _send(slack, thread_started(thread_ts=thread))
    slack.api.wait_for("assistant.threads.setSuggestedPrompts", timeout=10)
    changed = thread_started(thread_ts=thread) | {"type": "assistant_thread_context_changed"}
    changed["assistant_thread"]["context"]["channel_id"] = "C0OTHER"
    _send(slack, changed)
    slack.api.wait_for("chat.update", timeout=10)
    [greeting] = slack.api.bot_messages(DM_CHANNEL_ID, thread_ts=thread)
    assert greeting.metadata is not None
    assert greeting.metadata["event_payload"]["channel_id"] == "C0OTHER"
    assert "30 papers" in greeting.text, "the greeting itself is unchanged"


def _ask_in_assistant_thread(h: SlackHarness, question: str = QUESTION) -> tuple[str, str]:
    thread = new_ts()
    _send(h, thread_started(thread_ts=thread))
    h.api.wait_for("assistant.threads.setSuggestedPrompts", timeout=10)
    ts = new_ts()
    _send(h, message_im_event(question, ts=ts, thread_ts=thread))
    return thread, ts


def _wait_final(api: FakeSlackAPI, channel: str, thread: str, count: int = 1) -> list[Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        messages = api.bot_messages(channel, thread_ts=thread)
        done = [
            m for m in messages if _feedback_element(m.blocks) and not m.streaming and m.history
        ]  # the stream stopped and the verified answer put in place (chat.update)
        if len(done) >= count:
            return messages
        time.sleep(0.05)
    raise AssertionError([m.text for m in api.messages(channel)] + [api._seen()])


def test_question_sets_title_and_status_then_streams_and_ends_with_feedback(
    slack: SlackHarness,
) -> None:
    thread, _ = _ask_in_assistant_thread(slack)
    messages = _wait_final(slack.api, DM_CHANNEL_ID, thread)
    _greeting, answer = messages  # one answer message besides the greeting
    assert "GVGEN" in answer.text
    state = slack.api.threads[(DM_CHANNEL_ID, thread)]
    assert state["title"] == [QUESTION[:59] + "…"]
    assert state["status"][:2] == ["is searching 30 papers…", "is writing…"]
    order = _order(
        slack.api,
        "assistant.threads.setStatus",
        "chat.startStream",
        "chat.appendStream",
        "chat.stopStream",
        "chat.update",
    )
    assert order.index("assistant.threads.setStatus") < order.index("chat.startStream")
    assert order.index("chat.startStream") < order.index("chat.stopStream") < len(order) - 1
    [start] = slack.api.calls_to("chat.startStream", ok=True)
    assert start.params["thread_ts"] == thread and start.params["markdown_text"]
    assert "recipient_user_id" not in start.params  # a DM needs no recipient
    [stop] = slack.api.calls_to("chat.stopStream", ok=True)
    assert _feedback_element(stop.params["blocks"]), "feedback attached when the stream stops"
    assert _feedback_element(answer.blocks) and not answer.text.endswith("▌")
    assert not slack.api.calls_to("chat.postMessage", ok=True)[1:], "no placeholder posted"


def test_a_channel_mention_streams_to_its_asker(slack: SlackHarness) -> None:
    ts = new_ts()
    _send(slack, app_mention_event(QUESTION, ts=ts))
    [answer] = _wait_final(slack.api, CHANNEL_ID, ts)
    [start] = slack.api.calls_to("chat.startStream", ok=True)
    assert start.params["recipient_user_id"] == USER_ID
    assert start.params["recipient_team_id"] == TEAM_ID
    assert "GVGEN" in answer.text and _feedback_element(answer.blocks)


@pytest.mark.parametrize("error", ["not_allowed", "unknown_method"])
def test_a_refused_stream_falls_back_to_updates_and_is_not_retried(
    slack: SlackHarness, error: str
) -> None:
    slack.api.fail_next("chat.startStream", error)
    first, second = new_ts(), new_ts()
    _send(slack, app_mention_event(QUESTION, ts=first))
    [answer] = _wait_final(slack.api, CHANNEL_ID, first)
    assert "GVGEN" in answer.text and _feedback_element(answer.blocks)
    assert slack.api.calls_to("chat.update", ok=True), "the chat.update path answered"
    _send(slack, app_mention_event("What is rectified flow?", ts=second))
    [again] = _wait_final(slack.api, CHANNEL_ID, second)
    assert "Flow" in again.text
    assert len(slack.api.calls_to("chat.startStream")) == 1, "streaming is remembered as off"


def test_the_stream_never_leaves_an_unverified_citation(
    slack: SlackHarness, model: FakeOpenAIServer
) -> None:
    model.default_reply = unknown_ids  # cites a source number that was never given
    ts = new_ts()
    _send(slack, app_mention_event(QUESTION, ts=ts))
    _wait_final(slack.api, CHANNEL_ID, ts)
    slack.api.wait_for("chat.update", ok=True)
    [answer] = slack.api.bot_messages(CHANNEL_ID, thread_ts=ts)
    _citations_are_listed(answer.text, answer.blocks)
    [stop] = slack.api.calls_to("chat.stopStream", ok=True)
    final = [c for c in slack.api.calls_to("chat.update", ok=True) if c.params["ts"] == answer.ts]
    assert final and final[-1].at >= stop.at, "the draft is replaced after the stream stops"


def test_socket_mode_assistant_thread(services: Services) -> None:
    with FakeSocketModeServer() as sm, FakeSlackAPI(socket_mode_url=sm.new_url) as api:
        settings = slack_settings(api, signing_secret=None, app_token="xapp-1-A0TEST-1-test")
        app = create_app(settings, services)
        handler = SocketModeHandler(app, app_token="xapp-1-A0TEST-1-test")
        handler.connect()
        try:
            sm.wait_for_connection()
            thread = new_ts()
            started = sm.send_envelope(
                "events_api", event_callback_payload(thread_started(thread_ts=thread))
            )
            sm.wait_for_ack(started, timeout=3)
            api.wait_for("assistant.threads.setSuggestedPrompts", timeout=10)
            question = message_im_event(QUESTION, ts=new_ts(), thread_ts=thread)
            asked = sm.send_envelope("events_api", event_callback_payload(question))
            sm.wait_for_ack(asked, timeout=3)
            messages = _wait_final(api, DM_CHANNEL_ID, thread)
            assert len(messages) == 2 and "GVGEN" in messages[-1].text
            assert api.calls_to("chat.stopStream", ok=True)
            assert api.threads[(DM_CHANNEL_ID, thread)]["status"][0] == "is searching 30 papers…"
        finally:
            close_handler(handler, sm)
