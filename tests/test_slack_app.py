"""The real Bolt app over HTTP (paperbot's own server) against a fake Slack Web API."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from retrieval.normalize import make_paper
from tests.support.slack_fixtures import SECRET, SlackHarness, corpus, harness_factory, services
from tests.support.slack_requests import (
    CHANNEL_ID,
    DM_CHANNEL_ID,
    USER_ID,
    app_mention_event,
    block_actions,
    event_callback,
    message_event,
    message_im_event,
    new_ts,
    post,
    retry_headers,
    slash_command,
    url_verification,
)

__all__ = ["corpus", "harness_factory", "services"]
pytestmark = pytest.mark.integration


@pytest.fixture
def slack(harness_factory: Any) -> SlackHarness:
    return harness_factory()


def _send(h: SlackHarness, body: str, **kwargs: Any) -> httpx.Response:
    return post(h.url, body, secret=SECRET, **kwargs)


def _final_answer(h: SlackHarness, channel: str, thread_ts: str) -> Any:
    """Wait until the placeholder in the thread has been turned into the answer."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        replies = h.api.messages(channel, thread_ts=thread_ts)
        if replies and not replies[-1].text.startswith("🔎"):
            return replies
        time.sleep(0.05)
    raise AssertionError(
        f"no answer in thread {thread_ts}: {[m.text for m in h.api.messages(channel)]}"
    )


def _bot_answers(h: SlackHarness, thread_ts: str, count: int) -> list[Any]:
    """Wait until paperbot's messages in the thread are ``count`` finished answers."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answers = h.api.bot_messages(CHANNEL_ID, thread_ts)
        if len(answers) == count and not any(a.text.startswith("🔎") for a in answers):
            return answers
        time.sleep(0.05)
    raise AssertionError(f"not {count} answers in {thread_ts}: {[a.text[:60] for a in answers]}")


def _ack_ok(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.elapsed.total_seconds() < 3


def test_mention_is_answered_in_its_thread_with_sources_and_feedback(slack: SlackHarness) -> None:
    ts = new_ts()
    question = (
        "Which paper introduces the Candidate Pool Strategy for pruning and densifying Gaussians?"
    )
    _ack_ok(_send(slack, event_callback(app_mention_event(question, ts=ts))))
    replies = _final_answer(slack, CHANNEL_ID, ts)
    assert len(replies) == 1, "one message in the thread: the placeholder, updated in place"
    answer = replies[0]
    assert "GVGEN" in answer.text and "Candidate Pool Strategy" in answer.text
    kinds = [b["type"] for b in answer.blocks]
    assert kinds[-1] == "context_actions", "Slack's feedback buttons end the answer"
    assert answer.blocks[-1]["elements"][0]["type"] == "feedback_buttons"
    sources = json.dumps(answer.blocks)
    assert "Sources" in sources and "Extractive answer" in sources
    assert slack.api.calls_to("chat.postMessage")[0].params["thread_ts"] == ts
    assert slack.api.calls_to("chat.update"), "the placeholder was updated, not reposted"


def test_a_question_delivered_twice_is_answered_once(slack: SlackHarness) -> None:
    ts = new_ts()
    text = "What is the BOSS technique?"
    body = event_callback(app_mention_event(text, ts=ts), event_id="Ev0DUP1")
    _ack_ok(_send(slack, body))
    _ack_ok(_send(slack, body, extra_headers=retry_headers(1)))  # Slack's retry of the same event
    # and the same message as a plain channel message event (message.channels)
    _ack_ok(
        _send(slack, event_callback(message_event(f"<@UBOT> {text}", ts=ts), event_id="Ev0DUP2"))
    )
    _final_answer(slack, CHANNEL_ID, ts)
    time.sleep(0.5)
    assert len(slack.api.messages(CHANNEL_ID, thread_ts=ts)) == 1
    assert len(slack.api.calls_to("chat.postMessage")) == 1


def test_direct_message_is_a_question(slack: SlackHarness) -> None:
    ts = new_ts()
    _ack_ok(_send(slack, event_callback(message_im_event("What is rectified flow?", ts=ts))))
    replies = _final_answer(slack, DM_CHANNEL_ID, ts)
    assert "Flow Straight and Fast" in replies[0].text


def _gvgen_follow_up(slack: SlackHarness, parent: str) -> None:
    """A reply in the thread, no mention, following up a question about GVGEN: answered
    (paperbot's second message there) and retrieved with the thread's context."""
    follow_up = new_ts()
    event = message_event("How does it optimize its Gaussians?", ts=follow_up, thread_ts=parent)
    slack.api.add_message(CHANNEL_ID, event["text"], user=USER_ID, ts=follow_up, thread_ts=parent)
    _ack_ok(_send(slack, event_callback(event)))
    answers = _bot_answers(slack, parent, 2)
    assert "GVGEN" in answers[-1].text, "the follow-up was retrieved with the thread's context"


def test_thread_follow_up_uses_the_earlier_turns(slack: SlackHarness) -> None:
    parent = new_ts()
    slack.api.add_message(CHANNEL_ID, "<@UBOT> What is GVGEN?", user=USER_ID, ts=parent)
    _ack_ok(_send(slack, event_callback(app_mention_event("What is GVGEN?", ts=parent))))
    _final_answer(slack, CHANNEL_ID, parent)
    _gvgen_follow_up(slack, parent)
    assert slack.api.calls_to("conversations.replies")


def test_a_follow_up_deep_in_a_long_thread_is_answered_with_its_latest_turns(
    slack: SlackHarness,
) -> None:
    """A reading-group thread of 250 messages: paperbot answered a question near its end, and
    a reply that follows it up (no mention) is for paperbot and reads as about GVGEN. The
    thread is read past its first page (before: the first 50 messages, in which paperbot took
    no part, so the follow-up was dropped)."""
    # the thread's messages before paperbot's answer, whose ts the fake counts from 1700000000
    parent = "1699990000.000000"
    slack.api.add_message(CHANNEL_ID, "reading group, week 12", user="U0OTHER", ts=parent)
    for n in range(1, 251):
        slack.api.add_message(
            CHANNEL_ID,
            "notes on a section",
            user="U0OTHER",
            ts=f"1699990{n:03d}.000000",
            thread_ts=parent,
        )
    asked = "1699999999.000000"
    question = app_mention_event("What is GVGEN?", ts=asked, thread_ts=parent)
    slack.api.add_message(CHANNEL_ID, question["text"], user=USER_ID, ts=asked, thread_ts=parent)
    _ack_ok(_send(slack, event_callback(question)))
    _bot_answers(slack, parent, 1)
    _gvgen_follow_up(slack, parent)
    pages = [c.params.get("cursor") for c in slack.api.calls_to("conversations.replies")]
    assert any(pages), "the thread was read past its first page"


def test_unrelated_thread_messages_and_bots_are_ignored(slack: SlackHarness) -> None:
    parent = new_ts()
    slack.api.add_message(CHANNEL_ID, "lunch?", user="U0OTHER", ts=parent)
    _ack_ok(_send(slack, event_callback(message_event("pizza", ts=new_ts(), thread_ts=parent))))
    _ack_ok(_send(slack, event_callback(message_im_event("hello", ts=new_ts(), bot_id="B0OTHER"))))
    _ack_ok(_send(slack, event_callback(message_im_event("hello", ts=new_ts(), user="UBOT"))))
    time.sleep(0.8)
    assert not slack.api.calls_to("chat.postMessage")


def test_channel_allow_list(harness_factory: Any) -> None:
    h = harness_factory(allowed_channels=["C0ALLOWED"])
    _ack_ok(_send(h, event_callback(app_mention_event("What is rectified flow?", ts=new_ts()))))
    time.sleep(0.8)
    assert not h.api.calls_to("chat.postMessage")


def test_forged_and_replayed_requests_are_rejected(slack: SlackHarness) -> None:
    body = event_callback(app_mention_event("What is rectified flow?", ts=new_ts()))
    assert post(slack.url, body, secret="not-the-secret").status_code == 401
    old = int(time.time()) - 10 * 60
    assert post(slack.url, body, secret=SECRET, timestamp=old).status_code == 401
    time.sleep(0.3)
    assert not slack.api.calls_to("chat.postMessage")


def test_url_verification_and_health(slack: SlackHarness) -> None:
    response = _send(slack, url_verification("abc123"))
    assert response.status_code == 200 and "abc123" in response.text
    health = httpx.get(slack.url.replace("/slack/events", "/healthz"))
    assert health.status_code == 200 and health.json()["ok"] is True


def test_rate_limited_posts_are_retried_and_arrive_once(slack: SlackHarness) -> None:
    slack.api.fail_next("chat.postMessage", retry_after=0)
    slack.api.fail_next("chat.update", retry_after=0)
    ts = new_ts()
    _ack_ok(_send(slack, event_callback(app_mention_event("What is the V-STaR benchmark?", ts=ts))))
    replies = _final_answer(slack, CHANNEL_ID, ts)
    assert len(replies) == 1 and "V-STaR" in replies[0].text
    assert len(slack.api.calls_to("chat.postMessage", ok=True)) == 1


def test_store_failure_becomes_a_friendly_message(
    slack: SlackHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retrieval.errors import StoreUnavailableError

    def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError(
            "Could not search vectors: the Chroma server at http://x:1 is not reachable."
        )

    monkeypatch.setattr(slack.services.corpus, "search", down)
    ts = new_ts()
    _ack_ok(_send(slack, event_callback(app_mention_event("What is rectified flow?", ts=ts))))
    replies = _final_answer(slack, CHANNEL_ID, ts)
    assert len(replies) == 1 and "not reachable" in replies[0].text


def test_unexpected_errors_do_not_leave_a_placeholder(
    slack: SlackHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slack.services.corpus, "search", lambda *a, **k: 1 / 0)
    ts = new_ts()
    _ack_ok(_send(slack, event_callback(app_mention_event("What is rectified flow?", ts=ts))))
    replies = _final_answer(slack, CHANNEL_ID, ts)
    assert len(replies) == 1 and "something went wrong" in replies[0].text


def test_mrkdwn_in_papers_never_pings_or_injects(slack: SlackHarness) -> None:
    evil = make_paper(
        title="Zebra <!channel> Routing <@U0BOSS>",
        abstract="We study zebra routing for <!here> everyone & <http://evil.example|click here> in detail today.",
        source="file",
    )
    slack.services.corpus.ingest([evil])
    try:
        ts = new_ts()
        _ack_ok(_send(slack, event_callback(app_mention_event("zebra routing", ts=ts))))
        replies = _final_answer(slack, CHANNEL_ID, ts)
        posted = json.dumps(replies[0].blocks) + replies[0].text
        for raw in ("<!channel>", "<!here>", "<@U0BOSS>", "<http://evil.example"):
            assert raw not in json.dumps(replies[0].blocks), raw
        assert "&lt;!channel&gt;" in posted
    finally:
        slack.services.corpus.delete([evil.paper_id])


# ---------------------------------------------------------------- /papers
def _command(h: SlackHarness, text: str) -> httpx.Response:
    tag = "-".join(text.split()[:2]) or "empty"
    body = slash_command(text, response_url=h.api.response_url(tag))
    response = _send(h, body)
    _ack_ok(response)
    return response


def _responses(h: SlackHarness, count: int = 1) -> list[dict[str, Any]]:
    h.api.wait_for("response_url", count, timeout=30)
    return [c.params for c in h.api.calls_to("response_url")]


@pytest.mark.parametrize("text", ["", "help", "frobnicate now"])
def test_help_for_empty_and_unknown_commands(slack: SlackHarness, text: str) -> None:
    response = _command(slack, text)
    body = response.json()
    assert body["response_type"] == "ephemeral" and "/papers ask" in body["text"]
    if text == "frobnicate now":
        assert "Unknown command" in body["text"]


def test_search_lists_papers_with_a_share_button(slack: SlackHarness) -> None:
    _command(slack, "search gaussian splatting text-to-3D")
    [reply] = _responses(slack)
    assert reply["response_type"] == "ephemeral"
    assert "GVGEN" in reply["text"]
    share = next(b for b in reply["blocks"] if b["type"] == "actions")["elements"][0]
    assert share["action_id"] == "share_search"

    body = block_actions(
        "share_search", share["value"], response_url=slack.api.response_url("share")
    )
    slack.api.delay_next("chat.postMessage", 3.0)  # a slow Slack must not delay the click's ack
    started = time.monotonic()
    _ack_ok(_send(slack, body))
    assert time.monotonic() - started < 2.0, "the click was acked only after chat.postMessage"
    posted = slack.api.wait_for("chat.postMessage", timeout=10)[-1]
    assert posted.params["channel"] == CHANNEL_ID and "GVGEN" in posted.params["text"]


def test_ask_summary_and_digest_commands(slack: SlackHarness) -> None:
    _command(slack, "ask What is Depth-guided Inpainting Score Distillation Sampling?")
    _command(slack, "summary GVGEN: Text-to-3D Generation with Volumetric Representation")
    _command(slack, "digest 2025-05-16")
    replies = _responses(slack, 3)
    texts = " ".join(r["text"] for r in replies)
    assert "Localized Gaussian Splatting Editing" in texts or "Inpainting" in texts
    assert "GVGEN" in texts
    assert "Paper digest 2025-05-16" in texts
    assert all(len(r.get("blocks", [])) <= 50 for r in replies)


def test_subscriptions_round_trip(slack: SlackHarness) -> None:
    assert "now subscribed" in _command(slack, "subscribe diffusion models").json()["text"]
    assert "already subscribed" in _command(slack, "subscribe diffusion models").json()["text"]
    assert "diffusion models" in _command(slack, "subscriptions").json()["text"]
    assert "no longer" in _command(slack, "unsubscribe diffusion models").json()["text"]


def test_oversized_command_text_gets_a_clear_error(slack: SlackHarness) -> None:
    body = _command(slack, "ask " + "why " * 1000).json()
    assert "keep it under 2,000" in body["text"]


def _feedback_element(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    return next(
        e
        for b in blocks
        if b["type"] == "context_actions"
        for e in b["elements"]
        if e["type"] == "feedback_buttons"
    )


def test_feedback_click_is_stored(slack: SlackHarness) -> None:
    ts = new_ts()
    _ack_ok(_send(slack, event_callback(app_mention_event("What is GPipe?", ts=ts))))
    answer = _final_answer(slack, CHANNEL_ID, ts)[0]
    element = _feedback_element(answer.blocks)
    body = block_actions(
        element["action_id"],
        element["negative_button"]["value"],
        message_ts=answer.ts,
        thread_ts=ts,
        response_url=slack.api.response_url("fb"),
        action_type="feedback_buttons",
        message_blocks=answer.blocks,
    )
    _ack_ok(_send(slack, body))
    slack.api.wait_for("response_url")
    rows = [r for r in slack.services.store.feedback_rows() if r["message_ts"] == answer.ts]
    assert rows and rows[0]["vote"] == "down" and rows[0]["question"] == "What is GPipe?"
    stored = slack.services.store.get_answer(rows[0]["answer_id"])
    assert stored is not None and stored["answer"] == rows[0]["answer"] and stored["mode"]
    assert rows[0]["sources"] == json.dumps(stored["citations"])


def test_a_thumbs_down_asks_what_was_wrong_and_keeps_the_reason(
    slack: SlackHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from bot.cli.main import app as cli_app

    ts = new_ts()
    _ack_ok(_send(slack, event_callback(app_mention_event("What is GPipe?", ts=ts))))
    answer = _final_answer(slack, CHANNEL_ID, ts)[0]
    element = _feedback_element(answer.blocks)
    click = block_actions(
        element["action_id"],
        element["negative_button"]["value"],
        message_ts=answer.ts,
        thread_ts=ts,
        response_url=slack.api.response_url("fb"),
        action_type="feedback_buttons",
    )
    _ack_ok(_send(slack, click))
    [prompt] = [c.params for c in slack.api.wait_for("response_url")]
    assert prompt["response_type"] == "ephemeral" and "What was wrong?" in prompt["text"]
    field = next(b for b in prompt["blocks"] if b["type"] == "input")
    typed = block_actions(
        field["element"]["action_id"],
        "It cited the wrong paper",
        block_id=field["block_id"],
        action_type="plain_text_input",
        is_ephemeral=True,
        response_url=slack.api.response_url("reason"),
    )
    _ack_ok(_send(slack, typed))
    thanks = slack.api.wait_for("response_url", 2)[-1].params
    assert thanks["replace_original"] is True and "wrong paper" in thanks["text"]
    [row] = [r for r in slack.services.store.feedback_rows() if r["message_ts"] == answer.ts]
    assert row["vote"] == "down" and row["reason"] == "It cited the wrong paper"

    monkeypatch.setenv("PAPERBOT_DATA_DIR", str(slack.services.settings.data_dir))
    out = tmp_path / "votes.csv"
    result = CliRunner().invoke(cli_app, ["feedback", "export", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "It cited the wrong paper" in out.read_text()


def test_a_thumbs_up_just_says_thanks(slack: SlackHarness) -> None:
    answer_id = slack.services.store.save_answer(question="Q?", answer="A.", mode="llm")
    element = _feedback_element(blocks_for_answer(answer_id))
    click = block_actions(
        element["action_id"],
        element["positive_button"]["value"],
        response_url=slack.api.response_url("up"),
        action_type="feedback_buttons",
    )
    _ack_ok(_send(slack, click))
    [reply] = [c.params for c in slack.api.wait_for("response_url")]
    assert reply["text"] == "Thanks for the feedback!"
    [row] = [r for r in slack.services.store.feedback_rows() if r["answer_id"] == answer_id]
    assert row["vote"] == "up" and row["reason"] is None


def blocks_for_answer(answer_id: str) -> list[dict[str, Any]]:
    from bot.slack import blocks

    return [blocks.feedback_block(answer_id)]


def test_tokens_and_secrets_never_reach_the_logs(
    slack: SlackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from tests.support.slack_fixtures import BOT_TOKEN

    caplog.set_level(logging.DEBUG)
    ts = new_ts()
    _ack_ok(_send(slack, event_callback(app_mention_event("What is rectified flow?", ts=ts))))
    _final_answer(slack, CHANNEL_ID, ts)
    assert caplog.records, "debug logging was captured"
    assert BOT_TOKEN not in caplog.text and SECRET not in caplog.text
    assert BOT_TOKEN not in repr(slack.settings) and SECRET not in str(slack.settings.model_dump())


def test_feedback_export_writes_csv(
    slack: SlackHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from bot.cli.main import app as cli_app

    store = slack.services.store
    answer_id = store.save_answer(question="Q?", answer="A.", mode="extractive")
    store.add_feedback(
        answer_id=answer_id, user_id="U0CSV", vote="up", channel="C1", message_ts="1.2"
    )
    monkeypatch.setenv("PAPERBOT_DATA_DIR", str(slack.services.settings.data_dir))
    out = tmp_path / "votes.csv"
    result = CliRunner().invoke(cli_app, ["feedback", "export", "-o", str(out)])
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0] == (
        "created_at,user_id,vote,channel,message_ts,question,answer,reason,model,sources"
    )
    assert any(",U0CSV,up,C1,1.2,Q?,A.,,,[]" in line for line in lines), lines
