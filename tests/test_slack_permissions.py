"""Who can make paperbot do what, from which channel (issue 12, Permissions; a lone surrogate).

The real Bolt app over HTTP against the fake Slack Web API: every test asserts what a user
would see (the ephemeral reply) and what paperbot did or did not do in Slack (posts,
conversations.replies calls) and in its store (subscriptions, votes).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.services import Services
from bot.slack.answer_queue import SlackAnswers
from bot.slack.notify import notify_subscribers
from bot.slack.store import BotStore
from retrieval import Corpus
from tests.support.slack_fixtures import (
    SAMPLE_NEWS_TIME,
    SECRET,
    SlackHarness,
    corpus,
    harness_factory,
)
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
    slash_command,
)

__all__ = ["corpus", "harness_factory"]
pytestmark = pytest.mark.integration
ALLOWED = "C0ALLOWED"
OTHER_USER = "U0OTHER"


@pytest.fixture
def services(corpus: Corpus, tmp_path: Path) -> Services:
    """The shared corpus, with a bot store of this test's own (subscriptions, votes)."""
    store = BotStore(tmp_path / "bot.sqlite3")
    return Services.build(corpus.settings, corpus=corpus, llm=None, store=store)


def _send(h: SlackHarness, body: str) -> httpx.Response:
    response = post(h.url, body, secret=SECRET)
    assert response.status_code == 200, response.text
    assert response.elapsed.total_seconds() < 3
    return response


def _command(
    h: SlackHarness, text: str, *, user_id: str = USER_ID, channel_id: str = CHANNEL_ID
) -> dict[str, Any]:
    """Run a slash command; the ack's body (the instant reply or "Working on it")."""
    body = slash_command(
        text, user_id=user_id, channel_id=channel_id, response_url=h.api.response_url()
    )
    return dict(_send(h, body).json())


def _later_reply(h: SlackHarness, count: int = 1) -> str:
    """The text of the `count`-th reply a queued command sent through its response_url."""
    return str(h.api.wait_for("response_url", count, timeout=30)[count - 1].params["text"])


def _wait_answer(h: SlackHarness, channel: str, thread_ts: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        replies = h.api.messages(channel, thread_ts=thread_ts)
        if replies and not replies[-1].text.startswith("🔎"):
            return replies[-1].text
        time.sleep(0.05)
    raise AssertionError(f"no answer in {channel} thread {thread_ts}")


def _settle(h: SlackHarness) -> None:
    """Let every accepted job finish (so 'nothing happened' is not just 'not yet')."""
    queue = h.services.answer_queue
    assert queue is None or queue.wait_idle(30)
    time.sleep(0.3)


# ------------------------------------------------------------ PAPERBOT_ALLOWED_CHANNELS
@pytest.mark.parametrize(
    "text",
    [
        "ask What is rectified flow?",
        "search gaussian splatting",
        "summary GVGEN",
        "digest 2025-05-16",
        "subscribe here diffusion models",
        "subscribe diffusion models",
        "unsubscribe here diffusion models",
        "subscriptions",
    ],
)
def test_papers_commands_in_a_channel_outside_the_allow_list_are_refused(
    harness_factory: Any, text: str
) -> None:
    h = harness_factory(allowed_channels=[ALLOWED])
    h.services.store.subscribe(CHANNEL_ID, "diffusion models", created_by=OTHER_USER)
    reply = _command(h, text)
    assert reply["response_type"] == "ephemeral"
    assert "PAPERBOT_ALLOWED_CHANNELS" in reply["text"] and ALLOWED in reply["text"]
    assert "\n" not in reply["text"]
    _settle(h)
    assert not h.api.calls_to("response_url"), "nothing was answered later either"
    assert h.services.store.job_stats(time.time())["queued"] == 0
    assert h.services.store.subscriptions() == [(CHANNEL_ID, "diffusion models")]


def test_papers_ask_works_in_an_allowed_channel_and_in_a_dm(harness_factory: Any) -> None:
    h = harness_factory(allowed_channels=[ALLOWED])
    assert "Working on" in _command(h, "ask What is rectified flow?", channel_id=ALLOWED)["text"]
    assert "Working on" in _command(h, "search rectified flow", channel_id=DM_CHANNEL_ID)["text"]
    texts = [_later_reply(h, 2)] + [c.params["text"] for c in h.api.calls_to("response_url")]
    assert any("Rectified Flow" in t for t in texts)
    assert not any("PAPERBOT_ALLOWED_CHANNELS" in t for t in texts)


def _share_click(h: SlackHarness) -> str:
    _command(h, "search gaussian splatting text-to-3D")
    share = next(b for b in h.api.wait_for("response_url")[0].params["blocks"] if "elements" in b)
    value = share["elements"][0]["value"]
    h.api.reset()
    return str(value)


def test_the_share_button_never_posts_into_a_channel_outside_the_allow_list(
    harness_factory: Any,
) -> None:
    h = harness_factory(allowed_channels=[ALLOWED])
    value = json.dumps({"q": "gaussian splatting", "ids": ["2403.12957"]})
    _send(h, block_actions("share_search", value, response_url=h.api.response_url("share")))
    refusal = _later_reply(h)
    assert "PAPERBOT_ALLOWED_CHANNELS" in refusal and ALLOWED in refusal
    _settle(h)
    assert not h.api.calls_to("chat.postMessage")
    assert not h.api.calls_to("conversations.info"), "refused before any Slack call"


@pytest.mark.parametrize("visible", [True, False])
def test_the_share_button_never_posts_into_a_channel_paperbot_is_not_in(
    harness_factory: Any, visible: bool
) -> None:
    h = harness_factory()
    value = _share_click(h)
    h.api.leave(CHANNEL_ID, visible=visible)  # e.g. paperbot was removed after the search
    _send(h, block_actions("share_search", value, response_url=h.api.response_url("share")))
    refusal = _later_reply(h)
    assert "/invite @paperbot" in refusal
    _settle(h)
    assert not h.api.calls_to("chat.postMessage"), "never relies on chat:write.public"


def test_the_share_button_posts_where_paperbot_is_a_member(harness_factory: Any) -> None:
    h = harness_factory(allowed_channels=[CHANNEL_ID])
    value = _share_click(h)
    _send(h, block_actions("share_search", value, response_url=h.api.response_url("share")))
    [posted] = h.api.wait_for("chat.postMessage", timeout=10)
    assert posted.params["channel"] == CHANNEL_ID and "GVGEN" in posted.params["text"]


# ------------------------------------------------------------ channel subscriptions
@pytest.mark.parametrize("visible", [True, False])
def test_subscribe_here_is_refused_in_a_channel_paperbot_is_not_in(
    harness_factory: Any, visible: bool
) -> None:
    h = harness_factory()
    h.api.leave(CHANNEL_ID, visible=visible)
    _command(h, "subscribe here diffusion models")
    refusal = _later_reply(h)
    assert "/invite @paperbot" in refusal and "\n" not in refusal
    assert h.services.store.subscriptions() == []
    assert not h.api.calls_to("chat.postMessage")


def test_subscribe_here_works_where_paperbot_is_a_member(harness_factory: Any) -> None:
    h = harness_factory(allowed_channels=[CHANNEL_ID])
    _command(h, "subscribe here diffusion models")
    assert "This channel is now subscribed" in _later_reply(h)
    assert h.services.store.subscriptions() == [(CHANNEL_ID, "diffusion models")]


def test_notifications_go_only_to_channels_that_pass_the_check_when_posting(
    harness_factory: Any,
) -> None:
    h = harness_factory(allowed_channels=[CHANNEL_ID, ALLOWED])
    store = h.services.store
    topic = "text-to-3D generation with Gaussians"
    for subscriber in (CHANNEL_ID, ALLOWED, "C0NOTLISTED", USER_ID):
        store.subscribe(subscriber, topic, created_by=USER_ID)
    h.api.leave(ALLOWED)  # subscribed while paperbot was in it; removed since
    posted = notify_subscribers(h.services, h.app.client, settings=h.settings, now=SAMPLE_NEWS_TIME)
    channels = sorted(c.params["channel"] for c in h.api.calls_to("chat.postMessage"))
    assert posted == 2 and channels == [CHANNEL_ID, USER_ID]
    checked = sorted(c.params["channel"] for c in h.api.calls_to("conversations.info"))
    assert checked == [ALLOWED, CHANNEL_ID], "the allow-list first; a DM needs no check"


def test_only_the_creator_can_unsubscribe_a_channel(harness_factory: Any) -> None:
    h = harness_factory()
    h.services.store.subscribe(CHANNEL_ID, "diffusion models", created_by=USER_ID)
    _command(h, "unsubscribe here Diffusion Models", user_id=OTHER_USER)
    assert "Only the person who subscribed this channel" in _later_reply(h)
    assert h.services.store.subscriptions() == [(CHANNEL_ID, "diffusion models")]
    assert "You are not subscribed" in _command(h, "unsubscribe diffusion models")["text"]
    _command(h, "unsubscribe here diffusion models")
    assert "no longer subscribed" in _later_reply(h, 2)
    assert h.services.store.subscriptions() == []
    assert [c.params["user"] for c in h.api.calls_to("users.info")] == [OTHER_USER]


def test_a_workspace_admin_can_unsubscribe_a_channel(harness_factory: Any) -> None:
    h = harness_factory()
    h.services.store.subscribe(CHANNEL_ID, "diffusion models", created_by=USER_ID)
    h.api.admins.add("U0ADMIN")
    _command(h, "unsubscribe here diffusion models", user_id="U0ADMIN")
    assert "no longer subscribed" in _later_reply(h)
    assert h.services.store.subscriptions() == []


def test_subscriptions_per_user_are_capped(harness_factory: Any) -> None:
    h = harness_factory(max_subscriptions_per_user=3)
    for topic in ("rag", "diffusion", "agents"):
        assert "now subscribed" in _command(h, f"subscribe {topic}")["text"]
    over = _command(h, "subscribe robotics")["text"]
    assert "PAPERBOT_MAX_SUBSCRIPTIONS_PER_USER" in over and "3" in over
    _command(h, "subscribe here robotics")  # a channel subscription counts for its creator
    assert "PAPERBOT_MAX_SUBSCRIPTIONS_PER_USER" in _later_reply(h)
    assert len(h.services.store.subscriptions()) == 3
    assert "now subscribed" in _command(h, "subscribe robotics", user_id=OTHER_USER)["text"]


def test_subscriptions_per_channel_are_capped(harness_factory: Any) -> None:
    h = harness_factory(max_subscriptions_per_channel=2)
    for n, user in enumerate(("U0A", "U0B", "U0C"), start=1):
        _command(h, f"subscribe here topic {n}", user_id=user)
    replies = [c.params["text"] for c in h.api.wait_for("response_url", 3, timeout=30)]
    assert sum("now subscribed" in r for r in replies) == 2
    assert sum("PAPERBOT_MAX_SUBSCRIPTIONS_PER_CHANNEL" in r for r in replies) == 1
    assert len(h.services.store.subscriptions(CHANNEL_ID)) == 2


# ------------------------------------------------------------ feedback
def test_a_vote_for_an_unknown_answer_stores_nothing_and_says_so(harness_factory: Any) -> None:
    h = harness_factory()
    for value in ("made-up-id", ""):
        body = block_actions("feedback_up", value, response_url=h.api.response_url("fb"))
        _send(h, body)
    notes = [c.params["text"] for c in h.api.wait_for("response_url", 2, timeout=10)]
    assert all("not saved" in n for n in notes), notes
    assert h.services.store.feedback_rows() == []


# ------------------------------------------------------------ thread follow-ups
def test_a_reply_in_a_thread_another_bot_started_is_not_answered(harness_factory: Any) -> None:
    h = harness_factory()
    parent = new_ts()
    # a webhook / legacy bot's message: bot_id, no user
    h.api.add_message(CHANNEL_ID, "Deploy finished", user=None, bot_id="B0DEPLOY", ts=parent)
    reply = new_ts()
    h.api.add_message(CHANNEL_ID, "what changed?", ts=reply, thread_ts=parent)
    _send(h, event_callback(message_event("what changed?", ts=reply, thread_ts=parent)))
    _settle(h)
    assert h.api.calls_to("conversations.replies"), "the worker looked at the thread"
    assert not h.api.calls_to("chat.postMessage")


def test_a_thread_message_outside_the_allow_list_costs_no_slack_call(
    harness_factory: Any,
) -> None:
    h = harness_factory(allowed_channels=[ALLOWED])
    parent = new_ts()
    h.api.add_message(CHANNEL_ID, "<@UBOT> What is GVGEN?", ts=parent)
    for _ in range(3):
        event = message_event("and then?", ts=new_ts(), thread_ts=parent)
        _send(h, event_callback(event))
    _settle(h)
    assert [c.method for c in h.api.requests if c.method != "auth.test"] == []


def test_a_queued_answer_in_a_channel_no_longer_allowed_makes_no_slack_call(
    harness_factory: Any,
) -> None:
    """A job accepted under an earlier allow-list (resumed after a restart) is dropped by
    the worker before it reads the thread."""
    h = harness_factory(allowed_channels=[ALLOWED])
    slack = SlackAnswers(h.services, h.app.client, h.settings)
    parent = new_ts()
    job = {
        "id": 1,
        "kind": "followup",
        "channel": CHANNEL_ID,
        "thread_ts": parent,
        "message_ts": new_ts(),
        "user_id": USER_ID,
        "bot_user_id": "UBOT",
        "question": "and then?",
        "placeholder_ts": None,
        "attempts": 1,
    }
    slack.answer(job, lambda ts: None)
    assert [c.method for c in h.api.requests if c.method != "auth.test"] == []


# ------------------------------------------------------------ unencodable text
def test_a_lone_surrogate_in_a_mention_is_answered(harness_factory: Any) -> None:
    h = harness_factory()
    ts = new_ts()
    raw = event_callback(app_mention_event("What is rectified flow? X", ts=ts))
    body = raw.replace("flow? X", "flow? \\ud83d\\u0000")  # half an emoji, and a NUL
    assert "\\ud83d" in body
    _send(h, body)
    answer = _wait_answer(h, CHANNEL_ID, ts)
    assert "Rectified Flow" in answer and "something went wrong" not in answer


def test_a_lone_surrogate_in_a_dm_is_answered(harness_factory: Any) -> None:
    h = harness_factory()
    ts = new_ts()
    raw = event_callback(message_im_event("\ud83dX What is rectified flow?", ts=ts))
    body = raw.replace("X What", " What")
    _send(h, body)
    answer = _wait_answer(h, DM_CHANNEL_ID, ts)
    assert "Rectified Flow" in answer and "something went wrong" not in answer


def test_a_lone_surrogate_in_a_slash_command_is_answered(harness_factory: Any) -> None:
    """Over Socket Mode a slash command is JSON, so its text can hold a lone surrogate."""
    from slack_bolt.request import BoltRequest

    h = harness_factory()
    payload = {
        "command": "/papers",
        "text": "ask What is rectified flow? \ud83d",
        "user_id": USER_ID,
        "channel_id": CHANNEL_ID,
        "team_id": "T0TEST",
        "response_url": h.api.response_url("sm"),
        "trigger_id": "1.2.surrogate",
    }
    response = h.app.dispatch(BoltRequest(body=payload, mode="socket_mode"))
    assert response.status == 200 and "Working on" in response.body
    reply = _later_reply(h)
    assert "Rectified Flow" in reply and "something went wrong" not in reply


def test_clean_keeps_what_utf8_can_carry_and_replaces_the_rest() -> None:
    from bot.slack.user_text import clean

    assert clean("half \ud83d emoji \udc00") == "half \ufffd emoji \ufffd"
    assert clean("x\x00y\tz\n😀 ‍👩‍💻 فارسی") == "xy\tz\n😀 ‍👩‍💻 فارسی"
    assert clean(None) == "" and clean("") == ""
    clean("\ud83d" * 3).encode("utf-8")  # never raises
