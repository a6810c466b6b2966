"""The Slack test peers (fake Web API, fake Socket Mode, signed requests), proven with the real
slack_sdk WebClient, slack_bolt App over real HTTP, and slack_bolt's Socket Mode handler."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
from slack_bolt import Ack, App, BoltRequest, Respond, Say
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.signature import SignatureVerifier

from tests.servers.slack_api import FakeSlackAPI
from tests.servers.slack_requests import (
    BOT_ID,
    BOT_USER_ID,
    CHANNEL_ID,
    DM_CHANNEL_ID,
    TEAM_ID,
    USER_ID,
    app_mention_event,
    block_actions,
    block_actions_payload,
    event_callback,
    event_callback_payload,
    load_payload,
    message_im_event,
    post,
    retry_headers,
    serve_bolt_app,
    sign,
    slash_command,
    slash_command_payload,
    url_verification,
    url_verification_payload,
)
from tests.servers.socket_mode import FakeSocketModeServer, close_handler

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


def test_post_update_delete_and_thread_state(api: FakeSlackAPI) -> None:
    client = web_client(api)
    auth = client.auth_test()
    assert (auth["user_id"], auth["bot_id"], auth["team_id"]) == (BOT_USER_ID, BOT_ID, TEAM_ID)

    parent = api.add_message(CHANNEL_ID, "<@UBOT> what's new?", user=USER_ID)
    first = client.chat_postMessage(channel=CHANNEL_ID, thread_ts=parent.ts, text="thinking…")
    second = client.chat_postMessage(
        channel=CHANNEL_ID,
        thread_ts=parent.ts,
        text="fallback",
        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "*3 papers*"}}],
    )
    assert first["ok"] and first["channel"] == CHANNEL_ID
    assert first["message"]["thread_ts"] == parent.ts and first["message"]["user"] == "UBOT"
    assert float(parent.ts) < float(first["ts"]) < float(second["ts"])  # unique, increasing

    updated = client.chat_update(channel=CHANNEL_ID, ts=first["ts"], text="done: 3 papers")
    assert updated["text"] == "done: 3 papers" and updated["ts"] == first["ts"]
    client.chat_delete(channel=CHANNEL_ID, ts=second["ts"])

    (reply,) = api.messages(CHANNEL_ID, thread_ts=parent.ts)  # replies only, as updated
    assert reply.text == "done: 3 papers" and reply.history == ["thinking…"]
    assert len(api.messages(CHANNEL_ID, parent.ts, include_deleted=True)) == 2
    assert [c.params["text"] for c in api.calls_to("chat.postMessage")] == ["thinking…", "fallback"]
    call = api.calls_to("chat.postMessage")[1]
    assert call.headers["authorization"] == f"Bearer {BOT_TOKEN}" and call.token == BOT_TOKEN
    assert call.params["blocks"][0]["text"]["text"] == "*3 papers*"

    with pytest.raises(SlackApiError) as err:
        client.chat_update(channel=CHANNEL_ID, ts="1.000001", text="x")
    assert err.value.response["error"] == "message_not_found"
    with pytest.raises(SlackApiError) as err, pytest.warns(UserWarning):  # the SDK warns too
        client.chat_postMessage(channel=CHANNEL_ID, text="")
    assert err.value.response["error"] == "no_text"


def test_conversations_replies_history_and_pagination(api: FakeSlackAPI) -> None:
    client = web_client(api)
    parent = api.add_message(CHANNEL_ID, "question", user=USER_ID)
    api.add_message(CHANNEL_ID, "a colleague's reply", user="U0BOB", thread_ts=parent.ts)
    client.chat_postMessage(channel=CHANNEL_ID, thread_ts=parent.ts, text="bot answer")
    api.add_message(CHANNEL_ID, "another top-level message", user="U0BOB")

    replies = client.conversations_replies(channel=CHANNEL_ID, ts=parent.ts)
    texts = [m["text"] for m in replies["messages"]]
    assert texts == ["question", "a colleague's reply", "bot answer"]
    assert replies["messages"][0]["reply_count"] == 2
    assert replies["messages"][2]["bot_id"] == BOT_ID

    page1 = client.conversations_replies(channel=CHANNEL_ID, ts=parent.ts, limit=2)
    assert page1["has_more"] and len(page1["messages"]) == 2
    cursor = page1["response_metadata"]["next_cursor"]
    page2 = client.conversations_replies(channel=CHANNEL_ID, ts=parent.ts, cursor=cursor)
    assert [m["text"] for m in page2["messages"]] == ["bot answer"] and not page2["has_more"]

    history = client.conversations_history(channel=CHANNEL_ID)
    assert [m["text"] for m in history["messages"]] == ["another top-level message", "question"]


def test_other_methods(api: FakeSlackAPI) -> None:
    client = web_client(api)
    ephemeral = client.chat_postEphemeral(channel=CHANNEL_ID, user=USER_ID, text="only you")
    assert ephemeral["message_ts"] and api.ephemerals[0].text == "only you"
    assert api.messages(CHANNEL_ID) == []  # ephemeral messages are not in the channel

    client.reactions_add(channel=CHANNEL_ID, timestamp="1700000100.000200", name="eyes")
    with pytest.raises(SlackApiError) as err:
        client.reactions_add(channel=CHANNEL_ID, timestamp="1700000100.000200", name="eyes")
    assert err.value.response["error"] == "already_reacted"
    assert api.reactions(CHANNEL_ID, "1700000100.000200") == ["eyes"]

    api.set_user(USER_ID, real_name="Alice Doe", profile={"display_name": "alice"})
    user = client.users_info(user=USER_ID)["user"]
    assert user["real_name"] == "Alice Doe" and user["profile"]["display_name"] == "alice"
    assert user["tz"] and not user["is_bot"]

    view = {"type": "modal", "title": {"type": "plain_text", "text": "Subscribe"}, "blocks": []}
    opened = client.views_open(trigger_id="1.2.abc", view=view)
    assert opened["view"]["id"].startswith("V") and opened["view"]["type"] == "modal"

    client.assistant_threads_setStatus(channel_id=DM_CHANNEL_ID, thread_ts="1.5", status="is …")
    client.assistant_threads_setStatus(channel_id=DM_CHANNEL_ID, thread_ts="1.5", status="")
    assert api.statuses(DM_CHANNEL_ID, "1.5") == ["is …", ""]

    generic = client.api_call("bookmarks.list", params={"channel_id": CHANNEL_ID})
    assert generic["ok"] and api.calls_to("bookmarks.list")[0].params == {"channel_id": CHANNEL_ID}


def test_form_encoded_params_are_decoded_like_json_ones(api: FakeSlackAPI) -> None:
    client = web_client(api)
    blocks = [{"type": "divider"}]
    client.api_call(
        "chat.postMessage",
        params={"channel": CHANNEL_ID, "text": "form", "blocks": json.dumps(blocks)},
    )
    (call,) = api.calls_to("chat.postMessage")
    assert call.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert call.params["blocks"] == blocks and api.messages(CHANNEL_ID)[0].blocks == blocks


def test_streaming_methods_with_the_chat_stream_helper(api: FakeSlackAPI) -> None:
    client = web_client(api)
    thread = "1700000100.000200"
    streamer = client.chat_stream(
        channel=CHANNEL_ID,
        thread_ts=thread,
        recipient_team_id=TEAM_ID,
        recipient_user_id=USER_ID,
        buffer_size=8,
    )
    for piece in ["**Three** ", "papers ", "match: ", "A, B, C."]:
        streamer.append(markdown_text=piece)
    stopped = streamer.stop(blocks=[{"type": "divider"}])
    assert stopped["message"]["text"] == "**Three** papers match: A, B, C."

    (msg,) = api.messages(CHANNEL_ID, thread_ts=thread)
    assert msg.stream_state == "stopped" and msg.blocks == [{"type": "divider"}]
    assert msg.text == "**Three** papers match: A, B, C."
    assert msg.chunks[0] == {"type": "markdown_text", "text": "**Three** "}
    assert [c.method for c in api.calls if c.method.startswith("chat.")] == [
        "chat.startStream",
        "chat.appendStream",
        "chat.appendStream",
        "chat.stopStream",
    ]
    start = api.calls_to("chat.startStream")[0]
    assert start.headers["content-type"].startswith("application/json")
    assert start.params["recipient_user_id"] == USER_ID

    # Outside a DM, Slack wants the recipient; in a DM it does not.
    with pytest.raises(SlackApiError) as err:
        client.chat_startStream(channel=CHANNEL_ID, thread_ts=thread, markdown_text="x")
    assert err.value.response["error"] == "invalid_arguments"
    dm = client.chat_startStream(channel=DM_CHANNEL_ID, thread_ts="1.5", markdown_text="hi")

    # A stream Slack has closed (it does after a while): append and stop fail, update works.
    api.expire_stream(DM_CHANNEL_ID, dm["ts"])
    with pytest.raises(SlackApiError) as err:
        client.chat_appendStream(channel=DM_CHANNEL_ID, ts=dm["ts"], markdown_text=" more")
    assert err.value.response["error"] == "message_not_in_streaming_state"
    client.chat_update(channel=DM_CHANNEL_ID, ts=dm["ts"], text="hi more")
    assert api.message(DM_CHANNEL_ID, dm["ts"]).text == "hi more"  # type: ignore[union-attr]


def test_token_rules(api: FakeSlackAPI) -> None:
    with pytest.raises(SlackApiError) as err:
        web_client(api, token=APP_TOKEN).chat_postMessage(channel=CHANNEL_ID, text="x")
    assert err.value.response["error"] == "not_allowed_token_type"
    with pytest.raises(SlackApiError) as err:
        web_client(api).apps_connections_open(app_token=BOT_TOKEN)
    assert err.value.response["error"] == "not_allowed_token_type"
    api.valid_tokens = {BOT_TOKEN}
    with pytest.raises(SlackApiError) as err:
        web_client(api, token="xoxb-other").chat_postMessage(channel=CHANNEL_ID, text="x")
    assert err.value.response["error"] == "invalid_auth"


def test_scripted_errors(api: FakeSlackAPI) -> None:
    client = web_client(api)
    api.fail_next("chat.postMessage", "channel_not_found")
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C0GONE", text="x")
    assert err.value.response.status_code == 200
    assert err.value.response["error"] == "channel_not_found"

    api.fail_next("chat.postMessage", retry_after=7)  # no retry handler: the error surfaces
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel=CHANNEL_ID, text="x")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["retry-after"] == "7"
    assert err.value.response["error"] == "ratelimited"

    api.respond_next("users.info", {"ok": False, "error": "user_not_found"})
    with pytest.raises(SlackApiError):
        client.users_info(user="U0NOBODY")
    assert api.messages(CHANNEL_ID) == []
    assert [c.ok for c in api.calls] == [False, False, False]


def test_ratelimited_post_is_retried_once_by_the_sdk_handler(api: FakeSlackAPI) -> None:
    client = web_client(api)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))
    api.fail_next("chat.postMessage", retry_after=0)  # the handler sleeps Retry-After + <1 s
    response = client.chat_postMessage(channel=CHANNEL_ID, thread_ts="1.5", text="answer")
    assert response["ok"]
    assert [c.status for c in api.calls_to("chat.postMessage")] == [429, 200]
    assert len(api.calls_to("chat.postMessage", ok=True)) == 1
    assert [m.text for m in api.messages(CHANNEL_ID, thread_ts="1.5")] == ["answer"]


def test_server_error_is_retried_by_the_sdk_handler(api: FakeSlackAPI) -> None:
    client = web_client(api)
    client.retry_handlers.append(ServerErrorRetryHandler(max_retry_count=1))
    api.fail_next("chat.postMessage", status=503, body="<html>upstream error</html>")
    client.chat_postMessage(channel=CHANNEL_ID, text="answer")
    assert [c.status for c in api.calls_to("chat.postMessage")] == [503, 200]
    assert len(api.messages(CHANNEL_ID)) == 1


def test_delay_next_makes_the_client_time_out(api: FakeSlackAPI) -> None:
    api.delay_next("chat.postMessage", 1.0)
    client = WebClient(token=BOT_TOKEN, base_url=api.base_url, timeout=0.3)  # type: ignore[arg-type]
    client.retry_handlers.clear()  # the default ConnectionErrorRetryHandler would retry
    with pytest.raises(TimeoutError):
        client.chat_postMessage(channel=CHANNEL_ID, text="slow")


# ---- signed requests ------------------------------------------------------------------------


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
    built = event_callback_payload(app_mention_event("what's new?"))
    assert _keys(built) == _keys(mention)
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

    envelope = load_payload("socket_mode_events_api.json")
    assert envelope["payload"] == mention and envelope["type"] == "events_api"


# ---- a Bolt app over real HTTP --------------------------------------------------------------


def build_app(api: FakeSlackAPI, *, process_before_response: bool = True, **kw: Any) -> App:
    """A minimal Bolt app: answers mentions and DMs in thread, /papers, a feedback button."""
    app = App(
        client=WebClient(token=BOT_TOKEN, base_url=api.base_url),  # token goes in the client
        signing_secret=SECRET,
        process_before_response=process_before_response,
        **kw,
    )

    @app.event("app_mention")
    def on_mention(event: dict[str, Any], say: Say) -> None:
        say(text=f"answer to: {event['text']}", thread_ts=event.get("thread_ts") or event["ts"])

    @app.event("message")
    def on_message(event: dict[str, Any], say: Say) -> None:
        if event.get("channel_type") == "im":
            say(text="dm answer", thread_ts=event.get("thread_ts") or event["ts"])

    @app.command("/papers")
    def on_papers(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        ack(text=f"Searching for {command['text']}…")
        respond(text="3 papers found", response_type="in_channel")

    @app.action("feedback_up")
    def on_feedback(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        container = body["container"]
        client.chat_update(
            channel=container["channel_id"], ts=container["message_ts"], text="Thanks!"
        )

    return app


@pytest.fixture
def served(api: FakeSlackAPI) -> Iterator[str]:
    with serve_bolt_app(build_app(api)) as url:
        yield url


def test_signed_app_mention_is_answered_in_thread(api: FakeSlackAPI, served: str) -> None:
    body = json.dumps(load_payload("app_mention.json"))
    response = post(served, body, secret=SECRET)
    assert response.status_code == 200
    # process_before_response=True: the listener ran before the HTTP response went out.
    (call,) = api.calls_to("chat.postMessage")
    assert call.params["thread_ts"] == "1700000100.000200"
    assert call.params["channel"] == CHANNEL_ID
    (reply,) = api.messages(CHANNEL_ID, thread_ts="1700000100.000200")
    assert reply.text.startswith("answer to: <@UBOT> what's new")

    threaded = event_callback(app_mention_event("and code?", thread_ts="1700000100.000200"))
    assert post(served, threaded, secret=SECRET).status_code == 200
    assert len(api.messages(CHANNEL_ID, thread_ts="1700000100.000200")) == 2


def test_forged_missing_and_replayed_signatures_are_rejected(
    api: FakeSlackAPI, served: str
) -> None:
    body = event_callback(app_mention_event("hi"))
    forged = post(served, body, secret="not-the-secret")
    assert forged.status_code == 401 and forged.json() == {"error": "invalid request"}
    assert post(served, body).status_code == 401  # no signature headers at all
    old = int(time.time()) - 6 * 60
    assert post(served, body, secret=SECRET, timestamp=old).status_code == 401
    tampered = post(served, body.replace("hi", "ho"), headers=sign(body, SECRET))
    assert tampered.status_code == 401
    assert [c.method for c in api.calls] == ["auth.test"]  # only Bolt's startup check


def test_url_verification_echoes_the_challenge(served: str) -> None:
    response = post(served, url_verification("abc123"), secret=SECRET)
    assert response.status_code == 200 and response.json() == {"challenge": "abc123"}
    # Slack signs this request too, and Bolt checks it first.
    assert post(served, url_verification("abc123")).status_code == 401


def test_slash_command_ack_is_the_http_response(api: FakeSlackAPI, served: str) -> None:
    hook = api.response_url("cmd")
    response = post(
        served, slash_command("diffusion transformers", response_url=hook), secret=SECRET
    )
    assert response.status_code == 200
    # ack(text=...) alone is sent as text/plain (JSON once blocks/response_type are added).
    assert response.text == "Searching for diffusion transformers…"
    assert response.headers["content-type"].startswith("text/plain")
    (call,) = api.calls_to("response_url")
    assert call.path == "/hooks/cmd"
    assert call.params == {"text": "3 papers found", "response_type": "in_channel"}


def test_block_action_updates_the_message(api: FakeSlackAPI, served: str) -> None:
    posted = web_client(api).chat_postMessage(channel=CHANNEL_ID, thread_ts="1.5", text="3 papers")
    body = block_actions(
        "feedback_up",
        "up",
        message_ts=posted["ts"],
        thread_ts="1.5",
        response_url=api.response_url(),
    )
    assert body.startswith("payload=")
    response = post(served, body, secret=SECRET)
    assert response.status_code == 200 and response.text == ""
    (reply,) = api.messages(CHANNEL_ID, thread_ts="1.5")
    assert reply.text == "Thanks!" and reply.history == ["3 papers"]


def test_dm_is_answered_and_the_bots_own_message_ignored(api: FakeSlackAPI, served: str) -> None:
    assert post(served, json.dumps(load_payload("message_im.json")), secret=SECRET).is_success
    own = event_callback(message_im_event("my own answer", user=BOT_USER_ID, bot_id=BOT_ID))
    assert post(served, own, secret=SECRET).is_success
    # Bolt's IgnoringSelfEvents drops events from the bot user (auth.test's user_id).
    (call,) = api.calls_to("chat.postMessage")
    assert call.params["channel"] == DM_CHANNEL_ID
    assert call.params["thread_ts"] == "1700000200.000300"


def test_retried_events_carry_retry_headers_to_the_app(api: FakeSlackAPI) -> None:
    app = App(client=web_client(api), signing_secret=SECRET, process_before_response=True)
    seen: list[tuple[Any, Any]] = []

    @app.event("app_mention")
    def on_mention(request: BoltRequest) -> None:
        # Bolt has no retry field: read the headers (lower-cased, list-valued).
        headers = request.headers
        seen.append((headers.get("x-slack-retry-num"), headers.get("x-slack-retry-reason")))

    with serve_bolt_app(app) as url:
        body = event_callback(app_mention_event("hi"), event_id="Ev0SAME")
        post(url, body, secret=SECRET)
        post(url, body, secret=SECRET, extra_headers=retry_headers(1))
    assert seen == [(None, None), (["1"], ["http_timeout"])]


def test_without_process_before_response_the_ack_comes_first(api: FakeSlackAPI) -> None:
    release = threading.Event()
    app = App(client=web_client(api), signing_secret=SECRET)  # process_before_response=False

    @app.event("app_mention")
    def slow(event: dict[str, Any], say: Say) -> None:
        release.wait(5)
        say(text="late answer", thread_ts=event["ts"])

    with serve_bolt_app(app) as url:
        event = app_mention_event("hi")
        response = post(url, event_callback(event), secret=SECRET)
        assert response.status_code == 200  # answered while the listener still waits
        assert api.calls_to("chat.postMessage") == []
        release.set()
        (call,) = api.wait_for("chat.postMessage")
    assert call.params["thread_ts"] == event["ts"]


def test_lazy_listener_acks_then_works(api: FakeSlackAPI) -> None:
    app = App(client=web_client(api), signing_secret=SECRET, process_before_response=True)
    release = threading.Event()

    def ack_now(ack: Ack) -> None:
        ack(text="On it…")

    def work(respond: Respond) -> None:
        release.wait(5)
        respond(text="done")

    app.command("/papers")(ack=ack_now, lazy=[work])
    with serve_bolt_app(app) as url:
        body = slash_command("digest", response_url=api.response_url("lazy"))
        response = post(url, body, secret=SECRET)
        assert response.text == "On it…" and api.calls_to("response_url") == []
        release.set()
        (call,) = api.wait_for("response_url")
    assert call.params["text"] == "done"


# ---- Socket Mode with slack_bolt's builtin SocketModeHandler --------------------------------


@pytest.fixture
def socket_app() -> Iterator[tuple[FakeSocketModeServer, FakeSlackAPI, SocketModeHandler]]:
    with FakeSocketModeServer() as sm, FakeSlackAPI(socket_mode_url=sm.new_url) as api:
        app = build_app(api, process_before_response=False)  # Socket Mode: ack first
        handler = SocketModeHandler(app, app_token=APP_TOKEN)
        handler.connect()  # non-blocking; start() would block forever
        try:
            yield sm, api, handler
        finally:
            close_handler(handler, sm)


SocketApp = tuple[FakeSocketModeServer, FakeSlackAPI, SocketModeHandler]


def test_socket_mode_event_is_acked_and_answered(socket_app: SocketApp) -> None:
    sm, api, _ = socket_app
    conn = sm.wait_for_connection()
    assert conn.path.startswith("/link/?ticket=") and conn.ticket
    (opened,) = api.calls_to("apps.connections.open")
    assert opened.headers["authorization"] == f"Bearer {APP_TOKEN}"

    event = app_mention_event("what's new?")
    envelope_id = sm.send_envelope("events_api", event_callback_payload(event))
    ack = sm.wait_for_ack(envelope_id)
    assert ack.payload is None and ack.raw == {"envelope_id": envelope_id}
    (call,) = api.wait_for("chat.postMessage")
    assert call.params["thread_ts"] == event["ts"] and call.token == BOT_TOKEN
    assert sm.sent[-1]["retry_attempt"] == 0 and not sm.sent[-1]["accepts_response_payload"]


def test_socket_mode_slash_command_ack_carries_the_response(socket_app: SocketApp) -> None:
    sm, api, _ = socket_app
    sm.wait_for_connection()
    payload = slash_command_payload("rag", response_url=api.response_url("sm"))
    envelope_id = sm.send_envelope("slash_commands", payload)
    assert sm.wait_for_ack(envelope_id).payload == {"text": "Searching for rag…"}
    assert api.wait_for("response_url")[0].params["text"] == "3 papers found"

    posted = web_client(api).chat_postMessage(channel=CHANNEL_ID, text="3 papers")
    action = block_actions_payload("feedback_up", "up", message_ts=posted["ts"])
    sm.wait_for_ack(sm.send_envelope("interactive", action))
    api.wait_for("chat.update")
    assert api.message(CHANNEL_ID, posted["ts"]).text == "Thanks!"  # type: ignore[union-attr]


def test_socket_mode_reconnects_on_disconnect(socket_app: SocketApp) -> None:
    sm, api, _ = socket_app
    first = sm.wait_for_connection()
    # Slack closes the old link a little after asking; the builtin client would otherwise
    # keep reading it until its 3 s socket timeout before switching to the new one.
    sm.send_disconnect("refresh_requested", close_after=0.2)
    second = sm.wait_for_connection(2)
    assert second.id == 2 and second.ticket != first.ticket
    _wait_until(lambda: not sm.connections[0].open)
    assert len(api.calls_to("apps.connections.open")) == 2  # no extra reconnect on close

    event = app_mention_event("still there?")
    envelope_id = sm.send_envelope("events_api", event_callback_payload(event))
    assert sm.wait_for_ack(envelope_id).connection_id == 2
    api.wait_for("chat.postMessage")


def _wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_socket_mode_with_process_before_response_needs_lazy_listeners() -> None:
    """process_before_response=True in Socket Mode: the ack goes out when dispatch returns, so
    slow work must sit in lazy listeners (a plain slow listener would delay the ack past
    Slack's 3 s and get the envelope redelivered)."""
    release = threading.Event()
    with FakeSocketModeServer() as sm, FakeSlackAPI(socket_mode_url=sm.new_url) as api:
        app = App(client=web_client(api), process_before_response=True)

        def ack_now(ack: Ack) -> None:
            ack()

        def answer(event: dict[str, Any], say: Say) -> None:
            release.wait(5)
            say(text="slow answer", thread_ts=event["ts"])

        app.event("app_mention")(ack=ack_now, lazy=[answer])
        handler = SocketModeHandler(app, app_token=APP_TOKEN)
        handler.connect()
        try:
            sm.wait_for_connection()
            event = app_mention_event("hi")
            envelope_id = sm.send_envelope("events_api", event_callback_payload(event))
            sm.wait_for_ack(envelope_id, timeout=2)
            assert api.calls_to("chat.postMessage") == []  # acked while the work waits
            release.set()
            (call,) = api.wait_for("chat.postMessage")
            assert call.params["thread_ts"] == event["ts"]
        finally:
            close_handler(handler, sm)
