"""ThreadReply: one message per answer in the thread, posted once, then updated in place.

A recording fake client and an injected clock: no Slack, no sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from bot.slack import blocks
from bot.slack.replies import ThreadReply, strip_mentions

CHANNEL = "C123"
THREAD = "1715850000.000100"


@dataclass
class Call:
    method: str
    kwargs: dict[str, Any]


@dataclass
class RecordingClient:
    """Records chat_postMessage / chat_update like Slack's WebClient would receive them."""

    calls: list[Call] = field(default_factory=list)
    next_ts: int = 1

    def chat_postMessage(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(Call("chat_postMessage", kwargs))
        ts = f"1715850001.{self.next_ts:06d}"
        self.next_ts += 1
        return {"ok": True, "ts": ts, "channel": kwargs["channel"]}

    def chat_update(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(Call("chat_update", kwargs))
        return {"ok": True, "ts": kwargs["ts"], "channel": kwargs["channel"]}

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]


@dataclass
class FakeClock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def client() -> RecordingClient:
    return RecordingClient()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def reply(client: RecordingClient, clock: FakeClock) -> ThreadReply:
    return ThreadReply(client, CHANNEL, THREAD, min_interval=1.0, clock=clock)


def _msg(text: str) -> blocks.Message:
    return text, [blocks.section(text)]


# ---------------------------------------------------------------- start
def test_start_posts_once_in_the_thread(reply: ThreadReply, client: RecordingClient) -> None:
    ts = reply.start(blocks.placeholder("what is new?"))
    assert [c.method for c in client.calls] == ["chat_postMessage"]
    kwargs = client.calls[0].kwargs
    assert kwargs["channel"] == CHANNEL
    assert kwargs["thread_ts"] == THREAD
    assert kwargs["text"] == "🔎 Searching the papers for: what is new?"
    assert kwargs["blocks"] == blocks.placeholder("what is new?")[1]
    assert ts == reply.ts == "1715850001.000001"


# ---------------------------------------------------------------- progress throttling
def test_progress_too_soon_after_start_is_skipped(
    reply: ThreadReply, client: RecordingClient, clock: FakeClock
) -> None:
    reply.start(_msg("placeholder"))
    clock.advance(0.5)
    reply.progress(_msg("partial 1"))
    assert client.of("chat_update") == []


def test_progress_is_sent_once_the_interval_has_passed(
    reply: ThreadReply, client: RecordingClient, clock: FakeClock
) -> None:
    reply.start(_msg("placeholder"))
    clock.advance(0.25)
    reply.progress(_msg("partial 1"))  # too soon
    clock.advance(0.75)  # exactly min_interval since start (binary-exact steps)
    reply.progress(_msg("partial 2"))
    updates = client.of("chat_update")
    assert [u.kwargs["text"] for u in updates] == ["partial 2"]
    assert updates[0].kwargs == {
        "channel": CHANNEL,
        "ts": reply.ts,
        "text": "partial 2",
        "blocks": _msg("partial 2")[1],
    }


def test_progress_interval_restarts_after_each_update(
    reply: ThreadReply, client: RecordingClient, clock: FakeClock
) -> None:
    reply.start(_msg("placeholder"))
    for i in range(20):  # a token stream every 0.375 s for 7.5 s
        clock.advance(0.375)
        reply.progress(_msg(f"partial {i}"))
    sent = [u.kwargs["text"] for u in client.of("chat_update")]
    # Each update restarts the 1 s interval: updates at 1.125, 2.25, 3.375, … s after start.
    assert sent == [f"partial {i}" for i in range(2, 20, 3)]
    assert len(client.of("chat_postMessage")) == 1


def test_progress_never_posts_a_second_message(
    reply: ThreadReply, client: RecordingClient, clock: FakeClock
) -> None:
    reply.start(_msg("placeholder"))
    for i in range(10):
        clock.advance(5)
        reply.progress(_msg(f"partial {i}"))
    assert len(client.of("chat_postMessage")) == 1
    assert {u.kwargs["ts"] for u in client.of("chat_update")} == {reply.ts}


# ---------------------------------------------------------------- finish
def test_finish_updates_the_same_message_even_right_after_progress(
    reply: ThreadReply, client: RecordingClient, clock: FakeClock
) -> None:
    ts = reply.start(_msg("placeholder"))
    clock.advance(2)
    reply.progress(_msg("partial"))
    reply.finish(_msg("final answer"))  # no time passed: finish is never throttled
    assert [c.method for c in client.calls] == ["chat_postMessage", "chat_update", "chat_update"]
    last = client.calls[-1].kwargs
    assert last["ts"] == ts
    assert last["text"] == "final answer"


def test_finish_immediately_after_start_still_updates(
    reply: ThreadReply, client: RecordingClient
) -> None:
    ts = reply.start(_msg("placeholder"))
    reply.finish(blocks.error_message("Something failed."))
    assert [c.method for c in client.calls] == ["chat_postMessage", "chat_update"]
    assert client.calls[1].kwargs["ts"] == ts
    assert client.calls[1].kwargs["text"] == "⚠️ Something failed."


def test_finish_without_start_posts_in_the_thread(
    reply: ThreadReply, client: RecordingClient
) -> None:
    reply.finish(_msg("final answer"))
    assert [c.method for c in client.calls] == ["chat_postMessage"]
    kwargs = client.calls[0].kwargs
    assert (kwargs["channel"], kwargs["thread_ts"], kwargs["text"]) == (
        CHANNEL,
        THREAD,
        "final answer",
    )
    assert reply.ts == "1715850001.000001"


def test_finish_twice_after_a_post_without_start_updates_that_post(
    reply: ThreadReply, client: RecordingClient
) -> None:
    reply.finish(_msg("first"))
    reply.finish(_msg("second"))
    assert [c.method for c in client.calls] == ["chat_postMessage", "chat_update"]
    assert client.calls[1].kwargs["ts"] == reply.ts


def test_progress_without_start_posts_once_then_updates(
    reply: ThreadReply, client: RecordingClient, clock: FakeClock
) -> None:
    reply.progress(_msg("partial"))  # the clock is far past 0: not throttled
    clock.advance(0.1)
    reply.progress(_msg("too soon"))
    reply.finish(_msg("final"))
    assert [c.method for c in client.calls] == ["chat_postMessage", "chat_update"]
    assert client.calls[1].kwargs["text"] == "final"


def test_default_clock_and_interval() -> None:
    client = RecordingClient()
    reply = ThreadReply(client, CHANNEL, THREAD)
    reply.start(_msg("placeholder"))
    assert reply.min_interval == 1.2
    reply.progress(_msg("partial"))  # real monotonic clock: almost surely skipped
    reply.finish(_msg("final"))
    assert client.calls[0].method == "chat_postMessage"
    assert len(client.of("chat_postMessage")) == 1
    assert client.calls[-1].method == "chat_update"
    assert client.calls[-1].kwargs["text"] == "final"


# ---------------------------------------------------------------- strip_mentions
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<@U0LAN0Z89> what is RLHF?", "what is RLHF?"),
        ("what is <@U0LAN0Z89> RLHF?", "what is RLHF?"),
        ("<@U1> <@W2ABC>   compare   these  <@U3>", "compare these"),
        ("  hello\n\tworld  ", "hello world"),
        ("<@U1>", ""),
        ("", ""),
        ("no mentions here", "no mentions here"),
    ],
)
def test_strip_mentions_removes_user_mentions_and_collapses_spaces(
    text: str, expected: str
) -> None:
    assert strip_mentions(text) == expected


def test_strip_mentions_keeps_things_that_are_not_user_mentions() -> None:
    assert strip_mentions("see <#C123> and <https://arxiv.org|arXiv>") == (
        "see <#C123> and <https://arxiv.org|arXiv>"
    )
    assert strip_mentions("email me@x.org <@lowercase>") == "email me@x.org <@lowercase>"
