"""A fake Slack Web API for tests (stdlib only, 127.0.0.1, random port).

Point the real client at it::

    with FakeSlackAPI() as api:
        client = WebClient(token="xoxb-test", base_url=api.base_url)  # base_url ends in /api/
        client.chat_postMessage(channel="C1", thread_ts="1700000000.000100", text="hi")
        api.wait_for("chat.postMessage")
        assert [m.text for m in api.messages("C1", thread_ts="1700000000.000100")] == ["hi"]

Every request is recorded (`calls`, `calls_to`, `wait_for`) with its method name, parsed
params (query string + JSON or form or multipart body; the JSON-valued fields ``blocks``,
``attachments``, ``metadata``, ``chunks``, ``view``... decoded whatever the transport), headers
and the answer it got. State: messages per channel (ts, thread_ts, text, blocks, edits,
deletion, streaming state), ephemeral messages, reactions, assistant thread statuses, opened
views. Faults are scripted per method: `fail_next` (429 + Retry-After, 5xx, or
``{"ok": false, "error": ...}``), `respond_next` (any body), `delay_next` (slow answers).

Token rules as in Slack: no token -> ``not_authed``; `valid_tokens`, when set, -> ``invalid_auth``
for others; an ``xapp-`` app-level token only for ``apps.connections.open`` (which needs one)
-> ``not_allowed_token_type`` otherwise.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

#: Params whose value is JSON even when sent form-encoded (slack_sdk json.dumps them).
JSON_FIELDS = frozenset(
    {"blocks", "attachments", "metadata", "chunks", "view", "prompts", "loading_messages"}
)

Answer = tuple[int, dict[str, str], Any]  # HTTP status, extra headers, JSON body (or str)
MethodHandler = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class SlackCall:
    """One Web API request as the fake saw it, with the answer it got."""

    method: str  # e.g. "chat.postMessage"; "response_url" for POSTs to response_url()s
    http_method: str  # "POST" | "GET"
    path: str  # e.g. "/api/chat.postMessage", "/hooks/cmd-1"
    params: dict[str, Any]  # query + body; JSON_FIELDS decoded; form values stay str
    headers: dict[str, str]  # lower-cased names
    raw_body: bytes
    status: int  # HTTP status answered
    response: Any  # the JSON answered (dict), or the raw text for non-JSON answers
    at: float  # time.time() when received

    @property
    def token(self) -> str | None:
        """The token: ``Authorization: Bearer ...`` or a ``token`` param."""
        auth = self.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip() or None
        token = self.params.get("token")
        return str(token) if token else None

    @property
    def ok(self) -> bool:
        return (
            self.status == 200 and isinstance(self.response, dict) and bool(self.response.get("ok"))
        )

    @property
    def error(self) -> str | None:
        return self.response.get("error") if isinstance(self.response, dict) else None


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
    attachments: list[Any] | None = None
    metadata: dict[str, Any] | None = None
    subtype: str | None = None
    reply_broadcast: bool = False
    deleted: bool = False
    #: Earlier texts, oldest first (each chat.update / stream append pushes the previous one).
    history: list[str] = field(default_factory=list)
    #: None for ordinary messages; "streaming" after chat.startStream; "stopped" after stop.
    stream_state: str | None = None
    chunks: list[Any] = field(default_factory=list)  # every streaming chunk received, in order
    extra: dict[str, Any] = field(default_factory=dict)  # other fields, echoed in API answers

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    @property
    def edited(self) -> bool:
        return bool(self.history)


@dataclass(frozen=True)
class Ephemeral:
    channel: str
    user: str
    text: str
    message_ts: str
    thread_ts: str | None
    blocks: list[Any] | None


@dataclass
class _Script:
    method: str  # "*" = any method
    times: int
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    proceed: bool = False  # after the delay, answer as usual


def ts_key(ts: str) -> tuple[int, int]:
    """Sort key for Slack timestamps ("1700000000.000100")."""
    sec, _, frac = ts.partition(".")
    return int(sec or 0), int((frac + "000000")[:6] or 0)


class FakeSlackAPI:
    """The server; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        *,
        team_id: str = "T0TEST",
        team_domain: str = "paperbot-test",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        app_id: str = "A0TEST",
        valid_tokens: set[str] | None = None,
        socket_mode_url: str | Callable[[], str] | None = None,
        ts_start: float | None = None,
        require_stream_recipients: bool = True,
    ) -> None:
        self.team_id = team_id
        self.team_domain = team_domain
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        #: When set, any other token gets ``invalid_auth``.
        self.valid_tokens = valid_tokens
        #: What apps.connections.open answers: a ws:// URL, or a function giving a fresh one
        #: (e.g. ``FakeSocketModeServer.new_url``). None -> an error answer.
        self.socket_mode_url = socket_mode_url
        #: chat.startStream outside a DM ("D...") needs recipient_user_id + recipient_team_id.
        self.require_stream_recipients = require_stream_recipients
        self.calls: list[SlackCall] = []
        self.ephemerals: list[Ephemeral] = []
        self.views: list[dict[str, Any]] = []
        self._statuses: dict[tuple[str, str], list[str]] = {}
        self._reactions: dict[tuple[str, str], list[tuple[str, str]]] = {}  # -> (name, user)
        self._messages: dict[str, list[StoredMessage]] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._handlers: dict[str, MethodHandler] = {}
        self._scripts: list[_Script] = []
        self._last_ts_us = int(ts_start * 1_000_000) if ts_start is not None else 0
        self._deterministic_ts = ts_start is not None
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """For ``WebClient(base_url=...)``; ends with "/api/" as the client requires."""
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(self, tag: str | None = None) -> str:
        """A URL to use as a slash command's / block action's ``response_url``: POSTs to it are
        recorded as calls to method "response_url" (params = the JSON body) and get
        ``{"ok": true}``."""
        return f"http://127.0.0.1:{self.port}/hooks/{tag or uuid.uuid4().hex[:12]}"

    def start(self) -> FakeSlackAPI:
        self._stopping.clear()
        handler = type("_BoundSlackHandler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-slack-api",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> FakeSlackAPI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- scripting -------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        error: str | None = None,
        *,
        status: int | None = None,
        retry_after: int | None = 1,
        times: int = 1,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next `times` calls to `method` ("*" = any) fail.

        Defaults: nothing given -> HTTP 429 ``ratelimited`` with ``Retry-After: retry_after``
        (slack_sdk's RateLimitErrorRetryHandler sleeps Retry-After + up to 1 s: use
        retry_after=0 in tests); an `error` alone -> HTTP 200 ``{"ok": false, "error": error}``
        (what Slack does for channel_not_found, not_in_channel, invalid_auth...); a `status`
        >= 500 alone -> ``internal_error``. `body` replaces the JSON answer (a str is sent as
        text/html, like a load balancer's error page).
        """
        if status is None:
            status = 429 if error in (None, "ratelimited") else 200
        if error is None:
            error = (
                "ratelimited"
                if status == 429
                else "internal_error"
                if status >= 500
                else "fatal_error"
            )
        hdrs = dict(headers or {})
        if status == 429 and retry_after is not None:
            hdrs.setdefault("Retry-After", str(retry_after))
        answer = body if body is not None else {"ok": False, "error": error}
        self._push(_Script(method, times, status=status, body=answer, headers=hdrs))

    def respond_next(
        self,
        method: str,
        body: Any,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` calls to `method` get exactly `body` (state is not touched)."""
        self._push(_Script(method, times, status=status, body=body, headers=dict(headers or {})))

    def delay_next(self, method: str, seconds: float, *, times: int = 1) -> None:
        """The next `times` calls to `method` wait `seconds`, then are answered as usual."""
        self._push(_Script(method, times, delay=seconds, proceed=True))

    def set_handler(self, method: str, handler: MethodHandler | None) -> None:
        """Answer every call to `method` with ``handler(params)`` (None restores the default)."""
        with self._cond:
            if handler is None:
                self._handlers.pop(method, None)
            else:
                self._handlers[method] = handler

    def set_user(self, user_id: str, **fields: Any) -> None:
        """users.info for `user_id` answers these fields over the synthesized defaults."""
        with self._cond:
            self._users[user_id] = fields

    def add_message(
        self,
        channel: str,
        text: str,
        *,
        user: str | None = "U0USER",
        ts: str | None = None,
        thread_ts: str | None = None,
        bot_id: str | None = None,
        blocks: list[Any] | None = None,
        **extra: Any,
    ) -> StoredMessage:
        """Seed a message (e.g. the user's question, other replies in a thread) so that
        conversations.replies / conversations.history return it."""
        with self._cond:
            msg = StoredMessage(
                channel=channel,
                ts=ts or self._next_ts(),
                text=text,
                user=user,
                bot_id=bot_id,
                thread_ts=thread_ts,
                blocks=blocks,
                extra=extra,
            )
            self._store(msg)
            return copy.deepcopy(msg)

    def expire_stream(self, channel: str, ts: str) -> None:
        """Make a streaming message leave the streaming state, as Slack does after a while:
        further chat.appendStream / chat.stopStream get ``message_not_in_streaming_state``."""
        with self._cond:
            msg = self._find(channel, ts)
            assert msg is not None, f"no message {channel}/{ts}"
            msg.stream_state = "expired"

    def reset(self) -> None:
        """Forget calls, scripts and all workspace state."""
        with self._cond:
            self.calls.clear()
            self._scripts.clear()
            self._messages.clear()
            self.ephemerals.clear()
            self.views.clear()
            self._statuses.clear()
            self._reactions.clear()

    # ---- inspection ------------------------------------------------------------------------

    def calls_to(self, method: str, *, ok: bool | None = None) -> list[SlackCall]:
        """Recorded calls to `method`; ok=True only successful ones, ok=False only failures."""
        with self._cond:
            return [c for c in self.calls if c.method == method and (ok is None or c.ok == ok)]

    def wait_for(
        self, method: str, count: int = 1, timeout: float = 5.0, *, ok: bool | None = None
    ) -> list[SlackCall]:
        """Block until `count` calls to `method` (filtered by `ok`) were answered; return them.

        Raises AssertionError listing what was called instead when the time runs out.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [c for c in self.calls if c.method == method and (ok is None or c.ok == ok)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [f"{c.method}->{c.status}:{c.error or 'ok'}" for c in self.calls]
                    raise AssertionError(
                        f"waited {timeout}s for {count}x {method}, got {len(found)}; calls: {seen}"
                    )
                self._cond.wait(left)

    def messages(
        self, channel: str, thread_ts: str | None = None, *, include_deleted: bool = False
    ) -> list[StoredMessage]:
        """Current messages (as updated) in ts order, copies.

        thread_ts=None: every message in the channel (top-level and replies);
        thread_ts=X: only the replies in thread X (not the parent X itself).
        """
        with self._cond:
            out = [
                m
                for m in self._messages.get(channel, [])
                if (include_deleted or not m.deleted)
                and (thread_ts is None or (m.thread_ts == thread_ts and m.ts != thread_ts))
            ]
            return copy.deepcopy(out)

    def message(self, channel: str, ts: str) -> StoredMessage | None:
        with self._cond:
            msg = self._find(channel, ts)
            return copy.deepcopy(msg)

    def bot_messages(self, channel: str, thread_ts: str | None = None) -> list[StoredMessage]:
        """messages() posted by the bot (through the API)."""
        return [m for m in self.messages(channel, thread_ts) if m.user == self.bot_user_id]

    def statuses(self, channel_id: str, thread_ts: str) -> list[str]:
        """Every assistant.threads.setStatus status for that thread, in order."""
        with self._cond:
            return list(self._statuses.get((channel_id, thread_ts), []))

    def reactions(self, channel: str, ts: str) -> list[str]:
        """Reaction names on a message (reactions.add minus reactions.remove); the message
        need not be known to the fake (e.g. the user's message the bot reacts to)."""
        with self._cond:
            return [name for name, _ in self._reactions.get((channel, ts), [])]

    # ---- internals: state ------------------------------------------------------------------

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

    def _record(self, call: SlackCall) -> None:
        with self._cond:
            self.calls.append(call)
            self._cond.notify_all()

    def _next_ts(self) -> str:
        """Unique, increasing "1700000000.000100"-style ts (wall clock unless ts_start)."""
        step = 100 if self._deterministic_ts else 1
        now_us = 0 if self._deterministic_ts else int(time.time() * 1_000_000)
        self._last_ts_us = max(now_us, self._last_ts_us + step)
        return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def _store(self, msg: StoredMessage) -> None:
        msgs = self._messages.setdefault(msg.channel, [])
        msgs.append(msg)
        msgs.sort(key=lambda m: ts_key(m.ts))

    def _find(self, channel: str, ts: str) -> StoredMessage | None:
        for msg in self._messages.get(channel, []):
            if msg.ts == ts:
                return msg
        return None

    def _message_json(self, msg: StoredMessage) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "message", "text": msg.text, "ts": msg.ts}
        if msg.subtype:
            out["subtype"] = msg.subtype
        if msg.user:
            out["user"] = msg.user
        if msg.bot_id:
            out["bot_id"] = msg.bot_id
            out["app_id"] = self.app_id
            out["bot_profile"] = {
                "id": msg.bot_id,
                "app_id": self.app_id,
                "name": "paperbot",
                "deleted": False,
                "team_id": self.team_id,
            }
        out["team"] = self.team_id
        if msg.blocks is not None:
            out["blocks"] = msg.blocks
        if msg.attachments is not None:
            out["attachments"] = msg.attachments
        if msg.metadata is not None:
            out["metadata"] = msg.metadata
        if msg.history and msg.stream_state is None:
            out["edited"] = {"user": msg.user or self.bot_user_id, "ts": msg.ts}
        replies = [
            m
            for m in self._messages.get(msg.channel, [])
            if m.thread_ts == msg.ts and m.is_reply and not m.deleted
        ]
        if msg.is_reply:
            out["thread_ts"] = msg.thread_ts
            parent = self._find(msg.channel, msg.thread_ts or "")
            if parent is not None and parent.user:
                out["parent_user_id"] = parent.user
        elif replies or msg.thread_ts:  # a thread parent carries its own ts as thread_ts
            out["thread_ts"] = msg.ts
            out["reply_count"] = len(replies)
            out["reply_users"] = sorted({m.user for m in replies if m.user})
            if replies:
                out["latest_reply"] = replies[-1].ts
        reactions = self._reactions.get((msg.channel, msg.ts))
        if reactions:
            counts: dict[str, list[str]] = {}
            for name, user in reactions:
                counts.setdefault(name, []).append(user)
            out["reactions"] = [{"name": n, "users": u, "count": len(u)} for n, u in counts.items()]
        out.update(msg.extra)
        return out

    # ---- internals: dispatch ---------------------------------------------------------------

    def answer(self, method: str, params: dict[str, Any], token: str | None) -> Answer:
        """The default (stateful) answer to one call; scripts are applied by the handler."""
        auth_error = self._check_token(method, token)
        if auth_error:
            return 200, {}, {"ok": False, "error": auth_error}
        with self._cond:
            custom = self._handlers.get(method)
        if custom is not None:
            return 200, {}, custom(params)
        impl = _METHODS.get(method)
        with self._cond:
            body = impl(self, params) if impl else {"ok": True}
        return 200, {}, body

    def _check_token(self, method: str, token: str | None) -> str | None:
        if method == "api.test":
            return None
        if not token:
            return "not_authed"
        if self.valid_tokens is not None and token not in self.valid_tokens:
            return "invalid_auth"
        is_app_token = token.startswith("xapp-")
        if method == "apps.connections.open" and not is_app_token:
            return "not_allowed_token_type"
        if method != "apps.connections.open" and is_app_token:
            return "not_allowed_token_type"
        return None

    # ---- methods (called with the lock held) -----------------------------------------------

    def _auth_test(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{self.team_domain}.slack.com/",
            "team": "Paperbot Test",
            "user": "paperbot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _resolve_channel(self, channel: str) -> str:
        # Posting to a user ID posts into the bot's DM with that user.
        if channel[:1] in ("U", "W"):
            return "D" + channel[1:]
        return channel

    def _chat_post_message(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = str(p.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not (p.get("text") or p.get("blocks") or p.get("attachments")):
            return {"ok": False, "error": "no_text"}
        thread_ts = _opt_str(p.get("thread_ts"))
        msg = StoredMessage(
            channel=self._resolve_channel(channel),
            ts=self._next_ts(),
            text=str(p.get("text") or ""),
            user=self.bot_user_id,
            bot_id=self.bot_id,
            thread_ts=thread_ts,
            blocks=p.get("blocks"),
            attachments=p.get("attachments"),
            metadata=p.get("metadata"),
            reply_broadcast=_truthy(p.get("reply_broadcast")),
        )
        self._store(msg)
        return {
            "ok": True,
            "channel": msg.channel,
            "ts": msg.ts,
            "message": self._message_json(msg),
        }

    def _chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(p.get("channel") or ""), str(p.get("ts") or "")
        msg = self._find(channel, ts)
        if msg is None or msg.deleted:
            return {"ok": False, "error": "message_not_found"}
        if msg.user != self.bot_user_id:
            return {"ok": False, "error": "cant_update_message"}
        if "text" not in p and "blocks" not in p and "attachments" not in p:
            return {"ok": False, "error": "no_text"}
        msg.history.append(msg.text)
        if "text" in p:
            msg.text = str(p.get("text") or "")
        if "blocks" in p:
            msg.blocks = p.get("blocks") or None
        if "attachments" in p:
            msg.attachments = p.get("attachments") or None
        if "metadata" in p:
            msg.metadata = p.get("metadata")
        return {
            "ok": True,
            "channel": channel,
            "ts": ts,
            "text": msg.text,
            "message": self._message_json(msg),
        }

    def _chat_delete(self, p: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(p.get("channel") or ""), str(p.get("ts") or "")
        msg = self._find(channel, ts)
        if msg is None or msg.deleted:
            return {"ok": False, "error": "message_not_found"}
        if msg.user != self.bot_user_id:
            return {"ok": False, "error": "cant_delete_message"}
        msg.deleted = True
        return {"ok": True, "channel": channel, "ts": ts}

    def _chat_post_ephemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        channel, user = str(p.get("channel") or ""), str(p.get("user") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not user:
            return {"ok": False, "error": "user_not_in_channel"}
        if not (p.get("text") or p.get("blocks") or p.get("attachments")):
            return {"ok": False, "error": "no_text"}
        ts = self._next_ts()
        self.ephemerals.append(
            Ephemeral(
                channel=channel,
                user=user,
                text=str(p.get("text") or ""),
                message_ts=ts,
                thread_ts=_opt_str(p.get("thread_ts")),
                blocks=p.get("blocks"),
            )
        )
        return {"ok": True, "message_ts": ts}

    def _chat_get_permalink(self, p: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(p.get("channel") or ""), str(p.get("message_ts") or "")
        return {
            "ok": True,
            "channel": channel,
            "permalink": f"https://{self.team_domain}.slack.com/archives/{channel}/p"
            + ts.replace(".", ""),
        }

    def _conversations_replies(self, p: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(p.get("channel") or ""), str(p.get("ts") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not ts:
            return {"ok": False, "error": "invalid_arguments"}
        everything = [m for m in self._messages.get(channel, []) if not m.deleted]
        target = next((m for m in everything if m.ts == ts), None)
        # Asked with a reply's ts, Slack answers that reply's thread.
        root = target.thread_ts if target is not None and target.thread_ts else ts
        parent = [m for m in everything if m.ts == root]
        replies = [m for m in everything if m.thread_ts == root and m.ts != root]
        replies = _ts_window(replies, p)
        page, next_cursor = _paginate(parent + replies, p, default_limit=1000)
        return {
            "ok": True,
            "messages": [self._message_json(m) for m in page],
            "has_more": bool(next_cursor),
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _conversations_history(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = str(p.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        top = [
            m
            for m in self._messages.get(channel, [])
            if not m.deleted and (not m.is_reply or m.reply_broadcast)
        ]
        top = _ts_window(top, p)
        top.reverse()  # newest first, as Slack does
        page, next_cursor = _paginate(top, p, default_limit=100)
        return {
            "ok": True,
            "messages": [self._message_json(m) for m in page],
            "has_more": bool(next_cursor),
            "pin_count": 0,
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _reactions_add(self, p: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(p.get("channel") or ""), str(p.get("timestamp") or "")
        name = str(p.get("name") or "").strip(":")
        if not name:
            return {"ok": False, "error": "invalid_name"}
        if not channel or not ts:
            return {"ok": False, "error": "invalid_arguments"}
        reactions = self._reactions.setdefault((channel, ts), [])
        if (name, self.bot_user_id) in reactions:
            return {"ok": False, "error": "already_reacted"}
        reactions.append((name, self.bot_user_id))
        return {"ok": True}

    def _reactions_remove(self, p: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(p.get("channel") or ""), str(p.get("timestamp") or "")
        name = str(p.get("name") or "").strip(":")
        reactions = self._reactions.get((channel, ts), [])
        if (name, self.bot_user_id) not in reactions:
            return {"ok": False, "error": "no_reaction"}
        reactions.remove((name, self.bot_user_id))
        return {"ok": True}

    def _users_info(self, p: dict[str, Any]) -> dict[str, Any]:
        user_id = str(p.get("user") or "")
        if not user_id:
            return {"ok": False, "error": "user_not_found"}
        is_bot = user_id == self.bot_user_id
        name = "paperbot" if is_bot else f"user_{user_id.lower()}"
        real = "Paperbot" if is_bot else f"User {user_id}"
        user: dict[str, Any] = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "deleted": False,
            "real_name": real,
            "tz": "Europe/Berlin",
            "tz_label": "Central European Time",
            "tz_offset": 3600,
            "is_admin": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "profile": {
                "real_name": real,
                "display_name": name,
                "real_name_normalized": real,
                "display_name_normalized": name,
                "team": self.team_id,
            },
        }
        overrides = self._users.get(user_id, {})
        profile = overrides.get("profile")
        user.update({k: v for k, v in overrides.items() if k != "profile"})
        if isinstance(profile, dict):
            user["profile"] = {**user["profile"], **profile}
        return {"ok": True, "user": user}

    def _apps_connections_open(self, p: dict[str, Any]) -> dict[str, Any]:
        url = self.socket_mode_url
        if url is None:
            return {"ok": False, "error": "socket_mode_not_configured_in_fake"}
        return {"ok": True, "url": url() if callable(url) else url}

    def _views_open(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("trigger_id") and not p.get("interactivity_pointer"):
            return {"ok": False, "error": "invalid_arguments"}
        view = p.get("view")
        if not isinstance(view, dict):
            return {"ok": False, "error": "invalid_arguments"}
        return self._view_answer(view, p)

    def _views_update_or_push(self, p: dict[str, Any]) -> dict[str, Any]:
        view = p.get("view")
        if not isinstance(view, dict):
            return {"ok": False, "error": "invalid_arguments"}
        return self._view_answer(view, p)

    def _view_answer(self, view: dict[str, Any], p: dict[str, Any]) -> dict[str, Any]:
        full = {
            "id": _opt_str(p.get("view_id")) or "V" + uuid.uuid4().hex[:10].upper(),
            "team_id": self.team_id,
            "type": view.get("type", "modal"),
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": uuid.uuid4().hex[:16],
            "title": view.get("title"),
            "close": view.get("close"),
            "submit": view.get("submit"),
            "app_id": self.app_id,
            "bot_id": self.bot_id,
        }
        self.views.append(full)
        return {"ok": True, "view": full}

    def _assistant_set_status(self, p: dict[str, Any]) -> dict[str, Any]:
        channel, thread_ts = str(p.get("channel_id") or ""), str(p.get("thread_ts") or "")
        if not channel or not thread_ts or "status" not in p:
            return {"ok": False, "error": "invalid_arguments"}
        self._statuses.setdefault((channel, thread_ts), []).append(str(p.get("status") or ""))
        return {"ok": True}

    def _chat_start_stream(self, p: dict[str, Any]) -> dict[str, Any]:
        channel, thread_ts = str(p.get("channel") or ""), _opt_str(p.get("thread_ts"))
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        missing = [] if thread_ts else ["thread_ts"]
        if self.require_stream_recipients and not channel.startswith("D"):
            missing += [k for k in ("recipient_user_id", "recipient_team_id") if not p.get(k)]
        if missing:
            return _invalid_arguments(missing)
        msg = StoredMessage(
            channel=channel,
            ts=self._next_ts(),
            user=self.bot_user_id,
            bot_id=self.bot_id,
            thread_ts=thread_ts,
            stream_state="streaming",
        )
        self._append_stream(msg, p, first=True)
        self._store(msg)
        return {"ok": True, "channel": channel, "ts": msg.ts}

    def _chat_append_stream(self, p: dict[str, Any]) -> dict[str, Any]:
        msg, error = self._streaming_message(p)
        if msg is None:
            return error
        if not p.get("markdown_text") and not p.get("chunks"):
            return _invalid_arguments(["markdown_text"])
        self._append_stream(msg, p)
        return {"ok": True, "channel": msg.channel, "ts": msg.ts}

    def _chat_stop_stream(self, p: dict[str, Any]) -> dict[str, Any]:
        msg, error = self._streaming_message(p)
        if msg is None:
            return error
        self._append_stream(msg, p)
        if p.get("blocks"):
            msg.blocks = p.get("blocks")
        if p.get("metadata"):
            msg.metadata = p.get("metadata")
        msg.stream_state = "stopped"
        return {
            "ok": True,
            "channel": msg.channel,
            "ts": msg.ts,
            "message": self._message_json(msg),
        }

    def _streaming_message(self, p: dict[str, Any]) -> tuple[StoredMessage | None, dict[str, Any]]:
        channel, ts = str(p.get("channel") or ""), str(p.get("ts") or "")
        msg = self._find(channel, ts)
        if msg is None or msg.deleted:
            return None, {"ok": False, "error": "message_not_found"}
        if msg.stream_state != "streaming":
            return None, {"ok": False, "error": "message_not_in_streaming_state"}
        return msg, {}

    def _append_stream(self, msg: StoredMessage, p: dict[str, Any], first: bool = False) -> None:
        added = str(p.get("markdown_text") or "")
        chunks = p.get("chunks") or []
        if isinstance(chunks, list):
            msg.chunks.extend(chunks)
            for chunk in chunks:
                if isinstance(chunk, dict) and chunk.get("type") == "markdown_text":
                    added += str(chunk.get("text") or "")
        if added:
            if not first:
                msg.history.append(msg.text)
            msg.text += added


def _opt_str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


def _invalid_arguments(missing: list[str]) -> dict[str, Any]:
    return {
        "ok": False,
        "error": "invalid_arguments",
        "response_metadata": {
            "messages": [f"[ERROR] missing required field: {name}" for name in missing]
        },
    }


def _ts_window(msgs: list[StoredMessage], p: dict[str, Any]) -> list[StoredMessage]:
    inclusive = _truthy(p.get("inclusive"))
    oldest, latest = _opt_str(p.get("oldest")), _opt_str(p.get("latest"))
    out = msgs
    if oldest:
        lo = ts_key(oldest)
        out = [m for m in out if ts_key(m.ts) > lo or (inclusive and ts_key(m.ts) == lo)]
    if latest:
        hi = ts_key(latest)
        out = [m for m in out if ts_key(m.ts) < hi or (inclusive and ts_key(m.ts) == hi)]
    return out


def _paginate(
    msgs: list[StoredMessage], p: dict[str, Any], *, default_limit: int
) -> tuple[list[StoredMessage], str]:
    """Cursor pagination like Slack's: opaque base64 cursors, "" when there is no more."""
    try:
        limit = int(p.get("limit") or default_limit)
    except (TypeError, ValueError):
        limit = default_limit
    limit = max(1, limit)
    start = 0
    cursor = _opt_str(p.get("cursor"))
    if cursor:
        try:
            start = int(base64.b64decode(cursor).decode().removeprefix("offset:"))
        except ValueError:
            start = 0
    page = msgs[start : start + limit]
    more = start + limit < len(msgs)
    next_cursor = base64.b64encode(f"offset:{start + limit}".encode()).decode() if more else ""
    return page, next_cursor


_METHODS: dict[str, Callable[[FakeSlackAPI, dict[str, Any]], dict[str, Any]]] = {
    "auth.test": FakeSlackAPI._auth_test,
    "chat.postMessage": FakeSlackAPI._chat_post_message,
    "chat.update": FakeSlackAPI._chat_update,
    "chat.delete": FakeSlackAPI._chat_delete,
    "chat.postEphemeral": FakeSlackAPI._chat_post_ephemeral,
    "chat.getPermalink": FakeSlackAPI._chat_get_permalink,
    "chat.startStream": FakeSlackAPI._chat_start_stream,
    "chat.appendStream": FakeSlackAPI._chat_append_stream,
    "chat.stopStream": FakeSlackAPI._chat_stop_stream,
    "conversations.replies": FakeSlackAPI._conversations_replies,
    "conversations.history": FakeSlackAPI._conversations_history,
    "reactions.add": FakeSlackAPI._reactions_add,
    "reactions.remove": FakeSlackAPI._reactions_remove,
    "users.info": FakeSlackAPI._users_info,
    "apps.connections.open": FakeSlackAPI._apps_connections_open,
    "views.open": FakeSlackAPI._views_open,
    "views.update": FakeSlackAPI._views_update_or_push,
    "views.push": FakeSlackAPI._views_update_or_push,
    "assistant.threads.setStatus": FakeSlackAPI._assistant_set_status,
}


def _parse_params(query: str, content_type: str, raw: bytes) -> dict[str, Any]:
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    ctype = content_type.split(";", 1)[0].strip().lower()
    if raw and ctype == "application/json":
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            body = None
        if isinstance(body, dict):
            params.update(body)
    elif raw and ctype == "application/x-www-form-urlencoded":
        params.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    elif raw and ctype == "multipart/form-data":
        msg = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw
        )
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            params[name] = data if part.get_filename() else data.decode("utf-8", "replace")
    for key in JSON_FIELDS & params.keys():
        value = params[key]
        if isinstance(value, str) and value[:1] in ("[", "{"):
            with contextlib.suppress(json.JSONDecodeError):
                params[key] = json.loads(value)
    return params


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSlackAPI  # set on the subclass made in start()
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._handle(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self._handle(self.rfile.read(length) if length else b"")

    def _handle(self, raw: bytes) -> None:
        parts = urlsplit(self.path)
        if parts.path.startswith("/api/"):
            method = parts.path[len("/api/") :].strip("/")
        elif parts.path.startswith("/hooks/"):
            method = "response_url"
        else:
            self._send(404, {}, "Not Found")
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        params = _parse_params(parts.query, headers.get("content-type", ""), raw)
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else params.get("token")
        fake = self.fake
        script = fake._take_script(method)
        if script is not None and script.delay:
            fake._stopping.wait(script.delay)
        if script is not None and not script.proceed:
            status, extra, body = script.status, script.headers, script.body
        elif method == "response_url":
            status, extra, body = 200, {}, {"ok": True}
        else:
            status, extra, body = fake.answer(method, params, str(token) if token else None)
        fake._record(
            SlackCall(
                method=method,
                http_method=self.command,
                path=parts.path,
                params=params,
                headers=headers,
                raw_body=raw,
                status=status,
                response=copy.deepcopy(body),
                at=time.time(),
            )
        )
        self._send(status, extra, body)

    def _send(self, status: int, headers: dict[str, str], body: Any) -> None:
        if isinstance(body, str):
            data, ctype = body.encode(), "text/html; charset=utf-8"
        else:
            data, ctype = json.dumps(body).encode(), "application/json; charset=utf-8"
        try:
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
