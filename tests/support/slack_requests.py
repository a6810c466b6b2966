"""Build and send what Slack sends to an app: signed HTTP requests in the real payload shapes.

Payload builders return dicts (also what a Socket Mode envelope carries); body builders
return the HTTP body Slack would POST (JSON for events, form for slash commands and
``payload=<json>`` for interactivity). `sign` makes the ``X-Slack-Signature`` headers the way
``slack_sdk.signature.SignatureVerifier`` checks them; `post` sends with httpx::

    body = event_callback(app_mention_event("what's new in RAG?", channel="C1"))
    response = post(url, body, secret=SIGNING_SECRET)

IDs default to the ones `FakeSlackAPI` uses: team T0TEST, app A0TEST, bot user UBOT, bot BBOT.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

PAYLOAD_DIR = Path(__file__).resolve().parent.parent / "payloads" / "slack"

TEAM_ID = "T0TEST"
TEAM_DOMAIN = "paperbot-test"
APP_ID = "A0TEST"
BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
USER_ID = "U0USER"
CHANNEL_ID = "C0PAPERS"
DM_CHANNEL_ID = "D0USER"
#: The deprecated verification token Slack still puts in payloads (bolt ignores it).
LEGACY_TOKEN = "legacytoken0000000000000"

_last_ts_us = 0
_ts_lock = threading.Lock()


def new_ts() -> str:
    """A fresh, unique, increasing message ts ("1764160000.123456") from the wall clock."""
    global _last_ts_us
    with _ts_lock:
        _last_ts_us = max(int(time.time() * 1_000_000), _last_ts_us + 1)
        return f"{_last_ts_us // 1_000_000}.{_last_ts_us % 1_000_000:06d}"


def load_payload(name: str) -> Any:
    """An example payload from tests/payloads/slack/ (.json parsed, anything else as text)."""
    path = PAYLOAD_DIR / name
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix == ".json" else text


# ---- signing -------------------------------------------------------------------------------


def sign(body: str | bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """``X-Slack-Request-Timestamp`` and ``X-Slack-Signature`` for `body`: "v0=" + hex HMAC
    SHA256 of f"v0:{timestamp}:{body}" under the signing secret. Apps reject a timestamp
    more than 5 minutes from their clock (pass an old one to test replay protection)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    digest = hmac.new(secret.encode(), f"v0:{ts}:{text}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}


def retry_headers(num: int, reason: str = "http_timeout") -> dict[str, str]:
    """What Slack adds when it redelivers an event (reasons: http_timeout, http_error,
    too_many_redirects, connection_failed, ssl_error, unknown_error)."""
    return {"X-Slack-Retry-Num": str(num), "X-Slack-Retry-Reason": reason}


def content_type_of(body: str) -> str:
    stripped = body.lstrip()
    if stripped.startswith(("{", "[")):
        return "application/json"
    return "application/x-www-form-urlencoded"


def post(
    url: str,
    body: str,
    headers: dict[str, str] | None = None,
    extra_headers: dict[str, str] | None = None,
    *,
    secret: str | None = None,
    timestamp: int | None = None,
    timeout: float = 10.0,
) -> httpx.Response:
    """POST `body` as Slack would: Content-Type from the body (JSON or form), Slack's
    User-Agent, signed with `secret` when given (else `headers` must carry a signature, or
    none at all to test rejection). `extra_headers` are added last (e.g. retry_headers())."""
    all_headers = {
        "Content-Type": content_type_of(body),
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        "Accept": "*/*",
    }
    if secret is not None:
        all_headers.update(sign(body, secret, timestamp))
    all_headers.update(headers or {})
    all_headers.update(extra_headers or {})
    return httpx.post(url, content=body.encode("utf-8"), headers=all_headers, timeout=timeout)


# ---- message text -> rich_text blocks ----------------------------------------------------

_TOKEN = re.compile(r"<(@[UW][A-Z0-9]+|#C[A-Z0-9]+(?:\|[^>]*)?|https?://[^>|]+(?:\|[^>]*)?)>")


def rich_text_blocks(text: str) -> list[dict[str, Any]]:
    """The ``rich_text`` block Slack's client attaches to a typed message (mentions, channel
    links and URLs become their own elements)."""
    elements: list[dict[str, Any]] = []
    pos = 0
    for match in _TOKEN.finditer(text):
        if match.start() > pos:
            elements.append({"type": "text", "text": text[pos : match.start()]})
        token = match.group(1)
        if token.startswith("@"):
            elements.append({"type": "user", "user_id": token[1:]})
        elif token.startswith("#"):
            elements.append({"type": "channel", "channel_id": token[1:].split("|", 1)[0]})
        else:
            link, _, label = token.partition("|")
            element: dict[str, Any] = {"type": "link", "url": link}
            if label:
                element["text"] = label
            elements.append(element)
        pos = match.end()
    if pos < len(text):
        elements.append({"type": "text", "text": text[pos:]})
    return [
        {
            "type": "rich_text",
            "block_id": uuid.uuid4().hex[:5],
            "elements": [{"type": "rich_text_section", "elements": elements}],
        }
    ]


# ---- events --------------------------------------------------------------------------------


def app_mention_event(
    text: str,
    *,
    user: str = USER_ID,
    channel: str = CHANNEL_ID,
    ts: str | None = None,
    thread_ts: str | None = None,
    team_id: str = TEAM_ID,
    bot_user_id: str = BOT_USER_ID,
) -> dict[str, Any]:
    """An ``app_mention`` event; "<@bot_user_id> " is put in front of `text` unless the text
    already mentions the bot (Slack only sends app_mention when it does)."""
    mention = f"<@{bot_user_id}>"
    full = text if mention in text else f"{mention} {text}"
    ts = ts or new_ts()
    event: dict[str, Any] = {
        "user": user,
        "type": "app_mention",
        "ts": ts,
        "client_msg_id": str(uuid.uuid4()),
        "text": full,
        "team": team_id,
        "blocks": rich_text_blocks(full),
        "channel": channel,
        "event_ts": ts,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
        event["parent_user_id"] = user
    return event


def message_event(
    text: str,
    *,
    user: str | None = USER_ID,
    channel: str = CHANNEL_ID,
    channel_type: str = "channel",
    ts: str | None = None,
    thread_ts: str | None = None,
    bot_id: str | None = None,
    subtype: str | None = None,
    team_id: str = TEAM_ID,
    app_id: str = APP_ID,
) -> dict[str, Any]:
    """A ``message`` event (message.channels / .groups / .im / .mpim by `channel_type`).

    A user's message has ``client_msg_id`` and rich_text ``blocks``; with `bot_id` it is a
    bot's (no client_msg_id; ``bot_id``, ``app_id``, ``bot_profile``) - what an app receives
    for its own posts (user=its bot user id) or another bot's. `subtype` e.g. "bot_message",
    "message_changed", "channel_join".
    """
    ts = ts or new_ts()
    event: dict[str, Any] = {"type": "message"}
    if subtype:
        event["subtype"] = subtype
    if user is not None:
        event["user"] = user
    event.update({"ts": ts, "text": text, "team": team_id})
    if bot_id is None:
        event["client_msg_id"] = str(uuid.uuid4())
        event["blocks"] = rich_text_blocks(text)
    else:
        event["bot_id"] = bot_id
        event["app_id"] = app_id
        event["bot_profile"] = {
            "id": bot_id,
            "deleted": False,
            "name": "paperbot",
            "updated": 1700000000,
            "app_id": app_id,
            "team_id": team_id,
        }
    if thread_ts:
        event["thread_ts"] = thread_ts
        if user is not None:
            event["parent_user_id"] = user
    event.update({"channel": channel, "event_ts": ts, "channel_type": channel_type})
    return event


def message_im_event(
    text: str, *, user: str | None = USER_ID, channel: str = DM_CHANNEL_ID, **kwargs: Any
) -> dict[str, Any]:
    """A direct message to the bot (``message.im``: channel "D...", channel_type "im")."""
    return message_event(text, user=user, channel=channel, channel_type="im", **kwargs)


def event_callback_payload(
    event: dict[str, Any],
    event_id: str | None = None,
    team_id: str = TEAM_ID,
    *,
    api_app_id: str = APP_ID,
    bot_user_id: str = BOT_USER_ID,
    event_time: int | None = None,
) -> dict[str, Any]:
    """The Events API wrapper around `event` (the HTTP body, and a Socket Mode
    ``events_api`` envelope's payload)."""
    return {
        "token": LEGACY_TOKEN,
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or "Ev" + uuid.uuid4().hex[:10].upper(),
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": "4-" + uuid.uuid4().hex,
    }


def event_callback(
    event: dict[str, Any], event_id: str | None = None, team_id: str = TEAM_ID, **kwargs: Any
) -> str:
    """The JSON HTTP body Slack POSTs for an event."""
    return json.dumps(event_callback_payload(event, event_id, team_id, **kwargs))


def url_verification_payload(challenge: str) -> dict[str, Any]:
    return {"token": LEGACY_TOKEN, "challenge": challenge, "type": "url_verification"}


def url_verification(
    challenge: str = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
) -> str:
    """The JSON body Slack POSTs when the Request URL is set; the app must echo `challenge`."""
    return json.dumps(url_verification_payload(challenge))


# ---- slash commands ------------------------------------------------------------------------


def slash_command_payload(
    text: str,
    command: str = "/papers",
    user_id: str = USER_ID,
    channel_id: str = CHANNEL_ID,
    response_url: str | None = None,
    trigger_id: str | None = None,
    team_id: str = TEAM_ID,
    *,
    channel_name: str = "papers",
    user_name: str = "alice",
    api_app_id: str = APP_ID,
) -> dict[str, str]:
    """The fields of a slash command (the form body; a Socket Mode envelope's payload)."""
    return {
        "token": LEGACY_TOKEN,
        "team_id": team_id,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": "directmessage" if channel_id.startswith("D") else channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url
        or f"https://hooks.slack.com/commands/{team_id}/1234567890/{uuid.uuid4().hex[:24]}",
        "trigger_id": trigger_id or f"1234567890.{team_id[1:]}.{uuid.uuid4().hex}",
    }


def slash_command(
    text: str,
    command: str = "/papers",
    user_id: str = USER_ID,
    channel_id: str = CHANNEL_ID,
    response_url: str | None = None,
    trigger_id: str | None = None,
    team_id: str = TEAM_ID,
    **kwargs: Any,
) -> str:
    """The form-encoded body Slack POSTs for a slash command."""
    return urlencode(
        slash_command_payload(
            text, command, user_id, channel_id, response_url, trigger_id, team_id, **kwargs
        )
    )


# ---- interactivity -------------------------------------------------------------------------


def block_actions_payload(
    action_id: str,
    value: str | None = None,
    user_id: str = USER_ID,
    channel_id: str = CHANNEL_ID,
    message_ts: str | None = None,
    thread_ts: str | None = None,
    response_url: str | None = None,
    *,
    block_id: str = "actions",
    action_type: str = "button",
    button_text: str = "Click",
    message_text: str = "",
    message_blocks: list[dict[str, Any]] | None = None,
    trigger_id: str | None = None,
    team_id: str = TEAM_ID,
    api_app_id: str = APP_ID,
    bot_user_id: str = BOT_USER_ID,
    bot_id: str = BOT_ID,
    is_ephemeral: bool = False,
) -> dict[str, Any]:
    """A ``block_actions`` payload: a user clicked a button (or picked from a menu) in a
    message the bot posted at `message_ts` (optionally a reply in thread `thread_ts`)."""
    message_ts = message_ts or new_ts()
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": block_id,
        "type": action_type,
        "action_ts": f"{time.time():.6f}",
    }
    if action_type == "button":
        action["text"] = {"type": "plain_text", "text": button_text, "emoji": True}
        if value is not None:
            action["value"] = value
    elif action_type == "static_select":
        option = {"text": {"type": "plain_text", "text": value or "", "emoji": True}}
        action["selected_option"] = option | {"value": value}
    elif value is not None:
        action["value"] = value
    element = {k: v for k, v in action.items() if k not in ("block_id", "action_ts")}
    blocks = message_blocks or [
        {"type": "actions", "block_id": block_id, "elements": [element]},
    ]
    message: dict[str, Any] = {
        "user": bot_user_id,
        "type": "message",
        "ts": message_ts,
        "bot_id": bot_id,
        "app_id": api_app_id,
        "text": message_text,
        "team": team_id,
        "blocks": blocks,
    }
    container: dict[str, Any] = {
        "type": "message",
        "message_ts": message_ts,
        "channel_id": channel_id,
        "is_ephemeral": is_ephemeral,
    }
    if thread_ts:
        message["thread_ts"] = thread_ts
        container["thread_ts"] = thread_ts
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": "alice", "name": "alice", "team_id": team_id},
        "api_app_id": api_app_id,
        "token": LEGACY_TOKEN,
        "container": container,
        "trigger_id": trigger_id or f"1234567890.{team_id[1:]}.{uuid.uuid4().hex}",
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": "papers"},
        "state": {"values": {}},
        "response_url": response_url
        or f"https://hooks.slack.com/actions/{team_id}/1234567890/{uuid.uuid4().hex[:24]}",
        "actions": [action],
    }
    if not is_ephemeral:
        payload["message"] = message
    return payload


def block_actions(
    action_id: str,
    value: str | None = None,
    user_id: str = USER_ID,
    channel_id: str = CHANNEL_ID,
    message_ts: str | None = None,
    thread_ts: str | None = None,
    response_url: str | None = None,
    **kwargs: Any,
) -> str:
    """The form body Slack POSTs for a block action: ``payload=<url-encoded JSON>``."""
    payload = block_actions_payload(
        action_id, value, user_id, channel_id, message_ts, thread_ts, response_url, **kwargs
    )
    return interactive_body(payload)


def interactive_body(payload: dict[str, Any]) -> str:
    """Any interaction payload (block_actions, view_submission, shortcut...) as Slack
    POSTs it."""
    return urlencode({"payload": json.dumps(payload)})
