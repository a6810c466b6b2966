"""Posting a message Slack acts on at most once, even when its answer is lost.

Slack can carry out a `chat.postMessage` and still answer with a 5xx, or the connection can
drop after the request went out. A blind retry then posts the message twice: a second digest
parent, or a second "Searching…" placeholder that nobody ever updates. So paperbot's own
messages carry Slack message metadata (`DIGEST_EVENT` for digests, `REPLY_EVENT` for thread
replies), the WebClient does not retry those after a 5xx or a dropped connection
(bot/slack/app.py `make_client`; a 429 means Slack did nothing and is still retried), and
`post_once` retries them itself: it waits, asks Slack whether the message is there (the
caller's ``find``) and only then sends again.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from http.client import RemoteDisconnected
from typing import Any
from urllib.error import URLError

log = logging.getLogger(__name__)

DIGEST_EVENT = "paperbot_digest"  # digest messages: channel, day, part
REPLY_EVENT = "paperbot_reply"  # thread replies (placeholders, answers): a nonce per post
# the JSON body of a request carrying either (slack_sdk sends chat.postMessage as JSON)
MARKED = re.compile(
    rb'"event_type":\s*"(?:' + DIGEST_EVENT.encode() + rb"|" + REPLY_EVENT.encode() + rb')"'
)
SEND_TRIES = 4  # one send and three more, each after asking Slack
SEND_BACKOFF_SECONDS = 0.5
LOOKUP_LIMIT = 200  # messages per page of a lookup
LOOKUP_PAGES = 5  # pages a lookup reads at most


def marked(body: bytes | None) -> bool:
    """Is this request body one of paperbot's own messages (not to be retried blindly)?"""
    return bool(MARKED.search(body or b""))


def maybe_taken(exc: BaseException) -> bool:
    """Did this error possibly come after Slack acted on the request? (A 5xx answer, a
    connection dropped or timed out after sending; not a 4xx or an ok:false refusal.)"""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return status >= 500
    return isinstance(exc, (URLError, ConnectionError, RemoteDisconnected, TimeoutError))


# Slack's answers to a conversations.* lookup that say it will never answer this app
# (not now, not later): a digest then sends again rather than never finish.
LOOKUP_REFUSALS = frozenset(
    {
        "missing_scope",
        "not_in_channel",
        "channel_not_found",
        "thread_not_found",
        "not_allowed_token_type",
        "no_permission",
        "access_denied",
        "ekm_access_denied",
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
    }
)


def refused(exc: BaseException) -> bool:
    """Did Slack refuse a lookup for good (a missing scope, a channel the app cannot read)?
    Anything else — a 5xx, a 429, a dropped or broken connection, an error not known to be
    final — may answer differently later."""
    response = getattr(exc, "response", None)
    try:
        error = response.get("error") if response is not None else None
    except Exception:  # not a Slack answer
        return False
    return error in LOOKUP_REFUSALS


def post_once(
    client: Any,
    message: dict[str, Any],
    find: Callable[[], str | None],
    *,
    guard: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
    record: Callable[[str], None] = lambda ts: None,
    tries: int = SEND_TRIES,
) -> str:
    """`chat.postMessage` of ``message``; its ts. Each send and its ``record`` run inside
    ``guard()``; after an error that may hide a message Slack took, wait, ask (``find``: the
    message's ts when Slack has it) and only then send again — the waits and lookups outside
    the guard — up to ``tries`` sends; when Slack does not have it after the last one either,
    that send's error is raised."""
    failure: BaseException | None = None
    for attempt in range(tries + 1):
        if attempt:  # the last send failed in a way that may hide a message Slack took
            time.sleep(SEND_BACKOFF_SECONDS * 2 ** (attempt - 1))  # Slack may still act on it
            there = find()
            if there:
                with guard():
                    record(there)
                return there
            if attempt == tries and failure is not None:
                raise failure
        with guard():
            try:
                sent = str(client.chat_postMessage(**message)["ts"])
            except Exception as exc:
                if not maybe_taken(exc):
                    raise
                log.warning("a message may not have reached Slack (%s); asking Slack", exc)
                failure = exc
                continue
            record(sent)
            return sent
    raise AssertionError("unreachable")


def marked_in(
    method: Callable[..., Any], event_type: str, *, pages: int = LOOKUP_PAGES, **args: Any
) -> list[tuple[dict[str, Any], str]]:
    """(payload, ts) of each message carrying ``event_type`` metadata in up to ``pages`` pages
    of a conversations.* ``method`` (history, replies) called with ``args``."""
    found: list[tuple[dict[str, Any], str]] = []
    cursor = None
    for _ in range(pages):
        page = method(include_all_metadata=True, limit=LOOKUP_LIMIT, cursor=cursor, **args)
        for message in page.get("messages") or []:
            meta = message.get("metadata") or {}
            if meta.get("event_type") == event_type:
                found.append((meta.get("event_payload") or {}, str(message.get("ts"))))
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not (page.get("has_more") and cursor):
            break
    return found
