"""A fake Slack Web API for tests and benchmarks (stdlib only, 127.0.0.1, a free port).

It implements the methods paperbot calls, in Slack's request and answer shapes: auth.test
(Bolt's startup check, `paperbot doctor`), chat.postMessage, chat.update and chat.delete
(thread replies, digests, notifications; message ``metadata`` kept), conversations.replies
(a thread's history) and conversations.history (a channel's; both show metadata only with
``include_all_metadata``), conversations.info (is paperbot a member of a channel? every channel unless `leave` said
otherwise; a private channel it left is ``channel_not_found``), users.info (``is_admin``
for the ids in `admins`),
apps.connections.open (Socket Mode: hands out `socket_mode_url`), the AI-app methods
(assistant.threads.setStatus/setTitle/setSuggestedPrompts, recorded per thread in `threads`;
chat.startStream/appendStream/stopStream: a reply whose text grows by each ``markdown_text``
while `streaming`, ``message_not_in_streaming_state`` after the stop; outside a DM the
recipient_user_id/recipient_team_id are required, as Slack documents), and POSTs to the
``response_url`` of slash commands and actions. Any other method gets Slack's
``unknown_method`` error, so that a new call in paperbot is noticed here first::

    with FakeSlackAPI() as api:
        client = WebClient(token="xoxb-test", base_url=api.base_url)  # base_url ends in /api/
        client.chat_postMessage(channel="C1", thread_ts="1700000000.000100", text="hi")
        assert [m.text for m in api.messages("C1", thread_ts="1700000000.000100")] == ["hi"]

Every request is recorded (`requests`, `calls_to`, `wait_for`) with its method, params (query
+ JSON or form body; ``blocks`` decoded whatever the transport), headers and the answer it
got. Faults are scripted per method: `fail_next` (429 + Retry-After, 5xx, or
``{"ok": false, "error": ...}``) and `delay_next` (slow answers).

Tokens as in Slack: none -> ``not_authed``; apps.connections.open wants an app-level
``xapp-`` token, every other method refuses one (``not_allowed_token_type``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from tests.support.http_fake import Exchange, HTTPFake, Request
from tests.support.slack_requests import APP_ID, BOT_ID, BOT_USER_ID, TEAM_DOMAIN, TEAM_ID

#: Params whose value is JSON even when sent form-encoded.
JSON_FIELDS = frozenset({"blocks", "attachments", "metadata", "prompts", "chunks"})


@dataclass(frozen=True)
class SlackCall:
    """One Web API request as the fake saw it, with the answer it got."""

    method: str  # e.g. "chat.postMessage"; "response_url" for POSTs to response_url()s
    http_method: str  # "POST" | "GET"
    path: str  # e.g. "/api/chat.postMessage", "/hooks/cmd-1"
    params: dict[str, Any]  # query + body; JSON_FIELDS decoded; form values stay str
    headers: dict[str, str]  # lower-cased names
    status: int  # HTTP status answered
    response: dict[str, Any]  # the JSON answered
    at: float  # time.time() when received

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response.get("ok"))

    @property
    def error(self) -> str | None:
        return self.response.get("error")


@dataclass
class StoredMessage:
    """A message as the fake workspace holds it (copies are handed out)."""

    channel: str
    ts: str
    text: str = ""
    user: str | None = None
    bot_id: str | None = None
    thread_ts: str | None = None
    blocks: list[Any] | None = None
    history: list[str] = field(default_factory=list)  # earlier texts, one per chat.update
    streaming: bool = False  # chat.startStream until chat.stopStream
    metadata: dict[str, Any] | None = None

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts


@dataclass
class _Script:
    method: str  # "*" = any method
    times: int
    status: int = 200
    body: dict[str, Any] | None = None  # None: answer as usual (after the delay)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    acted: bool = False  # the call is carried out, then answered with status/body (lost answer)


def _ts_key(ts: str) -> tuple[int, int]:
    """Sort key for Slack timestamps ("1700000000.000100")."""
    sec, _, frac = ts.partition(".")
    return int(sec or 0), int((frac + "000000")[:6] or 0)


class FakeSlackAPI(HTTPFake[SlackCall]):
    """The server; use as a context manager or call start()/stop()."""

    team_id = TEAM_ID
    bot_user_id = BOT_USER_ID
    # the bot token's scopes, sent in every Web API answer's x-oauth-scopes (None: no header)
    scopes: tuple[str, ...] | None = None
    bot_id = BOT_ID

    def __init__(
        self,
        *,
        socket_mode_url: str | Callable[[], str] | None = None,
        ts_start: float | None = None,
    ) -> None:
        super().__init__()
        #: What apps.connections.open answers: a ws:// URL, or a function giving a fresh one
        #: (e.g. ``FakeSocketModeServer.new_url``).
        self.socket_mode_url = socket_mode_url
        self._messages: dict[str, list[StoredMessage]] = {}
        self._left: dict[str, bool] = {}  # channels paperbot is not in -> visible to it
        #: users.info says ``is_admin: true`` for these user ids.
        self.admins: set[str] = set()
        self._scripts: list[_Script] = []
        #: (channel, thread_ts) -> {"status": [..], "title": [..], "prompts": [..]}, every
        #: assistant.threads.* value set, in order.
        self.threads: dict[tuple[str, str], dict[str, list[Any]]] = {}
        #: Message ts: from ts_start in steps of 100 µs (deterministic), else the wall clock.
        self._deterministic_ts = ts_start is not None
        self._last_ts_us = int((ts_start or 0) * 1_000_000)

    @property
    def base_url(self) -> str:
        """For ``WebClient(base_url=...)``; ends with "/api/" as the client requires."""
        return f"{self.url}/api/"

    def response_url(self, tag: str | None = None) -> str:
        """A slash command's / block action's ``response_url``: POSTs to it are recorded as
        calls to method "response_url" (params = the JSON body) and get ``{"ok": true}``."""
        return f"{self.url}/hooks/{tag or uuid.uuid4().hex[:12]}"

    # ---- scripting -------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        error: str | None = None,
        *,
        status: int | None = None,
        retry_after: int = 1,
        times: int = 1,
    ) -> None:
        """The next `times` calls to `method` ("*" = any) fail.

        Nothing given -> HTTP 429 ``ratelimited`` with ``Retry-After: retry_after``
        (slack_sdk's RateLimitErrorRetryHandler sleeps Retry-After + up to 1 s: use
        retry_after=0 in tests); an `error` alone -> HTTP 200 ``{"ok": false, "error": error}``
        (what Slack does for channel_not_found, invalid_auth...); a `status` >= 500 alone ->
        ``internal_error``.
        """
        if status is None:
            status = 429 if error in (None, "ratelimited") else 200
        if error is None:
            error = {429: "ratelimited"}.get(status, "internal_error")
        headers = {"Retry-After": str(retry_after)} if status == 429 else {}
        body = {"ok": False, "error": error}
        self._push(_Script(method, times, status=status, body=body, headers=headers))

    def lose_next_answer(self, method: str, *, status: int = 500, times: int = 1) -> None:
        """The next `times` calls to `method` are carried out (a message is posted), then
        answered with HTTP `status` ``internal_error``, as if Slack's answer was lost."""
        body = {"ok": False, "error": "internal_error"}
        self._push(_Script(method, times, status=status, body=body, acted=True))

    def delay_next(self, method: str, seconds: float, *, times: int = 1) -> None:
        """The next `times` calls to `method` wait `seconds`, then are answered as usual."""
        self._push(_Script(method, times, delay=seconds))

    def leave(self, channel: str, *, visible: bool = True) -> None:
        """paperbot is not a member of `channel`: conversations.info says ``is_member: false``
        (a public channel), or ``channel_not_found`` when not `visible` (a private one).
        chat.postMessage still succeeds there, as with the chat:write.public scope."""
        with self._cond:
            self._left[channel] = visible

    def add_message(
        self,
        channel: str,
        text: str,
        *,
        user: str | None = "U0USER",
        ts: str | None = None,
        thread_ts: str | None = None,
        bot_id: str | None = None,
    ) -> StoredMessage:
        """Seed a message (the user's question, other replies in a thread; with `bot_id`,
        another bot's) for conversations.replies to return."""
        with self._cond:
            msg = StoredMessage(
                channel, ts or self._next_ts(), text, user, bot_id=bot_id, thread_ts=thread_ts
            )
            self._store(msg)
            return copy.deepcopy(msg)

    def reset(self) -> None:
        """Forget calls, scripts and messages."""
        with self._cond:
            self.requests.clear()
            self._scripts.clear()
            self._messages.clear()
            self._left.clear()
            self.threads.clear()

    # ---- inspection ------------------------------------------------------------------------

    def calls_to(self, method: str, *, ok: bool | None = None) -> list[SlackCall]:
        """Recorded calls to `method`; ok=True only successful ones, ok=False only failures."""
        with self._cond:
            return [c for c in self.requests if c.method == method and ok in (None, c.ok)]

    def wait_for(
        self, method: str, count: int = 1, timeout: float = 5.0, *, ok: bool | None = None
    ) -> list[SlackCall]:
        """Block until `count` calls to `method` (filtered by `ok`) were answered; return them."""

        def enough() -> list[SlackCall] | None:
            found = self.calls_to(method, ok=ok)
            return found if len(found) >= count else None

        return self.wait_until(enough, timeout, f"{count}x {method}")

    def messages(self, channel: str, thread_ts: str | None = None) -> list[StoredMessage]:
        """Current messages (as updated) in ts order, copies. thread_ts=None: every message in
        the channel (top-level and replies); thread_ts=X: the replies in thread X only."""
        with self._cond:
            return copy.deepcopy(
                [
                    m
                    for m in self._messages.get(channel, [])
                    if thread_ts is None or (m.thread_ts == thread_ts and m.ts != thread_ts)
                ]
            )

    def bot_messages(self, channel: str, thread_ts: str | None = None) -> list[StoredMessage]:
        """messages() posted by the bot."""
        return [m for m in self.messages(channel, thread_ts) if m.user == self.bot_user_id]

    # ---- serving ---------------------------------------------------------------------------

    def handle(self, request: Request, ex: Exchange) -> None:
        if request.path.startswith("/api/"):
            method = request.path.removeprefix("/api/").strip("/")
        elif request.path.startswith("/hooks/"):
            method = "response_url"
        else:
            ex.send(404, b"Not Found")
            return
        params = _params(request)
        script = self._take_script(method)
        if script is not None:
            self.pause(script.delay)
        status, headers, body = 200, {}, {"ok": True}
        if script is not None and script.acted:
            self._answer(method, params, request.headers)
        if script is not None and script.body is not None:
            status, headers, body = script.status, script.headers, script.body
        elif method != "response_url":
            body = self._answer(method, params, request.headers)
        if self.scopes is not None and method != "response_url":  # as Slack's Web API answers
            headers = {**headers, "x-oauth-scopes": ",".join(self.scopes)}
        call = SlackCall(
            method=method,
            http_method=request.method,
            path=request.path,
            params=params,
            headers=request.headers,
            status=status,
            response=copy.deepcopy(body),
            at=time.time(),
        )
        self.record(call)
        ex.send_json(status, body, headers)

    def _seen(self) -> str:
        return "calls: " + ", ".join(f"{c.method}->{c.status}:{c.error}" for c in self.requests)

    def _answer(self, method: str, params: dict[str, Any], headers: dict[str, str]) -> Any:
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else params.get("token")
        if not token:
            return {"ok": False, "error": "not_authed"}
        if (method == "apps.connections.open") != str(token).startswith("xapp-"):
            return {"ok": False, "error": "not_allowed_token_type"}
        impl = _METHODS.get(method)
        if impl is None:
            return {"ok": False, "error": "unknown_method", "req_method": method}
        with self._cond:
            return impl(self, params)

    def _push(self, script: _Script) -> None:
        with self._cond:
            self._scripts.append(script)

    def _take_script(self, method: str) -> _Script | None:
        with self._cond:
            for i, script in enumerate(self._scripts):
                if script.method in (method, "*"):
                    script.times -= 1
                    if script.times <= 0:
                        self._scripts.pop(i)
                    return script
            return None

    # ---- workspace state (called with the lock held) ---------------------------------------

    def _next_ts(self) -> str:
        """Unique, increasing "1700000000.000100"-style ts."""
        step = 100 if self._deterministic_ts else 1
        now_us = 0 if self._deterministic_ts else int(time.time() * 1_000_000)
        self._last_ts_us = max(now_us, self._last_ts_us + step)
        return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def _store(self, msg: StoredMessage) -> None:
        msgs = self._messages.setdefault(msg.channel, [])
        msgs.append(msg)
        msgs.sort(key=lambda m: _ts_key(m.ts))

    def _find(self, channel: str, ts: str) -> StoredMessage | None:
        return next((m for m in self._messages.get(channel, []) if m.ts == ts), None)

    def _message_json(self, msg: StoredMessage, *, metadata: bool = True) -> dict[str, Any]:
        """As Slack shows it; ``metadata``: with its message metadata (Slack's conversations.*
        methods only show it when asked: ``include_all_metadata``)."""
        out: dict[str, Any] = {"type": "message", "text": msg.text, "ts": msg.ts}
        if msg.user:
            out["user"] = msg.user
        if msg.bot_id:
            app_id = APP_ID if msg.bot_id == self.bot_id else "A0" + msg.bot_id[1:]
            out |= {"bot_id": msg.bot_id, "app_id": app_id}
        out["team"] = self.team_id
        if msg.blocks is not None:
            out["blocks"] = msg.blocks
        if msg.metadata and metadata:
            out["metadata"] = msg.metadata
        replies = [m for m in self._messages.get(msg.channel, []) if m.thread_ts == msg.ts]
        if msg.is_reply:
            out["thread_ts"] = msg.thread_ts
            parent = self._find(msg.channel, msg.thread_ts or "")
            if parent is not None and parent.user:
                out["parent_user_id"] = parent.user
        elif replies := [m for m in replies if m.is_reply]:  # a thread parent
            out |= {"thread_ts": msg.ts, "reply_count": len(replies)}
            out |= {"reply_users": sorted({m.user for m in replies if m.user})}
            out["latest_reply"] = replies[-1].ts
        return out

    # ---- methods ---------------------------------------------------------------------------

    def _auth_test(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": "Paperbot Test",
            "user": "paperbot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = str(p.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not (p.get("text") or p.get("blocks") or p.get("attachments")):
            return {"ok": False, "error": "no_text"}
        if channel[:1] in ("U", "W"):  # posting to a user posts into the bot's DM with them
            channel = "D" + channel[1:]
        msg = StoredMessage(
            channel=channel,
            ts=self._next_ts(),
            text=str(p.get("text") or ""),
            user=self.bot_user_id,
            bot_id=self.bot_id,
            thread_ts=str(p["thread_ts"]) if p.get("thread_ts") else None,
            blocks=p.get("blocks"),
            metadata=_metadata(p.get("metadata")),
        )
        self._store(msg)
        return {"ok": True, "channel": channel, "ts": msg.ts, "message": self._message_json(msg)}

    def _bots_message(
        self, p: dict[str, Any], verb: str
    ) -> tuple[StoredMessage | None, dict[str, Any]]:
        """The bot's message at p's channel and ts, and the answer; or None and the error."""
        msg = self._find(str(p.get("channel") or ""), str(p.get("ts") or ""))
        if msg is None:
            return None, {"ok": False, "error": "message_not_found"}
        if msg.user != self.bot_user_id:
            return None, {"ok": False, "error": f"cant_{verb}_message"}
        return msg, {"ok": True, "channel": msg.channel, "ts": msg.ts}

    def _chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        msg, answer = self._bots_message(p, "update")
        if msg is None:
            return answer
        if "text" not in p and "blocks" not in p:
            return {"ok": False, "error": "no_text"}
        msg.history.append(msg.text)
        if "text" in p:
            msg.text = str(p.get("text") or "")
        if "blocks" in p:
            msg.blocks = p.get("blocks") or None
        if isinstance(p.get("metadata"), dict):
            msg.metadata = p["metadata"]
        return answer | {"text": msg.text, "message": self._message_json(msg)}

    def _chat_delete(self, p: dict[str, Any]) -> dict[str, Any]:
        msg, answer = self._bots_message(p, "delete")
        if msg is not None:
            self._messages[msg.channel].remove(msg)
        return answer

    def _conversations_replies(self, p: dict[str, Any]) -> dict[str, Any]:
        """The parent, then its replies, oldest first; `limit` (default 1000) and `cursor`
        paging."""
        channel, ts = str(p.get("channel") or ""), str(p.get("ts") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not ts:
            return {"ok": False, "error": "invalid_arguments"}
        everything = self._messages.get(channel, [])
        target = self._find(channel, ts)
        # Asked with a reply's ts, Slack answers that reply's thread.
        root = target.thread_ts if target is not None and target.thread_ts else ts
        thread = [m for m in everything if m.ts == root or m.thread_ts == root]
        limit = max(1, int(p.get("limit") or 1000))
        start = int(p.get("cursor") or 0)  # the fake's cursor: an offset
        shown = _flag(p.get("include_all_metadata"))
        more = start + limit < len(thread)
        return {
            "ok": True,
            "messages": [
                self._message_json(m, metadata=shown) for m in thread[start : start + limit]
            ],
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _conversations_history(self, p: dict[str, Any]) -> dict[str, Any]:
        """The channel's messages (thread replies left out), newest first, between ``oldest``
        and ``latest`` (both exclusive); `limit` (default 100) and `cursor` paging."""
        channel = str(p.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        oldest = _ts_key(str(p.get("oldest") or "0"))
        latest = _ts_key(str(p.get("latest") or "9999999999"))
        found = [
            m
            for m in reversed(self._messages.get(channel, []))
            if not m.is_reply and oldest < _ts_key(m.ts) < latest
        ]
        limit = max(1, int(p.get("limit") or 100))
        start = int(p.get("cursor") or 0)  # the fake's cursor: an offset
        page = found[start : start + limit]
        shown = _flag(p.get("include_all_metadata"))
        more = start + limit < len(found)
        return {
            "ok": True,
            "messages": [self._message_json(m, metadata=shown) for m in page],
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _conversations_info(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = str(p.get("channel") or "")
        if not channel or self._left.get(channel) is False:
            return {"ok": False, "error": "channel_not_found"}
        info: dict[str, Any] = {"id": channel, "created": 1700000000}
        if channel.startswith("D"):
            info |= {"is_im": True, "user": "U" + channel[1:]}
        else:
            info |= {"is_channel": True, "is_im": False, "is_member": channel not in self._left}
        return {"ok": True, "channel": info}

    def _users_info(self, p: dict[str, Any]) -> dict[str, Any]:
        user = str(p.get("user") or "")
        if not user:
            return {"ok": False, "error": "user_not_found"}
        admin = user in self.admins
        return {"ok": True, "user": {"id": user, "is_admin": admin, "is_owner": False}}

    def _assistant_thread(self, p: dict[str, Any], what: str, value: Any) -> dict[str, Any]:
        channel, thread = str(p.get("channel_id") or ""), str(p.get("thread_ts") or "")
        if not channel or not thread or value is None:
            return {"ok": False, "error": "invalid_arguments"}
        self.threads.setdefault((channel, thread), {}).setdefault(what, []).append(value)
        return {"ok": True}

    def _set_status(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._assistant_thread(p, "status", p.get("status"))

    def _set_title(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._assistant_thread(p, "title", p.get("title"))

    def _set_prompts(self, p: dict[str, Any]) -> dict[str, Any]:
        prompts = p.get("prompts")
        if isinstance(prompts, str):
            prompts = json.loads(prompts)
        if not isinstance(prompts, list) or not 1 <= len(prompts) <= 4:
            return {"ok": False, "error": "invalid_arguments"}
        return self._assistant_thread(p, "prompts", prompts)

    def _start_stream(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = str(p.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not channel.startswith("D") and not (
            p.get("recipient_user_id") and p.get("recipient_team_id")
        ):
            return {"ok": False, "error": "invalid_arguments"}
        msg = StoredMessage(
            channel=channel,
            ts=self._next_ts(),
            text=str(p.get("markdown_text") or ""),
            user=self.bot_user_id,
            bot_id=self.bot_id,
            thread_ts=str(p["thread_ts"]) if p.get("thread_ts") else None,
            streaming=True,
        )
        self._store(msg)
        return {"ok": True, "channel": channel, "ts": msg.ts}

    def _streaming_message(self, p: dict[str, Any]) -> tuple[StoredMessage | None, Any]:
        msg, answer = self._bots_message(p, "update")
        if msg is not None and not msg.streaming:
            return None, {"ok": False, "error": "message_not_in_streaming_state"}
        return msg, answer

    def _append_stream(self, p: dict[str, Any]) -> dict[str, Any]:
        msg, answer = self._streaming_message(p)
        if msg is None:
            return answer
        if not p.get("markdown_text"):
            return {"ok": False, "error": "invalid_arguments"}
        msg.text += str(p["markdown_text"])
        return answer

    def _stop_stream(self, p: dict[str, Any]) -> dict[str, Any]:
        msg, answer = self._streaming_message(p)
        if msg is None:
            return answer
        msg.text += str(p.get("markdown_text") or "")
        msg.blocks = p.get("blocks") or msg.blocks
        msg.streaming = False
        return answer | {"message": self._message_json(msg)}

    def _apps_connections_open(self, p: dict[str, Any]) -> dict[str, Any]:
        url = self.socket_mode_url
        if url is None:
            return {"ok": False, "error": "socket_mode_not_configured_in_fake"}
        return {"ok": True, "url": url() if callable(url) else url}


_METHODS: dict[str, Callable[[FakeSlackAPI, dict[str, Any]], dict[str, Any]]] = {
    "auth.test": FakeSlackAPI._auth_test,
    "chat.postMessage": FakeSlackAPI._chat_post_message,
    "chat.update": FakeSlackAPI._chat_update,
    "chat.delete": FakeSlackAPI._chat_delete,
    "conversations.replies": FakeSlackAPI._conversations_replies,
    "conversations.history": FakeSlackAPI._conversations_history,
    "conversations.info": FakeSlackAPI._conversations_info,
    "users.info": FakeSlackAPI._users_info,
    "apps.connections.open": FakeSlackAPI._apps_connections_open,
    "assistant.threads.setStatus": FakeSlackAPI._set_status,
    "assistant.threads.setTitle": FakeSlackAPI._set_title,
    "assistant.threads.setSuggestedPrompts": FakeSlackAPI._set_prompts,
    "chat.startStream": FakeSlackAPI._start_stream,
    "chat.appendStream": FakeSlackAPI._append_stream,
    "chat.stopStream": FakeSlackAPI._stop_stream,
}


def _metadata(value: Any) -> dict[str, Any] | None:
    """chat.postMessage's ``metadata``: an object, or its JSON in a form field."""
    if isinstance(value, str) and value:
        value = json.loads(value)
    return value if isinstance(value, dict) else None


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _params(request: Request) -> dict[str, Any]:
    """Query string plus the JSON or form body, as the Web API reads them."""
    params: dict[str, Any] = dict(request.params)
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if request.body and ctype == "application/json":
        with contextlib.suppress(ValueError):
            body = json.loads(request.body)
            params.update(body if isinstance(body, dict) else {})
    elif request.body and ctype == "application/x-www-form-urlencoded":
        params.update(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
    for key in JSON_FIELDS & params.keys():
        value = params[key]
        if isinstance(value, str) and value[:1] in ("[", "{"):
            with contextlib.suppress(ValueError):
                params[key] = json.loads(value)
    return params
