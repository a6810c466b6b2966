"""The Slack test peers (fake Web API, fake Socket Mode, signed requests) hold up against the
real slack_sdk WebClient, its retry handlers and slack_bolt's Socket Mode handler: the
shapes and faults the app tests rely on."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from slack_bolt import Ack, App, Respond, Say
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.signature import SignatureVerifier

from tests.support.slack_api import FakeSlackAPI
from tests.support.slack_requests import (
    BOT_ID,
    BOT_USER_ID,
    CHANNEL_ID,
    TEAM_ID,
    USER_ID,
    app_mention_event,
    block_actions_payload,
    event_callback,
    event_callback_payload,
    load_payload,
    message_im_event,
    sign,
    slash_command_payload,
    url_verification_payload,
)
from tests.support.socket_mode import FakeSocketModeServer, close_handler, envelope, hello

pytestmark = pytest.mark.integration

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-1-test"
APP_TOKEN = "xapp-1-A0TEST-1-test"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # slack_sdk's WebClient and Socket Mode client route through HTTP(S)_PROXY (ignoring NO_PROXY).
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def api() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI() as fake:
        yield fake


def web_client(api: FakeSlackAPI, token: str = BOT_TOKEN) -> WebClient:
    return WebClient(token=token, base_url=api.base_url, timeout=5)


# ---- the fake Web API with the real WebClient ----------------------------------------------


def test_a_thread_reply_is_posted_updated_deleted_and_read_back(api: FakeSlackAPI) -> None:
    client = web_client(api)
    auth = client.auth_test()
    assert (auth["user_id"], auth["bot_id"], auth["team_id"]) == (BOT_USER_ID, BOT_ID, TEAM_ID)

    parent = api.add_message(CHANNEL_ID, "<@UBOT> what's new?", user=USER_ID)
    first = client.chat_postMessage(channel=CHANNEL_ID, thread_ts=parent.ts, text="thinking…")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*3 papers*"}}]
    second = client.chat_postMessage(
        channel=CHANNEL_ID, thread_ts=parent.ts, text="fallback", blocks=blocks
    )
    assert first["channel"] == CHANNEL_ID and first["message"]["thread_ts"] == parent.ts
    assert float(parent.ts) < float(first["ts"]) < float(second["ts"])  # unique, increasing
    call = api.calls_to("chat.postMessage")[1]
    assert call.headers["authorization"] == f"Bearer {BOT_TOKEN}"
    assert call.headers["content-type"].startswith("application/json")
    assert call.params["blocks"] == blocks and call.response["ts"] == second["ts"]

    updated = client.chat_update(channel=CHANNEL_ID, ts=first["ts"], text="done: 3 papers")
    assert updated["text"] == "done: 3 papers" and updated["ts"] == first["ts"]
    client.chat_delete(channel=CHANNEL_ID, ts=second["ts"])  # sent form-encoded
    assert api.calls_to("chat.delete")[0].params == {"channel": CHANNEL_ID, "ts": second["ts"]}

    (reply,) = api.messages(CHANNEL_ID, thread_ts=parent.ts)  # replies only, as updated
    assert reply.text == "done: 3 papers" and reply.history == ["thinking…"]
    assert api.bot_messages(CHANNEL_ID, parent.ts) == [reply]

    api.add_message(CHANNEL_ID, "a colleague's reply", user="U0BOB", thread_ts=parent.ts)
    thread = client.conversations_replies(channel=CHANNEL_ID, ts=parent.ts, limit=50)
    assert [m["text"] for m in thread["messages"]] == [
        "<@UBOT> what's new?",
        "done: 3 papers",
        "a colleague's reply",
    ]
    head, answer, _ = thread["messages"]
    assert head["reply_count"] == 2 and head["thread_ts"] == parent.ts
    assert answer["bot_id"] == BOT_ID and answer["user"] == BOT_USER_ID
    assert answer["parent_user_id"] == USER_ID and not thread["has_more"]
    assert client.conversations_replies(channel=CHANNEL_ID, ts=parent.ts, limit=2)["has_more"]

    with pytest.raises(SlackApiError) as err:
        client.chat_update(channel=CHANNEL_ID, ts=second["ts"], text="x")  # deleted
    assert err.value.response["error"] == "message_not_found"
    with pytest.raises(SlackApiError) as err, pytest.warns(UserWarning):  # the SDK warns too
        client.chat_postMessage(channel=CHANNEL_ID, text="")
    assert err.value.response["error"] == "no_text"


def test_form_encoded_blocks_are_decoded_like_json_ones(api: FakeSlackAPI) -> None:
    blocks = [{"type": "divider"}]
    web_client(api).api_call(
        "chat.postMessage",
        params={"channel": CHANNEL_ID, "text": "form", "blocks": json.dumps(blocks)},
    )
    (call,) = api.calls_to("chat.postMessage")
    assert call.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert call.params["blocks"] == blocks and api.messages(CHANNEL_ID)[0].blocks == blocks


def test_tokens_and_unknown_methods_are_refused_as_slack_does(api: FakeSlackAPI) -> None:
    def error_of(call: Any) -> str:
        with pytest.raises(SlackApiError) as err:
            call()
        return str(err.value.response["error"])

    app_client, bot_client = web_client(api, APP_TOKEN), web_client(api)
    assert error_of(lambda: app_client.chat_postMessage(channel=CHANNEL_ID, text="x")) == (
        "not_allowed_token_type"
    )
    assert error_of(lambda: bot_client.apps_connections_open(app_token=BOT_TOKEN)) == (
        "not_allowed_token_type"
    )
    assert error_of(lambda: WebClient(base_url=api.base_url).auth_test()) == "not_authed"
    assert error_of(lambda: bot_client.api_call("bookmarks.list")) == "unknown_method"


def test_response_url_posts_are_recorded(api: FakeSlackAPI) -> None:
    body = {"text": "3 papers found", "response_type": "ephemeral", "replace_original": True}
    response = httpx.post(api.response_url("cmd"), json=body, timeout=5)
    assert response.json() == {"ok": True}
    (call,) = api.wait_for("response_url")
    assert call.path == "/hooks/cmd" and call.params == body


# ---- failure injection ---------------------------------------------------------------------


def test_scripted_errors(api: FakeSlackAPI) -> None:
    client = web_client(api)
    api.fail_next("chat.postMessage", "channel_not_found")
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C0GONE", text="x")
    assert err.value.response.status_code == 200
    assert err.value.response["error"] == "channel_not_found"

    api.fail_next("chat.update", retry_after=7)  # no retry handler: the error surfaces
    with pytest.raises(SlackApiError) as err:
        client.chat_update(channel=CHANNEL_ID, ts="1.5", text="x")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["retry-after"] == "7"
    assert err.value.response["error"] == "ratelimited"
    assert api.messages(CHANNEL_ID) == []
    assert [(c.status, c.ok) for c in api.requests] == [(200, False), (429, False)]


def test_ratelimited_post_is_retried_once_by_the_sdk_handler(api: FakeSlackAPI) -> None:
    client = web_client(api)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))
    api.fail_next("chat.postMessage", retry_after=0)  # the handler sleeps Retry-After + <1 s
    assert client.chat_postMessage(channel=CHANNEL_ID, thread_ts="1.5", text="answer")["ok"]
    assert [c.status for c in api.calls_to("chat.postMessage")] == [429, 200]
    assert len(api.calls_to("chat.postMessage", ok=True)) == 1
    assert [m.text for m in api.messages(CHANNEL_ID, thread_ts="1.5")] == ["answer"]


def test_server_errors_are_retried_by_the_sdk_handler(api: FakeSlackAPI) -> None:
    client = web_client(api)
    client.retry_handlers.append(ServerErrorRetryHandler(max_retry_count=2))
    api.fail_next("chat.postMessage", status=503, times=2)
    client.chat_postMessage(channel=CHANNEL_ID, text="answer")
    assert [c.status for c in api.calls_to("chat.postMessage")] == [503, 503, 200]
    assert api.calls_to("chat.postMessage")[0].error == "internal_error"
    assert len(api.messages(CHANNEL_ID)) == 1


def test_delay_next_makes_the_client_time_out_then_answers_as_usual(api: FakeSlackAPI) -> None:
    api.delay_next("chat.postMessage", 1.0)
    client = WebClient(token=BOT_TOKEN, base_url=api.base_url, timeout=0.3)  # type: ignore[arg-type]
    client.retry_handlers.clear()  # the default ConnectionErrorRetryHandler would retry
    with pytest.raises(TimeoutError):
        client.chat_postMessage(channel=CHANNEL_ID, text="slow")
    (call,) = api.wait_for("chat.postMessage", ok=True)  # the late answer went through
    assert call.params["text"] == "slow"


# ---- what Slack sends ----------------------------------------------------------------------


def test_sign_matches_the_sdk_verifier() -> None:
    body = event_callback(app_mention_event("hi"))
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid_request(body, sign(body, SECRET))
    assert not verifier.is_valid_request(body, sign(body, "wrong-secret"))
    assert not verifier.is_valid_request(body, sign(body, SECRET, int(time.time()) - 301))
    assert not verifier.is_valid_request(body + " ", sign(body, SECRET))


def _keys(value: Any) -> Any:
    """The key structure of a JSON value (to compare shapes, not values)."""
    if isinstance(value, dict):
        return {k: _keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_keys(value[0])] if value else []
    return type(value).__name__ if value is not None else None


def test_builders_match_the_example_payloads() -> None:
    mention = load_payload("app_mention.json")
    assert _keys(event_callback_payload(app_mention_event("what's new?"))) == _keys(mention)
    threaded = load_payload("app_mention_in_thread.json")
    built_threaded = app_mention_event("more?", thread_ts="1700000100.000200")
    assert _keys(built_threaded) == _keys(threaded["event"])

    im = load_payload("message_im.json")
    assert _keys(event_callback_payload(message_im_event("hi"))).keys() == _keys(im).keys()
    assert set(message_im_event("hi")) == set(im["event"])
    from_bot = load_payload("message_im_from_bot.json")["event"]
    assert set(message_im_event("x", user=BOT_USER_ID, bot_id=BOT_ID)) == set(from_bot)

    actions = load_payload("block_actions.json")
    built_actions = block_actions_payload(
        "feedback_up", "up", thread_ts="1700000100.000200", block_id="feedback"
    )
    assert _keys(built_actions) == _keys(actions)

    command = load_payload("slash_command.json")
    assert set(slash_command_payload("search x")) == set(command)
    assert dict(parse_qsl(load_payload("slash_command.txt"))) == command
    assert set(url_verification_payload("c")) == set(load_payload("url_verification.json"))

    for kind in ("events_api", "slash_commands"):
        example = load_payload(f"socket_mode_{kind}.json")
        assert envelope(kind, example["payload"], example["envelope_id"]) == example
    assert load_payload("socket_mode_events_api.json")["payload"] == mention
    assert hello(1) == load_payload("socket_mode_hello.json")


# ---- Socket Mode with slack_bolt's builtin SocketModeHandler --------------------------------


def test_socket_mode_envelopes_are_acked_and_answered() -> None:
    with FakeSocketModeServer() as sm, FakeSlackAPI(socket_mode_url=sm.new_url) as api:
        app = App(client=web_client(api))

        @app.event("app_mention")
        def on_mention(event: dict[str, Any], say: Say) -> None:
            say(text=f"answer to: {event['text']}", thread_ts=event["ts"])

        @app.command("/papers")
        def on_papers(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
            ack(text=f"Searching for {command['text']}…")
            respond(text="3 papers found")

        handler = SocketModeHandler(app, app_token=APP_TOKEN)
        handler.connect()  # non-blocking; start() would block forever
        try:
            conn = sm.wait_for_connection()
            assert conn.path.startswith("/link/?ticket=") and conn.ticket
            (opened,) = api.calls_to("apps.connections.open")
            assert opened.headers["authorization"] == f"Bearer {APP_TOKEN}"

            event = app_mention_event("what's new?")
            envelope_id = sm.send_envelope("events_api", event_callback_payload(event))
            ack = sm.wait_for_ack(envelope_id)
            assert ack.payload is None and ack.raw == {"envelope_id": envelope_id}
            (call,) = api.wait_for("chat.postMessage")
            assert call.params["thread_ts"] == event["ts"]
            assert call.headers["authorization"] == f"Bearer {BOT_TOKEN}"

            payload = slash_command_payload("rag", response_url=api.response_url("sm"))
            envelope_id = sm.send_envelope("slash_commands", payload)
            assert sm.wait_for_ack(envelope_id).payload == {"text": "Searching for rag…"}
            assert api.wait_for("response_url")[0].params["text"] == "3 papers found"
        finally:
            close_handler(handler, sm)
