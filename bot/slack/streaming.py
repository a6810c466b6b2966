"""Slack's native answer streaming (chat.startStream → chat.appendStream → chat.stopStream).

The streamed text is the model's draft: citations are checked only once the answer is
finished, so `NativeStream.stop` ends the stream with the verified answer's blocks and the
caller then replaces the whole message with the verified answer (chat.update), exactly as
the placeholder path finishes. A draft citation the verifier drops never stays on screen.

Where streaming is not available (an older workspace, a token type or channel type Slack
refuses, the method unknown), chat.startStream answers an error; `StreamSupport` remembers it
for the rest of the process, so later answers go straight to the chat.update path instead of
asking again. ``channel_type_not_supported`` is remembered for that kind of conversation only
(a DM may stream where a channel may not).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from bot.slack import blocks

log = logging.getLogger(__name__)

#: chat.startStream errors meaning "not here, not now, not ever in this process".
UNSUPPORTED = frozenset(
    {
        "not_allowed",
        "unknown_method",
        "method_deprecated",
        "not_allowed_token_type",
        "missing_scope",
        "feature_not_enabled",
        "no_permission",
        "team_access_not_granted",
    }
)
PER_KIND = "channel_type_not_supported"  # remembered for that kind of conversation only
_ANY = "*"


def conversation_kind(channel: str) -> str:
    """ "im", "channel" or "group" (private channel or group DM) from a conversation id."""
    return {"D": "im", "C": "channel", "G": "group"}.get(channel[:1], channel[:1] or "?")


def slack_error(exc: BaseException) -> str | None:
    """The Web API error code of a SlackApiError (None for anything else)."""
    response = getattr(exc, "response", None)
    try:
        return str(response["error"]) if response is not None else None
    except (KeyError, TypeError):
        return None


class StreamSupport:
    """Whether chat.startStream works here, learnt once per process (per conversation kind
    for ``channel_type_not_supported``). ``enabled=False`` (PAPERBOT_SLACK_NATIVE_STREAMING)
    never tries it."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._refused: dict[str, str] = {}  # conversation kind (or "*") -> Slack's error
        self._lock = threading.Lock()

    def available(self, channel: str) -> bool:
        with self._lock:
            return self.enabled and not ({_ANY, conversation_kind(channel)} & self._refused.keys())

    def refused(self, channel: str, error: str | None) -> bool:
        """Record a chat.startStream error; True when it means streaming is unavailable."""
        scope = conversation_kind(channel) if error == PER_KIND else _ANY
        if error != PER_KIND and error not in UNSUPPORTED:
            return False
        with self._lock:
            first = scope not in self._refused
            self._refused[scope] = str(error)
        if first:
            where = "anywhere" if scope == _ANY else f"in {scope} conversations"
            log.warning(
                "Slack refused chat.startStream (%s): answers %s are posted and updated "
                "with chat.update from now on",
                error,
                where,
            )
        return True

    @property
    def refusals(self) -> dict[str, str]:
        with self._lock:
            return dict(self._refused)


class NativeStream:
    """One streamed reply in a thread: started by the first text, appended at most every
    ``min_interval`` seconds (pending text is sent together), stopped with final blocks.

    `start` raises when Slack refuses the stream (the caller falls back); a failed append
    only stops further appends (the final update carries the whole answer anyway)."""

    def __init__(
        self,
        client: Any,
        channel: str,
        thread_ts: str,
        *,
        user: str | None = None,
        team: str | None = None,
        min_interval: float = 1.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.user = user
        self.team = team
        self.min_interval = min_interval
        self._clock = clock
        self.ts: str | None = None
        self._pending = ""
        self._last = 0.0
        self._broken = False

    def start(self, text: str) -> str:
        recipient: dict[str, str] = {}
        if conversation_kind(self.channel) != "im" and self.user and self.team:
            recipient = {"recipient_user_id": self.user, "recipient_team_id": self.team}
        response = self.client.chat_startStream(
            channel=self.channel, thread_ts=self.thread_ts, markdown_text=text, **recipient
        )
        self.ts = str(response["ts"])
        self._last = self._clock()
        return self.ts

    def append(self, text: str) -> None:
        self._pending += text
        if self._broken or not self._pending or self._clock() - self._last < self.min_interval:
            return
        try:
            self.client.chat_appendStream(
                channel=self.channel, ts=self.ts, markdown_text=self._pending
            )
        except Exception as exc:
            self._broken = True
            log.warning(
                "chat.appendStream in %s failed (%s); the final answer follows", self.channel, exc
            )
        self._pending = ""
        self._last = self._clock()

    def stop(self, message: blocks.Message | None = None) -> None:
        """End the stream (best effort), with ``message``'s blocks at the bottom."""
        extra: dict[str, Any] = {"blocks": message[1]} if message is not None else {}
        try:
            self.client.chat_stopStream(channel=self.channel, ts=self.ts, **extra)
        except Exception as exc:
            log.warning(
                "chat.stopStream in %s failed (%s); updating the message", self.channel, exc
            )


def end_stream(client: Any, channel: str, ts: str) -> None:
    """Stop a stream an earlier attempt may have left open (a resumed job); any error,
    e.g. ``message_not_in_streaming_state`` for a placeholder, is ignored."""
    with contextlib.suppress(Exception):
        client.chat_stopStream(channel=channel, ts=ts)
